"""Result-cache hit rates and per-call cost on a replay of the golden tickets.

This measures the cache, not the model: every ticket's "classification" is a dummy result naming
the original ticket it came from, so a hit can be checked for being the right one.

The replay stream: every golden ticket once (each a miss, then stored, as the service does),
then, shuffled together, a near-duplicate variant of a random half (one of: a few word edits,
a changed greeting, whitespace/case changes) and an exact repeat of a random quarter. A miss in
that phase is stored too, as the service would after classifying it. The same stream runs on the
in-process backend and on Redis (fresh key prefix, deleted afterwards). Prints one JSON line.

    .venv/bin/python bench/cache_hit_rate.py [--seed 0] [--threshold 0.9] [--backends memory,redis] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.cache import ResultCache, cache_namespace, lsh_params, normalise_text  # noqa: E402
from server.cache.lsh import Signer  # noqa: E402
from server.config import CacheSettings  # noqa: E402
from server.prompts import TicketInput  # noqa: E402

GREETINGS = ("Hi,", "Hello,", "Hello team,", "Dear support,", "Good morning,", "Hey there,", "Greetings,")
FILLERS = ("really", "please", "again", "now", "still", "also", "just")
VARIANT_KINDS = ("word_edits", "greeting", "whitespace_case")


@dataclass(frozen=True)
class Event:
    ticket: TicketInput
    origin: int  # index of the golden ticket it derives from
    kind: str  # "original" | "repeat" | one of VARIANT_KINDS


def load(path: Path) -> list[TicketInput]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [TicketInput(r["subject"], r["body"]) for r in csv.DictReader(fh)]


def word_edits(body: str, rng: random.Random) -> str:
    words = body.split(" ")
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(words))
        op = rng.choice(("replace", "delete", "insert"))
        if op == "replace":
            words[i] = rng.choice(FILLERS)
        elif op == "delete" and len(words) > 1:
            del words[i]
        else:
            words.insert(i, rng.choice(FILLERS))
    return " ".join(words)


def change_greeting(body: str, rng: random.Random) -> str:
    # Replace a leading greeting if there is one, otherwise add one: the content stays the same.
    stripped = re.sub(r"^\s*(hi|hello|hey|dear|good \w+|greetings)\b[^,.!\n]{0,20}[,.!]?\s*", "", body, flags=re.I)
    choices = [g for g in GREETINGS if not body.startswith(g)]
    return f"{rng.choice(choices)} {stripped}"


def whitespace_case(text: str, rng: random.Random) -> str:
    words = text.split(" ")
    out = []
    for w in words:
        r = rng.random()
        w = w.upper() if r < 0.1 else w.lower() if r < 0.3 else w
        out.append(w + rng.choice(("", "", " ", "  ", "\n", "\t")))
    return " ".join(out)


def variant(ticket: TicketInput, kind: str, rng: random.Random) -> TicketInput:
    if kind == "word_edits":
        return TicketInput(ticket.subject, word_edits(ticket.body, rng))
    if kind == "greeting":
        return TicketInput(ticket.subject, change_greeting(ticket.body, rng))
    return TicketInput(whitespace_case(ticket.subject, rng), whitespace_case(ticket.body, rng))


def build_stream(tickets: list[TicketInput], seed: int) -> list[Event]:
    rng = random.Random(seed)
    n = len(tickets)
    originals = [Event(t, i, "original") for i, t in enumerate(tickets)]
    later = [
        Event(variant(tickets[i], kind := rng.choice(VARIANT_KINDS), rng), i, kind)
        for i in rng.sample(range(n), n // 2)
    ]
    later += [Event(tickets[i], i, "repeat") for i in rng.sample(range(n), n // 4)]
    rng.shuffle(later)
    return originals + later


def replay(cache: ResultCache, stream: list[Event]) -> dict[str, Any]:
    get_ms: list[float] = []
    put_ms: list[float] = []
    by_kind: dict[str, dict[str, int]] = {}
    false_near = false_exact = 0
    for ev in stream:
        t0 = time.perf_counter()
        hit = cache.get(ev.ticket)
        get_ms.append((time.perf_counter() - t0) * 1000)
        row = by_kind.setdefault(ev.kind, {"n": 0, "exact": 0, "near": 0, "miss": 0})
        row["n"] += 1
        if hit is None:
            row["miss"] += 1
            t0 = time.perf_counter()
            cache.put(ev.ticket, {"origin": ev.origin})
            put_ms.append((time.perf_counter() - t0) * 1000)
            continue
        row[hit.kind] += 1
        if hit.result["origin"] != ev.origin:
            if hit.kind == "near":
                false_near += 1
            else:
                false_exact += 1
    later = [e for e in stream if e.kind != "original"]
    exact_hits = sum(r["exact"] for k, r in by_kind.items() if k != "original")
    near_hits = sum(r["near"] for k, r in by_kind.items() if k != "original")
    return {
        "gets": len(get_ms),
        "puts": len(put_ms),
        "replayed": len(later),
        "exact_hit_rate": round(exact_hits / len(later), 4),
        "near_hit_rate": round(near_hits / len(later), 4),
        "miss_rate": round(1 - (exact_hits + near_hits) / len(later), 4),
        "false_near_hits": false_near,
        "false_exact_hits": false_exact,
        "by_kind": by_kind,
        "stats": cache.stats(),
        "ms_per_get": _ms(get_ms),
        "ms_per_put": _ms(put_ms),
    }


def banding_recall(stream: list[Event], tickets: list[TicketInput], settings: CacheSettings) -> dict[str, Any]:
    """Of the inexact variants whose estimated similarity to their own original reaches the
    threshold (the ones a near lookup should find), how many the LSH buckets actually surfaced;
    the rest are lost to banding, not to the threshold."""
    signer = Signer(settings.near_threshold, settings.num_perm, settings.shingle_size)
    eligible = 0
    for ev in stream:
        if ev.kind in ("original", "repeat"):
            continue
        a, b = normalise_text(ev.ticket), normalise_text(tickets[ev.origin])
        sa, sb = signer.signature(a), signer.signature(b)
        if a != b and sa is not None and sb is not None and sa.similarity(sb) >= settings.near_threshold:
            eligible += 1
    return {"variants_at_or_above_threshold": eligible}


def _ms(values: list[float]) -> dict[str, float]:
    a = np.array(values)
    return {
        "mean": round(float(a.mean()), 3),
        "p50": round(float(np.percentile(a, 50)), 3),
        "p95": round(float(np.percentile(a, 95)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT / "data" / "tickets" / "golden.csv"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=CacheSettings().near_threshold)
    parser.add_argument("--backends", default="memory,redis")
    parser.add_argument("--redis-url", default=CacheSettings().redis_url)
    parser.add_argument("--out", default=None, help="Also write the JSON here")
    args = parser.parse_args()

    tickets = load(Path(args.data))
    stream = build_stream(tickets, args.seed)
    key_prefix = f"triage-bench-{uuid.uuid4().hex[:8]}"
    base = CacheSettings(near_threshold=args.threshold, redis_url=args.redis_url, key_prefix=key_prefix)
    bands, rows = lsh_params(base.near_threshold, base.num_perm)
    result: dict[str, Any] = {
        "data": args.data,
        "seed": args.seed,
        "golden_tickets": len(tickets),
        "stream": {k: sum(1 for e in stream if e.kind == k) for k in ("original", "repeat", *VARIANT_KINDS)},
        "settings": {
            "near_threshold": base.near_threshold,
            "num_perm": base.num_perm,
            "shingle_size": base.shingle_size,
            "bands": bands,
            "rows": rows,
        },
        "backends": {},
    }
    result["settings"].update(banding_recall(stream, tickets, base))
    namespace = cache_namespace(bench="cache_hit_rate", seed=args.seed)
    for backend in args.backends.split(","):
        cache = ResultCache(CacheSettings.model_validate({**base.model_dump(), "backend": backend}), namespace)
        if not cache.ping():
            sys.exit(f"{backend} backend not reachable ({args.redis_url})")
        try:
            print(f"replaying {len(stream)} lookups on {backend}", file=sys.stderr)
            run = replay(cache, stream)
            eligible = result["settings"]["variants_at_or_above_threshold"]
            run["near_hits_of_eligible"] = round(run["stats"]["near"]["hits"] / eligible, 4) if eligible else None
            result["backends"][backend] = run
        finally:
            cache.clear()
            cache.close()
    line = json.dumps(result)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
