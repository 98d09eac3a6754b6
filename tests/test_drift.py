"""PSI on synthetic shifts (0 for identical windows, > 0.2 for a shifted one, a hand-computed value) and
drift() over a real store on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from server.drift import CONFIDENCE_BINS, confidence_bin, confidence_histogram, drift, psi
from server.store import repository
from server.store.models import Classification
from server.store.records import StoredResult
from tests.store.conftest import db_engine, migrated, session  # noqa: F401 - fixtures on both backends

NOW = datetime(2026, 12, 14, 12, 0, tzinfo=UTC)


def test_psi_identical_is_zero() -> None:
    dist = {"billing": 40, "technical": 35, "account": 25}
    assert psi(dist, dist) == 0.0
    # Counts and shares of the same distribution are the same distribution.
    assert psi(dist, {"billing": 0.4, "technical": 0.35, "account": 0.25}) == pytest.approx(0.0, abs=1e-12)


def test_psi_hand_computed() -> None:
    # (0.3-0.5)ln(0.3/0.5) + (0.7-0.5)ln(0.7/0.5) = 0.2*ln(5/3) + 0.2*ln(7/5)
    expected = 0.2 * math.log(5 / 3) + 0.2 * math.log(7 / 5)
    assert psi({"a": 50, "b": 50}, {"a": 30, "b": 70}) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.1694, abs=1e-4)
    # Symmetric.
    assert psi({"a": 30, "b": 70}, {"a": 50, "b": 50}) == pytest.approx(expected, rel=1e-12)


def test_psi_shift_and_empty_bins() -> None:
    reference = {"billing": 40, "technical": 35, "account": 25}
    shifted = {"billing": 10, "technical": 30, "account": 25, "security": 35}  # a new label appears
    value = psi(reference, shifted)
    assert value > 0.2 and math.isfinite(value)
    # The floor: a bin missing on one side contributes (share - eps) * ln(share / eps).
    eps = 1e-4
    assert psi({"a": 1}, {"b": 1}, epsilon=eps) == pytest.approx(2 * (1 - eps) * math.log(1 / eps))
    with pytest.raises(ValueError):
        psi({}, {"a": 1})
    with pytest.raises(ValueError):
        psi({"a": 0}, {"a": 1})


def test_confidence_bins() -> None:
    assert len(CONFIDENCE_BINS) == 10
    assert confidence_bin(0.0) == "0.0-0.1" and confidence_bin(0.95) == "0.9-1.0" and confidence_bin(1.0) == "0.9-1.0"
    hist = confidence_histogram([0.05, 0.55, 0.56, 1.0])
    assert hist["0.0-0.1"] == 1 and hist["0.5-0.6"] == 2 and hist["0.9-1.0"] == 1 and sum(hist.values()) == 4


def _seed(db: Session, at: datetime, category: str, confidence: float, status: str = "done") -> None:
    request_id = str(uuid.uuid4())
    repository.create_pending(
        db,
        request_id=request_id,
        ticket_id=f"T-{request_id[:8]}",
        subject=None,
        body="text",
        previous_interactions=None,
        model_base="base",
        model_adapter=None,
        prompt_version="classify/v2",
        taxonomy="tickets",
    )
    if status == "done":
        prediction = {"category": category, "priority": "low", "sentiment": "neutral"}
        conf: dict[str, float | None] = {"category": confidence, "priority": 0.9, "sentiment": None}
        repository.finish_many(db, [(request_id, StoredResult(prediction, conf, False, False, 10.0, 1, 1, None))])
    db.execute(update(Classification).where(Classification.request_id == request_id).values(created_at=at))
    db.commit()


def test_drift_from_store(session: Session) -> None:  # noqa: F811
    week = timedelta(days=7)
    # Reference week: 50/50 billing/technical, confident. Recent week: mostly account, unsure.
    for i in range(20):
        _seed(session, NOW - week - timedelta(days=1, minutes=i), "billing" if i % 2 else "technical", 0.95)
    for i in range(20):
        _seed(session, NOW - timedelta(hours=1, minutes=i), "account" if i < 16 else "billing", 0.45)
    _seed(session, NOW - timedelta(hours=2), "ignored", 0.1, status="pending")  # not done: not counted
    _seed(session, NOW - 3 * week, "ignored", 0.1)  # before the reference window
    _seed(session, NOW + timedelta(minutes=1), "ignored", 0.1)  # after now

    report = drift(session, now=NOW, window=week, reference_window=week)
    assert (report.reference_count, report.recent_count) == (20, 20)
    category = report.field("category")
    assert category.reference_labels == {"billing": 10, "technical": 10}
    assert category.recent_labels == {"account": 16, "billing": 4}
    assert category.label_psi is not None and category.label_psi > 0.2
    assert category.recent_confidence["0.4-0.5"] == 20 and category.reference_confidence["0.9-1.0"] == 20
    assert category.confidence_psi is not None and category.confidence_psi > 0.2
    # priority never moved: label PSI 0 and confidence PSI 0.
    assert report.field("priority").label_psi == 0.0 and report.field("priority").confidence_psi == 0.0
    # sentiment has labels but no confidences: no confidence PSI rather than a made-up one.
    assert report.field("sentiment").confidence_psi is None
    assert report.max_psi == max(category.label_psi, category.confidence_psi)
    assert report.to_json()["fields"][0]["field"] == "category"

    # Nothing in either window: no PSI rather than a made-up 0.
    same = drift(session, now=NOW + timedelta(days=400), window=week, reference_window=week)
    assert same.recent_count == 0 and same.max_psi is None


def test_drift_rejects_bad_arguments(session: Session) -> None:  # noqa: F811
    with pytest.raises(ValueError):
        drift(session, now=datetime(2026, 1, 1), window=timedelta(days=1), reference_window=timedelta(days=1))
    with pytest.raises(ValueError):
        drift(session, now=NOW, window=timedelta(0), reference_window=timedelta(days=1))
    with pytest.raises(ValueError):
        drift(session, now=NOW, window=timedelta(days=1), reference_window=timedelta(days=1), fields=("body",))
