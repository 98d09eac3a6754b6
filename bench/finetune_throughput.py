"""Fine-tuning throughput on this machine: examples/s of LoRA training steps for the shipped recipe
(compact prompt v2, full JSON target) against the baseline recipe (prompt v1 with all definitions,
~4x longer examples) and the labels-only target, same data, model, LoRA and batch, in one process.
Prints one JSON line; progress goes to stderr.

    .venv/bin/python bench/finetune_throughput.py [--steps 4] [--batch 4]

Speed is the median optimizer-step time (the first step, with its one-off costs, is excluded).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from finetune.config import load_config  # noqa: E402
from finetune.train import main as train  # noqa: E402
from server.config import load_settings  # noqa: E402

VARIANTS = {
    "baseline_v1_full": {"prompt_version": "v1", "data.target": "full"},
    "shipped_v2_full": {"prompt_version": "v2", "data.target": "full"},
    "v2_labels_only": {"prompt_version": "v2", "data.target": "labels"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings(database_url="sqlite://")
    out: dict = {"steps": args.steps, "batch": args.batch, "threads": torch.get_num_threads(), "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, over in VARIANTS.items():
            cfg = load_config(
                ROOT / "finetune/configs/tickets.yaml",
                {
                    "name": name,
                    "output_dir": tmp,
                    "calibrate": False,
                    "data.feedback": False,
                    "data.max_rows": args.batch * (args.steps + 2),
                    "train.batch_size": args.batch,
                    "train.max_steps": args.steps + 1,
                    "train.checkpoint_every": 0,
                    **over,
                },
            )
            adapter = train(cfg, settings, progress=False)
            t = json.loads((adapter / "manifest.json").read_text())["training"]
            out["variants"][name] = {
                "seconds_per_step": t["seconds_per_step_median"],
                "examples_per_s": round(args.batch / t["seconds_per_step_median"], 3),
                "dtype": t["dtype"],
                "device": t["device"],
            }
            print(f"{name}: {out['variants'][name]}", file=sys.stderr)
    base = out["variants"]["baseline_v1_full"]["examples_per_s"]
    for v in out["variants"].values():
        v["ratio_vs_baseline"] = round(v["examples_per_s"] / base, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
