"""A consecutive-failure circuit breaker, so a dead or throttling provider costs nothing per ticket.

Single event loop, no awaits inside: the state changes are atomic without a lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from server.observability import metrics

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, failure_threshold: int, reset_s: float, clock: Callable[[], float]) -> None:
        if failure_threshold < 1 or reset_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_s > 0")
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False
        self.opened_count = 0

    @property
    def state(self) -> BreakerState:
        # Derived from the clock on every read, so no timer task is needed to move open -> half_open.
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.reset_s else "open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def would_allow(self) -> bool:
        state = self.state
        return state == "closed" or (state == "half_open" and not self._trial_in_flight)

    def allow(self) -> bool:
        """Reserve a call. In half-open state only one trial runs; everyone else still fails fast."""
        if not self.would_allow():
            return False
        if self.state == "half_open":
            self._trial_in_flight = True
        metrics.breaker_state(self.state)
        return True

    def release(self) -> None:
        """The reserved call was never made (e.g. redaction refused, caller cancelled): no verdict."""
        self._trial_in_flight = False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_in_flight = False
        metrics.breaker_state("closed")

    def record_failure(self) -> None:
        self._failures += 1
        # A failed trial re-opens at once: the provider has not recovered, wait a full period again.
        if self._trial_in_flight or self._failures >= self.failure_threshold:
            if self._opened_at is None or self._trial_in_flight:
                self.opened_count += 1
                metrics.breaker_opened()
            self._opened_at = self._clock()
        self._trial_in_flight = False
        metrics.breaker_state(self.state)
