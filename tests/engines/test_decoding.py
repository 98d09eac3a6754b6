"""The field-by-field decoder, driven by synthetic logits over the real tokenizer (no model needed)."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from outlines_core.json_schema import build_regex_from_schema
from transformers import AutoTokenizer

from server.config import DEFAULT_BASE_MODEL_DIR
from server.engines.decoding import Choice, DecodingPlan, SequenceDecoder, TrieNode
from server.engines.embedded.engine import outlines_vocabulary
from server.schema import output_json_schema, output_layout, output_model
from server.taxonomy import load_taxonomy, parse_taxonomy


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(DEFAULT_BASE_MODEL_DIR)


@pytest.fixture(scope="module")
def vocabulary(tokenizer):
    return outlines_vocabulary(tokenizer)


def make_plan(taxonomy, tokenizer, vocabulary, order="labels_first", string_tokens=5, reasoning_tokens=7):
    return DecodingPlan(
        output_layout(taxonomy, order),
        tokenizer,
        vocabulary,
        max_string_tokens=string_tokens,
        max_reasoning_tokens=reasoning_tokens,
    )


def drive(dec: SequenceDecoder, logits_fn, vocab_size: int, max_steps: int = 500) -> None:
    fed = dec.start()
    steps = 0
    while not dec.done:
        fed = dec.step(logits_fn(steps, fed))
        steps += 1
        assert steps < max_steps, "decoder did not terminate"


@pytest.mark.parametrize("order", ["labels_first", "reasoning_first", "labels_then_text"])
def test_random_logits_always_yield_schema_valid_json(order, tokenizer, vocabulary):
    """Whatever the model prefers, the output matches the regex Outlines compiles from the same schema."""
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary, order)
    regex = re.compile(build_regex_from_schema(output_json_schema(taxonomy, order)))
    model = output_model(taxonomy, order)
    V = len(tokenizer)
    for seed in range(12):
        gen = torch.Generator().manual_seed(seed)
        dec = SequenceDecoder(plan)
        drive(dec, lambda *_, gen=gen: torch.randn(V, generator=gen) * 5, V)
        assert regex.fullmatch(dec.text), dec.text
        obj = model.model_validate(json.loads(dec.text))
        assert list(json.loads(dec.text)) == list(model.model_fields)
        assert set(dec.confidence) == {"category", "priority", "sentiment"}
        assert all(0.0 < c <= 1.0 for c in dec.confidence.values())
        assert obj.category in taxonomy.field("category").values


def test_label_confidence_is_the_renormalised_probability(tokenizer, vocabulary):
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary)
    choice = next(s for s in plan.segments if isinstance(s, Choice) and s.slot.name == "category")
    firsts = {label: tokenizer.encode(label, add_special_tokens=False)[0] for label in choice.slot.spec.labels}
    assert len(set(firsts.values())) == 4  # the four categories diverge at their first token
    logits = torch.full((len(tokenizer),), -5.0)
    raw = {"Technical": 1.0, "Billing": 3.0, "Sales": 0.5, "General": -1.0}
    for label, tok in firsts.items():
        logits[tok] = raw[label]
    logits[tokenizer.encode("Hello", add_special_tokens=False)[0]] = 50.0  # an unallowed token must not matter
    dec = SequenceDecoder(plan)
    dec.start()
    dec.step(logits)
    expected = math.exp(3.0) / sum(math.exp(v) for v in raw.values())
    assert dec.confidence["category"] == pytest.approx(expected, rel=1e-5)
    assert "Billing" in dec.text_parts


def test_temperature_flattens_confidence(tokenizer, vocabulary):
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary)
    logits = torch.randn(len(tokenizer), generator=torch.Generator().manual_seed(3)) * 4
    hot, cold = SequenceDecoder(plan, {"category": 4.0}), SequenceDecoder(plan)
    for dec in (hot, cold):
        dec.start()
        dec.step(logits.clone())
    assert hot.text_parts == cold.text_parts  # same argmax
    assert hot.confidence["category"] < cold.confidence["category"]


def _label_probs(node: TrieNode, logits: torch.Tensor, end_token: int, p: float = 1.0) -> dict[str, float]:
    options = list(node.children) + ([end_token] if node.label is not None else [])
    if len(options) == 1 and node.label is None:
        (child,) = node.children.values()
        return _label_probs(child, logits, end_token, p)
    if not node.children:
        return {node.label: p}
    probs = torch.softmax(logits[options], dim=-1)
    out: dict[str, float] = {}
    for k, tok in enumerate(options):
        if node.label is not None and k == len(options) - 1:
            out[node.label] = p * float(probs[k])
        else:
            out.update(_label_probs(node.children[tok], logits, end_token, p * float(probs[k])))
    return out


def test_multi_token_labels_sharing_prefixes(tokenizer, vocabulary):
    """Banking77-style labels: shared first tokens, and a label that prefixes another ("card")."""
    labels = ["card_arrival", "card_linking", "card", "card_payment_fee_charged", "top_up_failed", "top_up_reverted"]
    taxonomy = parse_taxonomy({"name": "bank", "labels": {"category": {"values": labels}}, "reasoning": False})
    plan = make_plan(taxonomy, tokenizer, vocabulary)
    choice = plan.segments[1]
    assert isinstance(choice, Choice)
    regex = re.compile(build_regex_from_schema(output_json_schema(taxonomy)))
    seen = set()
    for seed in range(25):
        logits = torch.randn(len(tokenizer), generator=torch.Generator().manual_seed(seed)) * 3
        dist = _label_probs(choice.root, logits, choice.end_token)
        assert set(dist) == set(labels)
        assert sum(dist.values()) == pytest.approx(1.0, abs=1e-5)
        dec = SequenceDecoder(plan)
        drive(dec, lambda *_, logits=logits: logits, len(tokenizer))
        label = json.loads(dec.text)["category"]
        seen.add(label)
        assert regex.fullmatch(dec.text)
        # Greedy walk down the trie: its confidence is exactly that label's probability.
        assert dec.confidence["category"] == pytest.approx(dist[label], rel=1e-4)
    assert len(seen) >= 3


def test_answer_token_ids_match_what_the_decoder_writes(tokenizer, vocabulary):
    """Training targets use the decoder's own tokenisation (no train/serve split of tokens)."""
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary, string_tokens=40, reasoning_tokens=60)
    answer = {
        "category": "Billing",
        "priority": "High",
        "extracted_info": {"product": "Dell XPS 13", "error_code": None, "sentiment": "negative"},
        "reasoning": 'Charged twice for "Pro" plan; refund needed soon.',
    }
    target = plan.answer_token_ids(answer)
    assert tokenizer.decode(target) == json.dumps(answer, ensure_ascii=False)
    dec = SequenceDecoder(plan)
    fed = dec.start()
    pos = len(fed)
    assert target[:pos] == fed
    while not dec.done:
        logits = torch.zeros(len(tokenizer))
        logits[target[pos]] = 100.0  # teacher forcing: the model wants exactly the gold next token
        fed = dec.step(logits)
        pos += len(fed)
    assert dec.out_ids == target
    assert json.loads(dec.text) == answer
    with pytest.raises(ValueError):
        plan.answer_token_ids({**answer, "category": "Nonsense"})


