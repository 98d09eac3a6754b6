"""Structured logs: one JSON object per line with the request id of the request that logged it.

The request id comes from the caller's `X-Request-ID` header when it is usable (1-128 printable ASCII
characters), else a new one is made; it is returned in `X-Request-ID` on every response (refusals
included) and put on every log record of that request (`request_id`), uvicorn's included.

`triage serve` applies `logging_config(settings.log)` (uvicorn's `log_config`): `log.format` json (the
default: one parseable object per line for a log shipper) or text (for a terminal).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from server.config import LogSettings

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID = 128
# Printable ASCII, space excluded at the ends by the pattern: a request id goes into headers and log lines as is.
_REQUEST_ID = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]{0,126}[\x21-\x7e])?")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("triage_request_id", default=None)

# LogRecord attributes that are not `extra` fields, and uvicorn's color_message (the message again, with ANSI colours).
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "request_id",
    "color_message",
}


def valid_request_id(value: str | None) -> str | None:
    """`value` when it can be used as a request id as sent, else None."""
    if value is None or len(value) > MAX_REQUEST_ID:
        return None
    return value if _REQUEST_ID.fullmatch(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, request_id, any `extra` fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id_var.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(out, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def logging_config(settings: LogSettings) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the server (uvicorn's `log_config`): every logger, uvicorn's too,
    through one handler on stderr in the configured format, with the request id on every record."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if settings.format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": settings.level},
        "loggers": {
            # uvicorn's own handlers replaced by the root's; its access log is off (ours has the request id).
            name: {"handlers": [], "propagate": True, "level": settings.level}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure_logging(settings: LogSettings) -> None:
    import logging.config

    logging.config.dictConfig(logging_config(settings))


__all__ = [
    "REQUEST_ID_HEADER",
    "JsonFormatter",
    "RequestIdFilter",
    "configure_logging",
    "current_request_id",
    "logging_config",
    "new_request_id",
    "request_id_var",
    "valid_request_id",
]
