"""The output structure: pydantic model, JSON schema, layout, example, and the Outlines regex built from it."""

from __future__ import annotations

import json
import re

import pytest
from outlines_core.json_schema import build_regex_from_schema
from pydantic import ValidationError

from server.schema import example_output, output_json_schema, output_layout, output_model
from server.taxonomy import load_taxonomy, parse_taxonomy
from tests.test_taxonomy import BANKING_INTENTS, write_banking_taxonomy

VALID = {
    "category": "Billing",
    "priority": "High",
    "extracted_info": {"product": "Acme Pay", "error_code": None, "sentiment": "negative"},
    "reasoning": "The customer was charged twice and wants the money back.",
}


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("tickets")


@pytest.fixture(scope="module")
def banking(tmp_path_factory):
    return load_taxonomy(write_banking_taxonomy(tmp_path_factory.mktemp("tax")))


@pytest.fixture(scope="module")
def tickets_regex(tax):
    return build_regex_from_schema(output_json_schema(tax))


def _copy(obj: dict) -> dict:
    return json.loads(json.dumps(obj))


# -- pydantic model ---------------------------------------------------------------------------


def test_labels_first_key_order(tax):
    model = output_model(tax, "labels_first")
    assert list(model.model_fields) == ["category", "priority", "extracted_info", "reasoning"]
    info = model.model_fields["extracted_info"].annotation
    assert list(info.model_fields) == ["product", "error_code", "sentiment"]


def test_default_order_is_labels_first(tax):
    assert list(output_model(tax).model_fields) == ["category", "priority", "extracted_info", "reasoning"]


def test_reasoning_first_key_order(tax):
    model = output_model(tax, "reasoning_first")
    assert list(model.model_fields) == ["reasoning", "category", "priority", "extracted_info"]


def test_valid_object_round_trips(tax):
    obj = output_model(tax).model_validate(VALID)
    assert obj.model_dump() == VALID
    assert list(json.loads(obj.model_dump_json())) == ["category", "priority", "extracted_info", "reasoning"]


def test_unknown_label_rejected(tax):
    model = output_model(tax)
    for path, value in [
        (("category",), "Refunds"),
        (("priority",), "Critical"),
        (("extracted_info", "sentiment"), "angry"),
    ]:
        bad = _copy(VALID)
        target = bad if len(path) == 1 else bad[path[0]]
        target[path[-1]] = value
        with pytest.raises(ValidationError):
            model.model_validate(bad)


def test_label_is_case_sensitive(tax):
    bad = _copy(VALID)
    bad["category"] = "billing"
    with pytest.raises(ValidationError):
        output_model(tax).model_validate(bad)


def test_free_text_accepts_null(tax):
    ok = _copy(VALID)
    ok["extracted_info"]["product"] = None
    ok["extracted_info"]["error_code"] = None
    assert output_model(tax).model_validate(ok).extracted_info.product is None


def test_reasoning_not_nullable(tax):
    bad = _copy(VALID)
    bad["reasoning"] = None
    with pytest.raises(ValidationError):
        output_model(tax).model_validate(bad)


def test_extra_keys_refused(tax):
    model = output_model(tax)
    top = _copy(VALID)
    top["confidence"] = 0.9
    with pytest.raises(ValidationError):
        model.model_validate(top)
    nested = _copy(VALID)
    nested["extracted_info"]["language"] = "en"
    with pytest.raises(ValidationError):
        model.model_validate(nested)


def test_missing_keys_refused(tax):
    model = output_model(tax)
    top = _copy(VALID)
    del top["priority"]
    with pytest.raises(ValidationError):
        model.model_validate(top)
    nested = _copy(VALID)
    del nested["extracted_info"]["error_code"]  # nullable, but still required
    with pytest.raises(ValidationError):
        model.model_validate(nested)


def test_model_is_cached(tax):
    # lru_cache keys on the call's exact arguments: the same call returns the same class
    assert output_model(tax, "labels_first") is output_model(tax, "labels_first")
    assert output_model(tax, "reasoning_first") is not output_model(tax, "labels_first")


# -- JSON schema ------------------------------------------------------------------------------


def test_json_schema_valid_with_required(tax):
    schema = json.loads(output_json_schema(tax))
    assert schema["type"] == "object"
    assert schema["required"] == ["category", "priority", "extracted_info", "reasoning"]
    assert schema["additionalProperties"] is False
    assert list(schema["properties"]) == ["category", "priority", "extracted_info", "reasoning"]
    assert schema["properties"]["category"]["enum"] == ["Technical", "Billing", "Sales", "General"]
    assert schema["properties"]["priority"]["enum"] == ["Urgent", "High", "Medium", "Low"]
    ref = schema["properties"]["extracted_info"]["$ref"]
    info = schema["$defs"][ref.rsplit("/", 1)[-1]]
    assert info["required"] == ["product", "error_code", "sentiment"]
    assert info["additionalProperties"] is False
    assert info["properties"]["sentiment"]["enum"] == ["positive", "neutral", "negative"]
    product_types = {alt.get("type") for alt in info["properties"]["product"]["anyOf"]}
    assert product_types == {"string", "null"}


def test_json_schema_reasoning_first(tax):
    schema = json.loads(output_json_schema(tax, "reasoning_first"))
    assert schema["required"][0] == "reasoning"
    assert list(schema["properties"])[0] == "reasoning"


# -- layout -----------------------------------------------------------------------------------


