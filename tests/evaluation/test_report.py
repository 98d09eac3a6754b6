"""write_report must produce real PNGs and a markdown report that names every field."""

from __future__ import annotations

import json
from pathlib import Path

from server.evaluation.metrics import extraction_match, field_report, group_accuracy
from server.evaluation.report import plot_reliability_diagram, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    return len(data) > 100 and data.startswith(PNG_MAGIC)


def test_write_report(tmp_path: Path) -> None:
    gold_cat = ["Technical", "Billing", "Sales", "General", "Technical", None]
    pred_cat = ["Technical", "Sales", "Sales", None, "Technical", "Billing"]
    conf_cat = [0.9, 0.6, 0.7, None, 0.95, 0.4]
    gold_pri = ["Low", "High", "Urgent", "Medium", "Low", "Low"]
    pred_pri = ["Low", "Medium", "Urgent", "Medium", "High", "Low"]
    langs = ["en", "de", "en", "fr", "de", "en"]
    fields = {
        "category": field_report(gold_cat, pred_cat, conf_cat, labels=["Sales", "Technical", "Billing", "General"]),
        "priority": field_report(gold_pri, pred_pri, None),  # no confidences -> no reliability diagram
        "product": extraction_match(["Jira", None, "AWS", None, None, None], ["jira", None, None, None, "X", None]),
    }
    groups = {"language": group_accuracy(langs, gold_cat, pred_cat)}
    written = write_report(tmp_path / "out", {"model": "toy", "n_tickets": 6}, fields, groups)

    names = {p.name for p in written}
    assert {
        "report.json",
        "report.md",
        "confusion_category.png",
        "reliability_category.png",
        "confusion_priority.png",
        "groups_language.png",
    } <= names
    assert "reliability_priority.png" not in names
    for p in written:
        assert p.exists() and p.stat().st_size > 0
        if p.suffix == ".png":
            assert _is_png(p), p
    md = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    for field in fields:
        assert field in md
    assert "reliability_category.png" in md and "groups_language.png" in md
    data = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert data["summary"]["model"] == "toy"
    assert data["fields"]["category"]["n"] == 5


def test_reliability_diagram_handles_empty_bins(tmp_path: Path) -> None:
    bins = [
        {"lower": 0.0, "upper": 0.5, "count": 0, "confidence": None, "accuracy": None},
        {"lower": 0.5, "upper": 1.0, "count": 0, "confidence": None, "accuracy": None},
    ]
    assert _is_png(plot_reliability_diagram(bins, tmp_path / "r.png", "empty"))
