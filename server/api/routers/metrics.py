"""GET /metrics: the Prometheus text format of this host's `triage_` metrics (server.observability.metrics).

Open like /health unless `metrics.require_admin` (then an admin key, as Prometheus' `authorization`
credentials). The store metrics are computed from the shared database (cached a few seconds), in the
threadpool: a scrape never blocks the event loop on the database."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from server.api.deps import ADMIN
from server.config import Settings
from server.observability import metrics


def _store_collector(request: Request) -> metrics.StoreCollector | None:
    state = request.app.state
    collector: metrics.StoreCollector | None = getattr(state, "metrics_store", None)
    sessions = getattr(state, "sessions", None)
    if collector is None and sessions is not None:
        m = state.settings.metrics
        collector = metrics.StoreCollector(
            sessions,
            metrics.StoreWindows.of(m),
            cache_s=m.store_cache_s,
            drift_cache_s=m.drift_cache_s,
        )
        state.metrics_store = collector
    return collector


def _refresh(request: Request) -> None:
    """States derived from the clock (the breaker's open -> half_open) are read again at each scrape."""
    hosted = getattr(request.app.state, "hosted", None)
    if hosted is not None:
        metrics.breaker_state(str(hosted.stats()["breaker"]["state"]))


def make_router(settings: Settings) -> APIRouter:
    dependencies = [Depends(ADMIN)] if settings.metrics.require_admin else []
    router = APIRouter(tags=["health"], dependencies=dependencies)

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {metrics.CONTENT_TYPE: {}}, "description": "Prometheus text format."}},
    )
    async def prometheus_metrics(request: Request) -> Response:
        _refresh(request)
        store = _store_collector(request)
        body = await run_in_threadpool(metrics.render, [store] if store is not None else [])
        return Response(body, media_type=metrics.CONTENT_TYPE)

    return router
