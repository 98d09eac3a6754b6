"""`python -m server.cli` (the tests run the CLI this way when no `triage` script is installed)."""

from __future__ import annotations

from server.cli import app

app()
