"""`fields` on /v1/classify and per /v1/batch item (and `api.default_fields`): the answer, its
confidences, the routing thresholds, the stored row and the cache cover only the asked fields; the
engine sees the selection on the ticket (the embedded runner then decodes labels only, tested with
the real model in tests/engines/embedded); an unknown name is a 422 naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.api.app import create_server
from server.engines.base import ReviewInput
from server.store.db import make_sessionmaker
from server.store.models import Classification
from tests.api.conftest import api_settings, open_db
from tests.e2e.checks import assert_error_body
from tests.routing.doubles import ScriptedEngine

LABELS = ["category", "priority", "sentiment"]
TICKET = {"ticket_id": "T-1", "subject": "charged twice", "body": "Please refund the second charge."}
LOW_PRIORITY = {"category": 0.9, "priority": 0.3, "sentiment": 0.8}


def _settings(tmp_path: Path, **overrides: Any) -> Any:
    return api_settings(tmp_path, **overrides)


def _client(tmp_path: Path, engine: ScriptedEngine, **overrides: Any) -> TestClient:
    return TestClient(create_server(_settings(tmp_path, **overrides), engine=engine))


def _stored(tmp_path: Path) -> list[Classification]:
    db = open_db(tmp_path)
    with make_sessionmaker(db)() as session:
        rows = list(session.scalars(select(Classification).order_by(Classification.id)))
    db.dispose()
    return rows


def _fields_seen(engine: ScriptedEngine) -> list[tuple[str, ...] | None]:
    items = [item for call in engine.calls for item in call]
    return [(i.ticket if isinstance(i, ReviewInput) else i).fields for i in items]


def test_labels_only_answer_carries_and_stores_only_the_labels(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    with _client(tmp_path, engine) as client:
        r = client.post("/v1/classify", json={**TICKET, "fields": ["sentiment", "category", "priority"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["category"], body["priority"], body["extracted_info"]) == (
        "Billing",
        "High",
        {"sentiment": "negative"},
    )
    assert "reasoning" not in body  # absent, not null: it was not asked
    assert body["confidence"] == {"category": 0.9, "priority": 0.9, "sentiment": 0.9}
    assert body["fields"] == LABELS  # normalised to the taxonomy's order
    assert _fields_seen(engine) == [tuple(LABELS)]  # the engine is told: it can stop after the labels
    (row,) = _stored(tmp_path)
    assert row.fields == LABELS and row.status == "done"
    assert row.prediction == {"category": "Billing", "priority": "High", "extracted_info": {"sentiment": "negative"}}
    assert (row.category, row.priority, row.sentiment) == ("Billing", "High", "negative")


def test_free_text_fields_and_the_full_default(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    with _client(tmp_path, engine) as client:
        some = client.post("/v1/classify", json={**TICKET, "fields": ["reasoning", "category"]}).json()
        full = client.post("/v1/classify", json={**TICKET, "ticket_id": "T-2"}).json()
        every = client.post(
            "/v1/classify",
            json={**TICKET, "ticket_id": "T-3", "fields": [*LABELS, "product", "error_code", "reasoning"]},
        ).json()
    assert {k: some[k] for k in ("category", "reasoning", "fields")} == {
        "category": "Billing",
        "reasoning": "charged twice",
        "fields": ["category", "reasoning"],
    }
    assert "priority" not in some and "extracted_info" not in some and some["confidence"] == {"category": 0.9}
    assert full["fields"] is None and full["extracted_info"]["product"] is None and full["reasoning"]
    assert every["fields"] is None  # every field named = the full answer (same cache entries, same storage)
    rows = _stored(tmp_path)
    assert [r.fields for r in rows] == [["category", "reasoning"], None, None]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (["category", "urgency"], "'urgency'"),
        (["Category"], "'Category'"),
        ([], "fields"),
        ("category", "fields"),
    ],
)
def test_an_unknown_or_malformed_selection_is_a_422_naming_it(tmp_path: Path, fields: Any, words: str) -> None:
    engine = ScriptedEngine()
    with _client(tmp_path, engine) as client:
        r = client.post("/v1/classify", json={**TICKET, "fields": fields})
    assert words in assert_error_body(r, 422)["message"]
    assert engine.calls == [] and _stored(tmp_path) == []  # refused before anything is accepted


def test_batch_items_ask_for_their_own_fields(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    with _client(tmp_path, engine) as client:
        r = client.post(
            "/v1/batch",
            json={
                "tickets": [
                    {**TICKET, "fields": ["priority"]},
                    {**TICKET, "ticket_id": "T-2"},
                    {**TICKET, "ticket_id": "T-3", "fields": ["bogus"]},
                ]
            },
        )
    assert r.status_code == 200, r.text
    a, b, c = r.json()["results"]
    assert a["priority"] == "High" and "category" not in a and a["fields"] == ["priority"]
    assert b["fields"] is None and b["category"] == "Billing" and "reasoning" in b
    assert c["ticket_id"] == "T-3" and c["error"]["status"] == 422 and "'bogus'" in c["error"]["message"]
    assert _fields_seen(engine) == [("priority",), None]  # one engine call, labels-only and full mixed


def test_the_deployment_default_applies_when_a_request_names_none(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    with _client(tmp_path, engine, api={"default_fields": LABELS}) as client:
        default = client.post("/v1/classify", json=TICKET).json()
        asked = client.post("/v1/classify", json={**TICKET, "ticket_id": "T-2", "fields": ["reasoning"]}).json()
    assert default["fields"] == LABELS and "reasoning" not in default
    assert asked["fields"] == ["reasoning"] and asked["reasoning"] == "charged twice"


def test_an_unknown_default_is_refused_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'urgency'"):
        with _client(tmp_path, ScriptedEngine(), api={"default_fields": ["category", "urgency"]}):
            pass


def test_thresholds_apply_to_the_asked_label_fields(tmp_path: Path) -> None:
    """Priority is under its threshold: a request that did not ask for it is answered locally."""
    engine = ScriptedEngine(first={"charged twice": LOW_PRIORITY})
    with _client(tmp_path, engine) as client:
        narrow = client.post("/v1/classify", json={**TICKET, "fields": ["category", "sentiment"]}).json()
        full = client.post("/v1/classify", json={**TICKET, "ticket_id": "T-2", "fields": LABELS}).json()
    assert (narrow["route"], narrow["needs_review"], narrow["review_reasons"]) == ("local", False, None)
    assert (full["route"], full["needs_review"], full["review_reasons"]) == ("human", True, {"priority": 0.3})


def test_the_cache_never_serves_a_labels_only_answer_to_a_full_request(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    with _client(tmp_path, engine) as client:
        first = client.post("/v1/classify", json={**TICKET, "fields": LABELS}).json()
        full = client.post("/v1/classify", json={**TICKET, "ticket_id": "T-2"}).json()
    assert first["cache"] is None and full["cache"] is None and full["reasoning"] == "charged twice"
    assert _fields_seen(engine) == [tuple(LABELS), None]  # the full request went to the engine


def test_a_cached_full_answer_serves_a_labels_only_request_narrowed(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    with _client(tmp_path, engine) as client:
        client.post("/v1/classify", json=TICKET)
        hit = client.post("/v1/classify", json={**TICKET, "ticket_id": "T-2", "fields": ["category"]}).json()
        again = client.post("/v1/classify", json={**TICKET, "ticket_id": "T-3", "fields": ["category"]}).json()
    assert (hit["route"], hit["cache"], hit["fields"], hit["confidence"]) == (
        "cache",
        "exact",
        ["category"],
        {"category": 0.9},
    )
    assert "reasoning" not in hit and "priority" not in hit
    assert again["cache"] == "exact"
    assert len(engine.calls) == 1  # only the first, full request reached the engine
    assert _stored(tmp_path)[1].prediction == {"category": "Billing"}
