"""Fixtures for the routing tests: a real SQLite store, the service over ScriptedEngine doubles, and
the hosted fallback pointed at the FakeOpenAI/FakeAnthropic test servers of tests/fallback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from server.cache import CacheStore
from server.config import RedactionSettings, Settings, load_settings
from server.engines.base import Engine
from server.routing import ServiceCache
from server.service import ClassificationService
from server.store.db import make_db_engine, make_sessionmaker, migrate
from server.store.models import Classification
from tests.fallback.fake_hosted import (  # noqa: F401  (pytest finds fixtures by name)
    FakeHostedAPI,
    anthropic_server,
    fake_anthropic,
    fake_openai,
    openai_server,
)


@pytest.fixture()
def store(tmp_path):
    db_engine = make_db_engine(f"sqlite:///{tmp_path / 'routing.db'}")
    migrate(db_engine)
    yield make_sessionmaker(db_engine)
    db_engine.dispose()


@pytest.fixture(scope="session")
def redactor():
    from server.privacy.redact import Redactor

    return Redactor(RedactionSettings())


def settings_with(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": "sqlite://"}
    values.update(overrides)
    return load_settings(**values)


def fallback_settings(fake: FakeHostedAPI, provider: str = "openai", **overrides: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "provider": provider,
        "base_url": fake.url + ("/v1" if provider == "openai" else ""),
        "model": "fake-gpt",
        "api_key": "sk-test-not-a-real-key",
        "timeout_s": 2.0,
        "max_retries": 0,
        "price_input_per_1k": 0.15,
        "price_output_per_1k": 0.6,
        **overrides,
    }


@pytest.fixture
async def make_service(store, taxonomy, request):
    """Build a ClassificationService; closes the hosted fallbacks it made."""
    made: list[Any] = []

    def build(
        local: Engine,
        *,
        engines: dict[str, Engine] | None = None,
        hosted: bool = False,
        sessions: Any = None,
        cache_store: CacheStore | None = None,
        **settings: Any,
    ) -> ClassificationService:
        """`local` is the default engine; `engines` the named ones (each gets a profile in routing.engines);
        `cache_store` replaces the store the cache settings would open."""
        if engines:
            routing = dict(settings.get("routing") or {})
            routing["engines"] = {**{name: {} for name in engines}, **(routing.get("engines") or {})}
            settings["routing"] = routing
        s = settings_with(**settings)
        fallback = None
        if hosted:
            from server.fallback import HostedFallback

            redactor = request.getfixturevalue("redactor")  # loaded only by the tests that need it
            fallback = HostedFallback(
                s.fallback, s.redaction, taxonomy, redactor=redactor, backoff_s=0.01, max_backoff_s=0.05
            )
            made.append(fallback)
        return ClassificationService(
            s,
            taxonomy,
            local,
            sessions or store,
            engines=engines,
            cache=ServiceCache(s, taxonomy, store=cache_store),
            hosted=fallback,
        )

    yield build
    for fallback in made:
        await fallback.aclose()


def stored(store) -> list[Classification]:
    with store() as s:
        return list(s.scalars(select(Classification).order_by(Classification.id)))


Builder = Callable[..., ClassificationService]
__all__ = ["Builder", "fallback_settings", "settings_with", "stored"]
