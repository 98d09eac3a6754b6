"""Merged model vs runtime LoRA on vLLM: the same tickets through one vLLM server serving the merged
model (`triage models merge`), then through one serving the base model with the adapter as a runtime
LoRA module (`triage vllm-args`), in one run. Prints ONE JSON line (progress on stderr).

    .venv/bin/python bench/vllm_lora.py --lock /tmp/cpu.lock [--n 24] [--concurrency 8] \
        [--python /tmp/vllmvenv/bin/python]

(`--lock`: each phase, one server start and its requests, holds the shared lock on its own.)

Each request is what the vLLM engine sends: the prompt's token ids (rendered by the embedded engine's
renderer) to /v1/completions, greedy, the output JSON schema under `structured_outputs`. The servers
are started with server.engines.vllm.args.serve_command, so they are started as an operator would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import fcntl
import json
import random
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIELDS = ("category", "priority", "sentiment")


def log(msg: str) -> None:
    print(f"[vllm_lora {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def prompts(settings: Any, n: int, data: Path) -> tuple[str, list[list[int]]]:
    """(JSON schema, token ids per ticket) exactly as the embedded engine renders them."""
    from transformers import AutoTokenizer

    from server.engines.prompting import classify_renderer, prompt_version_for
    from server.prompts import TicketInput
    from server.registry import resolve_adapter
    from server.schema import output_json_schema
    from server.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(settings.taxonomy)
    adapter = resolve_adapter(settings.model)
    tokenizer = AutoTokenizer.from_pretrained(settings.model.base)
    renderer = classify_renderer(
        settings, taxonomy, tokenizer, prompt_version_for(settings, adapter.manifest if adapter else None)
    )
    with open(data, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    random.Random(0).shuffle(rows)
    ids = [renderer.render(TicketInput(r["subject"], r["body"])).ids for r in rows[:n]]
    return output_json_schema(taxonomy, renderer.prompt.field_order), ids


async def send_all(
    url: str, model: str, schema: str, ids: list[list[int]], concurrency: int, max_tokens: int, structured: bool
) -> dict[str, Any]:
    import httpx
    import numpy as np

    sem = asyncio.Semaphore(concurrency)
    outs: list[dict[str, Any] | None] = [None] * len(ids)
    lat: list[float] = []
    async with httpx.AsyncClient(timeout=600) as client:

        async def one(i: int) -> None:
            body: dict[str, Any] = {"model": model, "prompt": ids[i], "max_tokens": max_tokens, "temperature": 0}
            if structured:
                body["structured_outputs"] = {"json": json.loads(schema)}
            async with sem:
                t0 = time.perf_counter()
                r = await client.post(f"{url}/v1/completions", json=body)
                lat.append(time.perf_counter() - t0)
            if r.status_code == 200:
                try:
                    outs[i] = json.loads(r.json()["choices"][0]["text"])
                except ValueError:
                    outs[i] = None
            else:
                log(f"HTTP {r.status_code}: {r.text[:200]}")

        await one(0)  # warm-up (grammar compilation, first LoRA load), not timed
        lat.clear()
        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(ids))))
        wall = time.perf_counter() - started
    ms = np.array(lat) * 1000
    return {
        "tickets_per_s": round(len(ids) / wall, 3),
        "wall_s": round(wall, 1),
        "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1)},
        "valid_json": sum(1 for o in outs if isinstance(o, dict)),
        "labels": [{f: (o or {}).get(f) for f in FIELDS} for o in outs],
    }


@contextlib.contextmanager
def locked(path: str | None) -> Iterator[None]:
    """Hold the shared heavy-job lock for one phase (a shared 2-core machine: one server start and its
    requests stay under 5 minutes, the whole comparison does not)."""
    if not path:
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def run_one(argv: list[str], name: str, model: str, port: int, args: argparse.Namespace, schema: str, ids: Any) -> Any:
    with locked(args.lock):
        return _run_one(argv, name, model, port, args, schema, ids)


def _run_one(argv: list[str], name: str, model: str, port: int, args: argparse.Namespace, schema: str, ids: Any) -> Any:
    from server.engines.vllm.launch import VllmProcess

    server = VllmProcess(
        argv, ROOT / "var" / f"vllm_lora_{name}.log", port=port, cache_root=ROOT / "var" / "vllm-cache"
    )
    try:
        up = server.wait_ready(args.start_timeout_s)
        log(f"{name}: up after {up:.0f} s; {len(ids)} tickets at concurrency {args.concurrency}")
        result = asyncio.run(
            send_all(server.url, model, schema, ids, args.concurrency, args.max_tokens, not args.plain)
        )
        result["startup_s"] = round(up, 1)
        log(f"{name}: {result['tickets_per_s']} tickets/s")
        return result
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--python", default="/tmp/vllmvenv/bin/python", help="The interpreter vLLM is installed in")
    parser.add_argument("--port", type=int, default=8421)
    parser.add_argument("--start-timeout-s", type=float, default=180)
    parser.add_argument("--plain", action="store_true", help="Plain completions, no structured output")
    parser.add_argument("--data", default=str(ROOT / "data" / "tickets" / "golden.csv"))
    parser.add_argument("--lock", default=None, help="flock this file around each phase (e.g. /tmp/cpu.lock)")
    args = parser.parse_args()
    # `timeout` sends SIGTERM: turn it into an exception so the running server is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))

    from server.config import load_settings
    from server.engines.merge import default_out, merge_adapter
    from server.engines.vllm.args import serve_command
    from server.registry import resolve_adapter

    settings = load_settings(vllm={"port": args.port})
    adapter = resolve_adapter(settings.model)
    if adapter is None or not adapter.has_lora:
        raise SystemExit("no LoRA adapter is active: nothing to compare")
    merged = default_out(adapter.name)
    if not (merged / "model.safetensors").is_file():
        log(f"merging {adapter.name} into {merged}")
        with locked(args.lock):
            merge_adapter(settings, adapter.name, dtype="bfloat16")
    schema, ids = prompts(settings, args.n, Path(args.data))
    lora_argv = serve_command(settings, python=args.python)
    # One runtime adapter, the served one: the comparison is one model either way.
    start = lora_argv.index("--lora-modules") + 1
    end = next(i for i in range(start, len(lora_argv)) if lora_argv[i].startswith("--"))
    lora_argv[start:end] = [f"{adapter.name}={adapter.path}"]
    lora_argv[lora_argv.index("--max-loras") + 1] = "1"

    results = {
        "merged": run_one(
            serve_command(settings, python=args.python, merged=merged),
            "merged",
            adapter.name,
            args.port,
            args,
            schema,
            ids,
        ),
        "runtime_lora": run_one(lora_argv, "runtime_lora", adapter.name, args.port, args, schema, ids),
    }
    a, b = results["merged"].pop("labels"), results["runtime_lora"].pop("labels")
    agree = sum(x == y for x, y in zip(a, b)) / max(1, len(a))
    print(
        json.dumps(
            {
                "adapter": adapter.name,
                "n": len(ids),
                "concurrency": args.concurrency,
                "structured_outputs": not args.plain,
                "dtype": (argv := serve_command(settings))[argv.index("--dtype") + 1],
                "structured_outputs_backend": settings.vllm.structured_outputs_backend,
                **results,
                "merged_over_lora": round(
                    results["merged"]["tickets_per_s"] / results["runtime_lora"]["tickets_per_s"], 2
                ),
                "label_agreement": round(agree, 3),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
