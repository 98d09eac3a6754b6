"""Redaction recall on the planted sets (measured by bench/redaction.py's own code), the
contextual recognisers one format at a time, and the negatives that must survive them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from server.config import RedactionSettings
from server.privacy import Redactor

ROOT = Path(__file__).resolve().parents[2]
PII = ROOT / "data" / "pii"


def _load(name: str, path: Path, monkeypatch: pytest.MonkeyPatch | None = None) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


BENCH = _load("bench_redaction", ROOT / "bench" / "redaction.py")


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(RedactionSettings())


def _rows(name: str) -> list[dict[str, Any]]:
    with open(PII / name, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


# --- the planted sets ----------------------------------------------------------------------------

REQUIRED_PERFECT = ("CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS")


@pytest.mark.parametrize("name", ["testset.jsonl", "holdout_formats.jsonl"])
def test_recall_on_the_planted_sets(redactor: Redactor, name: str) -> None:
    report, missed, removed = BENCH.evaluate(redactor, _rows(name))
    assert report["redaction_errors"] == 0
    assert report["recall"] >= 0.99, (report["recall_per_type"], missed)
    assert report["recall_strict"] >= 0.99, (report["recall_strict_per_type"], missed)
    for entity in REQUIRED_PERFECT:
        assert report["recall_per_type"][entity] == 1.0, missed
        assert report["recall_strict_per_type"][entity] == 1.0, missed
    # Error codes, versions and product names feed classification: none may be touched.
    for kind in ("ERROR_CODE", "VERSION", "PRODUCT"):
        assert report["false_positives_per_type"][kind] == 0, removed
    assert report["false_positive_rate"] <= 0.01, removed


def test_recall_on_the_hand_written_sets(redactor: Redactor) -> None:
    # Written after tuning; names outside the first-name list with no cue are left to NER, so
    # the floor is lower than on the generated sets (measured: 0.95 and 0.97).
    for name in ("handwritten.jsonl", "handwritten_fresh.jsonl"):
        report, missed, removed = BENCH.evaluate(redactor, _rows(name))
        assert report["recall"] >= 0.9, missed
        assert report["false_positives"] == 0, removed
        for entity in REQUIRED_PERFECT:
            assert report["recall_per_type"].get(entity, 1.0) == 1.0, missed


def test_holdout_set_is_the_generator_output() -> None:
    builder = _load("pii_build_holdout", PII / "build_holdout.py")
    assert builder.build(per_language=36, seed=7117) == _rows("holdout_formats.jsonl")


def test_hand_written_sets_are_the_generator_output() -> None:
    builder = _load("pii_build_handwritten", PII / "build_handwritten.py")
    assert builder.build() == _rows("handwritten.jsonl")
    assert builder.build(builder.FRESH, "hwf") == _rows("handwritten_fresh.jsonl")


def test_holdout_shape() -> None:
    rows = _rows("holdout_formats.jsonl")
    assert len(rows) >= 150
    assert {r["language"] for r in rows} == {"en", "de", "es", "fr", "pt"}
    types = {it["type"] for r in rows for it in r["items"]}
    assert {"PERSON", "EMAIL_ADDRESS", "ADDRESS", "PASSPORT", "DATE_OF_BIRTH", "PASSWORD", "CREDIT_CARD"} <= types
    for r in rows:
        for it in r["items"] + r["negatives"]:
            assert r["text"][it["start"] : it["end"]] == it["value"]


def test_strict_measure_sees_a_partial_redaction() -> None:
    text = "Contact Anna Schmidt today"
    spans = BENCH.redacted_spans(text, "Contact Anna <PERSON_1> today", {"<PERSON_1>": "Schmidt"})
    assert spans == [(13, 20)]
    assert not BENCH.fully_covered(text, 8, 20, spans)
    assert BENCH.fully_covered(text, 13, 20, spans)


# --- formats, one at a time ----------------------------------------------------------------------

CAUGHT = [
    ("PERSON", "Yesterday I spoke to Amelia Baker on the phone.", "Amelia Baker"),
    ("PERSON", "my name is anna schmidt and i cannot log in.", "anna schmidt"),
    ("PERSON", "The parcel was signed for by MARIE WOLF yesterday.", "MARIE WOLF"),
    ("PERSON", "Titular: Castro Ortega, Diego", "Castro Ortega, Diego"),
    ("PERSON", "I'm tariq mahmood, customer since 2019.", "tariq mahmood"),
    ("PERSON", "Bitte an die Buchhaltung, z. Hd. Wiebke Sörensen.", "Wiebke Sörensen"),
    ("EMAIL_ADDRESS", "contact: grace_hughes [at] outlook [dot] com", "grace_hughes [at] outlook [dot] com"),
    ("EMAIL_ADDRESS", "Écrivez à theo.marchand arobase gmail point com svp", "theo.marchand arobase gmail point com"),
    ("EMAIL_ADDRESS", "Mail: noah-ward (at) proton.me", "noah-ward (at) proton.me"),
    ("EMAIL_ADDRESS", "write to george_murphy @ proton.me", "george_murphy @ proton.me"),
    ("ADDRESS", "Please ship it to 87 Church Lane, Leeds LS6 2QR.", "87 Church Lane, Leeds LS6 2QR"),
    ("ADDRESS", "Lieferadresse: Rosenheimer Straße 145, 81671 München", "Rosenheimer Straße 145, 81671 München"),
    ("ADDRESS", "Envíen a Calle Mayor 15, 3º B, 28013 Madrid.", "Calle Mayor 15, 3º B, 28013 Madrid"),
    ("ADDRESS", "Livraison au 12 rue des Lilas, 75011 Paris.", "12 rue des Lilas, 75011 Paris"),
    ("ADDRESS", "Morada: Rua das Flores, 45, 2.º Esq., 4050-265 Porto", "Rua das Flores, 45, 2.º Esq., 4050-265 Porto"),
    ("PASSPORT", "I uploaded my passport, number 561234789.", "561234789"),
    ("NATIONAL_ID", "Mi DNI es 48213765R.", "48213765R"),
    ("DATE_OF_BIRTH", "Ich bin am 23.03.1978 geboren.", "23.03.1978"),
    ("DATE_OF_BIRTH", "Je suis née le 3 mars 1990.", "3 mars 1990"),
    ("PASSWORD", 'I tried the password "Summer2024!" three times.', "Summer2024!"),
    ("PASSWORD", "Mein Passwort ist Sommer-0648, trotzdem kommt ungültig.", "Sommer-0648"),
    ("PIN_CODE", "The one-time code 582 913 expired.", "582 913"),
    ("PIN_CODE", "Recebi o código 8713 duas vezes.", "8713"),
    ("PHONE_NUMBER", "Ring me on 555-0105 after 6.", "555-0105"),
    ("CREDIT_CARD", "Card 4111.1111.1111.1111 was charged.", "4111.1111.1111.1111"),
    ("CREDIT_CARD", "Meine Kreditkarte 4916 3380 1297 4402 wurde belastet.", "4916 3380 1297 4402"),  # fails Luhn
    ("CUSTOMER_ID", "Meine Kunden-Nr. ist C-1821952.", "C-1821952"),
    ("ORDER_ID", "Order No. J-94737 was delivered damaged.", "J-94737"),
    ("INVOICE_NUMBER", "Rechnungs-Nr.: RE75839539", "RE75839539"),
    ("LICENSE_PLATE", "Vehicle reg: PV51 IZR", "PV51 IZR"),
    ("IP_ADDRESS", "Connections from 93.201.232.208:8080 are refused.", "93.201.232.208:8080"),
]


@pytest.mark.parametrize(("entity", "text", "value"), CAUGHT, ids=[f"{c[0]}-{i}" for i, c in enumerate(CAUGHT)])
def test_format_is_redacted_whole(redactor: Redactor, entity: str, text: str, value: str) -> None:
    out = redactor.redact([text])
    assert value not in out.texts[0]
    start = text.index(value)
    spans = BENCH.redacted_spans(text, out.texts[0], out.mapping)
    assert BENCH.fully_covered(text, start, start + len(value), spans), (out.texts[0], out.mapping)
    assert entity in out.counts, out.counts


SURVIVE = [
    "Since yesterday I get code 1603 when opening Office 365.",
    "Where is the password reset? Passwort vergessen. Mot de passe oublié.",
    "Where is the order confirmation? Bestellung storniert, Konto gesperrt, mon compte.",
    "Assistance with Adobe Photoshop CC 2021 and QuickBooks Online",
    "Sehr geehrter Kundensupport,\nich habe eine Frage.\n\nMerci.\n\nCordialement",
    "We would like to work collaboratively at this point and move on.",
    "Digital Mark Growth Strategy Inquiry",
    "Zahlung bis 30.04.2024, seit build 22631.3155 kommt HTTP 502.",
    "Speicherplatz 5 GB frei. Im Dezember 2023 ging es noch.",
    "Versions 10.0.19045.2965 and 121.0.6167.85, error 0x800f081f, exit code 137, ORA-00942, CVE-2024-3094.",
    "My Brother HL-L2350DW shows E1234 and the Galaxy S23 8GB model too.",
    "I'm really sorry, this is urgent: ich bin seit Montag offline.",
]


@pytest.mark.parametrize("text", SURVIVE)
def test_non_pii_survives_the_contextual_rules(redactor: Redactor, text: str) -> None:
    out = redactor.redact([text])
    assert out.texts == [text], out.mapping
