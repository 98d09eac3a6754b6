"""The generic served engine around fake runners (no model): lifecycle, hot swap between decode loops,
provenance of answers, failed swaps and registry polling. The real-model swap is test_hot_swap.py."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Sequence
from typing import Any

import pytest

from server.config import load_settings
from server.engines.base import (
    AdapterChoice,
    Deliver,
    EngineError,
    EngineUnavailable,
    Item,
    ModelInfo,
    Outcome,
    Take,
    run_to_list,
    served_by,
)
from server.engines.served import ServedEngine
from server.prompts import TicketInput
from server.registry import Registry
from server.results import ClassificationResult
from tests.conftest import ROOT
from tests.engines.held import HeldRunner

TICKETS = [TicketInput("Refund", "charged twice"), TicketInput("Login", "cannot log in")]


class FakeRunner:
    """Answers every ticket with its adapter's name, one per step, up to 4 at once."""

    def __init__(self, adapter: str | None):
        self.adapter = adapter
        self.loops = 0

    @property
    def info(self) -> ModelInfo:
        return ModelInfo("base", self.adapter, "float32", "fake")

    prompt_version = "classify/v2"
    supports_review = False

    def stats(self) -> dict[str, Any]:
        return {"label_head": None}

    def run(self, items: Sequence[Item]) -> list[Outcome]:
        return run_to_list(self.run_stream, items)

    def run_stream(self, take: Take, deliver: Deliver, max_batch: int | None = None) -> None:
        self.loops += 1
        active: list[tuple[Any, Item]] = []
        while True:
            active += take(4 - len(active))
            if not active:
                return
            key, item = active.pop(0)
            deliver(key, answer(self.adapter, item))


def answer(adapter: str | None, item: Item) -> ClassificationResult:
    subject = item.subject if isinstance(item, TicketInput) else item.ticket.subject
    return ClassificationResult(
        output={"category": f"{adapter}:{subject}"},
        confidence={},
        raw_text="",
        prompt_tokens=0,
        completion_tokens=0,
        truncated=False,
        prompt_version="classify/v2",
    )


