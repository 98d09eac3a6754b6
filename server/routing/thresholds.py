"""The routing threshold rule, in one place (routing, `triage classify` and the evaluation share it): a label field is unsure when its confidence is missing or
under its threshold (`routing.field_thresholds[field]`, else `routing.confidence_threshold`)."""

from __future__ import annotations

from collections.abc import Mapping

from server.config import RoutingSettings


def field_threshold(routing: RoutingSettings, name: str) -> float:
    return routing.field_thresholds.get(name, routing.confidence_threshold)


def is_unsure(routing: RoutingSettings, name: str, confidence: float | None) -> bool:
    # A null confidence (a backend without scores) is unsure: it cannot show it clears the bar.
    return confidence is None or confidence < field_threshold(routing, name)


def unsure_fields(routing: RoutingSettings, confidence: Mapping[str, float | None]) -> list[str]:
    """The fields of `confidence` under their thresholds, in its order."""
    return [name for name, c in confidence.items() if is_unsure(routing, name, c)]
