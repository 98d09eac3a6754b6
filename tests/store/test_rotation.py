"""Data-key rotation on SQLite and PostgreSQL: every encrypted value re-sealed with the new key (plain ones sealed),
the old key droppable afterwards, the audit log's append-only guard back in place."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from server.auth import Principal
from server.config import load_settings
from server.store import audit, crypto
from server.store.models import Classification, Feedback, Job, JobTicket
from server.store.rotation import RotationRefused, encrypted_columns, rotate_data_key

ADMIN = Principal("cli:ops", "admin")
COLUMNS = {
    "classifications": ["subject", "body", "previous_interactions", "prediction", "raw_output"],
    "feedback": ["comment", "corrections"],
    "audit_log": ["payload"],
    "job_tickets": ["subject", "body", "previous_interactions"],
}


def database_url(db: Engine) -> str:
    # On PostgreSQL the URL names the test's own schema (tests/store/conftest.py, pg_schema).
    return db.url.render_as_string(hide_password=False)


def write_rows(db: Engine, n: int) -> list[dict[str, object]]:
    written = []
    with Session(db) as session:
        for i in range(n):
            row = Classification(
                request_id=f"r{i}-{crypto.keyring_of(db.dialect) is not None}",
                ticket_id=f"T-{i}",
                subject=f"subject {i}",
                body=f"body {i} jane@example.org",
                previous_interactions=[f"earlier {i}"],
                prediction={"category": "Billing", "reasoning": f"why {i}"},
                raw_output=f'{{"category": "Billing", "n": {i}}}',
                model_base="base",
                prompt_version="v1",
                status="done",
            )
            session.add(row)
            session.flush()
            session.add(
                Feedback(
                    classification_id=row.id,
                    ticket_id=row.ticket_id,
                    reviewer="anna",
                    comment=f"comment {i}",
                    corrections={"priority": "Low"},
                )
            )
            audit.record(session, ADMIN, "hosted_call", ticket_id=row.ticket_id, payload=f"payload {i}", commit=False)
            job_id = f"job-{row.request_id}"
            session.add(Job(id=job_id, source="upload", filename="t.csv", total=1, actor="anna"))
            session.flush()
            session.add(
                JobTicket(
                    job_id=job_id,
                    position=0,
                    ticket_id=row.ticket_id,
                    subject=f"job subject {i}",
                    body=f"job body {i}",
                    previous_interactions=[f"job earlier {i}"],
                )
            )
            written.append({"subject": row.subject, "body": row.body, "payload": f"payload {i}"})
        session.commit()
    return written


def raw_key_ids(db: Engine) -> set[str | None]:
    ids: set[str | None] = set()
    with db.connect() as conn:
        for table, cols in COLUMNS.items():
            for col in cols:
                for (value,) in conn.execute(text(f"SELECT {col} FROM {table} WHERE {col} IS NOT NULL")):
                    if isinstance(value, str) and value.startswith('"'):  # a JSON string on SQLite
                        value = value.strip('"')
                    ids.add(crypto.key_id_of(value))
    return ids


def test_every_encrypted_column_is_covered() -> None:
    assert {name: cols for name, (_, cols) in encrypted_columns().items()} == COLUMNS


def test_rotate_reseals_everything_and_the_old_key_can_go(migrated: Engine, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("server.store.rotation.BATCH", 3)  # several batches per table
    old = crypto.Keyring.generate()
    key_file = tmp_path / "data.key"
    crypto.write_keyring(key_file, old)
    crypto.attach(migrated, None)
    plain = write_rows(migrated, 2)  # written before encryption was on: plain values
    crypto.attach(migrated, old)
    sealed = write_rows(migrated, 5)
    assert raw_key_ids(migrated) == {None, old.current}

    settings = load_settings(database_url=database_url(migrated), storage={"data_key_file": key_file})
    report = rotate_data_key(settings, ADMIN)

    assert report.old_key_ids == [old.current] and report.new_key_id != old.current
    assert report.resealed == {"classifications": 7, "feedback": 7, "audit_log": 7, "job_tickets": 7}
    assert report.remaining == {"classifications": 0, "feedback": 0, "audit_log": 0, "job_tickets": 0}
    assert raw_key_ids(migrated) == {report.new_key_id}
    on_file = crypto.load_keyring(settings.storage, create=False)
    assert on_file is not None and on_file.current == report.new_key_id and old.current in on_file.keys

    # The old key dropped: everything still reads, unchanged.
    only_new = crypto.Keyring({report.new_key_id: on_file.keys[report.new_key_id]}, report.new_key_id)
    crypto.attach(migrated, only_new)
    with Session(migrated) as session:
        rows = session.query(Classification).order_by(Classification.id).all()
        assert [(r.subject, r.body) for r in rows] == [(w["subject"], w["body"]) for w in plain + sealed]
        assert all(
            r.prediction["category"] == "Billing" and r.feedback[0].corrections == {"priority": "Low"} for r in rows
        )
        events = audit.events(session, actions=["hosted_call"])
        assert [e.payload for e in events] == [w["payload"] for w in plain + sealed]
        assert all(e.payload_sha256 == audit.payload_digest(e.payload) for e in events)
        (rotation,) = audit.events(session, actions=["data_key_rotate"])
        assert rotation.target == report.new_key_id and rotation.detail["resealed"]["audit_log"] == 7

    # The audit log's guard is back: nothing but erasing a payload.
    with pytest.raises(DatabaseError, match="append-only"), migrated.begin() as conn:
        conn.execute(text("UPDATE audit_log SET payload = 'rewritten' WHERE payload IS NOT NULL"))
    with pytest.raises(DatabaseError, match="append-only"), migrated.begin() as conn:
        conn.execute(text("DELETE FROM audit_log"))

    # A second run re-seals everything again under yet another key.
    again = rotate_data_key(settings, ADMIN)
    assert again.resealed == report.resealed and raw_key_ids(migrated) == {again.new_key_id}


def test_a_key_from_the_environment_is_not_rotated_here(tmp_path: Path) -> None:
    one = crypto.Keyring.generate()
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'x.db'}", storage={"data_key": SecretStr(one.encode().strip())}
    )
    with pytest.raises(RotationRefused, match="add a new key first"):
        rotate_data_key(settings, ADMIN)
    with pytest.raises(RotationRefused, match="encrypt is off"):
        rotate_data_key(load_settings(database_url="sqlite://", storage={"encrypt": False}), ADMIN)


def test_a_running_store_picks_up_the_rotation_without_a_restart(migrated: Engine, tmp_path: Path) -> None:
    """A server's engine watches its key file: after a rotation by another process it reads the re-sealed rows
    and seals new rows with the new key (no restart)."""
    key_file = tmp_path / "data.key"
    old = crypto.Keyring.generate()
    crypto.write_keyring(key_file, old)
    running = crypto.KeyFile(key_file, old, check_every_s=0.0)
    crypto.attach(migrated, running)
    write_rows(migrated, 2)
    settings = load_settings(database_url=database_url(migrated), storage={"data_key_file": key_file})
    report = rotate_data_key(settings, ADMIN)  # its own engine, as `triage keys rotate-data-key` runs

    crypto.attach(migrated, running)  # the rotation test helper re-attached nothing: still the server's source
    with Session(migrated) as session:
        assert [r.subject for r in session.query(Classification).order_by(Classification.id)] == [
            "subject 0",
            "subject 1",
        ]
    with Session(migrated) as session:
        session.add(
            Classification(request_id="after", ticket_id="T-new", body="new body", model_base="b", prompt_version="v1")
        )
        session.commit()
    assert raw_key_ids(migrated) == {report.new_key_id}
    # A slow watcher still opens a newer key's value at once: an unknown key id forces a re-read.
    lazy = crypto.KeyFile(key_file, old, check_every_s=3600.0)
    crypto.attach(migrated, lazy)
    with Session(migrated) as session:
        assert session.query(Classification).count() == 3 and all(r.body for r in session.query(Classification))
