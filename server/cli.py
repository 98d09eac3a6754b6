"""`triage` command line: serve, classify, eval, setup. Heavy imports happen inside the commands."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # the CLI imports heavy modules inside the commands only
    from server.config import Settings
    from server.evaluation.gate import GateRules, GateVerdict
    from server.registry import AdapterEntry, Registry

app = typer.Typer(add_completion=False, no_args_is_help=True, help="triage: support-ticket classification server")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="YAML settings file (taxonomy, prompt, model, ...)")]


def _settings(config: Path | None, **overrides):
    from server.config import load_settings

    return load_settings(config, **overrides)


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="Default from settings (127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Default from settings (8000)")] = None,
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
    history: Annotated[
        list[str] | None, typer.Option("--history", help="A previous interaction (repeatable, oldest first)")
    ] = None,
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
    routing = settings.routing
    low = [
        k
        for k, c in out.confidence.items()
        if c is None or c < routing.field_thresholds.get(k, routing.confidence_threshold)
    ]
    result = {
        **out.output,
        "confidence": out.confidence,
        "needs_review": bool(low),  # no re-review or fallback here: what the first local pass says
        "model": {"base": settings.model.base, "adapter": runner.adapter.name if runner.adapter else None},
        "prompt_version": out.prompt_version,
        "usage": {"prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens},
        "input_truncated": out.truncated,
    }
    typer.echo(json.dumps(result, ensure_ascii=False, indent=2))


@app.command("eval")
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
) -> None:
    """Accuracy, macro-F1, calibration and throughput on a labelled CSV; with --baseline also the regression gate.

    The gate prints `Proceed with deployment: yes|no`; an evaluated adapter's manifest records the eval and verdict."""
    from server.evaluation.gate import load_rules
    from server.registry import Registry, RegistryError

    settings = _settings(config)
    if model is not None:
        settings = _with_adapter(settings, _adapter_spec(model))
    try:
        gate_rules = load_rules(rules)
        registry = Registry(settings.model.registry)
        candidate = _resolve(settings)
        ref = _baseline_ref(baseline, settings) if baseline is not None else None
        summary = _run_eval(settings, candidate, data, out, limit)
        key = _eval_key(summary, data, limit)
        base_summary = _baseline_summary(ref, registry, data, key, out, limit, gate_rules.field) if ref else None
        classical = _classical_summary(settings, data, limit, gate_rules, out) if gate_rules.classical else None
        verdict = _gate(
            summary, base_summary, ref.identity if ref else None, gate_rules, candidate, registry, key, out, classical
        )
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        extra: dict[str, Any] = {"gate": verdict.to_dict()} if baseline is not None else {}
        if classical is not None:
            extra["classical"] = {k: classical.get(k) for k in classical if k.endswith(("_accuracy", "_macro_f1"))}
        sys.stdout.write(json.dumps({**summary, **extra}, default=str) + "\n")
    if strict and not verdict.proceed:
        raise typer.Exit(3)


def _adapter_spec(spec: str) -> str | None:
    """--model/--baseline values: 'base' and 'none' both mean the bare base model."""
    s = spec.strip()
    return None if s.lower() in ("", "base", "none") else s


def _with_adapter(settings: Settings, adapter: str | None) -> Settings:
    return settings.model_copy(update={"model": settings.model.model_copy(update={"adapter": adapter})})


def _resolve(settings: Settings) -> AdapterEntry | None:
    from server.registry import resolve_adapter

    return resolve_adapter(settings.model)


def _run_eval(
    settings: Settings, entry: AdapterEntry | None, data: Path, out: Path | None, limit: int | None
) -> dict[str, Any]:
    """Evaluate exactly `entry`: its folder is pinned into the settings, so a promotion while the eval
    runs cannot make the engine load something other than what the manifest record will name."""
    from server.evaluation.run import run_eval

    pinned = _with_adapter(settings, str(entry.path) if entry else "none")
    summary = run_eval(pinned, data, out_dir=out, limit=limit)
    if "data_sha256" not in summary:  # run_eval sets it; hashing again would read the file twice
        summary["data_sha256"] = _sha256(data)
    model_info = dict(summary.get("model") or {})
    model_info["adapter_name"] = entry.name if entry else None
    summary["model"] = model_info
    return summary


def _sha256(path: Path) -> str:
    from server.registry import sha256_file

    return sha256_file(path)


def _eval_key(summary: dict[str, Any], data: Path, limit: int | None) -> str:
    """Manifest `evals` key: the data hash; a --limit run is a subset of that file, so it gets its own key
    (it must never be reused as the full-data baseline)."""
    sha = summary.get("data_sha256") or _sha256(data)
    return f"{sha}:limit={limit}" if limit else sha


