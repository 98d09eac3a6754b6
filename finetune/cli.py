"""`triage finetune`, `triage fit-head`, `triage calibrate`, `triage heldout` and `triage retrain`, added to the server's CLI through the
`triage.commands` entry point (server never imports this package).

The options of `triage finetune` that set a config key (`--rank`, `--epochs`, ...) are generated from the
fields of finetune.config.FinetuneConfig marked with a `Flag`: their type and help come from the model,
and their values are validated by it like the YAML file's and `--set`'s.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from finetune.config import flags, scalar_type


def register(app: typer.Typer) -> None:
    app.command("finetune")(_finetune_command())
    app.command("fit-head")(fit_head)
    app.command("calibrate")(calibrate)
    app.command("heldout")(heldout)
    app.command("retrain")(retrain)


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """`--set key=value` items as dotted overrides (values still text: the config reads them by type)."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set expects key=value, got {item!r}")
        overrides[key.strip()] = value
    return overrides


def _flag_parameters() -> list[inspect.Parameter]:
    params = []
    for _, info, flag in flags():
        kind = str if flag.comma_separated else scalar_type(info.annotation)
        params.append(
            inspect.Parameter(
                flag.param,
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(None, flag.option, help=info.description),
                annotation=kind | None,
            )
        )
    return params


def _flag_overrides(values: dict[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for dotted, _, flag in flags():
        value = values.get(flag.param)
        if flag.comma_separated and isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if value is not None and value != []:  # typer gives an unset multiple option as an empty list
            overrides[dotted] = value
    return overrides


def _finetune_command() -> Callable[..., None]:
    def finetune(
        *,
        config: Path | None,
        set_: list[str] | None,
        server_config: Path | None,
        **values: Any,
    ) -> None:
        """Train a LoRA adapter on labelled files + reviewer feedback; writes adapter + manifest."""
        from finetune.config import load_config
        from finetune.data import DataError
        from finetune.train import main
        from server.config import load_settings

        overrides = {**_flag_overrides(values), **parse_sets(set_)}
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            cfg = load_config(config, overrides)
            out = main(cfg, load_settings(server_config))
        except (DataError, ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"adapter written: {out}")

    option = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter(
            "config",
            option,
            default=typer.Option(None, "--config", "-c", help="Fine-tuning YAML (finetune/configs/*.yaml)."),
            annotation=Path | None,
        ),
        *_flag_parameters(),
        inspect.Parameter(
            "set_",
            option,
            default=typer.Option(None, "--set", help="Any config key: --set train.warmup_ratio=0.1"),
            annotation=list[str] | None,
        ),
        inspect.Parameter(
            "server_config",
            option,
            default=typer.Option(None, "--server-config", help="Server settings YAML (database, prompt budgets)."),
            annotation=Path | None,
        ),
    ]
    # typer reads the options from the signature (and the types from __annotations__).
    finetune.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    finetune.__annotations__ = {p.name: p.annotation for p in params} | {"return": None}
    return finetune


def fit_head(
    adapter: Path = typer.Argument(..., help="Adapter folder (with manifest.json)."),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Fine-tuning YAML whose data and head settings to use (default: the config recorded in the manifest).",
    ),
    set_: list[str] | None = typer.Option(None, "--set", help="Any config key: --set head.hidden_c=0.1"),
    server_config: Path | None = typer.Option(None, "--server-config"),
) -> None:
    """Fit (or refit) a label head on an existing adapter: its hidden states + TF-IDF, calibrated on the held-out split."""
    import json

    from finetune.config import config_from_dict, load_config
    from finetune.data import DataError, load_data
    from finetune.heads import add_head
    from server.config import load_settings
    from server.registry import read_manifest
    from server.taxonomy import load_taxonomy

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {"head.enabled": True, **parse_sets(set_)}
    try:
        if config is None:
            recorded = read_manifest(adapter).to_json().get("config")
            if not isinstance(recorded, dict):
                raise ValueError(f"{adapter}: the manifest records no config; pass --config")
            cfg = config_from_dict(recorded, overrides, f"{adapter}/manifest.json config")
        else:
            cfg = load_config(config, overrides)
        settings = load_settings(server_config)
        taxonomy = load_taxonomy(cfg.taxonomy)
        data = load_data(cfg, settings, taxonomy)
        report = add_head(adapter, cfg, settings, taxonomy, data.train, data.held)
    except (DataError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(report, indent=2))


