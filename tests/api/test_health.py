"""GET /health and GET /ready in process: 200 when the engine and the database are up, 503 otherwise."""

from __future__ import annotations

from fastapi.testclient import TestClient

from server.api.protocol import HealthOut, ReadyOut
from tests.api.conftest import make_app
from tests.routing.doubles import ScriptedEngine


def test_health_and_ready_when_up(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200, r.text
    health = HealthOut.model_validate(r.json())
    assert (health.status, health.model_loaded, health.database) == ("ok", True, "ok")
    assert health.taxonomy == "tickets@1" and health.model.engine == "scripted"
    assert {"routing", "cache", "fallback"} <= r.json().keys()
    assert client.get("/ready").json() == ReadyOut(ready=True).model_dump()


def test_health_is_503_degraded_when_the_model_did_not_load(tmp_path) -> None:
    engine = ScriptedEngine(ready=False, load_error="weights missing")
    with TestClient(make_app(tmp_path, engine)) as client:
        r, ready = client.get("/health"), client.get("/ready")
    assert r.status_code == 503 and HealthOut.model_validate(r.json()).status == "degraded"
    assert r.json()["error"] == "weights missing"
    assert (ready.status_code, ready.json()) == (503, {"ready": False})
