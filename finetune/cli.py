"""`triage finetune` and `triage calibrate`, added to the server's CLI through the
`triage.commands` entry point (server never imports this package)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def finetune(
        config: Path | None = typer.Option(None, "--config", "-c", help="Fine-tuning YAML (finetune/configs/*.yaml)."),
        name: str | None = typer.Option(None, help="Adapter name: written to models/adapters/<name>/."),
        data: list[str] | None = typer.Option(
            None, "--data", help="Training CSV/JSONL file(s); replaces the config's list."
        ),
        base: str | None = typer.Option(None, help="Base model folder (default: the server's)."),
        epochs: float | None = typer.Option(None),
        lr: float | None = typer.Option(None),
        rank: int | None = typer.Option(None, "--rank", help="LoRA rank r."),
        alpha: int | None = typer.Option(None, help="LoRA alpha."),
        target_modules: str | None = typer.Option(None, help="Comma-separated module names, e.g. q_proj,v_proj."),
        batch_size: int | None = typer.Option(None),
        max_length: int | None = typer.Option(None),
        max_steps: int | None = typer.Option(None),
        max_rows: int | None = typer.Option(None, help="Use only this many rows (smoke runs)."),
        seed: int | None = typer.Option(None),
        target: str | None = typer.Option(None, help="full (the whole JSON answer) or labels."),
        feedback: bool | None = typer.Option(
            None, "--feedback/--no-feedback", help="Add reviewer corrections from the database."
        ),
        calibrate: bool | None = typer.Option(None, "--calibrate/--no-calibrate"),
        set_: list[str] | None = typer.Option(None, "--set", help="Any config key: --set train.warmup_ratio=0.1"),
        server_config: Path | None = typer.Option(
            None, "--server-config", help="Server settings YAML (database, prompt budgets)."
        ),
    ) -> None:
        """Train a LoRA adapter on labelled files + reviewer feedback; writes adapter + manifest."""
        from finetune.config import load_config
        from finetune.data import DataError
        from finetune.train import main
        from server.config import load_settings

        overrides = {
            "name": name,
            "data.files": data or None,
            "base": base,
            "train.epochs": epochs,
            "train.lr": lr,
            "lora.r": rank,
            "lora.alpha": alpha,
            "lora.target_modules": [m.strip() for m in target_modules.split(",")] if target_modules else None,
            "train.batch_size": batch_size,
            "train.max_length": max_length,
            "train.max_steps": max_steps,
            "data.max_rows": max_rows,
            "train.seed": seed,
            "data.target": target,
            "data.feedback": feedback,
            "calibrate": calibrate,
        }
        for item in set_ or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise typer.BadParameter(f"--set expects key=value, got {item!r}")
            overrides[key.strip()] = value
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        try:
            cfg = load_config(config, overrides)
            out = main(cfg, load_settings(server_config))
        except (DataError, ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"adapter written: {out}")

    @app.command("fit-head")
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
        from finetune.data import DataError
        from finetune.heads import add_head
        from finetune.train import load_data
        from server.config import load_settings
        from server.registry import read_manifest
        from server.taxonomy import load_taxonomy

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        overrides: dict[str, object] = {"head.enabled": True}
        for item in set_ or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise typer.BadParameter(f"--set expects key=value, got {item!r}")
            overrides[key.strip()] = value
        try:
            if config is None:
                recorded = read_manifest(adapter).get("config")
                if not isinstance(recorded, dict):
                    raise ValueError(f"{adapter}: the manifest records no config; pass --config")
                cfg = config_from_dict(recorded, overrides, f"{adapter}/manifest.json config")
            else:
                cfg = load_config(config, overrides)
            settings = load_settings(server_config)
            taxonomy = load_taxonomy(cfg.taxonomy)
            train, held, _ = load_data(cfg, settings, taxonomy)
            report = add_head(adapter, cfg, settings, taxonomy, train, held)
        except (DataError, ValueError, FileNotFoundError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(json.dumps(report, indent=2))

    @app.command()
    def calibrate(
        adapter: Path = typer.Argument(..., help="Adapter folder (with manifest.json and heldout.jsonl)."),
        server_config: Path | None = typer.Option(None, "--server-config"),
    ) -> None:
        """(Re)fit the per-field temperatures of an adapter on its held-out split."""
        import json

        from finetune.calibrate import calibrate as run
        from server.config import load_settings

        result = run(adapter, load_settings(server_config))
        typer.echo(json.dumps(result, indent=2))
