"""Bulk jobs in the store (tables `jobs` and `job_tickets`, migration 0007).

An accepted job is never lost: the job and every ticket are committed in one transaction (with the
`job_create` audit event) before POST /v1/jobs answers 202. Replicas sharing a PostgreSQL store split the
work by claiming small chunks: `claim` takes queued tickets with `FOR UPDATE SKIP LOCKED`, so two replicas
never take the same ticket, and marks them `running` under the replica's id. A claim not finished within
`jobs.lease_s` (its replica died) is claimed again. SQLite serves one node: at start-up every `running`
ticket is put back in the queue (`requeue_running`).

Visibility: a job is read by the key that created it, or by keys of the scope it was created in; any
other job is treated exactly as a missing one (404)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from server.auth.principal import Principal
from server.prompts import TicketInput
from server.store import audit
from server.store.models import OPEN_JOB_STATUSES, Classification, Job, JobTicket, utcnow

__all__ = [
    "ClaimedTicket",
    "JobResult",
    "cancel_job",
    "Settled",
    "claim",
    "create_job",
    "finish",
    "new_job_id",
    "release",
    "requeue_running",
    "results_page",
    "visible_job",
]

SETTLED = ("done", "failed")


class NewTicket(Protocol):
    """A ticket of an accepted file (server.bulk.BulkTicket; the store does not import the bulk reader)."""

    @property
    def ticket_id(self) -> str: ...

    @property
    def ticket(self) -> TicketInput: ...


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex[:24]}"


def create_job(
    session: Session, principal: Principal, *, source: str, filename: str, tickets: Sequence[NewTicket]
) -> Job:
    """Store the job, its tickets and the audit event in one transaction."""
    job = Job(
        id=new_job_id(),
        status="queued",
        created_at=utcnow(),
        source=source,
        filename=filename[:256],
        total=len(tickets),
        done=0,
        failed=0,
        key_id=principal.key_id,
        scope=principal.scope,
        actor=principal.name[:128],
    )
    try:
        session.add(job)
        session.flush()
        if tickets:
            session.execute(
                insert(JobTicket),
                [
                    {
                        "job_id": job.id,
                        "position": pos,
                        "ticket_id": t.ticket_id,
                        "status": "queued",
                        "subject": t.ticket.subject,
                        "body": t.ticket.body,
                        "previous_interactions": list(t.ticket.previous_interactions) or None,
                    }
                    for pos, t in enumerate(tickets)
                ],
            )
        audit.record(
            session,
            principal,
            "job_create",
            target=job.id,
            detail={"job_id": job.id, "total": job.total, "source": source, "filename": job.filename},
            commit=False,
        )
        session.commit()
    except Exception:
        session.rollback()
        raise
    return job


def visible_job(session: Session, job_id: str, principal: Principal) -> Job | None:
    query = select(Job).where(Job.id == job_id)
    mine = Job.key_id.is_(None) if principal.key_id is None else Job.key_id == principal.key_id
    query = query.where(or_(mine, Job.scope == principal.scope) if principal.scope is not None else mine)
    return session.scalars(query).first()


def cancel_job(session: Session, job: Job, principal: Principal) -> bool:
    """Stop a queued or running job: its queued tickets become failed lines ("job cancelled") and lose their
    text; tickets being classified now finish and are recorded. False when the job had already ended."""
    now = utcnow()
    try:
        ended = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.status.in_(OPEN_JOB_STATUSES))
            .values(status="cancelled", finished_at=now)
            .execution_options(synchronize_session=False)
        )
        if not ended.rowcount:  # type: ignore[attr-defined]
            session.rollback()
            return False
        _fail_queued(session, JobTicket.job_id == job.id, "job cancelled", now)
        failed = session.scalar(select(func.count()).where(JobTicket.job_id == job.id, JobTicket.status == "failed"))
        session.execute(update(Job).where(Job.id == job.id).values(failed=int(failed or 0)))
        audit.record(session, principal, "job_cancel", target=job.id, detail={"job_id": job.id}, commit=False)
        session.commit()
    except Exception:
        session.rollback()
        raise
    session.refresh(job)
    return True


# A ticket's text is held only until it is settled: the classification row (or nothing) holds it after.
NO_TEXT: dict[str, Any] = {"subject": None, "body": None, "previous_interactions": None}


@dataclass(frozen=True)
class ClaimedTicket:
    id: int  # the job_tickets row
    job_id: str
    ticket_id: str
    ticket: TicketInput
    key_id: int | None  # the job's creator: its classification rows are stored under its key and scope
    scope: str | None


def claim(session: Session, worker: str, k: int, lease_s: float) -> list[ClaimedTicket]:
    """Up to `k` tickets, oldest job first, now `running` under `worker`; one transaction."""
    now = utcnow()
    stale = now - timedelta(seconds=lease_s)
    claimable = or_(JobTicket.status == "queued", and_(JobTicket.status == "running", JobTicket.claimed_at < stale))
    query = (
        select(JobTicket, Job.key_id, Job.scope)
        .join(Job, Job.id == JobTicket.job_id)
        .where(Job.status.in_(OPEN_JOB_STATUSES), claimable)
        .order_by(JobTicket.id)
        .limit(k)
    )
    if session.get_bind().dialect.name == "postgresql":
        # Rows another replica is claiming right now are skipped, not waited for: each takes its own chunk.
        query = query.with_for_update(skip_locked=True, of=JobTicket)
    try:
        rows = session.execute(query).all()
        if not rows:
            session.rollback()
            return []
        ids = [r[0].id for r in rows]
        # Compare-and-set: the condition is checked again as the rows are written, so where the SELECT took no
        # row locks (SQLite) a ticket another claimer took meanwhile is not taken twice.
        session.execute(
            update(JobTicket)
            .where(JobTicket.id.in_(ids), claimable)
            .values(status="running", claimed_by=worker, claimed_at=now)
            .execution_options(synchronize_session=False)
        )
        got = set(
            session.scalars(
                select(JobTicket.id).where(
                    JobTicket.id.in_(ids), JobTicket.claimed_by == worker, JobTicket.claimed_at == now
                )
            )
        )
        rows = [r for r in rows if r[0].id in got]
        if not rows:
            session.commit()
            return []
        session.execute(
            update(Job)
            .where(Job.id.in_({r[0].job_id for r in rows}), Job.status == "queued")
            .values(status="running", started_at=now)
            .execution_options(synchronize_session=False)
        )
        claimed = [
            ClaimedTicket(
                t.id,
                t.job_id,
                t.ticket_id,
                TicketInput(t.subject or "", t.body or "", tuple(t.previous_interactions or ())),
                key_id,
                scope,
            )
            for t, key_id, scope in rows
        ]
        session.commit()
    except Exception:
        session.rollback()
        raise
    return claimed


def release(session: Session, worker: str, ids: Sequence[int]) -> None:
    """Put tickets this worker claimed back in the queue (the engine was overloaded, the store failed)."""
    if not ids:
        return
    session.execute(
        update(JobTicket)
        .where(JobTicket.id.in_(list(ids)), JobTicket.claimed_by == worker, JobTicket.status == "running")
        .values(status="queued", claimed_by=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()


def requeue_running(session: Session) -> int:
    """Single node (SQLite) start-up: no other process can be classifying them."""
    result = session.execute(
        update(JobTicket)
        .where(JobTicket.status == "running")
        .values(status="queued", claimed_by=None, claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Settled:
    id: int  # the job_tickets row
    job_id: str
    request_id: str | None  # the stored classification (None: refused before classification)
    error: str | None  # None: answered


def finish(session: Session, worker: str, settled: Sequence[Settled]) -> None:
    """Record answered tickets, clear their text (the classification row holds it now), refresh their jobs'
    counts, and mark a job `done` once none of its tickets is left. A ticket whose claim was taken over
    by another replica (lease expired) is left to that replica."""
    if not settled:
        return
    now = utcnow()
    job_ids = sorted({s.job_id for s in settled})
    try:
        # The jobs' rows are locked first: two replicas finishing a job's last chunks at once must not both
        # count the other's tickets as still running (the job would never be marked done).
        session.execute(select(Job.id).where(Job.id.in_(job_ids)).order_by(Job.id).with_for_update()).all()
        for s in settled:
            session.execute(
                update(JobTicket)
                .where(JobTicket.id == s.id, JobTicket.claimed_by == worker, JobTicket.status == "running")
                .values(
                    status="failed" if s.error is not None else "done",
                    request_id=s.request_id,
                    error=s.error,
                    finished_at=now,
                    **NO_TEXT,
                )
                .execution_options(synchronize_session=False)
            )
        _refresh_counts(session, job_ids, now)
        session.commit()
    except Exception:
        session.rollback()
        raise


def _refresh_counts(session: Session, job_ids: Sequence[str], now: datetime) -> None:
    """The jobs' done/failed counts from their tickets, and `done` once none is left (caller holds the jobs' locks)."""
    for job_id in job_ids:
        counts: dict[str, int] = {
            str(status): int(n)
            for status, n in session.execute(
                select(JobTicket.status, func.count()).where(JobTicket.job_id == job_id).group_by(JobTicket.status)
            ).all()
        }
        left = counts.get("queued", 0) + counts.get("running", 0)
        values: dict[str, Any] = {"done": counts.get("done", 0), "failed": counts.get("failed", 0)}
        if left == 0:
            values |= {"status": "done", "finished_at": now}
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(OPEN_JOB_STATUSES))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def erase_queued(session: Session, ticket_id: str, principal: Principal) -> int:
    """Erasure (DELETE /v1/tickets/{id}) of job tickets of that id not classified yet: their sealed text is
    cleared and each becomes a failed line ("erased"), in the caller's transaction (no commit). A ticket a
    replica is classifying right now is not reached: its answer is stored when it finishes."""
    query = (
        select(JobTicket.id, JobTicket.job_id)
        .join(Job, Job.id == JobTicket.job_id)
        .where(JobTicket.ticket_id == ticket_id, JobTicket.status == "queued")
    )
    if principal.scope is not None:  # as for results: a tenant reaches only its own jobs
        query = query.where(Job.scope == principal.scope)
    rows = session.execute(query).all()
    if not rows:
        return 0
    now = utcnow()
    job_ids = sorted({str(job_id) for _, job_id in rows})
    session.execute(select(Job.id).where(Job.id.in_(job_ids)).order_by(Job.id).with_for_update()).all()
    erased = _fail_queued(session, JobTicket.id.in_([int(i) for i, _ in rows]), "erased before it was classified", now)
    _refresh_counts(session, job_ids, now)
    return erased


def _fail_queued(session: Session, which: ColumnElement[bool], error: str, now: datetime) -> int:
    """The queued tickets `which` selects become failed lines saying `error`, their sealed text cleared."""
    result = session.execute(
        update(JobTicket)
        .where(which, JobTicket.status == "queued")
        .values(status="failed", error=error, finished_at=now, **NO_TEXT)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class JobResult:
    """One settled ticket of a job and the stored classification that answered it (None: refused before
    classification, or the row was erased or purged since)."""

    position: int
    ticket_id: str
    status: str
    request_id: str | None
    error: str | None
    row: Classification | None

    def line(self) -> dict[str, Any]:
        """The record `triage batch` writes for a ticket (server.bulk.result_record), from the stored result,
        plus its request_id and route (for GET /v1/results/{request_id} and feedback)."""
        row = self.row
        if row is None or row.status != "done" or row.prediction is None:
            error = self.error or (row.error if row is not None else None) or "result no longer stored"
            return {"ticket_id": self.ticket_id, "error": error, "request_id": self.request_id}
        return {
            "ticket_id": self.ticket_id,
            **row.prediction,
            "confidence": row.confidence,
            "needs_review": row.needs_review,
            "model": {"base": row.model_base, "adapter": row.model_adapter},
            "prompt_version": row.prompt_version,
            "usage": {"prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens},
            "input_truncated": row.input_truncated,
            "request_id": row.request_id,
            "route": row.route,
        }


def results_page(session: Session, job_id: str, offset: int, limit: int) -> list[JobResult]:
    """Settled tickets of the job in file order, `offset` of them skipped. While the job runs, only the settled
    prefix of the file (up to its first ticket not answered yet): tickets settle out of order (chunks, several
    replicas), and a line shown at an offset must keep that offset, or a caller paging would skip lines."""
    first_open = session.scalar(
        select(func.min(JobTicket.position)).where(
            JobTicket.job_id == job_id, JobTicket.status.in_(("queued", "running"))
        )
    )
    query = (
        select(JobTicket.position, JobTicket.ticket_id, JobTicket.status, JobTicket.request_id, JobTicket.error)
        .add_columns(Classification)
        .outerjoin(Classification, Classification.request_id == JobTicket.request_id)
        .where(JobTicket.job_id == job_id, JobTicket.status.in_(SETTLED))
        .order_by(JobTicket.position)
        .offset(offset)
        .limit(limit)
    )
    if first_open is not None:
        query = query.where(JobTicket.position < first_open)
    return [JobResult(int(p), str(t), str(s), r, e, row) for p, t, s, r, e, row in session.execute(query).all()]


def per_second(job: Job, now: datetime | None = None) -> float | None:
    """Tickets settled per second since the job started (to its end, once finished)."""
    if job.started_at is None:
        return None
    end = job.finished_at or now or utcnow()
    seconds = (end - job.started_at).total_seconds()
    return round((job.done + job.failed) / seconds, 3) if seconds > 0 else None
