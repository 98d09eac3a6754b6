"""The report's PNG plots (matplotlib, Agg: no display needed). Each plot draws counts only, no ticket text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: servers and CI have no display

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

__all__ = ["bar_plot", "confidence_plot", "confusion_plot", "latency_plot"]


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def bar_plot(path: Path, labels: Sequence[str], values: Sequence[float], *, title: str, xlabel: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.4 * len(labels) + 1)))
    ax.barh(list(labels)[::-1], list(values)[::-1], color="#4c72b0")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _save(fig, path)


def confusion_plot(path: Path, pairs: Mapping[tuple[str, str], int], *, title: str) -> Path:
    """Predicted (rows) against corrected (columns), overridden results only."""
    predicted = sorted({p for p, _ in pairs})
    corrected = sorted({c for _, c in pairs})
    grid = [[pairs.get((p, c), 0) for c in corrected] for p in predicted]
    fig, ax = plt.subplots(figsize=(2 + 0.8 * len(corrected), 1.5 + 0.5 * len(predicted)))
    image = ax.imshow(grid, cmap="Reds", aspect="auto")
    ax.set_xticks(range(len(corrected)), corrected, rotation=45, ha="right")
    ax.set_yticks(range(len(predicted)), predicted)
    ax.set_xlabel("corrected to")
    ax.set_ylabel("predicted")
    for i, row in enumerate(grid):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, str(n), ha="center", va="center")
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    return _save(fig, path)


def confidence_plot(
    path: Path, bins: Sequence[str], reference: Mapping[str, int], recent: Mapping[str, int], *, title: str
) -> Path:
    """Shares per fixed confidence bin, the reference window beside the recent one (the drift PSI's inputs)."""
    ref_total = sum(reference.values()) or 1
    rec_total = sum(recent.values()) or 1
    x = range(len(bins))
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar([i - 0.2 for i in x], [reference.get(b, 0) / ref_total for b in bins], width=0.4, label="reference")
    ax.bar([i + 0.2 for i in x], [recent.get(b, 0) / rec_total for b in bins], width=0.4, label="recent")
    ax.set_xticks(list(x), list(bins), rotation=45, ha="right")
    ax.set_ylabel("share")
    ax.legend()
    ax.set_title(title)
    return _save(fig, path)


def latency_plot(path: Path, latencies_ms: Sequence[float], percentiles: Mapping[str, float | None]) -> Path:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.hist(list(latencies_ms), bins=40, color="#55a868")
    for name, value in percentiles.items():
        if value is not None:
            ax.axvline(value, linestyle="--", color="black")
            ax.text(value, ax.get_ylim()[1] * 0.9, f" {name}", rotation=90, va="top")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("results")
    ax.set_title("Latency")
    return _save(fig, path)
