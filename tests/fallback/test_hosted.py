"""The hosted fallback end to end: official SDK clients -> real HTTP -> the test-double servers."""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from typing import Any

import pytest

from server.config import FallbackSettings, RedactionSettings
from server.fallback import HostedFallback, HostedResult, HostedUnavailable
from server.prompts import TicketInput
from server.schema import output_model
from tests.fallback.fake_hosted import (  # noqa: F401  (pytest fixtures are found by name)
    Fail,
    FakeHostedAPI,
    Reply,
    Stall,
    Trickle,
    default_answer,
)

PRICE_IN, PRICE_OUT = 0.15, 0.6
TICKET = TicketInput("Charged twice", "My Pro plan was billed twice this month, please refund one payment.")
PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*_\d+>")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="session")
def redactor():
    from server.privacy.redact import Redactor

    return Redactor(RedactionSettings())


@pytest.fixture(params=["openai", "anthropic"])
def provider(request) -> str:
    return request.param


@pytest.fixture
def fake(provider: str, request) -> FakeHostedAPI:
    return request.getfixturevalue(f"fake_{provider}")


def settings_for(fake: FakeHostedAPI, provider: str, **overrides: Any) -> FallbackSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "provider": provider,
        "base_url": fake.url + ("/v1" if provider == "openai" else ""),
        "model": "fake-model-1",
        "api_key": "sk-test-not-a-real-key",
        "timeout_s": 5.0,
        "max_retries": 2,
        "price_input_per_1k": PRICE_IN,
        "price_output_per_1k": PRICE_OUT,
        **overrides,
    }
    return FallbackSettings(**values)


@pytest.fixture
async def make(taxonomy, redactor):
    """Build a HostedFallback with fast backoff; closes its SDK client after the test."""
    made: list[HostedFallback] = []

    def build(settings: FallbackSettings, **kwargs: Any) -> HostedFallback:
        kwargs.setdefault("redactor", redactor)
        fallback = HostedFallback(settings, RedactionSettings(), taxonomy, backoff_s=0.01, max_backoff_s=0.05, **kwargs)
        made.append(fallback)
        return fallback

    yield build
    for fallback in made:
        await fallback.aclose()


# -- valid answers -------------------------------------------------------------------------------
async def test_openai_valid_answer_usage_cost_and_logprob_confidence(taxonomy, fake_openai, make):
    fake_openai.script(Reply(value_logprobs={"Billing": math.log(0.8), "High": math.log(0.6)}, usage=(1200, 300)))
    fallback = make(settings_for(fake_openai, "openai"))
    result = await fallback.classify(TICKET)

    assert isinstance(result, HostedResult)
    assert result.valid and result.errors == []
    assert result.output == default_answer()
    assert (result.provider, result.model) == ("openai", "fake-model-1")
    assert (result.input_tokens, result.output_tokens) == (1200, 300)
    assert result.cost_usd == pytest.approx(1.2 * PRICE_IN + 0.3 * PRICE_OUT)
    assert result.confidence["category"] == pytest.approx(0.8)
    assert result.confidence["priority"] == pytest.approx(0.6)
    assert 0 < result.confidence["sentiment"] <= 1
    assert result.latency_ms > 0

    (request,) = fake_openai.requests
    assert request.path == "/v1/chat/completions"
    sent = request.json()
    assert sent["logprobs"] is True
    fmt = sent["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"] == output_model(taxonomy, "labels_first").model_json_schema()
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert "Billing" in sent["messages"][0]["content"]  # the label definitions
    assert "billed twice" in sent["messages"][1]["content"]
    stats = fallback.stats()
    assert stats["calls"] == 1 and stats["successes"] == 1 and stats["input_tokens"] == 1200
    assert stats["cost_usd"] == pytest.approx(result.cost_usd)
    assert stats["breaker"]["state"] == "closed"


