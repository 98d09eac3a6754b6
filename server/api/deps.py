"""Typed dependencies: handlers declare what they need; the app state built in the lifespan provides it.

`app.state` is untyped, so each accessor names the type of what the lifespan put there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.api.errors import ApiError
from server.auth.principal import Principal
from server.config import Role, Settings
from server.engines.base import Engine
from server.service import ClassificationService
from server.taxonomy import Taxonomy


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _service(request: Request) -> ClassificationService:
    service: ClassificationService = request.app.state.service
    return service


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _taxonomy(request: Request) -> Taxonomy:
    taxonomy: Taxonomy = request.app.state.taxonomy
    return taxonomy


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[ClassificationService, Depends(_service)]
EngineDep = Annotated[Engine, Depends(_engine)]
TaxonomyDep = Annotated[Taxonomy, Depends(_taxonomy)]
SessionDep = Annotated[Session, Depends(_session)]


class Requires:
    """A route's required role. The auth middleware (server.api.auth) authenticates every request to a
    route carrying one of these before the body is read (401 / 403 / 429 come first) and puts the
    principal on `request.state`; this dependency hands it to the handler and checks the role again,
    failing closed when no middleware ran."""

    def __init__(self, role: Role) -> None:
        self.role: Role = role

    def __call__(self, request: Request) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:
            raise ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer KEY")
        if not principal.allows(self.role):
            raise ApiError(
                403, "forbidden", f"this key's role {principal.role!r} may not do this (needs {self.role!r})"
            )
        return principal


CLASSIFY = Requires("classify")
REVIEW = Requires("review")
ADMIN = Requires("admin")
ClassifierDep = Annotated[Principal, Depends(CLASSIFY)]
ReviewerDep = Annotated[Principal, Depends(REVIEW)]
AdminDep = Annotated[Principal, Depends(ADMIN)]
