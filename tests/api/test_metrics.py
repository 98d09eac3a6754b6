"""GET /metrics in process: after a few real requests through the app, every counter moved by exactly what
happened (routes, cache hits, errors, HTTP statuses, auth refusals), histograms carry the documented buckets,
the store metrics read the feedback of the real SQLite store, and X-Request-ID goes in and comes back."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.config import Role
from server.engines.base import EngineUnavailable
from server.observability.logging import JsonFormatter, RequestIdFilter
from server.observability.metrics import CONFIDENCE_BUCKETS, LATENCY_BUCKETS
from tests.api.conftest import bearer, make_app, make_key
from tests.observability.samples import Samples, delta
from tests.routing.doubles import ScriptedEngine

LOW = {"category": 0.2, "priority": 0.9, "sentiment": 0.9}
NO_STORE_CACHE = {"store_cache_s": 0.0, "drift_cache_s": 0.0}


def scrape(client: TestClient, **headers: str) -> Samples:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Samples(r.text)


def ticket(n: int, subject: str | None = None) -> dict[str, str]:
    return {"ticket_id": f"M-{n}", "subject": subject or f"printer {n} jams", "body": f"body of ticket {n}"}


def test_counters_move_by_exactly_what_happened(tmp_path: Path) -> None:
    engine = ScriptedEngine(first={"unsure": LOW})
    with TestClient(make_app(tmp_path, engine, metrics=NO_STORE_CACHE)) as client:
        before = scrape(client)
        assert client.post("/v1/classify", json=ticket(1)).json()["route"] == "local"
        assert client.post("/v1/classify", json=ticket(2)).json()["route"] == "local"
        assert (
            client.post(
                "/v1/classify", json=ticket(3, subject=ticket(1)["subject"]) | {"body": ticket(1)["body"]}
            ).json()["route"]
            == "cache"
        )
        assert client.post("/v1/classify", json=ticket(4, subject="unsure")).json()["route"] == "human"
        r = client.post("/v1/batch", json={"tickets": [ticket(5), ticket(6)]})
        assert r.status_code == 200, r.text
        assert client.post("/v1/classify", json={"subject": 5}).status_code == 422
        after = scrape(client)

    def d(name: str, **labels: str) -> float:
        return delta(before, after, name, **labels)

    routes = {route: d("triage_routes_total", route=route) for route in ("local", "cache", "human", "hosted")}
    assert routes == {"local": 4, "cache": 1, "human": 1, "hosted": 0}
    assert d("triage_routes_total", engine="default", variant="none") == 6
    assert d("triage_cache_lookups_total", kind="exact") == 1
    assert d("triage_cache_lookups_total", kind="miss") == 5
    # Per-ticket latency by the route template of the request that carried it.
    assert d("triage_classification_duration_seconds_count", endpoint="/v1/classify") == 4
    assert d("triage_classification_duration_seconds_count", endpoint="/v1/batch", route="local") == 2
    # Every answered ticket's label fields (category, priority, sentiment), the human-bound one's too.
    assert d("triage_confidence_count", field="category") == 6
    assert d("triage_confidence_bucket", field="category", le="0.25") == 1  # the unsure ticket's 0.2
    assert d("triage_confidence_sum", field="priority") == pytest.approx(6 * 0.9)
    assert d("triage_classification_cost_usd_count", route="cache") == 1
    assert d("triage_classification_errors_total") == 0
    assert d("triage_http_requests_total", endpoint="/v1/classify", method="POST", status="200") == 4
    assert d("triage_http_requests_total", endpoint="/v1/classify", method="POST", status="422") == 1
    assert d("triage_http_requests_total", endpoint="/v1/batch", status="200") == 1
    assert d("triage_http_request_duration_seconds_count", endpoint="/v1/classify") == 5
    # The first scrape itself is counted by the second one.
    assert d("triage_http_requests_total", endpoint="/metrics", status="200") == 1


def test_engine_errors_and_auth_refusals_are_counted_by_kind(tmp_path: Path) -> None:
    engine = ScriptedEngine(fail=EngineUnavailable("down"))
    key = make_key(tmp_path, "classify")
    with TestClient(make_app(tmp_path, engine, auth={"required": True})) as client:
        before = scrape(client)
        assert client.post("/v1/classify", json=ticket(1), headers=bearer(key)).status_code == 503
        assert client.post("/v1/classify", json=ticket(2)).status_code == 401
        assert client.post("/v1/classify", json=ticket(3), headers=bearer("trk_nope_nope")).status_code == 401
        assert client.get("/v1/review", headers=bearer(key)).status_code == 403
        assert client.get("/no/such/path").status_code == 404
        after = scrape(client)

    assert delta(before, after, "triage_classification_errors_total", kind="unavailable", endpoint="/v1/classify") == 1
    assert delta(before, after, "triage_routes_total") == 0
    assert delta(before, after, "triage_auth_refusals_total", reason="unauthorized") == 2
    assert delta(before, after, "triage_auth_refusals_total", reason="forbidden") == 1
    assert delta(before, after, "triage_http_requests_total", endpoint="/v1/classify", status="401") == 2
    assert delta(before, after, "triage_http_requests_total", endpoint="/v1/classify", status="503") == 1
    # An unknown path is one series, whatever was asked (a scanner must not add a series per path).
    assert delta(before, after, "triage_http_requests_total", endpoint="unmatched", status="404") == 1
    assert not any("/no/such" in labels.get("endpoint", "") for labels in after.labels_of("triage_http_requests_total"))


def test_histograms_have_the_documented_buckets(client: TestClient) -> None:
    assert client.post("/v1/classify", json=ticket(1)).status_code == 200
    samples = scrape(client)
    les = {labels["le"] for labels in samples.labels_of("triage_classification_duration_seconds_bucket")}
    assert les == {*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf"}
    assert min(LATENCY_BUCKETS) == 0.05 and max(LATENCY_BUCKETS) == 600.0
    conf = {labels["le"] for labels in samples.labels_of("triage_confidence_bucket")}
    assert conf == {*(repr(float(b)) for b in CONFIDENCE_BUCKETS), "+Inf"}


def test_review_accuracy_and_override_rate_come_from_the_store(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, metrics=NO_STORE_CACHE)) as client:
        for n in range(1, 5):
            assert client.post("/v1/classify", json=ticket(n)).status_code == 200
        feedback = [
            {"ticket_id": "M-1", "reviewer": "ann", "category": "Technical"},  # overrides category
            {"ticket_id": "M-2", "reviewer": "ann", "category": "Billing"},  # confirms the prediction
            {"ticket_id": "M-3", "reviewer": "bob", "comment": "looks right"},  # agrees with every label
        ]
        for body in feedback:
            assert client.post("/v1/feedback", json=body).status_code == 201
        s = scrape(client)
    assert s.get("triage_store_metrics_up") == 1
    assert s.get("triage_review_reviewed", field="category", label="Billing") == 3
    assert s.get("triage_review_overridden", field="category", label="Billing") == 1
    assert s.get("triage_review_accuracy", field="category", label="Billing") == 2 / 3
    assert s.get("triage_review_override_rate", field="priority", label="High") == 0
    assert s.get("triage_review_field_accuracy", field="priority") == 1.0
    assert s.get("triage_review_tickets") == 3
    assert s.get("triage_review_ticket_override_rate") == 1 / 3
    # Four results in the recent drift window, none in the reference one: no PSI yet, the counts say why.
    assert s.get("triage_drift_window_results", window="recent") == 4
    assert not s.has("triage_drift_psi")


def test_metrics_can_require_an_admin_key(tmp_path: Path) -> None:
    keys: dict[Role, str] = {role: make_key(tmp_path, role) for role in ("admin", "review")}
    with TestClient(make_app(tmp_path, auth={"required": True}, metrics={"require_admin": True})) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers=bearer(keys["review"])).status_code == 403
        assert "triage_http_requests_total" in client.get("/metrics", headers=bearer(keys["admin"])).text
    with TestClient(make_app(tmp_path, auth={"required": True})) as client:  # open by default, like /health
        assert client.get("/metrics").status_code == 200


def test_request_id_goes_in_and_comes_back_on_every_response(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("triage.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)  # setLevel, not .level =: the logger caches isEnabledFor
    try:
        with TestClient(make_app(tmp_path, auth={"required": True})) as client:
            r = client.post("/v1/classify", json=ticket(1), headers={"X-Request-ID": "req-abc 123"})
            assert r.status_code == 401 and r.headers["x-request-id"] == "req-abc 123"  # refusals carry it too
            assert client.get("/health", headers={"X-Request-ID": "h-1"}).headers["x-request-id"] == "h-1"
            made = client.get("/health").headers["x-request-id"]
            assert len(made) == 32 and int(made, 16) >= 0
            bad: list[str | bytes] = ["x" * 129, " leading-space", "tab\there", "é-non-ascii".encode(), ""]
            for value in bad:
                got = client.get("/health", headers={"X-Request-ID": value}).headers["x-request-id"]  # type: ignore[arg-type]
                assert got != value and len(got) == 32
            assert client.get("/health", headers={"X-Request-ID": "y" * 128}).headers["x-request-id"] == "y" * 128
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    refused = next(line for line in lines if line["request_id"] == "req-abc 123")
    assert refused["status"] == 401 and refused["endpoint"] == "/v1/classify" and refused["method"] == "POST"
    assert refused["level"] == "INFO" and refused["logger"] == "triage.access" and refused["duration_ms"] >= 0
    assert any(line["request_id"] == "h-1" and line["path"] == "/health" for line in lines)


def test_every_ticket_metric_carries_its_ab_variant(tmp_path: Path) -> None:
    ab = {"enabled": True, "variants": [{"name": "arm-a"}, {"name": "arm-b"}]}
    with TestClient(make_app(tmp_path, ab=ab)) as client:
        before = scrape(client)
        variants = [client.post("/v1/classify", json=ticket(n)).json()["variant"] for n in range(20)]
        after = scrape(client)
    assert set(variants) == {"arm-a", "arm-b"}
    for arm in ("arm-a", "arm-b"):
        n = variants.count(arm)
        assert delta(before, after, "triage_routes_total", variant=arm) == n
        assert delta(before, after, "triage_classification_duration_seconds_count", variant=arm) == n
        assert delta(before, after, "triage_confidence_count", variant=arm, field="category") == n
    assert delta(before, after, "triage_routes_total", variant="none") == 0
