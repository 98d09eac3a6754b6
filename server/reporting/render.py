"""The weekly report on disk: report.md with the PNG plots beside it, and report.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.drift import CONFIDENCE_BINS
from server.reporting.report import WeeklyReport

__all__ = ["write_report"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _num(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else f"{value:{spec}}"


def _acc(acc: dict[str, float] | None) -> str:
    return "-" if acc is None else f"{acc['value']:.1%} [{acc['low']:.1%}, {acc['high']:.1%}]"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["_none_", ""]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def write_report(report: WeeklyReport, out: Path) -> list[Path]:
    """Write report.md, report.json and the plots into `out` (created); returns the files written."""
    from server.reporting import plots

    out.mkdir(parents=True, exist_ok=True)
    d = report.data
    written: list[Path] = []
    images: dict[str, str] = {}

    if d["most_overridden"]:
        labels = [f"{o['field']}={o['label']}" for o in d["most_overridden"]]
        values = [o["overridden"] for o in d["most_overridden"]]
        written.append(
            plots.bar_plot(out / "overrides.png", labels, values, title="Most overridden labels", xlabel="overridden")
        )
        images["overrides"] = "overrides.png"
    if report.confusion.get("category"):
        written.append(
            plots.confusion_plot(
                out / "confusion.png", report.confusion["category"], title="Category: predicted -> corrected"
            )
        )
        images["confusion"] = "confusion.png"
    category = next((f for f in d["drift"]["fields"] if f["field"] == "category"), None)
    if category is not None and (
        sum(category["recent_confidence"].values()) or sum(category["reference_confidence"].values())
    ):
        written.append(
            plots.confidence_plot(
                out / "confidence.png",
                CONFIDENCE_BINS,
                category["reference_confidence"],
                category["recent_confidence"],
                title="Category confidence: reference vs recent window",
            )
        )
        images["confidence"] = "confidence.png"
    if report.latencies:
        lat = d["latency"]
        written.append(
            plots.latency_plot(
                out / "latency.png",
                report.latencies,
                {"p50": lat["p50_ms"], "p95": lat["p95_ms"], "p99": lat["p99_ms"]},
            )
        )
        images["latency"] = "latency.png"
    if d["routes"]:
        written.append(
            plots.bar_plot(
                out / "routes.png",
                list(d["routes"]),
                [v["count"] for v in d["routes"].values()],
                title="Routes",
                xlabel="results",
            )
        )
        images["routes"] = "routes.png"

    t = d["totals"]
    md = [
        f"# Weekly failure report {d['since'][:10]} .. {d['until'][:10]}",
        "",
        f"{t['results']} results ({t['failed']} failed), {t['reviewed']} reviewed, {t['overridden']} overridden; "
        f"accuracy against review {_acc(t['accuracy'])}; {t['low_confidence']} below the confidence threshold.",
        "",
        "## Most overridden labels",
        "",
        *_table(
            ["field", "predicted label", "reviewed", "overridden", "rate"],
            [
                [o["field"], o["label"], o["reviewed"], o["overridden"], _pct(o["override_rate"])]
                for o in d["most_overridden"]
            ],
        ),
    ]
    if "overrides" in images:
        md += ["![most overridden](overrides.png)", ""]
    md += ["## Confusion pairs (predicted -> corrected)", ""]
    md += _table(
        ["field", "predicted", "corrected", "count"],
        [[p["field"], p["predicted"], p["corrected"], p["count"]] for p in d["confusion_pairs"]],
    )
    if "confusion" in images:
        md += ["![confusion](confusion.png)", ""]
    low = d["low_confidence"]
    md += [f"## Low-confidence clusters (below {low['threshold']})", "", "By category and language:", ""]
    md += _table(
        ["category", "language", "count"],
        [[c["category"], c["language"], c["count"]] for c in low["by_category_language"]],
    )
    md += ["By shared keywords (k-means over TF-IDF; a keyword occurs in at least 3 tickets):", ""]
    md += _table(
        ["tickets", "keywords"], [[c["size"], ", ".join(c["keywords"]) or "-"] for c in low["keyword_clusters"]]
    )
    md += ["## Accuracy per language", ""]
    md += _table(
        ["language", "results", "reviewed", "accuracy [95% CI]"],
        [[lang, v["results"], v["reviewed"], _acc(v["accuracy"])] for lang, v in d["per_language"].items()],
    )
    dr = d["drift"]
    md += [
        "## Drift (PSI against the window before; > 0.2 is a shift worth a look)",
        "",
        f"{dr['recent_count']} results against {dr['reference_count']} in the reference window.",
        "",
    ]
    md += _table(
        ["field", "label PSI", "confidence PSI"],
        [[f["field"], _num(f["label_psi"], ".3f"), _num(f["confidence_psi"], ".3f")] for f in dr["fields"]],
    )
    if "confidence" in images:
        md += ["![confidence](confidence.png)", ""]
    md += ["## Routes and cost", ""]
    md += _table(
        ["route", "results", "share", "cost USD"],
        [[name, v["count"], _pct(v["share"]), f"{v['cost_usd']:.6f}"] for name, v in d["routes"].items()],
    )
    md += [
        f"Total cost {d['cost']['total_usd']:.6f} USD, {_num(d['cost']['per_result_usd'], '.6f')} per request (failures included).",
        "",
    ]
    if "routes" in images:
        md += ["![routes](routes.png)", ""]
    lat = d["latency"]
    md += [
        "## Latency",
        "",
        f"P50 {_num(lat['p50_ms'])} ms, P95 {_num(lat['p95_ms'])} ms, P99 {_num(lat['p99_ms'])} ms.",
        "",
    ]
    md += _table(
        ["route", "results", "P50 ms", "P95 ms"],
        [[name, v["count"], _num(v["p50_ms"]), _num(v["p95_ms"])] for name, v in lat["per_route"].items()],
    )
    if "latency" in images:
        md += ["![latency](latency.png)", ""]

    (out / "report.md").write_text("\n".join(md), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(d, indent=2, ensure_ascii=False), encoding="utf-8")
    return [out / "report.md", out / "report.json", *written]
