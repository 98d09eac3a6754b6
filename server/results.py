"""What a classification is, named once: the answer's JSON with one label accessor, and the closed
vocabularies (routes, languages, cache kinds, review reasons) shared by the API, the router, the
store, the evaluation and the metrics.

The answer's JSON keeps the taxonomy's shape (labels at the top level or under `extracted_info`);
`label_of` is the only code that knows where a field lives, so callers ask for a field by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

# How a ticket was settled: answered locally (with or without a second look), by the hosted
# fallback, left for a human, or served from the result cache.
Route = Literal["local", "local+review", "hosted", "human", "cache"]
ROUTES: tuple[Route, ...] = get_args(Route)
# Answers worth caching: a human-bound ticket has no trustworthy answer, a cached one is cached already.
CACHEABLE_ROUTES: tuple[Route, ...] = ("local", "local+review", "hosted")

# Why a ticket is in the review queue besides its low label fields (those are keyed by field name).
OtherReason = Literal["hosted_invalid", "deadline", "fallback_unavailable"]
OTHER_REASONS: tuple[OtherReason, ...] = get_args(OtherReason)

CacheKind = Literal["exact", "near"]
CACHE_KINDS: tuple[CacheKind, ...] = get_args(CacheKind)

# The languages the tickets taxonomy is trained and evaluated on; "unknown" is what detection says otherwise.
Language = Literal["en", "de", "es", "fr", "pt"]
LANGUAGES: tuple[Language, ...] = get_args(Language)
DetectedLanguage = Literal[Language, Literal["unknown"]]

EXTRACTED_INFO = "extracted_info"


def label_of(output: Mapping[str, Any] | None, name: str) -> Any:
    """The value of field `name` in an answer's JSON, wherever the taxonomy puts it; None when absent.

    Field names are unique across the top level and `extracted_info` (the taxonomy loader refuses
    duplicates), so the name alone finds the field."""
    if not isinstance(output, Mapping):
        return None
    if name in output and name != EXTRACTED_INFO:
        return output[name]
    info = output.get(EXTRACTED_INFO)
    return info.get(name) if isinstance(info, Mapping) else None


def correction_of(corrections: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """(whether a reviewer's corrections set field `name`, the value set), wherever the taxonomy puts the
    field: `label_of` for corrections, where a value set to null differs from one not corrected."""
    if name in corrections and name != EXTRACTED_INFO:
        return True, corrections[name]
    info = corrections.get(EXTRACTED_INFO)
    if isinstance(info, Mapping) and name in info:
        return True, info[name]
    return False, None


def set_label(output: dict[str, Any], name: str, value: Any, *, in_extracted_info: bool) -> None:
    """Write field `name` where the taxonomy puts it (the one writer beside the one reader)."""
    if in_extracted_info:
        info = output.get(EXTRACTED_INFO)
        if not isinstance(info, dict):
            info = output[EXTRACTED_INFO] = {}
        info[name] = value
    else:
        output[name] = value


@dataclass
class ClassificationResult:
    """One model's answer to one ticket: the schema-conformant JSON and what the decoder measured.

    Every backend returns it; the router, the cache, the store and the evaluation read labels with
    `label()` instead of walking the JSON."""

    output: dict[str, Any]  # the schema-conformant JSON object
    confidence: dict[str, float | None]  # per label field, from token probabilities (calibrated)
    raw_text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool
    prompt_version: str
    extra: dict[str, Any] = field(default_factory=dict)

    def label(self, name: str) -> Any:
        return label_of(self.output, name)