class Opener:
    """The engine's runner factory: fake runners by adapter name, or a load failure."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.opened: list[AdapterChoice] = []

    def __call__(self, adapter: AdapterChoice) -> FakeRunner:
        self.opened.append(adapter)
        if self.fail:
            raise OSError("no such model")
        if adapter == "resolve":
            return FakeRunner("configured")
        return FakeRunner(adapter.name if adapter else None)


def settings_for(tmp_path, **model: Any):
    return load_settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        model={"adapter": "none", "watch_registry_s": 0, **model},
        engine={"batch_wait_ms": 0},
    )


def adapter_entry(name: str):
    from server.registry import AdapterEntry

    return AdapterEntry(name, ROOT / "models" / "adapters" / "tickets-smollm2-v1", {"name": name})


async def test_loads_through_the_opener_and_answers_with_provenance(tmp_path, taxonomy):
    opener = Opener()
    engine = ServedEngine(settings_for(tmp_path), taxonomy, opener)
    assert not engine.ready and engine.info.dtype == "unloaded"
    with pytest.raises(EngineUnavailable):
        await engine.classify(TICKETS)
    await engine.start()
    try:
        assert opener.opened == ["resolve"] and engine.ready and engine.info.adapter == "configured"
        outs = await asyncio.wait_for(engine.classify(TICKETS), 5)
    finally:
        await engine.stop()
    assert [o.output["category"] for o in outs] == ["configured:Refund", "configured:Login"]  # type: ignore[union-attr]
    assert all(served_by(o) == engine.info for o in outs if isinstance(o, ClassificationResult))
    assert engine.stats()["items"] == 2 and engine.stats()["label_head"] is None


async def test_a_failed_load_leaves_the_engine_unavailable_with_the_reason(tmp_path, taxonomy):
    engine = ServedEngine(settings_for(tmp_path), taxonomy, Opener(fail=True))
    await engine.start()
    try:
        assert not engine.ready and engine.load_error == "OSError: no such model"
        with pytest.raises(EngineUnavailable, match="no such model"):
            await engine.classify(TICKETS)
    finally:
        await engine.stop()


async def test_swap_waits_for_tickets_in_flight_then_serves_the_new_runner(tmp_path, taxonomy):
    old = HeldRunner(FakeRunner("old"))
    engine = ServedEngine(settings_for(tmp_path), taxonomy, Opener(), runner=old)
    await engine.start()
    try:
        in_flight = asyncio.create_task(engine.classify(TICKETS))
        await old.wait_in_flight()
        await engine.swap_to(adapter_entry("new"))
        assert engine.info.adapter == "old" and engine.swaps == 0, "swapped under tickets in flight"
        old.release.set()
        first = await asyncio.wait_for(in_flight, 5)
        after = await asyncio.wait_for(engine.classify(TICKETS), 5)
    finally:
        old.release.set()
        await engine.stop()
    assert [o.output["category"] for o in first] == ["old:Refund", "old:Login"]  # type: ignore[union-attr]
    assert [o.output["category"] for o in after] == ["new:Refund", "new:Login"]  # type: ignore[union-attr]
    assert [served_by(o).adapter for o in first + after] == ["old", "old", "new", "new"]  # type: ignore[union-attr, arg-type]
    assert engine.info.adapter == "new" and engine.stats()["adapter_swaps"] == 1


async def test_swap_while_idle_takes_effect_at_once(tmp_path, taxonomy):
    engine = ServedEngine(settings_for(tmp_path), taxonomy, Opener(), runner=FakeRunner("old"))
    await engine.start()
    try:
        await engine.swap_to(adapter_entry("new"))
        assert engine.info.adapter == "new" and engine.swaps == 1
        await engine.swap_to(None)  # the bare base model
        assert engine.info.adapter is None and engine.swaps == 2
    finally:
        await engine.stop()


async def test_a_failed_swap_keeps_the_old_runner_serving(tmp_path, taxonomy):
    engine = ServedEngine(settings_for(tmp_path), taxonomy, Opener(fail=True), runner=FakeRunner("old"))
    await engine.start()
    try:
        await engine.swap_to(adapter_entry("new"))
        assert engine.info.adapter == "old" and engine.ready
        assert engine.stats()["swap_error"] == "OSError: no such model"
        (out,) = await asyncio.wait_for(engine.classify(TICKETS[:1]), 5)
        assert not isinstance(out, EngineError) and out.output["category"] == "old:Refund"
    finally:
        await engine.stop()


async def test_registry_polling_swaps_on_promotion_and_survives_a_broken_index(tmp_path, taxonomy):
    adapters = tmp_path / "adapters"
    for name in ("a", "b"):
        dst = adapters / name
        shutil.copytree(
            ROOT / "models" / "adapters" / "tickets-smollm2-v1", dst, ignore=shutil.ignore_patterns("*.jsonl")
        )
        manifest = json.loads((dst / "manifest.json").read_text())
        manifest.update(name=name, gate={"verdict": "yes", "checks": []})
        (dst / "manifest.json").write_text(json.dumps(manifest))
    registry = Registry(tmp_path / "registry.json", adapters)
    registry.promote("a")
    settings = settings_for(tmp_path, adapter="registry", registry=tmp_path / "registry.json")
    opener = Opener()
    engine = ServedEngine(settings, taxonomy, opener, runner=FakeRunner("a"))
    await engine.start()
    try:
        await engine.poll_registry()
        assert opener.opened == [] and engine.swaps == 0  # nothing changed
        registry.promote("b")
        await engine.poll_registry()
        assert [getattr(a, "name", a) for a in opener.opened] == ["b"] and engine.info.adapter == "b"
        (tmp_path / "registry.json").write_text(json.dumps({"active": "missing", "history": []}))
        await engine.poll_registry()
        assert engine.info.adapter == "b" and engine.ready and engine.swap_error is not None
    finally:
        await engine.stop()
