"""`triage serve`: the HTTP server."""

from __future__ import annotations

from typing import Annotated

import typer

from server.cli.common import ConfigOpt, load


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
    uvicorn.run(create_server(settings), host=settings.api.host, port=settings.api.port, log_level="info")


def register(app: typer.Typer) -> None:
    app.command()(serve)
