"""Redaction recall and false positives on the planted PII sets, one JSON object for all sets.

    .venv/bin/python bench/redaction.py [--set NAME=FILE ...] [--show-missed]

Defaults: `testset` (data/pii/testset.jsonl, the recognisers' own set) and `holdout`
(data/pii/holdout_formats.jsonl, written before the recognisers were tuned for it). Per set:

- `recall`: an item counts as caught when its value no longer appears in the redacted text (the
  measure issue 11 uses);
- `recall_strict`: every letter and digit of the item's span was replaced by a placeholder
  (a name with only its surname redacted, or an address with only its postcode, is a miss here
  while it may pass `recall`);
- `false_positive_rate`: negatives (error codes, versions, products, amounts, dates, label
  words) that no longer appear verbatim, over all negatives.

Per-type numbers use the same two measures. The redactor runs with the default settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.config import RedactionSettings  # noqa: E402
from server.privacy import RedactionError, Redactor  # noqa: E402
from server.privacy.redact import PLACEHOLDER  # noqa: E402

DEFAULT_SETS = {
    "testset": ROOT / "data" / "pii" / "testset.jsonl",
    "holdout": ROOT / "data" / "pii" / "holdout_formats.jsonl",
}


@dataclass
class Miss:
    row: str
    type: str
    value: str


def load_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def redacted_spans(original: str, redacted: str, mapping: dict[str, str]) -> list[tuple[int, int]]:
    """Where in `original` each placeholder of `redacted` stands: literal text between
    placeholders is unchanged, so offsets follow from the mapped values' lengths."""
    spans = []
    shift = 0  # original offset minus redacted offset
    for m in PLACEHOLDER.finditer(redacted):
        value = mapping.get(m.group(0))
        if value is None:
            continue  # a placeholder-like string the customer wrote: literal text
        start = m.start() + shift
        if original[start : start + len(value)] != value:
            raise AssertionError("redacted text does not align with the original")
        spans.append((start, start + len(value)))
        shift += len(value) - len(m.group(0))
    return spans


def fully_covered(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> bool:
    return all(any(s <= i < e for s, e in spans) for i in range(start, end) if text[i].isalnum())


def ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def evaluate(redactor: Redactor, rows: list[dict[str, Any]]) -> tuple[dict[str, Any], list[Miss], list[Miss]]:
    items, caught, strict = Counter[str](), Counter[str](), Counter[str]()
    negatives, false_pos = Counter[str](), Counter[str]()
    missed: list[Miss] = []
    removed: list[Miss] = []
    errors = 0
    elapsed = 0.0
    for row in rows:
        text = row["text"]
        t0 = time.perf_counter()
        try:
            out = redactor.redact([text])
            redacted, spans = out.texts[0], redacted_spans(text, out.texts[0], out.mapping)
        except RedactionError:
            errors += 1  # nothing would be sent: no leak, but no recall either
            redacted, spans = text, []
        elapsed += time.perf_counter() - t0
        for it in row["items"]:
            items[it["type"]] += 1
            gone = it["value"] not in redacted
            whole = fully_covered(text, it["start"], it["end"], spans)
            caught[it["type"]] += gone
            strict[it["type"]] += whole
            if not (gone and whole):
                missed.append(Miss(row["id"], it["type"], it["value"]))
        for neg in row.get("negatives", []):
            negatives[neg["type"]] += 1
            if neg["value"] not in redacted:
                false_pos[neg["type"]] += 1
                removed.append(Miss(row["id"], neg["type"], neg["value"]))
    n = sum(items.values())
    report = {
        "texts": len(rows),
        "items": n,
        "recall": ratio(sum(caught.values()), n),
        "recall_strict": ratio(sum(strict.values()), n),
        "recall_per_type": {t: ratio(caught[t], items[t]) for t in sorted(items)},
        "recall_strict_per_type": {t: ratio(strict[t], items[t]) for t in sorted(items)},
        "items_per_type": dict(sorted(items.items())),
        "negatives": sum(negatives.values()),
        "false_positives": sum(false_pos.values()),
        "false_positive_rate": ratio(sum(false_pos.values()), sum(negatives.values())),
        "false_positives_per_type": {t: false_pos[t] for t in sorted(negatives)},
        "redaction_errors": errors,
        "ms_per_text": round(1000 * elapsed / max(len(rows), 1), 2),
    }
    return report, missed, removed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], metavar="NAME=FILE", help="a planted set (repeatable)")
    ap.add_argument("--show-missed", action="store_true", help="list misses and false positives on stderr")
    args = ap.parse_args()
    sets = dict(DEFAULT_SETS)
    if args.set:
        sets = {name: Path(path) for name, _, path in (s.partition("=") for s in args.set)}
    redactor = Redactor(RedactionSettings())
    out: dict[str, Any] = {}
    for name, path in sets.items():
        report, missed, removed = evaluate(redactor, load_rows(path))
        out[name] = report
        if args.show_missed:
            for m in missed:
                print(f"[{name}] missed {m.row} {m.type}: {m.value!r}", file=sys.stderr)
            for m in removed:
                print(f"[{name}] false positive {m.row} {m.type}: {m.value!r}", file=sys.stderr)
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
