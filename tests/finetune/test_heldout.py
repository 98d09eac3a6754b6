"""The held-out split by reference: written without text, rebuilt from the data files and the encrypted
store with every row's hash checked; rows gone or changed are skipped and counted; old splits convert
without changing what they hold; the shipped adapters resolve completely."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from finetune.config import load_config
from finetune.data import DataError, Example, feedback_examples, read_examples
from finetune.heldout import (
    HELDOUT_FILE,
    LEGACY_FILE,
    ReadSpec,
    convert,
    legacy_row,
    read_heldout,
    write_heldout,
)
from server.taxonomy import load_taxonomy
from tests.finetune.feedback_store import FeedbackStore, make_store

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["tickets-smollm2-v1", "tickets-smollm2-v2", "banking77-smollm2-v1", "banking77-smollm2-v2"]
COLUMNS = ["ticket_id", "subject", "body", "category", "priority", "sentiment", "reasoning", "label_source"]
SPEC = ReadSpec("tickets", "full", None, ["reviewed"])


@pytest.fixture(scope="module")
def tax():
    return load_taxonomy("tickets")


def _csv(path: Path, bodies: dict[str, str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for tid, body in bodies.items():
            w.writerow(
                {
                    "ticket_id": tid,
                    "subject": f"About {tid}",
                    "body": body,
                    "category": "Billing",
                    "priority": "High",
                    "sentiment": "negative",
                    "reasoning": "Charged twice.",
                    "label_source": "reviewed",
                }
            )
    return path


BODIES = {
    "T1": "Jane Roe here, my card 4111 1111 1111 1111 was charged twice for the March invoice.",
    "T2": "Our scanner stopped working after the firmware update on Tuesday, error 0x80070005.",
    "T3": "Please send me the quote for 40 seats of the analytics plan before Friday.",
}


def test_the_split_is_stored_without_text_and_reads_back_equal(tmp_path: Path, tax) -> None:
    examples, _ = read_examples(_csv(tmp_path / "t.csv", BODIES), tax, label_sources=["reviewed"])
    write_heldout(tmp_path / HELDOUT_FILE, examples[:2], SPEC)
    stored = (tmp_path / HELDOUT_FILE).read_text(encoding="utf-8")
    for body in BODIES.values():
        assert body[:20] not in stored and "About T1" not in stored
    assert json.loads(stored)["rows"][0]["source"] == str(tmp_path / "t.csv")  # outside the project: absolute
    back = read_heldout(tmp_path)
    assert back.skipped == 0 and [legacy_row(e) for e in back.examples] == [legacy_row(e) for e in examples[:2]]


def test_rows_gone_or_changed_are_skipped_and_counted(tmp_path: Path, tax) -> None:
    data = _csv(tmp_path / "t.csv", BODIES)
    examples, _ = read_examples(data, tax, label_sources=["reviewed"])
    write_heldout(tmp_path / HELDOUT_FILE, examples, SPEC)
    _csv(data, {"T1": BODIES["T1"].replace("Jane Roe", "<PERSON>"), "T3": BODIES["T3"]})  # T1 redacted, T2 erased
    back = read_heldout(tmp_path)
    assert [e.uid for e in back.examples] == ["T3"]
    assert (back.missing, back.changed) == (["T2"], ["T1"])
    assert back.summary() == {"rows": 3, "resolved": 1, "missing": 1, "changed": 1}
    data.unlink()  # the whole file gone
    assert read_heldout(tmp_path).missing == ["T1", "T2", "T3"]


def test_an_example_with_no_source_is_refused(tmp_path: Path) -> None:
    from server.prompts import TicketInput

    with pytest.raises(ValueError, match="names no source"):
        write_heldout(tmp_path / HELDOUT_FILE, [Example("u", TicketInput("", "b"), {}, "t")], SPEC)


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    s = make_store(tmp_path)
    s.add("F1", {"category": "Billing"}, key="rita", body="Jane Roe, card 4111 1111 1111 1111 charged twice.")
    s.add("F2", {"priority": "High"}, key="ada", body="The export to CSV drops every row after 65535.")
    s.add("F3", {"category": "Sales"}, key="rita", body="Quote for 40 seats please.")
    return s


def test_feedback_rows_resolve_from_the_encrypted_store(store: FeedbackStore, tmp_path: Path, tax) -> None:
    examples, _ = feedback_examples(store.url, tax, storage=store.storage)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    write_heldout(adapter / HELDOUT_FILE, examples, SPEC)
    rows = json.loads((adapter / HELDOUT_FILE).read_text())["rows"]
    assert [r["source"] for r in rows] == ["feedback:1", "feedback:2", "feedback:3"]
    assert "4111" not in (adapter / HELDOUT_FILE).read_text()
    settings = store.settings
    back = read_heldout(adapter, settings)
    assert back.skipped == 0 and [legacy_row(e) for e in back.examples] == [legacy_row(e) for e in examples]

    store.redact("F1", "<PERSON>, card <CREDIT_CARD> charged twice.")  # retention kept it for training
    store.erase("F3")  # a data subject's erasure
    back = read_heldout(adapter, settings)
    assert [e.uid for e in back.examples] == ["F2"]
    assert (back.changed, back.missing) == (["F1"], ["F3"]), "never used with a text other than held out"


def _legacy_adapter(tmp_path: Path, data: Path, held: list[Example]) -> Path:
    """An adapter folder of the old format: the held-out text in heldout.jsonl."""
    adapter = tmp_path / "old-adapter"
    adapter.mkdir()
    cfg = load_config(None, {"data.files": [str(data)], "data.feedback": False})
    manifest = {
        "name": "old-adapter",
        "kind": "lora",
        "base_model": {"path": "models/base/x"},
        "prompt_version": "classify/v2",
        "taxonomy": "tickets@1",
        "config": cfg.to_dict(),
        "data": {"sources": [{"path": str(data)}]},
        "adapter_files": {},
    }
    (adapter / "manifest.json").write_text(json.dumps(manifest))
    with open(adapter / LEGACY_FILE, "w", encoding="utf-8") as fh:
        for ex in held:
            fh.write(json.dumps(legacy_row(ex), ensure_ascii=False) + "\n")
    return adapter


def test_convert_keeps_exactly_the_old_rows(tmp_path: Path, tax) -> None:
    data = _csv(tmp_path / "train.csv", BODIES)
    examples, _ = read_examples(data, tax, label_sources=["reviewed"])
    adapter = _legacy_adapter(tmp_path, data, [examples[2], examples[0]])
    old = (adapter / LEGACY_FILE).read_text()
    assert read_heldout(adapter).examples[0].uid == "T3"  # the old format still reads (with a warning)
    assert convert(adapter) == {"rows": 2, "feedback_rows": 0}
    assert not (adapter / LEGACY_FILE).exists()
    back = read_heldout(adapter)
    assert [json.dumps(legacy_row(e), ensure_ascii=False) for e in back.examples] == old.splitlines()


def test_convert_refuses_a_row_its_sources_no_longer_hold(tmp_path: Path, tax) -> None:
    data = _csv(tmp_path / "train.csv", BODIES)
    examples, _ = read_examples(data, tax, label_sources=["reviewed"])
    examples[1].answer["category"] = "Technical"  # the split held another label than the file has now
    adapter = _legacy_adapter(tmp_path, data, examples)
    with pytest.raises(DataError, match="1 row\\(s\\) not found unchanged in their sources \\(first: T2\\)"):
        convert(adapter)
    assert (adapter / LEGACY_FILE).is_file() and not (adapter / HELDOUT_FILE).exists()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_adapters_resolve_every_held_out_row(name: str) -> None:
    adapter = ROOT / "models" / "adapters" / name
    manifest = json.loads((adapter / "manifest.json").read_text())
    assert not (adapter / LEGACY_FILE).exists() and HELDOUT_FILE not in manifest["adapter_files"]
    back = read_heldout(adapter)
    assert back.skipped == 0 and len(back.examples) == manifest["data"]["heldout_rows"]
    assert len({e.uid for e in back.examples}) == len(back.examples)


def test_shipped_held_out_tickets_are_the_fixed_split() -> None:
    """tickets-smollm2-v1 defined data/tickets/heldout_ids.txt, which v2 and every recipe hold out."""
    fixed = set((ROOT / "data/tickets/heldout_ids.txt").read_text().split())
    for name in ("tickets-smollm2-v1", "tickets-smollm2-v2"):
        rows = json.loads((ROOT / "models/adapters" / name / HELDOUT_FILE).read_text())["rows"]
        assert {r["uid"] for r in rows} == fixed


def test_a_copied_adapter_folder_still_resolves(tmp_path: Path) -> None:
    """Sources are project-relative, so the split does not depend on where the adapter folder lives."""
    dst = tmp_path / "copy"
    shutil.copytree(ROOT / "models/adapters/banking77-smollm2-v1", dst)
    assert read_heldout(dst).summary()["resolved"] == 499
