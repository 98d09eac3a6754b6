"""Stage 2: a low ticket is re-run on the engine that answered it with the review prompt (a
`ReviewInput` with the first answer's labels and the low fields), when `routing.review` is on and
the engine supports it. Confident now -> `local+review`; otherwise the more confident of the two
answers goes on to the next stage."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence

from server.engines.base import ReviewInput
from server.results import ClassificationResult
from server.routing.answer import Answer
from server.routing.context import RoutingContext
from server.routing.job import Job
from server.routing.labels import label_fields_of

log = logging.getLogger(__name__)


async def review(ctx: RoutingContext, jobs: Sequence[Job]) -> None:
    if not ctx.settings.routing.review:
        return
    groups: dict[str, list[Job]] = defaultdict(list)
    for job in jobs:
        assert job.answered_profile is not None
        if ctx.engines[job.answered_profile].supports_review:
            groups[job.answered_profile].append(job)
    await asyncio.gather(*(_review_group(ctx, profile, group) for profile, group in groups.items()))


async def _review_group(ctx: RoutingContext, profile: str, jobs: list[Job]) -> None:
    items = []
    for job in jobs:
        assert job.answer is not None
        low = ctx.low_fields(job.answer.confidence)
        items.append(ReviewInput(job.ticket, label_fields_of(job.answer.output, ctx.taxonomy), tuple(low)))
    ctx.reviews["asked"] += len(jobs)
    try:
        outs = await ctx.call(profile, items, jobs)
    except Exception as exc:  # noqa: BLE001 - a failed review keeps the first answer
        log.warning("review on engine %r failed (%s): keeping the first answers", profile, exc)
        ctx.reviews["failed"] += len(jobs)
        return
    engine = ctx.engines[profile]
    for job, out in zip(jobs, outs, strict=False):
        job.reviewed = True
        if not isinstance(out, ClassificationResult):
            ctx.reviews["failed"] += 1
            continue
        reviewed = Answer.from_engine(out, engine).only(job.ticket.fields, ctx.taxonomy)
        assert job.answer is not None
        if not ctx.low_fields(reviewed.confidence):
            job.answer = reviewed
            ctx.reviews["improved"] += 1
            ctx.ledger.settle(job, "local+review")
        elif ctx.margin(reviewed.confidence) > ctx.margin(job.answer.confidence):
            job.answer = reviewed  # still unsure, but less so