def test_text_budget_closes_strings(tokenizer, vocabulary):
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary, string_tokens=3, reasoning_tokens=3)
    word = tokenizer.encode("word", add_special_tokens=False)[0]
    quote_space = tokenizer.encode(' "', add_special_tokens=False)[0]

    def logits_fn(_step, fed):
        logits = torch.zeros(len(tokenizer))
        inside = bool(fed) and fed[-1] in (quote_space, word)
        logits[quote_space] = 5.0 if inside else 20.0  # open a string ...
        logits[word] = 10.0  # ... then ramble forever
        return logits

    dec = SequenceDecoder(plan)
    drive(dec, logits_fn, len(tokenizer))
    obj = json.loads(dec.text)
    assert obj["reasoning"].startswith("word")
    assert len(tokenizer.encode(obj["reasoning"], add_special_tokens=False)) <= 3


def test_labels_only_pass_gives_the_full_runs_labels_and_confidences(tokenizer, vocabulary):
    """With every label before any text, stopping after the labels changes nothing about them."""
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary, "labels_then_text")
    V = len(tokenizer)
    for seed in range(6):
        full, quick = SequenceDecoder(plan), SequenceDecoder(plan, labels_only=True, record=True)
        for dec in (full, quick):
            gen = torch.Generator().manual_seed(seed)
            drive(dec, lambda *_, gen=gen: torch.randn(V, generator=gen) * 5, V)
        result, labels = json.loads(full.text), quick.result()
        assert labels == {
            "category": result["category"],
            "priority": result["priority"],
            "extracted_info": {"sentiment": result["extracted_info"]["sentiment"]},
        }
        assert quick.confidence == pytest.approx(full.confidence)
        assert len(quick.out_ids) < len(full.out_ids)
        # the recorded scores reproduce the confidence at T=1 (what calibration refits)
        for name, steps in quick.trace.items():
            p = math.prod(float(torch.softmax(s, -1)[k]) for s, k in steps)
            assert p == pytest.approx(quick.confidence[name], rel=1e-5)


