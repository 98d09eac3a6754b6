"""Retention on SQLite and PostgreSQL: old rows purged, rows kept for training redacted (the hosted fallback's
redactor), old audit payloads erased, the run audited; a dry run counts the same and changes nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload

from server.auth import Principal
from server.cli import app
from server.config import RedactionSettings, load_settings
from server.retention import run_retention
from server.store import audit, crypto
from server.store.db import make_sessionmaker
from server.store.models import AuditEvent, Classification, Feedback, Job, JobTicket, utcnow
from tests.store.conftest import db_engine, migrated  # noqa: F401  (pytest finds fixtures by name)

OPS = Principal("cli:ops", "admin")
EMAIL, CARD = "jane.doe@example.com", "4111 1111 1111 1111"
NOW = utcnow()


@pytest.fixture(scope="module")
def redactor():
    from server.privacy.redact import Redactor

    return Redactor(RedactionSettings())


def classification(ticket_id: str, age_days: float, *, status: str = "done", **extra: Any) -> Classification:
    return Classification(
        request_id=f"r-{ticket_id}",
        ticket_id=ticket_id,
        created_at=NOW - timedelta(days=age_days),
        subject=f"Refund for {EMAIL}",
        body=f"I am {EMAIL}, card {CARD}, charged twice.",
        previous_interactions=[f"Earlier: write to {EMAIL}"],
        prediction={
            "category": "Billing",
            "priority": "High",
            "extracted_info": {"product": "Pro plan", "error_code": None, "sentiment": "negative"},
            "reasoning": f"{EMAIL} was charged twice",
        },
        raw_output=f'{{"reasoning": "{EMAIL}"}}',
        category="Billing",
        model_base="base",
        prompt_version="v1",
        status=status,
        **extra,
    )


def seed(db: Engine) -> None:
    with Session(db) as session:
        session.add_all(
            [
                classification("old", 40),
                classification("old-kept", 40),
                classification("new", 5),
                classification("old-pending", 40, status="pending"),
            ]
        )
        session.flush()
        kept = session.scalars(select(Classification).where(Classification.ticket_id == "old-kept")).one()
        session.add(
            Feedback(
                classification_id=kept.id,
                ticket_id="old-kept",
                created_at=NOW - timedelta(days=39),
                reviewer="anna",
                comment=f"customer {EMAIL} confirmed",
                corrections={"priority": "Low"},
            )
        )
        for job_id, status, ended_days_ago in (
            ("job-old", "done", 40),
            ("job-new", "done", 5),
            ("job-q", "queued", None),
        ):
            finished = NOW - timedelta(days=ended_days_ago) if ended_days_ago is not None else None
            session.add(
                Job(
                    id=job_id,
                    status=status,
                    source="upload",
                    filename="t.csv",
                    total=2,
                    actor="x",
                    created_at=NOW - timedelta(days=41),
                    finished_at=finished,
                )
            )
            session.flush()
            for position in range(2):
                session.add(
                    JobTicket(
                        job_id=job_id,
                        position=position,
                        ticket_id=f"{job_id}-{position}",
                        status="done" if status == "done" else "queued",
                    )
                )
        for age, ticket in ((15, "old"), (5, "new")):
            session.add(
                AuditEvent(
                    at=NOW - timedelta(days=age),
                    actor="x",
                    action="hosted_call",
                    ticket_id=ticket,
                    payload="<EMAIL_ADDRESS_1>",
                    payload_sha256=audit.payload_digest("<EMAIL_ADDRESS_1>"),
                )
            )
        session.commit()


def test_retention_purges_redacts_and_erases(migrated: Engine, redactor) -> None:  # noqa: F811
    crypto.attach(migrated, crypto.Keyring.generate())
    seed(migrated)
    sessions = make_sessionmaker(migrated)
    settings = load_settings(database_url="sqlite://", retention={"days": 30, "tables": {"audit_payloads": 10}})

    dry = run_retention(sessions, settings, OPS, NOW, dry_run=True)
    expected = {
        "classifications_deleted": 1,
        "classifications_redacted": 1,
        "feedback_deleted": 0,
        "feedback_redacted": 0,
        "audit_payloads_erased": 1,
        "jobs_deleted": 1,  # ended 40 days ago; the one ended 5 days ago and the queued one stay
        "job_tickets_deleted": 2,
    }
    assert dry.counts() == expected | {"feedback_redacted": 0}
    with sessions() as session:
        assert session.scalar(select(Classification.id).where(Classification.ticket_id == "old")) is not None
        assert audit.events(session, actions=["retention_run"]) == []

    report = run_retention(sessions, settings, OPS, NOW, redactor=redactor)
    assert report.counts() == expected | {"feedback_redacted": 1}
    assert report.redactions.get("EMAIL_ADDRESS", 0) >= 5 and report.redactions.get("CREDIT_CARD") == 1

    with sessions() as session:
        tickets = session.scalars(select(Classification.ticket_id).order_by(Classification.id)).all()
        assert tickets == ["old-kept", "new", "old-pending"]
        assert session.scalars(select(Job.id).order_by(Job.id)).all() == ["job-new", "job-q"]
        assert session.scalars(select(JobTicket.job_id).distinct().order_by(JobTicket.job_id)).all() == [
            "job-new",
            "job-q",
        ]
        kept = session.scalars(
            select(Classification)
            .where(Classification.ticket_id == "old-kept")
            .options(selectinload(Classification.feedback))
        ).one()
        texts = [kept.subject, kept.body, *(kept.previous_interactions or []), kept.prediction["reasoning"]]
        assert all(EMAIL not in (t or "") for t in texts) and CARD not in (kept.body or "")
        assert "<EMAIL_ADDRESS_1>" in (kept.body or "") and "charged twice" in (kept.body or "")
        # The labels stay for training; the raw model output (the answer again, unredacted) goes.
        assert kept.prediction["category"] == "Billing" and kept.prediction["priority"] == "High"
        assert kept.prediction["extracted_info"]["sentiment"] == "negative" and kept.raw_output is None
        (fb,) = kept.feedback
        assert fb.corrections == {"priority": "Low"} and fb.redacted_at == NOW
        assert EMAIL not in (fb.comment or "") and "confirmed" in (fb.comment or "")
        new = session.scalars(select(Classification).where(Classification.ticket_id == "new")).one()
        assert EMAIL in new.body and new.raw_output is not None  # younger than the cut-off: untouched
        payloads = {e.ticket_id: e.payload for e in audit.events(session, actions=["hosted_call"])}
        assert payloads == {"old": None, "new": "<EMAIL_ADDRESS_1>"}
        (run,) = audit.events(session, actions=["retention_run"])
        assert run.actor == "cli:ops" and run.detail["classifications_deleted"] == 1
        assert EMAIL not in str(run.detail)

    again = run_retention(sessions, settings, OPS, NOW, redactor=redactor)
    assert not any(again.counts().values())  # already redacted rows are not redacted again


def test_feedback_override_and_no_training_copy(migrated: Engine) -> None:  # noqa: F811
    seed(migrated)
    sessions = make_sessionmaker(migrated)
    # Feedback kept 30 days; without training copies the old classification with feedback is deleted too.
    settings = load_settings(
        database_url="sqlite://",
        retention={"days": 30, "tables": {"feedback": 30}, "keep_feedback_for_training": False},
    )
    report = run_retention(sessions, settings, OPS, NOW)
    assert report.feedback_deleted == 1 and report.classifications_deleted == 2
    assert report.classifications_redacted == 0 and report.audit_payloads_erased == 0  # 15 days: under days
    with sessions() as session:
        assert session.scalars(select(Classification.ticket_id)).all() == ["new", "old-pending"]


def test_triage_retention_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    config = tmp_path / "t.yaml"
    config.write_text(
        f"database_url: sqlite:///{tmp_path / 'r.db'}\nstorage:\n  data_key_file: {tmp_path / 'k'}\n"
        "retention:\n  days: 30\n  keep_feedback_for_training: false\n"
    )
    settings = load_settings(config)
    from server.store.db import migrate, open_store

    db = open_store(settings.database_url, settings.storage)
    migrate(db)
    seed(db)
    db.dispose()
    runner = CliRunner()
    dry = runner.invoke(app, ["retention", "run", "--dry-run", "--json", "--config", str(config)])
    assert dry.exit_code == 0, dry.output
    assert '"classifications_deleted": 2' in dry.output
    run = runner.invoke(app, ["retention", "run", "--config", str(config)])
    assert run.exit_code == 0 and "classifications deleted: 2" in run.output
    unset = tmp_path / "u.yaml"
    unset.write_text(f"database_url: sqlite:///{tmp_path / 'r.db'}\n")
    refused = runner.invoke(app, ["retention", "run", "--config", str(unset)])
    assert refused.exit_code == 2 and "not configured" in refused.output


def test_the_server_runs_retention_periodically(tmp_path: Path) -> None:
    import time

    from fastapi.testclient import TestClient

    from server.api.app import create_server
    from tests.api.test_results import settings_for
    from tests.routing.doubles import ScriptedEngine

    settings = settings_for(tmp_path, retention={"days": 30, "interval_s": 0.2, "keep_feedback_for_training": False})
    with TestClient(create_server(settings, engine=ScriptedEngine())) as client:
        sessions = client.app.state.sessions  # type: ignore[attr-defined]
        with sessions() as session:
            session.add(classification("stale", 40))
            session.commit()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with sessions() as session:
                if session.scalar(select(Classification.id).where(Classification.ticket_id == "stale")) is None:
                    break
            time.sleep(0.05)
        with sessions() as session:
            assert session.scalar(select(Classification.id)) is None
            runs = audit.events(session, actions=["retention_run"])
        assert runs and runs[-1].actor == "server:retention"
