"""A/B tests of prompts and adapters on live traffic (settings `ab`).

A ticket id is hashed with the salt into [0, 1) and falls in one variant's slice of the cumulative
weights: the assignment is a pure function of (salt, variants, ticket id), so a ticket keeps its variant
across requests, processes and replicas without any shared state. A variant answers with:

- the engine profile it names (`engine`: 'default' or a key of routing.engines), or
- a profile of its own, `ab:<name>`, built from the default model with its adapter and/or prompt version
  (`variant_profiles`; the app builds its engine like any routing.engines profile), or
- nothing of its own (the control): the profile the rule table picks.

The variant's name is stored with every result (classifications.variant) and labels the metrics.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

from server.config import AbSettings, AbVariant, EngineProfile, Settings

__all__ = ["AB_PROFILE_PREFIX", "AbSplit", "Variant", "bucket", "variant_profiles"]

AB_PROFILE_PREFIX = "ab:"


def bucket(salt: str, ticket_id: str) -> float:
    """A uniform number in [0, 1) for the ticket: the first 8 bytes of sha256(salt NUL ticket_id).
    A cryptographic hash, so neighbouring ids (t_1, t_2, ...) do not land in neighbouring slices."""
    digest = hashlib.sha256(f"{salt}\x00{ticket_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _own_profile(variant: AbVariant) -> bool:
    return variant.engine is None and (variant.adapter is not None or variant.prompt_version is not None)


def variant_profiles(settings: Settings) -> dict[str, EngineProfile]:
    """The engine profiles the A/B variants build (name `ab:<variant>`): the default model with the
    variant's adapter and/or prompt version. Empty when the test is off."""
    if not settings.ab.enabled:
        return {}
    out: dict[str, EngineProfile] = {}
    for v in settings.ab.variants:
        if not _own_profile(v):
            continue
        name = AB_PROFILE_PREFIX + v.name
        if name in settings.routing.engines:
            raise ValueError(f"routing.engines already has a profile named {name!r}, the A/B variant's")
        # No adapter of its own: the default model's adapter, so a prompt-only variant differs by the prompt alone.
        out[name] = EngineProfile(
            adapter=v.adapter if v.adapter is not None else settings.model.adapter,
            prompt_version=v.prompt_version,
        )
    return out


@dataclass(frozen=True)
class Variant:
    name: str
    share: float  # of the traffic, in [0, 1]
    profile: str | None  # the engine profile answering it; None: the rule table's choice (control)


class AbSplit:
    """Deterministic assignment of ticket ids to variants by weight."""

    def __init__(self, settings: AbSettings) -> None:
        if len(settings.variants) < 1:
            raise ValueError("an A/B split needs variants")
        total = sum(v.weight for v in settings.variants)
        self.salt = settings.salt
        self.variants = tuple(
            Variant(
                v.name,
                v.weight / total,
                v.engine if v.engine is not None else (AB_PROFILE_PREFIX + v.name if _own_profile(v) else None),
            )
            for v in settings.variants
        )
        # Upper edges of each variant's slice; the last is forced to 1 so rounding cannot leave a gap.
        edges = list(accumulate(v.share for v in self.variants))
        edges[-1] = 1.0
        self._edges = edges

    @classmethod
    def from_settings(cls, settings: Settings) -> AbSplit | None:
        return cls(settings.ab) if settings.ab.enabled else None

    @property
    def profiles(self) -> set[str]:
        return {v.profile for v in self.variants if v.profile is not None}

    def assign(self, ticket_id: str) -> Variant:
        index = bisect_right(self._edges, bucket(self.salt, ticket_id))
        return self.variants[min(index, len(self.variants) - 1)]
