"""Classification as a stored transaction: accept (store pending) -> engine -> store result or failure.

A ticket counts as accepted once its pending row is committed; from then on it always ends as a
stored result or a stored failure (a crash leaves 'pending' rows that start-up marks failed).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from server.config import Settings
from server.engines.base import Engine, EngineError, EngineOutput, EngineOverloaded, EngineTimeout, EngineUnavailable
from server.prompts import TicketInput
from server.store import repository as repo
from server.taxonomy import Taxonomy

log = logging.getLogger(__name__)


class StoreUnavailable(RuntimeError):
    """The database refused the write: nothing was accepted (503)."""


@dataclass
class TicketRequest:
    subject: str
    body: str
    previous_interactions: tuple[str, ...] = ()
    ticket_id: str | None = None


@dataclass
class Outcome:
    """Either `result` (the API response body) or `error` (+ HTTP-ish status) for one ticket."""

    request_id: str
    ticket_id: str
    result: dict[str, Any] | None = None
    error: str | None = None
    status: int = 200


def new_ticket_id() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


class ClassificationService:
    def __init__(self, settings: Settings, taxonomy: Taxonomy, engine: Engine, sessions: sessionmaker[Session]):
        self.settings = settings
        self.taxonomy = taxonomy
        self.engine = engine
        self.sessions = sessions

    # -- store helpers (sync; called in the threadpool) ----------------------------------------
    def _accept(self, requests: Sequence[TicketRequest], request_ids: list[str]) -> None:
        info = self.engine.info
        with self.sessions() as session:
            for req, rid in zip(requests, request_ids):
                repo.create_pending(
                    session,
                    request_id=rid,
                    ticket_id=req.ticket_id or "",
                    subject=req.subject,
                    body=req.body,
                    previous_interactions=list(req.previous_interactions) or None,
                    model_base=info.base,
                    model_adapter=info.adapter,
                    prompt_version=self.engine.prompt_version,
                    taxonomy=self.taxonomy.key,
                )

    def _record(self, outcomes: list[tuple[str, EngineOutput | BaseException, float, dict[str, Any] | None]]) -> None:
        with self.sessions() as session:
            for rid, out, latency_ms, body in outcomes:
                try:
                    if isinstance(out, EngineOutput) and body is not None:
                        repo.complete(
                            session,
                            rid,
                            prediction=out.output,
                            category=out.output.get("category"),
                            priority=out.output.get("priority"),
                            sentiment=(out.output.get("extracted_info") or {}).get("sentiment"),
                            confidence=out.confidence,
                            needs_review=body["needs_review"],
                            input_truncated=out.truncated,
                            latency_ms=latency_ms,
                            prompt_tokens=out.prompt_tokens,
                            completion_tokens=out.completion_tokens,
                            raw_output=out.raw_text,
                        )
                    else:
                        repo.fail(session, rid, error=str(out) or type(out).__name__, latency_ms=latency_ms)
                except repo.InvalidStatusTransition:
                    log.warning("request %s was already resolved (recovered after a restart?)", rid)

    # -- public ---------------------------------------------------------------------------------
    def needs_review(self, confidence: dict[str, float | None]) -> bool:
        threshold = self.settings.routing.confidence_threshold
        return any(c is None or c < threshold for c in confidence.values())

    def response_body(self, rid: str, ticket_id: str, out: EngineOutput, latency_ms: float) -> dict[str, Any]:
        info = self.engine.info
        return {
            "ticket_id": ticket_id,
            **out.output,
            "confidence": out.confidence,
            "needs_review": self.needs_review(out.confidence),
            "model": {"base": info.base, "adapter": info.adapter},
            "prompt_version": out.prompt_version,
            "taxonomy": self.taxonomy.key,
            "latency_ms": round(latency_ms, 1),
            "usage": {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens},
            "input_truncated": out.truncated,
            "request_id": rid,
        }

    async def classify_many(self, requests: Sequence[TicketRequest]) -> list[Outcome]:
        started = time.perf_counter()
        for req in requests:
            req.ticket_id = req.ticket_id or new_ticket_id()
        rids = [uuid.uuid4().hex for _ in requests]
        try:
            await run_in_threadpool(self._accept, requests, rids)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        tickets = [TicketInput(r.subject, r.body, tuple(r.previous_interactions)) for r in requests]
        try:
            raw: list[EngineOutput | BaseException] = list(
                await asyncio.wait_for(self.engine.classify(tickets), timeout=self.settings.engine.request_timeout_s)
            )
        except asyncio.TimeoutError:
            raw = [EngineTimeout(f"deadline of {self.settings.engine.request_timeout_s:g}s exceeded")] * len(tickets)
        except EngineError as exc:  # overloaded / unavailable: stored as failures, then surfaced as 429/503
            raw = [exc] * len(tickets)
        except Exception as exc:  # an engine bug must still end as a stored failure
            log.exception("engine failed")
            raw = [EngineError(f"engine failure: {type(exc).__name__}: {exc}")] * len(tickets)
        latency_ms = (time.perf_counter() - started) * 1000
        outcomes: list[Outcome] = []
        to_store = []
        for req, rid, out in zip(requests, rids, raw):
            assert req.ticket_id is not None
            if isinstance(out, EngineOutput):
                body = self.response_body(rid, req.ticket_id, out, latency_ms)
                outcomes.append(Outcome(rid, req.ticket_id, result=body))
            else:
                body = None
                outcomes.append(Outcome(rid, req.ticket_id, error=str(out), status=_status_for(out)))
            to_store.append((rid, out, latency_ms, body))
        try:
            await run_in_threadpool(self._record, to_store)
        except SQLAlchemyError as exc:
            # Accepted rows stay 'pending' and are failed by start-up recovery; the caller must not see a result
            # that is not stored.
            raise StoreUnavailable(f"database unavailable while storing results: {type(exc).__name__}") from exc
        return outcomes


def _status_for(exc: BaseException) -> int:
    if isinstance(exc, EngineOverloaded):
        return 429
    if isinstance(exc, EngineUnavailable):
        return 503
    if isinstance(exc, EngineTimeout):
        return 504
    return 502
