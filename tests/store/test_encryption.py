"""Encryption at rest on both backends: the raw table holds no ticket plaintext, the ORM reads it back,
rows name their key, a rotated keyring opens old rows, and a wrong or missing key is an error."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from server.config import StorageSettings
from server.store import crypto
from server.store import repository as repo
from server.store.db import make_sessionmaker
from server.store.models import Classification

SECRET_BODY = "My card 4111 1111 1111 1111 was charged twice, Jane Roe, jane.roe@example.org"
SECRET_SUBJECT = "Double charge for Jane Roe"


def _store_one(db_engine: Engine) -> None:
    with make_sessionmaker(db_engine)() as session:
        repo.create_pending(
            session,
            request_id="r1",
            ticket_id="t1",
            subject=SECRET_SUBJECT,
            body=SECRET_BODY,
            previous_interactions=["Earlier: Jane Roe called from +44 20 7946 0958"],
            model_base="base",
            model_adapter=None,
            prompt_version="v2",
            taxonomy="tickets",
        )


def _raw_dump(db_engine: Engine) -> str:
    with db_engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM classifications")).all()
    return repr(rows)


def test_no_plaintext_in_the_raw_table_and_the_orm_reads_it_back(migrated: Engine) -> None:
    keyring = crypto.Keyring.generate()
    crypto.attach(migrated, keyring)
    _store_one(migrated)
    raw = _raw_dump(migrated)
    for secret in ("Jane", "4111", "jane.roe", "7946", "Double charge"):
        assert secret not in raw
    assert f"enc:v1:{keyring.current}:" in raw
    with make_sessionmaker(migrated)() as session:
        row = session.query(Classification).one()
        assert (row.subject, row.body) == (SECRET_SUBJECT, SECRET_BODY)
        assert row.previous_interactions == ["Earlier: Jane Roe called from +44 20 7946 0958"]


def test_sqlite_file_holds_no_plaintext(tmp_path: Path) -> None:
    from server.store.db import migrate, open_store

    storage = StorageSettings(data_key_file=tmp_path / "keys" / "data.key")
    db_engine = open_store(f"sqlite:///{tmp_path / 'raw.db'}", storage)
    try:
        migrate(db_engine)
        _store_one(db_engine)
    finally:
        db_engine.dispose()  # checkpoint the WAL into the file
    data = b"".join(p.read_bytes() for p in tmp_path.glob("raw.db*"))
    assert b"enc:v1:" in data
    for secret in (b"Jane", b"4111", b"jane.roe", b"Double charge"):
        assert secret not in data
    key_file = tmp_path / "keys" / "data.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_plain_rows_stay_readable_and_unknown_keys_are_errors(migrated: Engine) -> None:
    _store_one(migrated)  # no keyring attached: written plain (storage.encrypt off, or rows before 0004)
    assert "Jane" in _raw_dump(migrated)
    crypto.attach(migrated, crypto.Keyring.generate())
    with make_sessionmaker(migrated)() as session:
        assert session.query(Classification).one().body == SECRET_BODY
    # Sealed with one key, read with another keyring: refused, never handed on as ciphertext.
    with migrated.begin() as conn:
        conn.execute(text("DELETE FROM classifications"))
    _store_one(migrated)
    crypto.attach(migrated, crypto.Keyring.generate())
    with make_sessionmaker(migrated)() as session, pytest.raises(crypto.DataKeyError, match="not in the keyring"):
        session.query(Classification).one()
    crypto.attach(migrated, None)
    with make_sessionmaker(migrated)() as session, pytest.raises(crypto.DataKeyError, match="no data key"):
        session.query(Classification).one()


def test_rotated_keyring_opens_old_values_and_seals_with_the_new_key() -> None:
    old = crypto.Keyring.generate()
    sealed = old.seal("hello")
    rotated = old.with_new_key()
    assert rotated.current != old.current
    assert rotated.open(sealed) == "hello"
    assert crypto.key_id_of(rotated.seal("x")) == rotated.current
    assert crypto.key_id_of(sealed) == old.current
    # Tampering is detected by the GCM tag.
    kid, body = sealed[len(crypto.PREFIX) :].split(":", 1)
    flipped = body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB")
    with pytest.raises(crypto.DataKeyError, match="authentication"):
        old.open(f"{crypto.PREFIX}{kid}:{flipped}")


def test_keyring_from_settings(tmp_path: Path) -> None:
    assert crypto.load_keyring(StorageSettings(encrypt=False)) is None
    path = tmp_path / "data.key"
    with pytest.raises(crypto.DataKeyError, match="does not exist"):
        crypto.load_keyring(StorageSettings(data_key_file=path), create=False)
    first = crypto.load_keyring(StorageSettings(data_key_file=path))
    again = crypto.load_keyring(StorageSettings(data_key_file=path))
    assert first is not None and again == first
    rotated = first.with_new_key()
    crypto.write_keyring(path, rotated)
    assert crypto.load_keyring(StorageSettings(data_key_file=path)) == rotated
    env = rotated.encode().strip().replace("\n", ",")
    from_env = crypto.load_keyring(StorageSettings(data_key=env))  # type: ignore[arg-type]
    assert from_env == rotated
    with pytest.raises(ValueError, match="not 32"):
        crypto.load_keyring(StorageSettings(data_key="c2hvcnQ="))  # type: ignore[arg-type]
    assert os.environ.get("TRIAGE_STORAGE__DATA_KEY") is None
