"""Stage 1: the engine of the profile the rule table chose answers the group's tickets in one call;
the backup profile's engine when that one is unavailable or overloaded. A ticket whose every label
is confident (at or above its threshold) is settled `local`."""

from __future__ import annotations

import logging

from server.engines.base import EngineError, EngineOverloaded, EngineUnavailable
from server.results import ClassificationResult
from server.routing.answer import Answer
from server.routing.context import RoutingContext
from server.routing.job import Job

log = logging.getLogger(__name__)


async def first_pass(ctx: RoutingContext, profile: str, jobs: list[Job]) -> None:
    last: EngineError | None = None
    for candidate in ctx.rules.candidates(profile):
        try:
            outs = await ctx.call(candidate, [j.ticket for j in jobs], jobs)
        except (EngineUnavailable, EngineOverloaded) as exc:
            if candidate != profile or last is not None:
                log.warning("backup engine %r failed too: %s", candidate, exc)
            last = exc
            continue
        except EngineError as exc:
            ctx.fail(jobs, exc)
            return
        except Exception as exc:  # an engine bug must still end as a stored failure
            log.exception("engine %r failed", candidate)
            ctx.fail(jobs, EngineError(f"engine failure: {type(exc).__name__}: {exc}"))
            return
        if candidate != profile:
            log.info(
                "engine %r unavailable (%s): %d tickets answered by backup %r", profile, last, len(jobs), candidate
            )
            ctx.backup_used[candidate] += len(jobs)
        if len(outs) != len(jobs):
            ctx.fail(jobs, EngineError(f"engine returned {len(outs)} results for {len(jobs)} tickets"))
            return
        engine = ctx.engines[candidate]
        for job, out in zip(jobs, outs, strict=True):
            if isinstance(out, ClassificationResult):
                job.answer = Answer.from_engine(out, engine).only(job.ticket.fields, ctx.taxonomy)
                job.answered_profile = candidate
                ctx.answered[candidate] += 1
            else:
                job.error = (
                    out if isinstance(out, BaseException) else EngineError(f"engine returned {type(out).__name__}")
                )
        return
    ctx.fail(jobs, last or EngineUnavailable("no engine available"))


def settle_confident(ctx: RoutingContext, jobs: list[Job]) -> None:
    for job in jobs:
        if job.answer is not None and not ctx.low_fields(job.answer.confidence):
            ctx.ledger.settle(job, "local")
