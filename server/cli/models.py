"""`triage models list|promote|rollback|merge`: the adapter registry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from server.cli.audit import record_cli_event
from server.cli.common import ConfigOpt, console, fail, fmt, load

if TYPE_CHECKING:
    from server.registry import AdapterEntry, Registry

models_app = typer.Typer(
    no_args_is_help=True, help="Model registry: list adapters, promote one, roll back, merge one for serving."
)

_COLUMNS = (
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
)


def _registry(config: Path | None) -> Registry:
    from server.registry import open_registry

    return open_registry(load(config).model)


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
    from rich.table import Table

    from server.registry import RegistryError

    registry = _registry(config)
    try:
        entries, active = registry.list(), registry.active
    except RegistryError as exc:
        fail(exc, 1)
    out = console()
    if not entries:
        out.print(f"no adapters in {registry.adapters_dir}")
    else:
        t = Table(title=f"adapters in {registry.adapters_dir}")
        for col in _COLUMNS:
            t.add_column(col)
        for e in entries:
            t.add_row(e.name, "*" if e.name == active else "", *_manifest_columns(e))
        out.print(t)
    if active and active not in {e.name for e in entries}:
        typer.echo(f"warning: the active adapter {active!r} has no folder in {registry.adapters_dir}", err=True)
    elif not active:
        out.print("active: none (registry mode serves the bare base model)")


def _manifest_columns(entry: AdapterEntry) -> list[str]:
    if entry.error is not None:
        return ["-"] * 6 + ["broken manifest", "-"]
    m = entry.manifest
    base = m.base_model.path if m.base_model else None
    taxonomy = m.taxonomy
    if isinstance(taxonomy, dict):
        taxonomy = taxonomy.get("key") or taxonomy.get("name")
    training = m.get("training") or {}
    data = m.get("data") if isinstance(m.get("data"), dict) else {}
    newest = _newest_eval(m.evals or {})
    values = [
        Path(str(base)).name if base else None,
        m.prompt_version,
        taxonomy,
        _first(data, "train_rows") or _first(training, "train_rows", "rows", "examples"),
        newest.get("category_accuracy") if newest else None,
        _calibrated_ece(m.calibration.to_json() if m.calibration else {}, "category"),
        m.gate.verdict if m.gate else None,
        m.created_at or m.get("created") or _first(training, "finished_at", "ended_at", "started_at"),
    ]
    return [fmt(v) for v in values]


def _first(d: dict[str, Any], *keys: str) -> Any:
    return next((d[k] for k in keys if d.get(k) is not None), None)


def _newest_eval(evals: dict[str, Any]) -> Any:
    """By the timestamp the eval CLI stores; undated ones count as oldest (dict order among themselves)."""
    items = list(evals.values())
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
        fail(exc, 1)
    if previous == name:
        typer.echo(f"{name} is already active")
        return
    if last.get("forced"):
        typer.echo(
            f"warning: {name} promoted against its gate verdict (forced; reason: {last.get('reason')})", err=True
        )
    typer.echo(f"promoted {name} (previous: {previous or 'none'})")
    record_cli_event(
        load(config),
        "promote",
        target=name,
        detail={"previous": previous, "forced": bool(last.get("forced")), "reason": reason},
    )


@models_app.command("rollback")
def models_rollback(config: ConfigOpt = None) -> None:
    """Re-activate the adapter that was active before the latest promotion."""
    from server.registry import RegistryError

    registry = _registry(config)
    try:
        previous = registry.active
        target = registry.rollback(user=_current_user())
    except RegistryError as exc:
        fail(exc, 1)
    typer.echo(f"rolled back to {target} (was {previous or 'none'})")
    record_cli_event(load(config), "rollback", target=target, detail={"previous": previous})


@models_app.command("merge")
def models_merge(
    name: Annotated[str, typer.Argument(help="Adapter folder name under models/adapters")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: models/merged/NAME, gitignored)")
    ] = None,
    dtype: Annotated[
        str | None,
        typer.Option("--dtype", help="float32, bfloat16 or float16 (default: model.dtype; auto = bfloat16, as served)"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Merge an adapter into its base model for production serving (safetensors + tokenizer + manifest)."""
    from server.engines.merge import DTYPES, merge_adapter
    from server.engines.vllm.args import vllm_dtype
    from server.registry import RegistryError

    settings = load(config)
    chosen = dtype or vllm_dtype(settings.model.dtype)
    if chosen not in DTYPES:
        fail(f"--dtype {chosen!r} is not one of {', '.join(DTYPES)}", 2)
    try:
        result = merge_adapter(settings, name, out=out, dtype=chosen)
    except RegistryError as exc:
        fail(exc, 1)
    typer.echo(f"merged {name} into {result.manifest.base_model.path} ({chosen}): {result.out}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
