"""Where tickets go at the configured thresholds: the share answered locally, after the local
re-review, and left for a human (or the hosted fallback, when enabled), with the accuracy of each
group, on a labelled CSV (default: the golden set). Prints one JSON line; progress to stderr.

    .venv/bin/python bench/routing_rates.py [--data data/tickets/golden.csv | --heldout] [--threshold 0.5]
        [--target 0.97] [--plot FILE.png]

`--target A` also prints the coverage/accuracy curve of every label field's calibrated confidence and the
per-field thresholds that keep accuracy >= A on what is answered locally (choose them on `--heldout`,
the fixed held-out tickets, never on the golden set), and the joint coverage at those thresholds;
`--plot` draws the curves.

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
from server.engines import open_batch_runner  # noqa: E402
from server.engines.base import EngineOutput, ReviewInput  # noqa: E402
from server.evaluation.data import read_labelled_csv, row_ticket  # noqa: E402
from server.results import label_of  # noqa: E402
from server.taxonomy import load_taxonomy  # noqa: E402


def value(output: dict, spec) -> str | None:
    return label_of(output, spec.name)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT / "data/tickets/golden.csv"))
    ap.add_argument("--threshold", type=float, default=None, help="default: routing.confidence_threshold")
    ap.add_argument("--config", default=None)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument(
        "--heldout",
        action="store_true",
        help="the fixed held-out tickets (data/tickets/heldout_ids.txt) instead of --data",
    )
    ap.add_argument(
        "--target",
        type=float,
        default=None,
        help="accuracy wanted on locally answered tickets: print curves and thresholds",
    )
    ap.add_argument("--plot", default=None)
    args = ap.parse_args()
    settings = load_settings(args.config)
    threshold = args.threshold if args.threshold is not None else settings.routing.confidence_threshold
    taxonomy = load_taxonomy(settings.taxonomy)
    if args.heldout:
        held = set((ROOT / "data/tickets/heldout_ids.txt").read_text().split())
        rows = [
            r
            for r in read_labelled_csv(ROOT / "data/tickets/train.csv", taxonomy, label_sources=["reviewed"])
            if r["ticket_id"] in held
        ]
        args.data = "heldout"
    else:
        rows = read_labelled_csv(Path(args.data), taxonomy)
    tickets = [row_ticket(r) for r in rows]
    runner = open_batch_runner(settings, taxonomy)
    runner.labels_only = True
    fields = [s for s in taxonomy.label_fields if s.name in rows[0]]

    def limit(name: str) -> float:
        return settings.routing.field_thresholds.get(name, threshold)

    def low(out) -> list[str]:
        return [
            s.name
            for s in fields
            if not isinstance(out, EngineOutput) or (out.confidence.get(s.name) or 0.0) < limit(s.name)
        ]

    def correct(out, row) -> dict[str, bool]:
        return {
            s.name: isinstance(out, EngineOutput) and value(out.output, s) == (row.get(s.name) or "").strip()
            for s in fields
        }

    t0 = time.perf_counter()
    first = []
    for i in range(0, len(tickets), args.batch):
        first += runner.run(tickets[i : i + args.batch])
        print(f"first pass {len(first)}/{len(tickets)}", file=sys.stderr)
    onward = [i for i, out in enumerate(first) if low(out)]
    reviewed = {}
    if runner.review_renderer is not None and settings.routing.review:
        items = [
            ReviewInput(tickets[i], {s.name: value(first[i].output, s) for s in fields}, tuple(low(first[i])))
            for i in onward
        ]
        outs = []
        for j in range(0, len(items), args.batch):
            outs += runner.run(items[j : j + args.batch])
        reviewed = dict(zip(onward, outs))
    routes = {"local": [], "local+review": [], "human_or_hosted": []}
    for i, _ in enumerate(first):
        if i not in onward:
            routes["local"].append(i)
        elif i in reviewed and isinstance(reviewed[i], EngineOutput) and not low(reviewed[i]):
            routes["local+review"].append(i)
        else:
            routes["human_or_hosted"].append(i)

    def acc(idx: list[int], outs) -> dict[str, float | None]:
        return {
            s.name: round(sum(correct(outs[i], rows[i])[s.name] for i in idx) / len(idx), 3) if idx else None
            for s in fields
        }

    final = {i: (reviewed[i] if i in routes["local+review"] else first[i]) for i in range(len(first))}
    curves = thresholds = None
    if args.target is not None:
        curves, thresholds = coverage_curves(first, rows, fields, args.target)
        if args.plot:
            plot_curves(
                curves,
                thresholds,
                args.target,
                args.plot,
                f"{runner.adapter.name if runner.adapter else 'base'} on {args.data}",
            )
    print(
        json.dumps(
            {
                "data": args.data,
                "n": len(rows),
                "threshold": threshold,
                "field_thresholds": settings.routing.field_thresholds,
                "adapter": runner.adapter.name if runner.adapter else None,
                "prompt": runner.prompt_version,
                "temperatures": runner.temperatures,
                "review_prompt": runner.review_renderer.prompt.id if runner.review_renderer else None,
                "share": {k: round(len(v) / len(rows), 3) for k, v in routes.items()},
                "low_fields_first_pass": {
                    s.name: sum(s.name in low(first[i]) for i in range(len(first))) for s in fields
                },
                "accuracy_first_pass": {"local": acc(routes["local"], first), "sent_onward": acc(onward, first)},
                "accuracy_after_review": {
                    "local+review": acc(routes["local+review"], final),
                    "reviewed_but_still_low(first pass)": acc(routes["human_or_hosted"], first),
                },
                "seconds": round(time.perf_counter() - t0, 1),
                **({"target": args.target, "thresholds_for_target": thresholds, "curves": curves} if curves else {}),
            }
        )
    )


def coverage_curves(outs: list, rows: list[dict], fields: list, target: float) -> tuple[dict, dict]:
    """Per field: for each threshold t, the share of tickets with confidence >= t (coverage) and their
    accuracy; the smallest t whose accuracy reaches `target`; then the joint coverage and accuracy of
    tickets whose every field clears its threshold (what a router would answer locally)."""
    conf = {
        s.name: [out.confidence.get(s.name) or 0.0 if isinstance(out, EngineOutput) else 0.0 for out in outs]
        for s in fields
    }
    ok = {
        s.name: [
            isinstance(out, EngineOutput) and value(out.output, s) == (row.get(s.name) or "").strip()
            for out, row in zip(outs, rows)
        ]
        for s in fields
    }
    curves: dict = {}
    chosen: dict = {}
    for s in fields:
        pts = []
        for t in [i / 100 for i in range(0, 100)]:
            kept = [k for c, k in zip(conf[s.name], ok[s.name]) if c >= t]
            pts.append(
                {
                    "threshold": t,
                    "coverage": round(len(kept) / len(rows), 4),
                    "accuracy": round(sum(kept) / len(kept), 4) if kept else None,
                }
            )
        curves[s.name] = pts
        good = [p for p in pts if p["accuracy"] is not None and p["accuracy"] >= target]
        chosen[s.name] = good[0]["threshold"] if good else None
    usable = {k: v for k, v in chosen.items() if v is not None}
    local = [i for i in range(len(rows)) if all(conf[k][i] >= v for k, v in usable.items())]
    chosen["_joint"] = {
        "coverage": round(len(local) / len(rows), 4),
        "accuracy": {
            s.name: round(sum(ok[s.name][i] for i in local) / len(local), 4) if local else None for s in fields
        },
        "unreachable": [k for k, v in chosen.items() if v is None and not k.startswith("_")],
    }
    return curves, chosen


def plot_curves(curves: dict, thresholds: dict, target: float, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.add_subplot()
    for name, pts in curves.items():
        xs = [p["coverage"] for p in pts if p["accuracy"] is not None]
        ys = [p["accuracy"] for p in pts if p["accuracy"] is not None]
        line = ax.plot(xs, ys, label=f"{name} (t={thresholds.get(name)})")[0]
        t = thresholds.get(name)
        if t is not None:
            p = next(p for p in pts if p["threshold"] == t)
            ax.plot([p["coverage"]], [p["accuracy"]], "o", color=line.get_color())
    ax.axhline(target, color="grey", linestyle="--", linewidth=0.8, label=f"target {target}")
    ax.set_xlabel("coverage (share of tickets at or above the confidence threshold)")
    ax.set_ylabel("accuracy of those tickets")
    ax.set_title(title)
    ax.set_xlim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
