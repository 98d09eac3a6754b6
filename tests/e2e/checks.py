"""Assertions shared by the HTTP tests: the full classification schema of the default taxonomy."""

from __future__ import annotations

import re
from typing import Any

CATEGORIES = {"Sales", "Technical", "Billing", "General"}
PRIORITIES = {"Low", "Medium", "High", "Urgent"}
SENTIMENTS = {"positive", "neutral", "negative"}
RESULT_KEYS = {
    "ticket_id",
    "category",
    "priority",
    "extracted_info",
    "reasoning",
    "confidence",
    "needs_review",
    "model",
    "prompt_version",
    "taxonomy",
    "latency_ms",
    "usage",
    "input_truncated",
    "request_id",
    "route",
    "review_reasons",
    "cache",
    "cache_similarity",
    "engine",
    "cost_usd",
}
ROUTES = {"local", "local+review", "hosted", "human", "cache"}


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

    # A near-duplicate cache hit reuses labels only: its free text is null and listed in cache_omitted.
    omitted = body.get("cache_omitted") or []
    assert isinstance(body["reasoning"], str) or "reasoning" in omitted, body["reasoning"]

    conf = body["confidence"]
    assert set(conf) == {"category", "priority", "sentiment"}, conf
    for name, value in conf.items():
        assert isinstance(value, float) and not isinstance(value, bool), (name, value)
        assert 0.0 <= value <= 1.0, (name, value)

    assert isinstance(body["needs_review"], bool)
    if threshold is not None:
        assert body["needs_review"] == any(c < threshold for c in conf.values()), (
            threshold,
            conf,
            body["needs_review"],
        )
        low = {name: c for name, c in conf.items() if c < threshold}
        if low:
            assert body["route"] == "human" and body["review_reasons"] is not None, body
            assert {k: v for k, v in body["review_reasons"].items() if k in conf} == low, body["review_reasons"]

    # Routing: how the answer was reached, by which engine, at what cost.
    assert body["route"] in ROUTES, body["route"]
    assert body["needs_review"] == (body["route"] == "human") or body["route"] == "hosted", body
    assert body["cache"] in (None, "exact", "near") and (body["cache"] is not None) == (body["route"] == "cache"), body
    assert body["cache_similarity"] is None or 0 < body["cache_similarity"] <= 1
    assert isinstance(body["engine"], str) and ":" in body["engine"], body["engine"]
    assert isinstance(body["cost_usd"], (int, float)) and body["cost_usd"] >= 0
    assert body["review_reasons"] is None or (isinstance(body["review_reasons"], dict) and body["needs_review"]), body

    model = body["model"]
    assert set(model) >= {"base", "adapter"}, model
    assert isinstance(model["base"], str) and model["base"]
    assert model["adapter"] is None or isinstance(model["adapter"], str)

    # An adapter is served with the prompt it was trained on (the shipped one: v2); the bare base with v1.
    classify = "classify/v2" if model["adapter"] else "classify/v1"
    # A re-reviewed answer names the review prompt that produced it.
    assert body["prompt_version"] in (classify, classify.replace("classify/", "review/")), (
        body["prompt_version"],
        model,
    )
    assert body["taxonomy"] == "tickets@1"
    assert isinstance(body["latency_ms"], (int, float)) and body["latency_ms"] > 0
    usage = body["usage"]
    spent = body["route"] != "cache"  # a cache hit spends no tokens
    assert isinstance(usage["prompt_tokens"], int) and (usage["prompt_tokens"] > 0) == spent, usage
    assert isinstance(usage["completion_tokens"], int) and (usage["completion_tokens"] > 0) == spent, usage
    assert isinstance(body["input_truncated"], bool)
    assert isinstance(body["request_id"], str) and re.fullmatch(r"[0-9a-f]{32}", body["request_id"]), body["request_id"]
