"""Assertions shared by the HTTP tests: the full classification schema of the default taxonomy."""

from __future__ import annotations

import re
from typing import Any

CATEGORIES = {"Sales", "Technical", "Billing", "General"}
PRIORITIES = {"Low", "Medium", "High", "Urgent"}
SENTIMENTS = {"positive", "neutral", "negative"}
RESULT_KEYS = {
    "ticket_id", "category", "priority", "extracted_info", "reasoning", "confidence", "needs_review", "model",
    "prompt_version", "taxonomy", "latency_ms", "usage", "input_truncated", "request_id",
}


def assert_error_body(r: Any, *statuses: int) -> dict[str, Any]:
    """A clear 4xx: the status is one of `statuses`, the body is JSON with non-empty `error` and `message`."""
    assert r.status_code in statuses, f"expected {statuses}, got {r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str) and body["message"].strip(), body
    return body


def assert_full_result(body: dict[str, Any], *, ticket_id: str | None = None, threshold: float | None = 0.5) -> None:
    """Every field of a classification result, with types and allowed values."""
    missing = RESULT_KEYS - body.keys()
    assert not missing, f"missing {missing} in {body}"
    assert "error" not in body, body
    assert isinstance(body["ticket_id"], str) and body["ticket_id"]
    if ticket_id is not None:
        assert body["ticket_id"] == ticket_id
    assert body["category"] in CATEGORIES, body["category"]
    assert body["priority"] in PRIORITIES, body["priority"]

    info = body["extracted_info"]
    assert isinstance(info, dict), info
    assert {"product", "error_code", "sentiment"} <= info.keys(), info
    assert info["product"] is None or isinstance(info["product"], str), info
    assert info["error_code"] is None or isinstance(info["error_code"], str), info
    assert info["sentiment"] in SENTIMENTS, info

    assert isinstance(body["reasoning"], str), body["reasoning"]

    conf = body["confidence"]
    assert set(conf) == {"category", "priority", "sentiment"}, conf
    for name, value in conf.items():
        assert isinstance(value, float) and not isinstance(value, bool), (name, value)
        assert 0.0 <= value <= 1.0, (name, value)

    assert isinstance(body["needs_review"], bool)
    if threshold is not None:
        assert body["needs_review"] == any(c < threshold for c in conf.values()), (threshold, conf, body["needs_review"])

    model = body["model"]
    assert set(model) >= {"base", "adapter"}, model
    assert isinstance(model["base"], str) and model["base"]
    assert model["adapter"] is None or isinstance(model["adapter"], str)

    assert body["prompt_version"] == "classify/v1"
    assert body["taxonomy"] == "tickets@1"
    assert isinstance(body["latency_ms"], (int, float)) and body["latency_ms"] > 0
    usage = body["usage"]
    assert isinstance(usage["prompt_tokens"], int) and usage["prompt_tokens"] > 0, usage
    assert isinstance(usage["completion_tokens"], int) and usage["completion_tokens"] > 0, usage
    assert isinstance(body["input_truncated"], bool)
    assert isinstance(body["request_id"], str) and re.fullmatch(r"[0-9a-f]{32}", body["request_id"]), body["request_id"]
