"""Retention: stored data older than the configured age is purged, or anonymised where it is kept for training.

- classifications older than `retention.tables.classifications` (else `retention.days`) days are deleted with
  their feedback; one that has feedback is instead kept for training when `keep_feedback_for_training`: its
  labels and the corrections stay, its text (subject, body, earlier messages, the free-text answer fields,
  the feedback comments) is redacted by the same redactor the hosted fallback uses, its raw model output is
  dropped, and its feedback is marked `redacted_at`;
- feedback older than `retention.tables.feedback` days is deleted (unset: feedback lives as long as its
  classification, redacted as above);
- audit payloads (what was sent to the hosted API) older than `retention.tables.audit_payloads` (else
  `retention.days`) days are erased; the audit events themselves are append-only and stay;
- bulk jobs (POST /v1/jobs) that ended more than `retention.tables.jobs` (else `retention.days`) days ago are
  deleted with their ticket rows (ids, positions, errors: their text was cleared when each was answered).
  A job still queued or running is never touched: an accepted ticket is not lost to retention.

Pending rows are never touched (a request may still be running). Each run is audited as `retention_run`
with its counts (a dry run counts and changes nothing, and is not audited). The result cache is not
touched: its entries expire after `cache.ttl_s`, which should not exceed the retention period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, delete, exists, func, select, update
from sqlalchemy.orm import Session, selectinload, sessionmaker

from server.auth.principal import Principal
from server.config import Settings
from server.schema import output_layout
from server.store import audit
from server.store.models import AuditEvent, Classification, Feedback, Job, JobTicket, utcnow
from server.taxonomy import load_taxonomy

if TYPE_CHECKING:
    from typing import TypeAlias

    from server.privacy.redact import Redactor

    # A redactor, or a function building one (called only when a row is to be redacted).
    RedactorSource: TypeAlias = Redactor | Callable[[], Redactor] | None

__all__ = ["RETENTION_PRINCIPAL", "RetentionReport", "cutoffs", "run_retention", "start_periodic", "stop_periodic"]

log = logging.getLogger(__name__)

BATCH = 200  # rows per transaction: a long purge never holds one huge transaction
RETENTION_PRINCIPAL = Principal("server:retention", "admin")


@dataclass
class RetentionReport:
    dry_run: bool
    now: datetime
    # Rows created before these times are in scope; None: that table is kept.
    classifications_before: datetime | None
    feedback_before: datetime | None
    audit_payloads_before: datetime | None
    classifications_deleted: int = 0
    classifications_redacted: int = 0  # kept for training with their text redacted
    feedback_deleted: int = 0
    feedback_redacted: int = 0
    audit_payloads_erased: int = 0
    jobs_before: datetime | None = None  # jobs that ended before this are in scope
    jobs_deleted: int = 0
    job_tickets_deleted: int = 0
    redactions: dict[str, int] = field(default_factory=dict)  # entity type -> values replaced

    def counts(self) -> dict[str, int]:
        return {
            "classifications_deleted": self.classifications_deleted,
            "classifications_redacted": self.classifications_redacted,
            "feedback_deleted": self.feedback_deleted,
            "feedback_redacted": self.feedback_redacted,
            "audit_payloads_erased": self.audit_payloads_erased,
            "jobs_deleted": self.jobs_deleted,
            "job_tickets_deleted": self.job_tickets_deleted,
        }

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("now", "classifications_before", "feedback_before", "audit_payloads_before", "jobs_before"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data


def cutoffs(settings: Settings, now: datetime) -> tuple[datetime | None, datetime | None, datetime | None]:
    """(classifications, feedback, audit payloads): rows created before these are in scope; None = kept."""
    retention = settings.retention

    def before(days: float | None) -> datetime | None:
        return now - timedelta(days=days) if days is not None else None

    tables = retention.tables
    return (
        before(tables.get("classifications", retention.days)),
        before(tables.get("feedback")),
        before(tables.get("audit_payloads", retention.days)),
    )


def jobs_cutoff(settings: Settings, now: datetime) -> datetime | None:
    """Bulk jobs that ended before this are in scope; None = kept."""
    days = settings.retention.tables.get("jobs", settings.retention.days)
    return now - timedelta(days=days) if days is not None else None


def enabled(settings: Settings) -> bool:
    return settings.retention.days is not None or bool(settings.retention.tables)


def _label_paths(settings: Settings) -> set[tuple[str, ...]]:
    return {slot.path for slot in output_layout(load_taxonomy(settings.taxonomy)) if slot.spec.is_label}


def _text_leaves(value: Any, labels: set[tuple[str, ...]], path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of the free-text strings of a stored answer (every string that is not a label of the served
    taxonomy: an answer of another taxonomy loses more than needed, never keeps text)."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _text_leaves(child, labels, (*path, str(key)))
    elif isinstance(value, str) and path not in labels:
        yield path


def _set_path(value: dict[str, Any], path: tuple[str, ...], new: str) -> None:
    target = value
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new


def _get_path(value: dict[str, Any], path: tuple[str, ...]) -> str:
    target: Any = value
    for key in path:
        target = target[key]
    return str(target)


class _Anonymiser:
    """Redacts a kept row in place: one redactor call per row, so one person is one placeholder across the
    subject, the body, the history, the answer and the comments."""

    def __init__(self, settings: Settings, redactor: RedactorSource) -> None:
        self._settings = settings
        self._source = redactor
        self._redactor: Redactor | None = None
        self._labels = _label_paths(settings)

    def _get(self) -> Redactor:
        if self._redactor is None:  # built on first need: loading the PII models costs seconds
            source = self._source
            self._redactor = source() if callable(source) else source or _build_redactor(self._settings)
        return self._redactor

    def __call__(self, row: Classification, now: datetime, report: RetentionReport) -> None:
        prediction = dict(row.prediction) if isinstance(row.prediction, dict) else None
        leaves = list(_text_leaves(prediction, self._labels)) if prediction is not None else []
        comments = [fb for fb in row.feedback if fb.comment]
        history = list(row.previous_interactions or [])
        texts = [
            row.subject or "",
            row.body or "",
            *history,
            *(_get_path(prediction, p) for p in leaves if prediction is not None),
            *(fb.comment or "" for fb in comments),
        ]
        redacted = self._get().redact(texts)
        out = iter(redacted.texts)
        subject, body = next(out), next(out)
        row.subject = subject if row.subject is not None else None
        row.body = body
        if row.previous_interactions is not None:
            row.previous_interactions = [next(out) for _ in history]
        if prediction is not None:
            prediction = _deep_copy(prediction)
            for p in leaves:
                _set_path(prediction, p, next(out))
            row.prediction = prediction
        row.raw_output = None  # the model's raw text repeats the answer unredacted
        for fb in comments:
            fb.comment = next(out)
        for fb in row.feedback:
            fb.redacted_at = now
        for entity, n in redacted.counts.items():
            report.redactions[entity] = report.redactions.get(entity, 0) + n
        report.feedback_redacted += len(row.feedback)


def _build_redactor(settings: Settings) -> Redactor:
    from server.privacy.redact import Redactor

    return Redactor(settings.redaction)


def _deep_copy(value: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in value.items()}


def _batches(session: Session, query: Select[int]) -> Iterator[list[int]]:
    """Ids in ascending batches, re-queried after each batch (rows may leave the set as they are processed)."""
    last = 0
    while True:
        ids = list(session.scalars(query.where(Classification.id > last).order_by(Classification.id).limit(BATCH)))
        if not ids:
            return
        yield ids
        last = ids[-1]


def run_retention(
    session_factory: sessionmaker[Session],
    settings: Settings,
    principal: Principal,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    redactor: RedactorSource = None,
) -> RetentionReport:
    """Apply the retention settings once. `redactor` (or a function returning one) is asked for only when a
    row is to be redacted; None: one is built from `settings.redaction` then."""
    now = now or utcnow()
    c_before, f_before, a_before = cutoffs(settings, now)
    report = RetentionReport(dry_run, now, c_before, f_before, a_before, jobs_before=jobs_cutoff(settings, now))
    keep_for_training = settings.retention.keep_feedback_for_training
    with session_factory() as session:
        try:
            if f_before is not None:
                old_feedback = Feedback.created_at < f_before
                if dry_run:
                    report.feedback_deleted = int(session.scalar(select(func.count()).where(old_feedback)) or 0)
                else:
                    result = session.execute(delete(Feedback).where(old_feedback))
                    report.feedback_deleted = int(result.rowcount)  # type: ignore[attr-defined]
                    session.commit()

            if c_before is not None:
                _classifications(session, settings, report, c_before, keep_for_training, redactor, dry_run)

            if a_before is not None:
                old_payload = (AuditEvent.at < a_before) & AuditEvent.payload.is_not(None)
                if dry_run:
                    report.audit_payloads_erased = int(session.scalar(select(func.count()).where(old_payload)) or 0)
                else:
                    result = session.execute(
                        update(AuditEvent)
                        .where(old_payload)
                        .values(payload=None)
                        .execution_options(synchronize_session=False)
                    )
                    report.audit_payloads_erased = int(result.rowcount)  # type: ignore[attr-defined]
                    session.commit()

            if report.jobs_before is not None:
                _jobs(session, report, report.jobs_before, dry_run)

            if not dry_run:
                audit.record(
                    session, principal, "retention_run", detail={**report.counts(), "redactions": report.redactions}
                )
        except Exception:
            session.rollback()
            raise
    return report


def _classifications(
    session: Session,
    settings: Settings,
    report: RetentionReport,
    before: datetime,
    keep_for_training: bool,
    redactor: RedactorSource,
    dry_run: bool,
) -> None:
    old = (Classification.created_at < before) & (Classification.status != "pending")
    has_feedback = exists().where(Feedback.classification_id == Classification.id)
    # Already anonymised: every feedback row carries redacted_at (new feedback on it since: redact again).
    unredacted = exists().where(Feedback.classification_id == Classification.id, Feedback.redacted_at.is_(None))
    purge = select(Classification.id).where(old)
    if keep_for_training:
        purge = purge.where(~has_feedback)
    if dry_run:
        report.classifications_deleted = int(session.scalar(select(func.count()).select_from(purge.subquery())) or 0)
    else:
        for ids in _batches(session, purge):
            # Feedback is deleted explicitly: ON DELETE CASCADE needs SQLite's foreign_keys pragma.
            feedback = session.execute(delete(Feedback).where(Feedback.classification_id.in_(ids)))
            session.execute(delete(Classification).where(Classification.id.in_(ids)))
            session.commit()
            report.classifications_deleted += len(ids)
            report.feedback_deleted += int(feedback.rowcount)  # type: ignore[attr-defined]
    if not keep_for_training:
        return
    keep = select(Classification.id).where(old, unredacted)
    if dry_run:
        report.classifications_redacted = int(session.scalar(select(func.count()).select_from(keep.subquery())) or 0)
        return
    anonymise = _Anonymiser(settings, redactor)
    for ids in _batches(session, keep):
        rows = session.scalars(
            select(Classification).where(Classification.id.in_(ids)).options(selectinload(Classification.feedback))
        ).all()
        for row in rows:
            anonymise(row, report.now, report)
        session.commit()
        report.classifications_redacted += len(rows)


def _jobs(session: Session, report: RetentionReport, before: datetime, dry_run: bool) -> None:
    ended = Job.status.in_(("done", "cancelled")) & (Job.finished_at < before)
    if dry_run:
        report.jobs_deleted = int(session.scalar(select(func.count()).where(ended)) or 0)
        report.job_tickets_deleted = int(
            session.scalar(
                select(func.count()).select_from(JobTicket).join(Job, Job.id == JobTicket.job_id).where(ended)
            )
            or 0
        )
        return
    while ids := list(session.scalars(select(Job.id).where(ended).order_by(Job.id).limit(BATCH))):
        # Ticket rows explicitly: ON DELETE CASCADE needs SQLite's foreign_keys pragma.
        tickets = session.execute(delete(JobTicket).where(JobTicket.job_id.in_(ids)))
        session.execute(delete(Job).where(Job.id.in_(ids)))
        session.commit()
        report.jobs_deleted += len(ids)
        report.job_tickets_deleted += int(tickets.rowcount)  # type: ignore[attr-defined]


# -- the server's periodic task ---------------------------------------------------------------------
def start_periodic(settings: Settings, sessions: sessionmaker[Session]) -> asyncio.Task[None] | None:
    """The lifespan's retention task: a run at start, then every `retention.interval_s`; None when retention is
    not configured or the interval is 0 (only `triage retention run`)."""
    if not enabled(settings) or settings.retention.interval_s <= 0:
        return None
    interval = settings.retention.interval_s
    built: list[Redactor] = []

    def redactor() -> Redactor:  # built once, on the first run that redacts, and kept for the next runs
        if not built:
            built.append(_build_redactor(settings))
        return built[0]

    def once() -> RetentionReport:
        return run_retention(sessions, settings, RETENTION_PRINCIPAL, redactor=redactor)

    async def loop() -> None:
        while True:
            try:
                report = await asyncio.to_thread(once)
                if any(report.counts().values()):
                    log.info("retention: %s", report.counts())
            except Exception:  # noqa: BLE001 - a failed run (database down) must not end the schedule
                log.exception("retention run failed; next try in %.0f s", interval)
            await asyncio.sleep(interval)

    return asyncio.create_task(loop(), name="retention")


async def stop_periodic(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
