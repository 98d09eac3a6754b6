"""The circuit breaker on its own, with an injected clock."""

from __future__ import annotations

import pytest

from server.fallback.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only():
    clock = Clock()
    breaker = CircuitBreaker(3, 10.0, clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # the streak is broken
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow() and breaker.opened_count == 1


def test_half_open_lets_exactly_one_trial_through():
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.record_failure()
    clock.now = 9.99
    assert breaker.state == "open" and not breaker.would_allow()
    clock.now = 10.0
    assert breaker.state == "half_open" and breaker.would_allow()
    assert breaker.allow()  # the trial
    assert not breaker.allow() and not breaker.would_allow()  # concurrent callers still fail fast
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow() and breaker.allow()


def test_failed_trial_reopens_for_a_full_period():
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.record_failure()
    clock.now = 15.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and breaker.opened_count == 2
    clock.now = 24.0
    assert not breaker.allow()
    clock.now = 25.0
    assert breaker.allow()


def test_released_trial_frees_the_slot():
    """A trial that never reached the provider (redaction refused, caller cancelled) gives no verdict."""
    clock = Clock()
    breaker = CircuitBreaker(1, 1.0, clock)
    breaker.record_failure()
    clock.now = 1.0
    assert breaker.allow()
    breaker.release()
    assert breaker.state == "half_open" and breaker.allow()


def test_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        CircuitBreaker(0, 1.0, Clock())
