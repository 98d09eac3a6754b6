"""The outermost ASGI middleware: the request id (X-Request-ID in, out and on every log line), the route
template the request is for (the `endpoint` label, also read by the service for its per-ticket metrics),
the HTTP metrics and one access log line per request.

Outermost, so auth refusals (401/403/429) and oversized-body refusals carry the id and are counted too."""

from __future__ import annotations

import contextvars
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.observability import metrics
from server.observability.logging import REQUEST_ID_HEADER, new_request_id, request_id_var, valid_request_id

access_log = logging.getLogger("triage.access")

UNMATCHED = "unmatched"  # a path no route serves: one label for all of them (scanners must not add series)
INTERNAL = "internal"  # work outside an HTTP request (CLI, periodic tasks)

endpoint_var: contextvars.ContextVar[str] = contextvars.ContextVar("triage_endpoint", default=INTERNAL)


def current_endpoint() -> str:
    return endpoint_var.get()


@dataclass(frozen=True)
class _Route:
    path_regex: re.Pattern[str]
    path: str


def _routes(app: FastAPI) -> list[_Route]:
    try:  # FastAPI >= 0.16x keeps included routers lazily; the contexts carry the full paths
        from fastapi.routing import iter_route_contexts

        contexts: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # pragma: no cover - older FastAPI
        contexts = list(app.routes)
    table: list[_Route] = []
    for route in contexts:
        regex, path = getattr(route, "path_regex", None), getattr(route, "path", None)
        original = getattr(route, "original_route", route)
        if regex is not None and path and (isinstance(original, APIRoute) or path in ("/docs", "/openapi.json")):
            table.append(_Route(regex, path))
    return table


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, *, api: FastAPI, access: bool = True) -> None:
        self.app, self.api, self.access = app, api, access
        self._table: list[_Route] | None = None
        self._size = 0

    def endpoint_for(self, scope: Scope) -> str:
        routes = self.api.routes
        if self._table is None or self._size != len(routes):  # routers are included after install
            self._table, self._size = _routes(self.api), len(routes)
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        for route in self._table:
            if route.path_regex.match(path):
                return route.path
        return UNMATCHED

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                sent = value.decode("latin-1")
                break
        rid = valid_request_id(sent) or new_request_id()
        endpoint = self.endpoint_for(scope)
        rid_token, endpoint_token = request_id_var.set(rid), endpoint_var.set(endpoint)
        status = 500  # what the client gets when the app raises before answering
        header = (REQUEST_ID_HEADER.lower().encode(), rid.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != header[0]]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"]
            metrics.observe_http(endpoint, method, status, seconds)
            if self.access:
                access_log.info(
                    "%s %s %d %.1f ms",
                    method,
                    scope["path"],
                    status,
                    seconds * 1000,
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "endpoint": endpoint,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 1),
                    },
                )
            request_id_var.reset(rid_token)
            endpoint_var.reset(endpoint_token)


def install_observability(app: FastAPI, *, access_log: bool = True) -> None:
    """Add the middleware; call it after every other middleware (auth included) so it runs first."""
    app.add_middleware(ObservabilityMiddleware, api=app, access=access_log)


__all__ = ["ObservabilityMiddleware", "current_endpoint", "endpoint_var", "install_observability"]
