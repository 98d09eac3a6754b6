"""A ticket the engine refuses at admission: 429 with the engine's Retry-After (whole seconds, >= 1),
for /v1/classify and for a batch whose every ticket was refused, and the ticket's row is settled as a
stored failure, never left pending."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from server.engines.base import EngineOverloaded
from tests.api.conftest import make_app
from tests.e2e.checks import assert_error_body
from tests.routing.doubles import ScriptedEngine

TICKET = {"ticket_id": "T-9", "subject": "charged twice", "body": "Please refund the second charge."}


def stored_statuses(tmp_path) -> list[str]:
    engine = create_engine(f"sqlite:///{tmp_path / 'api.db'}")
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT status FROM classifications ORDER BY id"))]


def test_a_refused_ticket_is_a_429_with_the_engines_retry_after_and_a_stored_failure(tmp_path) -> None:
    with TestClient(make_app(tmp_path, ScriptedEngine(fail=EngineOverloaded(retry_after_s=7.2)))) as client:
        r = client.post("/v1/classify", json=TICKET)
        b = client.post("/v1/batch", json={"tickets": [TICKET, {**TICKET, "ticket_id": "T-10"}]})
    assert assert_error_body(r, 429)["details"]["ticket_id"] == "T-9"
    assert r.headers["retry-after"] == "8"  # rounded up: a client retrying at 7 would be early
    assert_error_body(b, 429)
    assert b.headers["retry-after"] == "8"
    assert stored_statuses(tmp_path) == ["failed", "failed", "failed"]  # settled, none pending


def test_retry_after_is_at_least_one_second(tmp_path) -> None:
    with TestClient(make_app(tmp_path, ScriptedEngine(fail=EngineOverloaded(retry_after_s=0.0)))) as client:
        r = client.post("/v1/classify", json=TICKET)
    assert_error_body(r, 429)
    assert r.headers["retry-after"] == "1"
