"""`triage serve`'s logging: log.format json gives one JSON object per line with the request id (uvicorn's
loggers included), text gives readable lines; request ids are validated as documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli.serve import uvicorn_options
from server.config import load_settings
from server.observability.logging import valid_request_id

ROOT = Path(__file__).resolve().parents[2]

# Run in a child: dictConfig replaces the root logger's handlers, which pytest's log capture relies on.
SCRIPT = """
import logging, sys
from server.config import LogSettings
from server.observability.logging import configure_logging, request_id_var
configure_logging(LogSettings(format=sys.argv[1]))
token = request_id_var.set("rid-42")
logging.getLogger("server.service").warning("stored %d results", 3, extra={"tickets": 3})
logging.getLogger("uvicorn.error").info("Application startup complete.")
request_id_var.reset(token)
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("server.x").exception("failed")
logging.getLogger("server.x").debug("not shown at INFO")
"""


def run(fmt: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stderr.splitlines()


def test_json_logs_carry_the_request_id_and_extra_fields() -> None:
    lines = run("json")
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(records) == 3, lines
    stored, startup, failed = records
    assert stored["message"] == "stored 3 results" and stored["request_id"] == "rid-42" and stored["tickets"] == 3
    assert stored["level"] == "WARNING" and stored["logger"] == "server.service" and stored["ts"].endswith("+00:00")
    assert startup["logger"] == "uvicorn.error" and startup["request_id"] == "rid-42"
    assert failed["request_id"] is None and "ValueError: boom" in failed["exception"]


def test_text_logs_are_lines_with_the_request_id() -> None:
    lines = run("text")
    assert any("WARNING server.service [rid-42] stored 3 results" in line for line in lines), lines
    assert not any(line.startswith("{") for line in lines)


def test_serve_passes_the_logging_config_to_uvicorn() -> None:
    options = uvicorn_options(load_settings(log={"format": "text", "level": "WARNING"}))
    assert options["access_log"] is False and options["log_level"] == "warning"
    assert options["log_config"]["formatters"]["default"] == {
        "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
    }
    assert "()" in uvicorn_options(load_settings())["log_config"]["formatters"]["default"]  # json by default


@pytest.mark.parametrize(
    ("value", "ok"),
    [("abc", True), ("a b", True), ("x" * 128, True), ("x" * 129, False), ("", False), (" a", False),
     ("a ", False), ("a\tb", False), ("é", False), ("a\nb", False), (None, False)],
)  # fmt: skip
def test_request_id_validation(value: str | None, ok: bool) -> None:
    assert valid_request_id(value) == (value if ok else None)
