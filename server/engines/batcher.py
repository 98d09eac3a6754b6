"""Continuous batching: concurrent requests share forward passes.

Items queue up (bounded: a full queue is an immediate 429). When the first one arrives the batcher
waits `wait_ms` for company, then runs one long decode loop, `run_stream(take, deliver)`, on a
dedicated thread (the model is not thread-safe; torch releases the GIL, so the event loop stays
responsive). The loop pulls new items between its steps (`take`) and hands each result back as soon as
it is ready (`deliver`), so a ticket neither waits for a batch to fill up nor for the slowest ticket of
its batch. `run_stream` must return once `take` gives nothing and all it took is delivered.

Admission keeps its promise: the batcher measures its service rate (tickets delivered per second of
busy time over a recent window) and the time a ticket spends in the decode loop; a submit whose last
ticket's expected completion (the tickets queued ahead of it / the rate, plus its own service time)
is past its deadline is refused at once with `EngineOverloaded`, `retry_after_s` being when the queue
will have drained enough for it to fit. Until the estimate has data (cold start) only `max_queue` bounds
the queue, and a ticket that finds a free slot is never refused.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from server.engines.base import EngineError, EngineOverloaded, EngineUnavailable
from server.observability import metrics

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

RunStream: TypeAlias = Callable[[Callable[[int], list[tuple[Any, Any]]], Callable[[Any, Any], None]], None]


@dataclass
class _Item(Generic[T]):
    value: T
    future: asyncio.Future[Any]
    taken_at: float = 0.0  # when the decode loop took it: its service time starts
    queued_at: float = 0.0


class ServiceEstimate:
    """Measured, not configured: tickets per second of busy time over a recent window, and the mean time
    a ticket spends in the decode loop. Idle time does not count (an idle engine is not a slow one).
    Called from the event loop's thread only; `now` is passed in, so tests need no clock."""

    def __init__(self, window_s: float = 30.0, min_samples: int = 8):
        self.window_s = window_s
        self.min_samples = min_samples
        self._busy_s = 0.0  # busy time of the finished busy periods
        self._busy_since: float | None = None
        self._done: deque[tuple[float, float]] = deque()  # (busy clock at delivery, its service seconds)

    def start(self, now: float) -> None:
        if self._busy_since is None:
            self._busy_since = now

    def stop(self, now: float) -> None:
        if self._busy_since is not None:
            self._busy_s += now - self._busy_since
            self._busy_since = None

    def clock(self, now: float) -> float:
        """Busy seconds so far."""
        return self._busy_s + (now - self._busy_since if self._busy_since is not None else 0.0)

    def delivered(self, now: float, service_s: float) -> None:
        self._done.append((self.clock(now), service_s))
        # Only the window is needed (a few more kept for the readiness count).
        horizon = self._done[-1][0] - 2 * self.window()
        while len(self._done) > self.min_samples and self._done[0][0] < horizon:
            self._done.popleft()

    def window(self) -> float:
        # A batch's rows finish in clumps: the window must span a few service times to average them out.
        return max(self.window_s, 3.0 * self.service_s())

    @property
    def ready(self) -> bool:
        return len(self._done) >= self.min_samples

    def rate(self, now: float) -> float:
        """Deliveries in the last `window()` busy seconds per busy second. The time since the last
        delivery counts, so a stalled engine's rate falls."""
        clock, window = self.clock(now), self.window()
        span = min(window, clock)
        n = sum(1 for at, _ in self._done if at > clock - window)
        return n / span if span > 0 else 0.0

    def service_s(self) -> float:
        return sum(s for _, s in self._done) / len(self._done) if self._done else 0.0


