"""`triage audit`: print the audit log (who did what, when), and the audit helper other commands use.

Payloads (what was sent to a hosted API) are shown only with `--payloads`: by default an event shows the
payload's sha256 and whether the payload itself is still kept. Reading the log is itself audited
(`audit_read`)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from server.cli.common import ConfigOpt, console, fail, load

if TYPE_CHECKING:
    from sqlalchemy import Engine as DbEngine

    from server.config import Settings
    from server.store.audit import Action
    from server.store.models import AuditEvent

SINCE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime) -> datetime:
    """`7d`, `12h`, `30m`, `90s`, `2w`, or an ISO date/time (UTC when it names no zone)."""
    m = SINCE.match(value.strip())
    if m:
        return now - timedelta(**{UNITS[m.group(2)]: float(m.group(1))})
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"--since {value!r}: expected e.g. 7d, 12h, 30m or an ISO date/time") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def open_db(settings: Settings, *, create_key: bool = False) -> DbEngine:
    """The store as the server opens it (keyring attached, schema migrated); an unreadable key exits 1. A
    missing key file is generated only with `create_key` (a command that writes, as the server's first start)."""
    from server.store.crypto import DataKeyError
    from server.store.db import migrate, open_store

    try:
        db = open_store(settings.database_url, settings.storage, create_key=create_key)
    except (DataKeyError, ValueError) as exc:
        fail(exc, 1)
    migrate(db)
    return db


def record_cli_event(
    settings: Settings, action: Action, *, target: str | None = None, detail: dict[str, Any] | None = None
) -> None:
    """Audit a command's change as the operating-system user. The change is made already; a failure to audit
    it is reported on stderr and exits 1, so scripts notice."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    from server.auth.principal import cli_principal
    from server.store import audit

    db = open_db(settings, create_key=True)
    try:
        with Session(db) as session:
            audit.record(session, cli_principal(), action, target=target, detail=detail)
    except SQLAlchemyError as exc:
        fail(f"done, but the audit event could not be written ({type(exc).__name__}): {exc}", 1)
    finally:
        db.dispose()


def _event_json(event: AuditEvent, payloads: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": event.id,
        "at": event.at.isoformat(),
        "actor": event.actor,
        "key_id": event.key_id,
        "action": event.action,
        "ticket_id": event.ticket_id,
        "target": event.target,
        "detail": event.detail,
        "payload_sha256": event.payload_sha256,
        "payload_kept": event.payload is not None,
    }
    if payloads:
        out["payload"] = event.payload
    return out


def audit_cmd(
    since: Annotated[str, typer.Option("--since", help="From how long ago: 7d, 12h, 30m, or an ISO date/time")] = "7d",
    action: Annotated[
        list[str] | None, typer.Option("--action", help="Only this action (repeatable), e.g. hosted_call, erasure")
    ] = None,
    ticket: Annotated[str | None, typer.Option("--ticket", help="Only events of this ticket id")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON array instead of a table")] = False,
    payloads: Annotated[
        bool, typer.Option("--payloads", help="Include the payloads (what was sent to the hosted API) in full")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many events, oldest first")] = 10_000,
    config: ConfigOpt = None,
) -> None:
    """Print the audit log: who (key), what (action, ticket, target, detail), when; payloads only with --payloads."""
    from sqlalchemy.orm import Session

    from server.auth.principal import cli_principal
    from server.store import audit

    now = datetime.now(UTC)
    try:
        start = parse_since(since, now)
    except ValueError as exc:
        fail(exc, 2)
    unknown = sorted(set(action or ()) - set(audit.ACTIONS))
    if unknown:
        fail(f"--action {', '.join(unknown)}: not an audited action; known: {', '.join(audit.ACTIONS)}", 2)
    settings = load(config)
    db = open_db(settings)
    try:
        with Session(db) as session:
            events = audit.events(session, since=start, actions=action or None, ticket_id=ticket, limit=limit)
            rows = [_event_json(e, payloads) for e in events]
            # Reading the log is audited too, after the read so the listing does not show itself.
            audit.record(
                session,
                cli_principal(),
                "audit_read",
                ticket_id=ticket,
                detail={
                    "since": start.isoformat(),
                    "actions": action or None,
                    "payloads": payloads,
                    "events": len(rows),
                },
            )
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    _table(rows, payloads)


def _table(rows: list[dict[str, Any]], payloads: bool) -> None:
    from rich.table import Table

    if not rows:
        typer.echo("no audit events")
        return
    table = Table(show_lines=False)
    for column in ("at", "actor", "key", "action", "ticket", "target", "detail", "payload"):
        table.add_column(column, overflow="fold")
    for r in rows:
        if payloads and r.get("payload") is not None:
            payload = r["payload"]
        elif r["payload_sha256"]:
            payload = f"sha256:{r['payload_sha256'][:16]}… ({'kept' if r['payload_kept'] else 'not kept'})"
        else:
            payload = "-"
        table.add_row(
            r["at"][:19].replace("T", " "),
            r["actor"],
            str(r["key_id"]) if r["key_id"] is not None else "-",
            r["action"],
            r["ticket_id"] or "-",
            r["target"] or "-",
            json.dumps(r["detail"], ensure_ascii=False, separators=(",", ":")) if r["detail"] else "-",
            payload,
        )
    console().print(table)


def register(app: typer.Typer) -> None:
    app.command("audit")(audit_cmd)


__all__ = ["open_db", "parse_since", "record_cli_event", "register"]
