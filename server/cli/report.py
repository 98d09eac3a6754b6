"""`triage report --since 7d [--out DIR] [--json]`: the weekly failure-pattern review from the stored data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from server.cli.common import ConfigOpt, fail, load


def report_cmd(
    since: Annotated[str, typer.Option("--since", help="From how long ago: 7d, 12h, or an ISO date/time")] = "7d",
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for report.md, report.json and the PNG plots")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (no files unless --out)")] = False,
    config: ConfigOpt = None,
) -> None:
    """Most overridden labels, confusion pairs, low-confidence clusters, accuracy per language, drift, routes
    and cost, latency percentiles. Reading the ticket text (in memory, for languages and keywords) is audited."""
    from sqlalchemy.orm import Session

    from server.auth.principal import cli_principal
    from server.cli.audit import open_db, parse_since
    from server.reporting.report import weekly_report
    from server.store import audit

    settings = load(config)
    until = datetime.now(UTC)
    try:
        start = parse_since(since, until)
    except ValueError as exc:
        fail(exc, 2)
    if start >= until:
        fail(f"--since {since!r} is not in the past", 2)
    if out is None and not as_json:
        out = Path("reports") / f"report-{until:%Y-%m-%d}"
    db = open_db(settings)
    try:
        with Session(db) as session:
            report = weekly_report(
                session,
                start,
                until,
                confidence_threshold=settings.routing.confidence_threshold,
                field_thresholds=settings.routing.field_thresholds,
            )
            audit.record(
                session,
                cli_principal(),
                "report",
                target=str(out) if out is not None else None,
                detail={
                    "since": start.isoformat(),
                    "until": until.isoformat(),
                    "results": report.data["totals"]["results"],
                },
            )
    finally:
        db.dispose()
    if out is not None:
        from server.reporting.render import write_report

        files = write_report(report, out)
        if not as_json:
            typer.echo(f"wrote {len(files)} files to {out}: " + ", ".join(p.name for p in files))
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
