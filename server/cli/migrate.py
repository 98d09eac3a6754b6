"""`triage migrate`: bring the database schema to the latest revision, once.

The server migrates at start by default; where several replicas share one PostgreSQL, concurrent Alembic
upgrades race (on an empty schema one replica fails on a duplicate pg_type key), so compose and Kubernetes
run this command once before the replicas (a one-shot service, a Job) and set
database_migrate_on_start=false on them."""

from __future__ import annotations

import typer

from server.cli.common import ConfigOpt, fail, load


def migrate(config: ConfigOpt = None) -> None:
    """Apply the pending migrations (alembic upgrade head) to database_url and exit."""
    from sqlalchemy.exc import SQLAlchemyError

    from server.store.db import migrate as upgrade

    settings = load(config)
    # The schema holds no sealed values, so the data key is not needed (nor created) here.
    try:
        upgrade(settings.database_url)
    except SQLAlchemyError as exc:
        fail(f"migration failed on {settings.database_url.split('@')[-1]}: {exc}", 1)
    typer.echo("database schema at head")
    from server.registry import RegistryError, seed_shared_registry

    try:
        seeded = seed_shared_registry(settings.model, user="migrate")
    except RegistryError as exc:
        fail(f"shared model registry: {exc}", 1)
    if seeded:
        typer.echo(f"shared model registry started with {seeded} (the active adapter of {settings.model.registry})")


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
