"""Admission that keeps its promise: the measured service estimate, and the batcher refusing (429) a
ticket whose expected completion is past its deadline, with a Retry-After computed from the queue.

A fake clock freezes time and a held decode loop keeps tickets queued, so nothing depends on how fast
this machine is."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from server.engines.base import EngineOverloaded
from server.engines.batcher import Batcher, ServiceEstimate
from server.engines.served import ServedEngine
from tests.engines.held import HeldRunner
from tests.engines.test_batcher import Deliver, Take, settle
from tests.engines.test_served import TICKETS, FakeRunner, Opener, settings_for


class Clock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def warm_estimate(rate: float, service_s: float, n: int = 8) -> tuple[ServiceEstimate, Clock]:
    """An estimate that has seen `n` deliveries at `rate` per busy second, each `service_s` in the loop."""
    est = ServiceEstimate(window_s=100.0, min_samples=n)
    est.start(0.0)
    for i in range(1, n + 1):
        est.delivered(i / rate, service_s)
    return est, Clock(n / rate)


def test_the_estimate_counts_busy_time_only() -> None:
    est = ServiceEstimate(window_s=30.0, min_samples=4)
    est.start(0.0)
    for t in (1.0, 2.0, 3.0):
        est.delivered(t, 5.0)
    assert not est.ready  # three deliveries are not data enough
    est.delivered(4.0, 7.0)
    assert est.ready and est.rate(4.0) == pytest.approx(1.0) and est.service_s() == pytest.approx(5.5)
    est.stop(4.0)
    # An hour idle is not a slow engine: the rate is what it was when it last worked.
    est.start(3604.0)
    assert est.rate(3604.0) == pytest.approx(1.0)
    # A busy engine that stops delivering is a slow one: the time since the last delivery counts.
    assert est.rate(3604.0 + 26.0) == pytest.approx(4 / 30.0)


def test_the_window_forgets_an_old_rate() -> None:
    est = ServiceEstimate(window_s=10.0, min_samples=2)
    est.start(0.0)
    for i in range(1, 41):  # 4 tickets/s for 10 s
        est.delivered(i / 4, 1.0)
    for i in range(1, 11):  # then 1 ticket/s for 10 s
        est.delivered(10.0 + i, 1.0)
    assert est.rate(20.0) == pytest.approx(1.0)


class HeldStream:
    """A decode loop with one slot: takes a ticket, holds it until released, answers, takes the next."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.holding = threading.Event()

    def __call__(self, take: Take, deliver: Deliver) -> None:
        while batch := take(1):
            self.holding.set()
            assert self.release.wait(10), "the test never released the loop"
            for key, value in batch:
                deliver(key, f"done:{value}")


async def held_batcher(
    estimate: ServiceEstimate | None, clock: Clock, **kw: Any
) -> tuple[Batcher[Any, Any], HeldStream, asyncio.Task[Any]]:
    stream = HeldStream()
    params: dict[str, Any] = {"max_batch": 1, "wait_ms": 0, "max_queue": 64, "deadline_s": 10.0}
    params.update(kw)
    batcher: Batcher[Any, Any] = Batcher(stream, estimate=estimate, clock=clock, **params)
    batcher.start()
    first = asyncio.create_task(batcher.submit(["running"]))
    assert await asyncio.to_thread(stream.holding.wait, 10)
    return batcher, stream, first


async def test_a_ticket_that_cannot_meet_its_deadline_is_refused_with_retry_after_from_the_queue() -> None:
    # 0.5 tickets/s, 2 s in the loop each, deadline 10 s: a queued ticket expects (ahead) / 0.5 + 2 s.
    estimate, clock = warm_estimate(rate=0.5, service_s=2.0)
    batcher, stream, first = await held_batcher(estimate, clock)
    try:
        queued = [asyncio.create_task(batcher.submit([f"q{i}"])) for i in range(4)]
        await settle()
        assert batcher.depth == 4 and batcher.expected_s(1) == pytest.approx(5 / 0.5 + 2)
        with pytest.raises(EngineOverloaded) as one:
            await batcher.submit(["fifth"])  # 5 ahead incl. itself: 12 s > 10 s
        assert one.value.retry_after_s == 2  # after 2 s one ticket has drained: 4 / 0.5 + 2 = 10 fits
        with pytest.raises(EngineOverloaded) as three:
            await batcher.submit(["a", "b", "c"])  # all or nothing: its last ticket expects 16 s
        assert three.value.retry_after_s == 6
        assert batcher.depth == 4 and batcher.refused == 4  # nothing refused was queued
        # A caller that may wait longer queues longer.
        patient = asyncio.create_task(batcher.submit(["patient"], deadline_s=60.0))
        await settle()
        assert batcher.depth == 5
        stream.release.set()
        assert await asyncio.wait_for(first, 5) == ["done:running"]
        assert [await asyncio.wait_for(q, 5) for q in queued] == [[f"done:q{i}"] for i in range(4)]
        assert await asyncio.wait_for(patient, 5) == ["done:patient"]
    finally:
        stream.release.set()
        await batcher.stop()
    assert batcher.stats()["admission_refused"] == 4


