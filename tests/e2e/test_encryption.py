"""Encryption at rest through the real server: after a real classification the SQLite file (and its WAL)
holds neither the ticket's text nor the model's free-text answer, and the key file is owner-only."""

from __future__ import annotations

import stat

from tests.e2e.conftest import get_row

TICKET = {
    "subject": "Invoice INV-88213 charged twice for Quillfeather Pro",
    "body": "Hello, this is Margarethe Vandersloot. My Visa 4111 1111 1111 1111 was charged twice for the "
    "Quillfeather Pro annual plan. Please refund one payment to account DE89370400440532013000.",
}


def test_the_database_file_holds_no_ticket_plaintext(server, client, db_sessions) -> None:
    r = client.post("/v1/classify", json=TICKET)
    assert r.status_code == 200, r.text
    body = r.json()
    row = get_row(db_sessions, body["request_id"])
    assert row.body == TICKET["body"]  # read back through the data key
    raw = b"".join(p.read_bytes() for p in server.workdir.glob("triage.db*"))
    assert b"enc:v1:" in raw
    for secret in ("Vandersloot", "4111 1111", "DE89370400440532013000", "Quillfeather", "INV-88213"):
        assert secret.encode() not in raw, secret
    reasoning = body.get("reasoning")
    if reasoning and len(reasoning) > 12:
        assert reasoning.encode() not in raw
    assert stat.S_IMODE(server.data_key_file.stat().st_mode) == 0o600
