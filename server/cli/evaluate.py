"""`triage eval`: metrics on a labelled CSV and, with --baseline, the regression gate. The work is
server.evaluation.workflow's; this module parses the flags and prints."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from server.cli.common import ConfigOpt, console, fail, fmt, load, with_engine

if TYPE_CHECKING:
    from server.evaluation.gate import GateVerdict
    from server.evaluation.workflow import GateOutcome


def evaluate(
    data: Annotated[
        Path,
        typer.Option(
            "--data", exists=True, dir_okay=False, help="CSV with subject, body and the taxonomy's label columns"
        ),
    ],
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="End with one JSON line of metrics")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write report.md/json and plots here (and gate.json with --baseline)"),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N rows")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Adapter to evaluate: registered name, folder, 'registry' (the active one) or 'base'/'none'; default: settings",
        ),
    ] = None,
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="Compare against: a model spec as for --model, or a report.json")
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option("--rules", exists=True, dir_okay=False, help="Gate rules YAML (default: built-in rules)"),
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 3 when the gate says no (for CI)")] = False,
    engine: Annotated[
        str | None, typer.Option("--engine", help="embedded | outlines | vllm (default: engine.kind from the settings)")
    ] = None,
) -> None:
    """Accuracy, macro-F1, calibration and throughput on a labelled CSV; with --baseline also the regression gate.

    The gate prints `Proceed with deployment: yes|no`; an evaluated adapter's manifest records the eval and verdict."""
    from rich.console import Console

    from server.evaluation.gate import load_rules
    from server.evaluation.workflow import EvalWorkflow, Notices, adapter_spec, with_adapter
    from server.registry import RegistryError

    settings = load(config)
    if engine is not None:
        settings = with_engine(settings, engine)
    if model is not None:
        settings = with_adapter(settings, adapter_spec(model))
    try:
        gate_rules = load_rules(rules)
        workflow = EvalWorkflow(settings, Notices(info=Console().print, warn=lambda m: typer.echo(m, err=True)))
        outcome = workflow.judge(data, gate_rules, baseline=baseline, out=out, limit=limit)
        _print_gate(outcome.rows, outcome.verdict, outcome.baseline is not None)
        workflow.record(outcome, out)
    except RegistryError as exc:
        fail(exc, 1)
    except ValueError as exc:
        fail(exc, 2)
    if as_json:
        sys.stdout.write(json.dumps(_json_line(outcome, with_gate=baseline is not None), default=str) + "\n")
    if strict and not outcome.verdict.proceed:
        raise typer.Exit(3)


def _json_line(outcome: GateOutcome, with_gate: bool) -> dict[str, Any]:
    extra: dict[str, Any] = {"gate": outcome.verdict.to_dict()} if with_gate else {}
    if outcome.classical is not None:
        extra["classical"] = outcome.classical.headline(("_accuracy", "_macro_f1"))
    return {**outcome.summary.to_json(), **extra}


def _print_gate(rows: list[dict[str, Any]], verdict: GateVerdict, with_baseline: bool) -> None:
    from rich.table import Table

    out = console()
    if rows:
        t = Table(title="candidate vs baseline")
        for col in ("field", "label", "metric", "candidate", "baseline", "delta"):
            t.add_column(col, justify="right" if col in ("candidate", "baseline", "delta") else "left")
        for r in rows:
            t.add_row(
                r["field"],
                r["label"] or "",
                r["metric"],
                fmt(r["candidate"]),
                fmt(r["baseline"]),
                fmt(r["delta"], signed=True),
            )
        out.print(t)
    ct = Table(title="regression gate" + ("" if with_baseline else " (no baseline: absolute checks only)"))
    for col in ("check", "passed", "detail"):
        ct.add_column(col)
    for c in verdict.checks:
        ct.add_row(c.name, "yes" if c.passed else "NO", c.detail)
    out.print(ct)
    typer.echo(verdict.line())  # plain echo: the exact line CI greps for, no rich markup


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
