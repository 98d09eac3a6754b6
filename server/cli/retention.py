"""`triage retention run [--dry-run]`: apply the retention settings now (the server also runs them every
`retention.interval_s`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from server.cli.common import ConfigOpt, fail, load

retention_app = typer.Typer(
    no_args_is_help=True, help="Retention: purge or anonymise stored data older than retention.days."
)


@retention_app.command("run")
def retention_run(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be purged or redacted; change nothing")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON")] = False,
    config: ConfigOpt = None,
) -> None:
    """Delete classifications (and feedback, per retention.tables) past their age, redact the text of those kept
    for training, erase old audit payloads; audited as retention_run."""
    from sqlalchemy.orm import sessionmaker

    from server.auth.principal import cli_principal
    from server.cli.audit import open_db
    from server.retention import enabled, run_retention

    settings = load(config)
    if not enabled(settings):
        fail("retention is not configured: set retention.days or retention.tables", 2)
    db = open_db(settings)
    try:
        report = run_retention(sessionmaker(bind=db), settings, cli_principal(), dry_run=dry_run)
    finally:
        db.dispose()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    verb = "would be" if dry_run else "were"
    for name, count in report.counts().items():
        typer.echo(f"{name.replace('_', ' ')}: {count}")
    if report.redactions:
        typer.echo("values redacted: " + ", ".join(f"{k} {v}" for k, v in sorted(report.redactions.items())))
    typer.echo(
        f"(rows created before the cut-offs {verb} processed: classifications {report.classifications_before}, "
        f"feedback {report.feedback_before}, audit payloads {report.audit_payloads_before})"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(retention_app, name="retention")
