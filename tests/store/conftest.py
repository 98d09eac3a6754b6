"""Backends for the store tests: every test runs on SQLite and PostgreSQL.

PostgreSQL tests each get a throwaway schema so parallel runs (and other
people's data in the ``test`` database) never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from server.store.db import make_db_engine, make_sessionmaker, migrate

PG_URL = os.environ.get("TRIAGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_admin_db_engine() -> Engine:
    admin = make_db_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.dispose()
        reason = f"PostgreSQL not reachable at {PG_URL}: {exc.orig}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so PostgreSQL is required)", pytrace=False)
        pytest.skip(reason)
    return admin


@contextmanager
def pg_schema() -> Iterator[str]:
    """A throwaway schema in the test database, as a URL whose connections use it (search_path), for this
    process or a server process. Dispose of the engines opened on it before the block ends, or DROP would
    wait on their locks."""
    admin = _pg_admin_db_engine()
    schema = f"triage_test_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
    """An un-migrated database engine on an empty database."""
    if request.param == "sqlite":
        eng = make_db_engine(f"sqlite:///{tmp_path}/nested/dir/triage.db")
        yield eng
        eng.dispose()
        return

    with pg_schema() as url:
        eng = make_db_engine(url)
        try:
            yield eng
        finally:
            eng.dispose()


@pytest.fixture
def migrated(db_engine: Engine) -> Engine:
    migrate(db_engine)
    return db_engine


@pytest.fixture
def session(migrated: Engine) -> Iterator[Session]:
    with make_sessionmaker(migrated)() as s:
        yield s
