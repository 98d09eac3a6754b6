"""The app factory: `create_server(settings)` builds the store, the engines, the result cache and the
hosted fallback (only when enabled) in the lifespan, and closes them at shutdown."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from starlette.middleware.base import RequestResponseEndpoint

from server.ab import variant_profiles
from server.api.auth import install_auth
from server.api.errors import error_response, install_error_handlers
from server.api.openapi import install_openapi
from server.api.routers import classify, feedback, health, jobs, metrics, results, review
from server.config import EngineProfile, Settings, load_settings
from server.engines.base import Engine
from server.jobs import JobWorker
from server.observability.middleware import install_observability
from server.registry import seed_shared_registry
from server.retention import start_periodic, stop_periodic
from server.routing import ServiceCache
from server.service import ClassificationService
from server.store import repository as repo
from server.store.crypto import key_source_of
from server.store.db import make_sessionmaker, migrate, open_store
from server.store.models import utcnow
from server.taxonomy import Taxonomy, load_taxonomy

if TYPE_CHECKING:
    from server.fallback import HostedFallback

log = logging.getLogger(__name__)


def build_engine(settings: Settings, taxonomy: Taxonomy) -> Engine:
    if settings.engine.kind == "outlines":
        from server.engines.outlines.reference import OutlinesReferenceEngine

        return OutlinesReferenceEngine(settings, taxonomy)
    if settings.engine.kind == "vllm":
        from server.engines.vllm.engine import VllmEngine

        return VllmEngine(settings, taxonomy)
    from server.engines.embedded.engine import TransformersEngine

    return TransformersEngine(settings, taxonomy)


def profile_settings(settings: Settings, profile: EngineProfile) -> Settings:
    """The settings a named engine of `routing.engines` is built with: [model]/[engine] plus its overrides."""
    adapter = profile.adapter if profile.adapter is not None else "none"
    return settings.variant(
        model={
            "base": profile.base or settings.model.base,
            "adapter": adapter,
            "watch_registry_s": settings.model.watch_registry_s if adapter == "registry" else 0.0,
        },
        engine={"kind": profile.kind or settings.engine.kind},
        **({"prompt": {"version": profile.prompt_version}} if profile.prompt_version is not None else {}),
    )


def build_engines(
    settings: Settings, taxonomy: Taxonomy, given: Mapping[str, Engine] | None = None
) -> dict[str, Engine]:
    """The named engines of `routing.engines` and of the A/B variants (the default engine is built
    separately); `given` wins."""
    given = dict(given or {})
    return {
        name: given.get(name) or build_engine(profile_settings(settings, profile), taxonomy)
        for name, profile in {**settings.routing.engines, **variant_profiles(settings)}.items()
    }


def build_hosted(settings: Settings, taxonomy: Taxonomy) -> HostedFallback | None:
    if not settings.fallback.enabled:
        return None  # off: no SDK client, no PII models loaded
    from server.fallback import HostedFallback

    return HostedFallback(settings.fallback, settings.redaction, taxonomy)


def create_server(
    settings: Settings | None = None,
    engine: Engine | None = None,
    *,
    engines: Mapping[str, Engine] | None = None,
    hosted: HostedFallback | None = None,
) -> FastAPI:
    """`engine`/`engines`/`hosted` replace what the settings would build (tests, embedding)."""
    settings = settings or load_settings()
    taxonomy = load_taxonomy(settings.taxonomy)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db_engine = open_store(settings.database_url, settings.storage)
        if settings.database_migrate_on_start:
            migrate(db_engine)  # off for replicas: `triage migrate` ran once before them
            seed_shared_registry(settings.model, user="server")  # registry_backend store: first start only
        sessions = make_sessionmaker(db_engine)
        with sessions() as session:
            # Rows left 'pending' by a crash of an earlier process: resolve them so none stays open.
            recovered = repo.mark_stale_pending_failed(
                session, utcnow() + timedelta(seconds=1), "server restarted before the result was stored"
            )
            if recovered:
                log.warning("marked %d interrupted classifications as failed", recovered)
        eng = engine or build_engine(settings, taxonomy)
        named = build_engines(settings, taxonomy, engines)
        started: list[Engine] = []
        cache: ServiceCache | None = None
        fallback: HostedFallback | None = None
        try:
            for e in (eng, *named.values()):
                await e.start()
                started.append(e)
            cache = ServiceCache(settings, taxonomy, keys=key_source_of(db_engine))
            fallback = hosted if hosted is not None else build_hosted(settings, taxonomy)
            app.state.settings, app.state.taxonomy, app.state.engine = settings, taxonomy, eng
            app.state.db_engine, app.state.sessions = db_engine, sessions
            app.state.cache, app.state.hosted = cache, fallback
            app.state.service = ClassificationService(
                settings, taxonomy, eng, sessions, engines=named, cache=cache, hosted=fallback
            )
            app.state.retention = start_periodic(settings, sessions)  # None unless retention is configured
            app.state.jobs = None
            if settings.jobs.enabled:
                app.state.jobs = JobWorker(settings, app.state.service, sessions)
                await app.state.jobs.start()
            yield
        finally:
            # First: a chunk in flight is put back in the queue while the engines and the store are still up.
            worker: JobWorker | None = getattr(app.state, "jobs", None)
            if worker is not None:
                await worker.stop()
            await stop_periodic(getattr(app.state, "retention", None))
            for e in reversed(started):
                try:
                    await e.stop()
                except Exception:  # noqa: BLE001 - shut the rest down anyway
                    log.exception("engine did not stop cleanly")
            if fallback is not None:
                await fallback.aclose()
            if cache is not None:
                cache.close()
            db_engine.dispose()

    app = FastAPI(
        title="triage",
        version="0.1.0",
        description="Support-ticket classification with a local fine-tunable model and schema-valid JSON.",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body(request: Request, call_next: RequestResponseEndpoint) -> Response:
        # Refuse oversized bodies before parsing them.
        limit = settings.api.max_ticket_bytes * (settings.api.max_batch_items + 1) * 2
        if request.url.path == "/v1/jobs":  # a file of tickets: its own limit (jobs.max_upload_bytes)
            limit = settings.jobs.max_upload_bytes + jobs.MULTIPART_OVERHEAD
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            return error_response(413, "request_too_large", f"request body of {length} bytes exceeds {limit} bytes")
        return await call_next(request)

    # Added last, so it runs first: 401/403/429 before the body is read or its size checked.
    install_auth(app, settings)
    # Added after auth, so it runs before it: refusals carry X-Request-ID and are counted too.
    install_observability(app, access_log=settings.log.access)
    if not settings.auth_required:
        log.warning(
            "API KEYS ARE OFF (auth.required=false or a loopback api.host): every request to %s:%d acts as an "
            "anonymous admin. Set TRIAGE_AUTH__REQUIRED=true and create keys with `triage keys create`.",
            settings.api.host,
            settings.api.port,
        )
    app.include_router(classify.router)
    app.include_router(feedback.router)
    app.include_router(review.router)
    app.include_router(results.router)
    app.include_router(jobs.router)
    app.include_router(health.router)
    if settings.metrics.enabled:
        app.include_router(metrics.make_router(settings))
    install_openapi(app, settings, taxonomy)
    return app
