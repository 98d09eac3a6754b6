"""`triage ab report [--since 7d] [--json]`: the A/B test's variants against human review, latency and cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from server.cli.common import ConfigOpt, fail, load

ab_app = typer.Typer(no_args_is_help=True, help="A/B tests of prompts and adapters (settings `ab`).")


@ab_app.command("report")
def ab_report_cmd(
    since: Annotated[str, typer.Option("--since", help="From how long ago: 7d, 12h, or an ISO date/time")] = "7d",
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="The variant the others are compared with; default: the first configured"),
    ] = None,
    min_effect: Annotated[
        float, typer.Option("--min-effect", help="The accuracy difference worth detecting (95 %, 80 % power)")
    ] = 0.05,
    min_reviewed: Annotated[int, typer.Option("--min-reviewed", help="Reviewed results per arm before deciding")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON")] = False,
    config: ConfigOpt = None,
) -> None:
    """Per variant: accuracy against feedback (Wilson 95 % CI), latency and cost per classification (bootstrap
    95 % CI), and per candidate a recommendation that says when the sample is too small to decide. Audited."""
    from sqlalchemy.orm import Session

    from server.auth.principal import cli_principal
    from server.cli.audit import open_db, parse_since
    from server.reporting.ab_report import ab_report
    from server.store import audit

    settings = load(config)
    until = datetime.now(UTC)
    try:
        start = parse_since(since, until)
    except ValueError as exc:
        fail(exc, 2)
    if not 0 < min_effect < 1:
        fail(f"--min-effect {min_effect}: expected a share in (0, 1), e.g. 0.05", 2)
    if min_reviewed < 1:
        fail("--min-reviewed must be at least 1", 2)
    names = [v.name for v in settings.ab.variants]
    db = open_db(settings)
    try:
        with Session(db) as session:
            try:
                report = ab_report(
                    session,
                    start,
                    until,
                    variants=names,
                    baseline=baseline,
                    min_effect=min_effect,
                    min_reviewed=min_reviewed,
                )
            except ValueError as exc:
                fail(exc, 2)
            audit.record(
                session,
                cli_principal(),
                "ab_report",
                detail={
                    "since": start.isoformat(),
                    "until": until.isoformat(),
                    "baseline": report.baseline,
                    "verdicts": {c.variant: c.verdict for c in report.comparisons},
                },
            )
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    if not report.variants:
        typer.echo("no results in the window")
        return
    typer.echo(report.to_text())


def register(app: typer.Typer) -> None:
    app.add_typer(ab_app, name="ab")
