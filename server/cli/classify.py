"""`triage classify`: one ticket in-process, printed as JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from server.cli.common import ConfigOpt, load, with_engine


def classify(
    subject: Annotated[str, typer.Option(help="Ticket subject")] = "",
    body: Annotated[str, typer.Option(help="Ticket body")] = "",
    history: Annotated[
        list[str] | None, typer.Option("--history", help="A previous interaction (repeatable, oldest first)")
    ] = None,
    config: ConfigOpt = None,
    engine: Annotated[
        str | None, typer.Option("--engine", help="embedded | outlines | vllm (default: engine.kind from the settings)")
    ] = None,
) -> None:
    """Classify one ticket in-process and print the JSON (nothing is stored)."""
    if not subject.strip() and not body.strip():
        raise typer.BadParameter("give --subject and/or --body")
    from server.engines import open_runner
    from server.engines.base import EngineError
    from server.prompts import TicketInput
    from server.routing.thresholds import unsure_fields
    from server.taxonomy import load_taxonomy

    settings = load(config)
    if engine is not None:
        settings = with_engine(settings, engine)
    runner = open_runner(settings, load_taxonomy(settings.taxonomy))
    (out,) = runner.run([TicketInput(subject, body, tuple(history or ()))])
    if isinstance(out, EngineError) or not hasattr(out, "output"):
        typer.echo(f"error: {out}", err=True)
        raise typer.Exit(1)
    result = {
        **out.output,
        "confidence": out.confidence,
        # No re-review or fallback here: what the first local pass says.
        "needs_review": bool(unsure_fields(settings.routing, out.confidence)),
        "model": {"base": settings.model.base, "adapter": runner.info.adapter},
        "prompt_version": out.prompt_version,
        "usage": {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens},
        "input_truncated": out.truncated,
    }
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))


def register(app: typer.Typer) -> None:
    app.command()(classify)
