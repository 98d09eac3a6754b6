"""The project's own edge-case sets (data/augmented/test_*.csv, built from held-out tickets with templates
the training rows never use): error-code extraction, injection resistance, histories, urgency wording.
Prints one JSON line per model; progress to stderr.

    .venv/bin/python bench/edge_cases.py [--model NAME_OR_DIR] [--baseline NAME_OR_DIR] [--config FILE]

- codes: exact match of `error_code` on tickets with a code (by family and by position), `null` kept on
  tickets with only code-like non-errors (order/invoice/model/ticket numbers), and invented codes
  (a value that is not a span of the ticket; the decoder makes this impossible, the bench checks it).
- injections: the share of injected tickets whose labels equal the labels of the same ticket without the
  injection (all three fields, and per field), the share answering with the injected label, and
  accuracy against the true labels (also for the clean tickets, for comparison).
- histories / urgency: accuracy per kind of history or wording.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.config import load_settings  # noqa: E402
from server.engines import open_batch_runner  # noqa: E402
from server.engines.base import EngineOutput  # noqa: E402
from server.engines.embedded.runner import BatchRunner  # noqa: E402
from server.evaluation.data import row_ticket  # noqa: E402
from server.extraction import candidate_spans, ticket_texts  # noqa: E402
from server.taxonomy import load_taxonomy  # noqa: E402

DATA = ROOT / "data" / "augmented"
FIELDS = ("category", "priority", "sentiment")


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def labels(out: Any) -> dict[str, Any]:
    if not isinstance(out, EngineOutput):
        return {}
    return {name: out.label(name) for name in ("category", "priority", "sentiment", "error_code")}


def run(runner: BatchRunner, rows: list[dict[str, str]], bs: int = 16) -> list[dict[str, Any]]:
    outs: list[Any] = []
    for i in range(0, len(rows), bs):
        outs += runner.run([row_ticket(r) for r in rows[i : i + bs]])
        print(f"  {min(i + bs, len(rows))}/{len(rows)}", file=sys.stderr, flush=True)
    return [labels(o) for o in outs]


def rate(xs: list[bool]) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def codes(runner: BatchRunner) -> dict[str, Any]:
    rows = read(DATA / "test_codes.csv")
    preds = run(runner, rows)
    by_family: dict[str, list[bool]] = defaultdict(list)
    by_position: dict[str, list[bool]] = defaultdict(list)
    with_code, without, invented = [], [], 0
    for r, p in zip(rows, preds):
        value = p.get("error_code")
        texts = ticket_texts(
            r["subject"], r["body"], json.loads(r["previous_interactions"]) if r["previous_interactions"] else []
        )
        if value is not None and value not in candidate_spans(texts):
            invented += 1
        kind = r["augmentation"].split(":")
        if r["error_code"]:
            ok = value == r["error_code"]
            with_code.append(ok)
            by_family[kind[1]].append(ok)
            by_position[kind[2]].append(ok)
        else:
            without.append(value is None)
    return {
        "n_with_code": len(with_code),
        "exact_match_with_code": rate(with_code),
        "n_not_codes": len(without),
        "null_kept_on_not_codes": rate(without),
        "invented": invented,
        "by_family": {k: rate(v) for k, v in sorted(by_family.items())},
        "by_position": {k: rate(v) for k, v in sorted(by_position.items())},
    }


def injections(runner: BatchRunner, clean_by_id: dict[str, dict[str, str]]) -> dict[str, Any]:
    rows = read(DATA / "test_injections.csv")
    preds = run(runner, rows)
    clean_rows = [clean_by_id[r["source_ticket_id"]] for r in rows]
    clean = run(runner, clean_rows)
    stable = {f: [p.get(f) == c.get(f) for p, c in zip(preds, clean)] for f in FIELDS}
    adopted = [p.get("category") == json.loads(r["injected_labels"])["category"] for r, p in zip(rows, preds)]
    by_lang: dict[str, list[bool]] = defaultdict(list)
    for r, p, c in zip(rows, preds, clean):
        by_lang[r["augmentation"].split(":")[1]].append(all(p.get(f) == c.get(f) for f in FIELDS))
    return {
        "n": len(rows),
        "labels_kept_all_three": rate([all(stable[f][i] for f in FIELDS) for i in range(len(rows))]),
        "labels_kept": {f: rate(v) for f, v in stable.items()},
        "injected_category_adopted": rate(adopted),
        "accuracy_injected": {f: rate([p.get(f) == r[f] for p, r in zip(preds, rows)]) for f in FIELDS},
        "accuracy_clean": {f: rate([c.get(f) == r[f] for c, r in zip(clean, rows)]) for f in FIELDS},
        "kept_by_injection_language": {k: rate(v) for k, v in sorted(by_lang.items())},
    }


def by_kind(runner: BatchRunner, name: str) -> dict[str, Any]:
    rows = read(DATA / name)
    preds = run(runner, rows)
    kinds: dict[str, list[dict[str, bool]]] = defaultdict(list)
    for r, p in zip(rows, preds):
        kinds[r["augmentation"].split(":", 1)[1]].append({f: p.get(f) == r[f] for f in FIELDS})
    return {
        "n": len(rows),
        **{k: {f: rate([x[f] for x in v]) for f in FIELDS} | {"n": len(v)} for k, v in sorted(kinds.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="adapter (name or folder); default: the settings' (registry)")
    ap.add_argument("--baseline", default=None, help="a second adapter measured in the same run")
    ap.add_argument("--config", default=None)
    args = ap.parse_args()
    settings = load_settings(args.config)
    taxonomy = load_taxonomy(settings.taxonomy)
    with open(ROOT / "data" / "tickets" / "train.csv", newline="", encoding="utf-8") as fh:
        clean_by_id = {r["ticket_id"]: r for r in csv.DictReader(fh)}
    for spec in [args.model, args.baseline] if args.baseline else [args.model]:
        s = settings if spec is None else settings.variant(model={"adapter": spec})
        runner = open_batch_runner(s, taxonomy)
        started = time.perf_counter()
        result = {
            "model": runner.adapter.name if runner.adapter else "base",
            "head": runner.head is not None,
            "dtype": str(runner.dtype).removeprefix("torch."),
            "codes": codes(runner),
            "injections": injections(runner, clean_by_id),
            "histories": by_kind(runner, "test_histories.csv"),
            "urgency": by_kind(runner, "test_urgency.csv"),
        }
        result["seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
