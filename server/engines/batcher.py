"""Continuous batching: concurrent requests share forward passes.

Items queue up (bounded: a full queue is an immediate 429). When the first one arrives the batcher
waits `wait_ms` for company, then runs one long decode loop, `run_stream(take, deliver)`, on a
dedicated thread (the model is not thread-safe; torch releases the GIL, so the event loop stays
responsive). The loop pulls new items between its steps (`take`) and hands each result back as soon as
it is ready (`deliver`), so a ticket neither waits for a batch to fill up nor for the slowest ticket of
its batch. `run_stream` must return once `take` gives nothing and all it took is delivered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from server.engines.base import EngineError, EngineOverloaded, EngineUnavailable

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)

RunStream: TypeAlias = Callable[[Callable[[int], list[tuple[Any, Any]]], Callable[[Any, Any], None]], None]


@dataclass
class _Item(Generic[T]):
    value: T
    future: asyncio.Future[Any]


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
    ):
        """`pause(seconds)` is how the batcher waits for company (tests inject an event)."""
        self._run_stream = run_stream
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.max_queue = max_queue
        self._pause = pause
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

    async def submit(self, values: Sequence[T]) -> list[R]:
        """All-or-nothing admission, so a batch request is never half-queued."""
        if not self.running or self._queue is None:
            raise EngineUnavailable("engine is not running")
        if self._queue.qsize() + len(values) > self.max_queue:
            raise EngineOverloaded(retry_after_s=self._retry_after())
        loop = asyncio.get_running_loop()
        items = [_Item(v, loop.create_future()) for v in values]
        for item in items:
            self._queue.put_nowait(item)
        return list(await asyncio.gather(*(i.future for i in items)))

    def _retry_after(self) -> float:
        per_item = self.busy_s / self.items if self.items else 1.0
        return max(1.0, round(per_item * self.depth, 1))

    def _drain(self, first: list[_Item[T]], k: int) -> list[_Item[T]]:
        assert self._queue is not None
        items = [i for i in first if not i.future.done()]
        while len(items) < k and not self._queue.empty():
            item = self._queue.get_nowait()
            if not item.future.done():  # the caller gave up (deadline) before we got to it
                items.append(item)
        return items

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
                loop.call_soon_threadsafe(_resolve, item.future, result)

            started = time.perf_counter()
            try:
                await loop.run_in_executor(self._executor, self._run_stream, take, deliver)
            except Exception as exc:  # every caller still waiting gets the error, none hangs
                log.exception("decode loop failed")
                for item in self._current:
                    if not item.future.done():
                        item.future.set_exception(exc)
            finally:
                self.busy_s += time.perf_counter() - started
                self.batches += 1
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
