"""Batched admission prefill (`engine.batched_prefill`): the tickets admitted together are prefilled in
one right-padded, masked forward pass instead of one pass each. It must give the one-by-one prefill's
KV, logits, labels and confidences (within fp32 noise) on real tickets of different lengths."""

from __future__ import annotations

import csv

import pytest
import torch

from server.engines.base import EngineOutput
from server.engines.decoding import SequenceDecoder
from server.engines.embedded import runner as runner_module
from server.engines.embedded.engine import BatchRunner
from server.prompts import TicketInput
from tests.conftest import ROOT

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tickets() -> list[TicketInput]:
    with open(ROOT / "data" / "tickets" / "sample100.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))[10:15]
    out = [TicketInput(r["subject"], r["body"]) for r in rows]
    out.append(TicketInput("Still broken", "The sync fails again.", ("Agent: please reinstall the app.",)))
    return out


def one_by_one(fast_settings, taxonomy, runner) -> BatchRunner:
    settings = fast_settings.variant(engine={"batched_prefill": False})
    return BatchRunner(settings, taxonomy, model=runner.model, tokenizer=runner.tokenizer, adapter=runner.adapter)


def tolerance(runner) -> float:
    return 1e-4 if runner.dtype == torch.float32 else 0.1


def test_prefill_many_equals_prefill_one(runner, tickets) -> None:
    prompts = []
    for t in tickets:
        dec = SequenceDecoder(runner.plan, spans=runner.spans_for(t))
        prompts.append((runner.encode(t), dec.start()))
    assert len({len(enc.suffix_ids) for enc, _ in prompts}) > 3, "the tickets should be ragged"
    together = runner._prefill_many(prompts)
    for (enc, first), (kv, logits, _) in zip(prompts, together, strict=True):
        kv1, logits1, _ = runner._prefill_one(enc, first)
        assert logits.shape == logits1.shape and int(logits.argmax()) == int(logits1.argmax())
        assert torch.allclose(logits, logits1, atol=1e-3 if runner.dtype == torch.float32 else 0.5)
        assert [k.shape for k, _ in kv] == [k.shape for k, _ in kv1]  # no padding left in a row's KV
        assert torch.allclose(kv[3][0], kv1[3][0], atol=1e-3 if runner.dtype == torch.float32 else 0.5)


def test_batched_prefill_answers_like_one_by_one(fast_settings, taxonomy, runner, tickets, monkeypatch) -> None:
    alone = one_by_one(fast_settings, taxonomy, runner)
    assert runner.settings.engine.batched_prefill and not alone.settings.engine.batched_prefill
    # A small token budget splits the admission into several padded groups and single rows.
    monkeypatch.setattr(runner_module, "PREFILL_TOKENS", 600)
    together = runner.run(tickets)
    separate = alone.run(tickets)
    for a, b in zip(separate, together, strict=True):
        assert isinstance(a, EngineOutput) and isinstance(b, EngineOutput)
        assert (a.label("category"), a.label("priority"), a.label("sentiment")) == (
            b.label("category"),
            b.label("priority"),
            b.label("sentiment"),
        )
        for field, conf in a.confidence.items():
            assert b.confidence[field] == pytest.approx(conf, abs=tolerance(runner))
        if runner.dtype == torch.float32:
            assert a.raw_text == b.raw_text
