"""The label-confidence walk over vLLM-style logprobs equals the embedded decoder's on the same logits.

No vLLM here: logprobs are built from random logits the way vLLM 0.32 returns them (raw logprobs after the
grammar mask: log-softmax over the allowed tokens, -9999 for masked ones, top-k only)."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoTokenizer

from server.config import DEFAULT_BASE_MODEL_DIR
from server.engines.decoding import Choice, DecodingPlan
from server.engines.vllm.confidence import Position, label_confidences, token_offsets
from server.schema import output_layout
from server.taxonomy import load_taxonomy


@pytest.fixture(scope="module")
def plan() -> DecodingPlan:
    tok = AutoTokenizer.from_pretrained(DEFAULT_BASE_MODEL_DIR)
    return DecodingPlan(
        output_layout(load_taxonomy("tickets"), "labels_then_text"),
        tok,
        None,
        max_string_tokens=4,
        max_reasoning_tokens=4,
    )


def _vllm_positions(ids: list[int], logits: list[torch.Tensor], allowed: list[set[int]], k: int) -> list[Position]:
    out = []
    for tok, lg, ok in zip(ids, logits, allowed, strict=True):
        masked = torch.full_like(lg, -math.inf)
        idx = torch.tensor(sorted(ok))
        masked[idx] = lg[idx]
        lp = torch.log_softmax(masked, -1)
        lp = torch.where(torch.isinf(lp), torch.full_like(lp, -9999.0), lp)
        vals, top = torch.topk(lp, k)
        out.append(Position(tok, float(lp[tok]), {int(t): float(v) for t, v in zip(top, vals, strict=True)}))
    return out


def _answer(plan: DecodingPlan, labels: dict[str, str]) -> dict:
    return {
        "category": labels["category"],
        "priority": labels["priority"],
        "extracted_info": {"sentiment": labels["sentiment"], "product": None, "error_code": None},
        "reasoning": "x",
    }


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [20, 2])
def test_walk_equals_embedded_renormalisation(plan: DecodingPlan, seed: int, k: int) -> None:
    """Per label: trie walk along the chosen tokens, prob = prod softmax(option logits / T)[chosen]; with
    k=2 some options fall outside the top-k and the confidence is the stated lower bound, flagged."""
    gen = torch.Generator().manual_seed(seed)
    vocab = len(plan.tokenizer)
    temps = {"category": 1.7, "priority": 0.8}
    labels = {}
    for seg in plan.segments:
        if isinstance(seg, Choice):
            labels[seg.slot.name] = seg.slot.spec.labels[
                int(torch.randint(len(seg.slot.spec.labels), (1,), generator=gen))
            ]
    answer = _answer(plan, labels)
    ids = plan.answer_token_ids(answer)
    text = plan.tokenizer.decode(ids)
    logits = [torch.randn(vocab, generator=gen) * 3 for _ in ids]
    # The grammar allows every trie option at a label position (and a few unrelated tokens elsewhere).
    allowed = [set(torch.randint(vocab, (5,), generator=gen).tolist()) | {t} for t in ids]
    expected: dict[str, float] = {}
    offsets = token_offsets(plan.tokenizer, ids)
    i = 0
    for seg in plan.segments:  # the embedded decoder's own computation, on the raw logits
        if not isinstance(seg, Choice):
            continue
        label = labels[seg.slot.name]
        start = text.index(f'"{seg.slot.name}": "') + len(seg.slot.name) + 5
        i = offsets.index(start)
        node, p = seg.root, 1.0
        while True:
            options = list(node.children) + ([seg.end_token] if node.label is not None else [])
            allowed[i] |= set(options)
            if len(options) > 1:
                probs = torch.softmax(logits[i][options] / temps.get(seg.slot.name, 1.0), -1)
                chosen = options.index(ids[i]) if ids[i] in node.children else len(options) - 1
                p *= float(probs[chosen])
            if ids[i] not in node.children:
                break
            node = node.children[ids[i]]
            i += 1
        assert node.label == label
        expected[seg.slot.name] = p
    got = label_confidences(plan, text, answer, _vllm_positions(ids, logits, allowed, k), offsets, temps)
    assert not got.fallback
    for name, p in expected.items():
        if name in got.bounded:
            assert got.confidence[name] <= p + 1e-6
        else:
            assert got.confidence[name] == pytest.approx(p, rel=1e-4, abs=1e-6)
    if k == 20:
        assert not got.bounded  # every option is in the top 20 (or masked): exact
    for name, steps in got.trace.items():  # the calibration trace reproduces the confidence at the field's T
        p = 1.0
        for raw, chosen in steps:
            p *= float(torch.softmax(torch.tensor(raw) / temps.get(name, 1.0), -1)[chosen])
        assert p == pytest.approx(got.confidence[name], rel=1e-5)


def test_non_canonical_path_falls_back_flagged(plan: DecodingPlan) -> None:
    """The quote merged into the label's first token (` "Sales` as one piece) cannot be walked: the
    product of the label tokens' own probabilities is reported and the field is listed."""
    answer = {
        "category": "Sales",
        "priority": "Low",
        "extracted_info": {"sentiment": "neutral", "product": None, "error_code": None},
        "reasoning": "x",
    }
    ids = plan.answer_token_ids(answer)
    text = plan.tokenizer.decode(ids)
    offsets = token_offsets(plan.tokenizer, ids)
    positions = [Position(t, -0.1, {t: -0.1}) for t in ids]
    start = text.index('"category": "') + len('"category": "')
    shifted = [o + 1 if o == start else o for o in offsets]  # no token starts where the label does
    got = label_confidences(plan, text, answer, positions, shifted, {})
    assert got.fallback == ["category"]
    assert 0 < got.confidence["category"] < 1
    # Priority is walked: its other options are outside the (one-entry) top list, so each gets the bound.
    assert got.confidence["priority"] == pytest.approx(1 / len(load_taxonomy("tickets").field("priority").labels))
    assert "priority" in got.bounded
