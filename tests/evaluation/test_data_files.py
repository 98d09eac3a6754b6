"""The shipped data must stay what the docs say it is: evaluation numbers are meaningless otherwise."""

from __future__ import annotations

import csv
import json
import runpy
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "data"
TICKETS = DATA / "tickets"
CATEGORIES = {"Sales", "Technical", "Billing", "General"}
PRIORITIES = {"Low", "Medium", "High", "Urgent"}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def golden() -> list[dict[str, str]]:
    return _rows(TICKETS / "golden.csv")


@pytest.fixture(scope="module")
def train() -> list[dict[str, str]]:
    return _rows(TICKETS / "train.csv")


@pytest.fixture(scope="module")
def sample() -> list[dict[str, str]]:
    return _rows(TICKETS / "sample100.csv")


def test_golden_shape(golden: list[dict[str, str]]) -> None:
    assert len(golden) == 300
    assert {"subject", "body", "category", "priority", "sentiment", "language"} <= set(golden[0])
    assert len({r["ticket_id"] for r in golden}) == 300


def test_train_shape(train: list[dict[str, str]]) -> None:
    assert len(train) == 4320
    assert sum(r["label_source"] == "reviewed" for r in train) == 2400


def test_sample100(sample: list[dict[str, str]], train: list[dict[str, str]], golden: list[dict[str, str]]) -> None:
    assert len(sample) == 100
    assert all(r["label_source"] == "reviewed" for r in sample)
    assert list(sample[0]) == list(train[0])  # same columns, same order
    assert {r["category"] for r in sample} == CATEGORIES  # stratified: every category present
    ids = {r["ticket_id"] for r in sample}
    assert not ids & {r["ticket_id"] for r in golden}
    assert ids <= {r["ticket_id"] for r in train}


def test_sample100_is_reproducible() -> None:
    # run_path rather than import: leaves no __pycache__ inside data/
    build_sample = runpy.run_path(str(TICKETS / "make_sample100.py"), run_name="make_sample100")["build_sample"]
    with open(TICKETS / "sample100.csv", newline="", encoding="utf-8") as fh:
        assert fh.read() == build_sample()


def test_golden_and_train_disjoint(golden: list[dict[str, str]], train: list[dict[str, str]]) -> None:
    assert not {r["ticket_id"] for r in golden} & {r["ticket_id"] for r in train}


@pytest.mark.parametrize("name", ["golden.csv", "train.csv", "sample100.csv"])
def test_label_sets(name: str) -> None:
    rows = _rows(TICKETS / name)
    assert {r["category"] for r in rows} <= CATEGORIES
    assert {r["priority"] for r in rows} <= PRIORITIES


def test_banking77() -> None:
    labels = json.loads((DATA / "banking77" / "categories.json").read_text(encoding="utf-8"))
    assert len(labels) == 77
    for name, n in [("train.csv", 10003), ("test.csv", 3080)]:
        rows = _rows(DATA / "banking77" / name)
        assert len(rows) == n
        assert {r["category"] for r in rows} == set(labels)


def test_every_data_folder_has_licence_and_readme() -> None:
    folders = [p for p in DATA.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    assert {p.name for p in folders} >= {"tickets", "banking77"}
    for folder in folders:
        assert (folder / "LICENSE").is_file() and (folder / "LICENSE").stat().st_size > 0, folder
        assert (folder / "README.md").is_file(), folder
    assert "CC-BY-NC-4.0" in (TICKETS / "LICENSE").read_text(encoding="utf-8")
    assert "Tobias Bueck" in (TICKETS / "README.md").read_text(encoding="utf-8")


def test_augmented_rows_are_reproducible_and_never_touch_held_out_or_golden(
    tmp_path, golden, train, monkeypatch
) -> None:
    """build.py regenerates the committed files byte for byte; training rows come from training tickets
    only, test rows from held-out tickets only, and no row comes from the golden set."""
    aug = DATA / "augmented"
    committed = {p.name: p.read_bytes() for p in aug.glob("*.csv")}
    module = runpy.run_path(str(aug / "build.py"))
    monkeypatch.setitem(module["main"].__globals__, "HERE", tmp_path)
    module["main"]()
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.csv")} == committed
    held = set((TICKETS / "heldout_ids.txt").read_text().split())
    reviewed = {r["ticket_id"] for r in train if r["label_source"] == "reviewed"}
    golden_ids = {r["ticket_id"] for r in golden}
    train_rows = _rows(aug / "train_augmented.csv")
    assert {r["source_ticket_id"] for r in train_rows} <= reviewed - held
    for name in ("test_codes.csv", "test_injections.csv", "test_histories.csv", "test_urgency.csv"):
        assert {r["source_ticket_id"] for r in _rows(aug / name)} <= held, name
    assert not ({r["source_ticket_id"] for r in train_rows} & golden_ids)
    assert held <= reviewed and len(held) == 241


def test_clinc150() -> None:
    for name, n_in, n_oos in [("train.csv", 15000, 0), ("validation.csv", 3000, 100), ("test.csv", 4500, 1000)]:
        rows = _rows(DATA / "clinc150" / name)
        assert (
            len([r for r in rows if r["category"] != "oos"]) == n_in
            and len([r for r in rows if r["category"] == "oos"]) == n_oos
        )
    from server.taxonomy import load_taxonomy

    taxonomy = load_taxonomy("clinc150")
    assert {r["category"] for r in _rows(DATA / "clinc150" / "train.csv")} == set(taxonomy.field("category").labels)
    assert taxonomy.out_of_scope is not None and taxonomy.out_of_scope.label == "oos"
