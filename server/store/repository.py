"""Persistence operations for the triage server.

Every write commits itself (and rolls back on failure, leaving the session
usable) so request handlers never juggle transactions. Status changes are
conditional UPDATEs: only a 'pending' row may become 'done' or 'failed', so a
late worker result cannot overwrite a row that crash recovery already failed,
nor can a result be recorded twice. A request ends through ``finish_many`` with
a ``StoredResult`` or ``StoredFailure`` (``server.store.records``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, type_coerce, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, aliased

from server.store.models import Classification, Feedback, utcnow
from server.store.records import StoredOutcome

__all__ = [
    "add_feedback",
    "create_pending",
    "finish_many",
    "get_latest_by_ticket_id",
    "mark_stale_pending_failed",
    "review_queue",
]


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
    fields: list[str] | None = None,
    key_id: int | None = None,
    scope: str | None = None,
    variant: str | None = None,
) -> Classification:
    """Record the request before inference so a crash cannot lose it, with who asked: the API key's id
    and its scope (tenant), None without keys; and its A/B variant, None without an A/B test.

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
        fields=fields,
        key_id=key_id,
        scope=scope,
        variant=variant,
    )
    with _writing(session):
        session.add(row)
    session.refresh(row)
    return row


def finish_many(session: Session, results: Sequence[tuple[str, StoredOutcome]]) -> list[str]:
    """Close several pending requests in ONE transaction: all of them are stored or none is.

    ``results`` pairs a request_id with its stored result or failure. Returns the request_ids that
    were left alone because they were no longer pending (e.g. failed by recovery).
    """
    skipped: list[str] = []
    now = utcnow()
    with _writing(session):
        for request_id, outcome in results:
            result = session.execute(
                update(Classification)
                .where(Classification.request_id == request_id, Classification.status == "pending")
                .values(completed_at=now, **outcome.values())
                .execution_options(synchronize_session=False)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                skipped.append(request_id)
    return skipped


def get_latest_by_ticket_id(session: Session, ticket_id: str, *, scope: str | None = None) -> Classification | None:
    """Newest by id rather than created_at: ids are monotonic, clocks may not be.

    ``scope``: only rows stored under that scope (a scoped key's view; another tenant's ticket is None,
    exactly as an unknown one). None reads every row.
    """
    query = select(Classification).where(Classification.ticket_id == ticket_id)
    if scope is not None:
        query = query.where(Classification.scope == scope)
    return session.scalars(query.order_by(Classification.id.desc()).limit(1)).first()


def add_feedback(
    session: Session,
    *,
    classification: Classification,
    reviewer: str,
    comment: str | None,
    corrections: dict[str, Any],
    key_id: int | None = None,
    key_role: str | None = None,
) -> Feedback:
    """Attach reviewer corrections with the API key that sent them and its role (None without keys), so
    training can keep only feedback of trusted keys; the ticket id is copied for join-free lookups."""
    fb = Feedback(
        classification_id=classification.id,
        ticket_id=classification.ticket_id,
        reviewer=reviewer,
        comment=comment,
        corrections=corrections,
        key_id=key_id,
        key_role=key_role,
    )
    with _writing(session):
        session.add(fb)
    session.refresh(fb)
    return fb


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


def review_queue(
    session: Session, *, reason: str | None = None, limit: int = 50, offset: int = 0, scope: str | None = None
) -> tuple[list[Classification], int]:
    """Stored results that need review and have no feedback yet, oldest first, with their total.

    Feedback attaches to a ticket's newest row, so feedback given at or after a row resolves it
    (an older row of the same ticket too). ``reason`` keeps rows whose ``review_reasons`` has that key;
    ``scope`` keeps rows of that scope only (a scoped key's queue), None keeps every row.
    """
    # The corrected row must be of the same scope: tenants may reuse each other's ticket ids, and one
    # tenant's feedback must not empty another's queue.
    corrected = aliased(Classification)
    resolved = (
        select(Feedback.id)
        .join(corrected, corrected.id == Feedback.classification_id)
        .where(
            Feedback.ticket_id == Classification.ticket_id,
            Feedback.classification_id >= Classification.id,
            corrected.scope.is_not_distinct_from(Classification.scope),
        )
        .exists()
    )
    conditions = [Classification.status == "done", Classification.needs_review.is_(True), ~resolved]
    if reason is not None:
        conditions.append(_has_reason(session, reason))
    if scope is not None:
        conditions.append(Classification.scope == scope)
    total = session.scalar(select(func.count()).select_from(Classification).where(*conditions)) or 0
    rows = session.scalars(
        select(Classification)
        .where(*conditions)
        .order_by(Classification.created_at, Classification.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def _has_reason(session: Session, reason: str) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # The column type is JSON with a JSONB variant; coerce to reach JSONB's `?` (has key) operator.
        return type_coerce(Classification.review_reasons, JSONB).has_key(reason)
    # SQLite: json_type is NULL for a missing key and 'null' for a key holding JSON null.
    path = '$."' + reason.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return func.json_type(Classification.review_reasons, path).is_not(None)
