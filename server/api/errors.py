"""Every error leaves the API as JSON `{"error", "message", "details"?}` with a 4xx/5xx that says what happened."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server.api.protocol import ErrorOut
from server.engines.base import EngineOverloaded, EngineUnavailable
from server.service import StoreUnavailable

log = logging.getLogger(__name__)

# What each error status means, in the OpenAPI document of every operation that can answer it.
ERROR_MEANINGS: dict[int, str] = {
    400: "The body is not UTF-8 encoded JSON.",
    401: "No API key, or not a valid one (unknown, forged or revoked): send `Authorization: Bearer KEY` "
    "(`triage keys create`). Checked before the body is read.",
    403: "This API key's role may not do this (classify: classify and batch; review: feedback, the review queue "
    "and reading results; admin: everything).",
    404: "No classification was stored for this ticket_id (or none that this key's scope may see).",
    413: "The request body, a ticket or a batch is over the configured size limits.",
    422: "The request is well-formed JSON but invalid (the message says which field and why).",
    429: "Too many requests: this API key is over its rate limit, or the classification queue is full; retry "
    "after the Retry-After header's seconds.",
    502: "The engine failed on this ticket.",
    503: "The model or the database is unavailable; retry after the Retry-After header's seconds.",
    504: "The deadline passed before the engine answered.",
}


def error_responses(*statuses: int, meanings: Mapping[int, str] = ERROR_MEANINGS) -> dict[int | str, dict[str, object]]:
    """The `responses=` of a route: these statuses, each with the error body and its meaning (`meanings`: a
    router's own wording of them)."""
    return {status: {"model": ErrorOut, "description": meanings[status]} for status in statuses}


def retry_after_header(seconds: float) -> str:
    """Retry-After in whole seconds, rounded up and at least 1 (0 would invite an immediate retry)."""
    return str(max(1, math.ceil(seconds)))


class ApiError(Exception):
    def __init__(
        self, status: int, error: str, message: str, details: object = None, headers: dict[str, str] | None = None
    ):
        self.status, self.error, self.message, self.details, self.headers = status, error, message, details, headers


def database_unavailable(exc: Exception) -> ApiError:
    """The 503 of a route whose own store read or write failed (retry: the database may be back soon)."""
    return ApiError(
        503, "database_unavailable", f"database unavailable: {type(exc).__name__}", headers={"Retry-After": "5"}
    )


def error_response(
    status: int, error: str, message: str, details: object = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": error, "message": message}
    if details is not None:
        body["details"] = jsonable_encoder(details)
    return JSONResponse(status_code=status, content=body, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "request body is not valid JSON"
    if any("utf-8" in str(e.get("msg", "")).lower() or e.get("type") == "unicode_decode_error" for e in errors):
        return 400, "request body is not valid UTF-8"
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg')}")
    return 422, "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.error, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(exc)
        details = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()[:20]]
        return error_response(status, "invalid_request", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 400 and "parsing the body" in message:
            message = "request body could not be parsed: it must be UTF-8 encoded JSON"
        return error_response(exc.status_code, "http_error", message, headers=getattr(exc, "headers", None))

    @app.exception_handler(EngineOverloaded)
    async def _overloaded(_: Request, exc: EngineOverloaded) -> JSONResponse:
        return error_response(
            429,
            "overloaded",
            "the classification queue is full; retry later",
            headers={"Retry-After": retry_after_header(exc.retry_after_s)},
        )

    @app.exception_handler(EngineUnavailable)
    async def _unavailable(_: Request, exc: EngineUnavailable) -> JSONResponse:
        return error_response(503, "engine_unavailable", str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(StoreUnavailable)
    async def _store(_: Request, exc: StoreUnavailable) -> JSONResponse:
        return error_response(503, "database_unavailable", str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", f"{type(exc).__name__}: the error was logged")
