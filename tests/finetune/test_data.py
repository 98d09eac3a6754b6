"""Dataset building: validation with file/row/column errors, feedback overrides, filters, splits."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from finetune.config import load_config
from finetune.data import DataError, Example, feedback_examples, merge, read_examples, split
from server.prompts import TicketInput
from server.taxonomy import load_taxonomy
from tests.finetune.feedback_store import make_store

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = [
    "ticket_id",
    "subject",
    "body",
    "category",
    "priority",
    "product",
    "error_code",
    "sentiment",
    "reasoning",
    "label_source",
]


def write_csv(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})
    return path


def row(i: int, **kw) -> dict:
    base = {
        "ticket_id": f"T{i}",
        "subject": f"Subject {i}",
        "body": f"Body {i}",
        "category": "Technical",
        "priority": "Low",
        "sentiment": "neutral",
        "reasoning": "Because.",
        "label_source": "reviewed",
    }
    return {**base, **kw}


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("tickets")


def test_reads_valid_rows_into_the_answer_shape(tmp_path, tax):
    path = write_csv(
        tmp_path / "t.csv",
        [row(1, product="Zoom", error_code="E42", body="The printer shows E42."), row(2, error_code="E42")],
    )
    examples, record = read_examples(path, tax)
    assert [e.uid for e in examples] == ["T1", "T2"]
    assert examples[0].answer == {
        "category": "Technical",
        "priority": "Low",
        "extracted_info": {"sentiment": "neutral", "product": "Zoom", "error_code": "E42"},
        "reasoning": "Because.",
    }
    assert examples[1].answer["extracted_info"]["product"] is None
    # error_code is copy-only: a label that is no span of the ticket cannot be written by the decoder.
    assert examples[1].answer["extracted_info"]["error_code"] is None
    assert record["rows_used"] == 2 and len(record["sha256"]) == 64


def test_unknown_label_names_file_row_and_column(tmp_path, tax):
    path = write_csv(tmp_path / "t.csv", [row(1), row(2, priority="Critical")])
    with pytest.raises(DataError) as err:
        read_examples(path, tax)
    msg = str(err.value)
    assert str(path) in msg and "row 3" in msg and "'priority'" in msg and "'Critical'" in msg


def test_empty_ticket_and_empty_label_are_reported_together(tmp_path, tax):
    path = write_csv(tmp_path / "t.csv", [row(1, subject="", body=""), row(2, sentiment="")])
    with pytest.raises(DataError) as err:
        read_examples(path, tax)
    msg = str(err.value)
    assert (
        "2 problem(s)" in msg
        and "row 2" in msg
        and "empty ticket" in msg
        and "row 3, column 'sentiment': empty label" in msg
    )


def test_missing_columns_fail_before_reading_rows(tmp_path, tax):
    path = write_csv(tmp_path / "t.csv", [row(1)], columns=["ticket_id", "subject", "body", "category"])
    with pytest.raises(DataError) as err:
        read_examples(path, tax)
    assert "missing column 'priority'" in str(err.value) and "missing column 'sentiment'" in str(err.value)


def test_a_file_of_another_taxonomy_is_refused(tax):
    with pytest.raises(DataError, match="missing column 'priority'"):
        read_examples(ROOT / "data/banking77/train.csv", tax, text_column="text")


def test_banking77_reads_text_as_body_without_reasoning():
    b77 = load_taxonomy("banking77")
    examples, record = read_examples(ROOT / "data/banking77/test.csv", b77, text_column="text", label_sources=None)
    assert len(examples) == 3080 and record["text_column"] == "text"
    assert examples[0].ticket.subject == "" and examples[0].ticket.body
    assert set(examples[0].answer) == {"category"}


def test_label_source_filter_skips_noisy_rows(tmp_path, tax):
    path = write_csv(tmp_path / "t.csv", [row(1), row(2, label_source="dataset", sentiment="")])
    examples, record = read_examples(path, tax, label_sources=["reviewed"])
    assert [e.uid for e in examples] == ["T1"] and record["rows_skipped"] == 1


def test_jsonl_files_and_their_errors(tmp_path, tax):
    good = tmp_path / "t.jsonl"
    good.write_text(json.dumps(row(1)) + "\n\n" + json.dumps(row(2, category="Sales")) + "\n")
    examples, _ = read_examples(good, tax)
    assert [e.answer["category"] for e in examples] == ["Technical", "Sales"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row(1)) + "\n{not json\n")
    with pytest.raises(DataError, match="row 2: not valid JSON"):
        read_examples(bad, tax)


def test_feedback_corrections_win_over_file_labels(tmp_path, tax):
    store = make_store(tmp_path)
    store.add("T1", {"category": "Billing", "extracted_info": {"sentiment": "negative"}}, key="rita", body="fb body 0")
    store.add("T2", {"category": "Sales", "priority": "High"}, key="rita", body="fb body 1")
    fb, snapshot = feedback_examples(store.url, tax, storage=store.storage)
    assert snapshot["rows_used"] == 2 and snapshot["max_feedback_id"] == 2 and len(snapshot["sha256"]) == 64
    by_id = {e.uid: e for e in fb}
    assert (
        by_id["T1"].answer["category"] == "Billing" and by_id["T1"].answer["extracted_info"]["sentiment"] == "negative"
    )
    assert by_id["T2"].answer["priority"] == "High" and by_id["T2"].answer["category"] == "Sales"
    file_examples, _ = read_examples(write_csv(tmp_path / "t.csv", [row(1), row(3)]), tax)
    merged = merge(file_examples, fb)
    assert {e.uid: e.answer["category"] for e in merged} == {"T1": "Billing", "T3": "Technical", "T2": "Sales"}
    assert next(e for e in merged if e.uid == "T1").ticket.body == "fb body 0"


def test_split_is_seeded_stratified_and_disjoint():
    exs = [Example(f"u{i}", TicketInput("", f"b{i}"), {"category": ["A", "B"][i % 10 == 0]}, "f") for i in range(100)]
    train, held = split(exs, 0.1, seed=1)
    assert len(train) + len(held) == 100 and not {e.uid for e in train} & {e.uid for e in held}
    assert any(e.answer["category"] == "B" for e in held)  # thin class on both sides
    assert [e.uid for e in split(exs, 0.1, seed=1)[1]] == [e.uid for e in held]


def test_config_yaml_and_flag_overrides(tmp_path):
    cfg = load_config(
        ROOT / "finetune/configs/tickets.yaml",
        {"train.epochs": "1", "lora.target_modules": "[q_proj, v_proj]", "name": None},
    )
    assert (
        cfg.train.epochs == 1 and cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.name == "tickets-smollm2-v1"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_config(bad)


def test_history_column_and_fixed_heldout_ids(tmp_path, tax):
    cols = [*COLUMNS, "previous_interactions", "source_ticket_id"]
    rows = [
        row(1, previous_interactions=json.dumps(["Agent: hi", "Customer: still broken"])),
        row(2),
        row(3, ticket_id="aug-1", source_ticket_id="T2"),
        row(4),
    ]
    examples, _ = read_examples(write_csv(tmp_path / "t.csv", rows, cols), tax)
    assert examples[0].ticket.previous_interactions == ("Agent: hi", "Customer: still broken")
    train, held = split(examples, 0.5, 0, heldout_ids={"T2"})
    assert [e.uid for e in held] == ["T2"]
    assert [e.uid for e in train] == ["T1", "T4"], "a row derived from a held-out ticket is never trained on"
    bad = write_csv(tmp_path / "b.csv", [row(1, previous_interactions="not json")], cols)
    with pytest.raises(DataError, match="row 2, column 'previous_interactions'"):
        read_examples(bad, tax)
