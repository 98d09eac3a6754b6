"""The batcher with fake decode loops: batching, ordering, back-pressure, errors, lifecycle.

The wait for company is injected (`pause`), and the fake loops block on events, so no test depends on
how fast this machine is."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

from server.engines.base import EngineError, EngineOverloaded, EngineUnavailable
from server.engines.batcher import Batcher, static_batches

Take = Callable[[int], list[tuple[Any, Any]]]
Deliver = Callable[[Any, Any], None]


class Gate:
    """An injected `pause`: the batcher waits here for company until the test opens it."""

    def __init__(self, open_: bool = False):
        self.event = asyncio.Event()
        self.asked: list[float] = []
        if open_:
            self.event.set()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.event.wait()

    def open(self) -> None:
        self.event.set()


class FakeRunBatch:
    """A static batch function: records batches; optionally blocks on an event or fails on a marked item."""

    def __init__(self, fail_on: object = None, gate: threading.Event | None = None):
        self.fail_on = fail_on
        self.gate = gate
        self.entered = threading.Event()
        self.batches: list[list[Any]] = []
        self.threads: set[str] = set()

    @property
    def sizes(self) -> list[int]:
        return [len(b) for b in self.batches]

    def __call__(self, batch: list[Any]) -> list[Any]:
        self.batches.append(list(batch))
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.fail_on is not None and self.fail_on in batch:
            raise ValueError(f"boom on {self.fail_on}")
        return [f"result:{v}" for v in batch]


def started(run: FakeRunBatch | Callable[[Take, Deliver], None], pause: Gate | None = None, **kw: Any) -> Batcher:
    params: dict[str, Any] = {"max_batch": 8, "wait_ms": 50, "max_queue": 64, "name": "test-engine"}
    params.update(kw)
    stream = static_batches(run, params["max_batch"]) if isinstance(run, FakeRunBatch) else run
    batcher = Batcher(stream, pause=pause or Gate(open_=True), **params)
    batcher.start()
    return batcher


async def settle() -> None:
    """Let the tasks created so far run up to their first real wait (submit queues synchronously)."""
    for _ in range(3):
        await asyncio.sleep(0)


async def in_thread(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, 10), "event never set"


async def test_concurrent_submits_share_one_loop_in_max_batch_steps():
    run, gate = FakeRunBatch(), Gate()
    batcher = started(run, gate, max_batch=8, wait_ms=50)
    try:
        tasks = [asyncio.create_task(batcher.submit([i])) for i in range(10)]
        await settle()
        gate.open()  # all ten arrived while the first waited for company
        results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    finally:
        await batcher.stop()
    assert gate.asked == [0.05]
    assert run.sizes == [8, 2]
    assert results == [[f"result:{i}"] for i in range(10)]
    stats = batcher.stats()
    assert {k: stats[k] for k in ("queue_depth", "batches", "items", "mean_batch", "in_flight")} == {
        "queue_depth": 0,
        "batches": 1,
        "items": 10,
        "mean_batch": 10.0,
        "in_flight": 0,
    }
    assert stats["service_rate_per_s"] > 0 and stats["admission_refused"] == 0  # 10 deliveries: the estimate has data
    assert batcher.busy_s > 0
    assert len(run.threads) == 1 and next(iter(run.threads)).startswith("test-engine")


async def test_multi_item_submit_in_order():
    run = FakeRunBatch()
    batcher = started(run)
    try:
        results = await asyncio.wait_for(batcher.submit(["a", "b", "c", "d", "e"]), 5)
    finally:
        await batcher.stop()
    assert results == ["result:a", "result:b", "result:c", "result:d", "result:e"]
    assert run.sizes == [5]


async def test_multi_item_submit_larger_than_batch_is_split_in_order():
    run = FakeRunBatch()
    batcher = started(run, max_batch=4)
    try:
        results = await asyncio.wait_for(batcher.submit(list(range(10))), 5)
    finally:
        await batcher.stop()
    assert results == [f"result:{i}" for i in range(10)]
    assert run.sizes == [4, 4, 2]


async def test_empty_submit_returns_empty():
    batcher = started(FakeRunBatch())
    try:
        assert await asyncio.wait_for(batcher.submit([]), 5) == []
    finally:
        await batcher.stop()


async def test_full_queue_raises_overloaded():
    gate = threading.Event()
    run = FakeRunBatch(gate=gate)
    batcher = started(run, max_batch=1, max_queue=2)
    try:
        in_flight = asyncio.create_task(batcher.submit(["running"]))
        await in_thread(run.entered)  # the loop is now blocked inside the batch
        queued = asyncio.create_task(batcher.submit(["q1", "q2"]))
        await settle()
        assert batcher.depth == 2
        with pytest.raises(EngineOverloaded) as info:
            await batcher.submit(["one too many"])
        assert info.value.retry_after_s >= 1
        assert batcher.depth == 2  # the refused item was not queued
        gate.set()
        assert await asyncio.wait_for(in_flight, 5) == ["result:running"]
        assert await asyncio.wait_for(queued, 5) == ["result:q1", "result:q2"]
    finally:
        gate.set()
        await batcher.stop()
    assert run.batches == [["running"], ["q1"], ["q2"]]


async def test_admission_is_all_or_nothing():
    gate = threading.Event()
    run = FakeRunBatch(gate=gate)
    batcher = started(run, max_batch=1, max_queue=3)
    try:
        in_flight = asyncio.create_task(batcher.submit(["running"]))
        await in_thread(run.entered)
        queued = asyncio.create_task(batcher.submit(["q1"]))
        await settle()
        assert batcher.depth == 1
        with pytest.raises(EngineOverloaded):
            await batcher.submit(["a", "b", "c"])  # 1 + 3 > 3: none of them is queued
        assert batcher.depth == 1
        gate.set()
        await asyncio.wait_for(asyncio.gather(in_flight, queued), 5)
    finally:
        gate.set()
        await batcher.stop()
    assert ["a"] not in run.batches


async def test_loop_exception_reaches_every_caller_and_batcher_recovers():
    run, gate = FakeRunBatch(fail_on="bad"), Gate()
    batcher = started(run, gate)
    try:
        tasks = [asyncio.create_task(batcher.submit([v])) for v in ("ok1", "bad", "ok2")]
        await settle()
        gate.open()
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        assert run.sizes == [3]
        for outcome in outcomes:
            assert isinstance(outcome, ValueError)
            assert str(outcome) == "boom on bad"
        # the worker survived and serves the next batch
        assert await asyncio.wait_for(batcher.submit(["next"]), 5) == ["result:next"]
        assert batcher.running
    finally:
        await batcher.stop()
    assert run.sizes == [3, 1]
    assert batcher.batches == 2


async def test_submit_before_start_raises_unavailable():
    batcher: Batcher = Batcher(static_batches(FakeRunBatch(), 8), max_batch=8, wait_ms=5, max_queue=8)
    assert not batcher.running
    assert batcher.depth == 0
    with pytest.raises(EngineUnavailable):
        await batcher.submit(["x"])
    await batcher.stop()  # stopping a never-started batcher is harmless


async def test_submit_after_stop_raises_unavailable():
    batcher = started(FakeRunBatch())
    assert batcher.running
    assert await asyncio.wait_for(batcher.submit(["x"]), 5) == ["result:x"]
    await batcher.stop()
    assert not batcher.running
    with pytest.raises(EngineUnavailable):
        await batcher.submit(["y"])


async def test_stop_fails_queued_and_in_flight_callers():
    gate = threading.Event()
    run = FakeRunBatch(gate=gate)
    batcher = started(run, max_batch=1, max_queue=8)
    in_flight = asyncio.create_task(batcher.submit(["running"]))
    await in_thread(run.entered)
    queued = [asyncio.create_task(batcher.submit([f"q{i}"])) for i in range(3)]
    await settle()
    assert batcher.depth == 3
    await batcher.stop()
    gate.set()  # the blocked thread finishes; the loop admits nothing more
    for task in [in_flight, *queued]:
        with pytest.raises(EngineUnavailable):
            await asyncio.wait_for(task, 2)
    assert batcher.depth == 0
    assert run.batches == [["running"]]  # queued items never ran


async def test_cancelled_caller_is_skipped():
    run, gate = FakeRunBatch(), Gate()
    batcher = started(run, gate)
    try:
        gone = asyncio.create_task(batcher.submit(["gone"]))
        await settle()
        gone.cancel()  # gave up (deadline) while the batcher waited for company
        stays = asyncio.create_task(batcher.submit(["stays"]))
        await settle()
        gate.open()
        assert await asyncio.wait_for(stays, 5) == ["result:stays"]
    finally:
        await batcher.stop()
    assert run.batches == [["stays"]]


async def test_a_taken_item_the_loop_never_answers_gets_an_error():
    def forgetful(take: Take, deliver: Deliver) -> None:
        (first, *_rest) = take(8)
        deliver(*first)  # the rest is dropped: their callers must not hang

    batcher = started(forgetful)
    try:
        results = await asyncio.wait_for(batcher.submit(["a", "b"]), 2)
    finally:
        await batcher.stop()
    assert results[0] == "a" and isinstance(results[1], EngineError)


async def test_static_batches_with_a_short_result_list_fail_that_batch():
    batcher = started(lambda take, deliver: static_batches(lambda batch: ["only-one"], 8)(take, deliver))
    try:
        # Per-item outcomes follow the engine contract: an EngineError value for each ticket, no hang.
        results = await asyncio.wait_for(batcher.submit(["a", "b"]), 2)
    finally:
        await batcher.stop()
    assert len(results) == 2 and all(isinstance(r, EngineError) for r in results)


async def test_continuous_loop_admits_mid_stream_and_delivers_each_when_ready():
    loops: list[int] = []
    delivered: list[str] = []
    stream_started, go, a_seen = threading.Event(), threading.Event(), threading.Event()

    def run_stream(take: Take, deliver: Deliver) -> None:
        loops.append(1)
        active = take(4)
        stream_started.set()
        assert go.wait(10)
        while True:
            active += take(4 - len(active))
            if not active:
                return
            key, value = active.pop(0)  # one decode step: the oldest ticket finishes
            delivered.append(value)
            deliver(key, f"done:{value}")
            if value == "a":  # b and c are still decoding: a's caller must have its answer already
                assert a_seen.wait(10), "a was not delivered while its batch was still running"

    batcher = started(run_stream, max_batch=4, max_queue=16)
    try:
        a = asyncio.create_task(batcher.submit(["a"]))
        rest = asyncio.create_task(batcher.submit(["b", "c"]))
        await in_thread(stream_started)
        late = asyncio.create_task(batcher.submit(["d"]))  # arrives while the loop runs
        await settle()
        go.set()
        assert await asyncio.wait_for(a, 5) == ["done:a"]
        a_seen.set()
        assert await asyncio.wait_for(rest, 5) == ["done:b", "done:c"]
        assert await asyncio.wait_for(late, 5) == ["done:d"]
    finally:
        go.set()
        a_seen.set()
        await batcher.stop()
    assert len(loops) == 1, "the late ticket joined the running loop instead of waiting for a new one"
    assert delivered == ["a", "b", "c", "d"]


async def test_loop_failure_after_a_delivery_reaches_only_the_waiting_callers():
    def run_stream(take: Take, deliver: Deliver) -> None:
        items = take(4)
        deliver(*items[0])
        raise RuntimeError("out of memory")

    batcher = started(run_stream, max_batch=4, max_queue=16)
    try:
        assert await asyncio.wait_for(batcher.submit(["x"]), 2) == ["x"]
        with pytest.raises(RuntimeError, match="out of memory"):
            await asyncio.wait_for(batcher.submit(["y", "z"]), 2)
    finally:
        await batcher.stop()


async def test_static_batches_run_one_batch_after_another():
    """The benchmark's baseline loop: a batch starts only when the previous one has finished."""
    from server.engines.batcher import Batcher, static_batches

    run = FakeRunBatch()
    batcher: Batcher = Batcher(static_batches(run, 2), max_batch=2, wait_ms=0, max_queue=8)
    batcher.start()
    try:
        assert await asyncio.wait_for(batcher.submit([1, 2, 3]), 5) == ["result:1", "result:2", "result:3"]
    finally:
        await batcher.stop()
    assert run.sizes == [2, 1]
