"""`triage batch` single-process against `triage batch --ray local` (1 and 2 actors) on the same N golden
tickets, settings and concurrency. Prints one JSON line (progress to stderr).

    .venv/bin/python bench/batch_ray.py [--n 16] [--concurrency 8] [--actors 1 2] [--config FILE] [--out FILE]

Every run goes through server.bulk.run_records into a fresh output, as the CLI does. `wall_s` is the whole
job: for single-process the model load plus the job, for Ray the Ray start, the actors' model loads and
the job. `first_record_s` is when the first answer reached the journal, so `wall_s - first_record_s`
is roughly the steady part. Each run uses all the cores: one actor gets every CPU (and as many torch
threads), two split them. `labels_agree` is the share of tickets whose labels match the single-process run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput import sample  # noqa: E402

from server.bulk import BulkTicket, Classify, open_classifier, read_tickets, run_records  # noqa: E402
from server.bulk_ray import RayPlan, ray_classifier  # noqa: E402
from server.config import Settings, load_settings  # noqa: E402


def labels(rec: dict[str, Any]) -> tuple[Any, ...]:
    return rec.get("category"), rec.get("priority"), (rec.get("extracted_info") or {}).get("sentiment")


def timed(name: str, tickets: list[BulkTicket], out: Path, make: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    start = time.perf_counter()
    classify: Classify = make()
    loaded = time.perf_counter() - start
    stamps: list[float] = []

    def progress(done: int, total: int) -> None:
        stamps.append(time.perf_counter() - start)
        print(f"{name}: {done}/{total} at {stamps[-1]:.1f}s", file=sys.stderr)

    summary = run_records(tickets, out, classify, progress=progress)
    wall = time.perf_counter() - start
    records = {r["ticket_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    return {
        "run": name,
        "n": summary.classified + summary.failed,
        "failed": summary.failed,
        "wall_s": round(wall, 1),
        "load_s": round(loaded, 1),  # single-process only: Ray loads inside the job
        "first_record_s": round(stamps[1], 1) if len(stamps) > 1 else None,  # stamps[0]: the skipped count
        "tickets_per_s": round(len(records) / wall, 3),
    }, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=8, help="Tickets in flight per engine (--concurrency)")
    parser.add_argument("--actors", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--data", default=str(ROOT / "data" / "tickets" / "golden.csv"))
    parser.add_argument("--config", default=None)
    parser.add_argument("--out", default=None, help="Also write the JSON here")
    args = parser.parse_args()

    settings: Settings = load_settings(args.config)
    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="batch-ray-"))
    src = tmp / "in.csv"
    with src.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["ticket_id", "subject", "body"])
        w.writeheader()
        w.writerows({k: r[k] for k in ("ticket_id", "subject", "body")} for r in sample(Path(args.data), args.n))
    tickets = read_tickets(src)

    runs: list[dict[str, Any]] = []
    single, base = timed("single", tickets, tmp / "single.jsonl", lambda: open_classifier(settings, args.concurrency))
    runs.append(single)
    for k in args.actors:
        plan = RayPlan("local", actors=k, cpus_per_actor=max(1, cores // k))
        run, got = timed(
            f"ray_{k}",
            tickets,
            tmp / f"ray_{k}.jsonl",
            lambda plan=plan: ray_classifier(settings, plan, args.concurrency),
        )
        run["labels_agree"] = round(sum(labels(got[t]) == labels(base[t]) for t in base) / len(base), 4)
        run["ratio_vs_single"] = round(run["tickets_per_s"] / single["tickets_per_s"], 3)
        runs.append(run)
    result = {
        "bench": "batch_ray",
        "n": len(tickets),
        "concurrency": args.concurrency,
        "cores": cores,
        "engine": settings.engine.kind,
        "runs": runs,
    }
    line = json.dumps(result)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
