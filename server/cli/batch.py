"""`triage batch INPUT OUTPUT`: a file of tickets classified offline, resumable after a kill.
The work is server.bulk's; this module parses the flags, opens the engine and draws the progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from server.cli.common import ConfigOpt, fail, load, with_engine


def batch(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="CSV, JSONL or Parquet with subject, body")],
    output: Annotated[Path, typer.Argument(metavar="OUTPUT", help="Results: .jsonl (one line per ticket) or .parquet")],
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, help="Tickets in flight at once (default: engine.max_batch_size)"),
    ] = None,
    config: ConfigOpt = None,
    engine: Annotated[
        str | None, typer.Option("--engine", help="embedded | outlines | vllm (default: engine.kind from the settings)")
    ] = None,
) -> None:
    """Classify every ticket of INPUT into OUTPUT. Optional columns: ticket_id (else one is derived from
    the row's position and text), previous_interactions/history (a JSON list or one string).

    Running the same command again after an interruption continues where it stopped: tickets already in
    OUTPUT are skipped, none is classified twice. A failed ticket gets a {"ticket_id", "error"} line and counts as done."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from server.bulk import BulkInputError, journal_path, read_tickets, result_record, run_job
    from server.engines import open_runner
    from server.taxonomy import load_taxonomy

    settings = load(config)
    if engine is not None:
        settings = with_engine(settings, engine)
    try:
        tickets = read_tickets(input_path)
        # Checked before the model loads (tens of seconds): a bad OUTPUT should fail at once.
        journal = journal_path(output)
        if output.suffix.lower() not in (".jsonl", ".parquet"):
            raise BulkInputError(f"output {output}: unknown extension {output.suffix!r}, expected .jsonl or .parquet")
    except BulkInputError as exc:
        fail(exc, 2)
    runner = open_runner(settings, load_taxonomy(settings.taxonomy))
    err = Console(stderr=True)
    with Progress(
        TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
    ) as bar:
        task = bar.add_task("batch", total=len(tickets))
        try:
            summary = run_job(
                tickets,
                output,
                runner.run_stream,
                lambda tid, out: result_record(tid, out, runner.info, settings.routing),
                concurrency or settings.engine.max_batch_size,
                progress=lambda done, total: bar.update(task, completed=done),
            )
        except BulkInputError as exc:
            fail(exc, 2)
    err.print(
        f"{summary.total} tickets: {summary.skipped} already in {journal.name}, {summary.classified} classified, "
        f"{summary.failed} failed, {summary.per_second:.2f} tickets/s"
    )


def register(app: typer.Typer) -> None:
    app.command()(batch)
