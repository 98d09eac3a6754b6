"""Promotion reaches a running engine without a restart: the new adapter loads beside the old one,
in-flight tickets finish, later tickets run on the new one; a broken promotion keeps the old one."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from server.engines.base import EngineOutput
from server.engines.transformers_engine import TransformersEngine
from server.prompts import TicketInput
from server.registry import Registry
from tests.conftest import ROOT

pytestmark = pytest.mark.model
SHIPPED = ROOT / "models" / "adapters" / "tickets-smollm2-v1"
TICKETS = [
    TicketInput("Refund", "I was charged twice for my subscription."),
    TicketInput("Login", "Cannot log in since the update."),
]


def copy_adapter(dst_root, name: str):
    dst = dst_root / name
    shutil.copytree(SHIPPED, dst, ignore=shutil.ignore_patterns("heldout.jsonl"))
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest.update(name=name, gate={"verdict": "yes", "checks": []})
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


async def wait_for(predicate, timeout: float = 120.0) -> None:
    for _ in range(int(timeout / 0.2)):
        if predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("condition not reached in time")


async def test_promotion_hot_swaps_and_a_broken_one_keeps_serving(tmp_path, fast_settings, taxonomy):
    adapters = tmp_path / "adapters"
    for name in ("a", "b"):
        copy_adapter(adapters, name)
    registry = Registry(tmp_path / "registry.json", adapters)
    registry.promote("a")
    settings = fast_settings.model_copy(
        update={
            "model": fast_settings.model.model_copy(
                update={"adapter": "registry", "registry": tmp_path / "registry.json", "watch_registry_s": 0.2}
            )
        }
    )
    engine = TransformersEngine(settings, taxonomy)
    await engine.start()
    try:
        assert engine.info.adapter == "a" and engine.prompt_version == "classify/v2"
        in_flight = asyncio.ensure_future(engine.classify(TICKETS))
        registry.promote("b")
        first = await in_flight
        assert all(isinstance(o, EngineOutput) for o in first)
        await wait_for(lambda: engine.info.adapter == "b")
        after = await engine.classify(TICKETS)
        assert all(isinstance(o, EngineOutput) for o in after)
        assert engine.stats()["adapter_swaps"] >= 1

        # A hand-edited index naming a missing adapter: the swap fails, "b" keeps serving.
        (tmp_path / "registry.json").write_text(json.dumps({"active": "missing", "history": []}))
        await wait_for(lambda: engine.swap_error is not None or engine.info.adapter != "b", timeout=30)
        assert engine.info.adapter == "b" and engine.ready
        assert isinstance((await engine.classify(TICKETS[:1]))[0], EngineOutput)
    finally:
        await engine.stop()