async def test_anthropic_valid_answer_through_forced_tool(taxonomy, fake_anthropic, make):
    fake_anthropic.script(Reply(usage=(2000, 150)))
    fallback = make(settings_for(fake_anthropic, "anthropic"))
    result = await fallback.classify(TICKET)

    assert result.valid and result.output == default_answer()
    assert result.provider == "anthropic"
    assert (result.input_tokens, result.output_tokens) == (2000, 150)
    assert result.cost_usd == pytest.approx(2.0 * PRICE_IN + 0.15 * PRICE_OUT)
    assert result.confidence == {"category": None, "priority": None, "sentiment": None}  # no logprobs offered

    (request,) = fake_anthropic.requests
    assert request.path == "/v1/messages"
    sent = request.json()
    (tool,) = sent["tools"]
    assert sent["tool_choice"] == {"type": "tool", "name": tool["name"]}
    assert tool["input_schema"] == output_model(taxonomy, "labels_first").model_json_schema()
    assert "Billing" in sent["system"] and "billed twice" in sent["messages"][0]["content"]


async def test_openai_without_logprobs_gives_no_confidence(fake_openai, make):
    fake_openai.script(Reply(logprobs=False))
    fallback = make(settings_for(fake_openai, "openai"))
    result = await fallback.classify(TICKET)
    assert result.valid and set(result.confidence.values()) == {None}


# -- privacy -------------------------------------------------------------------------------------
PII_TICKET = TicketInput(
    subject="Charged twice on card 4111 1111 1111 1111",
    body=(
        "I was charged twice. My other card 5555-5555-5555-4444 and the Amex 378282246310005 work fine. "
        "Refund to IBAN DE89 3704 0044 0532 0130 00 please. Call me on +1 415 555 0134 "
        "or write to m.schneider@example.com."
    ),
    previous_interactions=("Dear Maria Schneider, thanks for contacting us. Could you confirm the card you used?",),
)
PII_STRINGS = ["m.schneider@example.com", "Schneider", "Maria", "DE89 3704 0044 0532 0130 00", "+1 415 555 0134"]
PII_DIGITS = ["4111111111111111", "5555555555554444", "378282246310005", "DE89370400440532013000", "4155550134"]


def _spaced(chars: str) -> re.Pattern[str]:
    """The value with any separators (space, dash, dot, brackets) between its characters."""
    return re.compile(r"[\s\-.()]{0,3}".join(re.escape(c) for c in chars))


def _user_text(request: dict[str, Any]) -> str:
    messages = request["messages"]
    return messages[-1]["content"] if isinstance(messages[-1]["content"], str) else json.dumps(messages[-1]["content"])


def _echo_placeholders(request: dict[str, Any]) -> dict[str, Any]:
    """A model that mentions the personal data it was shown: by the placeholders, as instructed."""
    found = sorted(set(PLACEHOLDER.findall(_user_text(request))))
    answer = default_answer()
    answer["extracted_info"]["product"] = found[0] if found else None
    answer["reasoning"] = "Refund requested by " + " ".join(found)
    return answer


