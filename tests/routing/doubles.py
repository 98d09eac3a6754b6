"""`ScriptedEngine`: a test double of the Engine seam, not of the code under test.

It stands in for an engine that cannot run in these tests (a second local model, a remote GPU
server): it answers every ticket with a fixed, schema-valid output and per-ticket *scripted*
confidences, so the routing decisions built on top of an engine (thresholds, re-review, backup,
hosted fallback, cache, cost, deadlines) can be exercised in milliseconds. The real engine is
exercised in tests/engines and tests/api.

Scripting is keyed by the ticket's subject:
    first[subject]    -> confidences of the first answer (default: all 0.9)
    reviewed[subject] -> confidences of the review answer (default: the first ones)
    outputs[subject]  -> the output object (default: `OUTPUT`)
`fail` makes every call raise (EngineUnavailable, EngineOverloaded, RuntimeError, ...);
`delay_s` makes every call take that long; `on_classify` is called with the items of each call.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from typing import Any

from server.engines.base import Engine, EngineError, EngineOutput, ModelInfo, ReviewInput
from server.prompts import TicketInput

OUTPUT: dict[str, Any] = {
    "category": "Billing",
    "priority": "High",
    "extracted_info": {"product": None, "error_code": None, "sentiment": "negative"},
    "reasoning": "charged twice",
}
CONFIDENT = {"category": 0.9, "priority": 0.9, "sentiment": 0.9}


class ScriptedEngine(Engine):
    def __init__(
        self,
        name: str = "scripted",
        *,
        base: str = "/models/base-model",
        adapter: str | None = None,
        review: bool = False,
        first: dict[str, dict[str, float | None]] | None = None,
        reviewed: dict[str, dict[str, float | None]] | None = None,
        outputs: dict[str, dict[str, Any]] | None = None,
        delay_s: float = 0.0,
        fail: BaseException | None = None,
        item_errors: set[str] | None = None,
        on_classify: Callable[[list[TicketInput | ReviewInput]], None] | None = None,
        ready: bool = True,
        load_error: str | None = None,
    ):
        self.name = name
        self.base, self.adapter = base, adapter
        self.review = review
        self.first = dict(first or {})
        self.reviewed = dict(reviewed or {})
        self.outputs = dict(outputs or {})
        self.delay_s = delay_s
        self.fail = fail
        self.item_errors = set(item_errors or ())
        self.on_classify = on_classify
        self._ready = ready
        self.load_error = load_error
        self.calls: list[list[TicketInput | ReviewInput]] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    @property
    def supports_review(self) -> bool:
        return self.review

    async def classify(self, tickets: Sequence[TicketInput | ReviewInput]) -> list[EngineOutput | EngineError]:
        items = list(tickets)
        self.calls.append(items)
        if self.on_classify is not None:
            self.on_classify(items)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        out: list[EngineOutput | EngineError] = []
        for item in items:
            ticket = item.ticket if isinstance(item, ReviewInput) else item
            if ticket.subject in self.item_errors:
                out.append(EngineError(f"could not encode {ticket.subject}"))
                continue
            conf = self.first.get(ticket.subject, CONFIDENT)
            if isinstance(item, ReviewInput):
                conf = self.reviewed.get(ticket.subject, conf)
            out.append(
                EngineOutput(
                    output=copy.deepcopy(self.outputs.get(ticket.subject, OUTPUT)),
                    confidence=dict(conf),
                    raw_text="{}",
                    prompt_tokens=100,
                    completion_tokens=20,
                    truncated=False,
                    prompt_version="review/v2" if isinstance(item, ReviewInput) else "classify/v1",
                )
            )
        return out

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.base, self.adapter, "float32", self.name)

    @property
    def prompt_version(self) -> str:
        return "classify/v1"

    def stats(self) -> dict[str, Any]:
        return {"calls": len(self.calls)}

    # -- helpers for assertions ---------------------------------------------------------------
    @property
    def reviews(self) -> list[ReviewInput]:
        return [i for call in self.calls for i in call if isinstance(i, ReviewInput)]

    @property
    def tickets_seen(self) -> list[TicketInput]:
        return [i for call in self.calls for i in call if not isinstance(i, ReviewInput)]
