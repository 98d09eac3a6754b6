"""The engine seam: every backend (embedded transformers, Outlines reference, later vLLM or hosted)
takes a batch of tickets and returns one outcome per ticket, in order."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from server.prompts import TicketInput
from server.results import ClassificationResult


class EngineError(RuntimeError):
    """A ticket the engine could not answer; stored as a failure."""


class EngineOverloaded(EngineError):
    """The bounded queue is full: the API answers 429 with Retry-After."""

    def __init__(self, retry_after_s: float = 1.0):
        super().__init__("engine queue is full")
        self.retry_after_s = retry_after_s


class EngineTimeout(EngineError):
    """The request's deadline passed before the engine answered (the service stores a needs_review result)."""


class EngineUnavailable(EngineError):
    """Model not loaded or engine stopped: the API answers 503."""


@dataclass(frozen=True)
class ReviewInput:
    """A second look at a ticket whose first answer was unsure: rendered with the review prompt."""

    ticket: TicketInput
    previous: dict[str, Any]  # the first answer
    uncertain: tuple[str, ...]  # the label fields under their thresholds


# Every backend answers with the one typed result (server.results); the old name stays for callers.
EngineOutput = ClassificationResult


@dataclass(frozen=True)
class ModelInfo:
    base: str
    adapter: str | None
    dtype: str
    engine: str

    def as_dict(self) -> dict[str, str | None]:
        """The `model` block of API answers, health and stored results (one spelling of its keys)."""
        return {"base": self.base, "adapter": self.adapter, "dtype": self.dtype, "engine": self.engine}


class Engine(abc.ABC):
    """Async and batch-first; implementations own their queueing and threads."""

    name: str = "engine"

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def classify(self, tickets: Sequence[TicketInput | ReviewInput]) -> list[EngineOutput | EngineError]:
        """One outcome per ticket, in order; a failing ticket yields an EngineError, not an exception.
        A ReviewInput is answered with the review prompt (only where `supports_review`)."""

    @property
    def supports_review(self) -> bool:
        return False

    @property
    @abc.abstractmethod
    def ready(self) -> bool: ...

    @property
    @abc.abstractmethod
    def info(self) -> ModelInfo: ...

    @property
    def prompt_version(self) -> str:
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        return {}
