"""Which output fields a request asks for (`"fields": [...]` on /v1/classify and per batch item, or the
deployment's `api.default_fields`).

A selection is a tuple of output field names in the taxonomy's layout order, or None for "every field"
(the default, and what a selection naming every field is normalised to, so that such a request shares
the full answer's cache entries and storage shape). Only label fields asked: the engine answers from
the label decisions alone (prefill + label choice steps, no free text decoded).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from server.results import label_of, set_label
from server.schema import output_layout
from server.taxonomy import Taxonomy

FieldSelection = tuple[str, ...] | None


class UnknownFields(ValueError):
    """A requested name is not an output field of the taxonomy (the API answers 422 with this message)."""


def output_fields(taxonomy: Taxonomy) -> tuple[str, ...]:
    """Every output field name of the taxonomy, in layout order (labels, extracted info, reasoning)."""
    return tuple(slot.name for slot in output_layout(taxonomy))


def resolve_fields(requested: Iterable[str] | None, taxonomy: Taxonomy) -> FieldSelection:
    """Validate and normalise a request's selection: None or every field -> None; duplicates are
    dropped and the order is the layout's. An unknown name raises UnknownFields naming it."""
    if requested is None:
        return None
    asked = list(requested)
    known = output_fields(taxonomy)
    unknown = [name for name in dict.fromkeys(asked) if name not in known]
    if unknown:
        raise UnknownFields(
            f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: "
            f"the output fields of taxonomy {taxonomy.key} are {', '.join(known)}"
        )
    if not asked:
        raise UnknownFields("fields is empty: name at least one output field, or leave it out for all")
    chosen = tuple(name for name in known if name in set(asked))
    return None if chosen == known else chosen


def is_labels_only(fields: FieldSelection, taxonomy: Taxonomy) -> bool:
    """Only label fields asked: no free text needs decoding."""
    if fields is None:
        return False
    labels = {spec.name for spec in taxonomy.label_fields}
    return all(name in labels for name in fields)


def trim_output(output: Mapping[str, Any], fields: FieldSelection, taxonomy: Taxonomy) -> dict[str, Any]:
    """The answer's JSON with only the asked fields (all of it for None), in the answer's own shape."""
    if fields is None:
        return dict(output)
    trimmed: dict[str, Any] = {}
    for name in fields:
        spec = taxonomy.field(name) if name != "reasoning" else None
        if spec is None:
            trimmed[name] = output.get(name)
        else:
            set_label(trimmed, name, label_of(output, name), in_extracted_info=spec.in_extracted_info)
    return trimmed


def trim_confidence(confidence: Mapping[str, float | None], fields: FieldSelection) -> dict[str, float | None]:
    """Confidences of the asked label fields only: the routing thresholds then apply to what was asked."""
    if fields is None:
        return dict(confidence)
    return {name: confidence[name] for name in fields if name in confidence}
