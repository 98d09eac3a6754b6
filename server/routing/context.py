"""What every stage of the pipeline shares: the engines with their meters and rates, the thresholds,
the cache and the hosted fallback, the route ledger and the stage counters."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from server.config import Settings
from server.engines.base import Engine, EngineError, ReviewInput
from server.prompts import TicketInput
from server.results import ClassificationResult
from server.routing.cost import EngineMeter
from server.routing.job import Job, RouteLedger
from server.routing.rules import ProfileRules
from server.routing.thresholds import field_threshold, is_unsure
from server.taxonomy import Taxonomy

if TYPE_CHECKING:
    from server.cache import ServiceCache
    from server.fallback import HostedFallback

EngineCallResult = ClassificationResult | EngineError


class RoutingContext:
    def __init__(
        self,
        settings: Settings,
        taxonomy: Taxonomy,
        engines: Mapping[str, Engine],
        *,
        cache: ServiceCache | None,
        hosted: HostedFallback | None,
    ) -> None:
        self.settings = settings
        self.taxonomy = taxonomy
        self.engines = dict(engines)  # profile -> its model engine
        self.rules = ProfileRules(settings.routing, self.engines)
        self.cache = cache
        self.hosted = hosted
        self.ledger = RouteLedger()
        self.meters = {profile: EngineMeter() for profile in self.engines}
        self.rates: dict[str, float] = {profile: self._rate(settings, profile) for profile in self.engines}
        self.hosted_slots = asyncio.Semaphore(settings.routing.hosted_concurrency)
        self.backup_used: Counter[str] = Counter()  # profile -> tickets it took over as the backup
        self.answered: Counter[str] = Counter()  # profile -> first answers
        self.reviews: Counter[str] = Counter({"asked": 0, "improved": 0, "failed": 0})

    @staticmethod
    def _rate(settings: Settings, profile: str) -> float:
        """USD per engine second: the profile's own price, else the routing-wide one."""
        own = settings.routing.engines.get(profile)
        if own is not None and own.cost_per_cpu_second is not None:
            return own.cost_per_cpu_second
        return settings.routing.cost_per_cpu_second

    # -- thresholds ---------------------------------------------------------------------------------
    def threshold(self, name: str) -> float:
        return field_threshold(self.settings.routing, name)

    def low_fields(self, confidence: Mapping[str, float | None]) -> dict[str, float | None]:
        """Label fields under their threshold (a null confidence counts as low), in taxonomy order."""
        low: dict[str, float | None] = {}
        for spec in self.taxonomy.label_fields:
            if spec.name not in confidence:
                continue
            c = confidence[spec.name]
            if is_unsure(self.settings.routing, spec.name, c):
                low[spec.name] = c
        return low

    def margin(self, confidence: Mapping[str, float | None]) -> float:
        """How far the least confident label is above its threshold (negative: below)."""
        margins = [(c if c is not None else 0.0) - self.threshold(name) for name, c in confidence.items()]
        return min(margins) if margins else 0.0

    @property
    def cache_enabled(self) -> bool:
        return self.cache is not None and self.cache.enabled

    @property
    def hosted_enabled(self) -> bool:
        return self.hosted is not None and self.hosted.settings.enabled

    # -- engine calls -------------------------------------------------------------------------------
    async def call(
        self, profile: str, items: Sequence[TicketInput | ReviewInput], jobs: Sequence[Job]
    ) -> list[EngineCallResult]:
        """One batch on a profile's engine; each job is charged its share of the engine's time."""
        meter = self.meters[profile]
        mark = meter.enter(len(items))
        try:
            return list(await self.engines[profile].classify(list(items)))
        finally:
            share = meter.leave(mark, len(items))
            for job in jobs:
                job.engine_s += share
                job.engine_cost_usd += share * self.rates[profile]

    @staticmethod
    def fail(jobs: Iterable[Job], exc: BaseException) -> None:
        for job in jobs:
            job.error = exc
