"""The routing features over the HTTP API (in-process TestClient; the engine is the ScriptedEngine double):
the review queue, /health counters, deadlines, engine and database faults, the hosted fallback, the lifespan."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.api.app import build_hosted, create_server, profile_settings
from server.config import EngineProfile, load_settings
from server.engines.base import EngineUnavailable
from server.store.db import make_db_engine, make_sessionmaker, open_store
from server.store.models import Classification
from tests.fallback.fake_hosted import Fail
from tests.routing.conftest import fallback_settings
from tests.routing.doubles import ScriptedEngine

LOW = {"category": 0.9, "priority": 0.3, "sentiment": 0.8}
LOW_CATEGORY = {"category": 0.2, "priority": 0.9, "sentiment": 0.8}


def settings_for(tmp_path, **overrides: Any):
    return load_settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", **overrides)


def ticket(subject: str, ticket_id: str, body: str | None = None) -> dict[str, str]:
    return {
        "ticket_id": ticket_id,
        "subject": subject,
        "body": body or f"body of {ticket_id}: I was charged twice, please refund.",
    }


def test_review_queue_lists_filters_pages_and_resolves(tmp_path):
    engine = ScriptedEngine(first={"low": LOW, "lowcat": LOW_CATEGORY})
    with TestClient(create_server(settings_for(tmp_path), engine=engine)) as client:
        for subject, tid in [("low", "T-1"), ("ok", "T-2"), ("lowcat", "T-3"), ("low", "T-4")]:
            r = client.post("/v1/classify", json=ticket(subject, tid))
            assert r.status_code == 200, r.text
        r = client.get("/v1/review")
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["total"] == 3 and (page["limit"], page["offset"]) == (50, 0)
        assert [i["ticket_id"] for i in page["items"]] == ["T-1", "T-3", "T-4"]  # oldest first, confident T-2 absent
        first = page["items"][0]
        assert set(first) >= {"request_id", "ticket_id", "created_at", "route", "reasons", "prediction", "confidence"}
        assert first["route"] == "human" and first["reasons"] == {"priority": 0.3}
        assert first["prediction"]["category"] == "Billing" and first["confidence"]["priority"] == 0.3

        assert [i["ticket_id"] for i in client.get("/v1/review", params={"reason": "priority"}).json()["items"]] == [
            "T-1",
            "T-4",
        ]
        assert [i["ticket_id"] for i in client.get("/v1/review", params={"reason": "category"}).json()["items"]] == [
            "T-3"
        ]
        assert client.get("/v1/review", params={"reason": "deadline"}).json() == {
            "items": [],
            "total": 0,
            "limit": 50,
            "offset": 0,
        }
        paged = client.get("/v1/review", params={"limit": 1, "offset": 1}).json()
        assert [i["ticket_id"] for i in paged["items"]] == ["T-3"] and paged["total"] == 3

        bad = client.get("/v1/review", params={"reason": "colour"})
        assert bad.status_code == 422 and "colour" in bad.json()["message"]
        assert client.get("/v1/review", params={"limit": 0}).status_code == 422

        fb = client.post("/v1/feedback", json={"ticket_id": "T-1", "priority": "Low", "reviewer": "anna"})
        assert fb.status_code == 201, fb.text
        assert [i["ticket_id"] for i in client.get("/v1/review").json()["items"]] == ["T-3", "T-4"]
        # A new classification of a resolved ticket that needs review again is listed again.
        client.post("/v1/classify", json=ticket("low", "T-1", "a new message on the same ticket"))
        assert [i["ticket_id"] for i in client.get("/v1/review").json()["items"]] == ["T-3", "T-4", "T-1"]
        assert "/v1/review" in client.get("/openapi.json").json()["paths"]


def test_result_fields_and_health_counters(tmp_path):
    engine = ScriptedEngine()
    with TestClient(
        create_server(settings_for(tmp_path, routing={"cost_per_cpu_second": 0.5}), engine=engine)
    ) as client:
        a = client.post("/v1/classify", json=ticket("ok", "T-a")).json()
        b = client.post(
            "/v1/classify",
            json=ticket("ok", "T-b", body=None) | {"body": "body of T-a: I was charged twice, please refund."},
        ).json()
        assert (a["route"], a["cache"], a["engine"], a["needs_review"], a["review_reasons"]) == (
            "local",
            None,
            "scripted:base-model",
            False,
            None,
        )
        assert a["cost_usd"] >= 0
        assert (b["route"], b["cache"], b["cost_usd"], b["ticket_id"]) == ("cache", "exact", 0.0, "T-b")
        health = client.get("/health")
        assert health.status_code == 200, health.text
        body = health.json()
        assert body["cache"]["exact"] == {"hits": 1, "misses": 1} and body["cache"]["reachable"] is True
        assert body["cache"]["backend"] == "memory"
        assert body["routing"]["routes"]["local"] == 1 and body["routing"]["routes"]["cache"] == 1
        assert body["routing"]["engines"]["default"]["engine"] == "scripted:base-model"
        assert body["fallback"] == {"enabled": False}
        assert body["engine"] == {"calls": 1}  # the engine's own stats, as before


def test_deadline_is_a_200_needs_review_result_not_504(tmp_path):
    engine = ScriptedEngine(delay_s=5)
    with TestClient(create_server(settings_for(tmp_path, engine={"request_timeout_s": 0.3}), engine=engine)) as client:
        r = client.post("/v1/classify", json=ticket("slow", "T-slow"))
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["route"], body["needs_review"], body["category"], body["priority"]) == ("human", True, None, None)
        assert "deadline" in body["review_reasons"]
        batch = client.post("/v1/batch", json={"tickets": [ticket("slow", "T-s1"), ticket("slow", "T-s2")]})
        assert batch.status_code == 200
        assert [res["route"] for res in batch.json()["results"]] == ["human", "human"]
        items = client.get("/v1/review", params={"reason": "deadline"}).json()["items"]
        assert [i["ticket_id"] for i in items] == ["T-slow", "T-s1", "T-s2"]


def test_model_failed_to_load_is_reported_and_503(tmp_path):
    engine = ScriptedEngine(
        ready=False,
        load_error="OSError: no model at /models/missing",
        fail=EngineUnavailable("OSError: no model at /models/missing"),
    )
    settings = settings_for(tmp_path)
    with TestClient(create_server(settings, engine=engine)) as client:
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["model_loaded"] is False and "no model" in health.json()["error"]
        assert client.get("/ready").status_code == 503
        r = client.post("/v1/classify", json=ticket("x", "T-x"))
        assert r.status_code == 503 and r.headers.get("Retry-After")
        assert r.json()["error"] == "classification_failed" and "no model" in r.json()["message"]
    with make_sessionmaker(open_store(settings.database_url, settings.storage, create_key=False))() as s:
        (row,) = s.scalars(select(Classification)).all()
        assert row.status == "failed" and "no model" in row.error


def test_database_unavailable_is_503_and_nothing_is_classified(tmp_path):
    engine = ScriptedEngine()
    app = create_server(settings_for(tmp_path), engine=engine)
    with TestClient(app) as client:
        dead = make_db_engine("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=1")
        app.state.service.sessions = app.state.sessions = make_sessionmaker(dead)
        app.state.db_engine = dead
        r = client.post("/v1/classify", json=ticket("x", "T-db"))
        assert r.status_code == 503 and r.json()["error"] == "database_unavailable" and r.headers.get("Retry-After")
        assert engine.calls == []
        q = client.get("/v1/review")
        assert q.status_code == 503 and q.json()["error"] == "database_unavailable"
        h = client.get("/health")
        assert h.status_code == 503 and h.json()["database"] == "unreachable"


def test_hosted_fallback_over_http_redacts(tmp_path, fake_openai, taxonomy, redactor):
    from server.fallback import HostedFallback

    settings = settings_for(tmp_path, routing={"confidence_threshold": 1.5}, fallback=fallback_settings(fake_openai))
    hosted = HostedFallback(settings.fallback, settings.redaction, taxonomy, redactor=redactor)
    email, card = "maria.lopez@example.org", "5555 5555 5555 4444"
    with TestClient(create_server(settings, engine=ScriptedEngine(), hosted=hosted)) as client:
        r = client.post(
            "/v1/classify",
            json={"subject": "Double charge", "body": f"Write to {email}; card {card} was charged twice."},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert (
            body["route"] == "hosted" and body["engine"] == "hosted:openai:fake-gpt" and body["needs_review"] is False
        )
        assert client.get("/health").json()["fallback"]["successes"] == 1
        fake_openai.script(Fail(500))
        r2 = client.post(
            "/v1/classify", json={"subject": "Other", "body": "Another ticket that the provider fails on."}
        )
        assert r2.status_code == 200 and r2.json()["route"] == "human"
        assert r2.json()["review_reasons"]["fallback_unavailable"] == "server_error"
    raw = b"".join(req.raw for req in fake_openai.requests)
    assert email.encode() not in raw and card.encode() not in raw and card.replace(" ", "").encode() not in raw


def test_lifespan_starts_and_stops_named_engines(tmp_path):
    default, small = ScriptedEngine(), ScriptedEngine("small")
    settings = settings_for(
        tmp_path, routing={"rules": [{"max_chars": 50, "engine": "small"}, {}], "engines": {"small": {}}}
    )
    app = create_server(settings, engine=default, engines={"small": small})
    with TestClient(app) as client:
        assert default.started and small.started
        assert app.state.hosted is None  # fallback off: nothing built
        r = client.post("/v1/classify", json={"subject": "short", "body": "refund"})
        assert r.json()["engine"] == "small:base-model"
        assert set(client.get("/health").json()["routing"]["engines"]) == {"default", "small"}
    assert default.stopped and small.stopped


def test_profile_settings_and_hosted_construction(taxonomy):
    base = load_settings(database_url="sqlite://")
    s = profile_settings(base, EngineProfile(adapter="tickets-smollm2-v1", kind="outlines"))
    assert (s.model.adapter, s.model.base, s.engine.kind, s.model.watch_registry_s) == (
        "tickets-smollm2-v1",
        base.model.base,
        "outlines",
        0.0,
    )
    bare = profile_settings(base, EngineProfile(base="/models/other"))
    assert (bare.model.adapter, bare.model.base, bare.engine.kind) == ("none", "/models/other", base.engine.kind)
    assert build_hosted(base, taxonomy) is None
    with pytest.raises(ValueError, match="api_key"):
        build_hosted(load_settings(database_url="sqlite://", fallback={"enabled": True}), taxonomy)
