"""Prompt tokens per ticket (what capacity and hosted-API cost scale with), on the golden set.

    .venv/bin/python bench/prompt_tokens.py [--prompt classify/v2] [--csv data/tickets/golden.csv]

Prints one JSON object: mean / median / p95 / max prompt tokens with the configured base model's tokenizer,
and the static prefix every ticket shares (cached once per model server by vLLM's prefix caching).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from transformers import AutoTokenizer  # noqa: E402

from server.config import load_settings  # noqa: E402
from server.engines.prompting import classify_renderer  # noqa: E402
from server.prompts import TicketInput, parse_history  # noqa: E402
from server.taxonomy import load_taxonomy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompt", default="classify/v2")
    ap.add_argument("--csv", type=Path, default=ROOT / "data" / "tickets" / "golden.csv")
    args = ap.parse_args()
    settings = load_settings()
    tokenizer = AutoTokenizer.from_pretrained(settings.model.base)
    renderer = classify_renderer(settings, load_taxonomy(settings.taxonomy), tokenizer, args.prompt)
    sizes, prefix = [], 0
    with open(args.csv, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            history = parse_history(row.get("previous_interactions") or None)
            encoded = renderer.render(TicketInput(row.get("subject") or "", row["body"], history))
            sizes.append(len(encoded.ids))
            prefix = len(encoded.prefix_ids)
    sizes.sort()
    print(
        json.dumps(
            {
                "tickets": len(sizes),
                "prompt": args.prompt,
                "mean": round(statistics.mean(sizes), 1),
                "median": statistics.median(sizes),
                "p95": sizes[int(0.95 * (len(sizes) - 1))],
                "max": sizes[-1],
                "shared_prefix": prefix,
            }
        )
    )


if __name__ == "__main__":
    main()
