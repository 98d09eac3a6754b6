"""The statistics of the reports, small and dependency-light (numpy only): Wilson intervals for a share,
Newcombe's interval for a difference of shares, a bootstrap interval for a mean and its difference, the
minimum detectable difference and the sample a difference needs (two-sided 95 %, 80 % power)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Z_95",
    "Z_POWER_80",
    "Interval",
    "bootstrap_diff",
    "bootstrap_mean",
    "min_detectable_difference",
    "newcombe_diff",
    "percentile",
    "required_per_arm",
    "wilson",
]

Z_95 = 1.959963984540054  # two-sided 95 %
Z_POWER_80 = 0.8416212335729143  # one-sided 80 % power
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


def wilson(successes: int, n: int, z: float = Z_95) -> Interval | None:
    """The Wilson score interval of successes/n (well-behaved at 0, 1 and small n); None for n = 0."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError("successes must be within 0..n")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def newcombe_diff(a: Interval, b: Interval) -> Interval:
    """Newcombe's hybrid score interval for p_a - p_b from the two Wilson intervals (method 10)."""
    d = a.value - b.value
    low = d - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    high = d + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Interval(d, low, high)


def min_detectable_difference(p_a: float, n_a: int, p_b: float, n_b: int) -> float | None:
    """The smallest true difference of two shares these samples find with 80 % power at 95 %; None
    without data. The shares are floored at 0.5/n so a perfect score does not claim infinite precision."""
    if n_a <= 0 or n_b <= 0:
        return None
    pa = min(max(p_a, 0.5 / n_a), 1 - 0.5 / n_a)
    pb = min(max(p_b, 0.5 / n_b), 1 - 0.5 / n_b)
    return (Z_95 + Z_POWER_80) * math.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)


def required_per_arm(p: float, delta: float) -> int:
    """Reviewed tickets per arm to detect a difference `delta` around share `p` (80 % power, 95 %)."""
    if not 0 < delta < 1:
        raise ValueError("delta must be in (0, 1)")
    p = min(max(p, 0.05), 0.95)  # a share of 1.0 would claim no variance at all
    q = min(p + delta, 0.99)
    variance = p * (1 - p) + q * (1 - q)
    return math.ceil((Z_95 + Z_POWER_80) ** 2 * variance / delta**2)


def percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else None


def bootstrap_mean(values: Sequence[float], *, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES) -> Interval | None:
    """The mean with a percentile bootstrap 95 % interval (latency and cost are skewed: no normality
    assumed). Seeded: the same data gives the same report."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None
    if data.size == 1:
        return Interval(float(data[0]), float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(data.mean()), float(low), float(high))


def bootstrap_diff(
    a: Sequence[float], b: Sequence[float], *, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES
) -> Interval | None:
    """mean(a) - mean(b) with a percentile bootstrap 95 % interval (each sample resampled on its own)."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.size < 2 or xb.size < 2:
        return None
    rng = np.random.default_rng(seed)
    ma = xa[rng.integers(0, xa.size, size=(samples, xa.size))].mean(axis=1)
    mb = xb[rng.integers(0, xb.size, size=(samples, xb.size))].mean(axis=1)
    low, high = np.percentile(ma - mb, [2.5, 97.5])
    return Interval(float(xa.mean() - xb.mean()), float(low), float(high))
