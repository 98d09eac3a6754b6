"""The naive reference feeds the model exactly the renderer's prompt tokens (the embedded engine's and
the fine-tuning job's), not a second chat template around them."""

from __future__ import annotations

import pytest

from server.engines.outlines.reference import OutlinesReference
from server.prompts import TicketInput
from tests.conftest import SEED_TICKET

pytestmark = pytest.mark.model


def test_the_reference_sends_the_rendered_prompt_as_is(runner, fast_settings, taxonomy) -> None:
    seen: list[list[int]] = []

    def record(module, args, kwargs):  # the ids of every forward pass the generator makes
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen.append(ids[0].tolist())

    ref = OutlinesReference(fast_settings, taxonomy, model=runner.model, tokenizer=runner.tokenizer, max_new_tokens=2)
    ticket = TicketInput(SEED_TICKET["subject"], SEED_TICKET["body"])
    hook = runner.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        ref.run_one(ticket)
    finally:
        hook.remove()
    assert seen and seen[0] == ref.renderer.render(ticket).ids
