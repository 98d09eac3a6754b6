"""POST /v1/feedback in process: a correction stored next to the classification, 404/422 with a message."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.api.protocol import FeedbackOut
from tests.e2e.checks import assert_error_body


@pytest.fixture
def classified(client: TestClient) -> TestClient:
    assert client.post("/v1/classify", json={"ticket_id": "T-1", "subject": "charged twice"}).status_code == 200
    return client


def test_feedback_stores_the_correction_and_the_original(classified: TestClient) -> None:
    payload = {"ticket_id": "T-1", "reviewer": "ana", "category": "Sales", "extracted_info": {"sentiment": "neutral"}}
    r = classified.post("/v1/feedback", json=payload)
    assert r.status_code == 201, r.text
    out = FeedbackOut.model_validate(r.json())
    assert out.ticket_id == "T-1" and out.feedback_id >= 1
    assert out.corrections == {"category": "Sales", "extracted_info": {"sentiment": "neutral"}}
    assert out.original is not None and out.original["category"] == "Billing"


def test_a_comment_alone_is_feedback(classified: TestClient) -> None:
    r = classified.post("/v1/feedback", json={"ticket_id": "T-1", "reviewer": "ana", "comment": "looks right"})
    assert r.status_code == 201 and r.json()["corrections"] == {}


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        ({"ticket_id": "nope", "reviewer": "ana", "comment": "c"}, 404, "no classification for ticket_id 'nope'"),
        ({"ticket_id": "T-1", "reviewer": "ana"}, 422, "at least one correction or a comment"),
        ({"ticket_id": "T-1", "reviewer": "ana", "category": "Food"}, 422, "'Food' is not a category"),
        ({"ticket_id": "T-1", "reviewer": "ana", "labels": {"colour": "red"}}, 422, "unknown field 'colour'"),
        ({"ticket_id": "T-1", "reviewer": "ana", "extracted_info": {"mood": None}}, 422, "no field 'mood'"),
        ({"ticket_id": "T-1", "comment": "c"}, 422, "reviewer"),
    ],
)
def test_bad_feedback_gets_a_clear_4xx(
    classified: TestClient, payload: dict[str, object], status: int, words: str
) -> None:
    assert words in assert_error_body(classified.post("/v1/feedback", json=payload), status)["message"]
