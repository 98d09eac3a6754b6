"""The copy scorer: which of a ticket's candidate spans (server.extraction) is its error code, if any.

A logistic regression over each candidate's shape and surrounding words, fitted by the fine-tuning job
on the training rows' candidates (the labelled code is the positive, every other candidate a negative).
The engine forces the decoder to the best-scoring candidate when its probability reaches `threshold`,
else to null: the value is still one of the decoder's own options, so it is always a span of the ticket.
Stored as `copy_head.json` beside the adapter (plain JSON, checksummed by the registry).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.extraction import candidate_features, candidates

COPY_FILE = "copy_head.json"


@dataclass
class CopyScorer:
    field: str
    weights: dict[str, float]  # feature -> weight; unknown features weigh 0
    bias: float
    threshold: float = 0.5

    def scores(self, texts: Iterable[str]) -> list[tuple[str, float]]:
        found = candidates(texts)
        out = []
        for rank, c in enumerate(found):
            z = self.bias + sum(self.weights.get(f, 0.0) for f in candidate_features(c, len(found), rank))
            out.append((c.span, 1.0 / (1.0 + math.exp(-z))))
        return out

    def choose(self, texts: Iterable[str]) -> str | None:
        scored = self.scores(texts)
        if not scored:
            return None
        span, p = max(scored, key=lambda sp: sp[1])
        return span if p >= self.threshold else None

    def save(self, folder: Path, info: dict[str, Any] | None = None) -> str:
        data = {
            "format": 1,
            "field": self.field,
            "bias": self.bias,
            "threshold": self.threshold,
            "weights": self.weights,
            "info": info or {},
        }
        (Path(folder) / COPY_FILE).write_text(
            json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8"
        )
        return COPY_FILE

    @classmethod
    def load(cls, folder: Path) -> CopyScorer | None:
        path = Path(folder) / COPY_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != 1:
            raise ValueError(f"{path}: unsupported format {data.get('format')!r}")
        return cls(
            str(data["field"]),
            {str(k): float(v) for k, v in data["weights"].items()},
            float(data["bias"]),
            float(data.get("threshold", 0.5)),
        )
