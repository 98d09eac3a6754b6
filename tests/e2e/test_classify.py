"""POST /v1/classify over real HTTP: the full result, the stored row and the review routing."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ACTIVE_ADAPTER, ACTIVE_PROMPT, SEED_TICKET
from tests.e2e.checks import assert_full_result
from tests.e2e.conftest import get_row, row_count

pytestmark = pytest.mark.model


def test_seed_ticket_full_result(seed_classification):
    assert_full_result(seed_classification, ticket_id="seed-0001", threshold=0.5)
    # Default routing: the shipped adapter (classify/v2 + review/v2), fallback off: answered locally,
    # after a local re-review, or left for a human.
    assert seed_classification["route"] in ("local", "local+review", "human")
    assert seed_classification["engine"] == f"transformers:{ACTIVE_ADAPTER}"
    assert seed_classification["cache"] is None and seed_classification["cost_usd"] == 0.0


def test_seed_ticket_is_stored_done(seed_classification, db_sessions):
    row = get_row(db_sessions, seed_classification["request_id"])
    assert row is not None, "the answered classification is not in the database"
    assert row.status == "done"
    assert row.ticket_id == "seed-0001"
    assert row.category == seed_classification["category"]
    assert row.priority == seed_classification["priority"]
    assert row.sentiment == seed_classification["extracted_info"]["sentiment"]
    assert row.prompt_version == seed_classification["prompt_version"] == ACTIVE_PROMPT
    assert row.model_base == seed_classification["model"]["base"]
    assert row.model_adapter == seed_classification["model"]["adapter"]
    assert row.needs_review == seed_classification["needs_review"]
    assert row.subject == SEED_TICKET["subject"] and row.body == SEED_TICKET["body"]
    assert row.prediction["category"] == seed_classification["category"]
    assert row.completed_at is not None and row.error is None
    assert (row.route, row.engine, row.cache_kind) == (
        seed_classification["route"],
        seed_classification["engine"],
        None,
    )
    assert row.cost_usd == seed_classification["cost_usd"]
    assert row.review_reasons == seed_classification["review_reasons"]
    assert row.prompt_tokens == seed_classification["usage"]["prompt_tokens"]
    assert row.completion_tokens == seed_classification["usage"]["completion_tokens"]


def test_threshold_above_one_flags_every_ticket(review_server):
    """TRIAGE_ROUTING__CONFIDENCE_THRESHOLD=1.5: no confidence can reach it, so needs_review is always true."""
    from sqlalchemy import select

    from server.store.db import make_sessionmaker
    from server.store.models import Classification

    with httpx.Client(base_url=review_server.base_url, timeout=httpx.Timeout(300.0, connect=10.0)) as c:
        r = c.post("/v1/classify", json=SEED_TICKET)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_full_result(body, threshold=1.5)
    assert body["needs_review"] is True
    assert body["ticket_id"].startswith("t_")  # generated when the caller gives none
    # The fallback is off: the low-confidence path ends with a human, every label field a reason.
    assert body["route"] == "human" and body["cache"] is None
    assert body["review_reasons"] == body["confidence"]

    engine = review_server.open_store()
    try:
        with make_sessionmaker(engine)() as s:
            row = s.scalar(select(Classification).where(Classification.request_id == body["request_id"]))
        assert row is not None and row.status == "done"
        assert row.needs_review is True and row.route == "human"
        assert row.ticket_id == body["ticket_id"]
    finally:
        engine.dispose()

    # ... and waits in the review queue until feedback resolves it.
    with httpx.Client(base_url=review_server.base_url, timeout=httpx.Timeout(60.0, connect=10.0)) as c:
        queue = c.get("/v1/review", params={"limit": 500})
        assert queue.status_code == 200, queue.text
        (item,) = [i for i in queue.json()["items"] if i["request_id"] == body["request_id"]]
        assert item["ticket_id"] == body["ticket_id"] and item["route"] == "human"
        assert item["reasons"] == body["review_reasons"] and item["prediction"]["category"] == body["category"]
        assert [
            i["request_id"] for i in c.get("/v1/review", params={"reason": "priority", "limit": 500}).json()["items"]
        ].count(body["request_id"]) == 1
        fb = c.post("/v1/feedback", json={"ticket_id": body["ticket_id"], "priority": "High", "reviewer": "qa"})
        assert fb.status_code == 201, fb.text
        after = c.get("/v1/review", params={"limit": 500}).json()["items"]
        assert body["request_id"] not in [i["request_id"] for i in after]


def test_rejected_ticket_is_not_stored(client, db_sessions):
    before = row_count(db_sessions)
    r = client.post("/v1/classify", json={"subject": " ", "body": "\n"})
    assert r.status_code == 422
    assert row_count(db_sessions) == before
