"""`triage keys create|list|revoke|rotate-data-key` through typer's CliRunner, against the store a server
opens: the key is printed alone on the last line and works as `curl -H "Authorization: Bearer $KEY"` would send
it; list never shows a secret; revoke refuses the key at once; every change is audited as the OS user."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from server.auth.keys import KEY_PATTERN, parse_key
from server.cli import app
from server.store import audit
from server.store.db import make_sessionmaker
from tests.api.conftest import make_app, open_db

runner = CliRunner()
TICKET = {"ticket_id": "T-1", "subject": "charged twice", "body": "twice"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    # The same database and data key file as tests.api.conftest.make_app(tmp_path) uses.
    return {
        "TRIAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}",
        "TRIAGE_STORAGE__DATA_KEY_FILE": str(tmp_path / "data.key"),
        "TRIAGE_AUTH__HASH_N": "16",
    }


def keys(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["keys", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def curl_header(key: str) -> dict[str, str]:
    # What `curl -H "Authorization: Bearer $KEY"` sends, split as curl splits a -H value.
    name, _, value = f"Authorization: Bearer {key}".partition(":")
    return {name: value.strip()}


def test_create_prints_the_key_alone_on_the_last_line_and_it_works(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, err = keys(env, "create", "--role", "classify", "--name", "intake", "--scope", "acme")
    assert code == 0, err
    key = out.rstrip("\n").splitlines()[-1]
    assert KEY_PATTERN.fullmatch(key), out  # nothing else on the line: `$(triage keys create ... | tail -1)`
    with TestClient(make_app(tmp_path, auth={"required": True})) as client:
        assert client.post("/v1/classify", json=TICKET).status_code == 401
        r = client.post("/v1/classify", json=TICKET, headers=curl_header(key))
        assert r.status_code == 200, r.text
        assert client.get("/v1/review", headers=curl_header(key)).status_code == 403  # classify role only


def test_list_shows_keys_but_never_a_secret_and_revoke_refuses_at_once(tmp_path: Path, env: dict[str, str]) -> None:
    assert "no keys" in keys(env, "list")[1]
    key = keys(env, "create", "--role", "review", "--name", "ana")[1].splitlines()[-1]
    keys(env, "create", "--role", "admin", "--name", "ops")
    parsed = parse_key(key)
    assert parsed is not None
    code, out, _ = keys(env, "list")
    assert code == 0 and "ana" in out and "ops" in out and "review" in out
    assert parsed.prefix in out and parsed.secret not in out and "scrypt" not in out
    with TestClient(make_app(tmp_path, auth={"required": True})) as client:
        assert client.get("/v1/review", headers=curl_header(key)).status_code == 200
        code, out, _ = keys(env, "revoke", "ana")  # while the server runs
        assert code == 0 and "revoked key 'ana'" in out
        assert client.get("/v1/review", headers=curl_header(key)).status_code == 401
    out = keys(env, "list")[1]
    assert re.search(r"ana .* \d{4}-\d\d-\d\d \d\d:\d\d\s*│?\s*$", out, re.M), out  # a revoked time shown
    db = open_db(tmp_path)
    with make_sessionmaker(db)() as session:
        log = [
            (e.action, e.target, e.actor.startswith("cli:"))
            for e in audit.events(session)
            if e.action.startswith("key_")
        ]
    db.dispose()
    assert log == [("key_create", "ana", True), ("key_create", "ops", True), ("key_revoke", "ana", True)]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["create", "--role", "root", "--name", "x"], "role 'root'"),
        (["create", "--role", "classify", "--name", "dup"], "exists"),
        (["revoke", "nobody"], "no key named 'nobody'"),
    ],
)
def test_refusals_exit_2_with_a_message(env: dict[str, str], args: list[str], words: str) -> None:
    keys(env, "create", "--role", "classify", "--name", "dup")
    code, out, err = keys(env, *args)
    assert code == 2 and words in err, (out, err)
    assert not KEY_PATTERN.search(out)  # a refused create prints no key


def test_rotate_data_key_reseals_with_a_new_key(tmp_path: Path, env: dict[str, str]) -> None:
    pytest.importorskip("server.store.rotation")
    with TestClient(make_app(tmp_path)) as client:
        assert client.post("/v1/classify", json=TICKET).status_code == 200
    code, out, err = keys(env, "rotate-data-key")
    assert code == 0, err
    assert '"new_key_id"' in out and '"classifications"' in out
