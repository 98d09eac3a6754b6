"""POST /v1/classify in process: the documented result for a ticket, clear 4xx bodies for bad input,
429/503 from engine faults, and the row stored in the real SQLite store."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.api.protocol import ClassificationOut
from server.engines.base import EngineOverloaded, EngineUnavailable
from tests.api.conftest import make_app
from tests.e2e.checks import assert_error_body
from tests.routing.doubles import ScriptedEngine

TICKET = {"ticket_id": "T-1", "subject": "charged twice", "body": "Please refund the second charge."}


def test_classify_answers_the_documented_result(client: TestClient, engine: ScriptedEngine) -> None:
    r = client.post("/v1/classify", json=TICKET)
    assert r.status_code == 200, r.text
    result = ClassificationOut.model_validate(r.json())
    assert (result.ticket_id, result.category, result.priority) == ("T-1", "Billing", "High")
    assert result.route == "local" and not result.needs_review and result.review_reasons is None
    assert result.confidence == {"category": 0.9, "priority": 0.9, "sentiment": 0.9}
    assert result.taxonomy == "tickets@1" and result.engine.startswith("scripted")
    assert [t.subject for t in engine.tickets_seen] == ["charged twice"]


def test_a_ticket_needs_a_subject_or_a_body(client: TestClient) -> None:
    assert client.post("/v1/classify", json={"subject": "only a subject"}).status_code == 200
    assert client.post("/v1/classify", json={"body": "only a body"}).status_code == 200
    body = assert_error_body(client.post("/v1/classify", json={"subject": " ", "body": "\n"}), 422)
    assert "subject and body are both empty" in body["message"]


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        ({"subject": "s", "bdy": "typo"}, 422, "bdy"),
        ({"subject": 5}, 422, "subject"),
        ({"subject": "nul \x00 inside"}, 422, "NUL"),
        ({"subject": "s", "ticket_id": ""}, 422, "ticket_id"),
        ({"subject": "s", "previous_interactions": ["m"] * 51}, 422, "previous_interactions has 51 items"),
        ({"subject": "x" * 100_001}, 413, "limit is 100000 bytes"),
    ],
)
def test_bad_tickets_get_a_clear_4xx(client: TestClient, payload: dict[str, object], status: int, words: str) -> None:
    assert words in assert_error_body(client.post("/v1/classify", json=payload), status)["message"]


def test_a_body_that_is_not_json_is_a_400(client: TestClient) -> None:
    r = client.post("/v1/classify", content=b"{not json", headers={"content-type": "application/json"})
    assert assert_error_body(r, 400)["message"] == "request body is not valid JSON"


@pytest.mark.parametrize(
    ("fault", "status", "error"), [(EngineOverloaded(), 429, "overloaded"), (EngineUnavailable("down"), 503, None)]
)
def test_engine_faults_are_429_and_503_with_retry_after(
    tmp_path, fault: Exception, status: int, error: str | None
) -> None:
    with TestClient(make_app(tmp_path, ScriptedEngine(fail=fault))) as client:
        r = client.post("/v1/classify", json=TICKET)
    assert_error_body(r, status)
    assert r.headers["retry-after"].isdigit()
