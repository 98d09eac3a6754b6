"""The app factory: `create_server(settings)` builds the store and the engine in the lifespan."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import AsyncIterator

from fastapi import FastAPI, Request

from server.api.errors import error_response, install_error_handlers
from server.api.routers import classify, feedback, health
from server.config import Settings, load_settings
from server.engines.base import Engine
from server.service import ClassificationService
from server.store import repository as repo
from server.store.db import make_engine, make_sessionmaker, migrate
from server.store.models import utcnow
from server.taxonomy import load_taxonomy

log = logging.getLogger(__name__)


def build_engine(settings: Settings, taxonomy) -> Engine:
    if settings.engine.kind == "outlines":
        from server.engines.outlines_reference import OutlinesReferenceEngine

        return OutlinesReferenceEngine(settings, taxonomy)
    from server.engines.transformers_engine import TransformersEngine

    return TransformersEngine(settings, taxonomy)


def create_server(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or load_settings()
    taxonomy = load_taxonomy(settings.taxonomy)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db_engine = make_engine(settings.database_url)
        migrate(db_engine)
        sessions = make_sessionmaker(db_engine)
        with sessions() as session:
            # Rows left 'pending' by a crash of an earlier process: resolve them so none stays open.
            recovered = repo.mark_stale_pending_failed(session, utcnow() + timedelta(seconds=1), "server restarted before the result was stored")
            if recovered:
                log.warning("marked %d interrupted classifications as failed", recovered)
        eng = engine or build_engine(settings, taxonomy)
        await eng.start()
        app.state.settings, app.state.taxonomy, app.state.engine = settings, taxonomy, eng
        app.state.db_engine, app.state.sessions = db_engine, sessions
        app.state.service = ClassificationService(settings, taxonomy, eng, sessions)
        try:
            yield
        finally:
            await eng.stop()
            db_engine.dispose()

    app = FastAPI(
        title="triage",
        version="0.1.0",
        description="Support-ticket classification with a local fine-tunable model and schema-valid JSON.",
        lifespan=lifespan,
    )
    install_error_handlers(app)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # refuse oversized bodies before parsing them
        limit = settings.api.max_ticket_bytes * (settings.api.max_batch_items + 1) * 2
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            return error_response(413, "request_too_large", f"request body of {length} bytes exceeds {limit} bytes")
        return await call_next(request)

    app.include_router(classify.router)
    app.include_router(feedback.router)
    app.include_router(health.router)
    return app
