"""Reading stored results back: GET /v1/results/{request_id} and GET /v1/tickets/{ticket_id} (in-process app over
a real SQLite store; the engine is the ScriptedEngine double). Scoped keys never read another scope's rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.api.app import create_server
from server.config import Settings, load_settings
from server.store import audit
from server.store.db import migrate, open_store
from server.store.keys import create_key
from server.store.models import utcnow
from tests.routing.doubles import ScriptedEngine

LOW = {"category": 0.9, "priority": 0.3, "sentiment": 0.8}


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}", storage={"data_key_file": tmp_path / "data.key"}, **overrides
    )


def ticket(ticket_id: str, subject: str = "Charged twice", body: str | None = None) -> dict[str, str]:
    return {"ticket_id": ticket_id, "subject": subject, "body": body or f"{ticket_id}: I was charged twice, refund."}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    engine = ScriptedEngine(first={"low": LOW})
    with TestClient(create_server(settings_for(tmp_path), engine=engine)) as c:
        yield c


def reads(client: TestClient) -> list[Any]:
    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        return audit.events(session, actions=["result_read"])


def test_a_result_reads_back_with_its_explanation_and_feedback(client: TestClient) -> None:
    before = utcnow()
    classified = client.post("/v1/classify", json=ticket("T-1", subject="low")).json()
    rid = classified["request_id"]
    fb = client.post("/v1/feedback", json={"ticket_id": "T-1", "priority": "Low", "reviewer": "anna", "comment": "ok"})
    assert fb.status_code == 201, fb.text

    r = client.get(f"/v1/results/{rid}")
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["request_id"] == rid and got["ticket_id"] == "T-1" and got["status"] == "done"
    assert got["model"] == {"base": "/models/base-model", "adapter": None}
    assert got["prompt_version"] == classified["prompt_version"] and got["taxonomy"] == classified["taxonomy"]
    assert got["engine"] == classified["engine"] and got["route"] == "human" and got["needs_review"] is True
    assert got["confidence"] == classified["confidence"] and got["review_reasons"] == {"priority": 0.3}
    assert got["prediction"]["category"] == "Billing" and got["reasoning"] == "charged twice"
    assert got["created_at"] >= before.isoformat()[:19] and got["completed_at"] is not None
    (feedback,) = got["feedback"]
    assert feedback["reviewer"] == "anna" and feedback["corrections"] == {"priority": "Low"}
    assert feedback["comment"] == "ok" and feedback["redacted_at"] is None
    assert got["text"] is None and got["history"] is None  # text only on request; history on /tickets only

    with_text = client.get(f"/v1/results/{rid}", params={"include_text": "true"}).json()
    assert with_text["text"] == {
        "subject": "low",
        "body": "T-1: I was charged twice, refund.",
        "previous_interactions": None,
    }

    events = reads(client)
    assert [(e.target, e.ticket_id, e.detail) for e in events] == [
        (rid, "T-1", {"include_text": False}),
        (rid, "T-1", {"include_text": True}),
    ]
    assert all(e.actor == "anonymous" and e.payload is None for e in events)


def test_a_ticket_reads_back_its_latest_result_and_history(client: TestClient) -> None:
    first = client.post("/v1/classify", json=ticket("T-2")).json()["request_id"]
    second = client.post("/v1/classify", json=ticket("T-2", body="a new message on the same ticket")).json()
    r = client.get("/v1/tickets/T-2")
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["request_id"] == second["request_id"] and got["route"] == "local" and got["feedback"] == []
    assert got["history"] == [
        {"request_id": first, "status": "done"},
        {"request_id": second["request_id"], "status": "done"},
    ]
    assert [e.target for e in reads(client)] == [second["request_id"]]


def test_missing_and_malformed_ids(client: TestClient) -> None:
    for path in ("/v1/tickets/nope", "/v1/results/0123456789abcdef"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
    for path in ("/v1/tickets/" + "x" * 129, "/v1/tickets/a%00b", "/v1/results/a%00b", "/v1/results/" + "f" * 65):
        r = client.get(path)
        assert r.status_code == 422, (path, r.text)
    injection = client.get("/v1/tickets/' OR 1=1 --")
    assert injection.status_code == 404
    assert client.get("/v1/tickets/T-x", params={"include_text": "maybe"}).status_code == 422
    assert reads(client) == []  # nothing was read, nothing audited


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app with keys required: review and classify keys of scopes a and b, an unscoped reviewer."""
    settings = settings_for(tmp_path, auth={"required": True, "hash_n": 16})
    db = open_store(settings.database_url, settings.storage)
    migrate(db)
    keys: dict[str, str] = {}
    from sqlalchemy.orm import Session

    with Session(db) as session:
        for name, role, scope in [
            ("classify-a", "classify", "a"),
            ("classify-b", "classify", "b"),
            ("review-a", "review", "a"),
            ("review-all", "review", None),
        ]:
            keys[name] = create_key(session, name=name, role=role, scope=scope, hash_n=16).key  # type: ignore[arg-type]
    db.dispose()
    with TestClient(create_server(settings, engine=ScriptedEngine())) as c:
        yield c, keys


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_scoped_keys_never_read_another_scopes_rows(keyed: tuple[TestClient, dict[str, str]]) -> None:
    client, keys = keyed
    rids: dict[str, str] = {}
    for name, tid in [("classify-a", "T-A"), ("classify-b", "T-B"), ("classify-a", "T-S"), ("classify-b", "T-S")]:
        r = client.post("/v1/classify", json=ticket(tid, body=f"{name} {tid} charged twice"), headers=auth(keys[name]))
        assert r.status_code == 200, r.text
        rids[f"{name}:{tid}"] = r.json()["request_id"]

    a = auth(keys["review-a"])
    assert client.get("/v1/tickets/T-A", headers=a).status_code == 200
    assert client.get(f"/v1/results/{rids['classify-a:T-A']}", headers=a).status_code == 200
    # Another scope's row is missing, the same 404 as a ticket that does not exist.
    other = client.get("/v1/tickets/T-B", headers=a)
    assert other.status_code == 404 and other.json() == client.get("/v1/tickets/T-none", headers=a).json() | {
        "message": other.json()["message"]
    }
    assert client.get(f"/v1/results/{rids['classify-b:T-B']}", headers=a).status_code == 404
    # A ticket id both scopes use: each sees only its own result and history.
    shared = client.get("/v1/tickets/T-S", headers=a, params={"include_text": "true"}).json()
    assert shared["request_id"] == rids["classify-a:T-S"] and "classify-a" in shared["text"]["body"]
    assert [h["request_id"] for h in shared["history"]] == [rids["classify-a:T-S"]]

    everyone = auth(keys["review-all"])
    assert client.get("/v1/tickets/T-B", headers=everyone).status_code == 200
    assert len(client.get("/v1/tickets/T-S", headers=everyone).json()["history"]) == 2

    # Roles: a classify key may not read results back; no key at all is a 401.
    assert client.get("/v1/tickets/T-A", headers=auth(keys["classify-a"])).status_code == 403
    assert client.get("/v1/tickets/T-A").status_code == 401

    events = reads(client)
    assert {(e.actor, e.ticket_id) for e in events} == {
        ("review-a", "T-A"),
        ("review-a", "T-S"),
        ("review-all", "T-B"),
        ("review-all", "T-S"),
    }
