"""Every `triage_` Prometheus metric, defined here and nowhere else, and the exposition of /metrics.

Process metrics (counters, histograms, gauges) are module-level prometheus-client objects that the service,
the batcher, the cache, the hosted fallback and the auth middleware update through the small functions
below (so call sites stay one line and the label spelling lives in one place).

Store metrics (accuracy against human review, override rate, drift PSI, the last retrain, the bulk-job
queue) are not counted by any process: `StoreCollector` computes them from the shared database at scrape
time (cached for `metrics.store_cache_s`), so every replica reports the same numbers. Aggregate them with
`max`, never `sum`.

Several processes: with PROMETHEUS_MULTIPROC_DIR set *before this module is imported*, prometheus-client
writes each process's values to files in that directory and /metrics (any worker) sums them
(`MultiProcessCollector`). Use it for several uvicorn/gunicorn workers on one host sharing one directory
(empty it at start-up: stale files of a previous run would be added in). Replicas on several hosts each
serve their own /metrics and Prometheus scrapes every one of them; `sum by (...)` across instances.
Gauges say how they combine across workers (`multiprocess_mode`): queue depth sums over live workers,
the breaker state takes the maximum (any worker with an open breaker shows it open).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from server.config import MetricsSettings
from server.results import correction_of

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def multiprocess_dir() -> str | None:
    """The multiprocess directory, when multiprocess mode is on (read as prometheus-client reads it)."""
    return os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower()) or None


# Seconds. A ticket takes ~0.05 s from the cache and up to minutes on a loaded CPU engine; the buckets are
# dense where the SLOs are (1-30 s) so P95/P99 interpolate within a few percent.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
    180.0, 300.0, 600.0,
)  # fmt: skip
# USD per ticket: 0 (cache) .. a few cents (a hosted call on a large model).
COST_BUCKETS: tuple[float, ...] = (0.0, 1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1)
CONFIDENCE_BUCKETS: tuple[float, ...] = tuple(round(i / 20, 2) for i in range(1, 21))  # 0.05 .. 1.0
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

NO_VARIANT = "none"  # the `variant` label of a result outside any A/B split

# -- HTTP ---------------------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "triage_http_requests", "HTTP requests answered, by route template and status.", ["endpoint", "method", "status"]
)
HTTP_DURATION = Histogram(
    "triage_http_request_duration_seconds",
    "Wall time of an HTTP request, first byte in to last byte out.",
    ["endpoint", "method"],
    buckets=LATENCY_BUCKETS,
)
AUTH_REFUSALS = Counter(
    "triage_auth_refusals",
    "Requests refused before any work: unauthorized (401), forbidden (403), rate_limited (429), starting, "
    "database_unavailable.",
    ["reason"],
)

# -- classification -----------------------------------------------------------------------------------
CLASSIFICATION_DURATION = Histogram(
    "triage_classification_duration_seconds",
    "Latency of each classified ticket (its request's wall time in the service), by route taken.",
    ["endpoint", "engine", "route", "variant"],
    buckets=LATENCY_BUCKETS,
)
ROUTES = Counter(
    "triage_routes",
    "Tickets settled per route: local, local+review, hosted, human, cache.",
    ["engine", "route", "variant"],
)
CLASSIFICATION_ERRORS = Counter(
    "triage_classification_errors",
    "Tickets that ended without a result, by kind (overloaded, unavailable, timeout, engine, store).",
    ["endpoint", "engine", "kind", "variant"],
)
COST = Histogram(
    "triage_classification_cost_usd",
    "Cost of each classified ticket in USD (engine time at routing.cost_per_cpu_second plus hosted tokens).",
    ["engine", "route", "variant"],
    buckets=COST_BUCKETS,
)
CONFIDENCE = Histogram(
    "triage_confidence",
    "Confidence of each answered label field.",
    ["field", "engine", "variant"],
    buckets=CONFIDENCE_BUCKETS,
)
INVALID_OUTPUTS = Counter(
    "triage_invalid_outputs",
    "Model answers that were not valid for the schema (local: decoder errors; hosted: answers failing the check).",
    ["engine"],
)

# -- engines (the continuous batcher) -----------------------------------------------------------------
QUEUE_DEPTH = Gauge(
    "triage_queue_depth", "Tickets waiting for the decode loop.", ["engine"], multiprocess_mode="livesum"
)
QUEUE_CAPACITY = Gauge(
    "triage_queue_capacity", "engine.max_queue: the queue depth beyond which tickets get 429.", ["engine"],
    multiprocess_mode="livesum",
)  # fmt: skip
IN_FLIGHT = Gauge(
    "triage_engine_in_flight", "Tickets inside the decode loop now.", ["engine"], multiprocess_mode="livesum"
)
QUEUE_WAIT = Histogram(
    "triage_queue_wait_seconds", "Time a ticket waited in the queue before the decode loop took it.", ["engine"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
MODEL_SECONDS = Histogram(
    "triage_model_seconds", "Time a ticket spent in the decode loop (taken to answered).", ["engine"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
MODEL_BUSY = Counter("triage_model_busy_seconds", "Seconds the decode loop ran (the engine had work).", ["engine"])
BATCH_SIZE = Histogram(
    "triage_batch_size",
    "Tickets in the decode loop each time new tickets joined it (continuous batching's batch size).",
    ["engine"],
    buckets=BATCH_BUCKETS,
)
ADMISSION_REFUSALS = Counter(
    "triage_admission_refusals", "Tickets refused with 429 by the engine: queue full or past their deadline.",
    ["engine", "reason"],
)  # fmt: skip
TOKENS = Counter("triage_tokens", "Model tokens, direction in (prompt) or out (completion).", ["engine", "direction"])

# -- result cache ---------------------------------------------------------------------------------------
CACHE_LOOKUPS = Counter("triage_cache_lookups", "Result-cache lookups by outcome: exact, near or miss.", ["kind"])

# -- hosted fallback ------------------------------------------------------------------------------------
HOSTED_CALLS = Counter(
    "triage_hosted_calls",
    "Hosted fallback attempts: outcome success/failure (reached the provider) or rejected (never sent).",
    ["outcome", "reason"],
)
HOSTED_DURATION = Histogram(
    "triage_hosted_duration_seconds", "Wall time of a hosted attempt (retries included).", buckets=LATENCY_BUCKETS
)
BREAKER_STATE = Gauge(
    "triage_hosted_breaker_state",
    "The hosted fallback's circuit breaker: 1 for its current state (closed, open, half_open).",
    ["state"],
    multiprocess_mode="livemax",
)
BREAKER_OPENED = Counter("triage_hosted_breaker_opened", "Times the circuit breaker opened.")
BREAKER_STATES: tuple[str, ...] = ("closed", "open", "half_open")

ROUTE_NAMES: tuple[str, ...] = ("local", "local+review", "hosted", "human", "cache")


# -- call-site helpers ----------------------------------------------------------------------------------
def label(value: str | None, default: str = NO_VARIANT) -> str:
    return value if value else default


def observe_http(endpoint: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(endpoint, method, str(status)).inc()
    HTTP_DURATION.labels(endpoint, method).observe(seconds)


def auth_refused(reason: str) -> None:
    AUTH_REFUSALS.labels(reason).inc()


@dataclass(frozen=True)
class TicketOutcome:
    """What the service knows of one settled ticket, for the classification metrics."""

    endpoint: str
    engine: str
    variant: str | None
    route: str | None = None  # None: no result (error_kind says why)
    seconds: float = 0.0
    cost_usd: float = 0.0
    confidence: Mapping[str, float | None] = field(default_factory=dict)
    error_kind: str | None = None


def observe_ticket(t: TicketOutcome) -> None:
    variant = label(t.variant)
    if t.route is None:
        CLASSIFICATION_ERRORS.labels(t.endpoint, t.engine, t.error_kind or "engine", variant).inc()
        return
    CLASSIFICATION_DURATION.labels(t.endpoint, t.engine, t.route, variant).observe(t.seconds)
    ROUTES.labels(t.engine, t.route, variant).inc()
    COST.labels(t.engine, t.route, variant).observe(max(t.cost_usd, 0.0))
    for name, value in t.confidence.items():
        if value is not None:
            CONFIDENCE.labels(name, t.engine, variant).observe(value)


def engine_started(engine: str, capacity: int) -> None:
    QUEUE_CAPACITY.labels(engine).set(capacity)
    QUEUE_DEPTH.labels(engine).set(0)
    IN_FLIGHT.labels(engine).set(0)


def engine_stopped(engine: str) -> None:
    for gauge in (QUEUE_CAPACITY, QUEUE_DEPTH, IN_FLIGHT):
        gauge.labels(engine).set(0)


def queue_changed(engine: str, depth: int, in_flight: int) -> None:
    QUEUE_DEPTH.labels(engine).set(depth)
    IN_FLIGHT.labels(engine).set(in_flight)


def admission_refused(engine: str, reason: str, n: int) -> None:
    ADMISSION_REFUSALS.labels(engine, reason).inc(n)


def tickets_taken(engine: str, waits_s: Iterable[float], batch_size: int) -> None:
    wait = QUEUE_WAIT.labels(engine)
    for w in waits_s:
        wait.observe(max(w, 0.0))
    BATCH_SIZE.labels(engine).observe(batch_size)


def ticket_answered(engine: str, service_s: float, result: object) -> None:
    """One delivery of the decode loop: its time in the loop, its tokens, or an invalid output."""
    MODEL_SECONDS.labels(engine).observe(max(service_s, 0.0))
    prompt = getattr(result, "prompt_tokens", None)
    completion = getattr(result, "completion_tokens", None)
    if isinstance(prompt, int):
        TOKENS.labels(engine, "in").inc(prompt)
    if isinstance(completion, int):
        TOKENS.labels(engine, "out").inc(completion)
    if isinstance(result, Exception):  # a per-ticket error of a decode loop is an undecodable answer
        INVALID_OUTPUTS.labels(engine).inc()


def model_busy(engine: str, seconds: float) -> None:
    MODEL_BUSY.labels(engine).inc(max(seconds, 0.0))


def cache_lookup(kind: str | None) -> None:
    CACHE_LOOKUPS.labels(kind or "miss").inc()


def hosted_call(outcome: str, reason: str = "", seconds: float | None = None) -> None:
    HOSTED_CALLS.labels(outcome, reason).inc()
    if seconds is not None:
        HOSTED_DURATION.observe(seconds)


def hosted_answer(input_tokens: int, output_tokens: int, valid: bool) -> None:
    TOKENS.labels("hosted", "in").inc(max(input_tokens, 0))
    TOKENS.labels("hosted", "out").inc(max(output_tokens, 0))
    if not valid:
        INVALID_OUTPUTS.labels("hosted").inc()


def breaker_state(state: str) -> None:
    for s in BREAKER_STATES:
        BREAKER_STATE.labels(s).set(1 if s == state else 0)


def breaker_opened() -> None:
    BREAKER_OPENED.inc()


# -- store metrics (computed from the shared database at scrape time) ------------------------------------
# The label fields stored in plain columns (a reviewer's correction of each is found by `correction_of`).
REVIEW_FIELDS: tuple[str, ...] = ("category", "priority", "sentiment")
UNLABELLED = "none"  # the `label` of a prediction that had no value (a human-bound or partial answer)


@dataclass
class ReviewCounts:
    """Per (field, predicted label): predictions a reviewer saw, and those the reviewer changed."""

    reviewed: dict[tuple[str, str], int] = field(default_factory=dict)
    overridden: dict[tuple[str, str], int] = field(default_factory=dict)
    tickets: int = 0  # reviewed classifications
    tickets_overridden: int = 0  # ... with at least one label changed


def review_counts(session: Session, since: datetime) -> ReviewCounts:
    """Agreement of the stored predictions with human review, over feedback given since `since`.

    Each reviewed classification counts once (its latest feedback). A label field counts as reviewed when the
    prediction holds it (a request may have asked a subset) and as overridden when the correction names a
    different value; feedback that corrects nothing (a comment only) is agreement with every label."""
    from server.store.models import Classification, Feedback

    rows = session.execute(
        select(Feedback.classification_id, Feedback.corrections, Classification.fields,
               *(getattr(Classification, name) for name in REVIEW_FIELDS))
        .join(Classification, Classification.id == Feedback.classification_id)
        .where(Feedback.created_at >= since)
        .order_by(Feedback.id)
    ).all()  # fmt: skip
    latest: dict[int, Any] = {row[0]: row for row in rows}  # later feedback replaces earlier
    counts = ReviewCounts()
    for row in latest.values():
        corrections = row[1] if isinstance(row[1], Mapping) else {}
        asked = row[2]
        changed_any = False
        for i, name in enumerate(REVIEW_FIELDS, start=3):
            if asked is not None and name not in asked:
                continue
            predicted = row[i]
            key = (name, str(predicted) if predicted is not None else UNLABELLED)
            counts.reviewed[key] = counts.reviewed.get(key, 0) + 1
            present, corrected = correction_of(corrections, name)
            if present and corrected != predicted:
                counts.overridden[key] = counts.overridden.get(key, 0) + 1
                changed_any = True
        counts.tickets += 1
        counts.tickets_overridden += int(changed_any)
    return counts


@dataclass(frozen=True)
class StoreWindows:
    accuracy: timedelta = timedelta(days=7)
    drift: timedelta = timedelta(days=1)
    drift_reference: timedelta = timedelta(days=7)

    @classmethod
    def of(cls, settings: MetricsSettings) -> StoreWindows:
        return cls(
            accuracy=timedelta(seconds=settings.accuracy_window_s),
            drift=timedelta(seconds=settings.drift_window_s),
            drift_reference=timedelta(seconds=settings.drift_reference_s),
        )


class StoreCollector(Collector):
    """Accuracy against human review, override rate, drift PSI, the last retrain and the bulk-job queue, read
    from the store.

    The queries run at most once per `cache_s`, drift at most once per `drift_cache_s`: it reads every result
    of its two windows (0.3 s for 20,000 on SQLite) and moves over hours, not seconds. A failing database
    yields `triage_store_metrics_up 0` and no other store metric (never stale values)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        windows: StoreWindows = StoreWindows(),
        *,
        cache_s: float = 10.0,
        drift_cache_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.windows = windows
        self.cache_s, self.drift_cache_s = cache_s, drift_cache_s
        self._clock, self._now = clock, now
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None
        self._drift_cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> list[Metric]:
        return []  # computed at scrape time: nothing to describe at registration (no query then)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached[0] >= self.cache_s:
                self._cached = (now, self._compute())
            metrics = self._cached[1]
        yield from metrics

    def _compute(self) -> list[Metric]:
        up = GaugeMetricFamily("triage_store_metrics_up", "1 when the store metrics below could be read.")
        try:
            with self.sessions() as session:
                now = self._clock()
                if self._drift_cached is None or now - self._drift_cached[0] >= self.drift_cache_s:
                    self._drift_cached = (now, self._drift(session))
                out = [
                    *self._review(session), *self._drift_cached[1], *self._retrain(session), *self._jobs(session)
                ]  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even when the database does not
            log.warning("store metrics unavailable: %s: %s", type(exc).__name__, exc)
            self._drift_cached = None
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *out]

    def _review(self, session: Session) -> list[Metric]:
        window = self.windows.accuracy
        counts = review_counts(session, self._now() - window)
        doc = f" over feedback of the last {window.total_seconds():g} s (metrics.accuracy_window_s)"
        reviewed = GaugeMetricFamily(
            "triage_review_reviewed", "Predictions a human reviewed" + doc, labels=["field", "label"]
        )
        overridden = GaugeMetricFamily(
            "triage_review_overridden", "Reviewed predictions the reviewer changed" + doc, labels=["field", "label"]
        )
        accuracy = GaugeMetricFamily(
            "triage_review_accuracy",
            "Share of reviewed predictions kept by the reviewer" + doc,
            labels=["field", "label"],
        )
        override = GaugeMetricFamily(
            "triage_review_override_rate", "Share of reviewed predictions changed" + doc, labels=["field", "label"]
        )
        field_reviewed = GaugeMetricFamily(
            "triage_review_field_reviewed", "Reviewed predictions per field" + doc, labels=["field"]
        )
        field_accuracy = GaugeMetricFamily(
            "triage_review_field_accuracy", "Accuracy against human review per field" + doc, labels=["field"]
        )
        tickets = GaugeMetricFamily("triage_review_tickets", "Reviewed classifications" + doc)
        ticket_override = GaugeMetricFamily(
            "triage_review_ticket_override_rate", "Share of reviewed classifications with any label changed" + doc
        )
        per_field: dict[str, tuple[int, int]] = {}
        for (name, value), n in sorted(counts.reviewed.items()):
            bad = counts.overridden.get((name, value), 0)
            reviewed.add_metric([name, value], n)
            overridden.add_metric([name, value], bad)
            accuracy.add_metric([name, value], (n - bad) / n)
            override.add_metric([name, value], bad / n)
            total, total_bad = per_field.get(name, (0, 0))
            per_field[name] = (total + n, total_bad + bad)
        for name, (n, bad) in per_field.items():
            field_reviewed.add_metric([name], n)
            field_accuracy.add_metric([name], (n - bad) / n)
        tickets.add_metric([], counts.tickets)
        if counts.tickets:
            ticket_override.add_metric([], counts.tickets_overridden / counts.tickets)
        return [reviewed, overridden, accuracy, override, field_reviewed, field_accuracy, tickets, ticket_override]

    def _drift(self, session: Session) -> list[Metric]:
        from server.drift import drift

        w = self.windows
        report = drift(session, now=self._now(), window=w.drift, reference_window=w.drift_reference)
        psi = GaugeMetricFamily(
            "triage_drift_psi",
            f"Population stability index of the last {w.drift.total_seconds():g} s against the "
            f"{w.drift_reference.total_seconds():g} s before (distribution: labels or confidence)",
            labels=["field", "distribution"],
        )
        for f in report.fields:
            if f.label_psi is not None:
                psi.add_metric([f.field, "labels"], f.label_psi)
            if f.confidence_psi is not None:
                psi.add_metric([f.field, "confidence"], f.confidence_psi)
        counts = GaugeMetricFamily("triage_drift_window_results", "Results in the drift windows", labels=["window"])
        counts.add_metric(["recent"], report.recent_count)
        counts.add_metric(["reference"], report.reference_count)
        return [psi, counts]

    def _retrain(self, session: Session) -> list[Metric]:
        from server.store.models import AuditEvent

        runs = GaugeMetricFamily(
            "triage_retrain_runs", "`triage retrain` runs in the audit log, by verdict", labels=["verdict"]
        )
        last = GaugeMetricFamily(
            "triage_retrain_last_run_timestamp_seconds", "When the last `triage retrain` of each verdict ran (Unix time)",
            labels=["verdict"],
        )  # fmt: skip
        rows = session.execute(
            select(AuditEvent.at, AuditEvent.detail).where(AuditEvent.action == "retrain").order_by(AuditEvent.id)
        ).all()
        by_verdict: dict[str, tuple[int, datetime]] = {}
        for at, detail in rows:
            verdict = str(detail.get("verdict", "unknown")) if isinstance(detail, Mapping) else "unknown"
            n, _ = by_verdict.get(verdict, (0, at))
            by_verdict[verdict] = (n + 1, at)
        for verdict, (n, at) in sorted(by_verdict.items()):
            runs.add_metric([verdict], n)
            last.add_metric([verdict], at.timestamp())
        return [runs, last]

    def _jobs(self, session: Session) -> list[Metric]:
        """The job queue from the jobs' rows, never by counting a finished job's tickets: a job not ended
        (`ix_jobs_status`) carries exact done/failed counts (refreshed in the transaction that settles its
        tickets), its running tickets are few (claimed chunks, `ix_job_tickets_status`), and the rest of its
        tickets are queued. So a scrape reads one row per job, not one per ticket of a million-line upload."""
        from server.store.models import JOB_STATUSES, JOB_TICKET_STATUSES, OPEN_JOB_STATUSES, Job, JobTicket

        jobs = GaugeMetricFamily(
            "triage_jobs", "Bulk jobs in the store (ended ones until retention removes them), by status",
            labels=["status"],
        )  # fmt: skip
        tickets = GaugeMetricFamily(
            "triage_job_tickets", "Tickets of the bulk jobs not ended (queued or running), by status",
            labels=["status"],
        )  # fmt: skip
        oldest = GaugeMetricFamily(
            "triage_job_oldest_queued_age_seconds",
            "Age of the oldest bulk job that still has queued tickets (0 when none is queued)",
        )
        by_status = {
            str(status): int(n) for status, n in session.execute(select(Job.status, func.count()).group_by(Job.status))
        }
        for status in JOB_STATUSES:
            jobs.add_metric([status], by_status.get(status, 0))
        running = (
            select(JobTicket.job_id, func.count().label("n"))
            .where(JobTicket.status == "running")
            .group_by(JobTicket.job_id)
            .subquery()
        )
        # One statement, so the counts and the running tickets are of one snapshot (a chunk settled between
        # two reads would be counted twice or not at all).
        rows = session.execute(
            select(Job.created_at, Job.total, Job.done, Job.failed, func.coalesce(running.c.n, 0))
            .outerjoin(running, running.c.job_id == Job.id)
            .where(Job.status.in_(OPEN_JOB_STATUSES))
        ).all()
        counts = dict.fromkeys(JOB_TICKET_STATUSES, 0)
        first_queued: datetime | None = None
        for created_at, total, done, failed, n_running in rows:
            queued = max(total - done - failed - n_running, 0)
            counts["queued"] += queued
            counts["running"] += n_running
            counts["done"] += done
            counts["failed"] += failed
            if queued and (first_queued is None or created_at < first_queued):
                first_queued = created_at
        for status, n in counts.items():
            tickets.add_metric([status], n)
        age = 0.0 if first_queued is None else max((self._now() - first_queued).total_seconds(), 0.0)
        oldest.add_metric([], age)
        return [jobs, tickets, oldest]


