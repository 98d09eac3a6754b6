"""Typed dependencies: handlers declare what they need; the app state built in the lifespan provides it.

`app.state` is untyped, so each accessor names the type of what the lifespan put there."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.config import Settings
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
