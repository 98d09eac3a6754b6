"""Test doubles standing in for the hosted OpenAI and Anthropic APIs - not the real services.

Each fake is a real HTTP server (FastAPI on uvicorn, 127.0.0.1, a free port, in a background
thread) speaking the providers' wire formats - OpenAI Chat Completions (POST /v1/chat/completions,
with token logprobs) and Anthropic Messages (POST /v1/messages, forced tool_use) - so the code under
test goes through the official SDKs and a real socket. A fake records the exact bytes of every
request it receives (headers as received, body byte for byte) and is scripted per test with a
queue of actions: answer with a given JSON or raw text, fail with a status, stall past the client's
timeout, or trickle the answer out a few bytes at a time. With an empty script it answers `default_answer()`.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse


def default_answer() -> dict[str, Any]:
    """A valid answer for the `tickets` taxonomy (a fresh copy each time: tests may modify it)."""
    return {
        "category": "Billing",
        "priority": "High",
        "extracted_info": {"product": "Pro plan", "error_code": None, "sentiment": "negative"},
        "reasoning": "The customer was charged twice and wants the money back.",
    }


DEFAULT_LOGPROB = -0.001  # every token not named in Reply.value_logprobs
Answer = dict[str, Any] | str
AnswerFn = Callable[[dict[str, Any]], Answer]  # the parsed request JSON -> the answer (e.g. to echo a placeholder)


@dataclass
class Reply:
    """Answer 200. A dict is the model's JSON answer; a str is sent verbatim as the model's text (malformed JSON)."""

    answer: Answer | AnswerFn = field(default_factory=default_answer)
    value_logprobs: dict[str, float] = field(default_factory=dict)  # value text -> logprob of its first token
    logprobs: bool = True
    usage: tuple[int, int] | None = None  # (input, output) tokens; default: estimated from sizes


@dataclass
class Fail:
    status: int
    retry_after: float | None = None


@dataclass
class Stall:
    """Sleep before answering: long enough and the client has timed out and gone."""

    seconds: float
    then: Reply = field(default_factory=Reply)


@dataclass
class Trickle:
    """Send the answer a few bytes at a time: every read is quick, the whole answer is not."""

    interval_s: float
    then: Reply = field(default_factory=Reply)


Action = Reply | Fail | Stall | Trickle


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    @property
    def raw(self) -> bytes:
        head = f"{self.method} {self.path} HTTP/1.1\r\n".encode() + b"".join(
            k + b": " + v + b"\r\n" for k, v in self.headers
        )
        return head + b"\r\n" + self.body

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


def fake_tokens(text: str) -> list[str]:
    """Split like a BPE tokenizer roughly would: short letter runs, digit runs, punctuation runs."""
    return re.findall(r"[A-Za-z]{1,5}|\d+|\s+|[^A-Za-z\d\s]+", text)


def token_logprobs(text: str, value_logprobs: dict[str, float]) -> list[float]:
    """DEFAULT_LOGPROB everywhere; a listed value's first token gets its logprob, the rest of the value 0."""
    tokens = fake_tokens(text)
    starts = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    out = [DEFAULT_LOGPROB] * len(tokens)
    for value, logprob in value_logprobs.items():
        match = re.search(r'"\s*:\s*"(' + re.escape(value) + r')"', text)
        if not match:
            continue
        lo, hi = match.span(1)
        inside = [i for i, s in enumerate(starts) if lo <= s < hi]
        for i in inside:
            out[i] = 0.0
        if inside:
            out[inside[0]] = logprob
    return out


