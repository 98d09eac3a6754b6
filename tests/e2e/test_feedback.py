"""POST /v1/feedback over real HTTP: stored next to the classification it corrects."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from server.store.models import Classification, Feedback
from tests.e2e.checks import assert_error_body


def feedback_count(sessions) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Feedback)) or 0


@pytest.mark.model
def test_feedback_is_stored_and_linked(client, seed_classification, db_sessions):
    correction = {
        "category": "Billing" if seed_classification["category"] != "Billing" else "General",
        "priority": "Low",
    }
    r = client.post(
        "/v1/feedback",
        json={"ticket_id": "seed-0001", **correction, "reviewer": "alice@example.com", "comment": "wrong queue"},
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["ticket_id"] == "seed-0001"
    assert out["request_id"] == seed_classification["request_id"]
    assert out["corrections"] == correction
    assert out["original"]["category"] == seed_classification["category"]
    assert isinstance(out["feedback_id"], int)

    with db_sessions() as s:
        fb = s.get(Feedback, out["feedback_id"])
        assert fb is not None
        cls = s.get(Classification, fb.classification_id)
        assert cls is not None and cls.request_id == seed_classification["request_id"]
        assert fb.ticket_id == "seed-0001"
        assert fb.reviewer == "alice@example.com"
        assert fb.comment == "wrong queue"
        assert fb.corrections == correction


@pytest.mark.model
def test_feedback_extracted_info_correction(client, seed_classification, db_sessions):
    r = client.post(
        "/v1/feedback",
        json={
            "ticket_id": "seed-0001",
            "extracted_info": {"sentiment": "negative", "product": "dashboard"},
            "reviewer": "bob",
        },
    )
    assert r.status_code == 201, r.text
    with db_sessions() as s:
        fb = s.get(Feedback, r.json()["feedback_id"])
        assert fb.corrections == {"extracted_info": {"sentiment": "negative", "product": "dashboard"}}


def test_feedback_unknown_ticket_is_404(client, db_sessions):
    before = feedback_count(db_sessions)
    body = assert_error_body(
        client.post("/v1/feedback", json={"ticket_id": "no-such-ticket-xyz", "category": "Sales", "reviewer": "r"}), 404
    )
    assert "no-such-ticket-xyz" in body["message"]
    assert feedback_count(db_sessions) == before


@pytest.mark.parametrize(
    "payload, needle",
    [
        ({"ticket_id": "seed-0001", "category": "Nonsense", "reviewer": "r"}, "Nonsense"),
        ({"ticket_id": "seed-0001", "priority": "Critical", "reviewer": "r"}, "Critical"),
        ({"ticket_id": "seed-0001", "extracted_info": {"sentiment": "furious"}, "reviewer": "r"}, "furious"),
        ({"ticket_id": "seed-0001", "extracted_info": {"colour": "red"}, "reviewer": "r"}, "colour"),
        ({"ticket_id": "seed-0001", "category": "Sales"}, "reviewer"),
        ({"ticket_id": "seed-0001", "category": "Sales", "reviewer": ""}, "reviewer"),
        ({"ticket_id": "seed-0001", "reviewer": "r"}, "correction"),
        ({"ticket_id": "seed-0001", "category": "Sales", "reviewer": "r", "score": 3}, "score"),
    ],
    ids=[
        "unknown-category",
        "unknown-priority",
        "unknown-sentiment",
        "unknown-extracted-field",
        "missing-reviewer",
        "empty-reviewer",
        "nothing-to-correct",
        "unknown-field",
    ],
)
def test_feedback_invalid_is_422(client, db_sessions, payload, needle):
    before = feedback_count(db_sessions)
    body = assert_error_body(client.post("/v1/feedback", json=payload), 422)
    assert needle in body["message"], body
    assert feedback_count(db_sessions) == before
