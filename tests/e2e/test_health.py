"""GET /health, /ready, /docs and /openapi.json over real HTTP."""

from __future__ import annotations

from server.config import DEFAULT_BASE_MODEL_DIR
from tests.conftest import ACTIVE_ADAPTER, ACTIVE_PROMPT


def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok"
    assert body["model_loaded"] is True
    assert body["database"] == "ok"
    assert body["model"]["base"] == str(DEFAULT_BASE_MODEL_DIR)
    assert body["model"]["adapter"] == ACTIVE_ADAPTER
    assert body["model"]["engine"] == "transformers"
    assert body["prompt_version"] == ACTIVE_PROMPT
    assert body["taxonomy"] == "tickets@1"
    assert isinstance(body["engine"], dict)
    # Counters next to the engine stats: routes, result cache, hosted fallback (off by default).
    assert set(body["cache"]) >= {"enabled", "backend", "exact", "near", "reachable"}
    assert set(body["cache"]["exact"]) == {"hits", "misses"} and body["cache"]["reachable"] is True
    assert set(body["routing"]["routes"]) == {"local", "local+review", "hosted", "human", "cache"}
    assert body["routing"]["engines"]["default"]["engine"] == f"transformers:{ACTIVE_ADAPTER}"
    assert body["fallback"] == {"enabled": False}


def test_ready(client):
    r = client.get("/ready")
    assert r.status_code == 200
    assert r.json() == {"ready": True}


def test_docs(client):
    r = client.get("/docs")
    assert r.status_code == 200
    assert "swagger" in r.text.lower()


def test_openapi(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert {"/v1/classify", "/v1/batch", "/v1/feedback", "/v1/review", "/health", "/ready"} <= set(spec["paths"])
    assert "post" in spec["paths"]["/v1/classify"]


def test_unknown_route_is_json_404(client):
    r = client.get("/v1/nope")
    assert r.status_code == 404
    assert r.json()["error"] and r.json()["message"]
