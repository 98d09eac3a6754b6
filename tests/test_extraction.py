"""Candidate spans of copy-only fields (error codes): what counts as a code-like span of a ticket."""

from __future__ import annotations

import pytest

from finetune.data import copyable
from server.extraction import MAX_CANDIDATES, candidate_spans, is_copied


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oracle says ORA-00942: table or view does not exist", ["ORA-00942"]),
        ("the printer shows E-104, later E05", ["E-104", "E05"]),
        ("Frequent Error Code 502 on Jira", ["Error Code 502"]),
        ("HTTP 503 from the API", ["HTTP 503"]),
        ("Fehler 500 beim Login", ["Fehler 500"]),
        ("Windows update fails with 0x80070005", ["0x80070005"]),
        (
            "Chrome: ERR_CONNECTION_REFUSED, then NET::ERR_CERT_DATE_INVALID",
            ["ERR_CONNECTION_REFUSED", "NET::ERR_CERT_DATE_INVALID"],
        ),
        ("java.lang.NullPointerException at Foo.bar", ["java.lang.NullPointerException"]),
        ("connect ECONNREFUSED 127.0.0.1:5432", ["ECONNREFUSED"]),
        ("=A1/B1 gives #DIV/0! and #N/A", ["#DIV/0!", "#N/A"]),
        ("AADSTS50126: invalid username or password", ["AADSTS50126"]),
        ("SQLSTATE[23505] unique violation", ["SQLSTATE[23505]"]),
        ("blue screen CRITICAL_PROCESS_DIED", ["CRITICAL_PROCESS_DIED"]),
    ],
)
def test_code_shapes(text, expected):
    assert candidate_spans([text]) == expected


def test_plain_text_placeholders_and_versions_are_not_candidates():
    assert candidate_spans(["Hello <name>, my account <acc_num> on Windows 11 version 4.2.1 in 2024 is URGENT"]) == []


def test_spans_are_distinct_in_order_and_bounded():
    text = " ".join(f"ERR-{1000 + i}" for i in range(20)) + " ERR-1000"
    spans = candidate_spans(["ORA-00001", text])
    assert spans[0] == "ORA-00001" and len(spans) == MAX_CANDIDATES and len(set(spans)) == len(spans)


def test_history_counts_and_values_must_be_copied():
    texts = ["Login broken", "It fails.", "Customer: now I get AADSTS50126"]
    assert candidate_spans(texts) == ["AADSTS50126"]
    assert is_copied("AADSTS50126", texts) and is_copied(None, texts)
    assert not is_copied("AADSTS50127", texts) and not is_copied("invalid credentials", texts)


def test_training_targets_are_mapped_onto_spans():
    assert copyable("ORA-1", ["ORA-1"]) == "ORA-1"
    assert copyable("Error 502", ["Error Code 502", "ISR4331"]) == "Error Code 502"  # same digits
    assert (
        copyable("Drucker nicht verfügbar", ["MG3620"]) is None
    )  # a message, not a span: the decoder could not write it
    assert copyable(None, ["ORA-1"]) is None