class Batcher(Generic[T, R]):
    def __init__(
        self,
        run_stream: RunStream,
        *,
        max_batch: int,
        wait_ms: float,
        max_queue: int,
        name: str = "engine",
        pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
        deadline_s: float | None = None,
        estimate: ServiceEstimate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """`pause(seconds)` is how the batcher waits for company (tests inject an event). `deadline_s`:
        the default deadline admission checks against (None: only `max_queue` bounds the queue)."""
        self._run_stream = run_stream
        self.name = name  # the `engine` label of its metrics
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.max_queue = max_queue
        self._pause = pause
        self.deadline_s = deadline_s
        self.estimate = estimate or ServiceEstimate()
        self._clock = clock
        self.in_flight = 0  # taken by the decode loop and not yet delivered
        self.refused = 0  # tickets refused because their expected completion was past their deadline
        self._queue: asyncio.Queue[_Item[T]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._current: list[_Item[T]] = []  # taken by the running loop: stop() must fail them too
        self._stopping = False
        self.batches = 0  # decode loops run
        self.items = 0
        self.busy_s = 0.0

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done()

    @property
    def depth(self) -> int:
        return self._queue.qsize() if self._queue else 0

    def start(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._worker = asyncio.get_running_loop().create_task(self._loop())
        metrics.engine_started(self.name, self.max_queue)

    async def stop(self) -> None:
        self._stopping = True
        if self._worker:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        pending = list(self._current)
        if self._queue:
            while not self._queue.empty():
                pending.append(self._queue.get_nowait())
        for item in pending:
            if not item.future.done():
                item.future.set_exception(EngineUnavailable("engine stopped"))
        # A running loop winds down in its thread (take gives nothing now); the event loop must not block on it.
        self._executor.shutdown(wait=False, cancel_futures=True)
        metrics.engine_stopped(self.name)

    async def submit(self, values: Sequence[T], deadline_s: float | None = None) -> list[R]:
        """All-or-nothing admission, so a batch request is never half-queued. `deadline_s` overrides the
        batcher's default deadline (a caller that can wait longer may queue longer)."""
        if not self.running or self._queue is None:
            raise EngineUnavailable("engine is not running")
        if self._queue.qsize() + len(values) > self.max_queue:
            metrics.admission_refused(self.name, "queue_full", len(values))
            raise EngineOverloaded(retry_after_s=self._retry_after())
        self._admit(len(values), self.deadline_s if deadline_s is None else deadline_s)
        loop = asyncio.get_running_loop()
        now = self._clock()
        items = [_Item(v, loop.create_future(), queued_at=now) for v in values]
        for item in items:
            self._queue.put_nowait(item)
        metrics.queue_changed(self.name, self.depth, self.in_flight)
        return list(await asyncio.gather(*(i.future for i in items)))

    def _retry_after(self) -> float:
        rate = self.estimate.rate(self._clock()) if self.estimate.ready else 0.0
        per_item = 1.0 / rate if rate > 0 else self.busy_s / self.items if self.items else 1.0
        return max(1.0, round(per_item * self.depth, 1))

    def expected_s(self, n: int, now: float | None = None) -> float | None:
        """Expected seconds until the last of `n` tickets submitted now is answered; None while the
        estimate has no data. Tickets that find a free slot start at the next step; the others wait
        for `ahead` deliveries (the oldest first, on average)."""
        if not self.estimate.ready:
            return None
        now = self._clock() if now is None else now
        ahead = max(0, self.depth + n - max(0, self.max_batch - self.in_flight))
        service = self.estimate.service_s()
        if ahead == 0:
            return service
        rate = self.estimate.rate(now)
        if rate <= 0:
            return math.inf
        # The larger of two views: the tickets queued ahead plus its own service time, and the time for
        # everything in the engine and ahead of it to drain at the measured rate (Little's law). The second
        # reacts at once when a batch fills up; the mean service time lags (measured on lighter load).
        in_system = self.in_flight + self.depth + n
        return max(ahead / rate + service, in_system / rate)

    def _admit(self, n: int, deadline_s: float | None) -> None:
        """Refuse (EngineOverloaded) a submit whose queueing would push it past its deadline."""
        if deadline_s is None or n == 0:
            return
        now = self._clock()
        expected = self.expected_s(n, now)
        free = self.max_batch - self.in_flight - self.depth
        if expected is None or expected <= deadline_s or free >= n:  # no data, fits, or no queueing at all
            return
        self.refused += n
        metrics.admission_refused(self.name, "deadline", n)
        # The queue drains at the measured rate while nothing else is admitted: after `expected -
        # deadline` seconds the same submit would fit. Never more than one deadline (a stalled engine).
        wait = expected - deadline_s if math.isfinite(expected) else deadline_s
        raise EngineOverloaded(retry_after_s=max(1.0, math.ceil(min(wait, deadline_s))))

    def _drain(self, first: list[_Item[T]], k: int) -> list[_Item[T]]:
        assert self._queue is not None
        items = [i for i in first if not i.future.done()]
        while len(items) < k and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():  # the caller gave up (deadline) before we got to it
                items.append(item)
        now = self._clock()
        for item in items:
            item.taken_at = now
        self.in_flight += len(items)
        if items:
            metrics.tickets_taken(self.name, (now - i.queued_at for i in items), self.in_flight)
        metrics.queue_changed(self.name, self.depth, self.in_flight)
        return items

    def _delivered(self, item: _Item[T], result: object, at: float) -> None:
        """On the event loop: the estimate learns from the delivery, then the caller wakes."""
        self.in_flight = max(0, self.in_flight - 1)
        self.estimate.delivered(at, at - item.taken_at)
        metrics.ticket_answered(self.name, at - item.taken_at, result)
        metrics.queue_changed(self.name, self.depth, self.in_flight)
        _resolve(item.future, result)

    async def _take_on_loop(self, first: list[_Item[T]], k: int) -> list[_Item[T]]:
        return self._drain(first, k)

    async def _loop(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            self._current = []
            first = await self._queue.get()
            await self._pause(self.wait_s)  # let concurrent requests arrive to share the first steps
            seed = [first]

            def take(k: int) -> list[tuple[_Item[T], T]]:
                nonlocal seed
                if self._stopping:  # wind down: finish what is in flight, admit nothing new
                    return []
                items = asyncio.run_coroutine_threadsafe(self._take_on_loop(seed, k), loop).result()
                seed = []
                self._current += items
                return [(item, item.value) for item in items]

            def deliver(item: _Item[T], result: R) -> None:
                self.items += 1  # counted before the caller can wake up and read the stats
                loop.call_soon_threadsafe(self._delivered, item, result, self._clock())

            started = time.perf_counter()
            self.estimate.start(self._clock())
            try:
                await loop.run_in_executor(self._executor, self._run_stream, take, deliver)
            except Exception as exc:  # every caller still waiting gets the error, none hangs
                log.exception("decode loop failed")
                for item in self._current:
                    if not item.future.done():
                        item.future.set_exception(exc)
            finally:
                elapsed = time.perf_counter() - started
                self.busy_s += elapsed
                metrics.model_busy(self.name, elapsed)
                self.batches += 1
                self.estimate.stop(self._clock())
                self.in_flight = 0  # the loop has returned: nothing of it is in flight any more
                metrics.queue_changed(self.name, self.depth, 0)
            # The results delivered from the thread were scheduled before the loop's own completion,
            # so they have landed; an item still open was taken and never answered.
            for item in self._current:
                if not item.future.done():
                    item.future.set_result(EngineError("the engine returned no answer for this ticket"))

    def stats(self) -> dict[str, Any]:
        return {
            "queue_depth": self.depth,
            "batches": self.batches,
            "items": self.items,
            "mean_batch": self.items / self.batches if self.batches else 0.0,
            "in_flight": self.in_flight,
            "service_rate_per_s": round(self.estimate.rate(self._clock()), 3) if self.estimate.ready else None,
            "service_s": round(self.estimate.service_s(), 3) if self.estimate.ready else None,
            "admission_refused": self.refused,
        }


def static_batches(run_batch: Callable[[list[Any]], Sequence[Any]], max_batch: int) -> RunStream:
    """A decode loop of static batches (a batch starts when the previous one has fully finished): the
    serving mode before continuous batching, kept as a benchmark baseline."""

    def run_stream(take: Callable[[int], list[tuple[Any, Any]]], deliver: Callable[[Any, Any], None]) -> None:
        while batch := take(max_batch):
            results = list(run_batch([value for _, value in batch]))
            if len(results) != len(batch):
                results = [EngineError(f"engine returned {len(results)} results for {len(batch)} tickets")] * len(batch)
            for (key, _), result in zip(batch, results, strict=True):
                deliver(key, result)

    return run_stream


# The old names: the server's batcher, and the static one bench/throughput.py still builds.
ContinuousBatcher = Batcher


def _resolve(future: asyncio.Future[Any], result: object) -> None:
    if not future.done():
        future.set_result(result)
