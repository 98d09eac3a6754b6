"""What the result cache keeps per ticket: one typed record, serialised as the JSON object that
Redis and older replicas already read and write (keys unchanged: `output`, `confidence`, `engine`,
`model`, `prompt_version`, `input_truncated`, `route`).

What of an entry may be served to which ticket: its labels (the taxonomy's closed-set fields) to any
ticket near enough; its free text (product, error code, reasoning: copied from or written about one
ticket, personal data included) only to the same ticket, an exact hit. `without_free_text` is the
labels-only form a near hit gets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from server.engines.base import ModelInfo
from server.results import Route
from server.schema import output_layout
from server.taxonomy import Taxonomy


def free_text_fields(taxonomy: Taxonomy) -> tuple[str, ...]:
    """The output fields that are not labels (e.g. product, error_code, reasoning), in layout order."""
    return tuple(slot.name for slot in output_layout(taxonomy) if not slot.spec.is_label)


def without_free_text(output: Mapping[str, Any], taxonomy: Taxonomy) -> dict[str, Any]:
    """A copy of the answer's JSON with every free-text field that it carries set to null (labels kept,
    the shape unchanged)."""
    out = dict(output)
    for slot in output_layout(taxonomy):
        if slot.spec.is_label:
            continue
        if len(slot.path) == 1:
            if slot.name in out:
                out[slot.name] = None
            continue
        parent = out.get(slot.path[0])
        if isinstance(parent, Mapping) and slot.name in parent:
            out[slot.path[0]] = {**parent, slot.name: None}
    return out


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

    def labels_only(self, taxonomy: Taxonomy) -> CachedAnswer:
        """This entry with its free text nulled: what may be served to another ticket."""
        return replace(self, output=without_free_text(self.output, taxonomy))
