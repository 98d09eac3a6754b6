"""What every command module shares: the --config option, settings loading, output helpers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:  # the CLI imports heavy modules inside the commands only
    from rich.console import Console

    from server.config import Settings

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML settings file (taxonomy, prompt, model, ...)")]


def load(config: Path | None, **overrides: Any) -> Settings:
    from server.config import load_settings

    return load_settings(config, **overrides)


def fail(message: object, code: int) -> NoReturn:
    """`error: ...` on stderr and exit `code` (1: registry/adapter problems, 2: bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def console() -> Console:
    from rich.console import Console

    # Not a terminal (CI, CliRunner): rich would squeeze wide tables into 80 columns.
    return Console() if sys.stdout.isatty() else Console(width=200)


def fmt(v: Any, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.3f}" if signed else f"{v:.3f}" if isinstance(v, float) else str(v)


def with_engine(settings: Settings, engine: str) -> Settings:
    """`--engine embedded|outlines|vllm`: the settings with that engine.kind (a bad name exits 2 naming it)."""
    from pydantic import ValidationError

    try:
        return settings.variant(engine={"kind": engine})
    except ValidationError:
        fail(f"--engine {engine!r}: expected embedded, transformers, outlines or vllm", 2)
