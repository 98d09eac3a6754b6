"""POST /v1/batch over real HTTP: order, per-item errors, limits."""

from __future__ import annotations

import pytest

from tests.e2e.checks import assert_error_body, assert_full_result
from tests.e2e.conftest import get_row, row_count


@pytest.mark.model
def test_batch_with_invalid_middle_item(client, db_sessions, ok_request_ids):
    tickets = [
        {
            "ticket_id": "batch-a",
            "subject": "Refund for double charge",
            "body": "I was charged twice for my March invoice, please refund one.",
        },
        42,
        {
            "ticket_id": "batch-c",
            "subject": "Pricing for 50 more seats",
            "body": "We would like a quote to add 50 licences to our plan.",
        },
    ]
    before = row_count(db_sessions)
    r = client.post("/v1/batch", json={"tickets": tickets})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 3

    assert_full_result(results[0], ticket_id="batch-a")
    assert_full_result(results[2], ticket_id="batch-c")
    assert results[0]["request_id"] != results[2]["request_id"]

    middle = results[1]
    assert set(middle) >= {"error"} and "category" not in middle, middle
    assert middle["error"]["status"] == 422
    assert isinstance(middle["error"]["message"], str) and middle["error"]["message"].strip()

    # Only the two valid tickets were accepted, and both are stored as done.
    assert row_count(db_sessions) == before + 2
    for res in (results[0], results[2]):
        row = get_row(db_sessions, res["request_id"])
        assert row is not None and row.status == "done"
        assert (row.ticket_id, row.category, row.priority) == (res["ticket_id"], res["category"], res["priority"])
        ok_request_ids.append(res["request_id"])


def test_batch_of_only_invalid_items_answers_each(client, db_sessions):
    """No valid ticket: no model call, but one error per item, in order, with the given ticket_ids."""
    tickets = [
        {"ticket_id": "empty-1", "subject": "", "body": "   "},
        "not an object",
        {"ticket_id": "big-1", "subject": "s", "body": "x" * 100_001},
        {"ticket_id": "typed-1", "subject": 7, "body": "b"},
        {"ticket_id": "extra-1", "body": "b", "urgency": "high"},
    ]
    before = row_count(db_sessions)
    r = client.post("/v1/batch", json={"tickets": tickets})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [res.get("ticket_id") for res in results] == ["empty-1", None, "big-1", "typed-1", "extra-1"]
    assert [res["error"]["status"] for res in results] == [422, 422, 413, 422, 422]
    assert "empty" in results[0]["error"]["message"]
    assert "100000" in results[2]["error"]["message"] or "limit" in results[2]["error"]["message"]
    assert "urgency" in results[4]["error"]["message"]
    assert all(res["error"]["message"].strip() for res in results)
    assert row_count(db_sessions) == before


def test_batch_lone_surrogate_is_a_per_item_error(client):
    """A ticket whose text is not valid Unicode must fail alone (per-item 4xx), not sink the batch with a 5xx."""
    raw = b'{"tickets": [{"ticket_id": "sur-1", "body": "x \\ud800 y"}, {"ticket_id": "empty-2", "body": ""}]}'
    r = client.post("/v1/batch", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
    results = r.json()["results"]
    assert [res.get("ticket_id") for res in results] == ["sur-1", "empty-2"]
    assert 400 <= results[0]["error"]["status"] < 500, results[0]
    assert results[1]["error"]["status"] == 422


def test_batch_over_limit_is_413(client, db_sessions):
    before = row_count(db_sessions)
    r = client.post("/v1/batch", json={"tickets": [{"body": f"t{i}"} for i in range(257)]})
    body = assert_error_body(r, 413)
    assert "257" in body["message"] and "256" in body["message"], body
    assert row_count(db_sessions) == before


def test_empty_batch_is_422(client):
    body = assert_error_body(client.post("/v1/batch", json={"tickets": []}), 422)
    assert "tickets" in body["message"]


def test_batch_without_tickets_key_is_422(client):
    assert_error_body(client.post("/v1/batch", json={"items": [{"body": "x"}]}), 422)
