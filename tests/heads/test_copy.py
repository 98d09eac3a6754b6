"""The copy scorer: fitted on examples' candidate spans, it picks the error code or null, and the decoder
writes its choice without asking the model (and refuses anything that is not a candidate)."""

from __future__ import annotations

import json

import pytest
import torch

from finetune.data import Example
from finetune.heads import fit_copy_scorer
from server.engines.decoding import DecodingPlan, SequenceDecoder
from server.engines.embedded.engine import outlines_vocabulary
from server.extraction import candidate_spans
from server.heads.copy import CopyScorer
from server.prompts import TicketInput
from server.schema import output_layout
from server.taxonomy import load_taxonomy

ERRORS = ["The app fails with {c} every time.", "Fehlermeldung: {c}", "El sistema devuelve {c}."]
NOT_ERRORS = ["My order number is {c}.", "The device model is {c}.", "Es geht um die Rechnung {c}."]


def examples(n: int) -> list[Example]:
    out = []
    for i in range(n):
        code, other = f"ERR-{1000 + i}", f"ORD-{500000 + i}"
        body = (
            ERRORS[i % 3].format(c=code) + " " + NOT_ERRORS[i % 3].format(c=other)
            if i % 4
            else NOT_ERRORS[i % 3].format(c=other)
        )
        answer = {
            "category": "Technical",
            "priority": "Low",
            "extracted_info": {"sentiment": "neutral", "product": None, "error_code": code if i % 4 else None},
        }
        out.append(Example(str(i), TicketInput("s", body), answer, "synthetic"))
    return out


def test_fit_choose_save_load(tmp_path):
    taxonomy = load_taxonomy("tickets")
    scorer, report = fit_copy_scorer(taxonomy, examples(80), examples(8))
    assert report["positives"] == 60 and report["train"]["exact_with_code"] == 1.0
    texts = ["Login", "Since Monday it fails with ERR-9001. My order number is ORD-777777."]
    assert scorer.choose(texts) == "ERR-9001"
    assert scorer.choose(["Order", "My order number is ORD-777777."]) is None
    assert scorer.choose(["nothing code-like here"]) is None
    scorer.save(tmp_path)
    loaded = CopyScorer.load(tmp_path)
    assert [s for s, _ in loaded.scores(texts)] == [s for s, _ in scorer.scores(texts)]
    assert [p for _, p in loaded.scores(texts)] == pytest.approx([p for _, p in scorer.scores(texts)])
    assert CopyScorer.load(tmp_path / "missing") is None


def test_too_few_labelled_spans_fit_nothing():
    assert fit_copy_scorer(load_taxonomy("tickets"), examples(8), []) is None


def test_forced_span_is_written_and_must_be_a_candidate():
    from transformers import AutoTokenizer

    from server.config import DEFAULT_BASE_MODEL_DIR

    tok = AutoTokenizer.from_pretrained(DEFAULT_BASE_MODEL_DIR)
    taxonomy = load_taxonomy("tickets")
    plan = DecodingPlan(
        output_layout(taxonomy, "labels_then_text"),
        tok,
        outlines_vocabulary(tok),
        max_string_tokens=3,
        max_reasoning_tokens=3,
    )
    spans = candidate_spans(["s", "fails with ERR-9001, order ORD-777777"])
    dec = SequenceDecoder(plan, spans={"error_code": spans})
    with pytest.raises(ValueError, match="not a candidate span"):
        dec.force_spans({"error_code": "ERR-1234"})
    dec.force_spans({"error_code": "ORD-777777"})
    dec.start()
    # The model prefers null at every step: the forced span is written anyway.
    null = tok.encode(" null", add_special_tokens=False)[0]
    while not dec.done:
        logits = torch.zeros(len(tok))
        logits[null] = 50.0
        dec.step(logits)
    assert json.loads(dec.text)["extracted_info"]["error_code"] == "ORD-777777"
