"""Answer shapes the stages build: a reviewer's view of the labels, and the all-null answer."""

from __future__ import annotations

from typing import Any

from server.results import label_of, set_label
from server.schema import output_layout
from server.taxonomy import Taxonomy


def label_fields_of(output: dict[str, Any], taxonomy: Taxonomy) -> dict[str, Any]:
    """The closed-set labels of an answer, in the answer's shape (what a reviewer needs to see)."""
    labels: dict[str, Any] = {}
    for spec in taxonomy.label_fields:
        set_label(labels, spec.name, label_of(output, spec.name), in_extracted_info=spec.in_extracted_info)
    return labels


def null_output(taxonomy: Taxonomy) -> dict[str, Any]:
    """The taxonomy's output shape with every field null (no answer)."""
    shape: dict[str, Any] = {}
    for slot in output_layout(taxonomy):
        target = shape.setdefault(slot.path[0], {}) if len(slot.path) == 2 else shape
        target[slot.name] = None
    return shape
