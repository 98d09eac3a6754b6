"""Who is asking, before any work is done: API keys, roles and per-key rate limits.

An ASGI middleware (outermost, so it runs before the body is read or its size checked) finds the route a
request is for; when that route's dependencies include a `Requires(role)` (server.api.deps) it answers

- 401 (`WWW-Authenticate: Bearer`) for a missing, malformed, unknown, forged or revoked key,
- 403 for a key whose role may not use the route,
- 429 with `Retry-After` for a key over its rate limit,

and otherwise puts the `Principal` on `request.state.principal`. Routes without a `Requires` (/health,
/ready, /docs, /openapi.json) stay open.

Without keys (`settings.auth_required` false, loopback only) a request without a key acts as ANONYMOUS,
but a request that presents a key is still checked: a bad key is a 401, never a silent downgrade.

Revocation takes effect at once: the key's row is read on every request (one SELECT on the unique prefix).
Only the scrypt check is remembered, keyed by a sha256 of the presented key and the stored hash it was
checked against, so a valid key costs no scrypt after its first request. The SELECT, scrypt and the rate
limit storage (Redis) run in the threadpool, never on the event loop."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from server.api.deps import Requires
from server.api.errors import error_response, retry_after_header
from server.auth.keys import key_digest, parse_key, verify_secret
from server.auth.principal import ANONYMOUS, Principal
from server.config import AuthSettings, CacheSettings, Role, Settings
from server.observability import metrics
from server.store.keys import find_by_prefix

__all__ = [
    "AuthMiddleware",
    "Authenticator",
    "RateLimits",
    "install_auth",
    "required_roles",
    "route_table",
    "verify_secret",  # looked up here at call time: tests count the scrypt checks through it
]

log = logging.getLogger(__name__)

# Remembered scrypt outcomes (sha256 of a presented key -> the stored hash it was checked against).
VERIFIED_CACHE_SIZE = 4096
# At most this many scrypt checks at once: each takes 128*n*r bytes (16 MiB at the default cost), and a
# flood of forged keys must not take every thread or all memory.
SCRYPT_SLOTS = 2
# A rate-limit store that fails (Redis down) lets requests through: logged at most once per this many seconds.
STORAGE_WARN_EVERY_S = 60.0


def _roles_in(dependant: Any, roles: list[Role]) -> None:
    stack = [dependant] if dependant is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current.call, Requires) and current.call.role not in roles:
            roles.append(current.call.role)
        stack.extend(current.dependencies)


def required_roles(route: Any) -> tuple[Role, ...]:
    """The roles a route requires: each `Requires` in its dependency tree or among the dependencies its
    router was included with (a `RouteContext` of `fastapi.routing.iter_route_contexts`, or an APIRoute); () = open."""
    roles: list[Role] = []
    original = getattr(route, "original_route", route)
    _roles_in(getattr(original, "dependant", None), roles)
    for depends in getattr(route, "dependencies", None) or ():
        call = getattr(depends, "dependency", None)
        if isinstance(call, Requires) and call.role not in roles:
            roles.append(call.role)
    return tuple(roles)


@dataclass(frozen=True)
class RouteRoles:
    """What the middleware needs of a route: its full path pattern, methods and roles."""

    path_regex: re.Pattern[str]
    methods: frozenset[str]
    roles: tuple[Role, ...]


def route_table(app: FastAPI) -> list[RouteRoles]:
    """Every API route of `app` with its full path (prefixes of included routers applied) and roles."""
    table: list[RouteRoles] = []
    for route in _route_contexts(app):
        original = getattr(route, "original_route", route)
        if not isinstance(original, APIRoute):
            continue  # /docs, /openapi.json, mounts: no dependencies, open
        methods = frozenset(getattr(route, "methods", None) or original.methods or ())
        table.append(RouteRoles(route.path_regex, methods, required_roles(route)))
    return table


def _route_contexts(app: FastAPI) -> list[Any]:
    try:  # FastAPI >= 0.16x keeps included routers lazily; their routes' full paths are in the contexts
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older FastAPI: app.routes are the full routes
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


@dataclass(frozen=True)
class Refusal:
    status: int
    error: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def _unauthorized(message: str, *, invalid: bool) -> Refusal:
    challenge = 'Bearer realm="triage", error="invalid_token"' if invalid else 'Bearer realm="triage"'
    return Refusal(401, "unauthorized", message, {"WWW-Authenticate": challenge})


MISSING = _unauthorized("missing API key: send Authorization: Bearer KEY", invalid=False)
INVALID = _unauthorized("invalid API key", invalid=True)


class RateLimits:
    """Per-key request limits (`auth.rate_limit`, `auth.role_rate_limits`) in a `limits` moving window, stored in
    `auth.rate_limit_storage`, else Redis at cache.redis_url when cache.backend is redis (every replica shares
    the counts), else process memory. Keys are counted by their public prefix, anonymous callers by address."""

    def __init__(self, auth: AuthSettings, cache: CacheSettings):
        uri = auth.rate_limit_storage or (cache.redis_url if cache.backend == "redis" else "memory://")
        self.uri = uri
        self.default: RateLimitItem | None = parse(auth.rate_limit) if auth.rate_limit else None
        self.per_role: dict[str, RateLimitItem] = {role: parse(text) for role, text in auth.role_rate_limits.items()}
        self.storage: Storage | None = None
        if self.default is not None or self.per_role:
            options: dict[str, Any] = {}
            if uri.startswith(("redis", "rediss")):
                # A stalled Redis must not stall every request: fail fast, then let the request through.
                options = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0, "key_prefix": "triage-ratelimit"}
            storage = storage_from_string(uri, **options)
            if not isinstance(storage, Storage):  # the limiter runs in the threadpool: a sync storage
                raise ValueError(f"auth.rate_limit_storage {uri!r}: use a synchronous storage URI (no async+)")
            self.storage = storage
        self.limiter = MovingWindowRateLimiter(self.storage) if self.storage is not None else None
        self._warned_at = 0.0

    def item_for(self, principal: Principal) -> RateLimitItem | None:
        return self.per_role.get(principal.role, self.default)

    def hit(self, principal: Principal, who: tuple[str, str]) -> float | None:
        """Count one request of `who` (("key", prefix) or ("addr", host)); None when it is allowed, else the
        seconds until the window lets one through."""
        item = self.item_for(principal)
        if item is None or self.limiter is None:
            return None
        try:
            if self.limiter.hit(item, *who):
                return None
            stats = self.limiter.get_window_stats(item, *who)
        except Exception as exc:  # noqa: BLE001 - the limit store is an aid, not a dependency
            now = time.monotonic()
            if now - self._warned_at > STORAGE_WARN_EVERY_S:
                self._warned_at = now
                log.warning("rate limit storage %s failed (%s): requests are not limited", self.uri, exc)
            return None
        return max(stats.reset_time - time.time(), 1.0)


class Authenticator:
    """Decides one request: the principal it acts as, or why it is refused. Thread-safe; call it in the threadpool."""

    def __init__(self, settings: Settings):
        self.required = settings.auth_required
        self.limits = RateLimits(settings.auth, settings.cache)
        self._verified: OrderedDict[str, tuple[str, bool]] = OrderedDict()
        self._lock = threading.Lock()
        self._scrypt = threading.BoundedSemaphore(SCRYPT_SLOTS)

    def _remembered(self, digest: str, secret_hash: str) -> bool | None:
        with self._lock:
            entry = self._verified.get(digest)
            if entry is None or entry[0] != secret_hash:
                return None
            self._verified.move_to_end(digest)
            return entry[1]

    def _remember(self, digest: str, secret_hash: str, ok: bool) -> None:
        with self._lock:
            self._verified[digest] = (secret_hash, ok)
            self._verified.move_to_end(digest)
            while len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)

    def principal_for(self, sessions: sessionmaker[Session], authorization: str | None) -> Principal | Refusal:
        if not authorization:
            return ANONYMOUS if not self.required else MISSING
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized("the Authorization header must be: Bearer KEY", invalid=True)
        token = token.strip()
        parsed = parse_key(token)
        if parsed is None:
            return INVALID
        with sessions() as session:
            record = find_by_prefix(session, parsed.prefix)
        if record is None:
            return INVALID
        digest = key_digest(token)
        ok = self._remembered(digest, record.secret_hash)
        if ok is None:
            with self._scrypt:
                ok = verify_secret(parsed.secret, record.secret_hash)
            self._remember(digest, record.secret_hash, ok)
        if not ok:
            return INVALID
        if record.revoked:
            log.warning("refused revoked API key %r (id %d)", record.name, record.id)
            return _unauthorized("this API key was revoked", invalid=True)
        return Principal(record.name, record.role, key_id=record.id, scope=record.scope)

    def decide(
        self,
        sessions: sessionmaker[Session] | None,
        authorization: str | None,
        roles: Iterable[Role],
        client: str,
    ) -> Principal | Refusal:
        if sessions is None:
            if authorization or self.required:
                return Refusal(503, "starting", "the server is starting; retry shortly", {"Retry-After": "1"})
            principal: Principal | Refusal = ANONYMOUS
        else:
            try:
                principal = self.principal_for(sessions, authorization)
            except SQLAlchemyError as exc:
                return Refusal(
                    503,
                    "database_unavailable",
                    f"database unavailable: {type(exc).__name__}",
                    {"Retry-After": "5"},
                )
        if isinstance(principal, Refusal):
            return principal
        for role in roles:
            if not principal.allows(role):
                return Refusal(403, "forbidden", f"this key's role {principal.role!r} may not do this (needs {role!r})")
        # A key is counted by its random public prefix: unique even across deployments sharing one Redis.
        parsed = parse_key(authorization.partition(" ")[2]) if authorization and principal.key_id is not None else None
        retry_s = self.limits.hit(principal, ("key", parsed.prefix) if parsed else ("addr", client))
        if retry_s is not None:
            return Refusal(
                429,
                "rate_limited",
                f"this key is over its rate limit; retry in {retry_after_header(retry_s)} s",
                {"Retry-After": retry_after_header(retry_s)},
            )
        return principal


class AuthMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): it never touches the body, so a refused request is never read."""

    def __init__(self, app: ASGIApp, *, api: FastAPI, authenticator: Authenticator):
        self.app, self.api, self.auth = app, api, authenticator
        self._table: list[RouteRoles] | None = None
        self._table_size = 0

    def roles_for(self, scope: Scope) -> tuple[Role, ...]:
        """The roles of the route this request is for. A path whose route answers another method (405) still
        asks for the route's roles, so a caller without a key learns nothing about it."""
        routes = self.api.routes
        if self._table is None or self._table_size != len(routes):  # routes are included after install
            self._table, self._table_size = route_table(self.api), len(routes)
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):  # mounted under a prefix: routes match the rest (as Starlette does)
            path = path[len(root) :]
        partial: tuple[Role, ...] = ()
        for entry in self._table:
            if entry.path_regex.match(path) is None:
                continue
            if scope["method"] in entry.methods or (scope["method"] == "HEAD" and "GET" in entry.methods):
                return entry.roles
            partial = partial or entry.roles
        return partial

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        roles = self.roles_for(scope)
        if not roles:
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        client = scope.get("client")
        sessions = getattr(self.api.state, "sessions", None)
        decision = await run_in_threadpool(
            self.auth.decide, sessions, authorization, roles, str(client[0]) if client else "unknown"
        )
        if isinstance(decision, Refusal):
            metrics.auth_refused(decision.error)
            response = error_response(decision.status, decision.error, decision.message, headers=decision.headers)
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = decision
        await self.app(scope, receive, send)


def install_auth(app: FastAPI, settings: Settings) -> Authenticator:
    """Add the middleware; call it after every other middleware so it runs first."""
    authenticator = Authenticator(settings)
    app.add_middleware(AuthMiddleware, api=app, authenticator=authenticator)
    return authenticator
