"""Training artefacts carry no ticket text: no file under models/ that git tracks (or would add) holds a
piece of a ticket from the shipped data sets. Held-out splits are stored by id + hash (heldout.json)."""

from __future__ import annotations

import csv
import json
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

WIDTH = 32  # chunk length; a copied text of 2*WIDTH-1 characters or more holds a whole chunk
SHORTEST = 24  # texts shorter than WIDTH (Banking77, CLINC150 queries) are matched whole from this length
TEXT_COLUMNS = ("subject", "body", "text", "previous_interactions")


def _texts() -> Iterator[str]:
    for path in sorted((ROOT / "data").rglob("*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                for col in TEXT_COLUMNS:
                    value = row.get(col) or ""
                    if col == "previous_interactions" and value.startswith("["):
                        yield from (str(turn) for turn in json.loads(value))
                    else:
                        yield value
    for path in sorted((ROOT / "data").rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield str(json.loads(line).get("text") or "")


@cache
def ticket_chunks() -> frozenset[str]:
    chunks: set[str] = set()
    for text in _texts():
        if len(text) < WIDTH:
            if len(text) >= SHORTEST:
                chunks.add(text)
            continue
        chunks.update(text[i : i + WIDTH] for i in range(0, len(text) - WIDTH + 1, WIDTH))
    return frozenset(chunks)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _vocabulary_text(vocab: dict[str, dict[str, int]]) -> str:
    """A label head's TF-IDF vocabulary holds features, not passages: word 1-2-grams and char 2-5-grams
    seen in at least 2 training tickets (server.heads.text, min_df=2). Checked to be exactly that, its
    terms are left out of the scan (a 32-letter German compound pair is a term, not a copied ticket)."""
    assert set(vocab) == {"word", "char"}
    assert all(len(term.split()) <= 2 for term in vocab["word"]), "a vocabulary term longer than a bigram"
    assert all(len(term) <= 5 for term in vocab["char"]), "a char n-gram longer than 5"
    return ""


def readable_text(path: Path) -> str:
    """The text a file carries, JSON strings decoded (escapes would hide a copied ticket)."""
    data = path.read_bytes()
    if path.suffix == ".safetensors":  # tensors are numbers; text can only sit in the JSON header
        size = int.from_bytes(data[:8], "little")
        return "\x00".join(_strings(json.loads(data[8 : 8 + size])))
    text = data.decode("utf-8", errors="replace")
    if path.name == "head_vocabulary.json":
        return _vocabulary_text(json.loads(text))
    if path.suffix == ".json":
        return "\x00".join(_strings(json.loads(text)))
    if path.suffix == ".jsonl":
        return "\x00".join(s for line in text.splitlines() if line.strip() for s in _strings(json.loads(line)))
    return text


def leaks(text: str, chunks: frozenset[str]) -> list[str]:
    lengths = sorted({len(c) for c in chunks})
    found = []
    for n in lengths:
        for i in range(len(text) - n + 1):
            if text[i : i + n] in chunks:
                found.append(text[i : i + n])
                break
    return found


def model_files() -> list[Path]:
    """Tracked files under models/, and untracked ones git would add (not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "models"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / p for p in out if (ROOT / p).is_file()]


def test_the_scan_finds_a_copied_ticket(tmp_path: Path) -> None:
    with open(ROOT / "data/tickets/train.csv", newline="", encoding="utf-8") as fh:
        body = next(csv.DictReader(fh))["body"]
    banking = (ROOT / "data/banking77/train.csv").read_text(encoding="utf-8").splitlines()[1]
    short = next(csv.reader([banking]))[0]
    assert SHORTEST <= len(short) < WIDTH or len(short) >= WIDTH
    for i, content in enumerate(
        [
            json.dumps({"rows": [{"body": body}]}),  # escaped newlines and quotes: decoded before the scan
            "x" * 7 + body[40 : 40 + 2 * WIDTH] + "y",  # a piece, at any offset
            json.dumps([short], ensure_ascii=True),
        ]
    ):
        f = tmp_path / f"leak{i}.json"
        f.write_text(content if content.startswith(("{", "[")) else json.dumps(content))
        assert leaks(readable_text(f), ticket_chunks()), content[:60]


def test_no_file_under_models_holds_ticket_text() -> None:
    files = model_files()
    assert any(p.name == "heldout.json" for p in files), "the shipped adapters' held-out splits are scanned too"
    chunks = ticket_chunks()
    assert len(chunks) > 30_000
    found = {str(p.relative_to(ROOT)): hits[:3] for p in files if (hits := leaks(readable_text(p), chunks))}
    assert not found, f"ticket text in training artefacts: {found}"
