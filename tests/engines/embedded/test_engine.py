"""The batched engine against the real base model: batching, the prefix cache and jump-forward must
not change answers (beyond float noise), and every answer matches the schema."""

from __future__ import annotations

import asyncio
import csv
import json
import re

import pytest
import torch
from outlines_core.json_schema import build_regex_from_schema

from server.engines.base import EngineOutput
from server.engines.embedded.engine import BatchRunner, TransformersEngine
from server.prompts import TicketInput
from server.schema import output_json_schema
from tests.conftest import ACTIVE_PROMPT, ROOT, SEED_TICKET
from tests.engines.held import HeldRunner

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tickets() -> list[TicketInput]:
    with open(ROOT / "data" / "tickets" / "sample100.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[:4]
    return [TicketInput(SEED_TICKET["subject"], SEED_TICKET["body"])] + [
        TicketInput(r["subject"], r["body"]) for r in rows
    ]


@pytest.fixture(scope="module")
def batched(runner, tickets):
    return runner.run(tickets)


def tolerance(runner) -> float:
    """Float noise between batch shapes and attention paths: bf16 (auto on CPUs with native bf16) is coarser."""
    # bf16 (8-bit mantissa): the copied-prefix SDPA path and the cascade path measured up to 0.065 apart
    # on one ticket (labels equal); fp32 stays within 1e-4.
    return 2e-3 if runner.dtype == torch.float32 else 0.1


def labels(out: EngineOutput) -> tuple:
    return out.output["category"], out.output["priority"], out.output["extracted_info"]["sentiment"]


def test_batch_matches_one_at_a_time(runner, tickets, batched):
    assert all(isinstance(o, EngineOutput) for o in batched)
    for ticket, together in zip(tickets[:3], batched):
        (alone,) = runner.run([ticket])
        assert labels(alone) == labels(together)
        for field, conf in alone.confidence.items():
            assert together.confidence[field] == pytest.approx(conf, abs=tolerance(runner))


def test_prefix_cache_does_not_change_answers(fast_settings, taxonomy, runner, tickets, batched):
    settings = fast_settings.model_copy(
        update={"engine": fast_settings.engine.model_copy(update={"prefix_cache": False})}
    )
    uncached = BatchRunner(settings, taxonomy, model=runner.model, tokenizer=runner.tokenizer, adapter=runner.adapter)
    assert uncached._prefix_kv is None
    for a, b in zip(uncached.run(tickets[:2]), batched[:2]):
        assert labels(a) == labels(b)
        for field, conf in a.confidence.items():
            assert b.confidence[field] == pytest.approx(conf, abs=tolerance(runner))


def test_shared_prefix_attention_equals_copied_prefix(fast_settings, taxonomy, runner, tickets, batched):
    """Cascade attention (prefix KV kept once) must give the answers of the per-row prefix copy."""
    assert runner.cascade, "SmolLM2 (all global attention) should use shared-prefix attention"
    copied = BatchRunner(
        fast_settings, taxonomy, model=runner.model, tokenizer=runner.tokenizer, adapter=runner.adapter
    )
    copied.cascade = False
    for a, b in zip(copied.run(tickets[:3]), batched[:3]):
        # fp32: identical text. bf16 rounds the two attention paths differently, which can flip a
        # near-tie in free text ("Zoom" vs "Zoom Version"); the labels must still agree.
        assert a.raw_text == b.raw_text if runner.dtype == torch.float32 else labels(a) == labels(b)
        for field, conf in a.confidence.items():
            assert b.confidence[field] == pytest.approx(conf, abs=tolerance(runner))


def test_outputs_match_the_schema_regex(taxonomy, runner, batched):
    regex = re.compile(build_regex_from_schema(output_json_schema(taxonomy, runner.renderer.prompt.field_order)))
    for out in batched:
        assert regex.fullmatch(out.raw_text), out.raw_text
        assert json.loads(out.raw_text) == out.output
        assert out.prompt_tokens > len(runner.renderer.prefix_ids) and out.completion_tokens > 10
        assert out.prompt_version == runner.prompt_version == ACTIVE_PROMPT


async def test_engine_continuous_batching_matches_the_batch_run(fast_settings, taxonomy, runner, tickets, batched):
    """Tickets that join a running decode loop get the answers they get in a fixed batch."""
    held = HeldRunner(runner)
    engine = TransformersEngine(fast_settings, taxonomy, runner=held)  # type: ignore[arg-type]
    await engine.start()
    try:
        first = asyncio.create_task(engine.classify(tickets[:2]))
        await held.wait_in_flight()  # the first two are decoding when the rest arrive
        later = [asyncio.create_task(engine.classify([t])) for t in tickets[2:]]
        for _ in range(3):
            await asyncio.sleep(0)  # let the later submits queue up before the loop admits again
        held.release.set()
        outs = list(await first) + [(await task)[0] for task in later]
    finally:
        held.release.set()
        await engine.stop()
    assert engine.stats()["items"] == len(tickets)
    assert engine.stats()["batches"] == 1, "the later tickets joined the running decode loop"
    for a, b in zip(outs, batched):
        assert labels(a) == labels(b)
        for field, conf in a.confidence.items():
            assert b.confidence[field] == pytest.approx(conf, abs=tolerance(runner))


def test_long_ticket_is_cut_and_flagged(runner):
    body = "The export job fails every night. " * 3000 + "Final line: error E-4411 appears."
    history = [f"Message {i}: still broken." for i in range(200)]
    (out,) = runner.run([TicketInput("Nightly export failing", body, tuple(history))])
    assert isinstance(out, EngineOutput)
    assert out.truncated is True
    budget = runner.settings.prompt
    assert (
        out.prompt_tokens < len(runner.renderer.prefix_ids) + budget.max_body_tokens + budget.max_history_tokens + 200
    )
