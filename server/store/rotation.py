"""Data-key rotation (`triage keys rotate-data-key`): a new current key, and every encrypted value re-sealed with it.

Order matters for recovery: the new keyring (new key current, old keys kept) is written to the key file
before any row changes, so whatever happens next every row stays readable with the file. Rows are then
re-sealed in batches, each its own transaction, so a crash midway leaves a mix of old and new keys that
the keyring reads, and a second run finishes the job. Plain values (written with encryption off, or
before it existed) are sealed too.

The audit log is append-only: its triggers refuse any UPDATE but erasing a payload. Re-sealing a payload
changes its ciphertext, not its content, so each batch lifts the update guard inside its own transaction
and puts it back before committing, and checks first that every re-sealed payload still has the sha256
the event recorded. The rotation itself is audited (`data_key_rotate`).

Running servers that read the same key file pick the new keyring up by themselves (`crypto.KeyFile` re-reads
the file when it changes, and at once when a row names a key it lacks). The old keys stay in the file (rows a
server wrote in the seconds before it noticed are sealed with them); drop them once a later run reports
`remaining` 0. Servers given their keys through `storage.data_key` need the new key added and a restart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, Connection, Table, Text, bindparam, select, text, type_coerce, update
from sqlalchemy import Engine as DbEngine
from sqlalchemy.orm import Session

from server.auth.principal import Principal
from server.config import Settings
from server.store import audit
from server.store.crypto import EncryptedJSON, EncryptedText, Keyring, attach, key_id_of, load_keyring, write_keyring
from server.store.db import make_db_engine, migrate
from server.store.models import Base

__all__ = ["BATCH", "RotationRefused", "RotationReport", "encrypted_columns", "reseal", "rotate_data_key"]

BATCH = 500
AUDIT_TABLE = "audit_log"
SQLITE_GUARD = "audit_log_no_update"
PG_GUARD = "audit_log_append_only"


class RotationRefused(RuntimeError):
    """Rotation cannot run as configured; the message says what the operator does instead."""


@dataclass
class RotationReport:
    new_key_id: str
    old_key_ids: list[str]
    resealed: dict[str, int] = field(default_factory=dict)  # table -> rows re-sealed
    remaining: dict[str, int] = field(default_factory=dict)  # table -> values still under another key (0)
    key_file: str | None = None  # where the new keyring was written; None: the keys come from storage.data_key

    def to_json(self) -> dict[str, Any]:
        return {
            "new_key_id": self.new_key_id,
            "old_key_ids": self.old_key_ids,
            "resealed": self.resealed,
            "remaining": self.remaining,
            "key_file": self.key_file,
        }


def encrypted_columns() -> dict[str, tuple[Table, list[str]]]:
    """table name -> (table, its encrypted columns), read off the models so a new sealed column is covered."""
    out: dict[str, tuple[Table, list[str]]] = {}
    for table in Base.metadata.sorted_tables:
        cols = [c.name for c in table.columns if isinstance(c.type, (EncryptedText, EncryptedJSON))]
        if cols:
            out[table.name] = (table, cols)
    return out


def _raw(table: Table, name: str) -> Any:
    # The stored value as it is (an envelope, or a plain value), without the column type opening it.
    column = table.c[name]
    return type_coerce(column, JSON() if isinstance(column.type, EncryptedJSON) else Text()).label(name)


def _needs(value: Any, current: str) -> bool:
    return value is not None and key_id_of(value) != current


def _open(keyring: Keyring, value: Any, is_json: bool) -> Any:
    """The plaintext value of a stored value (sealed or plain)."""
    if key_id_of(value) is None:
        return value
    opened = keyring.open(value)
    return json.loads(opened) if is_json else opened


def _seal(keyring: Keyring, value: Any, is_json: bool) -> str:
    plain = json.dumps(value, ensure_ascii=False, separators=(",", ":")) if is_json else value
    return keyring.seal(plain)


@contextmanager
def _audit_guard_lifted(conn: Connection) -> Iterator[None]:
    """Inside the caller's transaction: the audit log's update guard off, and back on before it commits."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ALTER TABLE {AUDIT_TABLE} DISABLE TRIGGER {PG_GUARD}"))
        yield
        conn.execute(text(f"ALTER TABLE {AUDIT_TABLE} ENABLE TRIGGER {PG_GUARD}"))
        return
    sql = conn.execute(
        text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = :name"), {"name": SQLITE_GUARD}
    ).scalar_one()
    conn.execute(text(f"DROP TRIGGER {SQLITE_GUARD}"))
    yield
    conn.execute(text(sql))  # the trigger exactly as the migration created it


