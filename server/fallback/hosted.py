"""Asking a hosted model about a ticket the local model stays unsure of: redact, call, validate, restore.

Order matters for privacy: nothing reaches the provider unless the redactor produced the text and
`assert_safe` passed on every outgoing string; any failure there means no request at all.
One hosted attempt per ticket; its retries (429/5xx/timeouts/connection errors, bounded by
`max_retries`) belong to that attempt, and the attempt's outcome is what the circuit breaker counts.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from server.config import FallbackSettings, RedactionSettings
from server.observability import metrics
from server.prompts import TicketInput
from server.results import label_of, set_label
from server.schema import output_model
from server.taxonomy import Taxonomy

from .answer import check_answer, drop_invented, label_confidence
from .breaker import CircuitBreaker
from .errors import HostedUnavailable, ProviderError
from .prompt import FIELD_ORDER, Messages, build_messages
from .providers import AnthropicProvider, OpenAIProvider, Provider, ProviderAnswer

if TYPE_CHECKING:  # imported lazily below: a disabled fallback should not load the PII analysers
    from server.privacy.redact import Redacted, Redactor

log = logging.getLogger(__name__)


@dataclass
class HostedResult:
    output: dict[str, Any]  # the taxonomy's output shape, placeholders restored; invalid fields None
    confidence: dict[str, float | None]  # per label field; None without provider logprobs
    valid: bool  # False: only the individually valid fields were kept (the caller flags review)
    errors: list[str]
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float
    redactions: dict[str, int]  # entity type -> how many values were replaced
    # The same answer with the placeholders left in (<EMAIL_ADDRESS_1>, ...), as the provider wrote it
    # about the redacted ticket (copy-only values dropped as in `output`): the only form that may be
    # kept beyond this request, e.g. in the result cache. `output` holds this customer's personal data.
    redacted_output: dict[str, Any]


@dataclass
class _Stats:
    calls: int = 0  # attempts that reached the provider (retries not counted)
    successes: int = 0
    failures: int = 0
    invalid_answers: int = 0
    retries: int = 0
    failures_by_reason: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)  # not asked: disabled / breaker_open / redaction_failed
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0


def resolve_api_key(settings: FallbackSettings) -> str | None:
    """The key itself, or the one environment variable `api_key_env` names (its documented purpose)."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value()
    if settings.api_key_env:
        value = os.environ.get(settings.api_key_env)
        if not value:
            raise ValueError(f"fallback.api_key_env names {settings.api_key_env!r}, which is not set")
        return value
    return None


def _make_provider(settings: FallbackSettings, taxonomy: Taxonomy) -> Provider:
    key = resolve_api_key(settings)
    if key is None:
        if settings.base_url is None:
            raise ValueError("the hosted fallback is enabled but has no api_key or api_key_env")
        key = "unused"  # a self-hosted compatible endpoint may need none, but the SDKs insist on one
    schema = output_model(taxonomy, FIELD_ORDER).model_json_schema()
    cls = OpenAIProvider if settings.provider == "openai" else AnthropicProvider
    return cls(
        model=settings.model,
        api_key=key,
        base_url=settings.base_url,
        timeout_s=settings.timeout_s,
        schema=schema,
        schema_title=f"classification_{taxonomy.name}",
    )


