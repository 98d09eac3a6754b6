"""The asked fields through the routing stages that build answers outside the local engine: the hosted
fallback is asked for the full answer and only the asked fields are kept; a deadline's null answer has
only the asked fields; a partly invalid hosted answer is judged on the asked label fields' values."""

from __future__ import annotations

import math

from server.fields import resolve_fields
from server.service import TicketRequest
from tests.fallback.fake_hosted import Reply, default_answer
from tests.routing.conftest import fallback_settings, stored
from tests.routing.doubles import ScriptedEngine

LOW_PRIORITY = {"category": 0.9, "priority": 0.3, "sentiment": 0.8}
BODY = "I was charged twice for my invoice, please refund one of them."


async def test_a_hosted_answer_keeps_only_the_asked_fields(make_service, fake_openai, store, taxonomy) -> None:
    fake_openai.script(Reply(value_logprobs={"Billing": math.log(0.7), "High": math.log(0.6)}))
    service = make_service(
        ScriptedEngine(first={"p": LOW_PRIORITY}), hosted=True, fallback=fallback_settings(fake_openai)
    )
    fields = resolve_fields(["priority", "category"], taxonomy)
    (out,) = await service.classify_many([TicketRequest("p", BODY, fields=fields)])
    body = out.result
    assert body is not None and body["route"] == "hosted" and body["needs_review"] is False
    assert (body["category"], body["priority"], body["fields"]) == ("Billing", "High", ["category", "priority"])
    assert "extracted_info" not in body and "reasoning" not in body  # the hosted answer had them
    assert set(body["confidence"]) == {"category", "priority"}
    (row,) = stored(store)
    assert row.fields == ["category", "priority"] and set(row.prediction) == {"category", "priority"}
    (sent,) = fake_openai.requests
    assert b"reasoning" in sent.raw  # asked for the full answer: one prompt and schema for every request


async def test_a_partly_invalid_hosted_answer_with_fields(make_service, fake_openai, taxonomy) -> None:
    bad = default_answer()
    bad["priority"] = "Critical"  # invalid: falls back to the local answer's priority
    fake_openai.script(Reply(answer=bad))
    service = make_service(
        ScriptedEngine(first={"p": LOW_PRIORITY}), hosted=True, fallback=fallback_settings(fake_openai)
    )
    (out,) = await service.classify_many(
        [TicketRequest("p", BODY, fields=resolve_fields(["priority", "sentiment"], taxonomy))]
    )
    body = out.result
    assert body is not None and body["route"] == "hosted" and body["needs_review"] is True
    assert body["priority"] == "High" and body["confidence"]["priority"] == 0.3 and "category" not in body
    assert set(body["review_reasons"]) == {"hosted_invalid", "priority"}


async def test_a_deadline_answer_has_only_the_asked_fields(make_service, store, taxonomy) -> None:
    service = make_service(ScriptedEngine(delay_s=5), engine={"request_timeout_s": 0.3})
    (out,) = await service.classify_many([TicketRequest("slow", BODY, fields=resolve_fields(["category"], taxonomy))])
    body = out.result
    assert body is not None and (body["route"], body["needs_review"]) == ("human", True)
    assert body["category"] is None and body["confidence"] == {"category": None} and "priority" not in body
    (row,) = stored(store)
    assert row.fields == ["category"] and row.prediction == {"category": None}
