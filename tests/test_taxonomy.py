"""Taxonomies are data: the built-in `tickets`, custom YAML files (a Banking77-like one), refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from server.taxonomy import BUILTIN_DIR, Taxonomy, TaxonomyError, load_taxonomy, parse_taxonomy

# 77 banking-like intents. Several share prefixes ("card_", "top_up_", "pending_", ...) and some are strict
# prefixes of others ("top_up" / "top_up_failed", "card_payment" / "card_payment_fee_charged").
BANKING_INTENTS: list[str] = [
    "activate_my_card",
    "age_limit",
    "apple_pay_or_google_pay",
    "atm_support",
    "automatic_top_up",
    "balance_not_updated_after_bank_transfer",
    "balance_not_updated_after_cheque_or_cash_deposit",
    "beneficiary_not_allowed",
    "cancel_transfer",
    "card_about_to_expire",
    "card_acceptance",
    "card_arrival",
    "card_delivery_estimate",
    "card_linking",
    "card_not_working",
    "card_payment",
    "card_payment_fee_charged",
    "card_payment_not_recognised",
    "card_payment_wrong_exchange_rate",
    "card_swallowed",
    "cash_withdrawal_charge",
    "cash_withdrawal_not_recognised",
    "change_pin",
    "compromised_card",
    "contactless_not_working",
    "country_support",
    "declined_card_payment",
    "declined_cash_withdrawal",
    "declined_transfer",
    "direct_debit_payment_not_recognised",
    "disposable_card_limits",
    "edit_personal_details",
    "exchange_charge",
    "exchange_rate",
    "exchange_via_app",
    "extra_charge_on_statement",
    "failed_transfer",
    "fiat_currency_support",
    "get_disposable_virtual_card",
    "get_physical_card",
    "getting_spare_card",
    "getting_virtual_card",
    "lost_or_stolen_card",
    "lost_or_stolen_phone",
    "order_physical_card",
    "passcode_forgotten",
    "pending_card_payment",
    "pending_cash_withdrawal",
    "pending_top_up",
    "pending_transfer",
    "pin_blocked",
    "receiving_money",
    "refund_not_showing_up",
    "request_refund",
    "reverted_card_payment",
    "supported_cards_and_currencies",
    "terminate_account",
    "top_up",
    "top_up_by_bank_transfer_charge",
    "top_up_by_card_charge",
    "top_up_by_cash_or_cheque",
    "top_up_failed",
    "top_up_limits",
    "top_up_reverted",
    "topping_up_by_card",
    "transaction_charged_twice",
    "transfer_fee_charged",
    "transfer_into_account",
    "transfer_not_received_by_recipient",
    "transfer_timing",
    "unable_to_verify_identity",
    "verify_my_identity",
    "verify_source_of_funds",
    "verify_top_up",
    "virtual_card_not_working",
    "visa_or_mastercard",
    "wrong_exchange_rate_for_cash_withdrawal",
]


def banking_taxonomy_data() -> dict:
    return {
        "name": "banking77",
        "version": "2",
        "labels": {
            "intent": {
                "description": "What the customer wants.",
                "values": {label: f"the customer asks about {label.replace('_', ' ')}." for label in BANKING_INTENTS},
            }
        },
        "reasoning": True,
    }


def write_banking_taxonomy(directory: Path, *, nested: bool = False) -> Path:
    data = banking_taxonomy_data()
    if nested:
        data = {"taxonomy": data, "engine": {"max_batch_size": 4}}
    path = directory / ("banking_settings.yaml" if nested else "banking77.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tickets() -> Taxonomy:
    return load_taxonomy("tickets")


def test_banking_intents_fixture_is_77_unique():
    assert len(BANKING_INTENTS) == 77
    assert len(set(BANKING_INTENTS)) == 77


# -- built-in ---------------------------------------------------------------------------------


def test_tickets_builtin(tickets):
    assert tickets.name == "tickets"
    assert tickets.version == "1"
    assert tickets.key == "tickets@1"
    assert tickets.reasoning is True
    assert tickets.source == str(BUILTIN_DIR / "tickets.yaml")
    assert [f.name for f in tickets.labels] == ["category", "priority"]
    assert tickets.field("category").labels == ["Technical", "Billing", "Sales", "General"]
    assert tickets.field("priority").labels == ["Urgent", "High", "Medium", "Low"]
    assert [f.name for f in tickets.extracted_info] == ["product", "error_code", "sentiment"]


def test_tickets_field_kinds(tickets):
    for name in ("category", "priority"):
        spec = tickets.field(name)
        assert spec.is_label and not spec.in_extracted_info
        assert spec.description
        assert all(definition for definition in spec.values.values())
    for name in ("product", "error_code"):
        spec = tickets.field(name)
        assert not spec.is_label
        assert spec.labels == []
        assert spec.in_extracted_info
        assert spec.description
    sentiment = tickets.field("sentiment")
    assert sentiment.is_label and sentiment.in_extracted_info
    assert sentiment.labels == ["positive", "neutral", "negative"]


def test_tickets_label_fields(tickets):
    assert [f.name for f in tickets.label_fields] == ["category", "priority", "sentiment"]


def test_unknown_field_raises_keyerror(tickets):
    with pytest.raises(KeyError):
        tickets.field("urgency")


def test_builtin_by_path_equals_builtin_by_name(tickets):
    by_path = load_taxonomy(BUILTIN_DIR / "tickets.yaml")
    assert [f.name for f in by_path.label_fields] == [f.name for f in tickets.label_fields]
    assert by_path.field("category").values == tickets.field("category").values


# -- custom -----------------------------------------------------------------------------------


def test_custom_77_label_taxonomy_from_path(tmp_path):
    tax = load_taxonomy(write_banking_taxonomy(tmp_path))
    assert tax.name == "banking77"
    assert tax.key == "banking77@2"
    assert [f.name for f in tax.labels] == ["intent"]
    assert tax.extracted_info == ()
    assert tax.field("intent").labels == BANKING_INTENTS  # order kept
    assert [f.name for f in tax.label_fields] == ["intent"]
    with pytest.raises(KeyError):
        tax.field("priority")


def test_custom_taxonomy_from_str_path(tmp_path):
    tax = load_taxonomy(str(write_banking_taxonomy(tmp_path)))
    assert len(tax.field("intent").labels) == 77


def test_taxonomy_nested_under_taxonomy_key(tmp_path):
    tax = load_taxonomy(write_banking_taxonomy(tmp_path, nested=True))
    assert tax.name == "banking77"
    assert len(tax.field("intent").labels) == 77


def test_values_as_list_and_defaults():
    tax = parse_taxonomy({"name": "mini", "labels": {"kind": {"values": ["a", "b", "c"]}}})
    assert tax.version == "1"
    assert tax.reasoning is True
    assert tax.field("kind").values == {"a": "", "b": "", "c": ""}


def test_reasoning_false():
    tax = parse_taxonomy({"name": "mini", "labels": {"kind": {"values": ["a"]}}, "reasoning": False})
    assert tax.reasoning is False


def test_non_string_labels_become_strings():
    tax = parse_taxonomy({"name": "mini", "labels": {"stars": {"values": [1, 2, 3]}}})
    assert tax.field("stars").labels == ["1", "2", "3"]


# -- errors -----------------------------------------------------------------------------------


def _base(**changes) -> dict:
    data = {"name": "t", "labels": {"kind": {"values": ["a", "b"]}}}
    data.update(changes)
    return data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"name": "t"}, id="no-labels"),
        pytest.param({"name": "t", "labels": {}}, id="empty-labels"),
        pytest.param({"labels": {"kind": {"values": ["a"]}}}, id="no-name"),
        pytest.param(_base(labels={"kind": {"description": "free text"}}), id="label-field-without-values"),
        pytest.param(_base(labels={"kind": {"values": ['say "hi"', "b"]}}), id="double-quote"),
        pytest.param(_base(labels={"kind": {"values": ["back\\slash"]}}), id="backslash"),
        pytest.param(_base(labels={"kind": {"values": [" padded"]}}), id="untrimmed"),
        pytest.param(_base(labels={"kind": {"values": [""]}}), id="empty-label"),
        pytest.param(_base(labels={"kind": "not a mapping"}), id="field-not-mapping"),
        pytest.param(_base(labels={"kind": {"values": "a,b"}}), id="values-not-list"),
        pytest.param(_base(extracted_info={"kind": {"values": ["x"]}}), id="duplicate-field-name"),
        pytest.param(_base(labels={"reasoning": {"values": ["a"]}}), id="label-named-reasoning"),
        pytest.param(_base(extracted_info={"reasoning": {}}), id="extracted-named-reasoning"),
        pytest.param(["not", "a", "mapping"], id="not-a-mapping"),
    ],
)
def test_invalid_taxonomy_refused(data):
    with pytest.raises(TaxonomyError):
        parse_taxonomy(data)


def test_taxonomy_error_is_value_error():
    assert issubclass(TaxonomyError, ValueError)


def test_invalid_yaml_file_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text('name: bad\nlabels:\n  kind:\n    values: ["ok", "has \\" quote"]\n', encoding="utf-8")
    with pytest.raises(TaxonomyError, match="quote"):
        load_taxonomy(path)


def test_missing_labels_in_file_refused(tmp_path):
    path = tmp_path / "nolabels.yaml"
    path.write_text("name: nolabels\nextracted_info:\n  product: {}\n", encoding="utf-8")
    with pytest.raises(TaxonomyError):
        load_taxonomy(path)


@pytest.mark.parametrize("name", ["does_not_exist", "/nonexistent/dir/taxonomy.yaml"])
def test_nonexistent_taxonomy(name):
    with pytest.raises(TaxonomyError, match="not found"):
        load_taxonomy(name)


def test_nonexistent_path_object(tmp_path):
    with pytest.raises(TaxonomyError):
        load_taxonomy(tmp_path / "missing.yaml")


# -- validate_label ---------------------------------------------------------------------------


def test_validate_label_accepts(tickets):
    tickets.validate_label("category", "Billing")
    tickets.validate_label("priority", "Low")
    tickets.validate_label("sentiment", "negative")
    tickets.validate_label("product", "anything at all")  # free text: no closed set


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("category", "billing"),
        ("category", "Refund"),
        ("priority", "Critical"),
        ("sentiment", "angry"),
        ("category", ""),
    ],
)
def test_validate_label_refuses(tickets, field, value):
    with pytest.raises(TaxonomyError, match=field):
        tickets.validate_label(field, value)


def test_validate_label_unknown_field(tickets):
    with pytest.raises(KeyError):
        tickets.validate_label("department", "Billing")


def test_validate_label_custom(tmp_path):
    tax = load_taxonomy(write_banking_taxonomy(tmp_path))
    tax.validate_label("intent", "top_up")
    tax.validate_label("intent", "top_up_failed")
    with pytest.raises(TaxonomyError):
        tax.validate_label("intent", "top_up_fail")
