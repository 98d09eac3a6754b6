"""`triage setup`: the base model, converted once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from server.cli.common import ConfigOpt, load


def setup(
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option(help="Convert again even if the folder exists")] = False,
) -> None:
    """Convert the PyPI-shipped GGUF base model to safetensors under models/base (once)."""
    from server.engines.loading import convert_gguf_base

    settings = load(config)
    out = convert_gguf_base(Path(settings.model.base), force=force)
    typer.echo(f"base model ready: {out}")


def register(app: typer.Typer) -> None:
    app.command()(setup)
