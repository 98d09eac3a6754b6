"""`triage` command line: serve, classify, eval, setup. Heavy imports happen inside the commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="triage: support-ticket classification server")

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="YAML settings file (taxonomy, prompt, model, ...)")]


def _settings(config: Path | None, **overrides):
    from server.config import load_settings

    return load_settings(config, **overrides)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[Optional[str], typer.Option(help="Default from settings (127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="Default from settings (8000)")] = None,
) -> None:
    """Run the HTTP server (OpenAPI docs at /docs)."""
    import uvicorn

    from server.api.app import create_server

    settings = _settings(config)
    if host or port:
        settings.api = settings.api.model_copy(update={k: v for k, v in {"host": host, "port": port}.items() if v})
    uvicorn.run(create_server(settings), host=settings.api.host, port=settings.api.port, log_level="info")


@app.command()
def classify(
    subject: Annotated[str, typer.Option(help="Ticket subject")] = "",
    body: Annotated[str, typer.Option(help="Ticket body")] = "",
    history: Annotated[Optional[list[str]], typer.Option("--history", help="A previous interaction (repeatable, oldest first)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Classify one ticket in-process and print the JSON (nothing is stored)."""
    if not subject.strip() and not body.strip():
        raise typer.BadParameter("give --subject and/or --body")
    from server.engines.transformers_engine import BatchRunner
    from server.prompts import TicketInput
    from server.taxonomy import load_taxonomy
    settings = _settings(config)
    runner = BatchRunner(settings, load_taxonomy(settings.taxonomy))
    (out,) = runner.run([TicketInput(subject, body, tuple(history or ()))])
    if not hasattr(out, "output"):
        typer.echo(f"error: {out}", err=True)
        raise typer.Exit(1)
    threshold = settings.routing.confidence_threshold
    result = {
        **out.output,
        "confidence": out.confidence,
        "needs_review": any(c is None or c < threshold for c in out.confidence.values()),
        "model": {"base": settings.model.base, "adapter": settings.model.adapter},
        "prompt_version": out.prompt_version,
        "usage": {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens},
        "input_truncated": out.truncated,
    }
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))


@app.command("eval")
def evaluate(
    data: Annotated[Path, typer.Option("--data", exists=True, dir_okay=False, help="CSV with subject, body and the taxonomy's label columns")],
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line of metrics")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write report.md/json and plots here")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N rows")] = None,
) -> None:
    """Accuracy, macro-F1, calibration and throughput of the configured model on a labelled CSV."""
    from server.evaluation.run import run_eval

    settings = _settings(config)
    try:
        summary = run_eval(settings, data, out_dir=out, limit=limit)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")


@app.command()
def setup(
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option(help="Convert again even if the folder exists")] = False,
) -> None:
    """Convert the PyPI-shipped GGUF base model to safetensors under models/base (once)."""
    from server.engines.loading import convert_gguf_base

    settings = _settings(config)
    out = convert_gguf_base(Path(settings.model.base), force=force)
    typer.echo(f"base model ready: {out}")


if __name__ == "__main__":
    app()
