"""Drift: how far the recent window's answers moved from a reference window, as a population stability
index (PSI) per label field over its label distribution and over its binned confidence distribution.

PSI = sum over bins of (recent - reference) * ln(recent / reference), on shares. The usual reading:
< 0.1 stable, 0.1-0.2 moderate shift, > 0.2 a shift worth a look (the alert threshold).

Only plain columns are read (the label columns and the `confidence` JSON, neither sealed), so drift needs
no data key and never touches ticket text. Shared by the metrics' drift gauge and `triage report`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.store.models import Classification

__all__ = [
    "CONFIDENCE_BINS",
    "DEFAULT_EPSILON",
    "LABEL_FIELDS",
    "DriftReport",
    "FieldDrift",
    "confidence_bin",
    "confidence_histogram",
    "drift",
    "psi",
    "shares",
]

# The label fields stored as plain columns (denormalised from the prediction).
LABEL_FIELDS: tuple[str, ...] = ("category", "priority", "sentiment")

# Ten fixed bins over [0, 1]: fixed edges, so two windows are always binned alike and a histogram from
# last week compares with one from today.
CONFIDENCE_BINS: tuple[str, ...] = tuple(f"{i / 10:.1f}-{(i + 1) / 10:.1f}" for i in range(10))

# The share floor for a bin empty in one window: without it a label that appears (or vanishes) makes the
# log infinite. 1e-4 caps one bin's contribution at about (share) * 9.2, still far above the 0.2 alarm.
DEFAULT_EPSILON = 1e-4


def shares(counts: Mapping[str, float]) -> dict[str, float]:
    """Counts (or unnormalised weights) as shares summing to 1. Raises ValueError when there is nothing."""
    if any(v < 0 or math.isnan(v) for v in counts.values()):
        raise ValueError("counts must be non-negative numbers")
    total = float(sum(counts.values()))
    if total <= 0:
        raise ValueError("an empty distribution has no shares")
    return {k: v / total for k, v in counts.items()}


def psi(reference: Mapping[str, float], recent: Mapping[str, float], *, epsilon: float = DEFAULT_EPSILON) -> float:
    """Population stability index of `recent` against `reference`, over the union of their categories.

    Either argument may hold counts or shares (each is normalised); a category missing from one side or
    with zero share there is floored at `epsilon`. 0 for identical distributions, symmetric in its
    arguments. Raises ValueError when either side is empty (no evidence either way: the caller decides)."""
    if not 0 < epsilon < 1:
        raise ValueError("epsilon must be in (0, 1)")
    ref, rec = shares(reference), shares(recent)
    total = 0.0
    for key in ref.keys() | rec.keys():
        e = max(ref.get(key, 0.0), epsilon)
        a = max(rec.get(key, 0.0), epsilon)
        total += (a - e) * math.log(a / e)
    return total


def confidence_bin(value: float) -> str:
    """The fixed bin of a confidence in [0, 1] (1.0 falls in the last bin; out-of-range values are clamped)."""
    index = min(max(int(value * 10), 0), 9)
    return CONFIDENCE_BINS[index]


def confidence_histogram(values: Iterable[float]) -> dict[str, int]:
    """Counts per fixed bin, every bin present (zeros included) so plots and PSI see the same support."""
    counts = dict.fromkeys(CONFIDENCE_BINS, 0)
    for v in values:
        if isinstance(v, (int, float)) and not math.isnan(v):
            counts[confidence_bin(float(v))] += 1
    return counts


@dataclass(frozen=True)
class FieldDrift:
    """One label field: PSI of its label and confidence distributions (None when a window has no value
    for the field) and the counts they were computed from."""

    field: str
    label_psi: float | None
    confidence_psi: float | None
    reference_labels: dict[str, int]
    recent_labels: dict[str, int]
    reference_confidence: dict[str, int]
    recent_confidence: dict[str, int]


@dataclass(frozen=True)
class DriftReport:
    """The recent window [now - window, now) against the reference window just before it,
    [now - window - reference_window, now - window), over stored results with status done."""

    now: datetime
    window: timedelta
    reference_window: timedelta
    reference_count: int
    recent_count: int
    fields: tuple[FieldDrift, ...]

    def field(self, name: str) -> FieldDrift:
        for f in self.fields:
            if f.field == name:
                return f
        raise KeyError(name)

    @property
    def max_psi(self) -> float | None:
        """The largest PSI over every field and both distributions; None when none could be computed."""
        values = [v for f in self.fields for v in (f.label_psi, f.confidence_psi) if v is not None]
        return max(values) if values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "window_seconds": self.window.total_seconds(),
            "reference_window_seconds": self.reference_window.total_seconds(),
            "reference_count": self.reference_count,
            "recent_count": self.recent_count,
            "max_psi": self.max_psi,
            "fields": [asdict(f) for f in self.fields],
        }


def _maybe_psi(reference: Mapping[str, int], recent: Mapping[str, int]) -> float | None:
    if sum(reference.values()) == 0 or sum(recent.values()) == 0:
        return None
    return psi(reference, recent)


@dataclass
class _Window:
    count: int
    labels: dict[str, Counter[str]]
    confidences: dict[str, list[float]]


def _read_window(session: Session, start: datetime, end: datetime, fields: tuple[str, ...]) -> _Window:
    columns = [getattr(Classification, name) for name in fields]
    rows = session.execute(
        select(Classification.confidence, *columns).where(
            Classification.status == "done",
            Classification.created_at >= start,
            Classification.created_at < end,
        )
    ).all()
    labels: dict[str, Counter[str]] = {name: Counter() for name in fields}
    confidences: dict[str, list[float]] = {name: [] for name in fields}
    for row in rows:
        confidence = row[0] if isinstance(row[0], Mapping) else {}
        for i, name in enumerate(fields, start=1):
            if row[i] is not None:  # a field the request did not ask for, or a human-bound ticket
                labels[name][str(row[i])] += 1
            c = confidence.get(name)
            if isinstance(c, (int, float)) and not isinstance(c, bool):
                confidences[name].append(float(c))
    return _Window(len(rows), labels, confidences)


def drift(
    session: Session,
    *,
    now: datetime,
    window: timedelta,
    reference_window: timedelta,
    fields: tuple[str, ...] = LABEL_FIELDS,
) -> DriftReport:
    """PSI per label field of the recent window against the reference window before it (see DriftReport)."""
    if now.tzinfo is None:
        raise ValueError("now is a naive datetime; pass a timezone-aware one")
    if window <= timedelta(0) or reference_window <= timedelta(0):
        raise ValueError("window and reference_window must be positive")
    unknown = [f for f in fields if f not in LABEL_FIELDS]
    if unknown:
        raise ValueError(f"not a stored label column: {unknown}")
    split = now - window
    recent = _read_window(session, split, now, fields)
    reference = _read_window(session, split - reference_window, split, fields)
    out: list[FieldDrift] = []
    for name in fields:
        ref_labels, rec_labels = dict(reference.labels[name]), dict(recent.labels[name])
        ref_conf = confidence_histogram(reference.confidences[name])
        rec_conf = confidence_histogram(recent.confidences[name])
        out.append(
            FieldDrift(
                field=name,
                label_psi=_maybe_psi(ref_labels, rec_labels),
                confidence_psi=_maybe_psi(ref_conf, rec_conf),
                reference_labels=ref_labels,
                recent_labels=rec_labels,
                reference_confidence=ref_conf,
                recent_confidence=rec_conf,
            )
        )
    return DriftReport(now, window, reference_window, reference.count, recent.count, tuple(out))