def test_temperature_changes_confidence_not_the_label(tokenizer, vocabulary):
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary, "labels_then_text")
    V = len(tokenizer)
    outs = []
    for temps in ({}, {"category": 3.0, "priority": 3.0, "sentiment": 3.0}):
        gen = torch.Generator().manual_seed(7)
        dec = SequenceDecoder(plan, temps, labels_only=True)
        drive(dec, lambda *_, gen=gen: torch.randn(V, generator=gen) * 5, V)
        outs.append(dec)
    assert outs[0].result() == outs[1].result()
    assert all(outs[1].confidence[k] <= outs[0].confidence[k] + 1e-9 for k in outs[0].confidence)


def test_copy_only_field_is_null_or_a_candidate_span(tokenizer, vocabulary):
    """Whatever the logits, error_code is one of the ticket's spans or null: never invented text."""
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary, "labels_then_text")
    assert plan.copy_fields == ["error_code"]
    spans = ["ORA-00942", "ORD-458812", "E-104"]
    V = len(tokenizer)
    seen = set()
    for seed in range(16):
        gen = torch.Generator().manual_seed(seed)
        dec = SequenceDecoder(plan, spans={"error_code": spans})
        drive(dec, lambda *_, gen=gen: torch.randn(V, generator=gen) * 5, V)
        value = json.loads(dec.text)["extracted_info"]["error_code"]
        assert value is None or value in spans, value
        seen.add(value)
    assert len(seen) > 1, "random logits should reach more than one option"


def test_copy_only_field_follows_the_logits(tokenizer, vocabulary):
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary, "labels_then_text")
    target = tokenizer.encode(' "E-104"', add_special_tokens=False)
    V = len(tokenizer)

    def prefer_code(step, fed):
        logits = torch.zeros(V)
        for tok in target:
            logits[tok] = 10.0
        return logits

    dec = SequenceDecoder(plan, spans={"error_code": ["ORA-00942", "E-104"]})
    drive(dec, prefer_code, V)
    assert json.loads(dec.text)["extracted_info"]["error_code"] == "E-104"
    dec = SequenceDecoder(plan)  # no candidates: the only option is null, decided without the model
    drive(dec, prefer_code, V)
    assert json.loads(dec.text)["extracted_info"]["error_code"] is None


def test_training_target_of_a_copy_only_value_is_what_the_decoder_writes(tokenizer, vocabulary):
    """Teacher-forcing the decoder along a training target reproduces the target's tokens exactly."""
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary, "labels_then_text", string_tokens=16, reasoning_tokens=48)
    answer = {
        "category": "Technical",
        "priority": "High",
        "extracted_info": {"sentiment": "neutral", "product": "DB", "error_code": "ORA-00942"},
        "reasoning": "Broken.",
    }
    target = plan.answer_token_ids(answer)
    V = len(tokenizer)
    dec = SequenceDecoder(plan, spans={"error_code": ["ORD-1", "ORA-00942"]})

    def follow(step, fed):
        logits = torch.zeros(V)
        logits[target[len(dec.out_ids)]] = 30.0
        return logits

    drive(dec, follow, V)
    assert dec.out_ids == target
    assert json.loads(dec.text) == answer


def test_forced_labels_skip_the_model_and_carry_their_confidence(tokenizer, vocabulary):
    """A classification head's labels are written as decided, whatever the logits say."""
    taxonomy = load_taxonomy("tickets")
    plan = make_plan(taxonomy, tokenizer, vocabulary, "labels_then_text")
    V = len(tokenizer)
    calls = {"n": 0}

    def hostile(step, fed):
        calls["n"] += 1
        logits = torch.zeros(V)
        logits[tokenizer.encode("Technical", add_special_tokens=False)[0]] = 50.0
        return logits

    dec = SequenceDecoder(plan, labels_only=True)
    dec.start()
    dec.force({"category": ("Sales", 0.61), "priority": ("Low", 0.9), "sentiment": ("positive", 0.55)})
    fed = dec.step(hostile(0, []))
    assert dec.done and fed == [], "with every label forced, a labels-only pass needs no model step after the prefill"
    assert dec.result() == {"category": "Sales", "priority": "Low", "extracted_info": {"sentiment": "positive"}}
    assert dec.confidence == {"category": 0.61, "priority": 0.9, "sentiment": 0.55}
    with pytest.raises(ValueError, match="not an allowed label"):
        SequenceDecoder(plan).force({"category": ("Marketing", 0.5)})
