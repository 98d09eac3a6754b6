"""Each ticket's share of an engine's wall time, for the cost stored with every result.

An engine serves many tickets at once (continuous batching), so a ticket's cost is not its latency:
while n tickets are inside the engine, each is charged dt/n of every interval dt. `EngineMeter`
keeps the running integral A(t) = ∫ dt / n(t) (over times with n > 0); a ticket that entered at t0
and left at t1 is charged A(t1) - A(t0). The shares of all tickets add up to the time the engine
had work, whichever requests they came from.

Granularity: the service learns a call's results together, so a ticket counts as inside the engine
until its whole call (its request's group) returns; queueing time inside the engine counts too (the
engine was busy with other tickets then, which share it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class EngineMeter:
    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._inflight = 0
        self._acc = 0.0  # seconds per ticket accumulated since start
        self._last = clock()
        self.busy_s = 0.0  # wall time with at least one ticket inside

    def _advance(self) -> None:
        now = self._clock()
        if self._inflight > 0:
            self._acc += (now - self._last) / self._inflight
            self.busy_s += now - self._last
        self._last = now

    def enter(self, n: int = 1) -> float:
        """n tickets go in; returns the mark to pass to `leave`."""
        with self._lock:
            self._advance()
            self._inflight += n
            return self._acc

    def leave(self, mark: float, n: int = 1) -> float:
        """n tickets that entered at `mark` come out; returns the share of each (seconds)."""
        with self._lock:
            self._advance()
            self._inflight = max(0, self._inflight - n)
            return self._acc - mark

    @property
    def inflight(self) -> int:
        return self._inflight
