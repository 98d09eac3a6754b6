"""Where tickets go at the configured thresholds: the share answered locally, after the local
re-review, and left for a human (or the hosted fallback, when enabled), with the accuracy of each
group, on a labelled CSV (default: the golden set). Prints one JSON line; progress to stderr.

    .venv/bin/python bench/routing_rates.py [--data data/tickets/golden.csv] [--threshold 0.5]

It runs the served model (registry adapter, calibrated temperatures) on the labels only: the labels
and confidences are the ones a full JSON run gives (labels precede text), at a fraction of the time.
The first pass's accuracy on the tickets routed onward is the baseline the re-review is compared to.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.config import load_settings  # noqa: E402
from server.engines.base import EngineOutput, ReviewInput  # noqa: E402
from server.engines.transformers_engine import BatchRunner  # noqa: E402
from server.evaluation.run import read_labelled_csv  # noqa: E402
from server.prompts import TicketInput  # noqa: E402
from server.taxonomy import load_taxonomy  # noqa: E402


def value(output: dict, spec) -> str | None:
    src = output.get("extracted_info", {}) if spec.in_extracted_info else output
    return src.get(spec.name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "data/tickets/golden.csv"))
    ap.add_argument("--threshold", type=float, default=None, help="default: routing.confidence_threshold")
    ap.add_argument("--config", default=None)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    settings = load_settings(args.config)
    threshold = args.threshold if args.threshold is not None else settings.routing.confidence_threshold
    taxonomy = load_taxonomy(settings.taxonomy)
    rows = read_labelled_csv(Path(args.data), taxonomy)
    tickets = [TicketInput(r.get("subject", ""), r["body"]) for r in rows]
    runner = BatchRunner(settings, taxonomy)
    runner.labels_only = True
    fields = [s for s in taxonomy.label_fields if s.name in rows[0]]

    def limit(name: str) -> float:
        return settings.routing.field_thresholds.get(name, threshold)

    def low(out) -> list[str]:
        return [s.name for s in fields if not isinstance(out, EngineOutput) or (out.confidence.get(s.name) or 0.0) < limit(s.name)]

    def correct(out, row) -> dict[str, bool]:
        return {s.name: isinstance(out, EngineOutput) and value(out.output, s) == (row.get(s.name) or "").strip() for s in fields}

    t0 = time.perf_counter()
    first = []
    for i in range(0, len(tickets), args.batch):
        first += runner.run(tickets[i : i + args.batch])
        print(f"first pass {len(first)}/{len(tickets)}", file=sys.stderr)
    onward = [i for i, out in enumerate(first) if low(out)]
    reviewed = {}
    if runner.review_renderer is not None and settings.routing.review:
        items = [ReviewInput(tickets[i], {s.name: value(first[i].output, s) for s in fields}, tuple(low(first[i]))) for i in onward]
        outs = []
        for j in range(0, len(items), args.batch):
            outs += runner.run(items[j : j + args.batch])
        reviewed = dict(zip(onward, outs))
    routes = {"local": [], "local+review": [], "human_or_hosted": []}
    for i, out in enumerate(first):
        if i not in onward:
            routes["local"].append(i)
        elif i in reviewed and isinstance(reviewed[i], EngineOutput) and not low(reviewed[i]):
            routes["local+review"].append(i)
        else:
            routes["human_or_hosted"].append(i)

    def acc(idx: list[int], outs) -> dict[str, float | None]:
        return {s.name: round(sum(correct(outs[i], rows[i])[s.name] for i in idx) / len(idx), 3) if idx else None for s in fields}

    final = {i: (reviewed[i] if i in routes["local+review"] else first[i]) for i in range(len(first))}
    print(json.dumps({
        "data": args.data, "n": len(rows), "threshold": threshold, "field_thresholds": settings.routing.field_thresholds,
        "adapter": runner.adapter.name if runner.adapter else None, "prompt": runner.prompt_version, "temperatures": runner.temperatures,
        "review_prompt": runner.review_renderer.prompt.id if runner.review_renderer else None,
        "share": {k: round(len(v) / len(rows), 3) for k, v in routes.items()},
        "low_fields_first_pass": {s.name: sum(s.name in low(first[i]) for i in range(len(first))) for s in fields},
        "accuracy_first_pass": {"local": acc(routes["local"], first), "sent_onward": acc(onward, first)},
        "accuracy_after_review": {"local+review": acc(routes["local+review"], final), "reviewed_but_still_low(first pass)": acc(routes["human_or_hosted"], first)},
        "seconds": round(time.perf_counter() - t0, 1),
    }))


if __name__ == "__main__":
    main()