# Every family StoreCollector yields, with its labels (tests check the collector, the alerts and the dashboard
# against this and the process metrics above).
STORE_METRICS: dict[str, tuple[str, ...]] = {
    "triage_store_metrics_up": (),
    "triage_review_reviewed": ("field", "label"),
    "triage_review_overridden": ("field", "label"),
    "triage_review_accuracy": ("field", "label"),
    "triage_review_override_rate": ("field", "label"),
    "triage_review_field_reviewed": ("field",),
    "triage_review_field_accuracy": ("field",),
    "triage_review_tickets": (),
    "triage_review_ticket_override_rate": (),
    "triage_drift_psi": ("field", "distribution"),
    "triage_drift_window_results": ("window",),
    "triage_retrain_runs": ("verdict",),
    "triage_retrain_last_run_timestamp_seconds": ("verdict",),
    "triage_jobs": ("status",),
    "triage_job_tickets": ("status",),
    "triage_job_oldest_queued_age_seconds": (),
}


def exported_labels() -> dict[str, frozenset[str]]:
    """Every sample name /metrics can carry (process metrics with their suffixes, and the store metrics) and
    the labels it carries."""
    out = {name: frozenset(labels) for name, labels in STORE_METRICS.items()}
    for obj in globals().values():
        if not isinstance(obj, (Counter, Gauge, Histogram)):
            continue
        base, labels = next(iter(obj.describe())).name, frozenset(obj._labelnames)
        if isinstance(obj, Counter):
            out |= {f"{base}_total": labels, f"{base}_created": labels}
        elif isinstance(obj, Histogram):
            out |= {f"{base}_bucket": labels | {"le"}, f"{base}_count": labels, f"{base}_sum": labels}
            out[f"{base}_created"] = labels
        else:
            out[base] = labels
    return out


# -- exposition -----------------------------------------------------------------------------------------
class _Joined:
    """A registry-like view over several collectors, built per scrape (so an app's store collector never
    lands in the process-wide registry, which two apps in one process would share)."""

    def __init__(self, sources: Iterable[Any]) -> None:
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def process_registry() -> Any:
    """This host's process metrics: the multiprocess directory's sum, else this process's registry."""
    directory = multiprocess_dir()
    if directory is None:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return registry


def render(extra: Iterable[Collector] = ()) -> bytes:
    """The Prometheus text format of this host's process metrics and the given collectors."""
    return generate_latest(_Joined([process_registry(), *extra]))


def mark_process_dead(pid: int) -> None:
    """Call from the process manager when a worker exits (gunicorn's `child_exit`), so its live gauges go."""
    directory = multiprocess_dir()
    if directory is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


__all__ = [
    "CONTENT_TYPE",
    "LATENCY_BUCKETS",
    "NO_VARIANT",
    "ReviewCounts",
    "StoreCollector",
    "StoreWindows",
    "TicketOutcome",
    "multiprocess_dir",
    "render",
    "review_counts",
]
