"""GET /health (liveness with details) and GET /ready (can take traffic).

/health also carries the counters: engine queue stats, routes taken, result-cache hits/misses and the
hosted fallback's calls, failures and cost. The cache and the fallback are optional: their state is
reported but never makes the service 'degraded'; the default engine and the database do.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from server.api.deps import EngineDep, TaxonomyDep
from server.api.protocol import HealthOut, ReadyOut
from server.store.db import ping

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut, "description": "Degraded."}})
async def health(request: Request, engine: EngineDep, taxonomy: TaxonomyDep) -> JSONResponse:
    db_ok = await run_in_threadpool(ping, request.app.state.db_engine)
    info = engine.info
    body: dict[str, Any] = {
        "status": "ok" if (engine.ready and db_ok) else "degraded",
        "model_loaded": engine.ready,
        "database": "ok" if db_ok else "unreachable",
        "model": info.as_dict(),
        "prompt_version": engine.prompt_version,
        "taxonomy": taxonomy.key,
        "engine": engine.stats(),
    }
    load_error = getattr(engine, "load_error", None)
    if load_error:
        body["error"] = load_error
    service = getattr(request.app.state, "service", None)
    if service is not None:
        stats = service.stats()
        if service.cache is not None and service.cache.enabled:
            stats["cache"]["reachable"] = await run_in_threadpool(service.cache.ping)
        body.update(stats)
    return JSONResponse(body, status_code=200 if body["status"] == "ok" else 503)


@router.get("/ready", response_model=ReadyOut, responses={503: {"model": ReadyOut, "description": "Not ready."}})
async def ready(request: Request, engine: EngineDep) -> JSONResponse:
    ok = engine.ready and await run_in_threadpool(ping, request.app.state.db_engine)
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)
