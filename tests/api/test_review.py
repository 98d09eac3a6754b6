"""GET /v1/review in process: unsure results, oldest first, filtered by a reason of the taxonomy."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.api.protocol import ReviewQueueOut
from tests.api.conftest import make_app
from tests.e2e.checks import assert_error_body
from tests.routing.doubles import ScriptedEngine

UNSURE = {"unsure": {"category": 0.9, "priority": 0.2, "sentiment": 0.9}}


def test_review_lists_unsure_results_until_feedback(tmp_path) -> None:
    with TestClient(make_app(tmp_path, ScriptedEngine(first=UNSURE))) as client:
        for ticket_id, subject in [("T-1", "unsure"), ("T-2", "sure")]:
            assert client.post("/v1/classify", json={"ticket_id": ticket_id, "subject": subject}).status_code == 200
        page = ReviewQueueOut.model_validate(client.get("/v1/review").json())
        assert (page.total, page.limit, page.offset) == (1, 50, 0)
        assert page.items[0].ticket_id == "T-1" and page.items[0].reasons == {"priority": 0.2}
        assert page.items[0].route == "human"
        assert client.get("/v1/review", params={"reason": "category"}).json()["total"] == 0
        feedback = {"ticket_id": "T-1", "reviewer": "ana", "priority": "Low"}
        assert client.post("/v1/feedback", json=feedback).status_code == 201
        assert client.get("/v1/review").json()["items"] == []


@pytest.mark.parametrize(
    ("params", "words"),
    [({"reason": ""}, "unknown reason ''"), ({"reason": "mood"}, "allowed: category"), ({"limit": 0}, "limit")],
)
def test_bad_review_queries_get_a_clear_422(client: TestClient, params: dict[str, object], words: str) -> None:
    assert words in assert_error_body(client.get("/v1/review", params=params), 422)["message"]