def _identity(entry: AdapterEntry | None, settings: Settings) -> dict[str, Any]:
    if entry is None:
        return {"kind": "base", "base": settings.model.base}
    return {"kind": "adapter", "name": entry.name, "path": str(entry.path)}


@dataclass
class _BaselineRef:
    """What --baseline names, resolved before the (slow) candidate eval so a typo fails fast."""

    identity: dict[str, Any]
    report: dict[str, Any] | None = None  # a report.json given as the baseline
    entry: AdapterEntry | None = None
    settings: Settings | None = None  # for a model baseline


def _baseline_ref(spec: str, settings: Settings) -> _BaselineRef:
    path = Path(spec).expanduser()
    if path.is_file():
        return _BaselineRef({"kind": "report", "path": str(path)}, report=_load_report(path))
    if spec.endswith(".json"):
        raise ValueError(f"baseline report not found: {spec}")
    base_settings = _with_adapter(settings, _adapter_spec(spec))
    entry = _resolve(base_settings)
    return _BaselineRef(_identity(entry, settings), entry=entry, settings=base_settings)


def _baseline_summary(
    ref: _BaselineRef, registry: Registry, data: Path, key: str, out: Path | None, limit: int | None, field: str
) -> dict[str, Any]:
    """The baseline summary: the report, a stored eval of the adapter on this data, or a fresh eval."""
    from rich.console import Console

    from server.evaluation.gate import per_label

    if ref.report is not None:
        return ref.report
    entry = ref.entry
    stored = (entry.manifest.get("evals") or {}).get(key) if entry else None
    # Reuse only what the gate can use: an older stored eval without per-label metrics (or without
    # per-language metrics, on data that has a language column) is re-run.
    if (
        entry is not None
        and stored
        and per_label(stored, field) is not None
        and ("per_language" in stored or not _has_language_column(data))
    ):
        Console().print(
            f"baseline {entry.name}: reusing its stored eval of this data ({stored.get('evaluated_at', 'undated')})"
        )
        ref.identity["reused_eval"] = True
        return stored
    assert ref.settings is not None
    summary = _run_eval(ref.settings, entry, data, out / "baseline" if out else None, limit)
    if entry is not None and (entry.path / "manifest.json").is_file():
        _store_manifest(registry, entry, key, summary, None)
    return summary


def _classical_summary(
    settings: Settings, data: Path, limit: int | None, rules: GateRules, out: Path | None
) -> dict[str, Any] | None:
    """The classical baseline trained on the rules' files, or the taxonomy's own training file (the
    eval's own tickets left out), scored on `data`. None, with a message, when there is no such file or
    it does not fit the taxonomy: the eval's own numbers are still reported (the gate's rule then fails)."""
    from server.evaluation.run import read_labelled_csv, run_classical_eval
    from server.registry import resolve_project_path
    from server.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(settings.taxonomy)
    rows = read_labelled_csv(data, taxonomy, limit)
    exclude = {r["ticket_id"] for r in rows if r.get("ticket_id")}
    names = list(rules.classical_train) or [f"data/{taxonomy.name}/train.csv"]
    files = [resolve_project_path(f) for f in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        typer.echo(
            f"classical baseline skipped: no training file {', '.join(missing)} (set classical_train in the gate rules)",
            err=True,
        )
        return None
    sources: tuple[str, ...] = rules.classical_label_sources
    if sources and not rules.classical_train:  # the default file: filter by label_source only where it has one
        if "label_source" not in _csv_columns(files[0]):
            sources = ()
    typer.echo(
        f"classical baseline: TF-IDF + logistic regression trained on {', '.join(names)} ({', '.join(sources) or 'all'} rows)",
        err=True,
    )
    try:
        return run_classical_eval(
            settings, data, files, sources or None, out / "classical" if out else None, limit, exclude_ids=exclude
        )
    except ValueError as exc:
        typer.echo(f"classical baseline skipped: {exc}", err=True)
        return None


def _csv_columns(path: Path) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), None) or []


def _has_language_column(data: Path) -> bool:
    return "language" in _csv_columns(data)