async def test_no_pii_leaves_and_placeholders_come_back(provider, fake, make):
    fake.script(Reply(_echo_placeholders))
    fallback = make(settings_for(fake, provider))
    previous = {
        "category": "Billing",
        "priority": "Low",
        "reasoning": "Maria Schneider m.schneider@example.com 4111 1111 1111 1111",
    }
    result = await fallback.classify(PII_TICKET, previous)

    (request,) = fake.requests
    decoded = json.dumps(request.json(), ensure_ascii=False)  # undoes any \u escapes the SDK may use
    for text in (request.raw.decode("utf-8", "replace"), decoded):
        for value in PII_STRINGS:
            assert value not in text
        for digits in PII_DIGITS:
            assert not _spaced(digits).search(text), digits
    # The local model's labels travel as a hint, its free text (which held PII) does not.
    assert "Billing" in _user_text(request.json()) and "Low" in _user_text(request.json())

    placeholders = set(PLACEHOLDER.findall(_user_text(request.json())))
    assert len(placeholders) >= 5
    assert sum(result.redactions.values()) >= len(placeholders)
    assert result.valid
    restored = result.output["reasoning"]
    assert not PLACEHOLDER.search(restored)
    assert "m.schneider@example.com" in restored and "Schneider" in restored
    assert _spaced("4111111111111111").search(restored)
    product = result.output["extracted_info"]["product"]
    assert product and not PLACEHOLDER.search(product)  # a nested field is restored too
    # The redacted form kept beside it (what the result cache may hold) has the placeholders, no PII.
    kept = json.dumps(result.redacted_output, ensure_ascii=False)
    assert PLACEHOLDER.search(result.redacted_output["reasoning"])
    assert PLACEHOLDER.search(result.redacted_output["extracted_info"]["product"])
    for value in PII_STRINGS:
        assert value not in kept
    for digits in PII_DIGITS:
        assert not _spaced(digits).search(kept), digits
    assert {k: v for k, v in result.redacted_output.items() if k not in ("reasoning", "extracted_info")} == {
        k: v for k, v in result.output.items() if k not in ("reasoning", "extracted_info")
    }


@pytest.mark.parametrize("failure", ["raises_redaction_error", "raises_other", "finds_nothing"])
async def test_card_never_sent_when_redaction_fails(failure, fake_openai, make, redactor, monkeypatch):
    from server.privacy.redact import Redacted, RedactionError

    def broken(self, texts):
        if failure == "raises_redaction_error":
            raise RedactionError("analyzer crashed")
        if failure == "raises_other":
            raise ValueError("spaCy pipeline missing")
        return Redacted(texts=list(texts), mapping={}, counts={})  # analysis silently found nothing

    monkeypatch.setattr(type(redactor), "redact", broken)
    fallback = make(settings_for(fake_openai, "openai"))
    with pytest.raises(HostedUnavailable) as info:
        await fallback.classify(PII_TICKET)
    assert info.value.reason == "redaction_failed"
    assert fake_openai.requests == []
    assert fallback.stats()["rejected"] == {"redaction_failed": 1}
    assert fallback.stats()["breaker"]["state"] == "closed"  # nothing was asked, the provider is not to blame


# -- retries and failures -------------------------------------------------------------------------
async def test_retries_server_errors_then_succeeds(provider, fake, make):
    fake.fail(500, times=1)
    fake.fail(503, times=1)
    fallback = make(settings_for(fake, provider, max_retries=2))
    result = await fallback.classify(TICKET)
    assert result.valid
    assert len(fake.requests) == 3
    stats = fallback.stats()
    assert (stats["calls"], stats["retries"], stats["successes"], stats["failures"]) == (1, 2, 1, 0)


async def test_rate_limited_until_retries_run_out(provider, fake, make):
    fake.fail(429, times=5, retry_after=0.01)
    fallback = make(settings_for(fake, provider, max_retries=2))
    with pytest.raises(HostedUnavailable) as info:
        await fallback.classify(TICKET)
    assert info.value.reason == "rate_limited"
    assert len(fake.requests) == 3  # one attempt + max_retries retries, no more
    assert fallback.stats()["failures_by_reason"] == {"rate_limited": 1}


async def test_client_error_is_not_retried(provider, fake, make):
    fake.fail(400)
    fallback = make(settings_for(fake, provider, max_retries=3))
    with pytest.raises(HostedUnavailable) as info:
        await fallback.classify(TICKET)
    assert info.value.reason == "error"
    assert len(fake.requests) == 1


async def test_timeout_is_bounded(provider, fake, make):
    fake.script(Stall(3.0), Stall(3.0))
    fallback = make(settings_for(fake, provider, timeout_s=0.3, max_retries=1))
    started = time.monotonic()
    with pytest.raises(HostedUnavailable) as info:
        await fallback.classify(TICKET)
    elapsed = time.monotonic() - started
    assert info.value.reason == "timeout"
    assert elapsed < 2.0  # 2 tries x 0.3 s + backoff, far below the server's 3 s stall
    assert len(fake.requests) == 2