def _load_redactor(redaction: RedactionSettings) -> Redactor:
    from server.privacy.redact import Redactor

    return Redactor(redaction)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class HostedFallback:
    def __init__(
        self,
        settings: FallbackSettings,
        redaction: RedactionSettings,
        taxonomy: Taxonomy,
        *,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.monotonic,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
    ) -> None:
        self.settings = settings
        self.taxonomy = taxonomy
        self._breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s, clock)
        self._backoff = wait_exponential_jitter(multiplier=backoff_s, max=max_backoff_s, jitter=backoff_s)
        self._max_backoff_s = max_backoff_s
        self._stats = _Stats()
        # Disabled = no SDK client and no redaction models loaded; a misconfigured key fails at start-up.
        self._provider: Provider | None = _make_provider(settings, taxonomy) if settings.enabled else None
        self._redactor: Redactor | None = redactor or (_load_redactor(redaction) if settings.enabled else None)

    # -- public -----------------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.settings.enabled and self._breaker.would_allow()

    async def classify(self, ticket: TicketInput, previous: dict[str, Any] | None = None) -> HostedResult:
        if self._provider is None or self._redactor is None:
            raise self._reject("disabled")
        if not self._breaker.allow():
            raise self._reject("breaker_open", f"{self._breaker.consecutive_failures} consecutive failures")
        try:
            # NER is CPU work: off the event loop (the Redactor is documented thread-safe).
            redacted, messages = await asyncio.to_thread(self._prepare, self._redactor, ticket, previous)
        except asyncio.CancelledError:
            self._breaker.release()
            raise
        except Exception as exc:  # whatever went wrong, nothing unredacted may leave: fail closed
            self._breaker.release()
            log.warning("hosted fallback skipped: redaction failed (%s)", type(exc).__name__)
            raise self._reject("redaction_failed", type(exc).__name__) from exc

        started = time.perf_counter()
        self._stats.calls += 1
        try:
            answer = await self._call(self._provider, messages)
        except ProviderError as exc:
            self._breaker.record_failure()
            self._stats.failures += 1
            self._stats.failures_by_reason[exc.reason] = self._stats.failures_by_reason.get(exc.reason, 0) + 1
            metrics.hosted_call("failure", exc.reason, time.perf_counter() - started)
            log.warning("hosted fallback failed: %s (breaker %s)", exc, self._breaker.state)
            raise HostedUnavailable(exc.reason, exc.detail) from exc
        except asyncio.CancelledError:
            self._breaker.release()  # the caller gave up; says nothing about the provider
            raise
        # The provider answered: that counts as up for the breaker, whatever the answer's quality.
        self._breaker.record_success()
        self._stats.successes += 1
        metrics.hosted_call("success", "", time.perf_counter() - started)
        return self._result(answer, redacted, (time.perf_counter() - started) * 1000, ticket)

    def stats(self) -> dict[str, Any]:
        s = self._stats
        return {
            "enabled": self.settings.enabled,
            "provider": self.settings.provider,
            "model": self.settings.model,
            "breaker": {
                "state": self._breaker.state,
                "consecutive_failures": self._breaker.consecutive_failures,
                "times_opened": self._breaker.opened_count,
            },
            "calls": s.calls,
            "successes": s.successes,
            "failures": s.failures,
            "failures_by_reason": dict(s.failures_by_reason),
            "rejected": dict(s.rejected),
            "retries": s.retries,
            "invalid_answers": s.invalid_answers,
            "input_tokens": s.input_tokens,
            "output_tokens": s.output_tokens,
            "cost_usd": round(s.cost_usd, 6),
        }

    async def aclose(self) -> None:
        if self._provider is not None:
            await self._provider.aclose()

    # -- steps ------------------------------------------------------------------------------------
    def _reject(self, reason: str, detail: str = "") -> HostedUnavailable:
        self._stats.rejected[reason] = self._stats.rejected.get(reason, 0) + 1
        metrics.hosted_call("rejected", reason)
        return HostedUnavailable(reason, detail)

    def _prepare(
        self, redactor: Redactor, ticket: TicketInput, previous: dict[str, Any] | None
    ) -> tuple[Redacted, Messages]:
        # One call for all texts: the same person is the same placeholder in the body and the history.
        redacted = redactor.redact([ticket.subject, ticket.body, *ticket.previous_interactions])
        if len(redacted.texts) != 2 + len(ticket.previous_interactions):
            raise RuntimeError("redactor returned a different number of texts")
        messages = build_messages(self.taxonomy, redacted.texts, previous)
        for text in messages.texts():  # the final strings, hint and instructions included
            redactor.assert_safe(text)
        return redacted, messages

    def _wait(self, state: RetryCallState) -> float:
        backoff = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None) or 0.0
        # Honour Retry-After, but never past our own cap: the ticket's request has a deadline too.
        return max(backoff, min(asked, self._max_backoff_s))

    def _count_retry(self, state: RetryCallState) -> None:
        self._stats.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.info("hosted fallback retry %d after %s", state.attempt_number, getattr(exc, "reason", type(exc).__name__))

    async def _call(self, provider: Provider, messages: Messages) -> ProviderAnswer:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(_retryable),
            before_sleep=self._count_retry,
            reraise=True,
        )

        # The SDK timeout bounds each network phase (connect, each read); this bounds the whole try,
        # so a server trickling bytes cannot hold a ticket longer. The grace lets the SDK's own error win.
        hard_limit = self.settings.timeout_s + 1.0

        async def once() -> ProviderAnswer:
            try:
                async with asyncio.timeout(hard_limit):
                    return await provider.complete(system=messages.system, user=messages.user)
            except ProviderError:
                raise
            except TimeoutError as exc:
                raise ProviderError("timeout", "no complete answer in time", retryable=True) from exc
            except Exception as exc:  # an SDK or parsing surprise: unusable answer, not a crash of the caller
                log.exception("hosted fallback: unexpected error from %s", provider.name)
                raise ProviderError("error", type(exc).__name__, retryable=False) from exc

        return await retrying(once)

    def _result(
        self, answer: ProviderAnswer, redacted: Redacted, latency_ms: float, ticket: TicketInput
    ) -> HostedResult:
        checked = check_answer(self.taxonomy, answer.content)
        errors = [*answer.notes, *checked.errors] if not checked.valid else list(checked.errors)
        # Confidence is read off the model's own tokens, so it is computed before placeholders are restored.
        confidence = label_confidence(self.taxonomy, checked.output, answer.logprobs)
        redacted_output = copy.deepcopy(checked.output)
        output = checked.output
        try:
            output = self._redactor.restore(checked.output, redacted.mapping) if self._redactor else output
        except Exception as exc:
            errors.append(f"placeholders not restored: {type(exc).__name__}")
        errors += drop_invented(self.taxonomy, output, ticket)
        # A copy-only value is judged on its restored form (a span of the real ticket); what was dropped
        # there is dropped from the redacted form too.
        for spec in self.taxonomy.extracted_info:
            if spec.copy_only and label_of(output, spec.name) is None:
                set_label(redacted_output, spec.name, None, in_extracted_info=True)
        cost = (
            answer.input_tokens / 1000 * self.settings.price_input_per_1k
            + answer.output_tokens / 1000 * self.settings.price_output_per_1k
        )
        s = self._stats
        s.input_tokens += answer.input_tokens
        s.output_tokens += answer.output_tokens
        s.cost_usd += cost
        metrics.hosted_answer(answer.input_tokens, answer.output_tokens, checked.valid)
        if not checked.valid:
            s.invalid_answers += 1
            log.info("hosted answer invalid: %s", json.dumps(checked.errors)[:500])
        return HostedResult(
            output=output,
            confidence=confidence,
            valid=checked.valid,
            errors=errors,
            provider=self.settings.provider,
            model=answer.model,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            cost_usd=cost,
            latency_ms=latency_ms,
            redactions=dict(redacted.counts),
            redacted_output=redacted_output,
        )
