"""Per-ticket labels-only on the real model: a ticket that asks only for label fields stops after its
labels while full tickets in the same batch decode their free text, and its labels and confidences
are the full run's (the same decisions on the same prefill)."""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest

from server.engines.base import EngineOutput
from server.engines.embedded.engine import TransformersEngine
from server.prompts import TicketInput
from tests.conftest import ROOT
from tests.engines.embedded.test_engine import labels, tolerance

pytestmark = pytest.mark.model

LABELS = ("category", "priority", "sentiment")


@pytest.fixture(scope="module")
def tickets() -> list[TicketInput]:
    with open(ROOT / "data" / "tickets" / "sample100.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[10:14]
    return [TicketInput(r["subject"], r["body"]) for r in rows]


def test_labels_only_and_full_tickets_share_a_batch(runner, tickets) -> None:
    full = runner.run(tickets)
    # Alternate: rows 1 and 3 ask only for labels, rows 0 and 2 for everything, all in one batch.
    mixed_in = [replace(t, fields=LABELS) if i % 2 else t for i, t in enumerate(tickets)]
    mixed = runner.run(mixed_in)
    for i, (a, b) in enumerate(zip(full, mixed, strict=True)):
        assert isinstance(a, EngineOutput) and isinstance(b, EngineOutput), (a, b)
        assert labels(a) == labels(b), i
        for name in LABELS:
            assert b.confidence[name] == pytest.approx(a.confidence[name], abs=tolerance(runner)), (i, name)
        if i % 2:
            assert "reasoning" not in b.output and "product" not in b.output.get("extracted_info", {})
            assert b.completion_tokens < a.completion_tokens
        else:
            assert b.output["reasoning"] and b.completion_tokens == a.completion_tokens


def test_the_runner_wide_switch_still_forces_labels_only(runner, tickets) -> None:
    runner.labels_only = True
    try:
        (out,) = runner.run(tickets[:1])
    finally:
        runner.labels_only = False
    assert isinstance(out, EngineOutput) and "reasoning" not in out.output and out.output["category"]


async def test_the_served_engine_passes_the_selection_through(runner, fast_settings, taxonomy, tickets) -> None:
    engine = TransformersEngine(fast_settings, taxonomy, runner=runner)
    await engine.start()
    try:
        quick, full = await engine.classify([replace(tickets[0], fields=("category",)), tickets[0]])
    finally:
        await engine.stop()
    assert isinstance(quick, EngineOutput) and isinstance(full, EngineOutput)
    assert "reasoning" not in quick.output and full.output["reasoning"]
    assert quick.output["category"] == full.output["category"]
