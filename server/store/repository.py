"""Persistence operations for the triage server.

Every write commits itself (and rolls back on failure, leaving the session
usable) so request handlers never juggle transactions. Status changes are
conditional UPDATEs: only a 'pending' row may become 'done' or 'failed', so a
late worker result cannot overwrite a row that crash recovery already failed,
nor can a result be recorded twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from server.store.models import STATUSES, Classification, Feedback, utcnow

__all__ = [
    "ClassificationNotFound",
    "InvalidStatusTransition",
    "add_feedback",
    "complete",
    "count_by_status",
    "create_pending",
    "fail",
    "get_by_request_id",
    "get_latest_by_ticket_id",
    "mark_stale_pending_failed",
]

class ClassificationNotFound(LookupError):
    """No classification has the given request_id."""


class InvalidStatusTransition(RuntimeError):
    """The classification is no longer 'pending' (already done or failed)."""


@contextmanager
def _writing(session: Session) -> Iterator[None]:
    # Roll back on failure so the caller's session stays usable after e.g. an
    # IntegrityError, instead of being stuck in a "needs rollback" state.
    try:
        yield
        session.commit()
    except Exception:
        session.rollback()
        raise


def create_pending(
    session: Session,
    *,
    request_id: str,
    ticket_id: str,
    subject: str | None,
    body: str,
    previous_interactions: list[str] | None,
    model_base: str,
    model_adapter: str | None,
    prompt_version: str,
    taxonomy: str | None,
) -> Classification:
    """Record the request before inference so a crash cannot lose it.

    A duplicate ``request_id`` raises ``sqlalchemy.exc.IntegrityError``.
    """
    row = Classification(
        request_id=request_id,
        ticket_id=ticket_id,
        status="pending",
        subject=subject,
        body=body,
        previous_interactions=previous_interactions,
        model_base=model_base,
        model_adapter=model_adapter,
        prompt_version=prompt_version,
        taxonomy=taxonomy,
    )
    with _writing(session):
        session.add(row)
    session.refresh(row)
    return row


def _finish(session: Session, request_id: str, values: dict[str, Any]) -> Classification:
    with _writing(session):
        result = session.execute(
            update(Classification)
            .where(Classification.request_id == request_id, Classification.status == "pending")
            .values(completed_at=utcnow(), **values)
            .execution_options(synchronize_session="fetch")
        )
        updated = result.rowcount == 1  # type: ignore[attr-defined]
    row = session.scalars(
        select(Classification)
        .where(Classification.request_id == request_id)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        raise ClassificationNotFound(request_id)
    if not updated:
        raise InvalidStatusTransition(f"{request_id} is {row.status!r}, not 'pending'")
    return row


def complete(
    session: Session,
    request_id: str,
    *,
    prediction: dict[str, Any],
    category: str | None,
    priority: str | None,
    sentiment: str | None,
    confidence: dict[str, float],
    needs_review: bool,
    input_truncated: bool,
    latency_ms: float | None,
    prompt_tokens: int | None,
    completion_tokens: int | None,
    raw_output: str | None,
    model_base: str | None = None,
    model_adapter: str | None = None,
) -> Classification:
    """Store the model's answer. ``model_base``/``model_adapter`` override the
    values recorded at creation when the serving model changed meanwhile
    (e.g. a hot-swapped adapter)."""
    values: dict[str, Any] = {
        "status": "done",
        "prediction": prediction,
        "category": category,
        "priority": priority,
        "sentiment": sentiment,
        "confidence": confidence,
        "needs_review": needs_review,
        "input_truncated": input_truncated,
        "latency_ms": latency_ms,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "raw_output": raw_output,
        "error": None,
    }
    if model_base is not None:
        values["model_base"] = model_base
    if model_adapter is not None:
        values["model_adapter"] = model_adapter
    return _finish(session, request_id, values)


def fail(
    session: Session, request_id: str, *, error: str, latency_ms: float | None = None
) -> Classification:
    """Close a request that could not be classified, keeping the reason."""
    values = {"status": "failed", "error": error, "latency_ms": latency_ms}
    return _finish(session, request_id, values)


def get_by_request_id(session: Session, request_id: str) -> Classification | None:
    return session.scalars(
        select(Classification).where(Classification.request_id == request_id)
    ).one_or_none()


def get_latest_by_ticket_id(session: Session, ticket_id: str) -> Classification | None:
    """Newest by id rather than created_at: ids are monotonic, clocks may not be."""
    return session.scalars(
        select(Classification)
        .where(Classification.ticket_id == ticket_id)
        .order_by(Classification.id.desc())
        .limit(1)
    ).first()


def add_feedback(
    session: Session,
    *,
    classification: Classification,
    reviewer: str,
    comment: str | None,
    corrections: dict[str, Any],
) -> Feedback:
    """Attach reviewer corrections; the ticket id is copied for join-free lookups."""
    fb = Feedback(
        classification_id=classification.id,
        ticket_id=classification.ticket_id,
        reviewer=reviewer,
        comment=comment,
        corrections=corrections,
    )
    with _writing(session):
        session.add(fb)
    session.refresh(fb)
    return fb


def count_by_status(session: Session) -> dict[str, int]:
    """Counts for every known status, zeros included, so metrics keep stable keys."""
    counts = dict.fromkeys(STATUSES, 0)
    rows = session.execute(
        select(Classification.status, func.count()).group_by(Classification.status)
    )
    for status, n in rows:
        counts[status] = n
    return counts


def mark_stale_pending_failed(session: Session, older_than: datetime, error: str) -> int:
    """Fail 'pending' rows created before ``older_than`` (timezone-aware).

    Run at startup: rows still pending then were orphaned by a crash or restart,
    and failing them gives every accepted ticket a final answer.
    """
    if older_than.tzinfo is None:
        raise ValueError("older_than is a naive datetime; pass a timezone-aware one")
    with _writing(session):
        result = session.execute(
            update(Classification)
            .where(Classification.status == "pending", Classification.created_at < older_than)
            .values(status="failed", error=error, completed_at=utcnow())
            .execution_options(synchronize_session="fetch")
        )
    return int(result.rowcount)  # type: ignore[attr-defined]
