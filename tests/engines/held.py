"""A runner wrapper for tests: its decode loop admits the first tickets, then holds before admitting
more until the test releases it, so a test knows tickets are in flight without sleeping."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from server.engines.base import Deliver, Item, ModelInfo, Outcome, Runner, Take


class HeldRunner:
    def __init__(self, inner: Runner):
        self.inner = inner
        self.in_flight = threading.Event()  # set once the loop has admitted and is about to admit more
        self.release = threading.Event()

    @property
    def info(self) -> ModelInfo:
        return self.inner.info

    @property
    def prompt_version(self) -> str:
        return self.inner.prompt_version

    @property
    def supports_review(self) -> bool:
        return self.inner.supports_review

    def stats(self) -> dict[str, Any]:
        return self.inner.stats()

    def run(self, items: Sequence[Item]) -> list[Outcome]:
        return self.inner.run(items)

    def run_stream(self, take: Take, deliver: Deliver, max_batch: int | None = None) -> None:
        calls = 0

        def held_take(k: int) -> list[tuple[Any, Item]]:
            nonlocal calls
            calls += 1
            if calls > 1 and not self.release.is_set():
                self.in_flight.set()
                assert self.release.wait(120), "the test never released the runner"
            return take(k)

        self.inner.run_stream(held_take, deliver, max_batch)

    async def wait_in_flight(self) -> None:
        assert await asyncio.to_thread(self.in_flight.wait, 120), "the runner never got tickets in flight"
