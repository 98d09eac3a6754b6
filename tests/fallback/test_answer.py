"""Answer checking and logprob confidence, without any server."""

from __future__ import annotations

import json
import math

import pytest

from server.fallback.answer import TokenLogprob, check_answer, label_confidence
from server.fallback.prompt import build_messages, label_hint
from tests.fallback.fake_hosted import default_answer, fake_tokens


def test_valid_answer_passes_whole(taxonomy):
    checked = check_answer(taxonomy, json.dumps(default_answer()))
    assert checked.valid and checked.errors == [] and checked.output == default_answer()
    assert check_answer(taxonomy, default_answer()).valid  # Anthropic hands over the parsed tool input


def test_extra_key_and_wrong_types_are_dropped(taxonomy):
    answer = {
        **default_answer(),
        "confidence": 0.9,
        "extracted_info": {**default_answer()["extracted_info"], "error_code": 42},
    }
    checked = check_answer(taxonomy, answer)
    assert not checked.valid
    assert "confidence" not in checked.output
    assert checked.output["extracted_info"]["error_code"] is None
    assert checked.output["category"] == "Billing" and checked.output["reasoning"] == default_answer()["reasoning"]
    assert any("confidence" in e for e in checked.errors) and any("error_code" in e for e in checked.errors)


def test_missing_fields_become_none(taxonomy):
    checked = check_answer(taxonomy, {"category": "Sales"})
    assert not checked.valid
    assert checked.output == {
        "category": "Sales",
        "priority": None,
        "extracted_info": {"product": None, "error_code": None, "sentiment": None},
        "reasoning": None,
    }


@pytest.mark.parametrize("raw", [None, "[1, 2]", "not json at all", '"Billing"'])
def test_unusable_answers_keep_the_shape(taxonomy, raw):
    checked = check_answer(taxonomy, raw)
    assert not checked.valid and checked.errors
    assert checked.output["category"] is None and set(checked.output["extracted_info"]) == {
        "product",
        "error_code",
        "sentiment",
    }


def test_salvage_respects_the_label_set(taxonomy):
    raw = '{"category": "Refunds", "priority": "Low", "extracted_info": {"product": null, "sentiment": "neutral"'
    checked = check_answer(taxonomy, raw)
    assert checked.output["category"] is None and checked.output["priority"] == "Low"
    assert (
        checked.output["extracted_info"]["sentiment"] == "neutral"
        and checked.output["extracted_info"]["product"] is None
    )


def _tokens(text: str, logprobs: dict[str, float]) -> list[TokenLogprob]:
    out = []
    for tok in fake_tokens(text):
        out.append(TokenLogprob(tok.encode(), logprobs.get(tok, 0.0)))
    return out


def test_confidence_is_the_product_over_the_value_tokens(taxonomy):
    text = json.dumps(default_answer())
    # "Billing" is split into "Billi" + "ng"; "High" is one token; the quote tokens around them are certain.
    tokens = _tokens(text, {"Billi": math.log(0.5), "ng": math.log(0.9), "High": math.log(0.7), "negat": -0.1})
    confidence = label_confidence(taxonomy, default_answer(), tokens)
    assert confidence["category"] == pytest.approx(0.45)
    assert confidence["priority"] == pytest.approx(0.7)
    assert confidence["sentiment"] == pytest.approx(math.exp(-0.1))


def test_confidence_survives_a_character_split_across_tokens(taxonomy):
    """Offsets are in bytes: a multi-byte character split over two tokens does not shift the match."""
    answer = {**default_answer(), "reasoning": "Kunde verärgert."}
    raw = json.dumps(answer, ensure_ascii=False).encode()
    cut = raw.index("ä".encode()) + 1
    high = raw.index(b"High")
    pieces = [raw[:high], raw[high : high + 4], raw[high + 4 : cut], raw[cut:]]
    tokens = [TokenLogprob(p, math.log(0.3) if p == b"High" else 0.0) for p in pieces]
    assert label_confidence(taxonomy, answer, tokens)["priority"] == pytest.approx(0.3)


def test_confidence_none_without_logprobs_or_value(taxonomy):
    assert set(label_confidence(taxonomy, default_answer(), None).values()) == {None}
    partial = {**default_answer(), "priority": None}
    confidence = label_confidence(taxonomy, partial, _tokens(json.dumps(default_answer()), {}))
    assert confidence["priority"] is None and confidence["category"] == pytest.approx(1.0)


def test_hint_carries_labels_only(taxonomy):
    previous = {
        "category": "Billing",
        "priority": "Urgent!!",
        "extracted_info": {"product": "Jane's laptop", "sentiment": "negative"},
        "reasoning": "Jane Doe",
    }
    assert label_hint(taxonomy, previous) == {"category": "Billing", "sentiment": "negative"}
    messages = build_messages(taxonomy, ["subj", "body", "earlier"], previous)
    assert "Jane" not in messages.user and "Billing" in messages.user and "1. earlier" in messages.user
    assert "### Ticket" in messages.user and "category (one of:" in messages.system