async def test_trickling_answer_hits_the_hard_limit(fake_openai, make):
    """Each read arrives well within the SDK timeout; the whole try is still cut off."""
    fake_openai.script(Trickle(0.1))
    fallback = make(settings_for(fake_openai, "openai", timeout_s=0.3, max_retries=0))
    started = time.monotonic()
    with pytest.raises(HostedUnavailable) as info:
        await fallback.classify(TICKET)
    assert info.value.reason == "timeout"
    assert time.monotonic() - started < 2.5  # timeout_s + 1 s grace


# -- invalid answers -----------------------------------------------------------------------------
async def test_malformed_json_keeps_the_valid_part(fake_openai, make):
    fake_openai.script(Reply('{"category": "Billing", "priority": "High", "extracted_info": {"product": "Pro pl'))
    fallback = make(settings_for(fake_openai, "openai"))
    result = await fallback.classify(TICKET)
    assert not result.valid
    assert any("malformed JSON" in e for e in result.errors)
    assert result.output["category"] == "Billing" and result.output["priority"] == "High"
    assert result.output["extracted_info"] == {"product": None, "error_code": None, "sentiment": None}
    assert result.output["reasoning"] is None
    assert result.confidence["category"] is not None and result.confidence["sentiment"] is None
    assert fallback.stats()["invalid_answers"] == 1
    assert fallback.stats()["breaker"]["consecutive_failures"] == 0  # it answered: the provider is up


async def test_unknown_label_is_dropped(provider, fake, make):
    answer = {**default_answer(), "priority": "Critical"}
    fake.script(Reply(answer))
    fallback = make(settings_for(fake, provider))
    result = await fallback.classify(TICKET)
    assert not result.valid
    assert result.output["priority"] is None
    assert result.output["category"] == "Billing"
    assert result.output["extracted_info"] == default_answer()["extracted_info"]
    assert any("priority" in e and "Critical" in e for e in result.errors)
    assert result.confidence["priority"] is None


async def test_anthropic_text_instead_of_tool_call(fake_anthropic, make):
    fake_anthropic.script(Reply("I think this is a billing issue."))
    fallback = make(settings_for(fake_anthropic, "anthropic"))
    result = await fallback.classify(TICKET)
    assert not result.valid and result.output["category"] is None
    assert any("tool" in e for e in result.errors)


# -- circuit breaker -----------------------------------------------------------------------------
async def test_breaker_opens_fails_fast_half_opens_and_closes(provider, fake, make):
    clock = FakeClock()
    fake.fail(500, times=2)
    fallback = make(settings_for(fake, provider, max_retries=0, breaker_failures=2, breaker_reset_s=30), clock=clock)

    for _ in range(2):
        with pytest.raises(HostedUnavailable) as info:
            await fallback.classify(TICKET)
        assert info.value.reason == "server_error"
    assert fallback.stats()["breaker"]["state"] == "open" and not fallback.available

    started = time.monotonic()
    with pytest.raises(HostedUnavailable) as info:
        await fallback.classify(TICKET)
    assert info.value.reason == "breaker_open"
    assert time.monotonic() - started < 0.1
    assert len(fake.requests) == 2  # failed fast: no request

    clock.now += 29.9
    assert not fallback.available
    clock.now += 0.2
    assert fallback.available and fallback.stats()["breaker"]["state"] == "half_open"
    result = await fallback.classify(TICKET)  # the trial call
    assert result.valid and len(fake.requests) == 3
    assert fallback.stats()["breaker"]["state"] == "closed" and fallback.available
    assert fallback.stats()["rejected"] == {"breaker_open": 1}


