"""What the result cache keeps per ticket: one typed record, serialised as the JSON object that
Redis and older replicas already read and write (keys unchanged: `output`, `confidence`, `engine`,
`model`, `prompt_version`, `input_truncated`, `route`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.engines.base import ModelInfo
from server.results import Route


def model_info_from(data: Mapping[str, Any]) -> ModelInfo:
    return ModelInfo(str(data["base"]), data.get("adapter"), str(data.get("dtype", "")), str(data.get("engine", "")))


@dataclass(frozen=True)
class CachedAnswer:
    """A confident answer as cached: the labels, their confidences and where they came from."""

    output: dict[str, Any]
    confidence: dict[str, float | None]
    answered_by: str  # e.g. transformers:tickets-smollm2-v1 (the JSON key stays "engine")
    model: ModelInfo
    prompt_version: str
    input_truncated: bool
    route: Route

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "confidence": self.confidence,
            "engine": self.answered_by,
            "model": self.model.as_dict(),
            "prompt_version": self.prompt_version,
            "input_truncated": self.input_truncated,
            "route": self.route,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CachedAnswer:
        """Raises KeyError/TypeError/ValueError on an entry of another shape (the caller reads it as a miss)."""
        return cls(
            output=dict(data["output"]),
            confidence=dict(data["confidence"]),
            answered_by=str(data["engine"]),
            model=model_info_from(data["model"]),
            prompt_version=str(data["prompt_version"]),
            input_truncated=bool(data.get("input_truncated", False)),
            route=data.get("route", "local"),
        )
