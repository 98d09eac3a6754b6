"""`triage keys create|list|revoke|rotate-data-key`: API keys and the data key.

The store is opened as the server opens it (`open_store`: the data keyring attached) and migrated first, so
keys can be created before the server ever started. Key changes are audited as the operating-system user."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from server.cli.common import ConfigOpt, console, fail, load

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from server.config import Settings

keys_app = typer.Typer(
    no_args_is_help=True,
    help="API keys (clients send `Authorization: Bearer KEY`): create, list, revoke; rotate the data key.",
)

RoleOpt = Annotated[
    str,
    typer.Option(
        "--role", help="classify (classify, batch), review (feedback, review queue, results) or admin (everything)."
    ),
]


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    from server.store.db import make_sessionmaker, migrate, open_store

    db = open_store(settings.database_url, settings.storage)
    try:
        migrate(db)
        with make_sessionmaker(db)() as session:
            yield session
    finally:
        db.dispose()


@keys_app.command("create")
def keys_create(
    role: RoleOpt,
    name: Annotated[str, typer.Option("--name", help="A unique name (shown in the audit log; never reused).")],
    scope: Annotated[
        str | None, typer.Option("--scope", help="Limit the key to tickets of this scope (tenant).")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print it ALONE on the last line: it is shown this once, only its hash is stored."""
    from server.auth.principal import cli_principal
    from server.store import audit
    from server.store.keys import KeyRefused, create_key

    settings = load(config)
    with _session(settings) as session:
        try:
            created = create_key(
                session,
                name=name,
                role=role,  # type: ignore[arg-type]  # checked by create_key
                scope=scope,
                hash_n=settings.auth.hash_n,
            )
        except KeyRefused as exc:
            fail(exc, 2)
        record = created.record
        audit.record(
            session,
            cli_principal(),
            "key_create",
            target=record.name,
            detail={"key_id": record.id, "role": record.role, "scope": record.scope, "prefix": record.prefix},
        )
    typer.echo(
        f"created key {record.name!r} (id {record.id}, role {record.role}, scope {record.scope or '-'}); "
        "it is shown once, store it now. Clients send: Authorization: Bearer KEY"
    )
    typer.echo(created.key)


@keys_app.command("list")
def keys_list(config: ConfigOpt = None) -> None:
    """Every key: name, public prefix, role, scope, created, revoked. Never the secrets."""
    from rich.table import Table

    from server.store.keys import list_keys

    with _session(load(config)) as session:
        records = list_keys(session)
    if not records:
        typer.echo("no keys: create one with `triage keys create --role classify --name NAME`")
        return
    table = Table("id", "name", "prefix", "role", "scope", "created", "revoked")
    for r in records:
        table.add_row(
            str(r.id),
            r.name,
            f"trk_{r.prefix}_…",
            r.role,
            r.scope or "-",
            r.created_at.strftime("%Y-%m-%d %H:%M"),
            r.revoked_at.strftime("%Y-%m-%d %H:%M") if r.revoked_at else "-",
        )
    console().print(table)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")], config: ConfigOpt = None) -> None:
    """Revoke a key: every server refuses it from its next request on (no restart)."""
    from server.auth.principal import cli_principal
    from server.store import audit
    from server.store.keys import KeyRefused, revoke_key

    with _session(load(config)) as session:
        try:
            record = revoke_key(session, name)
        except KeyRefused as exc:
            fail(exc, 2)
        audit.record(session, cli_principal(), "key_revoke", target=record.name, detail={"key_id": record.id})
    typer.echo(f"revoked key {record.name!r} (id {record.id})")


@keys_app.command("rotate-data-key")
def keys_rotate_data_key(config: ConfigOpt = None) -> None:
    """A new data key becomes current and every sealed value is re-encrypted with it (the old key is kept
    in the keyring until then)."""
    import json

    from server.auth.principal import cli_principal
    from server.store.rotation import RotationRefused, rotate_data_key

    try:
        report = rotate_data_key(load(config), cli_principal())
    except RotationRefused as exc:
        fail(exc, 2)
    typer.echo(json.dumps(report.to_json(), indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


__all__ = ["keys_app", "register"]
