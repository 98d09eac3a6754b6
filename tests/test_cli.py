"""The `triage` command line as a subprocess: classify and eval."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ACTIVE_ADAPTER, ACTIVE_PROMPT
from tests.e2e.conftest import ROOT, clean_env, triage_command

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLI_TIMEOUT_S = 400


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env(TRIAGE_DATABASE_URL=f"sqlite:///{tmp_path / 'triage.db'}")
    return subprocess.run(
        [*triage_command(), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )


@pytest.mark.model
def test_classify_prints_json(tmp_path):
    p = run_cli(
        "classify",
        "--subject",
        "Invoice charged twice",
        "--body",
        "My card was charged twice for invoice 1043. Please refund.",
        tmp_path=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["category"] in {"Sales", "Technical", "Billing", "General"}
    assert out["priority"] in {"Low", "Medium", "High", "Urgent"}
    assert set(out["confidence"]) == {"category", "priority", "sentiment"}
    assert all(isinstance(v, float) and 0 <= v <= 1 for v in out["confidence"].values())
    assert isinstance(out["needs_review"], bool)
    assert out["prompt_version"] == ACTIVE_PROMPT and out["model"]["adapter"] == ACTIVE_ADAPTER
    assert not (tmp_path / "triage.db").exists(), "classify must not store anything"


def test_classify_without_subject_or_body_fails(tmp_path):
    p = run_cli("classify", tmp_path=tmp_path)
    assert p.returncode != 0
    assert "--subject" in p.stderr and "--body" in p.stderr, p.stderr


@pytest.mark.model
def test_eval_json_and_report(tmp_path):
    out_dir = tmp_path / "report"
    # The default rules train the classical baseline (half the run) and nothing here looks at it.
    rules = tmp_path / "rules.yaml"
    rules.write_text("classical_margin: -1\n")
    p = run_cli(
        "eval",
        "--data",
        "data/tickets/sample100.csv",
        "--limit",
        "3",
        "--rules",
        str(rules),
        "--json",
        "--out",
        str(out_dir),
        tmp_path=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    last = p.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    keys = {
        "n",
        "category_accuracy",
        "category_macro_f1",
        "priority_accuracy",
        "priority_macro_f1",
        "sentiment_accuracy",
        "category_ece",
        "tickets_per_s",
        "invalid_json",
    }
    assert keys <= summary.keys(), keys - summary.keys()
    assert summary["n"] == 3
    assert summary["invalid_json"] == 0
    for k in keys - {"n", "invalid_json"}:
        assert isinstance(summary[k], (int, float)), (k, summary[k])
    for k in (
        "category_accuracy",
        "category_macro_f1",
        "priority_accuracy",
        "priority_macro_f1",
        "sentiment_accuracy",
        "category_ece",
    ):
        assert 0 <= summary[k] <= 1, (k, summary[k])
    assert summary["tickets_per_s"] > 0
    assert "classical" not in summary, "the rules turned the classical baseline off"

    assert (out_dir / "report.md").is_file() and (out_dir / "report.md").read_text().strip()
    for name in ("confusion_category.png", "reliability_category.png"):
        path = out_dir / name
        assert path.is_file(), sorted(p.name for p in out_dir.iterdir())
        assert path.read_bytes()[:8] == PNG_MAGIC, name


def test_eval_unknown_label_names_row_and_column(tmp_path):
    data = tmp_path / "bad.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["ticket_id", "subject", "body", "category", "priority", "sentiment"])
        w.writerow(["a", "Login fails", "Cannot log in", "Technical", "High", "negative"])
        w.writerow(["b", "Question", "What are your hours?", "Nonsense", "Low", "neutral"])
    p = run_cli("eval", "--data", str(data), "--json", tmp_path=tmp_path)
    assert p.returncode != 0
    msg = p.stderr + p.stdout
    assert "row 3" in msg and "'category'" in msg and "Nonsense" in msg, msg[-2000:]


def test_eval_missing_file_fails(tmp_path):
    p = run_cli("eval", "--data", str(tmp_path / "missing.csv"), tmp_path=tmp_path)
    assert p.returncode != 0
    assert "missing.csv" in p.stderr, p.stderr


def test_the_console_script_target_lists_every_command():
    """pyproject's `triage = "server.cli:app"` names the package's `app`; the groups register in order."""
    from typer.main import get_command

    from server.cli import app

    names = list(get_command(app).commands)  # type: ignore[attr-defined]
    assert names[:4] == ["serve", "classify", "eval", "setup"] and "models" in names
    assert set(get_command(app).commands["models"].commands) == {"list", "promote", "rollback", "merge"}  # type: ignore[attr-defined]