def test_output_layout_paths(tax):
    layout = output_layout(tax)
    assert [s.path for s in layout] == [
        ("category",),
        ("priority",),
        ("extracted_info", "product"),
        ("extracted_info", "error_code"),
        ("extracted_info", "sentiment"),
        ("reasoning",),
    ]
    assert [s.name for s in layout] == ["category", "priority", "product", "error_code", "sentiment", "reasoning"]
    assert [s.nullable for s in layout] == [False, False, True, True, False, False]


def test_output_layout_reasoning_first(tax):
    layout = output_layout(tax, "reasoning_first")
    assert layout[0].path == ("reasoning",)
    assert [s.path for s in layout[1:]] == [s.path for s in output_layout(tax)[:-1]]


def test_output_layout_without_reasoning():
    tax = parse_taxonomy({"name": "noreason", "labels": {"kind": {"values": ["a", "b"]}}, "reasoning": False})
    assert [s.path for s in output_layout(tax)] == [("kind",)]
    assert [s.path for s in output_layout(tax, "reasoning_first")] == [("kind",)]
    assert list(output_model(tax).model_fields) == ["kind"]


# -- example ----------------------------------------------------------------------------------


def test_example_output_has_every_field(tax):
    example = json.loads(example_output(tax))
    assert list(example) == ["category", "priority", "extracted_info", "reasoning"]
    assert list(example["extracted_info"]) == ["product", "error_code", "sentiment"]
    assert example["category"] == "Technical"
    assert example["priority"] == "Urgent"
    assert example["extracted_info"]["sentiment"] == "positive"
    assert example["extracted_info"]["product"] == "<product>"
    # the example itself is a valid output
    output_model(tax).model_validate(example)


def test_example_output_reasoning_first(tax):
    assert list(json.loads(example_output(tax, "reasoning_first")))[0] == "reasoning"


# -- Outlines regex ---------------------------------------------------------------------------


def test_outlines_regex_matches_valid_object(tickets_regex):
    assert re.fullmatch(tickets_regex, json.dumps(VALID))
    compact = json.dumps(VALID, separators=(",", ":"))
    assert re.fullmatch(tickets_regex, compact)


def test_outlines_regex_matches_nulls_and_every_label(tax, tickets_regex):
    for category in tax.field("category").labels:
        for priority in tax.field("priority").labels:
            for sentiment in tax.field("sentiment").labels:
                obj = _copy(VALID)
                obj["category"], obj["priority"] = category, priority
                obj["extracted_info"].update(product=None, error_code='ERR_42 "quoted"', sentiment=sentiment)
                assert re.fullmatch(tickets_regex, json.dumps(obj)), obj


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda o: o.update(category="Refunds"), id="unknown-category"),
        pytest.param(lambda o: o.update(category="billing"), id="lowercase-category"),
        pytest.param(lambda o: o.update(priority="Critical"), id="unknown-priority"),
        pytest.param(lambda o: o["extracted_info"].update(sentiment="angry"), id="unknown-sentiment"),
        pytest.param(lambda o: o.update(reasoning=None), id="null-reasoning"),
        pytest.param(lambda o: o.update(extra="x"), id="extra-key"),
        pytest.param(lambda o: o.pop("priority"), id="missing-key"),
    ],
)
def test_outlines_regex_rejects_invalid(tickets_regex, mutate):
    bad = _copy(VALID)
    mutate(bad)
    assert re.fullmatch(tickets_regex, json.dumps(bad)) is None


def test_outlines_regex_rejects_wrong_key_order(tickets_regex):
    reordered = {"priority": VALID["priority"], **{k: v for k, v in VALID.items() if k != "priority"}}
    assert re.fullmatch(tickets_regex, json.dumps(reordered)) is None


def test_outlines_regex_reasoning_first(tax):
    regex = build_regex_from_schema(output_json_schema(tax, "reasoning_first"))
    obj = {"reasoning": VALID["reasoning"], **{k: v for k, v in VALID.items() if k != "reasoning"}}
    assert re.fullmatch(regex, json.dumps(obj))
    assert re.fullmatch(regex, json.dumps(VALID)) is None


# -- custom 77-label taxonomy -----------------------------------------------------------------


def test_custom_taxonomy_model_and_schema(banking):
    model = output_model(banking)
    assert list(model.model_fields) == ["intent", "reasoning"]
    schema = json.loads(output_json_schema(banking))
    assert schema["required"] == ["intent", "reasoning"]
    assert schema["properties"]["intent"]["enum"] == BANKING_INTENTS
    assert "extracted_info" not in schema["properties"]
    model.model_validate({"intent": "card_arrival", "reasoning": "Asks where the card is."})
    with pytest.raises(ValidationError):
        model.model_validate({"intent": "card_arrived", "reasoning": "x"})
    with pytest.raises(ValidationError):
        model.model_validate({"intent": "card_arrival", "extracted_info": {}, "reasoning": "x"})
    assert json.loads(example_output(banking)) == {"intent": BANKING_INTENTS[0], "reasoning": "<reasoning>"}


def test_custom_taxonomy_regex_exact_labels(banking):
    regex = build_regex_from_schema(output_json_schema(banking))
    for label in BANKING_INTENTS:
        assert re.fullmatch(regex, json.dumps({"intent": label, "reasoning": "ok"})), label
    # prefixes and extensions of real labels are not labels
    for bogus in ["top_up_fail", "card_", "top_up_failed_again", "card_paymen", "Top_up"]:
        assert re.fullmatch(regex, json.dumps({"intent": bogus, "reasoning": "ok"})) is None, bogus
