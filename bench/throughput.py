"""Throughput benchmark: the naive way (Outlines + transformers, fp32, one ticket at a time, full JSON)
against the server's engine at concurrency 1, 8 and 32, on the same tickets, model and adapter,
in one process. Prints one JSON line (progress goes to stderr).

    .venv/bin/python bench/throughput.py [--n 64] [--n-c1 16] [--config FILE] [--out FILE]

`--n-c1` bounds the concurrency-1 run (it is a latency measurement and the slowest part after
the baseline); the label agreement of each run is computed on the tickets both runs saw.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.config import load_settings  # noqa: E402
from server.engines.base import EngineOutput  # noqa: E402
from server.engines.batcher import Batcher, static_batches  # noqa: E402
from server.engines.embedded.engine import BatchRunner, TransformersEngine  # noqa: E402
from server.engines.loading import load_model, set_torch_threads  # noqa: E402
from server.engines.outlines.reference import OutlinesReference  # noqa: E402
from server.prompts import TicketInput  # noqa: E402
from server.registry import resolve_adapter  # noqa: E402
from server.taxonomy import load_taxonomy  # noqa: E402

FIELDS = ("category", "priority", "sentiment")


def sample(path: Path, n: int, seed: int = 0) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    random.Random(seed).shuffle(rows)
    return rows[:n]


def labels(out: Any) -> dict[str, str | None]:
    if not isinstance(out, EngineOutput):
        return {f: None for f in FIELDS}
    return {f: out.label(f) for f in FIELDS}


def summarise(
    name: str, outs: list[Any], lat_s: list[float], wall_s: float, rows: list[dict[str, str]]
) -> dict[str, Any]:
    preds = [labels(o) for o in outs]
    acc = {f: round(float(np.mean([p[f] == r[f] for p, r in zip(preds, rows)])), 4) for f in FIELDS}
    lat = np.array(lat_s) * 1000
    return {
        "run": name,
        "n": len(outs),
        "tickets_per_s": round(len(outs) / wall_s, 4),
        "wall_s": round(wall_s, 1),
        "latency_ms": {
            "p50": round(float(np.percentile(lat, 50)), 1),
            "p95": round(float(np.percentile(lat, 95)), 1),
            "p99": round(float(np.percentile(lat, 99)), 1),
        },
        "accuracy": acc,
        "invalid_json": sum(1 for o in outs if not isinstance(o, EngineOutput)),
        "completion_tokens_mean": round(
            float(np.mean([o.completion_tokens for o in outs if isinstance(o, EngineOutput)] or [0])), 1
        ),
    }


def agreement(a: list[Any], b: list[Any]) -> dict[str, float]:
    n = min(len(a), len(b))
    la, lb = [labels(x) for x in a[:n]], [labels(x) for x in b[:n]]
    per = {f: round(float(np.mean([x[f] == y[f] for x, y in zip(la, lb)])), 4) for f in FIELDS}
    per["all_fields"] = round(float(np.mean([x == y for x, y in zip(la, lb)])), 4)
    per["mean"] = round(float(np.mean([per[f] for f in FIELDS])), 4)
    return per


def run_naive(ref: OutlinesReference, tickets: list[TicketInput]) -> tuple[list[Any], list[float], float]:
    outs, lat = [], []
    ref.run_one(tickets[0])  # warm-up (Outlines compiles its mask kernel on first use)
    started = time.perf_counter()
    for t in tqdm(tickets, desc="naive outlines fp32", file=sys.stderr):
        t0 = time.perf_counter()
        outs.append(ref.run_one(t))
        lat.append(time.perf_counter() - t0)
    return outs, lat, time.perf_counter() - started


async def run_engine(
    classify: Callable[[list[TicketInput]], Awaitable[list[Any]]],
    tickets: list[TicketInput],
    concurrency: int,
    label: str,
) -> tuple[list[Any], list[float], float]:
    outs: list[Any] = [None] * len(tickets)
    lat: list[float] = [0.0] * len(tickets)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(tickets)):
        queue.put_nowait(i)
    bar = tqdm(total=len(tickets), desc=label, file=sys.stderr)

    async def client() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t0 = time.perf_counter()
            (outs[i],) = await classify([tickets[i]])
            lat[i] = time.perf_counter() - t0
            bar.update(1)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    bar.close()
    return outs, lat, time.perf_counter() - started


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    settings = load_settings(args.config)
    taxonomy = load_taxonomy(settings.taxonomy)
    rows = sample(Path(args.data), args.n)
    tickets = [TicketInput(r["subject"], r["body"]) for r in rows]
    adapter = resolve_adapter(settings.model)  # the served model: base + the registry's active adapter
    adapter_path = adapter.path if adapter else None
    set_torch_threads(settings.model)  # what the server and open_runner do before loading
    model, tokenizer, dtype = load_model(settings.model, adapter_path=adapter_path)
    naive_model = model
    if dtype != torch.float32:
        naive_model, _, _ = load_model(settings.model, adapter_path=adapter_path, dtype=torch.float32)
    result: dict[str, Any] = {
        "machine": {"threads": torch.get_num_threads(), "engine_dtype": str(dtype).removeprefix("torch.")},
        "model": {"base": settings.model.base, "adapter": adapter.name if adapter else None},
        "data": str(args.data),
        "n": len(rows),
    }
    runs: dict[str, Any] = {}
    outputs: dict[str, list[Any]] = {}

    runner = BatchRunner(settings, taxonomy, model=model, tokenizer=tokenizer, dtype=dtype, adapter=adapter)
    for c in (32, 8, 1):
        engine = TransformersEngine(settings.variant(engine={"max_batch_size": max(c, 1)}), taxonomy, runner=runner)
        await engine.start()
        subset = tickets if c > 1 else tickets[: args.n_c1]
        outs, lat, wall = await run_engine(engine.classify, subset, c, f"engine c={c}")
        await engine.stop()
        runs[f"engine_c{c}"] = summarise(f"engine_c{c}", outs, lat, wall, rows)
        outputs[f"engine_c{c}"] = outs
    if args.static:
        # The same engine with static batches (a batch starts when the previous one has fully finished):
        # the measurement before continuous batching, kept to show what it buys.
        static: Batcher[Any, Any] = Batcher(
            static_batches(runner.run, 32),
            max_batch=32,
            wait_ms=settings.engine.batch_wait_ms,
            max_queue=settings.engine.max_queue,
        )
        static.start()
        outs, lat, wall = await run_engine(static.submit, tickets, 32, "static batches c=32")
        await static.stop()
        runs["engine_c32_static_batches"] = summarise("engine_c32_static_batches", outs, lat, wall, rows)
        outputs["engine_c32_static_batches"] = outs

    ref = OutlinesReference(settings, taxonomy, model=naive_model, tokenizer=tokenizer)
    outs, lat, wall = run_naive(ref, tickets)
    runs["naive"] = summarise("naive", outs, lat, wall, rows)
    outputs["naive"] = outs

    result["runs"] = runs
    result["label_agreement_vs_naive"] = {k: agreement(outputs["naive"], v) for k, v in outputs.items() if k != "naive"}
    result["speedup_vs_naive"] = round(runs["engine_c32"]["tickets_per_s"] / runs["naive"]["tickets_per_s"], 2)
    result["tickets_per_s"] = {k: v["tickets_per_s"] for k, v in runs.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--n-c1", type=int, default=16)
    parser.add_argument("--data", default=str(ROOT / "data" / "tickets" / "golden.csv"))
    parser.add_argument("--config", default=None)
    parser.add_argument("--out", default=None, help="Also write the JSON here")
    parser.add_argument(
        "--static",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Also run c=32 with static batches (the measurement before continuous batching)",
    )
    args = parser.parse_args()
    result = asyncio.run(main_async(args))
    line = json.dumps(result)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
