"""DELETE /v1/tickets/{ticket_id}: results, feedback, result-cache entries and audit payloads erased, counted, audited."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.api.app import create_server
from server.auth import Principal
from server.prompts import TicketInput
from server.store import audit
from server.store.db import migrate, open_store
from server.store.keys import create_key
from server.store.models import Classification, Feedback
from tests.api.test_results import auth, settings_for, ticket
from tests.routing.doubles import ScriptedEngine

SUBJECT, BODY = "Charged twice", "T-1: I was charged twice, refund. Mail jane@example.org"


def test_erasure_removes_everything_and_says_what(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    with TestClient(create_server(settings_for(tmp_path), engine=engine)) as client:
        state = client.app.state  # type: ignore[attr-defined]
        first = client.post("/v1/classify", json=ticket("T-1", SUBJECT, BODY)).json()
        again = client.post("/v1/classify", json=ticket("T-1", SUBJECT, BODY)).json()
        assert first["route"] == "local" and again["route"] == "cache"  # the answer is in the result cache
        assert client.post("/v1/classify", json=ticket("T-2")).status_code == 200  # another ticket: untouched
        fb = client.post("/v1/feedback", json={"ticket_id": "T-1", "priority": "Low", "reviewer": "anna"})
        assert fb.status_code == 201
        with state.sessions() as session:  # what the hosted fallback would have recorded for this ticket
            audit.record(
                session, Principal("x", "classify"), "hosted_call", ticket_id="T-1", payload="<EMAIL_ADDRESS_1>"
            )
        assert state.cache.get(engine, TicketInput(SUBJECT, BODY)) is not None

        r = client.delete("/v1/tickets/T-1")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "ticket_id": "T-1",
            "erased": {"classifications": 2, "feedback": 1, "audit_payloads": 1, "cache_entries": 1, "job_tickets": 0},
        }

        with state.sessions() as session:
            assert session.scalar(select(func.count()).where(Classification.ticket_id == "T-1")) == 0
            assert session.scalar(select(func.count()).select_from(Feedback)) == 0
            assert session.scalar(select(func.count()).where(Classification.ticket_id == "T-2")) == 1
            events = audit.events(session, ticket_id="T-1")
        # The events stay (append-only), their payloads do not; the erasure event holds counts, no text.
        assert [e.action for e in events if e.action in ("classify", "hosted_call", "erasure")] == [
            "classify",
            "classify",
            "hosted_call",
            "erasure",
        ]
        (hosted,) = [e for e in events if e.action == "hosted_call"]
        erasure = events[-1]
        assert all(e.payload is None for e in events)
        assert hosted.payload is None and hosted.payload_sha256 == audit.payload_digest("<EMAIL_ADDRESS_1>")
        assert erasure.payload is None and erasure.actor == "anonymous"
        assert erasure.detail == {
            "classifications": 2,
            "feedback": 1,
            "audit_payloads": 1,
            "cache_entries": 1,
            "job_tickets": 0,
        }
        assert "charged" not in str(erasure.detail) and "jane" not in str(erasure.detail)

        assert state.cache.get(engine, TicketInput(SUBJECT, BODY)) is None
        assert client.get("/v1/tickets/T-1").status_code == 404
        second = client.delete("/v1/tickets/T-1")
        assert second.status_code == 404 and second.json()["error"] == "not_found"
        # Classified again: answered afresh, not from a cache entry that survived.
        assert client.post("/v1/classify", json=ticket("T-1", SUBJECT, BODY)).json()["route"] == "local"


def test_erasure_needs_admin_and_stays_in_scope(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, auth={"required": True, "hash_n": 16})
    db = open_store(settings.database_url, settings.storage)
    migrate(db)
    with Session(db) as session:
        keys = {
            name: create_key(session, name=name, role=role, scope=scope, hash_n=16).key  # type: ignore[arg-type]
            for name, role, scope in [
                ("classify-a", "classify", "a"),
                ("classify-b", "classify", "b"),
                ("review-all", "review", None),
                ("admin-a", "admin", "a"),
                ("admin", "admin", None),
            ]
        }
    db.dispose()
    with TestClient(create_server(settings, engine=ScriptedEngine())) as client:
        for name in ("classify-a", "classify-b"):
            r = client.post("/v1/classify", json=ticket("T-S", body=f"{name} charged twice"), headers=auth(keys[name]))
            assert r.status_code == 200
        client.post("/v1/classify", json=ticket("T-B"), headers=auth(keys["classify-b"]))

        assert client.delete("/v1/tickets/T-S", headers=auth(keys["review-all"])).status_code == 403
        assert client.delete("/v1/tickets/T-S").status_code == 401
        # A scoped admin erases its scope's rows only; another scope's ticket is missing to it.
        assert client.delete("/v1/tickets/T-B", headers=auth(keys["admin-a"])).status_code == 404
        r = client.delete("/v1/tickets/T-S", headers=auth(keys["admin-a"]))
        assert r.status_code == 200 and r.json()["erased"]["classifications"] == 1
        left = client.get("/v1/tickets/T-S", headers=auth(keys["review-all"]), params={"include_text": True}).json()
        assert "classify-b" in left["text"]["body"] and len(left["history"]) == 1
        r = client.delete("/v1/tickets/T-B", headers=auth(keys["admin"]))
        assert r.status_code == 200 and r.json()["erased"]["classifications"] == 1
        with client.app.state.sessions() as session:  # type: ignore[attr-defined]
            erasures = audit.events(session, actions=["erasure"])
        assert [(e.actor, e.ticket_id) for e in erasures] == [("admin-a", "T-S"), ("admin", "T-B")]
