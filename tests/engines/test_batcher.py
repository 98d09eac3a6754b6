"""DynamicBatcher with a fake run_batch: batching, ordering, back-pressure, errors, lifecycle."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from server.engines.base import EngineError, EngineOverloaded, EngineUnavailable
from server.engines.batcher import DynamicBatcher


class FakeRunner:
    """Records batch sizes; optionally blocks on an event or fails on a marked item."""

    def __init__(self, delay_s: float = 0.01, fail_on: object = None, gate: threading.Event | None = None):
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.gate = gate
        self.entered = threading.Event()
        self.sizes: list[int] = []
        self.batches: list[list] = []
        self.threads: set[str] = set()

    def __call__(self, batch: list) -> list:
        self.sizes.append(len(batch))
        self.batches.append(list(batch))
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in batch:
            raise ValueError(f"boom on {self.fail_on}")
        return [f"result:{v}" for v in batch]


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def started(runner, **kw) -> DynamicBatcher:
    params = {"max_batch": 8, "wait_ms": 50, "max_queue": 64, "name": "test-engine"}
    params.update(kw)
    batcher = DynamicBatcher(runner, **params)
    batcher.start()
    return batcher


async def test_concurrent_single_submits_are_batched():
    runner = FakeRunner(delay_s=0.02)
    batcher = await started(runner, max_batch=8, wait_ms=50)
    try:
        results = await asyncio.wait_for(asyncio.gather(*(batcher.submit([i]) for i in range(10))), 5)
    finally:
        await batcher.stop()
    assert runner.sizes == [8, 2]
    assert results == [[f"result:{i}"] for i in range(10)]
    assert sorted(v for b in runner.batches for v in b) == list(range(10))
    assert batcher.stats() == {"queue_depth": 0, "batches": 2, "items": 10, "mean_batch": 5.0}
    assert batcher.busy_s > 0
    assert len(runner.threads) == 1 and next(iter(runner.threads)).startswith("test-engine")


async def test_lone_item_waits_at_most_wait_ms():
    runner = FakeRunner(delay_s=0)
    batcher = await started(runner, wait_ms=30)
    try:
        t0 = time.perf_counter()
        assert await asyncio.wait_for(batcher.submit(["x"]), 5) == ["result:x"]
        elapsed = time.perf_counter() - t0
    finally:
        await batcher.stop()
    assert runner.sizes == [1]
    assert 0.02 <= elapsed < 2.0


async def test_multi_item_submit_in_order():
    runner = FakeRunner()
    batcher = await started(runner)
    try:
        results = await asyncio.wait_for(batcher.submit(["a", "b", "c", "d", "e"]), 5)
    finally:
        await batcher.stop()
    assert results == ["result:a", "result:b", "result:c", "result:d", "result:e"]
    assert runner.sizes == [5]


async def test_multi_item_submit_larger_than_batch_is_split_in_order():
    runner = FakeRunner()
    batcher = await started(runner, max_batch=4, wait_ms=10)
    try:
        results = await asyncio.wait_for(batcher.submit(list(range(10))), 5)
    finally:
        await batcher.stop()
    assert results == [f"result:{i}" for i in range(10)]
    assert runner.sizes == [4, 4, 2]


async def test_empty_submit_returns_empty():
    batcher = await started(FakeRunner())
    try:
        assert await asyncio.wait_for(batcher.submit([]), 5) == []
    finally:
        await batcher.stop()


async def test_full_queue_raises_overloaded():
    gate = threading.Event()
    runner = FakeRunner(delay_s=0, gate=gate)
    batcher = await started(runner, max_batch=1, wait_ms=0, max_queue=2)
    try:
        in_flight = asyncio.create_task(batcher.submit(["running"]))
        await wait_until(runner.entered.is_set)  # the worker is now blocked inside run_batch
        queued = asyncio.create_task(batcher.submit(["q1", "q2"]))
        await wait_until(lambda: batcher.depth == 2)
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
    assert runner.batches == [["running"], ["q1"], ["q2"]]


async def test_admission_is_all_or_nothing():
    gate = threading.Event()
    runner = FakeRunner(delay_s=0, gate=gate)
    batcher = await started(runner, max_batch=1, wait_ms=0, max_queue=3)
    try:
        in_flight = asyncio.create_task(batcher.submit(["running"]))
        await wait_until(runner.entered.is_set)
        queued = asyncio.create_task(batcher.submit(["q1"]))
        await wait_until(lambda: batcher.depth == 1)
        with pytest.raises(EngineOverloaded):
            await batcher.submit(["a", "b", "c"])  # 1 + 3 > 3: none of them is queued
        assert batcher.depth == 1
        gate.set()
        await asyncio.wait_for(asyncio.gather(in_flight, queued), 5)
    finally:
        gate.set()
        await batcher.stop()
    assert ["a"] not in runner.batches


async def test_batch_exception_reaches_every_caller_and_batcher_recovers():
    runner = FakeRunner(delay_s=0.01, fail_on="bad")
    batcher = await started(runner, max_batch=8, wait_ms=50)
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                batcher.submit(["ok1"]), batcher.submit(["bad"]), batcher.submit(["ok2"]), return_exceptions=True
            ),
            5,
        )
        assert runner.sizes == [3]
        for outcome in outcomes:
            assert isinstance(outcome, ValueError)
            assert str(outcome) == "boom on bad"
        # the worker survived and serves the next batch
        assert await asyncio.wait_for(batcher.submit(["next"]), 5) == ["result:next"]
        assert batcher.running
    finally:
        await batcher.stop()
    assert runner.sizes == [3, 1]
    assert batcher.batches == 2


async def test_submit_before_start_raises_unavailable():
    batcher = DynamicBatcher(FakeRunner(), max_batch=8, wait_ms=5, max_queue=8)
    assert not batcher.running
    assert batcher.depth == 0
    with pytest.raises(EngineUnavailable):
        await batcher.submit(["x"])
    await batcher.stop()  # stopping a never-started batcher is harmless


async def test_submit_after_stop_raises_unavailable():
    batcher = await started(FakeRunner())
    assert batcher.running
    assert await asyncio.wait_for(batcher.submit(["x"]), 5) == ["result:x"]
    await batcher.stop()
    assert not batcher.running
    with pytest.raises(EngineUnavailable):
        await batcher.submit(["y"])


async def test_stop_fails_queued_futures():
    gate = threading.Event()
    runner = FakeRunner(delay_s=0, gate=gate)
    batcher = await started(runner, max_batch=1, wait_ms=0, max_queue=8)
    in_flight = asyncio.create_task(batcher.submit(["running"]))
    await wait_until(runner.entered.is_set)
    queued = [asyncio.create_task(batcher.submit([f"q{i}"])) for i in range(3)]
    await wait_until(lambda: batcher.depth == 3)
    gate.set()  # let the blocked thread finish so the executor can shut down
    await batcher.stop()
    for task in queued:
        with pytest.raises(EngineUnavailable):
            await asyncio.wait_for(task, 2)
    assert batcher.depth == 0
    assert runner.batches[1:] == []  # queued items never ran
    in_flight.cancel()


async def test_stop_fails_in_flight_callers():
    gate = threading.Event()
    runner = FakeRunner(delay_s=0, gate=gate)
    batcher = await started(runner, max_batch=1, wait_ms=0, max_queue=8)
    in_flight = asyncio.create_task(batcher.submit(["running"]))
    await wait_until(runner.entered.is_set)
    gate.set()
    await batcher.stop()
    try:
        with pytest.raises(EngineUnavailable):
            await asyncio.wait_for(in_flight, 1)
    finally:
        in_flight.cancel()


async def test_cancelled_caller_is_skipped():
    runner = FakeRunner(delay_s=0)
    batcher = await started(runner, max_batch=8, wait_ms=80)
    try:
        gone = asyncio.create_task(batcher.submit(["gone"]))
        await asyncio.sleep(0.01)
        gone.cancel()
        stays = await asyncio.wait_for(batcher.submit(["stays"]), 5)
    finally:
        await batcher.stop()
    assert stays == ["result:stays"]
    assert runner.batches == [["stays"]]


async def test_short_result_list_fails_the_callers_left_without_result():
    batcher = await started(lambda batch: ["only-one"], wait_ms=20)
    try:
        # Per-item outcomes follow the engine contract: an EngineError value for each ticket, no hang.
        results = await asyncio.wait_for(batcher.submit(["a", "b"]), 1)
        assert len(results) == 2 and all(isinstance(r, EngineError) for r in results)
    finally:
        await batcher.stop()


async def test_continuous_batcher_admits_mid_stream_and_delivers_each_when_ready():
    import time

    from server.engines.batcher import ContinuousBatcher

    finished_at: dict[str, float] = {}
    loops = []

    def run_stream(take, deliver):
        loops.append(1)
        active = []
        while True:
            active += take(4 - len(active))
            if not active:
                return
            time.sleep(0.03)  # one decode step; the oldest ticket finishes
            key, value = active.pop(0)
            finished_at[value] = time.perf_counter()
            deliver(key, f"done:{value}")

    batcher = ContinuousBatcher(run_stream, max_batch=4, wait_ms=5, max_queue=16)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit(["a", "b", "c"]))
        await asyncio.sleep(0.04)  # the stream is running now
        late = asyncio.create_task(batcher.submit(["d"]))
        got_a_at = None
        while got_a_at is None:
            await asyncio.sleep(0.005)
            if "a" in finished_at:
                got_a_at = time.perf_counter()
        assert await first == ["done:a", "done:b", "done:c"]
        assert await late == ["done:d"]
    finally:
        await batcher.stop()
    assert len(loops) == 1, "the late ticket joined the running stream instead of waiting for a new batch"
    assert finished_at["a"] < finished_at["c"] < finished_at["d"]


async def test_continuous_batcher_failure_reaches_waiting_callers():
    from server.engines.batcher import ContinuousBatcher

    def run_stream(take, deliver):
        items = take(4)
        deliver(*items[0])
        raise RuntimeError("out of memory")

    batcher = ContinuousBatcher(run_stream, max_batch=4, wait_ms=1, max_queue=16)
    batcher.start()
    try:
        ok = asyncio.create_task(batcher.submit(["x"]))
        assert await asyncio.wait_for(ok, 2) == ["x"]
        with pytest.raises(RuntimeError, match="out of memory"):
            await asyncio.wait_for(batcher.submit(["y", "z"]), 2)
    finally:
        await batcher.stop()
