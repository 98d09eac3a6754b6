"""The store metrics on a seeded database (SQLite and PostgreSQL): accuracy and override rate against human
review per field and label over the accuracy window, drift PSI per field, the retrain runs of the audit log,
the scrape-time cache, and `up 0` (never a failed scrape) when the database is gone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session

from server.auth import cli_principal
from server.drift import psi
from server.observability.metrics import STORE_METRICS, StoreCollector, StoreWindows, render
from server.store import audit
from server.store import repository as repo
from server.store.db import make_db_engine, make_sessionmaker
from server.store.models import Classification, Feedback
from server.store.records import StoredResult
from tests.observability.samples import Samples
from tests.store.conftest import db_engine, migrated  # noqa: F401 - fixtures on both backends

NOW = datetime(2026, 12, 14, 12, 0, tzinfo=UTC)
WINDOWS = StoreWindows(accuracy=timedelta(days=7), drift=timedelta(days=1), drift_reference=timedelta(days=7))


def seed(
    session: Session, at: datetime, category: str, priority: str = "High", fields: list[str] | None = None
) -> Classification:
    rid = uuid.uuid4().hex
    repo.create_pending(
        session, request_id=rid, ticket_id=f"T-{rid[:8]}", subject="s", body="b", previous_interactions=None,
        model_base="base", model_adapter=None, prompt_version="classify/v1", taxonomy="tickets@1", fields=fields,
    )  # fmt: skip
    prediction = {"category": category, "priority": priority, "extracted_info": {"sentiment": "negative"}}
    confidence = {"category": 0.9, "priority": 0.8, "sentiment": 0.7}
    repo.finish_many(session, [(rid, StoredResult(prediction, confidence, False, False, 10.0, 1, 1, None))])
    session.execute(update(Classification).where(Classification.request_id == rid).values(created_at=at))
    session.commit()
    row = session.query(Classification).filter_by(request_id=rid).one()
    return row


def feedback(session: Session, row: Classification, at: datetime, corrections: dict[str, Any]) -> None:
    fb = repo.add_feedback(session, classification=row, reviewer="ann", comment=None, corrections=corrections)
    session.execute(update(Feedback).where(Feedback.id == fb.id).values(created_at=at))
    session.commit()


def scrape(collector: StoreCollector) -> Samples:
    return Samples(render([collector]).decode())


def test_accuracy_override_rate_drift_and_retrain_from_the_store(migrated: Engine) -> None:  # noqa: F811
    sessions = make_sessionmaker(migrated)
    recent = NOW - timedelta(hours=2)
    with sessions() as s:
        billing = [seed(s, recent, "Billing") for _ in range(4)]
        technical = [seed(s, recent, "Technical", "Low") for _ in range(2)]
        labels_only = seed(s, recent, "Billing", fields=["category"])  # asked for category alone
        # Reviewed: billing[0] category overridden, billing[1] overridden then re-reviewed as right (latest
        # counts), billing[2] priority and sentiment overridden, technical[0] agreed by a comment only.
        feedback(s, billing[0], recent, {"category": "Technical"})
        feedback(s, billing[1], recent, {"category": "Account"})
        feedback(s, billing[1], recent + timedelta(minutes=5), {"category": "Billing"})
        feedback(s, billing[2], recent, {"priority": "Low", "extracted_info": {"sentiment": "positive"}})
        feedback(s, technical[0], recent, {})
        feedback(s, labels_only, recent, {"category": "Technical"})
        # Outside the accuracy window: not counted.
        feedback(s, technical[1], NOW - timedelta(days=8), {"category": "Billing"})
        # The drift reference window (the 7 days before the last one): all Technical.
        for _ in range(6):
            seed(s, NOW - timedelta(days=3), "Technical", "Low")
        audit.record(s, cli_principal(), "retrain", detail={"verdict": "kept", "candidate": "c1"})
        audit.record(s, cli_principal(), "retrain", detail={"verdict": "promoted", "candidate": "c2"})
        audit.record(s, cli_principal(), "retrain", detail={"verdict": "kept", "candidate": "c3"})

    collector = StoreCollector(sessions, WINDOWS, cache_s=0, now=lambda: NOW)
    assert [family.name for family in collector.collect()] == list(STORE_METRICS)  # the documented families
    m = scrape(collector)
    assert m.get("triage_store_metrics_up") == 1
    assert m.get("triage_review_tickets") == 5
    assert m.get("triage_review_reviewed", field="category", label="Billing") == 4
    assert m.get("triage_review_overridden", field="category", label="Billing") == 2  # billing[0], labels_only
    assert m.get("triage_review_accuracy", field="category", label="Billing") == 0.5
    assert m.get("triage_review_reviewed", field="category", label="Technical") == 1
    assert m.get("triage_review_override_rate", field="category", label="Technical") == 0
    # labels_only asked for category alone: its priority and sentiment were never predicted, never reviewed.
    assert m.get("triage_review_field_reviewed", field="priority") == 4
    assert m.get("triage_review_overridden", field="priority", label="High") == 1
    assert m.get("triage_review_overridden", field="sentiment", label="negative") == 1
    assert m.get("triage_review_field_accuracy", field="category") == 3 / 5
    assert m.get("triage_review_ticket_override_rate") == 3 / 5
    # Drift: recent 5 Billing + 2 Technical against 6 Technical before.
    expected = psi({"Technical": 6}, {"Billing": 5, "Technical": 2})
    assert m.get("triage_drift_psi", field="category", distribution="labels") == pytest.approx(expected)
    assert m.get("triage_drift_psi", field="category", distribution="labels") > 0.2
    assert m.has("triage_drift_psi", field="sentiment", distribution="labels")
    assert m.get("triage_drift_psi", field="sentiment", distribution="labels") == 0  # negative in both windows
    assert m.get("triage_drift_window_results", window="recent") == 7
    assert m.get("triage_retrain_runs", verdict="kept") == 2 and m.get("triage_retrain_runs", verdict="promoted") == 1
    assert m.get("triage_retrain_last_run_timestamp_seconds", verdict="kept") > 0


def test_store_metrics_are_cached_for_cache_s(migrated: Engine) -> None:  # noqa: F811
    sessions = make_sessionmaker(migrated)
    clock = [100.0]
    collector = StoreCollector(
        sessions, WINDOWS, cache_s=10.0, drift_cache_s=60.0, clock=lambda: clock[0], now=lambda: NOW
    )
    with sessions() as s:
        row = seed(s, NOW - timedelta(hours=1), "Billing")
        feedback(s, row, NOW - timedelta(hours=1), {"category": "Technical"})
    assert scrape(collector).get("triage_review_tickets") == 1
    with sessions() as s:
        other = seed(s, NOW - timedelta(hours=1), "Billing")
        feedback(s, other, NOW - timedelta(hours=1), {})
    clock[0] += 9.9
    assert scrape(collector).get("triage_review_tickets") == 1  # within cache_s: the same numbers
    clock[0] += 0.2
    after = scrape(collector)
    assert (
        after.get("triage_review_tickets") == 2 and after.get("triage_review_field_accuracy", field="category") == 0.5
    )
    # Drift is reused longer (drift_cache_s): it still counts the first result only.
    assert after.get("triage_drift_window_results", window="recent") == 1
    clock[0] += 60
    assert scrape(collector).get("triage_drift_window_results", window="recent") == 2


def test_an_unreachable_store_reports_down_without_failing_the_scrape(tmp_path) -> None:
    broken = make_db_engine(f"sqlite:///{tmp_path}/never-migrated.db")  # no tables at all
    m = scrape(StoreCollector(make_sessionmaker(broken), WINDOWS, cache_s=0))
    assert m.get("triage_store_metrics_up") == 0
    assert not m.has("triage_review_accuracy") and not m.has("triage_drift_psi")
