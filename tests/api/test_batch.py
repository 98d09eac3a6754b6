"""POST /v1/batch in process: results in request order, per-ticket errors inside the 200, whole-request 4xx."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.api.protocol import BatchOut, ClassificationOut
from tests.api.conftest import make_app
from tests.e2e.checks import assert_error_body
from tests.routing.doubles import ScriptedEngine


def test_batch_keeps_order_and_reports_bad_items_in_place(client: TestClient) -> None:
    tickets = [{"ticket_id": "A", "subject": "first"}, {"ticket_id": "B", "subject": ""}, "not a ticket", {"body": "c"}]
    r = client.post("/v1/batch", json={"tickets": tickets})
    assert r.status_code == 200, r.text
    results = BatchOut.model_validate(r.json()).results
    assert ClassificationOut.model_validate(results[0]).ticket_id == "A"
    assert results[1]["ticket_id"] == "B" and results[1]["error"]["status"] == 422
    assert "subject and body are both empty" in results[1]["error"]["message"]
    assert results[2]["ticket_id"] is None and results[2]["error"]["status"] == 422
    assert ClassificationOut.model_validate(results[3]).category == "Billing"


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [({"tickets": []}, 422, "tickets"), ({}, 422, "tickets"), ({"tickets": [{"subject": "s"}], "x": 1}, 422, "x")],
)
def test_bad_batches_get_a_clear_422(client: TestClient, payload: dict[str, object], status: int, words: str) -> None:
    assert words in assert_error_body(client.post("/v1/batch", json=payload), status)["message"]


def test_a_batch_over_the_limit_is_a_413(tmp_path) -> None:
    with TestClient(make_app(tmp_path, ScriptedEngine(), api={"max_batch_items": 2})) as client:
        r = client.post("/v1/batch", json={"tickets": [{"subject": "s"}] * 3})
    assert assert_error_body(r, 413)["message"] == "batch has 3 tickets; the limit is 2"
