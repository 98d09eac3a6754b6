"""Typed dependencies: handlers declare what they need; the app state built in the lifespan provides it."""

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
    return request.app.state.settings


def _service(request: Request) -> ClassificationService:
    return request.app.state.service


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _taxonomy(request: Request) -> Taxonomy:
    return request.app.state.taxonomy


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[ClassificationService, Depends(_service)]
EngineDep = Annotated[Engine, Depends(_engine)]
TaxonomyDep = Annotated[Taxonomy, Depends(_taxonomy)]
SessionDep = Annotated[Session, Depends(_session)]
