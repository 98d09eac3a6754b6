"""The append-only audit log (table `audit_log`; triggers refuse UPDATE and DELETE except erasing a payload).

Every write goes through `record`, in its own transaction or in the caller's (`commit=False`) when the
event must stand or fall with the change it describes (an erasure, a key revocation)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.auth.principal import Principal
from server.store.models import AuditEvent

__all__ = ["ACTIONS", "erase_payloads", "events", "payload_digest", "record"]

# What is audited. classify: the request ids of one API call; hosted_call: what left the premises.
Action = Literal[
    "classify",
    "feedback",
    "review_read",
    "result_read",
    "hosted_call",
    "promote",
    "rollback",
    "key_create",
    "key_revoke",
    "data_key_rotate",
    "retention_run",
    "erasure",
    "export",
    "audit_read",
    # A `triage retrain` run: detail {verdict: promoted|kept|failed|skipped, candidate, new_corrections, gate}.
    "retrain",
    # `triage report` (it reads ticket text in memory) and `triage ab report`: the window, no text.
    "report",
    "ab_report",
    # POST /v1/jobs: detail {job_id, total, source, filename}; the tickets' own classify rows carry the key.
    "job_create",
    "job_cancel",
]
ACTIONS: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]


def payload_digest(payload: str | bytes) -> str:
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return hashlib.sha256(data).hexdigest()


def record(
    session: Session,
    principal: Principal,
    action: Action,
    *,
    ticket_id: str | None = None,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    payload: str | None = None,
    keep_payload: bool = True,
    commit: bool = True,
) -> AuditEvent:
    """Append one event. `payload` (what left the premises) is kept sealed when `keep_payload`, else only
    its sha256 is (`audit.hosted_payload: hash`)."""
    event = AuditEvent(
        key_id=principal.key_id,
        actor=principal.name,
        action=action,
        ticket_id=ticket_id,
        target=target,
        detail=detail,
        payload=payload if keep_payload else None,
        payload_sha256=payload_digest(payload) if payload is not None else None,
    )
    session.add(event)
    if commit:
        try:
            session.commit()
        except Exception:
            session.rollback()
            raise
    else:
        session.flush()
    return event


def events(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actions: Sequence[str] | None = None,
    ticket_id: str | None = None,
    limit: int | None = None,
) -> list[AuditEvent]:
    query = select(AuditEvent).order_by(AuditEvent.id)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if actions:
        query = query.where(AuditEvent.action.in_(list(actions)))
    if ticket_id is not None:
        query = query.where(AuditEvent.ticket_id == ticket_id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query).all())


def erase_payloads(session: Session, ticket_id: str) -> int:
    """Erase the payloads of a ticket's events (the only change the append-only triggers allow); the events
    themselves stay. Runs in the caller's transaction."""
    result = session.execute(
        update(AuditEvent)
        .where(AuditEvent.ticket_id == ticket_id, AuditEvent.payload.is_not(None))
        .values(payload=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
