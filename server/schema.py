"""The model's output structure, built once from a taxonomy and a field order.

One pydantic model -> one JSON schema. The Outlines reference engine compiles that schema; the
batched engine walks the same structure (`output_layout`) field by field, and tests check that
whatever it writes matches the regex Outlines builds from this schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, create_model

from server.taxonomy import FieldSpec, Taxonomy

FieldOrder = Literal["labels_first", "reasoning_first", "labels_then_text"]
FIELD_ORDERS: tuple[str, ...] = ("labels_first", "reasoning_first", "labels_then_text")
REASONING = FieldSpec(name="reasoning", description="One short English sentence justifying the labels.")


@dataclass(frozen=True)
class Slot:
    """A value in the output JSON: `path` is its key path, e.g. ("extracted_info", "product")."""

    path: tuple[str, ...]
    spec: FieldSpec
    nullable: bool

    @property
    def name(self) -> str:
        return self.path[-1]


def output_layout(taxonomy: Taxonomy, field_order: FieldOrder = "labels_first") -> list[Slot]:
    """The fields in the order the model writes them."""
    slots = [Slot((f.name,), f, nullable=False) for f in taxonomy.labels]
    nested = list(taxonomy.extracted_info)
    if field_order == "labels_then_text":
        # Every label (sentiment too) is decided before any free text: a labels-only pass (calibration,
        # quick evals) can stop at the first text field and still get exactly the full run's labels.
        nested.sort(key=lambda f: not f.is_label)
    slots += [Slot(("extracted_info", f.name), f, nullable=not f.is_label) for f in nested]
    if taxonomy.reasoning:
        reasoning = Slot(("reasoning",), REASONING, nullable=False)
        slots = [reasoning, *slots] if field_order == "reasoning_first" else [*slots, reasoning]
    return slots


def _annotation(slot: Slot, extra_label: str | None = None) -> Any:
    if slot.spec.is_label:
        return Literal[tuple(slot.spec.labels + ([extra_label] if extra_label else []))]
    return (str | None) if slot.nullable else str


@lru_cache(maxsize=32)
def output_model(taxonomy: Taxonomy, field_order: FieldOrder = "labels_first") -> type[BaseModel]:
    """Pydantic model of the generated JSON; keys appear in writing order (Outlines keeps that order)."""
    strict = ConfigDict(extra="forbid")
    layout = output_layout(taxonomy, field_order)
    top: dict[str, Any] = {}
    # An out-of-scope label is a valid answer (set after decoding), though the model never writes it.
    nested = {s.name: (_annotation(s, taxonomy.out_of_scope_label(s.name)), ...) for s in layout if len(s.path) == 2}
    info_model = create_model("ExtractedInfo", __config__=strict, **nested) if nested else None  # type: ignore[call-overload]  # field specs are built at run time
    for slot in layout:
        if len(slot.path) == 1:
            top[slot.name] = (_annotation(slot, taxonomy.out_of_scope_label(slot.name)), ...)
        elif "extracted_info" not in top:
            top["extracted_info"] = (info_model, ...)
    return create_model(f"Classification_{taxonomy.name}", __config__=strict, **top)


@lru_cache(maxsize=32)
def output_json_schema(taxonomy: Taxonomy, field_order: FieldOrder = "labels_first") -> str:
    return json.dumps(output_model(taxonomy, field_order).model_json_schema())


def example_output(taxonomy: Taxonomy, field_order: FieldOrder = "labels_first") -> str:
    """A format example for the prompt: first label of each field, placeholders for text."""
    obj: dict[str, Any] = {}
    for slot in output_layout(taxonomy, field_order):
        value: Any = slot.spec.labels[0] if slot.spec.is_label else f"<{slot.name}>"
        target = obj.setdefault(slot.path[0], {}) if len(slot.path) == 2 else obj
        target[slot.name] = value
    return json.dumps(obj, ensure_ascii=False)
