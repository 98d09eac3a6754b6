"""`triage serve`: the HTTP server (HTTPS with `tls.certfile`/`tls.keyfile`)."""

from __future__ import annotations

import ssl
from typing import Annotated, Any

import typer

from server.cli.common import ConfigOpt, load
from server.config import Settings
from server.observability.logging import configure_logging, logging_config


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run's keyword arguments for these settings: address, and TLS when a certificate is configured
    (TLS 1.2+ via uvicorn's default context; client certificates required with `tls.require_client_cert`)."""
    options: dict[str, Any] = {
        "host": settings.api.host,
        "port": settings.api.port,
        "log_level": settings.log.level.lower(),
        # Every logger (uvicorn's too) in `log.format`, with the request id; the app's middleware writes the
        # access line (it knows the request id and the route), so uvicorn's own is off.
        "log_config": logging_config(settings.log),
        "access_log": False,
    }
    tls = settings.tls
    if tls.certfile is not None and tls.keyfile is not None:
        for path in (tls.certfile, tls.keyfile, tls.ca_certs):
            if path is not None and not path.is_file():
                raise FileNotFoundError(f"TLS file not found: {path}")
        options.update(ssl_certfile=str(tls.certfile), ssl_keyfile=str(tls.keyfile))
        if tls.ca_certs is not None:
            options["ssl_ca_certs"] = str(tls.ca_certs)
            options["ssl_cert_reqs"] = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return options


def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Default from settings (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Default from settings (8000)")] = None,
) -> None:
    """Run the HTTP server (OpenAPI docs at /docs)."""
    import uvicorn

    from server.api.app import create_server

    settings = load(config)
    if host or port:
        settings = settings.variant(api={k: v for k, v in {"host": host, "port": port}.items() if v})
    options = uvicorn_options(settings)
    configure_logging(settings.log)  # before create_server, whose warnings must come out in the same format
    uvicorn.run(create_server(settings), **options)


def register(app: typer.Typer) -> None:
    app.command()(serve)
