"""The audit log is append-only on both backends: rows can be added, a payload erased, nothing else."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from server.auth import Principal
from server.store import audit, crypto
from server.store.db import make_sessionmaker

ALICE = Principal("alice", "review", key_id=7)


def test_record_and_read_back(session: Session) -> None:
    audit.record(session, ALICE, "result_read", ticket_id="t1", target="r1")
    audit.record(session, ALICE, "hosted_call", ticket_id="t1", payload='{"messages": []}', detail={"EMAIL": 1})
    audit.record(session, ALICE, "hosted_call", ticket_id="t2", payload="x", keep_payload=False)
    rows = audit.events(session, actions=["hosted_call"])
    assert [(r.ticket_id, r.payload) for r in rows] == [("t1", '{"messages": []}'), ("t2", None)]
    assert rows[1].payload_sha256 == audit.payload_digest("x")
    assert rows[0].actor == "alice" and rows[0].key_id == 7
    assert [r.action for r in audit.events(session, ticket_id="t1")] == ["result_read", "hosted_call"]


def test_update_and_delete_are_refused_but_payload_erasure_is_allowed(migrated: Engine) -> None:
    with make_sessionmaker(migrated)() as session:
        audit.record(session, ALICE, "hosted_call", ticket_id="t1", payload="secret")
        audit.record(session, ALICE, "classify", ticket_id="t1", detail={"request_ids": ["r1"]})
    for statement in (
        "DELETE FROM audit_log",
        "UPDATE audit_log SET actor = 'mallory'",
        "UPDATE audit_log SET payload = 'rewritten' WHERE payload IS NOT NULL",
        "UPDATE audit_log SET payload_sha256 = NULL",
    ):
        with pytest.raises(DatabaseError, match="append-only"), migrated.begin() as conn:
            conn.execute(text(statement))
    with make_sessionmaker(migrated)() as session:
        assert audit.erase_payloads(session, "t1") == 1
        session.commit()
        rows = audit.events(session)
    assert len(rows) == 2 and rows[0].payload is None and rows[0].payload_sha256 == audit.payload_digest("secret")


def test_payload_is_sealed(migrated: Engine) -> None:
    crypto.attach(migrated, crypto.Keyring.generate())
    with make_sessionmaker(migrated)() as session:
        audit.record(session, ALICE, "hosted_call", ticket_id="t1", payload="jane@example.org")
        assert audit.events(session)[0].payload == "jane@example.org"
    with migrated.connect() as conn:
        raw = conn.execute(text("SELECT payload FROM audit_log")).scalar_one()
    assert raw.startswith("enc:v1:") and "jane" not in raw
