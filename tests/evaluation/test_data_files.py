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