class FakeHostedAPI:
    """Shared machinery: scripting, recording, the server thread. Subclasses render success and errors."""

    route = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._script: deque[Action] = deque()
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = FastAPI()
        self.app.post(self.route)(self._handle)

    # -- scripting ------------------------------------------------------------------------------
    def script(self, *actions: Action) -> None:
        with self._lock:
            self._script.extend(actions)

    def fail(self, status: int, times: int = 1, retry_after: float | None = None) -> None:
        self.script(*[Fail(status, retry_after) for _ in range(times)])

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- serving --------------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        with self._lock:
            self.requests.append(RecordedRequest(request.method, request.url.path, tuple(request.headers.raw), body))
            action: Action = self._script.popleft() if self._script else Reply()
        if isinstance(action, Stall):
            await asyncio.sleep(action.seconds)
            action = action.then
        if isinstance(action, Trickle):
            payload = json.loads(body)
            reply = action.then
            answer = reply.answer(payload) if callable(reply.answer) else reply.answer
            data = json.dumps(self.success_body(payload, answer, reply, len(body))).encode()
            return StreamingResponse(_trickle(data, action.interval_s), media_type="application/json")
        if isinstance(action, Fail):
            headers = {"retry-after": str(action.retry_after)} if action.retry_after is not None else {}
            return JSONResponse(self.error_body(action.status), status_code=action.status, headers=headers)
        payload = json.loads(body)
        answer = action.answer(payload) if callable(action.answer) else action.answer
        return JSONResponse(self.success_body(payload, answer, action, len(body)))

    def success_body(self, request: dict[str, Any], answer: Answer, reply: Reply, request_size: int) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(self, status: int) -> dict[str, Any]:
        raise NotImplementedError

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake hosted server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)


async def _trickle(data: bytes, interval_s: float) -> Any:
    for i in range(0, len(data), 8):
        yield data[i : i + 8]
        await asyncio.sleep(interval_s)


class FakeOpenAI(FakeHostedAPI):
    route = "/v1/chat/completions"

    def success_body(self, request: dict[str, Any], answer: Answer, reply: Reply, request_size: int) -> dict[str, Any]:
        content = answer if isinstance(answer, str) else json.dumps(answer)
        tokens = fake_tokens(content)
        logprobs = None
        if reply.logprobs:
            values = token_logprobs(content, reply.value_logprobs)
            logprobs = {
                "content": [
                    {
                        "token": tok,
                        "logprob": lp,
                        "bytes": list(tok.encode("utf-8")),
                        "top_logprobs": [{"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8"))}],
                    }
                    for tok, lp in zip(tokens, values)
                ],
                "refusal": None,
            }
        prompt_tokens, completion_tokens = reply.usage or (request_size // 4, len(tokens))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": logprobs,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def error_body(self, status: int) -> dict[str, Any]:
        kind = {429: "rate_limit_exceeded", 400: "invalid_request_error", 401: "invalid_api_key"}.get(
            status, "server_error"
        )
        return {"error": {"message": f"fake error {status}", "type": kind, "param": None, "code": kind}}


class FakeAnthropic(FakeHostedAPI):
    route = "/v1/messages"

    def success_body(self, request: dict[str, Any], answer: Answer, reply: Reply, request_size: int) -> dict[str, Any]:
        if isinstance(answer, str):  # the model wrote text instead of calling the tool
            content: list[dict[str, Any]] = [{"type": "text", "text": answer}]
            stop_reason = "end_turn"
        else:
            tool = (request.get("tool_choice") or {}).get("name") or request["tools"][0]["name"]
            content = [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": tool, "input": answer}]
            stop_reason = "tool_use"
        input_tokens, output_tokens = reply.usage or (request_size // 4, len(fake_tokens(json.dumps(answer))))
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": request.get("model", "fake-model"),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }

    def error_body(self, status: int) -> dict[str, Any]:
        kind = {
            429: "rate_limit_error",
            400: "invalid_request_error",
            401: "authentication_error",
            529: "overloaded_error",
        }.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": f"fake error {status}"}}


def _serve(fake: FakeHostedAPI) -> Iterator[FakeHostedAPI]:
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


# One server per provider per session (start-up is the slow part); the per-test fixtures reset it.
@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeHostedAPI]:
    yield from _serve(FakeOpenAI())


@pytest.fixture(scope="session")
def anthropic_server() -> Iterator[FakeHostedAPI]:
    yield from _serve(FakeAnthropic())


@pytest.fixture
def fake_openai(openai_server: FakeHostedAPI) -> FakeHostedAPI:
    openai_server.reset()
    return openai_server


@pytest.fixture
def fake_anthropic(anthropic_server: FakeHostedAPI) -> FakeHostedAPI:
    anthropic_server.reset()
    return anthropic_server
