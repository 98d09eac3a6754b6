"""Bad input and attacks, on EVERY route of the app (iterated from app.routes, so a route added later is
covered without touching this file): no key, a revoked key, a key of the wrong role, forged keys of the
right shape, SQL/JSON injection in every string field, query and path parameter, another tenant's ids,
oversized and malformed bodies, and a flood from one key. Each: no answer >= 500, and a refused request
(any 4xx) writes no row."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from server.api.auth import required_roles
from server.auth.keys import parse_key
from server.config import Role
from server.store.db import make_sessionmaker
from server.store.keys import revoke_key
from server.store.models import ApiKey, Classification, Feedback
from tests.api.conftest import bearer, make_app, make_key, open_db
from tests.routing.doubles import ScriptedEngine

TICKET = {"ticket_id": "T-1", "subject": "charged twice", "body": "my card was charged twice"}
# A valid body per known route; a route added later is attacked with {} and its schema's string fields.
EXAMPLES: dict[str, Any] = {
    "/v1/classify": TICKET,
    "/v1/batch": {"tickets": [TICKET]},
    "/v1/feedback": {"ticket_id": "T-1", "reviewer": "ana", "comment": "c", "category": "Billing"},
}
# /metrics is open by default like /health (metrics.require_admin closes it; tests/api/test_metrics.py).
OPEN_ROUTES = {"/health", "/ready", "/metrics"}
NOBODY = {"ticket_id": "no-such-ticket", "request_id": "no-such-request"}  # path ids that name no row
INJECTIONS = [
    "' OR '1'='1",
    "'; DROP TABLE classifications; --",
    '" OR ""="',
    "1; DELETE FROM feedback WHERE 1=1",
    "') UNION SELECT secret_hash, name FROM api_keys --",
    '{"$ne": null}',
    '{"a": ',
    '"}], "category": "Sales", "x": [{"',
    "$.category",
    "*",
    "%",
    "_",
    "\\",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "null",
    "0",
    "-1",
    "\u202e\ufeff",
    "🙂" * 40,
    "x" * 200,
]
ROLES: tuple[Role, ...] = ("classify", "review", "admin")


@dataclass(frozen=True)
class Op:
    method: str
    path: str  # the path format, e.g. /v1/tickets/{ticket_id}
    roles: tuple[Role, ...]
    params: tuple[str, ...]  # path parameter names
    operation: dict[str, Any]  # its OpenAPI operation

    def url(self, **values: str) -> str:
        url = self.path
        for name in self.params:
            url = url.replace("{" + name + "}", quote(values.get(name, "x"), safe=""))
        return url

    @property
    def has_body(self) -> bool:
        return "requestBody" in self.operation


def operations(app: FastAPI) -> list[Op]:
    doc = app.openapi()
    ops = []
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            operation = doc["paths"][route.path_format][method.lower()]
            params = tuple(p["name"] for p in operation.get("parameters", []) if p["in"] == "path")
            ops.append(Op(method, str(route.path_format), required_roles(route), params, operation))
    return ops


@dataclass
class World:
    client: TestClient
    app: FastAPI
    db: Engine
    keys: dict[str, str]  # role or "role@scope" -> key
    revoked: str
    victim: dict[str, str]  # path parameter -> a real id of tenant "acme"

    def counts(self) -> tuple[int, int, int]:
        with make_sessionmaker(self.db)() as s:
            return (
                s.scalar(select(func.count()).select_from(Classification)) or 0,
                s.scalar(select(func.count()).select_from(Feedback)) or 0,
                s.scalar(select(func.count()).select_from(ApiKey)) or 0,
            )

    def call(self, op: Op, key: str | None, *, body: Any = None, content: bytes | None = None, **kw: Any) -> Any:
        """One request; asserts no server error, and no row written when it is refused."""
        before = self.counts()
        headers = {**(bearer(key) if key else {}), **kw.pop("headers", {})}
        url = op.url(**kw.pop("path", {}))
        if content is not None:
            headers.setdefault("Content-Type", "application/json")
            r = self.client.request(op.method, url, content=content, headers=headers, **kw)
        else:
            r = self.client.request(op.method, url, json=body if op.has_body else None, headers=headers, **kw)
        assert r.status_code < 500, (op.method, url, r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert self.counts() == before, (op.method, url, r.status_code, "a refused request wrote rows")
        return r


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    keys: dict[str, str] = {role: make_key(tmp_path, role) for role in ROLES}
    keys |= {f"{role}@globex": make_key(tmp_path, role, scope="globex") for role in ROLES}
    keys["classify@acme"] = make_key(tmp_path, "classify", scope="acme")
    revoked = make_key(tmp_path, "admin", name="gone")
    db = open_db(tmp_path)
    with make_sessionmaker(db)() as s:
        revoke_key(s, "gone")
    app = make_app(tmp_path, ScriptedEngine(), auth={"required": True, "rate_limit": None})
    with TestClient(app) as client:
        r = client.post("/v1/classify", json={**TICKET, "ticket_id": "ACME-1"}, headers=bearer(keys["classify@acme"]))
        assert r.status_code == 200
        victim = {"ticket_id": "ACME-1", "request_id": r.json()["request_id"]}
        yield World(client, app, db, keys, revoked, victim)
    db.dispose()


def test_every_route_but_health_declares_a_role(world: World) -> None:
    ops = operations(world.app)
    assert {op.path for op in ops if not op.roles} == OPEN_ROUTES
    assert len([op for op in ops if op.roles]) >= 4


def test_no_revoked_forged_or_wrong_role_key_gets_in_anywhere(world: World) -> None:
    admin = parse_key(world.keys["admin"])
    assert admin is not None
    forged = [
        f"trk_{admin.prefix}_{'A' * 43}",  # a real prefix, a guessed secret
        f"trk_{'Q' * 10}_{admin.secret}",  # a real secret, an unknown prefix
        world.keys["admin"][:-2] + "zz",
        world.keys["admin"].upper(),
    ]
    for op in operations(world.app):
        if not op.roles:
            continue
        body = EXAMPLES.get(op.path, {})
        path = dict(world.victim)
        for key in (None, world.revoked, *forged):
            r = world.call(op, key, body=body, path=path)
            assert r.status_code == 401, (op.method, op.path, key, r.status_code)
            assert r.headers["www-authenticate"].startswith("Bearer")
        wrong = [role for role in ROLES if not any(role == "admin" or role == need for need in op.roles)]
        for role in wrong:
            r = world.call(op, world.keys[role], body=body, path=path)
            assert r.status_code == 403, (op.method, op.path, role, r.status_code)
        # the same refusals with a malformed body: who asks is checked before the body is read
        r = world.call(op, None, content=b'{"ticket_id": ', path=path)
        assert r.status_code == 401, (op.method, op.path)


def _string_leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _string_leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _string_leaves(v, (*path, i))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    out = copy.deepcopy(value)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return out


def _schema_strings(app: FastAPI, op: Op) -> list[str]:
    """Top-level body properties the schema lets be a string (a route without an example still gets them)."""
    schema = op.operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    if ref:
        schema = app.openapi()["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    names = []
    for name, prop in schema.get("properties", {}).items():
        kinds = [prop, *prop.get("anyOf", [])]
        if any(k.get("type") == "string" for k in kinds):
            names.append(name)
    return names


def test_injection_in_every_string_field_query_and_path_parameter(world: World) -> None:
    with make_sessionmaker(world.db)() as s:
        keys_before = list(s.scalars(select(ApiKey.secret_hash).order_by(ApiKey.id)))
    answered: dict[int, int] = {}
    for op in operations(world.app):
        key = world.keys["admin"] if op.roles else None
        example = EXAMPLES.get(op.path, {})
        queries = [p["name"] for p in op.operation.get("parameters", []) if p["in"] == "query"]
        for text in INJECTIONS:
            variants: list[Any] = [_replaced(example, leaf, text) for leaf in _string_leaves(example)]
            variants += [{**example, name: text} for name in _schema_strings(world.app, op)]
            variants += [_replaced(example, leaf, [text, {"$where": text}]) for leaf in _string_leaves(example)]
            for body in variants or [example]:
                r = world.call(op, key, body=body, path=NOBODY)
                answered[r.status_code] = answered.get(r.status_code, 0) + 1
                assert text not in r.text or r.status_code in (200, 201, 422) or "not_found" in r.text
            for name in op.params:
                r = world.call(op, key, body=example, path={**NOBODY, name: text})
                # found only when a ticket was stored under exactly this text (a classify above): it is an id
                found = r.status_code == 200 and text in {r.json().get("ticket_id"), r.json().get("request_id")}
                assert r.status_code in (404, 422) or found, (op.method, op.path, text, r.status_code)
            for name in queries:
                world.call(op, key, body=example, path=NOBODY, params={name: text})
    # the tables are all there and the keys untouched; the victim's row is still readable
    with make_sessionmaker(world.db)() as s:
        assert list(s.scalars(select(ApiKey.secret_hash).order_by(ApiKey.id))) == keys_before
        row = s.scalars(select(Classification).where(Classification.ticket_id == "ACME-1")).one()
        assert row.prediction is not None and row.scope == "acme"
    assert answered.get(200, 0) + answered.get(201, 0) > 0  # injection text is data: some was accepted


def test_another_tenants_ids_are_404_and_nothing_of_them_leaks(world: World) -> None:
    victim_row = world.victim
    for op in operations(world.app):
        if not op.params and op.path != "/v1/feedback":
            continue
        role = "admin" if "admin" in op.roles else op.roles[0]
        key = world.keys[f"{role}@globex"]
        body = {**EXAMPLES.get(op.path, {}), "ticket_id": victim_row["ticket_id"]} if op.has_body else None
        r = world.call(op, key, body=body, path=dict(victim_row))
        assert r.status_code == 404, (op.method, op.path, r.status_code, r.text[:300])
        # the message may echo the id the caller sent, nothing of the row it names
        assert not {"Billing", "acme", "charged", "prediction"} & set(r.text.replace('"', " ").split()), r.text
    with make_sessionmaker(world.db)() as s:  # a DELETE from another scope erased nothing
        assert s.scalars(select(Classification).where(Classification.ticket_id == "ACME-1")).one()
    # the review queue of another scope does not list it either
    r = world.client.get("/v1/review", headers=bearer(world.keys["review@globex"]))
    assert victim_row["ticket_id"] not in r.text


MALFORMED = [
    b"",
    b"{",
    b"[]",
    b"null",
    b"123",
    b'"just a string"',
    b"\xff\xfe\x00",
    b'{"ticket_id": "T", "subject": "a", "subject": "b", "body": 1}',
    b'{"tickets": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"ticket_id": "' + b"\\ud800" + b'", "body": "x"}',
    json.dumps({"body": "x", "previous_interactions": ["a"] * 10_000}).encode(),
    json.dumps({"tickets": [TICKET] * 5_000}).encode(),
]


def test_oversized_and_malformed_bodies_are_clear_4xx(world: World) -> None:
    huge = json.dumps({**TICKET, "body": "x" * 3_000_000}).encode()
    for op in operations(world.app):
        if not op.has_body:
            continue
        key = world.keys["admin"]
        for content in (*MALFORMED, huge):
            r = world.call(op, key, content=content)
            assert 400 <= r.status_code < 500, (op.path, content[:40], r.status_code)
            assert r.json()["error"] and r.json()["message"]
        # a content-length that lies, and a body in another content type
        r = world.call(op, key, content=b"{}", headers={"Content-Type": "text/plain"})
        assert 400 <= r.status_code < 500


def test_a_flood_from_one_key_is_cut_at_its_limit(tmp_path: Path) -> None:
    app = make_app(tmp_path, ScriptedEngine(), auth={"required": True, "rate_limit": "20/minute"})
    key, other = make_key(tmp_path, "classify", "flood"), make_key(tmp_path, "classify", "other")
    db = open_db(tmp_path)
    with TestClient(app) as client:

        def one(i: int) -> int:
            return client.post("/v1/classify", json={**TICKET, "ticket_id": f"F-{i}"}, headers=bearer(key)).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(one, range(120)))
        assert sorted(set(statuses)) == [200, 429], statuses
        assert statuses.count(200) == 20 and statuses.count(429) == 100
        # another key is not starved by the flood
        assert client.post("/v1/classify", json=TICKET, headers=bearer(other)).status_code == 200
    with make_sessionmaker(db)() as s:
        assert s.scalar(select(func.count()).select_from(Classification)) == 21  # refused requests wrote nothing
    db.dispose()
