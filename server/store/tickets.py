"""A ticket as a data subject or an auditor asks about it: its stored results read back (never across
scopes), and its erasure (results, feedback and hosted-call payloads in one transaction).

Scope rule (`Principal.sees`): a principal with a scope reads only rows stored under that scope; rows of
another scope are treated exactly as missing rows, so a 404 does not tell a tenant that another tenant has
a ticket of that id."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from server.auth.principal import Principal
from server.prompts import TicketInput
from server.store import audit, jobs
from server.store import repository as repo
from server.store.models import AuditEvent, Classification, Feedback

T = TypeVar("T")

__all__ = [
    "ErasureCounts",
    "erase_ticket",
    "result_by_request_id",
    "ticket_history",
    "ticket_inputs",
    "ticket_result",
]


def _visible(query: Select[T], principal: Principal) -> Select[T]:
    # The SQL form of Principal.sees: an unscoped principal sees every row, a scoped one only its scope's
    # (NULL-scoped rows, written without keys, are not any tenant's).
    if principal.scope is None:
        return query
    return query.where(Classification.scope == principal.scope)


def result_by_request_id(session: Session, request_id: str, principal: Principal) -> Classification | None:
    query = _visible(select(Classification).where(Classification.request_id == request_id), principal)
    return session.scalars(query).first()


def ticket_result(session: Session, ticket_id: str, principal: Principal) -> Classification | None:
    """The ticket's newest result this principal may see."""
    return repo.get_latest_by_ticket_id(session, ticket_id, scope=principal.scope)


def ticket_history(session: Session, ticket_id: str, principal: Principal) -> list[tuple[str, str]]:
    """(request_id, status) of every visible result of the ticket, oldest first."""
    query = _visible(select(Classification).where(Classification.ticket_id == ticket_id), principal)
    rows = session.execute(
        query.with_only_columns(Classification.request_id, Classification.status).order_by(Classification.id)
    ).all()
    return [(str(r[0]), str(r[1])) for r in rows]


def ticket_inputs(session: Session, ticket_id: str, principal: Principal) -> list[TicketInput]:
    """The distinct texts this ticket was classified with, in the form the result cache keys on (every
    field selection is a namespace of its own, so the text alone finds the entries)."""
    query = _visible(select(Classification).where(Classification.ticket_id == ticket_id), principal)
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    out: list[TicketInput] = []
    for row in session.scalars(query.order_by(Classification.id)):
        key = (row.subject or "", row.body or "", tuple(row.previous_interactions or ()))
        if key not in seen:
            seen.add(key)
            out.append(TicketInput(*key))
    return out


@dataclass(frozen=True)
class ErasureCounts:
    classifications: int
    feedback: int
    audit_payloads: int
    cache_entries: int = 0
    job_tickets: int = 0  # queued in a bulk job, not classified yet: their text cleared

    @property
    def total(self) -> int:
        return self.classifications + self.feedback + self.audit_payloads + self.cache_entries + self.job_tickets

    def to_json(self) -> dict[str, int]:
        return asdict(self)


def erase_ticket(
    session: Session, ticket_id: str, principal: Principal, *, cache_entries: int = 0
) -> ErasureCounts | None:
    """Delete the ticket's results and feedback and erase the payloads of its audit events, and append the
    `erasure` event (counts only, no text), all in one transaction. None when there is nothing to erase (the
    caller answers 404): no visible result and, for a scoped principal, nothing at all, since audit events
    carry no scope and a tenant must not touch another tenant's ticket of the same id.

    `cache_entries` is what the caller already removed from the result cache (it is not in the database)."""
    visible = _visible(select(Classification.id).where(Classification.ticket_id == ticket_id), principal)
    ids = list(session.scalars(visible))
    try:
        queued = jobs.erase_queued(session, ticket_id, principal)
        if not ids and principal.scope is not None and not queued:
            session.rollback()
            return None
        feedback = 0
        if ids:
            # Counted and deleted explicitly: ON DELETE CASCADE would do it, but SQLite enforces it only with
            # the foreign_keys pragma, and the answer must say what was erased.
            feedback = int(
                session.execute(
                    delete(Feedback)
                    .where(Feedback.classification_id.in_(ids))
                    .execution_options(synchronize_session=False)
                ).rowcount  # type: ignore[attr-defined]
            )
            session.execute(
                delete(Classification).where(Classification.id.in_(ids)).execution_options(synchronize_session=False)
            )
        # Audit events carry no scope: a tenant with no result of that id must not erase another's payloads.
        payloads = audit.erase_payloads(session, ticket_id) if ids or principal.scope is None else 0
        counts = ErasureCounts(len(ids), feedback, payloads, cache_entries, queued)
        if counts.total == 0:
            session.rollback()
            return None
        audit.record(session, principal, "erasure", ticket_id=ticket_id, detail=counts.to_json(), commit=False)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return counts


def audit_payload_count(session: Session, ticket_id: str) -> int:
    """Payloads still held for the ticket (0 after an erasure)."""
    query = select(func.count()).where(AuditEvent.ticket_id == ticket_id, AuditEvent.payload.is_not(None))
    return int(session.scalar(query) or 0)


def feedback_json(rows: list[Feedback]) -> list[dict[str, Any]]:
    return [
        {
            "feedback_id": fb.id,
            "created_at": fb.created_at,
            "reviewer": fb.reviewer,
            "corrections": fb.corrections,
            "comment": fb.comment,
            "redacted_at": fb.redacted_at,
        }
        for fb in rows
    ]
