"""Stage 0, and the last resort of stage 3: an answer of the serving configuration already cached
for this ticket (exact or near-duplicate) settles it with route `cache`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from server.cache import CachedAnswer, CacheHit
from server.routing.answer import Answer
from server.routing.context import RoutingContext
from server.routing.job import Job

log = logging.getLogger(__name__)


async def answer_from_cache(ctx: RoutingContext, jobs: Sequence[Job]) -> None:
    cache = ctx.cache
    if cache is None or not cache.enabled:
        return

    def lookup() -> list[CacheHit | None]:
        return [cache.get(ctx.engines[j.choice.profile], j.ticket) for j in jobs]

    hits = await asyncio.to_thread(lookup)
    for job, hit in zip(jobs, hits, strict=True):
        if hit is not None:
            use_hit(ctx, job, hit)


async def rescue_from_cache(ctx: RoutingContext, job: Job) -> bool:
    """Ask once more after the hosted fallback failed: a concurrent request may have answered the
    same ticket meanwhile. The local (and any hosted) time spent before the hit stays charged."""
    cache = ctx.cache
    if cache is None or not cache.enabled:
        return False
    try:
        hit = await asyncio.to_thread(cache.get, ctx.engines[job.choice.profile], job.ticket)
    except Exception:  # noqa: BLE001 - the cache never breaks classification
        return False
    return hit is not None and use_hit(ctx, job, hit)


def use_hit(ctx: RoutingContext, job: Job, hit: CacheHit) -> bool:
    try:
        # A request for a subset may be served a full answer (ServiceCache.get): narrowed here.
        answer = Answer.from_cache(CachedAnswer.from_json(hit.result)).only(job.ticket.fields, ctx.taxonomy)
    except (KeyError, TypeError, ValueError) as exc:  # an entry of another shape: a miss
        log.warning("ignoring a cache entry of unexpected shape (%s)", type(exc).__name__)
        return False
    job.answer, job.cache_hit = answer, hit
    ctx.ledger.settle(job, "cache")
    return True
