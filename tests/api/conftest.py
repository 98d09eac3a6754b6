"""In-process API fixtures: the app of `create_server` over a real SQLite store in tmp_path, with the
ScriptedEngine double in place of the model (these tests never load it: they run in seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine as DbEngine

from server.api.app import create_server
from server.config import Role, Settings, load_settings
from server.store.db import make_sessionmaker, migrate, open_store
from server.store.keys import create_key
from tests.routing.doubles import ScriptedEngine


def api_settings(tmp_path: Path, **overrides: Any) -> Settings:
    # The data key lives with the test's database: tests never create or read var/data.key.
    storage = {"data_key_file": tmp_path / "data.key", **overrides.pop("storage", {})}
    return load_settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", storage=storage, **overrides)


def open_db(tmp_path: Path) -> DbEngine:
    """The test app's store, opened as the server opens it (with its data key in tmp_path)."""
    settings = api_settings(tmp_path)
    return open_store(settings.database_url, settings.storage)


# scrypt cost of the keys the tests create: the stored format and the check are the same at any cost.
TEST_HASH_N = 16


def make_key(tmp_path: Path, role: Role, name: str | None = None, scope: str | None = None) -> str:
    """A new API key in the test app's store (migrated first, so it may precede the app's start)."""
    db = open_db(tmp_path)
    try:
        migrate(db)
        with make_sessionmaker(db)() as session:
            created = create_key(
                session, name=name or f"{role}-{scope or 'all'}", role=role, scope=scope, hash_n=TEST_HASH_N
            )
    finally:
        db.dispose()
    return created.key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def make_app(tmp_path: Path, engine: ScriptedEngine | None = None, **overrides: Any) -> FastAPI:
    return create_server(api_settings(tmp_path, **overrides), engine=engine or ScriptedEngine())


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def client(tmp_path: Path, engine: ScriptedEngine) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path, engine)) as c:
        yield c
