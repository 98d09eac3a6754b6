"""The label-head sweep of finetune/EXPERIMENTS.md: which features, which combination, which data.

    .venv/bin/python -m finetune.sweep_heads --adapter tickets-smollm2-v2 [--noisy] [--out reports/sweep-v2.json]

Features are the served model's pooled hidden states (`BatchRunner.features`, the same numbers a head
reads when serving) for the reviewed training rows, the fixed held-out tickets
(data/tickets/heldout_ids.txt) and, with --noisy, the 1,920 dataset-labelled rows; they are cached under
var/features/. Every variant is fitted on the training side and scored on the held-out tickets only
(the golden set is never read here). Prints one JSON line per variant and a Markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from finetune.features import CACHE_LAYERS as LAYERS
from server.config import load_settings
from server.heads.text import make_vectorizer, ticket_text
from server.prompts import TicketInput, parse_history
from server.registry import resolve_project_path
from server.taxonomy import load_taxonomy

FIELDS = ("category", "priority", "sentiment")


# Hidden-state variants also scored in combination with the TF-IDF model (the head's form).
COMBINED: list[list[tuple[int, str]]] = [[(16, "mean"), (30, "last")], [(16, "mean"), (16, "history"), (30, "last")]]


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def features(adapter: str, rows: list[dict[str, str]], tag: str) -> np.ndarray:
    """(n, len(CACHE_POOLS) * d): every cached pooling of every layer, as `finetune.heads.extract` caches them
    (a head fitted later on the same tickets reads the same cache)."""
    from finetune.data import Example
    from finetune.features import CACHE_POOLS, extract
    from server.engines import open_batch_runner

    settings = load_settings()
    settings = settings.variant(model={"adapter": adapter})
    runner = open_batch_runner(settings, load_taxonomy("tickets"))
    # Normalised as finetune.data reads them, so the head job (`triage fit-head`) hits the same cache.
    examples = [
        Example(
            r["ticket_id"].strip(),
            TicketInput(r["subject"].strip(), r["body"].strip(), parse_history(r.get("previous_interactions"))),
            {},
            tag,
        )
        for r in rows
    ]
    return extract(runner, examples, CACHE_POOLS, True, f"features {tag}")


def cols(spec: list[tuple[int, str]], d: int) -> list[int]:
    from finetune.features import CACHE_POOLS
    from server.heads.head import Pool

    idx: list[int] = []
    for layer, how in spec:
        k = CACHE_POOLS.index(Pool(layer, how))  # type: ignore[arg-type]
        idx += list(range(k * d, (k + 1) * d))
    return idx


def main(argv: list[str] | None = None) -> None:
    from sklearn.linear_model import LogisticRegression

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--adapter", required=True)
    ap.add_argument(
        "--augmented", action="store_true", help="add data/augmented/train_augmented.csv to the training side"
    )
    ap.add_argument(
        "--noisy", action="store_true", help="also score variants trained with the 1,920 dataset-labelled rows"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    held_ids = set(resolve_project_path("data/tickets/heldout_ids.txt").read_text().split())
    all_rows = rows_of(resolve_project_path("data/tickets/train.csv"))
    reviewed = [r for r in all_rows if r["label_source"] == "reviewed"]
    train = [r for r in reviewed if r["ticket_id"] not in held_ids]
    held = [r for r in reviewed if r["ticket_id"] in held_ids]
    if args.augmented:
        train += [
            r
            for r in rows_of(resolve_project_path("data/augmented/train_augmented.csv"))
            if r["source_ticket_id"] not in held_ids
        ]
    noisy = [r for r in all_rows if r["label_source"] == "dataset"] if args.noisy else []
    F_train, F_held = (
        features(args.adapter, train, f"{args.adapter}-train{'-aug' if args.augmented else ''}"),
        features(args.adapter, held, f"{args.adapter}-held"),
    )
    F_noisy = features(args.adapter, noisy, f"{args.adapter}-noisy") if noisy else None
    from finetune.features import CACHE_POOLS

    d = F_train.shape[1] // len(CACHE_POOLS)

    def text(rows: list[dict[str, str]]) -> list[str]:
        return [
            ticket_text(TicketInput(r["subject"], r["body"], parse_history(r.get("previous_interactions"))))
            for r in rows
        ]

    vec = make_vectorizer()
    T_train, T_held = vec.fit_transform(text(train)), vec.transform(text(held))
    results: list[dict[str, Any]] = []

    def record(name: str, accs: dict[str, float]) -> None:
        row = {"variant": name, **{f: round(a, 4) for f, a in accs.items()}}
        results.append(row)
        print(json.dumps(row), flush=True)

    def score(P: np.ndarray, classes: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(classes[P.argmax(1)] == y))

    ys = {f: (np.array([r[f] for r in train]), np.array([r[f] for r in held])) for f in FIELDS}
    # 1. The classical baseline (balanced and not).
    for balanced in (True, False):
        accs = {}
        for f, (yt, yh) in ys.items():
            m = LogisticRegression(C=10, class_weight="balanced" if balanced else None, max_iter=3000).fit(T_train, yt)
            accs[f] = score(m.predict_proba(T_held), m.classes_, yh)
        record(f"tfidf LR C=10{' balanced' if balanced else ''}", accs)
    # 2. Hidden states alone, per pooling.
    specs: list[list[tuple[int, str]]] = [[(layer, "mean")] for layer in LAYERS] + [
        [(30, "last")],
        [(16, "mean"), (30, "last")],
        [(12, "mean"), (24, "mean")],
        [(16, "mean"), (16, "history"), (30, "last")],
        [(12, "mean"), (24, "mean"), (24, "history")],
    ]
    probs: dict[str, dict[str, Any]] = {}
    for spec in specs:
        idx = cols(spec, d)
        X, Xh = F_train[:, idx], F_held[:, idx]
        mu, sd = X.mean(0), X.std(0) + 1e-6
        for C in (0.01, 0.05, 0.2):
            accs = {}
            for f, (yt, yh) in ys.items():
                m = LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit((X - mu) / sd, yt)
                P = m.predict_proba((Xh - mu) / sd)
                accs[f] = score(P, m.classes_, yh)
                if C == 0.05 and spec in COMBINED:
                    probs.setdefault(f, {})[str(spec)] = (P, m.classes_)
            record(f"hidden {'+'.join(f'L{a}{b}' for a, b in spec)} C={C}", accs)
    # 3. The shipped head's combination at fixed weights (the head job picks w by held-out log-loss).
    for f, (yt, _yh) in ys.items():
        m = LogisticRegression(C=10, class_weight="balanced", max_iter=3000).fit(T_train, yt)
        probs[f]["text"] = (m.predict_proba(T_held), m.classes_)
    for spec in COMBINED:
        for w in (0.25, 0.5, 0.75):
            accs = {}
            for f, (_, yh) in ys.items():
                (Ph, ch), (Pt, ct) = probs[f][str(spec)], probs[f]["text"]
                assert list(ch) == list(ct)
                accs[f] = score(w * np.log(Pt + 1e-9) + (1 - w) * np.log(Ph + 1e-9), ch, yh)
            record(f"combined w_text={w} ({'+'.join(f'L{a}{b}' for a, b in spec)} C=0.05)", accs)
    # 4. The noisy rows added to the training side.
    if noisy:
        yn = {f: np.array([r[f] for r in noisy]) for f in FIELDS}
        vec2 = make_vectorizer()
        T2 = vec2.fit_transform(text(train) + text(noisy))
        accs = {
            f: score(
                (
                    m := LogisticRegression(C=10, class_weight="balanced", max_iter=3000).fit(
                        T2, np.concatenate([yt, yn[f]])
                    )
                ).predict_proba(vec2.transform(text(held))),
                m.classes_,
                yh,
            )
            for f, (yt, yh) in ys.items()
        }
        record("tfidf LR C=10 balanced + 1,920 noisy rows", accs)
        assert F_noisy is not None
        idx = cols([(16, "mean"), (30, "last")], d)
        X = np.concatenate([F_train[:, idx], F_noisy[:, idx]])
        mu, sd = X.mean(0), X.std(0) + 1e-6
        accs = {
            f: score(
                (
                    m := LogisticRegression(C=0.05, class_weight="balanced", max_iter=5000).fit(
                        (X - mu) / sd, np.concatenate([yt, yn[f]])
                    )
                ).predict_proba((F_held[:, idx] - mu) / sd),
                m.classes_,
                yh,
            )
            for f, (yt, yh) in ys.items()
        }
        record("hidden L16mean+L30last C=0.05 + 1,920 noisy rows", accs)
    lines = ["| variant | category | priority | sentiment |", "|---|---|---|---|"] + [
        f"| {r['variant']} | {r['category']:.3f} | {r['priority']:.3f} | {r['sentiment']:.3f} |" for r in results
    ]
    print("\n".join(lines))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {"adapter": args.adapter, "train_rows": len(train), "heldout_rows": len(held), "results": results},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
