"""API keys in process: 401 / 403 / 429 before any work, revocation at once, anonymous mode on loopback only,
who asked stored on every row, feedback and audit event, and scoped keys that cannot see another scope."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.api.app import create_server
from server.auth.keys import parse_key
from server.config import load_settings
from server.store import audit
from server.store.db import make_sessionmaker
from server.store.keys import revoke_key
from server.store.models import Classification, Feedback
from tests.api.conftest import api_settings, bearer, make_app, make_key, open_db
from tests.e2e.checks import assert_error_body
from tests.routing.doubles import ScriptedEngine

TICKET = {"ticket_id": "T-1", "subject": "charged twice", "body": "my card was charged twice"}
UNSURE: dict[str, dict[str, float | None]] = {"unsure": {"category": 0.9, "priority": 0.2, "sentiment": 0.9}}
KEYS_ON: dict[str, Any] = {"auth": {"required": True}}


def counts(tmp_path: Path) -> tuple[int, int]:
    db = open_db(tmp_path)
    try:
        with make_sessionmaker(db)() as s:
            return (
                s.scalar(select(func.count()).select_from(Classification)) or 0,
                s.scalar(select(func.count()).select_from(Feedback)) or 0,
            )
    finally:
        db.dispose()


def stored(tmp_path: Path, model: type[Any]) -> list[Any]:
    db = open_db(tmp_path)
    try:
        with make_sessionmaker(db)() as s:
            return list(s.scalars(select(model).order_by(model.id)))
    finally:
        db.dispose()


def events(tmp_path: Path) -> list[Any]:
    db = open_db(tmp_path)
    try:
        with make_sessionmaker(db)() as s:
            return audit.events(s)
    finally:
        db.dispose()


def revoke(tmp_path: Path, name: str) -> None:
    db = open_db(tmp_path)
    try:
        with make_sessionmaker(db)() as s:
            revoke_key(s, name)
    finally:
        db.dispose()


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    """A server that requires keys (no rate limit here: 429 has its own tests)."""
    app = make_app(tmp_path, ScriptedEngine(first=UNSURE), auth={"required": True, "rate_limit": None})
    with TestClient(app) as client:
        yield client


def test_no_key_is_a_401_with_a_bearer_challenge_and_nothing_stored(keyed: TestClient, tmp_path: Path) -> None:
    for method, path, body in [
        ("POST", "/v1/classify", TICKET),
        ("POST", "/v1/batch", {"tickets": [TICKET]}),
        ("POST", "/v1/feedback", {"ticket_id": "T-1", "reviewer": "a", "comment": "c"}),
        ("GET", "/v1/review", None),
    ]:
        r = keyed.request(method, path, json=body)
        assert "Authorization: Bearer" in assert_error_body(r, 401)["message"]
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert counts(tmp_path) == (0, 0)


def test_every_role_does_what_it_may_and_gets_403_for_the_rest(keyed: TestClient, tmp_path: Path) -> None:
    classify, review, admin = (make_key(tmp_path, role) for role in ("classify", "review", "admin"))
    assert keyed.post("/v1/classify", json=TICKET, headers=bearer(classify)).status_code == 200
    assert keyed.post("/v1/batch", json={"tickets": [TICKET]}, headers=bearer(classify)).status_code == 200
    feedback = {"ticket_id": "T-1", "reviewer": "ana", "priority": "Low"}
    assert keyed.post("/v1/feedback", json=feedback, headers=bearer(review)).status_code == 201
    assert keyed.get("/v1/review", headers=bearer(review)).status_code == 200
    # admin holds every role's powers
    assert keyed.post("/v1/classify", json=TICKET, headers=bearer(admin)).status_code == 200
    assert keyed.get("/v1/review", headers=bearer(admin)).status_code == 200
    before = counts(tmp_path)
    assert "needs 'review'" in assert_error_body(keyed.get("/v1/review", headers=bearer(classify)), 403)["message"]
    assert_error_body(keyed.post("/v1/feedback", json=feedback, headers=bearer(classify)), 403)
    assert_error_body(keyed.post("/v1/classify", json=TICKET, headers=bearer(review)), 403)
    assert_error_body(keyed.post("/v1/batch", json={"tickets": [TICKET]}, headers=bearer(review)), 403)
    assert counts(tmp_path) == before  # refused requests wrote nothing


def test_a_revoked_key_is_refused_at_once_without_a_restart(keyed: TestClient, tmp_path: Path) -> None:
    key = make_key(tmp_path, "classify", name="ci")
    assert keyed.post("/v1/classify", json=TICKET, headers=bearer(key)).status_code == 200
    revoke(tmp_path, "ci")  # by another process (the CLI): the server keeps running
    r = keyed.post("/v1/classify", json=TICKET, headers=bearer(key))
    assert "revoked" in assert_error_body(r, 401)["message"]
    assert counts(tmp_path) == (1, 0)


def test_forged_keys_of_the_right_shape_are_401(keyed: TestClient, tmp_path: Path) -> None:
    key = make_key(tmp_path, "admin")
    parsed = parse_key(key)
    assert parsed is not None
    forged_secret = f"trk_{parsed.prefix}_{'A' * 43}"  # a real prefix, a guessed secret
    unknown_prefix = f"trk_{'B' * 10}_{parsed.secret}"  # a real secret under another prefix
    for bad in (forged_secret, unknown_prefix, key[:-1] + ("x" if key[-1] != "x" else "y"), "trk_x_y", key + " extra"):
        r = keyed.post("/v1/classify", json=TICKET, headers=bearer(bad))
        assert assert_error_body(r, 401)["error"] == "unauthorized"
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    for header in (f"Basic {key}", f"Token {key}", "Bearer", "Bearer "):
        assert_error_body(keyed.post("/v1/classify", json=TICKET, headers={"Authorization": header}), 401)
    assert counts(tmp_path) == (0, 0)


def test_401_and_403_come_before_the_body_is_read(keyed: TestClient, tmp_path: Path) -> None:
    classify = make_key(tmp_path, "classify")
    limit = api_settings(tmp_path).api.max_ticket_bytes * 1000
    for content in (b"{not json", b"\xff\xfe", b"x" * limit):
        r = keyed.post("/v1/classify", content=content, headers={"Content-Type": "application/json"})
        assert_error_body(r, 401)  # not 400, 413 or 422: who asks is checked first
        r = keyed.post(
            "/v1/feedback", content=content, headers={**bearer(classify), "Content-Type": "application/json"}
        )
        assert_error_body(r, 403)
    # with the right key the same malformed body is a 400, so the 401/403 above were not the body's doing
    r = keyed.post(
        "/v1/classify", content=b"{not json", headers={**bearer(classify), "Content-Type": "application/json"}
    )
    assert_error_body(r, 400)
    assert counts(tmp_path) == (0, 0)


def test_open_endpoints_need_no_key(keyed: TestClient) -> None:
    for path in ("/health", "/ready", "/docs", "/openapi.json"):
        assert keyed.get(path).status_code == 200, path


def test_without_keys_on_loopback_requests_are_anonymous_but_a_bad_key_is_still_401(tmp_path: Path) -> None:
    settings = api_settings(tmp_path)
    assert settings.api.host == "127.0.0.1" and settings.auth.required is None and not settings.auth_required
    with TestClient(create_server(settings, engine=ScriptedEngine())) as client:
        assert client.post("/v1/classify", json=TICKET).status_code == 200
        assert client.get("/v1/review").status_code == 200
        forged = f"trk_{'C' * 10}_{'D' * 43}"
        assert_error_body(client.post("/v1/classify", json=TICKET, headers=bearer(forged)), 401)
        key = make_key(tmp_path, "review")  # a valid key is honoured: its role applies, not anonymous admin
        assert_error_body(client.post("/v1/classify", json=TICKET, headers=bearer(key)), 403)
    (row,) = stored(tmp_path, Classification)
    assert (row.key_id, row.scope) == (None, None)
    assert [(e.action, e.actor, e.key_id) for e in events(tmp_path)] == [
        ("classify", "anonymous", None),
        ("review_read", "anonymous", None),
    ]


def test_auth_required_from_the_environment_forces_keys_on_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE_AUTH__REQUIRED", "true")
    settings = api_settings(tmp_path)
    assert settings.auth_required
    with TestClient(create_server(settings, engine=ScriptedEngine())) as client:
        assert_error_body(client.post("/v1/classify", json=TICKET), 401)
        key = make_key(tmp_path, "classify")
        assert client.post("/v1/classify", json=TICKET, headers=bearer(key)).status_code == 200


def test_keys_are_refused_off_on_a_public_address(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="auth.required=false"):
        load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", api={"host": "0.0.0.0"}, auth={"required": False})
    assert load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", api={"host": "0.0.0.0"}).auth_required


def test_who_asked_is_stored_on_rows_feedback_and_audit(keyed: TestClient, tmp_path: Path) -> None:
    classify = make_key(tmp_path, "classify", name="intake", scope="acme")
    review = make_key(tmp_path, "review", name="ana-key", scope="acme")
    one = keyed.post("/v1/classify", json={**TICKET, "subject": "unsure"}, headers=bearer(classify)).json()
    two = keyed.post("/v1/batch", json={"tickets": [{**TICKET, "ticket_id": "T-2"}]}, headers=bearer(classify))
    assert keyed.get("/v1/review", headers=bearer(review)).json()["total"] == 1
    fb = {"ticket_id": "T-1", "reviewer": "ana", "priority": "Low"}
    assert keyed.post("/v1/feedback", json=fb, headers=bearer(review)).status_code == 201
    rows = stored(tmp_path, Classification)
    assert [(r.ticket_id, r.key_id, r.scope) for r in rows] == [("T-1", 1, "acme"), ("T-2", 1, "acme")]
    (feedback,) = stored(tmp_path, Feedback)
    assert (feedback.key_id, feedback.key_role) == (2, "review")
    log = [(e.action, e.actor, e.key_id, e.ticket_id) for e in events(tmp_path)]
    assert log == [
        ("classify", "intake", 1, "T-1"),
        ("classify", "intake", 1, "T-2"),  # a batch of one names its ticket too
        ("review_read", "ana-key", 2, None),
        ("feedback", "ana-key", 2, "T-1"),
    ]
    first, batch, read, _ = events(tmp_path)
    assert first.detail == {"request_ids": [one["request_id"]], "ticket_ids": ["T-1"]}
    assert batch.detail is not None and batch.detail["ticket_ids"] == ["T-2"]
    assert batch.detail["request_ids"] == [two.json()["results"][0]["request_id"]]
    assert read.detail is not None and read.detail["request_ids"] == [one["request_id"]]


def test_a_scoped_key_sees_only_its_scope(keyed: TestClient, tmp_path: Path) -> None:
    acme, globex = make_key(tmp_path, "classify", scope="acme"), make_key(tmp_path, "classify", scope="globex")
    acme_review = make_key(tmp_path, "review", scope="acme")
    globex_review = make_key(tmp_path, "review", scope="globex")
    everyone = make_key(tmp_path, "review")  # no scope: reads every tenant
    unsure = {"subject": "unsure", "body": "b"}
    for key, ticket_id in [(acme, "A-1"), (acme, "SHARED"), (globex, "G-1"), (globex, "SHARED")]:
        assert (
            keyed.post("/v1/classify", json={**unsure, "ticket_id": ticket_id}, headers=bearer(key)).status_code == 200
        )

    def queue(key: str) -> list[str]:
        return [item["ticket_id"] for item in keyed.get("/v1/review", headers=bearer(key)).json()["items"]]

    assert queue(acme_review) == ["A-1", "SHARED"] and queue(globex_review) == ["G-1", "SHARED"]
    assert queue(everyone) == ["A-1", "SHARED", "G-1", "SHARED"]
    # another tenant's ticket id is a 404 exactly like an unknown one: nothing of it leaks
    r = keyed.post(
        "/v1/feedback", json={"ticket_id": "A-1", "reviewer": "x", "comment": "c"}, headers=bearer(globex_review)
    )
    assert assert_error_body(r, 404)["message"] == "no classification for ticket_id 'A-1'"
    assert "original" not in r.text and "Billing" not in r.text
    # a shared ticket id resolves to the caller's own row, and resolves only its own queue
    fb = {"ticket_id": "SHARED", "reviewer": "g", "priority": "Low"}
    r = keyed.post("/v1/feedback", json=fb, headers=bearer(globex_review))
    assert r.status_code == 201
    rows = {(row.ticket_id, row.scope): row for row in stored(tmp_path, Classification)}
    assert r.json()["request_id"] == rows[("SHARED", "globex")].request_id
    assert queue(globex_review) == ["G-1"] and queue(acme_review) == ["A-1", "SHARED"]
    (feedback,) = stored(tmp_path, Feedback)
    assert feedback.classification_id == rows[("SHARED", "globex")].id


def test_a_valid_key_costs_one_scrypt_per_process(
    keyed: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import server.api.auth as auth

    calls: list[str] = []
    real = auth.verify_secret

    def counting(secret: str, stored_hash: str) -> bool:
        calls.append(stored_hash)
        return real(secret, stored_hash)

    monkeypatch.setattr(auth, "verify_secret", counting)
    key = make_key(tmp_path, "review")
    for _ in range(5):
        assert keyed.get("/v1/review", headers=bearer(key)).status_code == 200
    assert len(calls) == 1
    forged = parse_key(key)
    assert forged is not None
    bad = f"trk_{forged.prefix}_{'Z' * 43}"
    for _ in range(3):
        assert keyed.get("/v1/review", headers=bearer(bad)).status_code == 401
    assert len(calls) == 2  # a refused key is remembered too: repeating it costs no scrypt


# -- rate limits ------------------------------------------------------------------------------


def test_over_the_rate_limit_is_a_429_with_retry_after_per_key(tmp_path: Path) -> None:
    app = make_app(
        tmp_path, auth={"required": True, "rate_limit": "3/minute", "role_rate_limits": {"review": "5/minute"}}
    )
    with TestClient(app) as client:
        one, two, reviewer = (
            make_key(tmp_path, "classify", "one"),
            make_key(tmp_path, "classify", "two"),
            make_key(tmp_path, "review"),
        )
        for _ in range(3):
            assert client.post("/v1/classify", json=TICKET, headers=bearer(one)).status_code == 200
        before = counts(tmp_path)
        r = client.post("/v1/classify", json=TICKET, headers=bearer(one))
        assert assert_error_body(r, 429)["error"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert counts(tmp_path) == before  # refused before any work
        assert client.post("/v1/classify", json=TICKET, headers=bearer(two)).status_code == 200  # per key
        statuses = [client.get("/v1/review", headers=bearer(reviewer)).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]  # the role's own limit


def test_anonymous_callers_are_limited_by_address(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, auth={"rate_limit": "2/minute"})) as client:
        statuses = [client.get("/v1/review").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


REDIS_URL = os.environ.get("TRIAGE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis not reachable at {REDIS_URL}: {exc}", pytrace=False)
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")


def test_two_servers_share_one_limit_in_redis(tmp_path: Path) -> None:
    _redis_or_skip()
    # cache.backend redis: the rate limits go to the same Redis without a setting of their own
    overrides: dict[str, Any] = {
        "auth": {"required": True, "rate_limit": "4/minute"},
        "cache": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": f"test-{uuid.uuid4().hex[:8]}"},
    }
    a, b = make_app(tmp_path, **overrides), make_app(tmp_path, **overrides)
    key = make_key(tmp_path, "review")
    with TestClient(a) as ca, TestClient(b) as cb:
        statuses = [(ca if i % 2 else cb).get("/v1/review", headers=bearer(key)).status_code for i in range(5)]
        assert statuses == [200, 200, 200, 200, 429]  # four across both servers, not four each
        r = ca.get("/v1/review", headers=bearer(key))
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
