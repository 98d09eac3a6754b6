"""One ticket on its way through the pipeline, and the one place its route is settled and counted."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.cache import CacheHit
from server.prompts import TicketInput
from server.results import CACHEABLE_ROUTES, ROUTES, Route
from server.routing.answer import Answer
from server.routing.rules import Choice


@dataclass
class Job:
    ticket: TicketInput
    choice: Choice
    variant: str | None = None  # the A/B variant (server.ab) assigned to the ticket; None without an A/B test
    answered_profile: str | None = None  # the profile whose engine answered locally (the chosen one or the backup)
    answer: Answer | None = None
    # Set only by `RouteLedger.settle`, once nothing more will happen to the ticket.
    route: Route | None = None
    needs_review: bool = False
    reasons: dict[str, Any] = field(default_factory=dict)  # low field -> confidence, other reason -> detail
    cache_hit: CacheHit | None = None
    error: BaseException | None = None  # no result: the API answers 429/502/503 for this ticket
    engine_cost_usd: float = 0.0
    engine_s: float = 0.0
    hosted_cost_usd: float = 0.0
    reviewed: bool = False
    hosted_sent: list[Any] = field(default_factory=list)  # server.egress.SentRequest: bodies sent to a hosted API

    @property
    def settled(self) -> bool:
        return self.route is not None or self.error is not None

    @property
    def cost_usd(self) -> float:
        return self.engine_cost_usd + self.hosted_cost_usd

    @property
    def cacheable(self) -> bool:
        return self.route in CACHEABLE_ROUTES and not self.needs_review and self.answer is not None


class RouteLedger:
    """Settles jobs and counts the routes they took (the `routes` of the routing stats)."""

    def __init__(self) -> None:
        self.routes: Counter[Route] = Counter({route: 0 for route in ROUTES})

    def settle(
        self, job: Job, route: Route, *, needs_review: bool = False, reasons: Mapping[str, Any] | None = None
    ) -> None:
        if job.route is not None:  # counting a ticket twice would skew the stats: a bug, not a state
            raise RuntimeError(f"ticket already settled as {job.route!r}, not again as {route!r}")
        job.route, job.needs_review, job.reasons = route, needs_review, dict(reasons or {})
        self.routes[route] += 1
