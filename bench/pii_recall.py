"""PII recall of the Redactor on the synthetic test set (data/pii/testset.jsonl).

    .venv/bin/python bench/pii_recall.py [--testset FILE] [--config FILE]

Prints one JSON object on stdout (progress goes to stderr). An item counts as caught when its
value no longer appears anywhere in the redacted text; a negative (error code, version, product
name, amount, date, everyday phrase) counts as a false positive when it no longer appears
verbatim. "unplanned_redactions" counts replaced values that match no planted item: a rough
precision signal beyond the recorded negatives. Settings are the defaults unless --config
(a YAML file, as for the server) says otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.config import load_settings  # noqa: E402
from server.privacy import RedactionError, Redactor  # noqa: E402
from server.privacy.cards import find_card_numbers  # noqa: E402

DEFAULT_TESTSET = ROOT / "data" / "pii" / "testset.jsonl"


def load_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def evaluate(redactor: Redactor, rows: list[dict[str, Any]]) -> dict[str, Any]:
    items, caught = Counter[str](), Counter[str]()
    lang_items, lang_caught = Counter[str](), Counter[str]()
    negatives, false_pos = Counter[str](), Counter[str]()
    failures, leaked_cards, unplanned = 0, 0, 0
    missed: list[dict[str, str]] = []
    wrongly_removed: list[dict[str, str]] = []
    elapsed = 0.0
    for row in tqdm(rows, desc="redact", file=sys.stderr):
        start = time.perf_counter()
        try:
            out = redactor.redact([row["text"]])
        except RedactionError:
            failures += 1  # nothing would be sent: no leak, but no recall either
            out = None
        elapsed += time.perf_counter() - start
        redacted = out.texts[0] if out else ""
        for it in row["items"]:
            items[it["type"]] += 1
            lang_items[row["language"]] += 1
            if out is not None and it["value"] not in redacted:
                caught[it["type"]] += 1
                lang_caught[row["language"]] += 1
            elif out is not None:
                missed.append({"id": row["id"], "type": it["type"], "value": it["value"]})
        leaked_cards += len(find_card_numbers(redacted))
        for neg in row.get("negatives", []):
            negatives[neg["type"]] += 1
            if out is not None and neg["value"] not in redacted:
                false_pos[neg["type"]] += 1
                wrongly_removed.append({"id": row["id"], "type": neg["type"], "value": neg["value"]})
        if out is not None:
            values = [it["value"] for it in row["items"]]
            unplanned += sum(1 for v in out.mapping.values() if not any(v in x or x in v for x in values))
    n_items = sum(items.values())
    return {
        "texts": len(rows),
        "items": n_items,
        "recall": ratio(sum(caught.values()), n_items),
        "recall_per_type": {t: ratio(caught[t], items[t]) for t in sorted(items)},
        "items_per_type": dict(sorted(items.items())),
        "recall_per_language": {lang: ratio(lang_caught[lang], lang_items[lang]) for lang in sorted(lang_items)},
        "card_numbers_leaked": leaked_cards,
        "redaction_errors": failures,
        "negatives": sum(negatives.values()),
        "false_positives": sum(false_pos.values()),
        "false_positive_rate": ratio(sum(false_pos.values()), sum(negatives.values())),
        "false_positives_per_type": {t: false_pos[t] for t in sorted(negatives)},
        "unplanned_redactions": unplanned,
        "ms_per_text": round(1000 * elapsed / max(len(rows), 1), 2),
        "missed": missed,
        "wrongly_removed": wrongly_removed,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--testset", type=Path, default=DEFAULT_TESTSET)
    ap.add_argument("--config", type=Path, default=None, help="YAML settings file (redaction: ...)")
    ap.add_argument("--show-missed", action="store_true", help="list missed items and false positives on stderr")
    args = ap.parse_args()
    settings = load_settings(args.config).redaction
    t0 = time.perf_counter()
    redactor = Redactor(settings)
    print(f"redactor built in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    report = evaluate(redactor, load_rows(args.testset))
    report["spacy_model"] = settings.spacy_model
    missed, wrongly_removed = report.pop("missed"), report.pop("wrongly_removed")
    if args.show_missed:
        for m in missed:
            print(f"missed {m['id']} {m['type']}: {m['value']!r}", file=sys.stderr)
        for m in wrongly_removed:
            print(f"false positive {m['id']} {m['type']}: {m['value']!r}", file=sys.stderr)
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
