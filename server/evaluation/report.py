"""Render evaluation results as JSON, Markdown and PNG charts.

Charts are drawn on the non-interactive Agg backend (the server and CI have no display) through
``matplotlib.figure.Figure`` objects rather than pyplot's global state, so concurrent requests in a
server process cannot draw into each other's figures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before any pyplot import anywhere in this process: never open a window

from matplotlib.figure import Figure  # noqa: E402

from .metrics import ece_from_bins  # noqa: E402


def _save(fig: Figure, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", dpi=110, bbox_inches="tight")
    return out


def plot_confusion_matrix(labels: Sequence[str], matrix: Sequence[Sequence[int]], path: str | Path, title: str) -> Path:
    """Counts annotated in each cell; colour is row-normalised so thin classes stay readable."""
    counts = [[int(v) for v in row] for row in matrix]
    shaded = [[v / (sum(row) or 1) for v in row] for row in counts]
    size = max(4.0, 0.7 * len(labels) + 2.5)
    fig = Figure(figsize=(size, size))
    ax = fig.add_subplot()
    im = ax.imshow(shaded, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=list(labels))
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    for r, row in enumerate(counts):
        for c, v in enumerate(row):
            ax.text(c, r, str(v), ha="center", va="center", color="white" if shaded[r][c] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of gold row")
    return _save(fig, path)


def plot_reliability_diagram(bins: Sequence[dict[str, Any]], path: str | Path, title: str) -> Path:
    """Accuracy per confidence bin (bars; counts at their base) vs mean confidence (dots) and the diagonal."""
    fig = Figure(figsize=(5.5, 5.0))
    ax = fig.add_subplot()
    for b in bins:
        width = b["upper"] - b["lower"]
        centre = b["lower"] + width / 2
        height = b["accuracy"] if b["count"] else 0.0
        ax.bar(centre, height, width=width, color="tab:blue", edgecolor="black", linewidth=0.5)
        if b["count"]:
            ax.text(
                centre,
                0.02,
                str(b["count"]),
                ha="center",
                va="bottom",
                fontsize=7,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "linewidth": 0},
            )
    filled = [b for b in bins if b["count"]]
    ax.plot(
        [b["lower"] + (b["upper"] - b["lower"]) / 2 for b in filled],
        [b["confidence"] for b in filled],
        "o",
        color="tab:red",
        markersize=4,
        label="mean confidence",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"{title} (ECE = {ece_from_bins(bins):.3f}, n = {sum(b['count'] for b in bins)})")
    return _save(fig, path)


def plot_group_bars(group_acc: dict[str, dict[str, Any]], path: str | Path, title: str) -> Path:
    """One bar per group, labelled with n so small slices are not over-read."""
    names = list(group_acc)
    fig = Figure(figsize=(max(4.0, 0.8 * len(names) + 2.0), 4.0))
    ax = fig.add_subplot()
    accs = [group_acc[k]["accuracy"] for k in names]
    ax.bar(range(len(names)), accs, color="tab:green")
    for i, k in enumerate(names):
        ax.text(
            i,
            accs[i] + 0.01 if accs[i] < 0.9 else accs[i] - 0.11,
            f"{accs[i]:.2f}\nn={group_acc[k]['n']}",
            ha="center",
            va="bottom",
            fontsize=8,
            color="black" if accs[i] < 0.9 else "white",
        )
    ax.set_xticks(range(len(names)), labels=names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    return _save(fig, path)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "field"


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines + [""]


def write_report(
    out_dir: str | Path,
    summary: dict[str, Any],
    field_reports: dict[str, dict[str, Any]],
    group_reports: dict[str, dict[str, dict[str, Any]]],
) -> list[Path]:
    """Write report.json, report.md and charts into ``out_dir``; return the written paths.

    ``field_reports`` may mix label fields (from ``field_report``; recognised by their
    ``confusion`` key) and free-text fields (from ``extraction_match``). Confusion matrices are drawn
    for every label field, reliability diagrams only where some row carried a confidence.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    images: dict[str, list[Path]] = {}
    label_fields = {k: v for k, v in field_reports.items() if "confusion" in v}
    text_fields = {k: v for k, v in field_reports.items() if "confusion" not in v}

    for name, rep in label_fields.items():
        slug = _slug(name)
        cm = rep["confusion"]
        images.setdefault(name, []).append(
            plot_confusion_matrix(cm["labels"], cm["matrix"], out / f"confusion_{slug}.png", f"{name}: confusion")
        )
        if rep.get("n_with_confidence") and rep.get("reliability"):
            images[name].append(
                plot_reliability_diagram(rep["reliability"], out / f"reliability_{slug}.png", f"{name}: reliability")
            )
    group_images = {
        name: plot_group_bars(acc, out / f"groups_{_slug(name)}.png", f"accuracy by {name}")
        for name, acc in group_reports.items()
        if acc
    }

    json_path = out / "report.json"
    json_path.write_text(
        json.dumps({"summary": summary, "fields": field_reports, "groups": group_reports}, indent=2, default=str),
        encoding="utf-8",
    )

    md: list[str] = ["# Evaluation report", "", "## Summary", ""]
    md += _table(["key", "value"], [[k, v] for k, v in summary.items()])
    if label_fields:
        md += ["## Label fields", ""]
        md += _table(
            ["field", "n", "accuracy", "macro-F1", "ECE"],
            [[k, r["n"], r["accuracy"], r["macro_f1"], r.get("ece")] for k, r in label_fields.items()],
        )
    if text_fields:
        md += ["## Extraction fields", ""]
        md += _table(
            ["field", "n", "exact match", "presence agreement", "n with gold", "exact match (gold present)"],
            [
                [
                    k,
                    r.get("n"),
                    r.get("exact_match"),
                    r.get("presence_agreement"),
                    r.get("n_gold_present"),
                    r.get("exact_match_gold_present"),
                ]
                for k, r in text_fields.items()
            ],
        )
    for name, rep in label_fields.items():
        md += [f"### {name}", ""]
        md += _table(
            ["label", "precision", "recall", "F1", "support"],
            [[lab, m["precision"], m["recall"], m["f1"], m["support"]] for lab, m in rep["per_label"].items()],
        )
        md += [f"![{name} {p.stem.split('_')[0]}]({p.name})" for p in images.get(name, [])] + [""]
    for name, acc in group_reports.items():
        md += [f"## Accuracy by {name}", ""]
        md += _table([name, "n", "accuracy"], [[g, v["n"], v["accuracy"]] for g, v in acc.items()])
        if name in group_images:
            md += [f"![accuracy by {name}]({group_images[name].name})", ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md), encoding="utf-8")

    written += [json_path, md_path]
    written += [p for ps in images.values() for p in ps]
    written += list(group_images.values())
    return written