def _load_report(path: Path) -> dict[str, Any]:
    """A report.json written by `triage eval` ({summary, fields, groups}) or a bare summary."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object")
    summary = dict(raw.get("summary") or raw)
    # Older reports keep per-label metrics only under `fields`; the gate reads summary["per_label"].
    if "per_label" not in summary and isinstance(raw.get("fields"), dict):
        summary["per_label"] = {
            name: rep["per_label"]
            for name, rep in raw["fields"].items()
            if isinstance(rep, dict) and "per_label" in rep
        }
    return summary


def _gate(
    summary: dict[str, Any],
    base_summary: dict[str, Any] | None,
    base_id: dict[str, Any] | None,
    rules: GateRules,
    entry: AdapterEntry | None,
    registry: Registry,
    key: str,
    out: Path | None,
    classical: dict[str, Any] | None = None,
) -> GateVerdict:
    """Judge, print, write gate.json/comparison.md, and record the eval (and verdict) in the manifest."""
    from server.evaluation.gate import compare_table, comparison_markdown, evaluate_gate
    from server.registry import utc_now, write_json_atomic

    verdict = evaluate_gate(summary, base_summary, rules, classical)
    rows = compare_table(summary, base_summary, field=rules.field) if base_summary is not None else []
    _print_gate(rows, verdict, base_summary is not None)
    record = {
        "verdict": "yes" if verdict.proceed else "no",
        "data": key,
        "n": summary.get("n"),
        "baseline": base_id,
        "classical": {k: classical.get(k) for k in classical if k.endswith("_accuracy")} if classical else None,
        "checks": verdict.to_dict()["checks"],
        "rules": rules.to_dict(),
        "at": utc_now(),
    }
    if out is not None and base_summary is not None:
        write_json_atomic(out / "gate.json", {**record, "candidate": summary.get("model"), "comparison": rows})
        (out / "comparison.md").write_text(comparison_markdown(rows, verdict), encoding="utf-8")
    # A --limit run is a smoke check, not evidence for promotion: the manifest keeps full runs only.
    if entry is not None and (entry.path / "manifest.json").is_file() and ":limit=" not in key:
        _store_manifest(registry, entry, key, summary, record)
    return verdict


def _store_manifest(
    registry: Registry, entry: AdapterEntry, key: str, summary: dict[str, Any], gate_record: dict[str, Any] | None
) -> None:
    from server.registry import utc_now

    def update(manifest: dict[str, Any]) -> None:
        manifest.setdefault("evals", {})[key] = {**summary, "evaluated_at": utc_now()}
        if gate_record is None:
            return
        # A verdict from absolute checks alone must not overwrite one earned against a baseline.
        if gate_record["baseline"] is None and (manifest.get("gate") or {}).get("baseline") is not None:
            typer.echo(
                f"note: {entry.name} keeps its gate verdict from a baseline comparison (this run had no --baseline)",
                err=True,
            )
            return
        manifest["gate"] = gate_record

    registry.update_manifest(entry.path, update)


def _print_gate(rows: list[dict[str, Any]], verdict: GateVerdict, with_baseline: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = _console(Console)
    if rows:
        t = Table(title="candidate vs baseline")
        for col in ("field", "label", "metric", "candidate", "baseline", "delta"):
            t.add_column(col, justify="right" if col in ("candidate", "baseline", "delta") else "left")
        for r in rows:
            t.add_row(
                r["field"],
                r["label"] or "",
                r["metric"],
                _fmt(r["candidate"]),
                _fmt(r["baseline"]),
                _fmt(r["delta"], signed=True),
            )
        console.print(t)
    ct = Table(title="regression gate" + ("" if with_baseline else " (no baseline: absolute checks only)"))
    for col in ("check", "passed", "detail"):
        ct.add_column(col)
    for c in verdict.checks:
        ct.add_row(c.name, "yes" if c.passed else "NO", c.detail)
    console.print(ct)
    typer.echo(verdict.line())  # plain echo: the exact line CI greps for, no rich markup


def _fmt(v: Any, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.3f}" if signed else f"{v:.3f}" if isinstance(v, float) else str(v)


def _console(console_cls: Any) -> Any:
    # Not a terminal (CI, CliRunner): rich would squeeze wide tables into 80 columns.
    return console_cls() if sys.stdout.isatty() else console_cls(width=200)


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


models_app = typer.Typer(no_args_is_help=True, help="Model registry: list adapters, promote one, roll back.")
app.add_typer(models_app, name="models")


def _registry(config: Path | None) -> Registry:
    from server.registry import Registry

    return Registry(_settings(config).model.registry)


def _current_user() -> str | None:
    # From the passwd database, not the environment: the history should name who ran the command.
    import os
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


@models_app.command("list")
def models_list(config: ConfigOpt = None) -> None:
    """Registered adapters with their provenance, newest eval and gate verdict (* = active)."""
    from rich.console import Console
    from rich.table import Table

    from server.registry import RegistryError

    registry = _registry(config)
    try:
        entries, active = registry.list(), registry.active
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    console = _console(Console)
    if not entries:
        console.print(f"no adapters in {registry.adapters_dir}")
    else:
        t = Table(title=f"adapters in {registry.adapters_dir}")
        for col in (
            "name",
            "active",
            "base",
            "prompt",
            "taxonomy",
            "train rows",
            "category acc",
            "ECE (calibrated)",
            "gate",
            "created",
        ):
            t.add_column(col)
        for e in entries:
            t.add_row(e.name, "*" if e.name == active else "", *_manifest_columns(e.manifest))
        console.print(t)
    if active and active not in {e.name for e in entries}:
        typer.echo(f"warning: the active adapter {active!r} has no folder in {registry.adapters_dir}", err=True)
    elif not active:
        console.print("active: none (registry mode serves the bare base model)")


def _manifest_columns(m: dict[str, Any]) -> list[str]:
    if "_error" in m:
        return ["-"] * 6 + ["broken manifest", "-"]
    base = (m.get("base_model") or {}).get("path")
    taxonomy = m.get("taxonomy")
    if isinstance(taxonomy, dict):
        taxonomy = taxonomy.get("key") or taxonomy.get("name")
    training = m.get("training") or {}
    data = m.get("data") if isinstance(m.get("data"), dict) else {}
    eval_ = _newest_eval(m.get("evals") or {})
    values = [
        Path(str(base)).name if base else None,
        m.get("prompt_version"),
        taxonomy,
        _first(data, "train_rows") or _first(training, "train_rows", "rows", "examples"),
        eval_.get("category_accuracy") if eval_ else None,
        _calibrated_ece(m.get("calibration") or {}, "category"),
        (m.get("gate") or {}).get("verdict"),
        m.get("created_at") or m.get("created") or _first(training, "finished_at", "ended_at", "started_at"),
    ]
    return [_fmt(v) for v in values]


def _first(d: dict[str, Any], *keys: str) -> Any:
    return next((d[k] for k in keys if d.get(k) is not None), None)


def _newest_eval(evals: dict[str, Any]) -> dict[str, Any] | None:
    """By the timestamp the eval CLI stores; undated ones count as oldest (dict order among themselves)."""
    items = [v for v in evals.values() if isinstance(v, dict)]
    if not items:
        return None
    return max(enumerate(items), key=lambda iv: (str(iv[1].get("evaluated_at") or ""), iv[0]))[1]


def _calibrated_ece(cal: dict[str, Any], field: str) -> float | None:
    """The fine-tuning job owns the calibration block; accept its plausible shapes rather than guess one."""
    for key in ("ece_after", "after", "ece"):
        v = cal.get(key)
        if isinstance(v, dict):
            v = _first(v, field, f"{field}_ece", "after")
            if isinstance(v, dict):
                v = _first(v, "after", "ece")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(help="Adapter folder name under models/adapters")],
    force: Annotated[
        bool, typer.Option("--force", help="Promote although the gate verdict is not 'yes' (needs --reason)")
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the registry history)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate an adapter and make it the active one (servers in registry mode hot-swap to it)."""
    from server.registry import RegistryError

    registry = _registry(config)
    try:
        previous = registry.active
        registry.promote(name, force=force, reason=reason, user=_current_user())
        last = registry.history[-1] if registry.history else {}
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if previous == name:
        typer.echo(f"{name} is already active")
        return
    if last.get("forced"):
        typer.echo(
            f"warning: {name} promoted against its gate verdict (forced; reason: {last.get('reason')})", err=True
        )
    typer.echo(f"promoted {name} (previous: {previous or 'none'})")


@models_app.command("rollback")
def models_rollback(config: ConfigOpt = None) -> None:
    """Re-activate the adapter that was active before the latest promotion."""
    from server.registry import RegistryError

    registry = _registry(config)
    try:
        previous = registry.active
        target = registry.rollback(user=_current_user())
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"rolled back to {target} (was {previous or 'none'})")


def _load_plugins(target: typer.Typer) -> None:
    """Commands from other packages (finetune) via the `triage.commands` entry point, so `server` never
    imports them. A broken plugin costs its commands, not the whole CLI."""
    from importlib.metadata import entry_points

    try:
        eps = list(entry_points(group="triage.commands"))
    except Exception as exc:  # damaged package metadata
        print(f"warning: could not list triage plugins: {exc}", file=sys.stderr)
        return
    for ep in eps:
        try:
            ep.load()(target)
        except Exception as exc:
            print(f"warning: triage plugin {ep.name!r} ({ep.value}) failed to load: {exc}", file=sys.stderr)


_load_plugins(app)


if __name__ == "__main__":
    app()
