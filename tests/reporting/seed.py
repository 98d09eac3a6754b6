"""Seeding a real store for the report tests: rows and feedback written through the repository, as the
server writes them, then dated (created_at) where the test wants them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from server.results import Route
from server.store import repository
from server.store.models import Classification
from server.store.records import StoredFailure, StoredResult


def seed(
    session: Session,
    *,
    at: datetime,
    ticket_id: str | None = None,
    variant: str | None = None,
    subject: str = "subject",
    body: str = "body",
    category: str = "Billing",
    priority: str = "Medium",
    sentiment: str = "neutral",
    confidence: dict[str, float | None] | None = None,
    latency_ms: float = 100.0,
    cost_usd: float = 0.001,
    route: Route = "local",
    correction: dict[str, Any] | None = None,
    failed: bool = False,
) -> Classification:
    """One stored request; `correction` (a feedback body, e.g. {"category": "Account"} or {} for a plain
    agreement) adds a reviewer's feedback."""
    rid = uuid.uuid4().hex
    row = repository.create_pending(
        session,
        request_id=rid,
        ticket_id=ticket_id or f"T-{rid[:10]}",
        subject=subject,
        body=body,
        previous_interactions=None,
        model_base="base",
        model_adapter=None,
        prompt_version="classify/v2",
        taxonomy="tickets",
        variant=variant,
    )
    if failed:
        outcome: StoredResult | StoredFailure = StoredFailure("engine failed", latency_ms=latency_ms)
    else:
        prediction = {"category": category, "priority": priority, "extracted_info": {"sentiment": sentiment}}
        conf = confidence or {"category": 0.9, "priority": 0.9, "sentiment": 0.9}
        outcome = StoredResult(
            prediction,
            conf,
            False,
            False,
            latency_ms,
            100,
            20,
            None,
            route=route,
            answered_by="transformers:x",
            cost_usd=cost_usd,
        )
    repository.finish_many(session, [(rid, outcome)])
    session.execute(update(Classification).where(Classification.id == row.id).values(created_at=at))
    session.commit()
    if correction is not None:
        session.refresh(row)
        repository.add_feedback(session, classification=row, reviewer="ana", comment="checked", corrections=correction)
    return row
