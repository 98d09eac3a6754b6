"""`triage batch INPUT OUTPUT`: a file of tickets classified offline, resumable after a kill.
The work is server.bulk's (server.bulk_ray's with `--ray`); this module parses the flags and draws the progress bar."""

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
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Run on Ray (pip install 'triage[ray]'): local (a Ray instance in this process), auto, "
            "ray://HOST:PORT or HOST:PORT",
        ),
    ] = None,
    actors: Annotated[
        int | None, typer.Option("--actors", min=1, help="With --ray: engine actors (default: one per CPU/GPU slot)")
    ] = None,
    cpus_per_actor: Annotated[float, typer.Option("--cpus-per-actor", min=0, help="With --ray")] = 1.0,
    gpus_per_actor: Annotated[float, typer.Option("--gpus-per-actor", min=0, help="With --ray")] = 0.0,
) -> None:
    """Classify every ticket of INPUT into OUTPUT. Optional columns: ticket_id (else one is derived from
    the row's position and text), previous_interactions/history (a JSON list or one string).

    Running the same command again after an interruption continues where it stopped: tickets already in
    OUTPUT are skipped, none is classified twice. A failed ticket gets a {"ticket_id", "error"} line and counts as done.
    With --ray the same job runs on a pool of Ray actors, each loading the engine once; OUTPUT and resuming are the same."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from server.bulk import BulkInputError, journal_path, open_classifier, read_tickets, run_records
    from server.bulk_ray import RayJobError, RayPlan, check_plan, ray_classifier

    settings = load(config)
    if engine is not None:
        settings = with_engine(settings, engine)
    plan = None
    try:
        if ray is None and (actors is not None or cpus_per_actor != 1.0 or gpus_per_actor != 0.0):
            raise BulkInputError("--actors, --cpus-per-actor and --gpus-per-actor only apply with --ray ADDRESS")
        if ray is not None:
            plan = RayPlan(ray, actors, cpus_per_actor, gpus_per_actor)
            check_plan(plan)
        tickets = read_tickets(input_path)
        # Checked before the model loads (tens of seconds): a bad OUTPUT should fail at once.
        journal = journal_path(output)
        if output.suffix.lower() not in (".jsonl", ".parquet"):
            raise BulkInputError(f"output {output}: unknown extension {output.suffix!r}, expected .jsonl or .parquet")
    except BulkInputError as exc:
        fail(exc, 2)
    err = Console(stderr=True)
    where = ""
    if plan is None:
        classify = open_classifier(settings, concurrency)
    else:

        def started(n: int) -> None:
            nonlocal where
            where = f" on {n} Ray actor{'s' if n != 1 else ''}"

        classify = ray_classifier(settings, plan, concurrency, on_start=started)
    with Progress(
        TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err
    ) as bar:
        task = bar.add_task("batch", total=len(tickets))
        try:
            summary = run_records(
                tickets, output, classify, progress=lambda done, total: bar.update(task, completed=done)
            )
        except BulkInputError as exc:
            fail(exc, 2)
        except RayJobError as exc:
            fail(exc, 1)
    err.print(
        f"{summary.total} tickets: {summary.skipped} already in {journal.name}, {summary.classified} classified, "
        f"{summary.failed} failed, {summary.per_second:.2f} tickets/s{where}",
        soft_wrap=True,  # one line to grep, whatever the terminal's width
    )


def register(app: typer.Typer) -> None:
    app.command()(batch)
