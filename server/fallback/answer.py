"""Turning a provider's answer into the taxonomy's output shape, keeping what is individually valid.

A hosted answer is never trusted as a whole: structured output is a request, not a guarantee (a
compatible server may ignore it, a reply may be cut off at the token limit). Each field is checked
on its own so one bad value costs that field, not the answer; `valid` tells the caller to flag review.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from server.extraction import candidate_spans, ticket_texts
from server.prompts import TicketInput
from server.results import label_of, set_label
from server.schema import Slot, output_layout, output_model
from server.taxonomy import Taxonomy

from .prompt import FIELD_ORDER


@dataclass(frozen=True)
class TokenLogprob:
    token: bytes  # the token's UTF-8 bytes: offsets stay right when a character is split across tokens
    logprob: float


@dataclass
class CheckedAnswer:
    output: dict[str, Any]
    valid: bool
    errors: list[str] = field(default_factory=list)


def _json_string_or_null(name: str) -> re.Pattern[str]:
    return re.compile(r'"' + re.escape(name) + r'"\s*:\s*("(?:[^"\\]|\\.)*"|null)')


def _salvage(text: str, layout: Sequence[Slot]) -> dict[str, Any]:
    """Pull `"field": "value"` pairs out of text that is not valid JSON (e.g. cut off mid-answer).

    Field names are unique across the taxonomy (nested ones included), so a flat search is unambiguous.
    """
    data: dict[str, Any] = {}
    for slot in layout:
        match = _json_string_or_null(slot.name).search(text)
        if not match:
            continue
        try:
            value = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        target = data.setdefault("extracted_info", {}) if len(slot.path) == 2 else data
        target[slot.name] = value
    return data


def _slot_value(data: dict[str, Any], slot: Slot) -> tuple[bool, Any]:
    container: Any = data
    for key in slot.path:
        if not isinstance(container, dict) or key not in container:
            return False, None
        container = container[key]
    return True, container


def _check_slot(slot: Slot, present: bool, value: Any) -> str | None:
    """Why this value is unusable, or None when it can be kept."""
    name = ".".join(slot.path)
    if not present:
        return f"{name}: missing"
    if slot.spec.is_label:
        if value not in slot.spec.values:
            return f"{name}: {str(value)[:40]!r} is not one of {', '.join(slot.spec.labels)}"
        return None
    if value is None:
        return None if slot.nullable else f"{name}: must not be null"
    return None if isinstance(value, str) else f"{name}: must be a string"


def _empty_shape(layout: Sequence[Slot]) -> dict[str, Any]:
    shape: dict[str, Any] = {}
    for slot in layout:
        target = shape.setdefault(slot.path[0], {}) if len(slot.path) == 2 else shape
        target[slot.name] = None
    return shape


def check_answer(taxonomy: Taxonomy, raw: str | dict[str, Any] | None) -> CheckedAnswer:
    """Validate against `output_model(taxonomy, "labels_first")`; on failure keep the valid fields, the rest None."""
    layout = output_layout(taxonomy, FIELD_ORDER)
    errors: list[str] = []
    data: Any = raw
    if raw is None:
        return CheckedAnswer(_empty_shape(layout), False, ["no answer in the response"])
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(f"malformed JSON: {exc.msg} at {exc.pos}")
            data = _salvage(raw, layout)
    if not isinstance(data, dict):
        return CheckedAnswer(
            _empty_shape(layout), False, [*errors, f"answer is a {type(data).__name__}, not an object"]
        )
    if not errors:
        try:
            model = output_model(taxonomy, FIELD_ORDER).model_validate(data)
            return CheckedAnswer(model.model_dump(), True, [])
        except ValidationError as exc:
            for err in exc.errors():
                if err["type"] == "extra_forbidden":  # per-field checks below cannot see extra keys
                    errors.append(f"{'.'.join(str(p) for p in err['loc'])}: unexpected field, dropped")
    output = _empty_shape(layout)
    for slot in layout:
        present, value = _slot_value(data, slot)
        problem = _check_slot(slot, present, value)
        if problem:
            errors.append(problem)
            continue
        target = output[slot.path[0]] if len(slot.path) == 2 else output
        target[slot.name] = value
    return CheckedAnswer(output, False, errors or ["answer failed validation"])


def drop_invented(taxonomy: Taxonomy, output: dict[str, Any], ticket: TicketInput) -> list[str]:
    """Copy-only fields (error codes) must be spans of the ticket, as the local decoder guarantees: a hosted
    value that is not one is set to null. Returns a note per dropped value."""
    notes: list[str] = []
    spans: list[str] | None = None
    for spec in taxonomy.extracted_info:
        if not spec.copy_only:
            continue
        value = label_of(output, spec.name)
        if value is None:
            continue
        spans = (
            spans
            if spans is not None
            else candidate_spans(ticket_texts(ticket.subject, ticket.body, ticket.previous_interactions))
        )
        if value not in spans:
            set_label(output, spec.name, None, in_extracted_info=True)
            notes.append(f"extracted_info.{spec.name}: {str(value)[:40]!r} is not a span of the ticket, dropped")
    return notes


def label_confidence(
    taxonomy: Taxonomy, output: dict[str, Any], tokens: Sequence[TokenLogprob] | None
) -> dict[str, float | None]:
    """Per label field: exp(sum of the logprobs of the tokens that spell the chosen value).

    That is P(label string | everything the model wrote before it), the same quantity the local
    engine reports. Approximations: a token that straddles the value's edge (e.g. `Billing"`) is counted
    whole, which adds the probability of the quote - near 1 under structured output; the value is found
    at the first `"field": "value"` in the token stream, and a label the model wrote with JSON escapes
    (\\u...) is not found (None). It is not renormalised over the allowed labels, unlike a softmax over
    them; top_logprobs are not used. None when the provider offered no logprobs or the field is invalid.
    """
    result: dict[str, float | None] = {spec.name: None for spec in taxonomy.label_fields}
    if not tokens:
        return result
    text = b"".join(t.token for t in tokens)
    starts: list[int] = []
    offset = 0
    for t in tokens:
        starts.append(offset)
        offset += len(t.token)
    for spec in taxonomy.label_fields:
        value = label_of(output, spec.name)
        if not isinstance(value, str):
            continue
        pattern = rb'"' + re.escape(spec.name.encode()) + rb'"\s*:\s*"(' + re.escape(value.encode()) + rb')"'
        match = re.search(pattern, text)
        if not match:
            continue
        lo, hi = match.span(1)
        total = sum(t.logprob for t, s in zip(tokens, starts) if s < hi and s + len(t.token) > lo)
        result[spec.name] = min(1.0, math.exp(total))
    return result
