"""`triage` command line: serve, classify, eval, setup, models, and the commands plugins add.

One module per command group; each registers its commands on `app`, in the order `--help` lists them.
Heavy imports happen inside the commands, so `triage --help` stays fast."""

from __future__ import annotations

import typer

from server.cli import (
    ab,
    audit,
    batch,
    classify,
    evaluate,
    keys,
    migrate,
    models,
    report,
    retention,
    serve,
    setup,
    vllm_args,
)
from server.cli.plugins import load_plugins

app = typer.Typer(add_completion=False, no_args_is_help=True, help="triage: support-ticket classification server")

serve.register(app)
classify.register(app)
evaluate.register(app)
setup.register(app)
models.register(app)
vllm_args.register(app)
keys.register(app)
audit.register(app)
retention.register(app)
report.register(app)
ab.register(app)
migrate.register(app)
batch.register(app)
load_plugins(app)

__all__ = ["app", "load_plugins"]
