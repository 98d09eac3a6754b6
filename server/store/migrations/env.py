"""Alembic environment for the triage store.

Connection precedence: a connection handed over by ``db.migrate()``, then
``-x url=...``, then ``sqlalchemy.url`` from the ini file, then the service's own
settings (``load_settings().database_url``: ``TRIAGE_DATABASE_URL``, the YAML file or
the default), so the alembic CLI migrates the database the server would use. This
file reads no environment variable itself.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from server.store.db import make_db_engine, normalise_url
from server.store.models import Base

config = context.config
target_metadata = Base.metadata

# Only the CLI has an ini file; configuring logging from inside the app would
# clobber the server's own logging setup.
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return str(url)
    from server.config import load_settings

    return load_settings().database_url


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    if connection is not None:
        dialect = connection.dialect.name
    else:
        dialect = normalise_url(url or "").get_backend_name()
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=dialect.startswith("sqlite"),
        compare_type=True,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    _configure(url=normalise_url(_url()).render_as_string(hide_password=False))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    db_engine = make_db_engine(_url())
    try:
        with db_engine.connect() as conn:
            _configure(connection=conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        db_engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
