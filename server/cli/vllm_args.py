"""`triage vllm-args`: the exact `vllm serve` command for the active model and the registered adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from server.cli.common import ConfigOpt, fail, load


def vllm_args(
    merged: Annotated[
        bool, typer.Option("--merged", help="Serve the merged model of the active adapter (`triage models merge`)")
    ] = False,
    merged_dir: Annotated[
        Path | None, typer.Option("--merged-dir", help="The merged model folder (default: models/merged/ACTIVE)")
    ] = None,
    python: Annotated[
        str | None,
        typer.Option("--python", help="Start vLLM as PYTHON -m vllm.entrypoints.openai.api_server (its own venv)"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Print one shell-quoted line that starts the vLLM server (runtime LoRA loading switched on)."""
    from server.engines.merge import default_out
    from server.engines.vllm.args import SERVE_ENV, serve_command, shell_line
    from server.registry import RegistryError, resolve_adapter

    settings = load(config)
    try:
        folder = merged_dir
        if merged and folder is None:
            active = resolve_adapter(settings.model)
            if active is None or not active.has_lora:
                fail("--merged: no LoRA adapter is active (model.adapter) to have a merged model of", 2)
            folder = default_out(active.name)
        argv = serve_command(settings, python=python, merged=folder if merged or merged_dir else None)
    except RegistryError as exc:
        fail(exc, 1)
    typer.echo(shell_line(argv, SERVE_ENV))


def register(app: typer.Typer) -> None:
    app.command("vllm-args")(vllm_args)
