"""The low-confidence path end to end with the real model: TRIAGE_ROUTING__CONFIDENCE_THRESHOLD=1.5 sends
every ticket to the hosted fallback, here the FakeOpenAI test server (tests/fallback/fake_hosted.py),
which records the exact bytes it receives. (Fallback off -> human -> review queue: tests/e2e/test_classify.py.)"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.checks import assert_full_result
from tests.e2e.conftest import HOSTED_MODEL, get_row
from tests.fallback.fake_hosted import Fail

pytestmark = pytest.mark.model

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
TICKET = {
    "ticket_id": "pii-0001",
    "subject": "Charged twice for my March invoice",
    "body": f"Hello, this is Jane ({EMAIL}). My card {CARD} was charged twice for the March invoice of our Pro plan. "
    "Please refund one of the two payments.",
}


@pytest.fixture(scope="module")
def hosted_client(hosted_server):
    with httpx.Client(base_url=hosted_server.base_url, timeout=httpx.Timeout(300.0, connect=10.0)) as c:
        yield c


def _db(hosted_server):
    from server.store.db import make_sessionmaker

    return hosted_server.open_store(), make_sessionmaker


def test_low_confidence_goes_to_hosted_without_pii_then_to_the_cache(hosted_server, hosted_client, fake_openai):
    r = hosted_client.post("/v1/classify", json=TICKET)
    assert r.status_code == 200, r.text
    body = r.json()
    assert_full_result(body, ticket_id="pii-0001", threshold=None)
    assert body["route"] == "hosted" and body["needs_review"] is False and body["review_reasons"] is None
    assert body["engine"] == f"hosted:openai:{HOSTED_MODEL}"
    assert body["category"] == "Billing"  # FakeOpenAI's default answer

    (sent,) = fake_openai.requests
    for secret in (EMAIL, CARD, CARD.replace(" ", "")):
        assert secret.encode() not in sent.raw, f"{secret!r} reached the hosted provider"
    assert b"<EMAIL_ADDRESS_1>" in sent.raw or b"EMAIL" in sent.raw  # redacted, not dropped
    assert "twice" in sent.json()["messages"][1]["content"]  # the rest of the ticket did go

    engine, make_sessionmaker = _db(hosted_server)
    try:
        row = get_row(make_sessionmaker(engine), body["request_id"])
        assert row is not None and row.status == "done"
        assert (row.route, row.engine, row.needs_review) == ("hosted", body["engine"], False)
    finally:
        engine.dispose()

    # The same ticket again: answered from the cache, no model, no hosted call, no cost; stored as its own row.
    again = hosted_client.post("/v1/classify", json={**TICKET, "ticket_id": "pii-0002"})
    assert again.status_code == 200, again.text
    hit = again.json()
    assert (hit["route"], hit["cache"], hit["cost_usd"], hit["ticket_id"]) == ("cache", "exact", 0.0, "pii-0002")
    assert hit["category"] == body["category"] and hit["engine"] == body["engine"]
    assert len(fake_openai.requests) == 1
    health = hosted_client.get("/health").json()
    assert health["cache"]["exact"]["hits"] >= 1 and health["fallback"]["successes"] >= 1


def test_hosted_outage_degrades_to_human_not_5xx(hosted_client, fake_openai):
    fake_openai.script(*[Fail(503) for _ in range(5)])
    r = hosted_client.post(
        "/v1/classify",
        json={"subject": "VPN drops every hour", "body": "Since Monday the VPN client disconnects every hour."},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["route"] == "human" and body["needs_review"] is True
    assert body["review_reasons"]["fallback_unavailable"] == "server_error"
    queue = hosted_client.get("/v1/review", params={"reason": "fallback_unavailable"}).json()
    assert body["request_id"] in [i["request_id"] for i in queue["items"]]
