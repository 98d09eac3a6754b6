"""Classification as a stored transaction: accept (store pending) -> route -> store result or failure.

A ticket counts as accepted once its pending row is committed; from then on it always ends as a
stored result or a stored failure (a crash leaves 'pending' rows that start-up marks failed). The
results of one request are stored in one transaction: all of them or none.

What answers a ticket (cache, local engine, local re-review, hosted fallback, a human) is decided
by `server.routing.Router`; this module keeps the store and the API's result shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from server.cache import ServiceCache
from server.config import Settings
from server.egress import HostedCall, record_hosted_calls
from server.engines.base import Engine, EngineError, EngineOverloaded, EngineTimeout, EngineUnavailable
from server.fields import FieldSelection, resolve_fields
from server.observability import metrics
from server.observability.middleware import current_endpoint
from server.prompts import TicketInput
from server.routing import DEFAULT_PROFILE, Job, Router
from server.routing.answer import prompt_version_of
from server.store import repository as repo
from server.store.records import StoredFailure, StoredOutcome, StoredResult
from server.taxonomy import Taxonomy

if TYPE_CHECKING:
    from server.fallback import HostedFallback

log = logging.getLogger(__name__)

# A database blip while storing results is retried this many times (seconds between tries) before 503.
STORE_RETRY_DELAYS_S = (0.2, 1.0)


class StoreUnavailable(RuntimeError):
    """The database refused the write: nothing was accepted (503)."""


@dataclass(frozen=True)
class LimitProblem:
    status: int  # 413 too large, 422 too many earlier messages
    error: str  # the API's error code
    message: str


def over_limits(subject: str, body: str, history: Sequence[str], settings: Settings) -> LimitProblem | None:
    """Why a ticket is past the API's per-ticket limits (the same for /v1/classify, /v1/batch and bulk
    jobs), or None."""
    limit = settings.api.max_ticket_bytes
    size = sum(len(s.encode("utf-8")) for s in (subject, body, *history))
    if size > limit:
        return LimitProblem(
            413,
            "ticket_too_large",
            f"ticket is {size} bytes; the limit is {limit} bytes (subject + body + history, UTF-8)",
        )
    if len(history) > settings.api.max_history_items:
        return LimitProblem(
            422,
            "invalid_request",
            f"previous_interactions has {len(history)} items; the limit is {settings.api.max_history_items}",
        )
    return None


@dataclass
class TicketRequest:
    subject: str
    body: str
    previous_interactions: tuple[str, ...] = ()
    ticket_id: str | None = None
    fields: FieldSelection = None  # resolved (`fields_for`): the asked output fields, None = every field
    key_id: int | None = None  # who asked: the API key's id and scope (tenant), stored with the row
    scope: str | None = None


@dataclass
class Outcome:
    """Either `result` (the API response body) or `error` (+ HTTP-ish status) for one ticket."""

    request_id: str
    ticket_id: str
    result: dict[str, Any] | None = None
    error: str | None = None
    status: int = 200
    retry_after_s: float | None = None  # a 429's Retry-After: when the engine expects the ticket would fit
    variant: str | None = None  # the A/B variant the ticket was assigned (server.ab); None without an A/B test


def new_ticket_id() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


class ClassificationService:
    def __init__(
        self,
        settings: Settings,
        taxonomy: Taxonomy,
        engine: Engine,
        sessions: sessionmaker[Session],
        *,
        engines: Mapping[str, Engine] | None = None,
        cache: ServiceCache | None = None,
        hosted: HostedFallback | None = None,
    ):
        """`engine` serves the default profile; `engines` adds the engines of the named profiles (`routing.engines`)."""
        self.settings = settings
        self.taxonomy = taxonomy
        self.engine = engine
        self.sessions = sessions
        self.cache = cache
        self.hosted = hosted
        self.router = Router(
            settings, taxonomy, {**(engines or {}), DEFAULT_PROFILE: engine}, cache=cache, hosted=hosted
        )
        # The deployment's default selection, checked at start-up (an unknown name is a configuration error).
        self.default_fields = resolve_fields(settings.api.default_fields, taxonomy)
        # Online traffic (everything but the bulk-job worker's `background` calls): requests running now and
        # when the last one ended, so the worker feeds job tickets only into a lull (server.jobs).
        self.online_running = 0
        self.online_ended_at = float("-inf")  # time.monotonic()

    def fields_for(self, requested: Sequence[str] | None) -> FieldSelection:
        """What a request asks for: its own `fields` (validated; UnknownFields names a bad one), else the
        deployment default (`api.default_fields`), else every field (None)."""
        if requested is None:
            return self.default_fields
        return resolve_fields(requested, self.taxonomy)

    # -- store helpers (sync; called in the threadpool) ----------------------------------------
    def _accept(self, requests: Sequence[TicketRequest], request_ids: list[str], jobs: Sequence[Job]) -> None:
        with self.sessions() as session:
            for req, rid, job in zip(requests, request_ids, jobs):
                engine = self.router.engines[job.choice.profile]
                info = engine.info
                repo.create_pending(
                    session,
                    request_id=rid,
                    ticket_id=req.ticket_id or "",
                    subject=req.subject,
                    body=req.body,
                    previous_interactions=list(req.previous_interactions) or None,
                    model_base=info.base,
                    model_adapter=info.adapter,
                    prompt_version=prompt_version_of(engine),
                    taxonomy=self.taxonomy.key,
                    fields=list(req.fields) if req.fields is not None else None,
                    key_id=req.key_id,
                    scope=req.scope,
                    variant=job.variant,
                )

    def _record(self, results: list[tuple[str, StoredOutcome]]) -> None:
        with self.sessions() as session:
            skipped = repo.finish_many(session, results)
        for rid in skipped:
            log.warning("request %s was already resolved (recovered after a restart?)", rid)

    @staticmethod
    def _stored(job: Job, latency_ms: float) -> StoredOutcome:
        answer = job.answer
        if job.error is not None or answer is None:
            error = job.error
            return StoredFailure(
                error=(str(error) or type(error).__name__) if error is not None else "no result",
                latency_ms=latency_ms,
                cost_usd=job.cost_usd,
            )
        return StoredResult(
            prediction=answer.output,
            confidence=answer.confidence,
            needs_review=job.needs_review,
            input_truncated=answer.truncated,
            latency_ms=latency_ms,
            prompt_tokens=answer.result.prompt_tokens,
            completion_tokens=answer.result.completion_tokens,
            raw_output=answer.raw_text,
            model_base=answer.model.base,
            model_adapter=answer.model.adapter,
            route=job.route,
            cache_kind=job.cache_hit.kind if job.cache_hit else None,
            answered_by=answer.answered_by,
            cost_usd=round(job.cost_usd, 10),
            review_reasons=job.reasons or None,
        )

    # -- public ---------------------------------------------------------------------------------
    def needs_review(self, confidence: dict[str, float | None]) -> bool:
        """Any label field under its threshold (`routing.field_thresholds`, else `confidence_threshold`)."""
        return self.router.needs_review(confidence)

    def response_body(self, rid: str, ticket_id: str, job: Job, latency_ms: float) -> dict[str, Any]:
        answer = job.answer
        assert answer is not None and job.route is not None
        hit = job.cache_hit
        return {
            "ticket_id": ticket_id,
            **answer.output,
            "confidence": answer.confidence,
            "needs_review": job.needs_review,
            "route": job.route,
            "review_reasons": dict(job.reasons) or None,
            "cache": hit.kind if hit else None,
            "cache_similarity": round(hit.similarity, 4) if hit else None,
            "cache_omitted": list(hit.omitted) if hit and hit.omitted else None,
            "engine": answer.answered_by,
            "cost_usd": round(job.cost_usd, 10),
            "model": {"base": answer.model.base, "adapter": answer.model.adapter},
            "prompt_version": answer.prompt_version,
            "taxonomy": self.taxonomy.key,
            "latency_ms": round(latency_ms, 1),
            "usage": {
                "prompt_tokens": answer.result.prompt_tokens,
                "completion_tokens": answer.result.completion_tokens,
            },
            "input_truncated": answer.truncated,
            "request_id": rid,
            "fields": list(job.ticket.fields) if job.ticket.fields is not None else None,
            "variant": job.variant,
        }

    async def classify_many(self, requests: Sequence[TicketRequest], *, background: bool = False) -> list[Outcome]:
        """Classify and store `requests`. `background`: bulk-job tickets, not counted as online traffic."""
        if background:
            return await self._classify_many(requests)
        self.online_running += 1
        try:
            return await self._classify_many(requests)
        finally:
            self.online_running -= 1
            self.online_ended_at = time.monotonic()

    async def _classify_many(self, requests: Sequence[TicketRequest]) -> list[Outcome]:
        started = time.perf_counter()
        for req in requests:
            req.ticket_id = req.ticket_id or new_ticket_id()
        rids = [uuid.uuid4().hex for _ in requests]
        tickets = [TicketInput(r.subject, r.body, tuple(r.previous_interactions), r.fields) for r in requests]
        jobs = self.router.plan(tickets, [r.ticket_id for r in requests])
        try:
            await run_in_threadpool(self._accept, requests, rids, jobs)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc

        timeout_s = self.settings.engine.request_timeout_s
        remaining = timeout_s - (time.perf_counter() - started)
        try:
            await asyncio.wait_for(self.router.run(jobs), timeout=max(remaining, 0.001))
        except TimeoutError:
            log.warning(
                "deadline of %gs passed: %d of %d tickets unsettled",
                timeout_s,
                sum(not j.settled for j in jobs),
                len(jobs),
            )
            self.router.finish_at_deadline(jobs, timeout_s)
        except Exception as exc:  # a routing bug must still end as stored failures, not pending rows
            log.exception("routing failed")
            for job in jobs:
                if not job.settled:
                    job.error = exc
        latency_ms = (time.perf_counter() - started) * 1000
        # What left the premises is audited whatever becomes of the results.
        calls = [
            HostedCall(req.ticket_id or "", rid, req.key_id, job.hosted_sent)
            for req, rid, job in zip(requests, rids, jobs)
            if job.hosted_sent
        ]
        if calls:
            full = self.settings.audit.hosted_payload == "full"
            await run_in_threadpool(record_hosted_calls, self.sessions, calls, keep_payload=full)

        outcomes: list[Outcome] = []
        to_store: list[tuple[str, StoredOutcome]] = []
        for req, rid, job in zip(requests, rids, jobs):
            assert req.ticket_id is not None
            if job.error is None and job.answer is not None:
                outcomes.append(
                    Outcome(
                        rid,
                        req.ticket_id,
                        result=self.response_body(rid, req.ticket_id, job, latency_ms),
                        variant=job.variant,
                    )
                )
            else:
                error = job.error or EngineError("no result")
                outcomes.append(
                    Outcome(
                        rid,
                        req.ticket_id,
                        error=str(error) or type(error).__name__,
                        status=_status_for(error),
                        retry_after_s=error.retry_after_s if isinstance(error, EngineOverloaded) else None,
                        variant=job.variant,
                    )
                )
            to_store.append((rid, self._stored(job, latency_ms)))
        _observe(jobs, latency_ms)
        await self._store_results(to_store)
        await self._fill_cache(jobs)
        return outcomes

    async def _store_results(self, to_store: list[tuple[str, StoredOutcome]]) -> None:
        for attempt, delay in enumerate((*STORE_RETRY_DELAYS_S, None)):
            try:
                await run_in_threadpool(self._record, to_store)
                return
            except SQLAlchemyError as exc:
                if delay is None:
                    # All-or-nothing: the accepted rows stay 'pending' and start-up recovery fails them;
                    # the caller must not see a result that is not stored.
                    raise StoreUnavailable(f"database unavailable while storing results: {type(exc).__name__}") from exc
                log.warning("storing results failed (%s), retry %d in %.1fs", type(exc).__name__, attempt + 1, delay)
                await asyncio.sleep(delay)

    async def _fill_cache(self, jobs: Sequence[Job]) -> None:
        """Confident answers only (never human / needs_review), after they are stored."""
        cache = self.cache
        if cache is None or not cache.enabled:
            return
        todo = [j for j in jobs if j.cacheable and j.cache_hit is None]
        if not todo:
            return

        def put() -> None:
            for job in todo:
                assert job.answer is not None and job.route is not None
                # Under the namespace of the local engine that answered (a backup's answer is not the chosen one's).
                engine = self.router.engines[job.answered_profile or job.choice.profile]
                cache.put(engine, job.ticket, job.answer.to_cache(job.route, self.taxonomy))

        try:
            await run_in_threadpool(put)
        except Exception:  # noqa: BLE001 - the cache never breaks classification
            log.warning("result cache put failed", exc_info=True)

    def stats(self) -> dict[str, Any]:
        return {
            "routing": self.router.stats(),
            "cache": self.cache.stats() if self.cache is not None else {"enabled": False},
            "fallback": self.hosted.stats() if self.hosted is not None else {"enabled": False},
        }


def _error_kind(exc: BaseException | None) -> str:
    for cls, kind in ((EngineOverloaded, "overloaded"), (EngineUnavailable, "unavailable"), (EngineTimeout, "timeout")):
        if isinstance(exc, cls):
            return kind
    return "engine" if isinstance(exc, EngineError) or exc is None else "internal"


def _observe(jobs: Sequence[Job], latency_ms: float) -> None:
    """The per-ticket metrics (server.observability.metrics): route, latency, cost, confidences or the error."""
    endpoint = current_endpoint()
    for job in jobs:
        answered = job.error is None and job.answer is not None
        engine = "hosted" if job.route == "hosted" else job.answered_profile or job.choice.profile
        metrics.observe_ticket(
            metrics.TicketOutcome(
                endpoint=endpoint,
                engine=engine,
                variant=job.variant,
                route=job.route if answered else None,
                seconds=latency_ms / 1000,
                cost_usd=job.cost_usd,
                confidence=job.answer.confidence if answered and job.answer is not None else {},
                error_kind=None if answered else _error_kind(job.error),
            )
        )


def _status_for(exc: BaseException | None) -> int:
    if isinstance(exc, EngineOverloaded):
        return 429
    if isinstance(exc, EngineUnavailable):
        return 503
    if isinstance(exc, EngineTimeout):
        return 504
    return 502


__all__ = ["ClassificationService", "Outcome", "StoreUnavailable", "TicketRequest", "new_ticket_id"]
