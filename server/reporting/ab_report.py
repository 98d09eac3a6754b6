"""`triage ab report`: each A/B variant's accuracy against human review, latency and cost, with 95 %
intervals, and a recommendation per candidate against the baseline that says when the sample is too small.

Accuracy: the share of reviewed results whose labels the reviewer kept (Wilson interval); the difference to
the baseline with Newcombe's interval. Latency and cost per classification: means with percentile bootstrap
intervals (both are skewed). The decision rule, stated in every report:

- fewer than `min_reviewed` reviewed results in either arm, or an accuracy interval that is neither clear of
  0 nor inside +-`min_effect`: too small to decide (with the reviewed results per arm that detecting
  `min_effect` needs at 95 % and 80 % power, and the difference the current samples can detect);
- accuracy interval above 0: promote the candidate; below 0: keep the baseline;
- accuracy interval inside +-`min_effect` (equivalent): promote only when it is significantly cheaper or
  faster and neither dearer nor slower, else keep the baseline.

Review is not random (unsure answers are reviewed more), so accuracy here is accuracy on reviewed tickets;
both arms are reviewed by the same rule, which keeps the comparison fair."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.orm import Session

from server.reporting.data import LABEL_FIELDS, ResultRow, load_results
from server.reporting.stats import (
    Interval,
    bootstrap_diff,
    bootstrap_mean,
    min_detectable_difference,
    newcombe_diff,
    percentile,
    required_per_arm,
    wilson,
)

__all__ = ["AbReport", "Comparison", "VariantStats", "ab_report"]

Verdict = Literal["promote", "keep", "too_small"]
NO_VARIANT = "(none)"  # results stored without a variant: before the test, or with it off


def _iv(value: Interval | None) -> dict[str, float] | None:
    return value.to_json() if value is not None else None


@dataclass(frozen=True)
class VariantStats:
    name: str
    results: int  # answered (status done)
    failed: int
    reviewed: int
    kept: int  # reviewed results with no label overridden
    accuracy: Interval | None
    field_accuracy: dict[str, Interval | None]
    latency_ms: Interval | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_usd: Interval | None  # per classification
    cost_total_usd: float
    routes: dict[str, int]
    latencies: tuple[float, ...]
    costs: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.name,
            "results": self.results,
            "failed": self.failed,
            "reviewed": self.reviewed,
            "kept": self.kept,
            "accuracy": _iv(self.accuracy),
            "field_accuracy": {k: _iv(v) for k, v in self.field_accuracy.items()},
            "latency_ms": _iv(self.latency_ms),
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "cost_usd": _iv(self.cost_usd),
            "cost_total_usd": self.cost_total_usd,
            "routes": self.routes,
        }


@dataclass(frozen=True)
class Comparison:
    variant: str
    baseline: str
    accuracy_diff: Interval | None  # variant - baseline
    detectable_diff: float | None  # what these samples detect (95 %, 80 % power)
    needed_per_arm: int  # reviewed results per arm to detect min_effect
    latency_diff_ms: Interval | None
    cost_diff_usd: Interval | None
    verdict: Verdict
    recommendation: str

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "baseline": self.baseline,
            "accuracy_diff": _iv(self.accuracy_diff),
            "detectable_diff": self.detectable_diff,
            "needed_per_arm": self.needed_per_arm,
            "latency_diff_ms": _iv(self.latency_diff_ms),
            "cost_diff_usd": _iv(self.cost_diff_usd),
            "verdict": self.verdict,
            "recommendation": self.recommendation,
        }


@dataclass(frozen=True)
class AbReport:
    since: datetime
    until: datetime
    baseline: str | None
    min_effect: float
    min_reviewed: int
    variants: tuple[VariantStats, ...]
    comparisons: tuple[Comparison, ...]

    def variant(self, name: str) -> VariantStats:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "baseline": self.baseline,
            "rule": {
                "min_effect": self.min_effect,
                "min_reviewed": self.min_reviewed,
                "confidence": 0.95,
                "power": 0.8,
            },
            "variants": [v.to_json() for v in self.variants],
            "comparisons": [c.to_json() for c in self.comparisons],
        }

    def to_text(self) -> str:
        lines = [f"A/B report {self.since:%Y-%m-%d %H:%M} .. {self.until:%Y-%m-%d %H:%M} UTC, baseline {self.baseline}"]
        lines.append(
            f"{'variant':<16}{'results':>8}{'reviewed':>9}  {'accuracy [95% CI]':<22}{'latency ms [CI]':<24}cost/ticket USD [CI]"
        )
        for v in self.variants:
            lines.append(
                f"{v.name:<16}{v.results:>8}{v.reviewed:>9}  {_fmt(v.accuracy, '.3f'):<22}"
                f"{_fmt(v.latency_ms, '.1f'):<24}{_fmt(v.cost_usd, '.6f')}"
            )
        lines.append(
            f"rule: decide at 95 % with 80 % power on an accuracy difference of {self.min_effect:.0%}, "
            f"at least {self.min_reviewed} reviewed per arm"
        )
        lines += [f"- {c.variant} vs {c.baseline}: {c.verdict.upper()}: {c.recommendation}" for c in self.comparisons]
        return "\n".join(lines)


def _fmt(value: Interval | None, spec: str) -> str:
    if value is None:
        return "-"
    return f"{value.value:{spec}} [{value.low:{spec}}, {value.high:{spec}}]"


def _stats(name: str, rows: Sequence[ResultRow]) -> VariantStats:
    done = [r for r in rows if r.status == "done"]
    reviewed = [r for r in done if r.review is not None]
    kept = sum(not r.overridden for r in reviewed)
    field_accuracy: dict[str, Interval | None] = {}
    for f in LABEL_FIELDS:
        seen = [r.review[f] for r in reviewed if r.review is not None and f in r.review]
        field_accuracy[f] = wilson(sum(not x.overridden for x in seen), len(seen))
    latencies = tuple(float(r.latency_ms) for r in done if r.latency_ms is not None)
    costs = tuple(float(r.cost_usd) for r in rows if r.cost_usd is not None)
    routes: dict[str, int] = defaultdict(int)
    for r in done:
        routes[r.route or "unknown"] += 1
    return VariantStats(
        name=name,
        results=len(done),
        failed=len(rows) - len(done),
        reviewed=len(reviewed),
        kept=kept,
        accuracy=wilson(kept, len(reviewed)),
        field_accuracy=field_accuracy,
        latency_ms=bootstrap_mean(latencies),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        cost_usd=bootstrap_mean(costs),
        cost_total_usd=float(sum(costs)),
        routes=dict(routes),
        latencies=latencies,
        costs=costs,
    )


def _compare(v: VariantStats, base: VariantStats, min_effect: float, min_reviewed: int) -> Comparison:
    p_base = base.accuracy.value if base.accuracy is not None else 0.9
    needed = max(required_per_arm(p_base, min_effect), min_reviewed)
    diff = newcombe_diff(v.accuracy, base.accuracy) if v.accuracy and base.accuracy else None
    detectable = (
        min_detectable_difference(v.accuracy.value, v.reviewed, base.accuracy.value, base.reviewed)
        if v.accuracy and base.accuracy
        else None
    )
    latency = bootstrap_diff(v.latencies, base.latencies)
    cost = bootstrap_diff(v.costs, base.costs)
    faster = latency is not None and latency.high < 0
    slower = latency is not None and latency.low > 0
    cheaper = cost is not None and cost.high < 0
    dearer = cost is not None and cost.low > 0

    small = (
        f"too small to decide: {v.reviewed} and {base.reviewed} reviewed; an accuracy difference of "
        f"{min_effect:.0%} needs about {needed} reviewed per arm (95 %, 80 % power)"
        + (f", these samples detect only {detectable:.1%}" if detectable is not None else "")
    )
    verdict: Verdict
    if diff is None or min(v.reviewed, base.reviewed) < min_reviewed:
        verdict, text = "too_small", small
    elif diff.high < 0:
        verdict, text = (
            "keep",
            f"keep {base.name}: accuracy lower by {-diff.value:.1%} [{-diff.high:.1%}, {-diff.low:.1%}]",
        )
    elif diff.low > 0:
        verdict, text = (
            "promote",
            f"promote {v.name}: accuracy higher by {diff.value:.1%} [{diff.low:.1%}, {diff.high:.1%}]",
        )
        if slower or dearer:
            text += " (note: " + ", ".join(w for w, b in (("slower", slower), ("dearer", dearer)) if b) + ")"
    elif -min_effect < diff.low and diff.high < min_effect:
        gains = [w for w, b in (("faster", faster), ("cheaper", cheaper)) if b]
        losses = [w for w, b in (("slower", slower), ("dearer", dearer)) if b]
        if gains and not losses:
            verdict, text = (
                "promote",
                f"promote {v.name}: accuracy equal within {min_effect:.0%} and {' and '.join(gains)}",
            )
        else:
            verdict = "keep"
            text = f"keep {base.name}: accuracy equal within {min_effect:.0%}" + (
                f", {v.name} is {' and '.join(losses)}" if losses else ", no significant latency or cost gain"
            )
    else:
        verdict, text = "too_small", small
    return Comparison(v.name, base.name, diff, detectable, needed, latency, cost, verdict, text)


def ab_report(
    session: Session,
    since: datetime,
    until: datetime,
    *,
    variants: Sequence[str] = (),
    baseline: str | None = None,
    min_effect: float = 0.05,
    min_reviewed: int = 30,
) -> AbReport:
    """Per variant statistics of the results created in [since, until), and each variant against `baseline`
    (default: the first of `variants`, the configured order, else the variant with the most results).
    `variants` also lists configured variants that have no results yet."""
    if not 0 < min_effect < 1:
        raise ValueError("min_effect must be in (0, 1)")
    rows, _ = load_results(session, since, until)
    groups: dict[str, list[ResultRow]] = {name: [] for name in variants}
    for r in rows:
        groups.setdefault(r.variant or NO_VARIANT, []).append(r)
    if NO_VARIANT in groups and len(groups) > 1 and NO_VARIANT not in variants:
        # Results without a variant (before the test, or with it off) are not an arm of the test.
        groups.pop(NO_VARIANT)
    stats = tuple(_stats(name, group) for name, group in groups.items())
    if baseline is None and stats:
        baseline = variants[0] if variants else max(stats, key=lambda s: s.results).name
    if baseline is not None and baseline not in groups:
        raise ValueError(f"baseline {baseline!r} has no results and is not configured")
    base = next((s for s in stats if s.name == baseline), None)
    comparisons = tuple(
        _compare(s, base, min_effect, min_reviewed) for s in stats if base is not None and s.name != base.name
    )
    return AbReport(since, until, baseline, min_effect, min_reviewed, stats, comparisons)
