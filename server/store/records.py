"""What the service stores when a request ends: one record per outcome, written by
`repository.finish_many`. The column names (and so the API's stored shapes) are the table's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.results import CacheKind, Route, label_of


@dataclass(frozen=True)
class StoredResult:
    """A classified ticket. The label columns (category, priority, sentiment) are copies of the
    prediction's fields for querying; they are read from it here so they cannot disagree."""

    prediction: dict[str, Any]
    confidence: dict[str, float | None]
    needs_review: bool
    input_truncated: bool
    latency_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    raw_output: str | None
    route: Route | None = None
    cache_kind: CacheKind | None = None
    answered_by: str | None = None  # column `engine`: e.g. transformers:tickets-smollm2-v1
    cost_usd: float | None = None
    review_reasons: dict[str, Any] | None = None
    # The model that answered, when it is not the one recorded at acceptance (a hot swap, a backup engine).
    model_base: str | None = None
    model_adapter: str | None = None

    def values(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "status": "done",
            "prediction": self.prediction,
            "category": label_of(self.prediction, "category"),
            "priority": label_of(self.prediction, "priority"),
            "sentiment": label_of(self.prediction, "sentiment"),
            "confidence": self.confidence,
            "needs_review": self.needs_review,
            "input_truncated": self.input_truncated,
            "latency_ms": self.latency_ms,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "raw_output": self.raw_output,
            "error": None,
            "route": self.route,
            "cache_kind": self.cache_kind,
            "engine": self.answered_by,
            "cost_usd": self.cost_usd,
            "review_reasons": self.review_reasons or None,
        }
        if self.model_base is not None:
            values["model_base"] = self.model_base
        if self.model_adapter is not None:
            values["model_adapter"] = self.model_adapter
        return values


@dataclass(frozen=True)
class StoredFailure:
    """A ticket that got no answer, with the reason and what was spent on it."""

    error: str
    latency_ms: float | None = None
    answered_by: str | None = None
    cost_usd: float | None = None

    def values(self) -> dict[str, Any]:
        values: dict[str, Any] = {"status": "failed", "error": self.error, "latency_ms": self.latency_ms}
        if self.answered_by is not None:
            values["engine"] = self.answered_by
        if self.cost_usd is not None:
            values["cost_usd"] = self.cost_usd
        return values


StoredOutcome = StoredResult | StoredFailure
