"""Rebuild ``sample100.csv``: a fixed 100-row, category-stratified sample of train.csv's reviewed rows.

Why this shape: smoke tests need a small file whose labels can be trusted (reviewed rows only; the
dataset-labelled rows are noisy) and in which every category, including the thin Sales/Billing
classes, appears. Selection uses a seeded SHA-256 ranking rather than ``random`` so the result does not
depend on the Python version's RNG, and rows are written back byte-for-byte in train.csv's order.

Run from anywhere: ``python data/tickets/make_sample100.py`` (rewrites sample100.csv next to it);
``--check`` only verifies that the shipped file matches.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from collections import defaultdict
from pathlib import Path

SEED = 42
SIZE = 100
MIN_PER_CATEGORY = 5
HERE = Path(__file__).resolve().parent


def _rank_key(ticket_id: str) -> str:
    """Seeded, platform-independent pseudo-random order of tickets."""
    return hashlib.sha256(f"{SEED}:{ticket_id}".encode("utf-8")).hexdigest()


def allocate(counts: dict[str, int], size: int = SIZE, minimum: int = MIN_PER_CATEGORY) -> dict[str, int]:
    """Proportional allocation (largest remainder), then lift small classes to ``minimum``.

    The lift is taken from the largest allocations so the total stays ``size``.
    """
    total = sum(counts.values())
    quotas = {c: size * n / total for c, n in counts.items()}
    alloc = {c: int(q) for c, q in quotas.items()}
    for c in sorted(quotas, key=lambda c: (-(quotas[c] - alloc[c]), c))[: size - sum(alloc.values())]:
        alloc[c] += 1
    for c in sorted(alloc):
        need = min(minimum, counts[c]) - alloc[c]
        while need > 0:
            donor = max(alloc, key=lambda d: (alloc[d], d))
            alloc[donor] -= 1
            alloc[c] += 1
            need -= 1
    return alloc


def build_sample(train_csv: Path = HERE / "train.csv") -> str:
    """Return the CSV text of the sample (same header and quoting as train.csv)."""
    with open(train_csv, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fieldnames = list(reader.fieldnames or [])
        rows = list(reader)
    by_cat: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if row["label_source"] == "reviewed":
            by_cat[row["category"]].append(row)
    alloc = allocate({c: len(v) for c, v in by_cat.items()})
    chosen: set[str] = set()
    for cat, members in by_cat.items():
        chosen.update(r["ticket_id"] for r in sorted(members, key=lambda r: _rank_key(r["ticket_id"]))[: alloc[cat]])
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=fieldnames)  # default dialect == train.csv's (CRLF, minimal quoting)
    writer.writeheader()
    writer.writerows(r for r in rows if r["ticket_id"] in chosen)
    return out.getvalue()


def _read(path: Path) -> str:
    """Read without newline translation (the CSV uses CRLF plus bare LF inside quoted bodies)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def main(argv: list[str]) -> int:
    text = build_sample()
    target = HERE / "sample100.csv"
    if "--check" in argv:
        ok = target.exists() and _read(target) == text
        print("sample100.csv up to date" if ok else "sample100.csv differs from a fresh build")
        return 0 if ok else 1
    with open(target, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
