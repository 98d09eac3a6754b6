"""Errors of the hosted fallback: one type for the caller, one for the provider layer."""

from __future__ import annotations


class HostedUnavailable(RuntimeError):
    """The hosted model was not asked or gave no usable answer; the caller keeps the local answer.

    `reason` is a short code for metrics and logs: "disabled", "breaker_open", "redaction_failed",
    "timeout", "rate_limited", "server_error" or "error". The message never contains ticket text.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class ProviderError(Exception):
    """One failed provider call, already classified so the retry policy needs no SDK knowledge."""

    def __init__(self, reason: str, detail: str, *, retryable: bool, retry_after: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), if any
