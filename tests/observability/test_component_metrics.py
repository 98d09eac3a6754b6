"""The metrics of the parts below the service, each driven for real: the continuous batcher (queue depth and
wait, batch sizes, model time, tokens, invalid outputs, admission refusals) and the hosted fallback over real
HTTP to the fake provider (calls by outcome, tokens, breaker state and openings)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import REGISTRY

from server.engines.base import EngineError, EngineOverloaded
from server.engines.batcher import Batcher
from server.fallback import HostedUnavailable
from server.observability import metrics
from tests.fallback.fake_hosted import FakeHostedAPI, Reply
from tests.fallback.test_hosted import TICKET, FakeClock, make, redactor, settings_for  # noqa: F401 - fixtures
from tests.observability.samples import Samples, delta


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Tokens:
    prompt_tokens: int
    completion_tokens: int


async def test_batcher_reports_queue_batches_model_time_and_tokens() -> None:
    engine = "metrics-test-engine"
    release = threading.Event()
    seen_depth: list[float] = []

    def stream(take: Callable[[int], list[tuple[Any, Any]]], deliver: Callable[[Any, Any], None]) -> None:
        while batch := take(8):
            release.wait(5)  # hold the first step so the other tickets queue up behind it
            for key, value_ in batch:
                deliver(key, EngineError("invalid JSON from decoder") if value_ == "bad" else Tokens(100, 7))

    before = Samples(metrics.render().decode())
    batcher: Batcher[str, Any] = Batcher(stream, max_batch=8, wait_ms=0, max_queue=3, name=engine)
    batcher.start()
    assert value("triage_queue_capacity", engine=engine) == 3
    first = asyncio.create_task(batcher.submit(["a"]))
    await asyncio.sleep(0.05)  # the loop took "a" and waits on `release`
    rest = asyncio.create_task(batcher.submit(["b", "bad", "c"]))
    await asyncio.sleep(0.05)
    seen_depth.append(value("triage_queue_depth", engine=engine))
    with pytest.raises(EngineOverloaded):
        await batcher.submit(["overflow"])  # 3 queued + 1 > max_queue
    release.set()
    await asyncio.gather(first, rest)
    await asyncio.sleep(0.05)  # deliveries land on the loop
    after = Samples(metrics.render().decode())
    await batcher.stop()

    assert seen_depth == [3]
    assert after.get("triage_queue_depth", engine=engine) == 0
    assert delta(before, after, "triage_queue_wait_seconds_count", engine=engine) == 4
    assert delta(before, after, "triage_queue_wait_seconds_sum", engine=engine) >= 3 * 0.04  # b, bad, c waited
    assert delta(before, after, "triage_batch_size_count", engine=engine) == 2  # "a", then the three together
    assert delta(before, after, "triage_batch_size_sum", engine=engine) == 1 + 3
    assert delta(before, after, "triage_model_seconds_count", engine=engine) == 4
    assert delta(before, after, "triage_model_busy_seconds_total", engine=engine) > 0.05
    assert delta(before, after, "triage_tokens_total", engine=engine, direction="in") == 300
    assert delta(before, after, "triage_tokens_total", engine=engine, direction="out") == 21
    assert delta(before, after, "triage_invalid_outputs_total", engine=engine) == 1
    assert delta(before, after, "triage_admission_refusals_total", engine=engine, reason="queue_full") == 1
    assert value("triage_queue_capacity", engine=engine) == 0  # stopped


async def test_hosted_calls_tokens_and_breaker_state(fake_openai: FakeHostedAPI, make: Any) -> None:  # noqa: F811
    clock = FakeClock()
    fallback = make(
        settings_for(fake_openai, "openai", max_retries=0, breaker_failures=2, breaker_reset_s=30), clock=clock
    )
    before = Samples(metrics.render().decode())
    fake_openai.fail(500, times=2)
    for _ in range(2):
        with pytest.raises(HostedUnavailable):
            await fallback.classify(TICKET)
    assert value("triage_hosted_breaker_state", state="open") == 1
    assert value("triage_hosted_breaker_state", state="closed") == 0
    with pytest.raises(HostedUnavailable):
        await fallback.classify(TICKET)  # fails fast
    clock.now += 31
    fake_openai.script(Reply(usage=(1200, 300)))
    assert (await fallback.classify(TICKET)).valid  # the half-open trial succeeds
    after = Samples(metrics.render().decode())

    assert delta(before, after, "triage_hosted_calls_total", outcome="failure", reason="server_error") == 2
    assert delta(before, after, "triage_hosted_calls_total", outcome="rejected", reason="breaker_open") == 1
    assert delta(before, after, "triage_hosted_calls_total", outcome="success") == 1
    assert delta(before, after, "triage_hosted_duration_seconds_count") == 3  # the rejected one never ran
    assert delta(before, after, "triage_hosted_breaker_opened_total") == 1
    assert delta(before, after, "triage_tokens_total", engine="hosted", direction="in") == 1200
    assert delta(before, after, "triage_tokens_total", engine="hosted", direction="out") == 300
    assert after.get("triage_hosted_breaker_state", state="closed") == 1
    assert after.get("triage_hosted_breaker_state", state="open") == 0
