"""Commands from other packages (finetune) via the `triage.commands` entry point, so `server` never
imports them: each entry point is a function that registers its commands on the app."""

from __future__ import annotations

import sys

import typer


def load_plugins(target: typer.Typer) -> None:
    """A broken plugin costs its commands, not the whole CLI."""
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
