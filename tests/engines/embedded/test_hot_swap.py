"""Promotion reaches a running engine without a restart: the new adapter loads beside the old one,
tickets in flight finish on the old one, later tickets run on the new one (their answers change and
say which adapter gave them); a broken promotion keeps the old one serving."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from server.engines.base import EngineOutput, served_by
from server.engines.embedded.engine import TransformersEngine
from server.engines.embedded.runner import BatchRunner
from server.prompts import TicketInput
from server.registry import Registry, sha256_file
from tests.conftest import ROOT
from tests.engines.held import HeldRunner

pytestmark = pytest.mark.model
SHIPPED = ROOT / "models" / "adapters" / "tickets-smollm2-v1"
TICKETS = [
    TicketInput("Refund", "I was charged twice for my subscription."),
    TicketInput("Login", "Cannot log in since the update."),
]


def copy_adapter(dst_root: Path, name: str, *, zero_lora: bool = False) -> Path:
    """The shipped adapter under another name; `zero_lora` zeroes its weights, so it serves the base model."""
    dst = dst_root / name
    shutil.copytree(SHIPPED, dst, ignore=shutil.ignore_patterns("heldout.jsonl"))
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest.update(name=name, gate={"verdict": "yes", "checks": []})
    if zero_lora:
        weights = dst / "adapter_model.safetensors"
        save_file({k: torch.zeros_like(v) for k, v in load_file(weights).items()}, weights)
        manifest["adapter_files"][weights.name] = sha256_file(weights)  # the registry checks it on promotion
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


async def test_promotion_hot_swaps_after_tickets_in_flight_and_a_broken_one_keeps_serving(
    tmp_path, fast_settings, taxonomy
):
    adapters = tmp_path / "adapters"
    copy_adapter(adapters, "a")
    copy_adapter(adapters, "b", zero_lora=True)
    registry = Registry(tmp_path / "registry.json", adapters)
    registry.promote("a")
    model = fast_settings.model.model_copy(
        update={"adapter": "registry", "registry": tmp_path / "registry.json", "watch_registry_s": 0.0}
    )
    settings = fast_settings.model_copy(update={"model": model})
    held = HeldRunner(BatchRunner(settings, taxonomy))
    engine = TransformersEngine(settings, taxonomy, runner=held)  # type: ignore[arg-type]
    await engine.start()
    try:
        assert engine.info.adapter == "a" and engine.prompt_version == "classify/v2"
        in_flight = asyncio.ensure_future(engine.classify(TICKETS))
        await held.wait_in_flight()
        registry.promote("b")
        await engine.poll_registry()  # loads "b" beside "a" while a's tickets decode
        assert engine.swap_error is None
        assert engine.info.adapter == "a" and engine.swaps == 0, "swapped under tickets in flight"
        held.release.set()
        first = await in_flight
        after = await engine.classify(TICKETS)
        assert engine.info.adapter == "b" and engine.stats()["adapter_swaps"] == 1

        assert all(isinstance(o, EngineOutput) for o in first + after)
        assert [served_by(o).adapter for o in first] == ["a", "a"]  # type: ignore[union-attr, arg-type]
        assert [served_by(o).adapter for o in after] == ["b", "b"]  # type: ignore[union-attr, arg-type]
        assert [o.raw_text for o in first] != [o.raw_text for o in after], "the swap did not change the model"  # type: ignore[union-attr]

        # A hand-edited index naming a missing adapter: the swap fails, "b" keeps serving.
        (tmp_path / "registry.json").write_text(json.dumps({"active": "missing", "history": []}))
        await engine.poll_registry()
        assert engine.swap_error is not None
        assert engine.info.adapter == "b" and engine.ready
        assert isinstance((await engine.classify(TICKETS[:1]))[0], EngineOutput)
    finally:
        held.release.set()
        await engine.stop()
