"""Database engine, session and migration helpers for the triage store.

Only SQLite (local/dev, single node) and PostgreSQL (production) are supported;
rejecting anything else early beats a confusing failure deep inside a request.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine as DbEngine
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from server.config import StorageSettings
from server.store.crypto import attach, load_key_source

__all__ = [
    "MIGRATIONS_DIR",
    "make_db_engine",
    "make_engine",
    "make_sessionmaker",
    "migrate",
    "normalise_url",
    "open_store",
    "ping",
]

log = logging.getLogger(__name__)

# Resolved from this file rather than the cwd so migrations run the same way
# from tests, the server process and an installed wheel.
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# SQLite serialises writers; waiting a while beats failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _is_sqlite_memory(url: URL) -> bool:
    db = url.database or ""
    return db in ("", ":memory:") or "mode=memory" in db


def normalise_url(url: str | URL) -> URL:
    """Pin PostgreSQL to psycopg v3: it is the only PG driver we install, and a
    bare ``postgresql://`` would otherwise make SQLAlchemy look for psycopg2."""
    url = make_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database URL driver {url.drivername!r}: use sqlite:/// or postgresql(+psycopg)://")


def make_db_engine(url: str, **engine_kwargs: Any) -> DbEngine:
    """Create an SQLAlchemy engine with the per-backend settings the store relies on.

    Extra keyword arguments go to ``create_engine``; ``connect_args`` is merged
    so callers (e.g. tests setting a PostgreSQL ``search_path``) keep our defaults.
    """
    sa_url = normalise_url(url)
    connect_args: dict[str, Any] = dict(engine_kwargs.pop("connect_args", {}) or {})

    if sa_url.get_backend_name() != "sqlite":
        engine_kwargs.setdefault("pool_pre_ping", True)  # survive DB restarts / idle kills
        return create_engine(sa_url, connect_args=connect_args, **engine_kwargs)

    memory = _is_sqlite_memory(sa_url)
    if not memory:
        Path(sa_url.database or "").expanduser().parent.mkdir(parents=True, exist_ok=True)
    # The server hands connections across threads (worker pool, FastAPI threadpool).
    connect_args.setdefault("check_same_thread", False)
    if memory:
        # Each new connection to :memory: is a different, empty database; one
        # shared connection keeps migrate() and later sessions on the same data.
        engine_kwargs.setdefault("poolclass", StaticPool)
    db_engine = create_engine(sa_url, connect_args=connect_args, **engine_kwargs)

    @event.listens_for(db_engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # SQLite ignores FOREIGN KEY clauses (and ON DELETE CASCADE) unless asked,
        # per connection. WAL lets readers proceed while a writer commits.
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
        finally:
            cur.close()

    return db_engine


def open_store(database_url: str, storage: StorageSettings, *, create_key: bool = True) -> DbEngine:
    """The store as the server and the CLI open it: the engine with the data keyring attached, so ticket
    text and answers are sealed on write (`storage.encrypt`, on by default) and opened on read.
    A missing key file is generated (mode 0600) when `create_key`, else it is an error."""
    return attach(make_db_engine(database_url), load_key_source(storage, create=create_key))


# The name other packages import (the app, finetune.data, the tests); "engine" alone means a model engine.
make_engine = make_db_engine


def make_sessionmaker(db_engine: DbEngine) -> sessionmaker[Session]:
    """Objects stay readable after commit, so handlers can serialise a row
    after the repository committed it without another round trip."""
    return sessionmaker(bind=db_engine, expire_on_commit=False)


def _alembic_config() -> Config:
    cfg = Config()  # no alembic.ini at run time: nothing to find relative to cwd
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def migrate(db_engine_or_url: DbEngine | str) -> None:
    """Bring the schema to the latest revision (``alembic upgrade head``).

    An Engine's own connection is handed to Alembic so the migration sees the
    very same database (essential for in-memory SQLite and per-test schemas).
    """
    db_engine = make_db_engine(db_engine_or_url) if isinstance(db_engine_or_url, str) else db_engine_or_url
    try:
        cfg = _alembic_config()
        with db_engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        if db_engine is not db_engine_or_url:
            db_engine.dispose()


def ping(db_engine: DbEngine) -> bool:
    """Health check: report an unusable database instead of raising, so a
    readiness probe can answer "not ready" rather than crash."""
    try:
        with db_engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar() == 1
    except Exception as exc:  # noqa: BLE001 - any failure means "not healthy"
        log.warning("database ping failed: %s", exc)
        return False
