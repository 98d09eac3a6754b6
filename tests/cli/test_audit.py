"""`triage audit` reads the log back (payloads only with --payloads); promote and rollback are audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from server.auth import Principal
from server.cli import app
from server.cli.audit import parse_since
from server.config import load_settings
from server.store import audit
from server.store.db import migrate, open_store
from server.store.models import AuditEvent

runner = CliRunner()
AGENT = Principal("agent-7", "classify", key_id=3)
SECRET = '{"messages":[{"content":"<EMAIL_ADDRESS_1> was charged twice"}]}'


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "triage.yaml"
    path.write_text(
        f"database_url: sqlite:///{tmp_path / 'a.db'}\nstorage:\n  data_key_file: {tmp_path / 'data.key'}\n"
    )
    settings = load_settings(path)
    db = open_store(settings.database_url, settings.storage)
    migrate(db)
    with Session(db) as session:
        session.add(
            AuditEvent(at=datetime.now(UTC) - timedelta(days=10), actor="old", action="classify", ticket_id="T-0")
        )
        session.commit()
        audit.record(session, AGENT, "classify", ticket_id="T-1", detail={"request_ids": ["r1"]})
        audit.record(session, AGENT, "hosted_call", ticket_id="T-1", target="http://x/v1/chat", payload=SECRET)
        audit.record(session, AGENT, "classify", ticket_id="T-2", detail={"request_ids": ["r2"]})
    db.dispose()
    return path


def cli(config: Path, *args: str) -> list[dict[str, object]]:
    r = runner.invoke(app, ["audit", *args, "--json", "--config", str(config)])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_audit_lists_filters_and_hides_payloads(config: Path) -> None:
    events = cli(config)
    assert [(e["action"], e["ticket_id"]) for e in events] == [
        ("classify", "T-1"),
        ("hosted_call", "T-1"),
        ("classify", "T-2"),
    ]  # the 10-day-old event is outside the default 7d
    hosted = events[1]
    assert hosted["actor"] == "agent-7" and hosted["key_id"] == 3 and hosted["payload_kept"] is True
    assert hosted["payload_sha256"] == audit.payload_digest(SECRET) and "payload" not in hosted
    assert "charged" not in json.dumps(events)

    assert [e["ticket_id"] for e in cli(config, "--since", "30d")][0] == "T-0"
    assert [e["action"] for e in cli(config, "--action", "hosted_call")] == ["hosted_call"]
    assert [e["ticket_id"] for e in cli(config, "--ticket", "T-2")] == ["T-2"]
    (full,) = cli(config, "--action", "hosted_call", "--payloads")
    assert full["payload"] == SECRET
    # Reading the log is itself audited (and listed by the next read).
    reads = cli(config, "--action", "audit_read")
    assert len(reads) == 5 and reads[-1]["detail"]["payloads"] is True

    table = runner.invoke(app, ["audit", "--config", str(config)])
    assert table.exit_code == 0 and "hosted_call" in table.output and "agent-7" in table.output
    assert "charged" not in table.output and "sha256:" in table.output


def test_bad_options_exit_2(config: Path) -> None:
    for args in (["--since", "yesterday"], ["--action", "drop_tables"]):
        r = runner.invoke(app, ["audit", *args, "--config", str(config)])
        assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output


def test_parse_since() -> None:
    now = datetime(2026, 1, 10, tzinfo=UTC)
    assert parse_since("7d", now) == datetime(2026, 1, 3, tzinfo=UTC)
    assert parse_since("12h", now) == datetime(2026, 1, 9, 12, tzinfo=UTC)
    assert parse_since("2026-01-01", now) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since("2026-01-01T05:00:00+02:00", now) == datetime(2026, 1, 1, 3, tzinfo=UTC)


def test_promote_and_rollback_are_audited(tmp_path: Path) -> None:
    from server.registry import Registry
    from tests.test_registry import make_adapter

    models = tmp_path / "models"
    for name in ("a", "b"):
        make_adapter(models / "adapters", name)
    reg = Registry(models / "registry.json")
    path = tmp_path / "triage.yaml"
    path.write_text(
        f"model:\n  registry: {reg.index_path}\ndatabase_url: sqlite:///{tmp_path / 'a.db'}\n"
        f"storage:\n  data_key_file: {tmp_path / 'data.key'}\n"
    )
    for args in (["promote", "a"], ["promote", "b"], ["rollback"]):
        r = runner.invoke(app, ["models", *args, "--config", str(path)])
        assert r.exit_code == 0, r.output
    events = cli(path, "--action", "promote", "--action", "rollback")
    assert [(e["action"], e["target"], e["detail"]["previous"]) for e in events] == [
        ("promote", "a", None),
        ("promote", "b", "a"),
        ("rollback", "a", "b"),
    ]
    assert all(str(e["actor"]).startswith("cli:") for e in events)
