"""The bulk-job worker: classifies the tickets of stored jobs (POST /v1/jobs) in the background, at low priority.

Priority mechanism. Online requests (/v1/classify, /v1/batch) and job tickets share the engines, so the
worker yields to the online traffic instead of competing with it in the engines' queues:

1. It feeds the engines only while no online request runs and none ended in the last `jobs.idle_grace_s`
   (the service counts them), and no online ticket waits or runs in them: every engine of the service
   (the default one and the named/A-B ones) reports `queue_depth` and `in_flight` in its stats (the
   continuous batcher, `server.engines.batcher.Batcher`); the worker polls them every `IDLE_POLL_S` and
   claims work only when they are all 0. It waits for its own chunk to finish before looking again, so
   what it sees then is online load alone.
2. It feeds small chunks (`jobs.chunk_size`, a few tickets, under the engine's batch size): an online
   request arriving while a chunk runs finds a free slot in the running decode loop (continuous batching
   admits it at the next step) and shares forward passes with at most a chunk of job tickets, rather than
   queueing behind the job. The next chunk waits until that request is answered.

Nothing in the engines or the batcher changes: the online path stays as it was, and a job cannot make an
online request wait longer than one shared decode loop of `chunk_size` extra tickets. Engines without a
queue (a remote engine, a test double) report no depth: there the worker only keeps chunks small.

Job tickets go through the normal service path (`ClassificationService.classify_many`), so each answer
is stored as a classification under the job creator's key and scope (the review queue, feedback and
GET /v1/results see it like any other); `job_tickets.request_id` tags it with its job. A ticket the
engine could not take (429 overloaded, 503 unavailable) or that the store could not record is put back
in the queue and tried again later; any other failure is the ticket's answer (a `failed` line).

Durability: the claim/finish protocol is `server.store.jobs` (chunks claimed with SKIP LOCKED on
PostgreSQL, leases taken over after `jobs.lease_s`, `running` tickets put back at a SQLite start-up)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from server.config import Settings
from server.service import ClassificationService, Outcome, StoreUnavailable, TicketRequest, over_limits
from server.store import jobs as store

log = logging.getLogger(__name__)

# How often the worker looks at the engines' queues while online traffic runs (a stats() read each).
IDLE_POLL_S = 0.005
# After the engine refused a chunk (overloaded, unavailable) or the store failed: wait before trying again.
BACKOFF_S = 1.0
# Answers that mean "not now", not "this ticket failed": the ticket goes back in the queue.
RETRY_STATUSES = frozenset({429, 503})


def refusal(ticket: store.ClaimedTicket, settings: Settings) -> str | None:
    """Why the API would refuse this ticket (the checks of POST /v1/classify), as its failed line says."""
    t = ticket.ticket
    if not (t.subject.strip() or t.body.strip()):
        return "empty ticket: no subject and no body"
    problem = over_limits(t.subject, t.body, t.previous_interactions, settings)
    return problem.message if problem is not None else None


class JobWorker:
    def __init__(self, settings: Settings, service: ClassificationService, sessions: sessionmaker[Session]):
        self.settings = settings
        self.service = service
        self.sessions = sessions
        # Unique per process: a restarted replica must not finish the claims of its previous life.
        self.worker_id = f"{socket.gethostname()[:40]}-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._claimed: list[int] = []
        self.chunks = 0
        self.tickets = 0
        self.requeued = 0
        self.yields = 0  # polls that found online tickets in the engines and waited

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._dialect() == "sqlite":
            # One node: whatever was running when the last process died is nobody's now.
            n = await run_in_threadpool(self._with_session, store.requeue_running)
            if n:
                log.warning("requeued %d job tickets interrupted by a restart", n)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="job-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def wake(self) -> None:
        """A job was created: look for work now rather than at the next poll."""
        self._wake.set()

    def _dialect(self) -> str:
        bind: Any = self.sessions.kw["bind"]
        return str(bind.dialect.name)

    def _with_session(self, fn: Any, *args: Any) -> Any:
        with self.sessions() as session:
            return fn(session, *args)

    # -- priority ----------------------------------------------------------------------------------
    def online_load(self) -> int:
        """Tickets queued or decoding in the engines now; the worker's own are none (it waits for them)."""
        load = 0
        for engine in self.service.router.engines.values():
            stats = engine.stats()
            load += int(stats.get("queue_depth") or 0) + int(stats.get("in_flight") or 0)
        return load

    def _engines_ready(self) -> bool:
        # The default engine only: a named engine that is down fails (and requeues) just its own tickets.
        return self.service.engine.ready

    def _online(self) -> bool:
        """Online traffic now, or within `jobs.idle_grace_s`: a client sending its next request as soon as
        the last one is answered must not find job tickets started in the gap sharing its decode loop."""
        service = self.service
        recent = time.monotonic() - service.online_ended_at < self.settings.jobs.idle_grace_s
        return service.online_running > 0 or recent or self.online_load() > 0

    async def _wait_for_idle(self) -> None:
        while self._online() or not self._engines_ready():
            self.yields += 1
            await asyncio.sleep(IDLE_POLL_S if self._engines_ready() else BACKOFF_S)

    # -- the loop ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        jobs = self.settings.jobs
        while True:
            try:
                await self._wait_for_idle()
                chunk: list[store.ClaimedTicket] = await run_in_threadpool(
                    self._with_session, store.claim, self.worker_id, jobs.chunk_size, jobs.lease_s
                )
                if not chunk:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), timeout=jobs.poll_s)
                    except TimeoutError:
                        pass
                    continue
                await self._process(chunk)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the worker outlives a bad step (a database blip); claims expire
                log.exception("job worker step failed")
                await asyncio.sleep(BACKOFF_S)

    async def _process(self, chunk: Sequence[store.ClaimedTicket]) -> None:
        self._claimed = [c.id for c in chunk]
        try:
            settled: list[store.Settled] = []
            todo: list[store.ClaimedTicket] = []
            for c in chunk:
                why = refusal(c, self.settings)
                if why is None:
                    todo.append(c)
                else:
                    settled.append(store.Settled(c.id, c.job_id, None, why))
            retry: list[int] = []
            if todo:
                try:
                    outcomes = await self.service.classify_many([self._request(c) for c in todo], background=True)
                except StoreUnavailable:
                    log.warning("job chunk not stored: the database is unavailable; requeued")
                    outcomes = []
                    retry = [c.id for c in todo]
                for c, o in zip(todo, outcomes):
                    if o.result is None and o.status in RETRY_STATUSES:
                        retry.append(c.id)
                    else:
                        settled.append(store.Settled(c.id, c.job_id, o.request_id, _error(o)))
            await run_in_threadpool(self._with_session, store.finish, self.worker_id, settled)
            self.chunks += 1
            self.tickets += len(settled)
            if retry:
                self.requeued += len(retry)
                await run_in_threadpool(self._with_session, store.release, self.worker_id, retry)
                await asyncio.sleep(BACKOFF_S)
        except BaseException:
            # Stopped (or failed) mid-chunk: what is not finished goes back in the queue now, not after a lease.
            try:
                self._with_session(store.release, self.worker_id, self._claimed)
            except Exception:  # noqa: BLE001 - the lease (or a SQLite restart) frees them anyway
                log.warning("could not requeue the job tickets of an interrupted chunk", exc_info=True)
            raise
        finally:
            self._claimed = []

    def _request(self, c: store.ClaimedTicket) -> TicketRequest:
        t = c.ticket
        return TicketRequest(
            t.subject,
            t.body,
            t.previous_interactions,
            c.ticket_id,
            fields=self.service.default_fields,
            key_id=c.key_id,
            scope=c.scope,
        )

    def stats(self) -> dict[str, Any]:
        return {"chunks": self.chunks, "tickets": self.tickets, "requeued": self.requeued, "yields": self.yields}


def _error(outcome: Outcome) -> str | None:
    return None if outcome.result is not None else outcome.error or "failed"
