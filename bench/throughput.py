"""Throughput benchmark: the naive way (Outlines + transformers, one ticket at a time, full JSON) against
the server's engine on the same tickets, model, adapter and dtype, in one process: full JSON at
concurrency 32, 8 and 1, and labels-only (`fields` = the label fields: prefill + the label decisions,
no free text) at concurrency 32. Prints one JSON line (progress and the elapsed time go to stderr).

    .venv/bin/python bench/throughput.py [--n 64] [--n-naive 16] [--n-c1 8] [--config FILE] [--out FILE]

The naive loop costs seconds per ticket, so it runs on the first `--n-naive` tickets of the sample
(the engine runs see them all); the label agreement of each run with it is computed on the tickets
both saw, and labels-only is also compared with the engine's full run on every ticket. The naive loop
runs in the engine's dtype (agreement in the same dtype: a dtype change alone flips close calls).
`labels_only_profile` splits the labels-only run's engine time into admission (encode + prefill +
the first decision) and decode steps (the remaining label decisions).
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
from dataclasses import replace
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
    for t in tqdm(tickets, desc="naive outlines", file=sys.stderr):
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


class PhaseTimer:
    """Wall time the runner spends admitting tickets (encode + prefill + first decision) vs in decode
    steps, by wrapping the two methods of this runner instance (the class is untouched)."""

    def __init__(self, runner: BatchRunner) -> None:
        self.seconds = {"admit": 0.0, "steps": 0.0}
        self.calls = {"admit": 0, "steps": 0}
        for phase, attr in (("admit", "_admit"), ("steps", "_step")):
            setattr(runner, attr, self._timed(phase, getattr(runner, attr)))
        self.runner = runner

    def _timed(self, phase: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - t0
                self.calls[phase] += 1

        return wrapper

    def reset(self) -> None:
        self.seconds = dict.fromkeys(self.seconds, 0.0)
        self.calls = dict.fromkeys(self.calls, 0)

    def remove(self) -> None:
        for attr in ("_admit", "_step"):
            delattr(self.runner, attr)

    def report(self, n: int) -> dict[str, Any]:
        total = sum(self.seconds.values()) or 1.0
        return {
            "admit_s": round(self.seconds["admit"], 2),
            "steps_s": round(self.seconds["steps"], 2),
            "admit_share": round(self.seconds["admit"] / total, 3),
            "admit_ms_per_ticket": round(self.seconds["admit"] / max(n, 1) * 1000, 1),
            "steps": self.calls["steps"],
            "ms_per_step": round(self.seconds["steps"] / max(self.calls["steps"], 1) * 1000, 1),
        }


def matmul_gflops(dtype: torch.dtype, seconds: float = 2.0) -> float:
    """What this machine's GEMMs reach in the engine's dtype (a prefill-sized matmul, best of a few)."""
    a = torch.randn(2048, 576, dtype=dtype)
    b = torch.randn(576, 1536, dtype=dtype)
    best, deadline = 0.0, time.perf_counter() + seconds
    with torch.inference_mode():
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            for _ in range(5):
                a @ b
            best = max(best, 5 * 2 * a.shape[0] * a.shape[1] * b.shape[1] / (time.perf_counter() - t0))
    return best / 1e9


def compute_bound(runner: BatchRunner, outs: list[Any], gflops: float) -> dict[str, Any]:
    """The labels-only ceiling: each ticket's own (non-shared-prefix) tokens cost ~2 x params FLOPs to
    prefill; at the measured GEMM rate that bounds tickets/s whatever the batching does."""
    params = sum(p.numel() for p in runner.model.parameters())
    prefix = len(runner.renderer.prefix_ids) if runner.settings.engine.prefix_cache else 0
    own = float(np.mean([o.prompt_tokens - prefix for o in outs if isinstance(o, EngineOutput)] or [0]))
    gflop_per_ticket = 2 * params * own / 1e9
    return {
        "params_m": round(params / 1e6, 1),
        "ticket_tokens_mean": round(own, 1),
        "prefill_gflop_per_ticket": round(gflop_per_ticket, 2),
        "matmul_gflops": round(gflops, 1),
        "tickets_per_s_bound": round(gflops / gflop_per_ticket, 2) if gflop_per_ticket else None,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    settings = load_settings(args.config)
    taxonomy = load_taxonomy(settings.taxonomy)
    rows = sample(Path(args.data), args.n)
    tickets = [TicketInput(r["subject"], r["body"]) for r in rows]
    label_names = tuple(f.name for f in taxonomy.label_fields)
    labels_only = [replace(t, fields=label_names) for t in tickets]
    adapter = resolve_adapter(settings.model)  # the served model: base + the registry's active adapter
    adapter_path = adapter.path if adapter else None
    set_torch_threads(settings.model)  # what the server and open_runner do before loading
    model, tokenizer, dtype = load_model(settings.model, adapter_path=adapter_path)
    result: dict[str, Any] = {
        "machine": {"threads": torch.get_num_threads(), "engine_dtype": str(dtype).removeprefix("torch.")},
        "model": {"base": settings.model.base, "adapter": adapter.name if adapter else None},
        "data": str(args.data),
        "n": len(rows),
        "n_naive": min(args.n_naive, len(rows)),
    }
    runs: dict[str, Any] = {}
    outputs: dict[str, list[Any]] = {}

    runner = BatchRunner(settings, taxonomy, model=model, tokenizer=tokenizer, dtype=dtype, adapter=adapter)
    timer = PhaseTimer(runner)
    plan = [("engine_labels_only_c32", 32, labels_only)]
    plan += [(f"engine_c{c}", c, tickets if c > 1 else tickets[: args.n_c1]) for c in args.concurrency]
    profile: dict[str, Any] = {}
    for name, c, subset in plan:
        engine = TransformersEngine(settings.variant(engine={"max_batch_size": max(c, 1)}), taxonomy, runner=runner)
        await engine.start()
        timer.reset()
        outs, lat, wall = await run_engine(engine.classify, subset, c, name)
        await engine.stop()
        runs[name] = summarise(name, outs, lat, wall, rows)
        outputs[name] = outs
        profile[name] = timer.report(len(subset))
    timer.remove()
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

    # Same model object, so the same dtype as the engine (the reference otherwise loads its own fp32 copy).
    ref = OutlinesReference(settings, taxonomy, model=model, tokenizer=tokenizer)
    outs, lat, wall = run_naive(ref, tickets[: args.n_naive])
    runs["naive"] = summarise("naive", outs, lat, wall, rows)
    outputs["naive"] = outs

    naive_tps = runs["naive"]["tickets_per_s"]
    result["runs"] = runs
    result["label_agreement_vs_naive"] = {k: agreement(outputs["naive"], v) for k, v in outputs.items() if k != "naive"}
    if "engine_c32" in outputs:
        result["labels_only_agreement_vs_full_engine"] = agreement(
            outputs["engine_c32"], outputs["engine_labels_only_c32"]
        )
    # The tickets where the engine's full answer and the naive one disagree on a label, with both texts:
    # what to look at when the agreement is under its bar.
    if "engine_c32" in outputs:
        result["disagreements_c32_vs_naive"] = [
            {"i": i, "engine": (a.raw_text or "")[:240], "naive": (b.raw_text or "")[:240]}
            for i, (a, b) in enumerate(zip(outputs["engine_c32"], outputs["naive"]))
            if labels(a) != labels(b) and isinstance(a, EngineOutput) and isinstance(b, EngineOutput)
        ][:8]
    result["speedup_vs_naive"] = {k: round(v["tickets_per_s"] / naive_tps, 2) for k, v in runs.items() if k != "naive"}
    result["tickets_per_s"] = {k: v["tickets_per_s"] for k, v in runs.items()}
    result["profile"] = profile
    result["labels_only_compute_bound"] = compute_bound(runner, outputs["engine_labels_only_c32"], matmul_gflops(dtype))
    result["elapsed_s"] = round(time.perf_counter() - began, 1)
    print(f"bench/throughput.py took {result['elapsed_s']:.0f} s", file=sys.stderr)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--n-naive", type=int, default=16, help="Tickets of the naive loop (the first of the sample)")
    parser.add_argument("--n-c1", type=int, default=8)
    parser.add_argument(
        "--concurrency", type=int, nargs="*", default=[32, 8, 1], help="Full-JSON engine runs (1 runs on --n-c1)"
    )
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