async def test_cold_start_admits_up_to_max_queue() -> None:
    batcher, stream, first = await held_batcher(None, Clock(), max_queue=6, deadline_s=0.001)
    try:
        queued = asyncio.create_task(batcher.submit([f"q{i}" for i in range(6)]))
        await settle()
        assert batcher.depth == 6 and batcher.expected_s(1) is None  # no data yet: no deadline refusal
        with pytest.raises(EngineOverloaded):  # the bounded queue still holds
            await batcher.submit(["one too many"])
        assert batcher.refused == 0
        stream.release.set()
        assert len(await asyncio.wait_for(queued, 5)) == 6
        await asyncio.wait_for(first, 5)
    finally:
        stream.release.set()
        await batcher.stop()


async def test_a_free_slot_is_never_refused_and_no_deadline_means_no_refusal() -> None:
    # The engine is slow (one ticket a minute) but has a free slot: waiting for it costs nothing.
    estimate, clock = warm_estimate(rate=1 / 60, service_s=60.0)
    batcher, stream, first = await held_batcher(estimate, clock, max_batch=2, deadline_s=10.0)
    try:
        assert batcher.in_flight == 1
        second = asyncio.create_task(batcher.submit(["free slot"]))
        await settle()
        with pytest.raises(EngineOverloaded):
            await batcher.submit(["queued behind"])
        batcher.deadline_s = None  # admission off (engine.admission: false): only max_queue bounds it
        third = asyncio.create_task(batcher.submit(["no deadline"]))
        await settle()
        stream.release.set()
        for task in (first, second, third):
            await asyncio.wait_for(task, 5)
    finally:
        stream.release.set()
        await batcher.stop()


async def test_the_served_engine_keeps_the_configured_deadline_and_learns_its_rate(tmp_path, taxonomy) -> None:
    held = HeldRunner(FakeRunner("a"))
    settings = settings_for(tmp_path).variant(engine={"batch_wait_ms": 0, "request_timeout_s": 42.0})
    engine = ServedEngine(settings, taxonomy, Opener(), runner=held)
    await engine.start()
    try:
        assert engine._batcher is not None and engine._batcher.deadline_s == 42.0
        held.release.set()
        for _ in range(4):
            await asyncio.wait_for(engine.classify(TICKETS), 5)
        stats = engine.stats()
        assert stats["items"] == 8 and stats["service_rate_per_s"] > 0 and stats["in_flight"] == 0
    finally:
        held.release.set()
        await engine.stop()
    off = ServedEngine(settings.variant(engine={"admission": False}), taxonomy, Opener(), runner=FakeRunner("a"))
    await off.start()
    try:
        assert off._batcher is not None and off._batcher.deadline_s is None
    finally:
        await off.stop()


def test_a_full_batch_counts_what_is_in_flight() -> None:
    # Four rows decoding at 0.5 tickets/s: the next ticket waits for them to drain (Little's law), not only
    # for the mean service time measured on lighter load (2 s here).
    estimate, clock = warm_estimate(rate=0.5, service_s=2.0)
    batcher: Batcher[Any, Any] = Batcher(
        HeldStream(), max_batch=4, wait_ms=0, max_queue=8, estimate=estimate, clock=clock, deadline_s=10.0
    )
    batcher.in_flight = 3
    assert batcher.expected_s(1) == pytest.approx(2.0)  # a free slot: its own service time
    batcher.in_flight = 4
    assert batcher.expected_s(1) == pytest.approx(5 / 0.5)
