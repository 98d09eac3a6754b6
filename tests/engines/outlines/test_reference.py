"""The Outlines reference is a runner like the embedded one: served by the same engine, one ticket at a
time, with null confidences and no second look."""

from __future__ import annotations

import asyncio

import pytest

from server.engines.base import EngineError, EngineOutput, ModelInfo, ReviewInput, served_by
from server.engines.outlines.reference import OutlinesReference, OutlinesReferenceEngine
from server.prompts import TicketInput
from tests.conftest import ACTIVE_ADAPTER, ACTIVE_PROMPT, SEED_TICKET

pytestmark = pytest.mark.model


async def test_the_reference_runner_is_served_by_the_generic_engine(fast_settings, taxonomy, runner):
    ref = OutlinesReference(fast_settings, taxonomy, model=runner.model, tokenizer=runner.tokenizer)
    engine = OutlinesReferenceEngine(fast_settings, taxonomy, runner=ref)
    ticket = TicketInput(SEED_TICKET["subject"], SEED_TICKET["body"])
    await engine.start()
    try:
        answer, review = await asyncio.wait_for(
            engine.classify([ticket, ReviewInput(ticket, {"category": "Technical"}, ("priority",))]), 300
        )
    finally:
        await engine.stop()
    assert engine.info == ModelInfo(fast_settings.model.base, ACTIVE_ADAPTER, "float32", "outlines")
    assert engine.prompt_version == ACTIVE_PROMPT and not engine.supports_review
    assert isinstance(answer, EngineOutput) and served_by(answer) == engine.info
    assert answer.prompt_version == ACTIVE_PROMPT and set(answer.confidence.values()) == {None}
    assert isinstance(review, EngineError)
    assert engine.stats()["items"] == 2
