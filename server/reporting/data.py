"""What the reports read from the store: the results of a window and the human review of them.

A result is reviewed when it has feedback (the latest counts, later feedback replaces earlier, as in the
metrics' accuracy); a label field of it counts as reviewed when the prediction holds it (a request may ask a
subset of fields) and as overridden when the correction names another value. Feedback that corrects
nothing (a comment only) agrees with every label. Corrections are sealed: the store must be opened with its
data key (`open_store`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.results import correction_of
from server.store.models import Classification, Feedback

__all__ = ["LABEL_FIELDS", "FieldReview", "ResultRow", "load_results"]

LABEL_FIELDS: tuple[str, ...] = ("category", "priority", "sentiment")


@dataclass(frozen=True)
class FieldReview:
    predicted: str | None
    corrected: str | None  # the reviewer's value when it differs from the prediction, else None

    @property
    def overridden(self) -> bool:
        return self.corrected is not None


@dataclass
class ResultRow:
    """One stored request of the window (done or failed), with its review when it has one."""

    id: int
    ticket_id: str
    created_at: datetime
    status: str
    variant: str | None
    route: str | None
    engine: str | None
    cost_usd: float | None
    latency_ms: float | None
    labels: dict[str, str | None]
    confidence: dict[str, float | None]
    review: dict[str, FieldReview] | None = None  # per reviewed label field; None: no feedback
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def reviewed(self) -> bool:
        return self.review is not None

    @property
    def overridden(self) -> bool:
        return self.review is not None and any(r.overridden for r in self.review.values())


def load_results(
    session: Session, since: datetime, until: datetime, *, text: bool = False
) -> tuple[list[ResultRow], dict[int, tuple[str, str]]]:
    """The finished (done or failed) results created in [since, until) with their latest feedback, oldest
    first; with `text`, also each row's ticket text (subject, body) by id, for in-memory analysis only."""
    columns = [
        Classification.id,
        Classification.ticket_id,
        Classification.created_at,
        Classification.status,
        Classification.variant,
        Classification.route,
        Classification.engine,
        Classification.cost_usd,
        Classification.latency_ms,
        Classification.confidence,
        Classification.fields,
        *(getattr(Classification, name) for name in LABEL_FIELDS),
    ]
    if text:
        columns += [Classification.subject, Classification.body]
    window = (
        Classification.created_at >= since,
        Classification.created_at < until,
        Classification.status.in_(("done", "failed")),
    )
    rows: list[ResultRow] = []
    texts: dict[int, tuple[str, str]] = {}
    asked: dict[int, list[str] | None] = {}
    for r in session.execute(select(*columns).where(*window).order_by(Classification.id)):
        confidence = r.confidence if isinstance(r.confidence, Mapping) else {}
        labels = {name: getattr(r, name) for name in LABEL_FIELDS}
        rows.append(
            ResultRow(
                id=r.id,
                ticket_id=r.ticket_id,
                created_at=r.created_at,
                status=r.status,
                variant=r.variant,
                route=r.route,
                engine=r.engine,
                cost_usd=r.cost_usd,
                latency_ms=r.latency_ms,
                labels=labels,
                confidence={k: v for k, v in confidence.items() if k in LABEL_FIELDS},
            )
        )
        asked[r.id] = r.fields
        if text:
            texts[r.id] = (r.subject or "", r.body or "")

    feedback = session.execute(
        select(Feedback.classification_id, Feedback.corrections)
        .join(Classification, Classification.id == Feedback.classification_id)
        .where(*window)
        .order_by(Feedback.id)
    ).all()
    latest = {fb[0]: fb[1] for fb in feedback}  # later feedback replaces earlier
    by_id = {row.id: row for row in rows}
    for cid, corrections in latest.items():
        row = by_id.get(cid)
        if row is None or row.status != "done":
            continue
        corrections = corrections if isinstance(corrections, Mapping) else {}
        review: dict[str, FieldReview] = {}
        for name in LABEL_FIELDS:
            fields = asked.get(cid)
            if fields is not None and name not in fields:
                continue
            predicted = row.labels[name]
            present, value = correction_of(corrections, name)
            differs = present and value is not None and value != predicted
            review[name] = FieldReview(predicted, str(value) if differs else None)
        row.review = review
    return rows, texts