def calibrate(
    adapter: Path = typer.Argument(..., help="Adapter folder (with manifest.json and heldout.json)."),
    server_config: Path | None = typer.Option(None, "--server-config"),
    engine: str | None = typer.Option(
        None, "--engine", help="embedded | vllm (default: engine.kind from the settings)"
    ),
) -> None:
    """(Re)fit the per-field temperatures of an adapter on its held-out split."""
    import json

    from finetune.calibrate import calibrate as run
    from server.cli.common import with_engine
    from server.config import load_settings

    settings = load_settings(server_config)
    if engine is not None:
        settings = with_engine(settings, engine)
    result = run(adapter, settings)
    typer.echo(json.dumps(result, indent=2))


def heldout(
    adapter: Path = typer.Argument(..., help="Adapter folder."),
    convert: bool = typer.Option(
        False, "--convert", help="Rewrite an old heldout.jsonl (ticket text) as heldout.json (ids + hashes)."
    ),
    server_config: Path | None = typer.Option(None, "--server-config", help="Settings of the feedback store."),
) -> None:
    """How much of an adapter's held-out split still reads back from its sources (rows, resolved, missing,
    changed); with --convert, first store an old split by reference and delete its text."""
    import json

    from finetune.data import DataError
    from finetune.heldout import convert as run_convert
    from finetune.heldout import read_heldout
    from server.config import load_settings

    settings = load_settings(server_config)
    try:
        if convert:
            typer.echo(json.dumps({"converted": run_convert(adapter, settings)}))
        typer.echo(json.dumps(read_heldout(adapter, settings).summary()))
    except (DataError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def retrain(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Retrain YAML (if_new, promote, finetune overrides, eval_data, rules, ...)."
    ),
    if_new: int | None = typer.Option(
        None, "--if-new", help="Only when at least N new corrections arrived since the active adapter's snapshot."
    ),
    promote: bool | None = typer.Option(
        None, "--promote/--no-promote", help="Promote the candidate when the gate says yes (default: off)."
    ),
    name: str | None = typer.Option(None, "--name", help="Candidate name (default: <active>-retrain-<UTC time>)."),
    start: str | None = typer.Option(None, "--start", help="active (continue the served LoRA, default) or fresh."),
    base_config: Path | None = typer.Option(
        None, "--base-config", help="Fine-tuning YAML instead of the config recorded in the active manifest."
    ),
    eval_data: Path | None = typer.Option(None, "--eval-data", help="Gate data (default: data/<taxonomy>/golden.csv)."),
    rules: Path | None = typer.Option(None, "--rules", help="Gate rules YAML (default: built-in rules)."),
    report_dir: Path | None = typer.Option(None, "--report-dir", help="Gate reports (default: var/retrain)."),
    set_: list[str] | None = typer.Option(
        None, "--set", help="A fine-tuning config key for the candidate: --set train.max_steps=200"
    ),
    server_config: Path | None = typer.Option(
        None, "--server-config", help="Server settings YAML (database, registry, data key)."
    ),
    as_json: bool = typer.Option(False, "--json", help="End with the run's audit detail as one JSON line."),
) -> None:
    """Fine-tune a candidate on the feedback since the active adapter's snapshot plus its base data, calibrate,
    gate it against the active adapter, promote only on "yes" with --promote; audited as `retrain`.

    Exit 0: skipped, kept or promoted; 1: the run failed (audited); 2: it could not start (bad config)."""
    import json

    from finetune.config import ConfigError
    from finetune.retrain import RetrainError, load_retrain_config
    from finetune.retrain import run as run_retrain
    from server.config import load_settings

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    flags: dict[str, Any] = {
        "if_new": if_new,
        "promote": promote,
        "name": name,
        "start": start,
        "base_config": str(base_config) if base_config else None,
        "eval_data": str(eval_data) if eval_data else None,
        "rules": str(rules) if rules else None,
        "report_dir": str(report_dir) if report_dir else None,
        "finetune": parse_sets(set_) or None,
    }
    try:
        cfg = load_retrain_config(config, flags)
        result = run_retrain(
            cfg, load_settings(server_config), progress=lambda m: typer.echo(f"[retrain] {m}", err=True), user=_user()
        )
    except (RetrainError, ConfigError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{result.verdict}: {result.message}")
    if as_json:
        typer.echo(json.dumps(result.detail()))
    if result.verdict == "failed":
        raise typer.Exit(1)


def _user() -> str | None:
    # From the passwd database, as `triage models promote` records it in the registry history.
    import os
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None
