"""Thin adapters over the official OpenAI and Anthropic SDKs with one shape of answer and error.

The SDKs' own retries are switched off (max_retries=0): retries happen in `hosted.py`, where they
are counted, bounded by settings and visible to the circuit breaker.

Each SDK gets its own HTTP client carrying `server.egress.on_request` as a request hook: the exact bytes of
every request body sent are recorded for the audit, at the last point before the socket, after redaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import anthropic
import openai

from server.egress import on_request

from .answer import TokenLogprob
from .errors import ProviderError

# Explicit defaults, so an unset base_url never silently picks up OPENAI_BASE_URL / ANTHROPIC_BASE_URL.
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
ANTHROPIC_DEFAULT_BASE_URL = "https://api.anthropic.com"
# The answer is a few short fields; the cap bounds cost if a model rambles in the free-text fields.
MAX_OUTPUT_TOKENS = 1024
TOOL_NAME = "record_classification"


@dataclass
class ProviderAnswer:
    content: str | dict[str, Any] | None  # JSON text (OpenAI) or the parsed tool input (Anthropic)
    logprobs: list[TokenLogprob] | None
    input_tokens: int
    output_tokens: int
    model: str
    notes: list[str]  # refusals, truncation: reasons an answer may be incomplete


class Provider(Protocol):
    name: str
    model: str

    async def complete(self, *, system: str, user: str) -> ProviderAnswer: ...

    async def aclose(self) -> None: ...


def schema_name(text: str) -> str:
    """Both APIs accept only [a-zA-Z0-9_-]{1,64} as a schema/tool name."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)[:64] or "classification"


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("retry-after") if headers is not None else None
        return float(value) if value is not None else None
    except (TypeError, ValueError):  # an HTTP-date Retry-After: fall back to our own backoff
        return None


def _status_error(status: int, detail: str, headers: Any) -> ProviderError:
    if status == 429:
        return ProviderError("rate_limited", detail, retryable=True, retry_after=_retry_after(headers))
    if status == 408:
        return ProviderError("timeout", detail, retryable=True)
    if status >= 500:
        return ProviderError("server_error", detail, retryable=True, retry_after=_retry_after(headers))
    return ProviderError("error", detail, retryable=False)  # 400/401/403/404/422: retrying cannot help


def _sdk_error(sdk: Any, exc: Exception) -> ProviderError:
    """Map an `openai` or `anthropic` SDK exception (both SDKs name their error classes alike)."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderError("timeout", "request timed out", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderError("error", f"connection failed: {type(exc.__cause__ or exc).__name__}", retryable=True)
    if isinstance(exc, sdk.APIStatusError):
        return _status_error(exc.status_code, f"HTTP {exc.status_code}", exc.response.headers)
    return ProviderError("error", type(exc).__name__, retryable=False)


class OpenAIProvider:
    """Chat Completions with strict JSON-schema output and token logprobs (for label confidence)."""

    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None,
        timeout_s: float,
        schema: dict[str, Any],
        schema_title: str,
    ) -> None:
        self.model = model
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or OPENAI_DEFAULT_BASE_URL,
            timeout=timeout_s,
            max_retries=0,
            # The SDK's own defaults (connection limits, redirects), plus the audit hook.
            http_client=openai.DefaultAsyncHttpxClient(event_hooks={"request": [on_request]}),
        )
        self._response_format: Any = {
            "type": "json_schema",
            "json_schema": {"name": schema_name(schema_title), "schema": schema, "strict": True},
        }

    async def complete(self, *, system: str, user: str) -> ProviderAnswer:
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                response_format=self._response_format,
                logprobs=True,
                temperature=0,
                max_completion_tokens=MAX_OUTPUT_TOKENS,
            )
        except openai.OpenAIError as exc:
            raise _sdk_error(openai, exc) from exc
        usage = response.usage
        notes: list[str] = []
        content: str | None = None
        logprobs: list[TokenLogprob] | None = None
        if response.choices:
            choice = response.choices[0]
            content = choice.message.content
            refusal = getattr(choice.message, "refusal", None)
            if refusal:
                notes.append("the model refused to answer")
            if choice.finish_reason == "length":
                notes.append("the answer was cut off at the token limit")
            if choice.logprobs is not None and choice.logprobs.content:
                logprobs = [
                    TokenLogprob(bytes(t.bytes) if t.bytes is not None else t.token.encode("utf-8"), float(t.logprob))
                    for t in choice.logprobs.content
                ]
        return ProviderAnswer(
            content=content,
            logprobs=logprobs,
            input_tokens=(usage.prompt_tokens or 0) if usage else 0,
            output_tokens=(usage.completion_tokens or 0) if usage else 0,
            model=response.model or self.model,
            notes=notes,
        )

    async def aclose(self) -> None:
        await self._client.close()


class AnthropicProvider:
    """Messages API; the answer is the input of a forced tool call whose input_schema is the output schema.

    Anthropic offers no token logprobs, so answers from it carry no confidence.
    """

    name = "anthropic"

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None,
        timeout_s: float,
        schema: dict[str, Any],
        schema_title: str,
    ) -> None:
        self.model = model
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or ANTHROPIC_DEFAULT_BASE_URL,
            timeout=timeout_s,
            max_retries=0,
            http_client=anthropic.DefaultAsyncHttpxClient(event_hooks={"request": [on_request]}),
        )
        self._tool: Any = {
            "name": TOOL_NAME,
            "description": f"Record the classification of the ticket ({schema_title}).",
            "input_schema": schema,
        }

    async def complete(self, *, system: str, user: str) -> ProviderAnswer:
        try:
            response = await self._client.messages.create(
                model=self.model,
                max_tokens=MAX_OUTPUT_TOKENS,
                system=system,
                messages=[{"role": "user", "content": user}],
                tools=[self._tool],
                # No temperature: this SDK version no longer accepts it on messages.create.
                tool_choice={"type": "tool", "name": TOOL_NAME},
            )
        except anthropic.AnthropicError as exc:
            raise _sdk_error(anthropic, exc) from exc
        notes: list[str] = []
        content: dict[str, Any] | None = None
        for block in response.content or []:
            if isinstance(block, anthropic.types.ToolUseBlock) and block.name == TOOL_NAME:
                content = block.input if isinstance(block.input, dict) else None
                break
        if content is None:
            notes.append(f"no {TOOL_NAME} tool call in the response (stop_reason={response.stop_reason})")
        if response.stop_reason == "max_tokens":
            notes.append("the answer was cut off at the token limit")
        usage = response.usage
        # Cached prompt tokens are billed differently; counting them as input overstates cost, never understates it.
        input_tokens = (
            (usage.input_tokens or 0)
            + (getattr(usage, "cache_read_input_tokens", 0) or 0)
            + (getattr(usage, "cache_creation_input_tokens", 0) or 0)
        )
        return ProviderAnswer(
            content=content,
            logprobs=None,
            input_tokens=input_tokens,
            output_tokens=usage.output_tokens or 0,
            model=response.model or self.model,
            notes=notes,
        )

    async def aclose(self) -> None:
        await self._client.close()
