"""Every hosted-API call is audited with exactly what left the premises: the service over the real SDKs,
real HTTP and the fake hosted APIs, which record the bytes they received."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy import text

from server.config import RedactionSettings, load_settings
from server.routing import ServiceCache
from server.service import ClassificationService, TicketRequest
from server.store import audit, crypto
from server.store.db import make_db_engine, make_sessionmaker, migrate
from server.store.keys import create_key
from tests.fallback.fake_hosted import Fail, FakeHostedAPI, Reply
from tests.routing.doubles import ScriptedEngine

LOW = {"category": 0.9, "priority": 0.3, "sentiment": 0.8}
CARD, EMAIL = "4111 1111 1111 1111", "jane.doe@example.com"
BODY = f"Card {CARD}, mail {EMAIL}. I was charged twice for my invoice this month, please refund one payment."


@pytest.fixture(scope="module")
def redactor():
    from server.privacy.redact import Redactor

    return Redactor(RedactionSettings())


@pytest.fixture
def store(tmp_path):
    db_engine = crypto.attach(make_db_engine(f"sqlite:///{tmp_path / 'audit.db'}"), crypto.Keyring.generate())
    migrate(db_engine)
    yield db_engine
    db_engine.dispose()


@pytest.fixture(params=["openai", "anthropic"])
def fake(request) -> FakeHostedAPI:
    fake: FakeHostedAPI = request.getfixturevalue(f"fake_{request.param}")
    fake.provider = request.param  # type: ignore[attr-defined]
    return fake


@pytest.fixture
async def service(store, taxonomy, fake, redactor, request):
    from server.fallback import HostedFallback

    made: list[HostedFallback] = []

    def build(hosted_payload: str = "full", max_retries: int = 0) -> ClassificationService:
        provider: str = fake.provider  # type: ignore[attr-defined]
        fallback: dict[str, Any] = {
            "enabled": True,
            "provider": provider,
            "base_url": fake.url + ("/v1" if provider == "openai" else ""),
            "model": "fake-gpt",
            "api_key": "sk-test-not-a-real-key",
            "timeout_s": 5.0,
            "max_retries": max_retries,
        }
        s = load_settings(database_url="sqlite://", fallback=fallback, audit={"hosted_payload": hosted_payload})
        hosted = HostedFallback(
            s.fallback, s.redaction, taxonomy, redactor=redactor, backoff_s=0.01, max_backoff_s=0.05
        )
        made.append(hosted)
        engine = ScriptedEngine(first={"Charged twice": LOW, "Second ticket": LOW})
        return ClassificationService(
            s, taxonomy, engine, make_sessionmaker(store), cache=ServiceCache(s, taxonomy), hosted=hosted
        )

    yield build
    for hosted in made:
        await hosted.aclose()


def hosted_events(store) -> list[Any]:
    with make_sessionmaker(store)() as session:
        return audit.events(session, actions=["hosted_call"])


async def test_the_audited_payload_is_the_bytes_the_hosted_api_received(service, fake, store):
    with make_sessionmaker(store)() as session:
        key = create_key(session, name="agent-7", role="classify", hash_n=2**4)
    svc = service()
    (outcome,) = await svc.classify_many([TicketRequest("Charged twice", BODY, ticket_id="T-42", key_id=key.record.id)])
    assert outcome.result is not None and outcome.result["route"] == "hosted"

    (received,) = fake.requests
    (event,) = hosted_events(store)
    assert event.payload is not None
    assert event.payload.encode("utf-8") == received.body  # byte for byte what the fake API got
    assert event.payload_sha256 == hashlib.sha256(received.body).hexdigest()
    assert event.ticket_id == "T-42" and event.actor == "agent-7" and event.key_id == key.record.id
    assert event.detail["request_id"] == outcome.request_id and event.detail["bytes"] == len(received.body)
    assert event.target.endswith(received.path)
    for planted in (CARD, CARD.replace(" ", ""), EMAIL):
        assert planted not in event.payload
    assert event.detail["redactions"].get("EMAIL_ADDRESS") == 1
    assert event.detail["redactions"].get("CREDIT_CARD") == 1
    with store.connect() as conn:  # sealed at rest
        raw = conn.execute(text("SELECT payload FROM audit_log WHERE action = 'hosted_call'")).scalar_one()
    assert raw.startswith(crypto.PREFIX) and "refund" not in raw


async def test_hash_mode_keeps_the_digest_and_the_counts_only(service, fake, store):
    svc = service(hosted_payload="hash")
    await svc.classify_many([TicketRequest("Charged twice", BODY, ticket_id="T-43")])
    (received,) = fake.requests
    (event,) = hosted_events(store)
    assert event.payload is None
    assert event.payload_sha256 == hashlib.sha256(received.body).hexdigest()
    assert event.detail["redactions"]["EMAIL_ADDRESS"] == 1 and event.actor == "anonymous"


async def test_every_attempt_is_audited_failed_ones_too(service, fake, store):
    fake.script(Fail(503), Reply())
    svc = service(max_retries=1)
    await svc.classify_many(
        [
            TicketRequest("Charged twice", BODY, ticket_id="T-44"),
            TicketRequest("Second ticket", "Other text", ticket_id="T-45"),
        ]
    )
    events = hosted_events(store)
    # Both tickets' tasks ran at once: each event is bound to its own ticket and holds its own bytes.
    assert len(fake.requests) == len(events) == 3
    assert sorted(e.payload.encode() for e in events) == sorted(r.body for r in fake.requests)
    by_ticket = {tid: [e for e in events if e.ticket_id == tid] for tid in ("T-44", "T-45")}
    assert {tid: len(evs) for tid, evs in by_ticket.items()} in ({"T-44": 2, "T-45": 1}, {"T-44": 1, "T-45": 2})
    assert all("Other text" in e.payload for e in by_ticket["T-45"])
    assert all("charged twice" in e.payload for e in by_ticket["T-44"])


async def test_no_hosted_call_no_event(service, fake, store):
    svc = service()
    await svc.classify_many([TicketRequest("Confident", "all fine", ticket_id="T-46")])
    assert fake.requests == [] and hosted_events(store) == []
