"""PII redaction with the real Presidio engines (no mocks of Presidio; faults are injected only to
prove that failures raise instead of passing text through)."""

from __future__ import annotations

import importlib.util
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from server.config import RedactionSettings
from server.privacy import Redacted, RedactionError, Redactor
from server.privacy.cards import find_card_numbers, luhn_valid

ROOT = Path(__file__).resolve().parents[2]
TESTSET = ROOT / "data" / "pii" / "testset.jsonl"


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(RedactionSettings())


@pytest.fixture(scope="module")
def testset() -> list[dict[str, Any]]:
    with open(TESTSET, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def redact_one(redactor: Redactor, text: str) -> Redacted:
    return redactor.redact([text])


# --- every entity type, in English and German (plus the other languages where formats differ) ---

CASES = [
    ("CREDIT_CARD", "en", "I was charged twice on card 4111 1111 1111 1111 yesterday.", "4111 1111 1111 1111"),
    ("CREDIT_CARD", "de", "Meine Kreditkarte 5555-5555-5555-4444 wurde doppelt belastet.", "5555-5555-5555-4444"),
    ("IBAN_CODE", "en", "Refund to GB82 WEST 1234 5698 7654 32 please.", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN_CODE", "de", "Bitte auf IBAN DE89 3704 0044 0532 0130 00 überweisen.", "DE89 3704 0044 0532 0130 00"),
    ("IBAN_CODE", "de", "Neue Bankverbindung: DE89370400440532013000", "DE89370400440532013000"),
    ("IBAN_CODE", "es", "Mi IBAN es ES91 2100 0418 4502 0005 1332.", "ES91 2100 0418 4502 0005 1332"),
    ("IBAN_CODE", "fr", "IBAN : FR76 3000 6000 0112 3456 7890 189", "FR76 3000 6000 0112 3456 7890 189"),
    ("EMAIL_ADDRESS", "en", "You can reach me at emily.obrien+shop@gmail.com any time.", "emily.obrien+shop@gmail.com"),
    ("EMAIL_ADDRESS", "de", "Sie erreichen mich unter j.mueller@t-online.de.", "j.mueller@t-online.de"),
    ("PHONE_NUMBER", "en", "Please call me back on (555) 123-4567.", "(555) 123-4567"),
    ("PHONE_NUMBER", "en", "My mobile is +44 7700 900123.", "+44 7700 900123"),
    ("PHONE_NUMBER", "de", "Bitte rufen Sie mich unter +49 30 1234567 zurück.", "+49 30 1234567"),
    ("PHONE_NUMBER", "de", "Tel.: 0176 12345678", "0176 12345678"),
    ("PHONE_NUMBER", "es", "Llámenme al +34 612 345 678, por favor.", "+34 612 345 678"),
    ("PHONE_NUMBER", "fr", "Mon numéro est le 06 12 34 56 78.", "06 12 34 56 78"),
    ("PHONE_NUMBER", "pt", "Liguem para o (11) 91234-5678.", "(11) 91234-5678"),
    ("IP_ADDRESS", "en", "Login was blocked from IP 203.0.113.42 this morning.", "203.0.113.42"),
    (
        "IP_ADDRESS",
        "de",
        "Das Gerät 2001:db8:85a3::8a2e:370:7334 ist nicht erreichbar.",
        "2001:db8:85a3::8a2e:370:7334",
    ),
    ("US_SSN", "en", "My SSN is 219-09-9999 for the W-9.", "219-09-9999"),
    ("US_SSN", "de", "Meine Social Security Number ist 536-22-1234.", "536-22-1234"),
    ("URL", "en", "Here is a screenshot: https://imgur.com/a/Xy12Ab, see it?", "https://imgur.com/a/Xy12Ab"),
    ("URL", "de", "Mein Profil: www.mein-shop.de/u/anna.schmidt", "www.mein-shop.de/u/anna.schmidt"),
    ("PERSON", "en", "Dear Anna Schmidt,\nthe export fails.", "Anna Schmidt"),
    ("PERSON", "en", "The export fails.\n\nSincerely,\nJohn Doe", "John Doe"),
    ("PERSON", "en", "Hi, my name is Emily O'Brien and I manage the account.", "Emily O'Brien"),
    ("PERSON", "de", "Die Synchronisation hängt.\n\nMit freundlichen Grüßen\nMax Mustermann", "Max Mustermann"),
    ("PERSON", "de", "Sehr geehrte Frau Müller-Lüdenscheidt,\nes geht um die Rechnung.", "Müller-Lüdenscheidt"),
    ("PERSON", "es", "No puedo entrar.\n\nAtentamente, María García López", "María García López"),
    ("PERSON", "fr", "Bonjour Madame Dupont,\nje n'arrive pas à me connecter.", "Dupont"),
    ("PERSON", "pt", "Não consigo entrar.\n\nCom os melhores cumprimentos,\nJoão da Silva", "João da Silva"),
    ("ACCOUNT_NUMBER", "en", "This concerns account number: 88231177.", "88231177"),
    ("ACCOUNT_NUMBER", "de", "Kontonummer: 0012345678", "0012345678"),
    ("ORDER_ID", "en", "My order #A-12345 has not arrived.", "A-12345"),
    ("ORDER_ID", "de", "Die Bestellung Nr. 4711-0815 kam beschädigt an.", "4711-0815"),
]


@pytest.mark.parametrize(
    ("entity", "lang", "text", "value"), CASES, ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_each_entity_type_is_redacted(redactor: Redactor, entity: str, lang: str, text: str, value: str) -> None:
    out = redact_one(redactor, text)
    assert value not in out.texts[0]
    assert out.mapping.get(f"<{entity}_1>") == value, (out.texts[0], out.mapping)
    assert out.counts[entity] >= 1


def test_only_the_value_of_a_config_pattern_is_replaced(redactor: Redactor) -> None:
    assert redact_one(redactor, "order #A-12345").texts[0] == "order #<ORDER_ID_1>"


def test_custom_config_patterns_with_and_without_group() -> None:
    settings = RedactionSettings(patterns={"TICKET_REF": r"\bREF-(\d{6})\b", "BADGE": r"\bBDG\d{4}\b"})
    out = Redactor(settings).redact(["see REF-123456 and BDG1234"])
    assert out.texts == ["see REF-<TICKET_REF_1> and <BADGE_1>"]


# --- placeholders ------------------------------------------------------------------------------


def test_placeholders_are_typed_and_stable_across_texts(redactor: Redactor) -> None:
    out = redactor.redact(
        [
            "Write to anna@example.de or bob@example.com.",
            "Again: anna@example.de. Call +49 30 1234567.",
        ]
    )
    assert out.texts == [
        "Write to <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>.",
        "Again: <EMAIL_ADDRESS_1>. Call <PHONE_NUMBER_1>.",
    ]
    assert out.mapping == {
        "<EMAIL_ADDRESS_1>": "anna@example.de",
        "<EMAIL_ADDRESS_2>": "bob@example.com",
        "<PHONE_NUMBER_1>": "+49 30 1234567",
    }
    assert out.counts == {"EMAIL_ADDRESS": 3, "PHONE_NUMBER": 1}


def test_detected_value_is_removed_from_every_text_of_the_call(redactor: Redactor) -> None:
    # The subject has no cue for the name; the signature in the body announces it.
    out = redactor.redact(
        ["Anna Schmidt: refund still missing", "It has been two weeks.\n\nBest regards,\nAnna Schmidt"]
    )
    assert all("Anna" not in t and "Schmidt" not in t for t in out.texts)
    assert out.texts[0] == "<PERSON_1>: refund still missing"


def test_first_name_alone_is_caught_once_the_full_name_is_known(redactor: Redactor) -> None:
    out = redactor.redact(["Anna here again, nothing changed.\n\nKind regards,\nAnna Schmidt"])
    assert "Anna" not in out.texts[0]


def test_placeholder_numbers_already_in_the_input_are_skipped(redactor: Redactor) -> None:
    out = redact_one(redactor, "Template says <EMAIL_ADDRESS_1>; mine is real@example.org")
    assert out.mapping == {"<EMAIL_ADDRESS_2>": "real@example.org"}
    assert redactor.restore(out.texts[0], out.mapping) == "Template says <EMAIL_ADDRESS_1>; mine is real@example.org"


def test_overlapping_detections_never_nest(redactor: Redactor) -> None:
    out = redact_one(
        redactor, "Reset link: https://shop.example.com/reset?user=anna@example.com&t=1 (sent to anna@example.com)"
    )
    assert "anna@example.com" not in out.texts[0]
    assert all("<" not in v for v in out.mapping.values())
    assert out.texts[0].count("<") == 2


def test_empty_inputs(redactor: Redactor) -> None:
    assert redactor.redact([]) == Redacted(texts=[], mapping={}, counts={})
    assert redactor.redact(["", "no personal data here"]).texts == ["", "no personal data here"]


# --- restore -----------------------------------------------------------------------------------


def test_restore_round_trips(redactor: Redactor, testset: list[dict[str, Any]]) -> None:
    texts = [row["text"] for row in testset[:40]]
    out = redactor.redact(texts)
    assert redactor.restore(out.texts, out.mapping) == texts


def test_restore_walks_nested_values_and_leaves_the_rest_alone(redactor: Redactor) -> None:
    mapping = {"<ORDER_ID_1>": "A-12345", "<PERSON_1>": "Anna Schmidt"}
    echoed = {
        "product": "<ORDER_ID_1>",
        "extracted_info": {"names": ["<PERSON_1>", "<PERSON_9>"], "pair": ("<PERSON_1>", 3)},
        "<PERSON_1>": "key stays",
        "confidence": 0.93,
        "flag": None,
    }
    assert redactor.restore(echoed, mapping) == {
        "product": "A-12345",
        "extracted_info": {"names": ["Anna Schmidt", "<PERSON_9>"], "pair": ("Anna Schmidt", 3)},
        "<PERSON_1>": "key stays",
        "confidence": 0.93,
        "flag": None,
    }
    assert redactor.restore(42, mapping) == 42
    assert redactor.restore("Order <ORDER_ID_1>", {}) == "Order <ORDER_ID_1>"


# --- payment cards -----------------------------------------------------------------------------

ODD_CARDS = [
    "4111-1111 1111-1111",  # mixed separators
    "4111\u00a01111\u00a01111\u00a01111",  # non-breaking spaces from a PDF
    "4111 - 1111 - 1111 - 1111",
    "3782 822463 10005",  # Amex 4-6-5
    "378282246310005",
    "3056 930902 5904",  # Diners 14 digits
    "2221 0000 0000 0009",  # Mastercard 2-series (Presidio's own pattern misses it)
    "6759 6498 2643 8453 201",  # 19-digit Maestro
    "4222222222222",  # 13-digit Visa
]


@pytest.mark.parametrize("number", ODD_CARDS)
def test_card_numbers_in_odd_formats_are_caught(redactor: Redactor, number: str) -> None:
    assert luhn_valid("".join(ch for ch in number if ch.isdigit())), "fixture must be Luhn-valid"
    out = redact_one(redactor, f"Card: {number}, CVV on request")
    assert number not in out.texts[0]
    assert find_card_numbers(out.texts[0]) == []
    assert out.mapping["<CREDIT_CARD_1>"] == number


def test_card_glued_to_other_digits_is_caught(redactor: Redactor) -> None:
    out = redact_one(redactor, "cc:4111111111111111 exp 1226 and 4111 1111 1111 1111 123")
    assert find_card_numbers(out.texts[0]) == []
    assert out.counts["CREDIT_CARD"] == 2


def test_assert_safe(redactor: Redactor) -> None:
    with pytest.raises(RedactionError):
        redactor.assert_safe("number 4111 1111 1111 1111 here")
    with pytest.raises(RedactionError):
        redactor.assert_safe("3782-822463-10005")
    non_luhn = "4111111111111112"
    assert not luhn_valid(non_luhn)
    redactor.assert_safe(f"tracking {non_luhn} and 4111 1111 1111 1112")  # does not raise
    redactor.assert_safe("build 10.0.19045.2965, 2024-03-15, +49 30 1234567")


def test_a_card_that_escaped_detection_fails_the_call(redactor: Redactor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redactor, "_detect", lambda text: [])
    with pytest.raises(RedactionError):
        redact_one(redactor, "card 4111 1111 1111 1111")


# --- things that must survive ------------------------------------------------------------------

KEEP = [
    "After updating to v2.3.1 (build 10.0.19045.2965) the app shows ERR-504 and HTTP 500.",
    "Error code 0x80070005, SQLSTATE 23505, NET::ERR_CERT_DATE_INVALID, E1234.",
    "version 1.2.3.4 of the agent, firmware 4.0.0.12",
    "My ProBook 450 G8, Galaxy S23 Ultra and FRITZ!Box 7590 lost sync on 15.03.2024 at 14:30.",
    "I paid $1,299.00 / 1.299,00 € / R$ 250,00 on March 3, 2024 (2024-03-15, 03/15/2024).",
    "Ticket 483920: 16 GB RAM, 512 GB SSD, port 8080, 1920x1080, ASP.NET on Booking.com, see main.py and readme.md",
    "Hi team,\nHallo zusammen,\nHello Microsoft Support,\nDear Sir or Madam,\nBonjour,\nOlá equipa,",
    "Liebe Grüße aus Berlin\nThanks for the quick help!\nSent from my iPhone",
]


@pytest.mark.parametrize("text", KEEP)
def test_non_pii_survives(redactor: Redactor, text: str) -> None:
    out = redact_one(redactor, text)
    assert out.texts == [text], out.mapping


# --- failures ----------------------------------------------------------------------------------


def test_analyzer_failure_raises(redactor: Redactor, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("boom Anna Schmidt")

    monkeypatch.setattr(redactor._analyzer, "analyze", broken)
    with pytest.raises(RedactionError) as err:
        redact_one(redactor, "Dear Anna Schmidt, card 4111 1111 1111 1111")
    assert "Anna" not in str(err.value)  # the error message must not carry ticket text


def test_recognizer_failure_raises(redactor: Redactor, monkeypatch: pytest.MonkeyPatch) -> None:
    recognizer = next(
        r for r in redactor._analyzer.registry.recognizers if getattr(r, "name", None) == "CueNameRecognizer"
    )

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("recognizer crashed")

    monkeypatch.setattr(recognizer, "analyze", broken)
    with pytest.raises(RedactionError):
        redact_one(redactor, "Dear Anna Schmidt,")


def test_anonymizer_failure_raises(redactor: Redactor, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("anonymizer crashed")

    monkeypatch.setattr(redactor._anonymizer, "anonymize", broken)
    with pytest.raises(RedactionError):
        redact_one(redactor, "mail me at a@example.com")


def test_non_string_input_raises(redactor: Redactor) -> None:
    with pytest.raises(RedactionError):
        redactor.redact(["ok", None])  # type: ignore[list-item]


def test_missing_spacy_model_fails_at_construction() -> None:
    with pytest.raises(RedactionError):
        Redactor(RedactionSettings(spacy_model="xx_no_such_model_installed"))


def test_spacy_model_adds_person_and_location_from_ner(tmp_path: Path) -> None:
    # A stand-in "model": a blank pipeline whose entity ruler plays the NER component.
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(  # type: ignore[attr-defined]
        [
            {"label": "PERSON", "pattern": "Laura Becker"},
            {"label": "GPE", "pattern": "Lisbon"},
            {"label": "ORG", "pattern": "Acme"},
        ]
    )
    nlp.to_disk(tmp_path / "model")
    out = Redactor(RedactionSettings(spacy_model=str(tmp_path / "model"))).redact(
        ["I spoke with Laura Becker from Acme in Lisbon."]
    )
    assert out.texts == ["I spoke with <PERSON_1> from Acme in <LOCATION_1>."]


# --- concurrency -------------------------------------------------------------------------------


def test_concurrent_use_gives_the_same_results(redactor: Redactor, testset: list[dict[str, Any]]) -> None:
    texts = [row["text"] for row in testset[:60]]
    sequential = [redactor.redact([t]) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda t: redactor.redact([t]), texts))
    assert parallel == sequential


# --- the committed test set --------------------------------------------------------------------


def _load_builder(monkeypatch: pytest.MonkeyPatch) -> Any:
    spec = importlib.util.spec_from_file_location("pii_build_testset", ROOT / "data" / "pii" / "build_testset.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


def test_committed_testset_is_the_generator_output(
    testset: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _load_builder(monkeypatch).build(per_language=32, seed=20240611) == testset


def test_testset_shape(testset: list[dict[str, Any]]) -> None:
    items = [it for row in testset for it in row["items"]]
    assert len(items) >= 250
    assert {it["type"] for it in items} == {
        "CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "US_SSN", "URL", "PERSON", "ACCOUNT_NUMBER", "ORDER_ID",
    }  # fmt: skip
    assert {row["language"] for row in testset} == {"en", "de", "es", "fr", "pt"}
    for row in testset:
        for it in row["items"] + row["negatives"]:
            assert row["text"][it["start"] : it["end"]] == it["value"]
    cards = [it["value"] for it in items if it["type"] == "CREDIT_CARD"]
    assert all(luhn_valid("".join(ch for ch in c if ch.isdigit())) for c in cards)
    assert any(" " in c for c in cards) and any("-" in c for c in cards) and any(c.isdigit() for c in cards)


def test_recall_on_the_testset(redactor: Redactor, testset: list[dict[str, Any]]) -> None:
    caught: dict[str, list[bool]] = {}
    leaked_cards = 0
    for row in testset:
        redacted = redactor.redact([row["text"]]).texts[0]
        leaked_cards += len(find_card_numbers(redacted))
        for it in row["items"]:
            caught.setdefault(it["type"], []).append(it["value"] not in redacted)
    overall = sum(sum(v) for v in caught.values()) / sum(len(v) for v in caught.values())
    per_type = {t: sum(v) / len(v) for t, v in caught.items()}
    assert leaked_cards == 0
    assert per_type["CREDIT_CARD"] == 1.0, per_type
    assert overall >= 0.99, per_type
