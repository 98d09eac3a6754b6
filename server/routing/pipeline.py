"""The routing pipeline: which model answers a ticket, and what happens when it is unsure.

Per batch of tickets (one API request), in stages so that each engine still sees one batch
(one module each under `stages/`):

0. cache     an exact or near-duplicate answer of the serving configuration  -> route `cache`
1. local     the engine of the profile the rule table picks (`routing.rules`); the backup
             profile's engine when that one is unavailable or overloaded. Every label confident
             (>= its threshold) -> `local`
2. review    a low ticket is re-run on the same engine with the review prompt (a `ReviewInput`
             with the first answer's labels and the low fields) when `routing.review` and the
             engine supports it. Confident now -> `local+review`; else the more confident answer
3. hosted    still low, fallback enabled and available -> `HostedFallback.classify`. A valid
             answer is the result (`hosted`; its confidence is the provider's, never another hop).
             A partly valid one keeps its valid labels (the rest from the local answer) and is
             flagged. Unavailable / nothing valid -> the cache is asked once more (a concurrent
             request may have answered the same ticket meanwhile)
4. human     anything still low: `needs_review`, listed by GET /v1/review.

Each ticket is settled (its route decided, by `RouteLedger.settle` only) as soon as nothing more will
happen to it, so a deadline (`engine.request_timeout_s`) can cut the pipeline at any point: a settled
ticket keeps its result, one holding a local answer keeps it for review (reason `deadline`), one
without any answer gets null labels (route `human`, reason `deadline`). `review_reasons` maps each
low label field to its confidence and each other reason (`hosted_invalid`, `fallback_unavailable`,
`deadline`) to a short detail string.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from server.ab import AbSplit
from server.config import Settings
from server.engines.base import Engine, EngineError
from server.prompts import TicketInput
from server.results import ROUTES
from server.routing.context import RoutingContext
from server.routing.job import Job
from server.routing.rules import DEFAULT_PROFILE, answered_by_label
from server.routing.stages import cache, hosted, human, local, review
from server.taxonomy import Taxonomy

if TYPE_CHECKING:
    from server.cache import ServiceCache
    from server.fallback import HostedFallback

log = logging.getLogger(__name__)


class Router:
    def __init__(
        self,
        settings: Settings,
        taxonomy: Taxonomy,
        engines: Mapping[str, Engine],
        *,
        cache: ServiceCache | None = None,
        hosted: HostedFallback | None = None,
    ) -> None:
        """`engines` maps each profile of the rule table to its model engine; `default` is required."""
        if DEFAULT_PROFILE not in engines:
            raise ValueError("the engines must include 'default'")
        known = {f.name for f in taxonomy.label_fields}
        unknown = set(settings.routing.field_thresholds) - known
        if unknown:
            raise ValueError(
                f"routing.field_thresholds names {', '.join(sorted(unknown))}, not label fields of taxonomy {taxonomy.key} "
                f"({', '.join(sorted(known))})"
            )
        self.ctx = RoutingContext(settings, taxonomy, engines, cache=cache, hosted=hosted)
        self.settings = settings
        self.taxonomy = taxonomy
        self.engines = self.ctx.engines
        self.rules = self.ctx.rules
        self.ab = AbSplit.from_settings(settings)
        if self.ab is not None and self.ab.profiles - set(self.engines):
            missing = ", ".join(sorted(self.ab.profiles - set(self.engines)))
            raise ValueError(f"A/B variants refer to engines that were not built: {missing}")

    # -- thresholds -------------------------------------------------------------------------------
    def threshold(self, name: str) -> float:
        return self.ctx.threshold(name)

    def low_fields(self, confidence: Mapping[str, float | None]) -> dict[str, float | None]:
        return self.ctx.low_fields(confidence)

    def needs_review(self, confidence: Mapping[str, float | None]) -> bool:
        return bool(self.ctx.low_fields(confidence))

    @property
    def hosted_enabled(self) -> bool:
        return self.ctx.hosted_enabled

    # -- the pipeline ---------------------------------------------------------------------------
    def plan(self, tickets: Sequence[TicketInput], ticket_ids: Sequence[str | None] | None = None) -> list[Job]:
        """A job per ticket with the rule table's profile; under an A/B test (`ab`), the ticket id's variant
        and the profile of that variant (a control variant keeps the rule table's)."""
        ids: Sequence[str | None] = ticket_ids if ticket_ids is not None else [None] * len(tickets)
        jobs: list[Job] = []
        for ticket, ticket_id in zip(tickets, ids, strict=True):
            choice = self.rules.choose(ticket)
            variant = self.ab.assign(ticket_id) if self.ab is not None and ticket_id else None
            if variant is not None and variant.profile is not None:
                choice = replace(choice, profile=variant.profile)
            jobs.append(Job(ticket, choice, variant=variant.name if variant is not None else None))
        return jobs

    async def run(self, jobs: Sequence[Job]) -> None:
        """Take every job as far as it goes; the caller may cancel this (deadline) at any await.

        The tickets of each chosen profile go through the stages together (one engine call per
        stage), independently of the other profiles' tickets."""
        await cache.answer_from_cache(self.ctx, jobs)
        groups: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            if not job.settled:
                groups[job.choice.profile].append(job)
        results = await asyncio.gather(
            *(self._run_group(profile, group) for profile, group in groups.items()), return_exceptions=True
        )
        for (profile, group), result in zip(groups.items(), results, strict=True):
            if isinstance(result, BaseException):  # a bug in one group must not leave the others running
                log.error("routing of %d tickets on engine %r failed", len(group), profile, exc_info=result)
                self.ctx.fail(
                    [j for j in group if not j.settled],
                    EngineError(f"routing failure: {type(result).__name__}: {result}"),
                )
        for job in jobs:  # every stage settles its jobs; this is the safety net
            if not job.settled and job.answer is not None:
                human.settle_low(self.ctx, job)

    async def _run_group(self, profile: str, jobs: list[Job]) -> None:
        await local.first_pass(self.ctx, profile, jobs)
        answered = [j for j in jobs if not j.settled and j.answer is not None]
        local.settle_confident(self.ctx, answered)
        await review.review(self.ctx, [j for j in answered if not j.settled])
        await hosted.ask_hosted(self.ctx, [j for j in answered if not j.settled])

    def finish_at_deadline(self, jobs: Sequence[Job], timeout_s: float) -> None:
        """Settle whatever the deadline interrupted."""
        human.finish_at_deadline(self.ctx, jobs, timeout_s)

    # -- stats ---------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        ctx = self.ctx
        engines = {}
        for profile, engine in ctx.engines.items():
            info = engine.info
            engines[profile] = {
                "ready": engine.ready,
                "engine": answered_by_label(info),
                "model": info.as_dict(),
                "first_answers": ctx.answered[profile],
                "as_backup": ctx.backup_used[profile],
                "busy_s": round(ctx.meters[profile].busy_s, 3),
                "cost_per_cpu_second": ctx.rates[profile],
                "stats": engine.stats(),
            }
        return {
            "routes": {route: ctx.ledger.routes[route] for route in ROUTES},
            "reviews": dict(ctx.reviews),
            "rules": [r.model_dump(exclude_none=True) for r in ctx.rules.rules],
            "backup": ctx.rules.backup,
            "engines": engines,
        }
