"""In-process API fixtures: the app of `create_server` over a real SQLite store in tmp_path, with the
ScriptedEngine double in place of the model (these tests never load it: they run in seconds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.api.app import create_server
from server.config import Settings, load_settings
from tests.routing.doubles import ScriptedEngine


def api_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", **overrides)


def make_app(tmp_path: Path, engine: ScriptedEngine | None = None, **overrides: Any) -> FastAPI:
    return create_server(api_settings(tmp_path, **overrides), engine=engine or ScriptedEngine())


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def client(tmp_path: Path, engine: ScriptedEngine) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path, engine)) as c:
        yield c