def _begin(conn: Connection) -> None:
    # pysqlite opens a transaction only before DML, so DDL (the trigger) would run in autocommit: begin
    # explicitly, and take the write lock now, so no writer slips in between reading and re-sealing a batch.
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def reseal(db_engine: DbEngine, keyring: Keyring, *, batch: int = BATCH) -> tuple[dict[str, int], dict[str, int]]:
    """Re-seal every value of the encrypted columns not sealed with `keyring.current`; (re-sealed rows per table,
    values left under another key per table: 0 unless rows were written concurrently with old keys)."""
    resealed: dict[str, int] = {}
    remaining: dict[str, int] = {}
    for name, (table, cols) in encrypted_columns().items():
        is_json = {c: isinstance(table.c[c].type, EncryptedJSON) for c in cols}
        pk = table.c.id
        last = 0
        done = 0
        while True:
            with db_engine.connect() as conn:
                _begin(conn)
                query = select(
                    pk, *(_raw(table, c) for c in cols), *([table.c.payload_sha256] if name == AUDIT_TABLE else [])
                )
                query = query.where(pk > last).order_by(pk).limit(batch)
                if conn.dialect.name == "postgresql":
                    query = query.with_for_update()
                rows = conn.execute(query).mappings().all()
                if not rows:
                    conn.rollback()
                    break
                last = rows[-1]["id"]
                updates: list[dict[str, Any]] = []
                for row in rows:
                    if not any(_needs(row[c], keyring.current) for c in cols):
                        continue
                    values: dict[str, Any] = {"_id": row["id"]}
                    for c in cols:
                        value = row[c]
                        if value is None:
                            values[c] = None
                            continue
                        plain = _open(keyring, value, is_json[c])
                        if name == AUDIT_TABLE and row["payload_sha256"] not in (None, audit.payload_digest(plain)):
                            raise RuntimeError(f"audit event {row['id']}: payload does not match its recorded sha256")
                        values[c] = _seal(keyring, plain, is_json[c])
                    updates.append(values)
                if updates:
                    stmt = (
                        update(table)
                        .where(pk == bindparam("_id"))
                        .values({c: bindparam(c, type_=JSON() if is_json[c] else Text()) for c in cols})
                    )
                    if name == AUDIT_TABLE:
                        with _audit_guard_lifted(conn):
                            conn.execute(stmt, updates)
                    else:
                        conn.execute(stmt, updates)
                conn.commit()
                done += len(updates)
        resealed[name] = done
        with db_engine.connect() as conn:
            left = 0
            for row in conn.execute(select(*(_raw(table, c) for c in cols))).mappings():
                left += sum(_needs(row[c], keyring.current) for c in cols)
            remaining[name] = left
    return resealed, remaining


def rotate_data_key(settings: Settings, principal: Principal) -> RotationReport:
    """A new data key in the key file (old keys kept to open what they sealed) and every encrypted value
    re-sealed with it; audited as `data_key_rotate`."""
    storage = settings.storage
    if not storage.encrypt:
        raise RotationRefused("storage.encrypt is off: there is no data key to rotate")
    keyring = load_keyring(storage, create=False)
    assert keyring is not None
    key_file: str | None = None
    if storage.data_key is not None:
        # The keys come from the environment, which this command cannot write. With a new key put first in
        # the list (and the old ones kept after it) the rows are re-sealed under it; with one key, nothing to do.
        if len(keyring.keys) < 2:
            raise RotationRefused(
                "the data key comes from storage.data_key (TRIAGE_STORAGE__DATA_KEY), which this command cannot "
                "change: add a new key first (e.g. `openssl rand -base64 32`), as the first of the comma-separated "
                "keys with the old ones after it, restart the servers, then run this again to re-encrypt the rows"
            )
        new = keyring
    else:
        new = keyring.with_new_key()
        write_keyring(storage.data_key_file, new)
        key_file = str(storage.data_key_file)
    db_engine = attach(make_db_engine(settings.database_url), new)
    try:
        migrate(db_engine)
        resealed, remaining = reseal(db_engine, new)
        report = RotationReport(
            new.current, sorted(k for k in new.keys if k != new.current), resealed, remaining, key_file
        )
        with Session(db_engine) as session:
            audit.record(session, principal, "data_key_rotate", target=new.current, detail=report.to_json())
    finally:
        db_engine.dispose()
    return report
