"""Does a LoRA adapter slow the forward pass? Base model vs base + merged adapter vs the unmerged
peft model, on identical inputs, dtypes and shapes, in one process. Prints one JSON line.

    .venv/bin/python bench/lora_forward.py [--adapter models/adapters/tickets-smollm2-v1] [--reps 5]

The issue reported 2x (SmolLM2) and 9x (Gemma) slowdowns after LoRA. The usual suspects are checked
directly: mixed dtypes after a merge (fp32 LoRA deltas in a bf16 model), denormal weights or
activations (x86 handles subnormal floats in microcode unless flush-to-zero is on), and activation
magnitudes (the issue saw Gemma hidden states near 1e5). Each variant is timed with and without
`torch.set_flush_denormal(True)`; ratios are against the base model in the same dtype and run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.config import DEFAULT_BASE_MODEL_DIR  # noqa: E402


def timed(model, ids, reps: int) -> float:
    with torch.inference_mode():
        model(ids, logits_to_keep=1)
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            model(ids, logits_to_keep=1)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def weight_stats(model) -> dict:
    dtypes, subnormal, total = set(), 0, 0
    for p in model.parameters():
        dtypes.add(str(p.dtype).removeprefix("torch."))
        tiny = torch.finfo(p.dtype).tiny
        subnormal += int(((p != 0) & (p.abs() < tiny)).sum())
        total += p.numel()
    return {"dtypes": sorted(dtypes), "subnormal_weights": subnormal, "weights": total}


def hidden_max(model, ids) -> float:
    with torch.inference_mode():
        out = model(ids, output_hidden_states=True, logits_to_keep=1)
    return max(float(h.abs().max()) for h in out.hidden_states)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default=str(DEFAULT_BASE_MODEL_DIR))
    ap.add_argument("--adapter", default=str(ROOT / "models/adapters/tickets-smollm2-v1"))
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    result: dict = {
        "base": args.base,
        "adapter": args.adapter,
        "tokens": args.tokens,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "runs": {},
    }
    for dname in args.dtypes.split(","):
        dtype = getattr(torch, dname)
        ids = torch.randint(100, 40000, (args.batch, args.tokens))
        base = AutoModelForCausalLM.from_pretrained(args.base, dtype=dtype).eval()
        merged_raw = (
            PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(args.base, dtype=dtype), args.adapter)
            .merge_and_unload()
            .eval()
        )
        merged_cast = (
            PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(args.base, dtype=dtype), args.adapter)
            .merge_and_unload()
            .to(dtype)
            .eval()
        )
        unmerged = PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(args.base, dtype=dtype), args.adapter
        ).eval()
        variants = {
            "base": base,
            "merged_as_loaded": merged_raw,
            "merged_cast_to_dtype (served)": merged_cast,
            "unmerged_peft": unmerged,
        }
        runs = {}
        for flush in (False, True):
            torch.set_flush_denormal(flush)
            t_base = timed(base, ids, args.reps)
            for name, model in variants.items():
                t = t_base if name == "base" else timed(model, ids, args.reps)
                runs.setdefault(name, {})[f"ms_flush_denormal_{flush}"] = round(t * 1000, 1)
                runs[name][f"ratio_vs_base_flush_{flush}"] = round(t / t_base, 3)
        torch.set_flush_denormal(False)
        for name, model in variants.items():
            runs[name].update(weight_stats(model))
            runs[name]["max_abs_hidden_state"] = round(hidden_max(model, ids[:1]), 1)
        result["runs"][dname] = runs
        print(f"{dname} done", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