async def test_failed_trial_reopens_the_breaker(fake_openai, make):
    clock = FakeClock()
    fake_openai.fail(500, times=2)
    fallback = make(
        settings_for(fake_openai, "openai", max_retries=0, breaker_failures=1, breaker_reset_s=10), clock=clock
    )
    with pytest.raises(HostedUnavailable):
        await fallback.classify(TICKET)
    clock.now += 10
    with pytest.raises(HostedUnavailable) as info:
        await fallback.classify(TICKET)  # trial fails
    assert info.value.reason == "server_error"
    clock.now += 5
    with pytest.raises(HostedUnavailable) as info:
        await fallback.classify(TICKET)
    assert info.value.reason == "breaker_open"
    assert len(fake_openai.requests) == 2


async def test_cancelled_trial_does_not_wedge_the_breaker(fake_openai, make):
    """A caller giving up mid-trial (its own deadline) says nothing about the provider: the slot frees."""
    clock = FakeClock()
    fake_openai.script(Fail(500), Stall(2.0))
    fallback = make(
        settings_for(fake_openai, "openai", max_retries=0, breaker_failures=1, breaker_reset_s=10), clock=clock
    )
    with pytest.raises(HostedUnavailable):
        await fallback.classify(TICKET)
    clock.now += 10
    trial = asyncio.create_task(fallback.classify(TICKET))
    while len(fake_openai.requests) < 2:
        await asyncio.sleep(0.01)
    assert not fallback.available  # the one trial is in flight
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert fallback.available and fallback.stats()["breaker"]["state"] == "half_open"
    assert (await fallback.classify(TICKET)).valid
    assert fallback.stats()["breaker"]["state"] == "closed"


# -- configuration -------------------------------------------------------------------------------
async def test_disabled_sends_nothing(taxonomy, fake_openai):
    settings = settings_for(fake_openai, "openai", enabled=False)
    fallback = HostedFallback(settings, RedactionSettings(), taxonomy)  # no redactor needed when off
    assert not fallback.available
    with pytest.raises(HostedUnavailable) as info:
        await fallback.classify(TICKET)
    assert info.value.reason == "disabled"
    assert fake_openai.requests == []
    assert FallbackSettings().enabled is False  # off by default


async def test_api_key_from_named_env_var(fake_openai, make, monkeypatch):
    monkeypatch.setenv("TRIAGE_TEST_HOSTED_KEY", "sk-from-env")
    fallback = make(settings_for(fake_openai, "openai", api_key=None, api_key_env="TRIAGE_TEST_HOSTED_KEY"))
    await fallback.classify(TICKET)
    headers = dict(fake_openai.requests[0].headers)
    assert headers[b"authorization"] == b"Bearer sk-from-env"


def test_missing_api_key_fails_at_start(fake_openai, make, monkeypatch):
    monkeypatch.delenv("TRIAGE_TEST_HOSTED_KEY", raising=False)
    with pytest.raises(ValueError, match="TRIAGE_TEST_HOSTED_KEY"):
        make(settings_for(fake_openai, "openai", api_key=None, api_key_env="TRIAGE_TEST_HOSTED_KEY"))
    with pytest.raises(ValueError, match="api_key"):
        make(FallbackSettings(enabled=True))


async def test_an_error_code_not_in_the_ticket_is_dropped_one_in_it_is_kept(provider, fake, make):
    """The hosted answer is held to the local decoder's rule: an error code is a span of the ticket or null."""
    ticket = TicketInput("Portal down", "Since the update the portal answers HTTP 503 to every request.")
    invented = {**default_answer(), "extracted_info": {**default_answer()["extracted_info"], "error_code": "ERR-9999"}}
    copied = {**default_answer(), "extracted_info": {**default_answer()["extracted_info"], "error_code": "HTTP 503"}}
    fake.script(Reply(invented), Reply(copied))
    fallback = make(settings_for(fake, provider))
    first = await fallback.classify(ticket)
    assert first.output["extracted_info"]["error_code"] is None
    assert any("ERR-9999" in e and "not a span" in e for e in first.errors)
    second = await fallback.classify(ticket)
    assert second.output["extracted_info"]["error_code"] == "HTTP 503" and second.valid
