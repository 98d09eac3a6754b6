"""`triage report` on a seeded store (rows and feedback written through the repository): the numbers of
--json, the Markdown and PNG files of --out, no ticket text in what it writes, the audit event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from server.cli import app
from server.config import load_settings
from server.store.db import migrate, open_store
from server.store.models import AuditEvent
from tests.reporting.seed import seed

runner = CliRunner()
NOW = datetime.now(UTC)
EN_BILLING = "I was charged twice on my invoice and need a refund for the duplicate payment please"
DE_LOGIN = "Ich habe ein Problem mit der Anmeldung und das Passwort funktioniert nicht mehr"
SECRET_NAME = "Zebulon"
SECRET_MAIL = "zebulon.quimby@example.org"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "triage.yaml"
    path.write_text(
        f"database_url: sqlite:///{tmp_path / 'r.db'}\nstorage:\n  data_key_file: {tmp_path / 'data.key'}\n"
    )
    settings = load_settings(path)
    db = open_store(settings.database_url, settings.storage)
    migrate(db)
    low = {"category": 0.3, "priority": 0.9, "sentiment": 0.9}
    latencies = iter(range(10, 130, 10))  # 10..120 ms over the 12 answered results of the window
    with Session(db) as s:
        # 6 English billing tickets, unsure of the category (human route), 4 corrected to Account.
        for i in range(6):
            body = EN_BILLING + (f" regards {SECRET_NAME} {SECRET_MAIL}" if i == 0 else "")
            seed(
                s,
                at=NOW - timedelta(days=1, minutes=i),
                subject="Refund for duplicate invoice charge",
                body=body,
                category="Billing",
                confidence=low,
                route="human",
                latency_ms=next(latencies),
                correction={"category": "Account"} if i < 4 else {},
            )
        # 4 German login tickets, confident and confirmed.
        for i in range(4):
            seed(
                s,
                at=NOW - timedelta(days=2, minutes=i),
                subject="Anmeldung",
                body=DE_LOGIN,
                category="Technical",
                priority="Low",
                latency_ms=next(latencies),
                correction={},
            )
        # 2 English tickets whose priority High is corrected to Low.
        for i in range(2):
            seed(
                s,
                at=NOW - timedelta(days=3, minutes=i),
                subject="The export is slow",
                body="The export of the report is slow since yesterday and we would like it faster",
                category="Technical",
                priority="High",
                latency_ms=next(latencies),
                correction={"priority": "Low"},
            )
        seed(s, at=NOW - timedelta(days=1), failed=True)
        # The reference window (the week before): only confident Technical tickets.
        for i in range(10):
            seed(s, at=NOW - timedelta(days=9, minutes=i), category="Technical", body=DE_LOGIN)
        seed(s, at=NOW - timedelta(days=30), category="Sales", correction={"category": "Billing"})  # outside both
    db.dispose()
    return path


def test_report_json_numbers(config: Path) -> None:
    result = runner.invoke(app, ["report", "--since", "7d", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    totals = doc["totals"]
    assert (totals["results"], totals["failed"], totals["reviewed"], totals["overridden"]) == (12, 1, 12, 6)
    assert totals["accuracy"]["value"] == 0.5 and totals["low_confidence"] == 6

    top = doc["most_overridden"]
    assert top[0] == {"field": "category", "label": "Billing", "reviewed": 6, "overridden": 4, "override_rate": 4 / 6}
    assert top[1] == {"field": "priority", "label": "High", "reviewed": 2, "overridden": 2, "override_rate": 1.0}
    assert doc["confusion_pairs"] == [
        {"field": "category", "predicted": "Billing", "corrected": "Account", "count": 4},
        {"field": "priority", "predicted": "High", "corrected": "Low", "count": 2},
    ]

    low = doc["low_confidence"]
    assert low["by_category_language"] == [{"category": "Billing", "language": "en", "count": 6}]
    (cluster,) = low["keyword_clusters"]
    assert cluster["size"] == 6 and {"refund", "invoice"} <= set(cluster["keywords"])

    langs = doc["per_language"]
    assert (langs["en"]["results"], langs["en"]["reviewed"], langs["en"]["kept"]) == (8, 8, 2)
    assert (langs["de"]["results"], langs["de"]["kept"], langs["de"]["accuracy"]["value"]) == (4, 4, 1.0)

    drift = doc["drift"]
    assert (drift["reference_count"], drift["recent_count"]) == (10, 12)
    category = next(f for f in drift["fields"] if f["field"] == "category")
    assert category["label_psi"] > 0.2 and category["recent_labels"] == {"Billing": 6, "Technical": 6}

    assert doc["routes"]["human"]["count"] == 6 and doc["routes"]["local"]["count"] == 6
    assert doc["routes"]["human"]["share"] == 0.5
    assert doc["cost"]["total_usd"] == pytest.approx(0.012)
    lat = doc["latency"]
    assert lat["count"] == 12 and lat["p50_ms"] == 65.0 and lat["p95_ms"] == pytest.approx(114.5)
    assert lat["per_route"]["human"]["p50_ms"] == 35.0  # 10..60


def test_report_files_hold_no_ticket_text_and_are_audited(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "weekly"
    result = runner.invoke(app, ["report", "--since", "7d", "--out", str(out), "--config", str(config)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {
        "report.md",
        "report.json",
        "overrides.png",
        "confusion.png",
        "confidence.png",
        "latency.png",
        "routes.png",
    } <= names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    md = (out / "report.md").read_text()
    assert "| category | Billing | 6 | 4 | 66.7% |" in md and "![confusion](confusion.png)" in md
    written = md + (out / "report.json").read_text()
    # One customer's name and address never reach the report, nor any sentence of a ticket.
    for secret in (SECRET_NAME, SECRET_MAIL, SECRET_NAME.lower(), "quimby", EN_BILLING[:30], DE_LOGIN[:30]):
        assert secret not in written
    bad = runner.invoke(app, ["report", "--since", "tomorrow", "--config", str(config)])
    assert bad.exit_code == 2 and "--since" in bad.output

    settings = load_settings(config)
    db = open_store(settings.database_url, settings.storage)
    with Session(db) as s:
        (event,) = s.scalars(select(AuditEvent).where(AuditEvent.action == "report")).all()
    db.dispose()
    assert event.target == str(out) and event.detail is not None and event.detail["results"] == 12
