"""The engine seam, two levels.

A `Runner` is synchronous: a batch of tickets in, one outcome per ticket out, in order (offline tools
call it directly, see `server.engines.open_runner`). An `Engine` is what the server awaits: it owns
queueing and threads; `server.engines.served.ServedEngine` turns any runner into one."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from server.prompts import TicketInput
from server.results import ClassificationResult

if TYPE_CHECKING:
    from server.registry import AdapterEntry


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


Item: TypeAlias = "TicketInput | ReviewInput"
Outcome: TypeAlias = "ClassificationResult | EngineError"
# The stream contract between a batcher and a runner: `take(k)` hands over up to k (key, item) pairs
# (none: the source is dry), `deliver(key, outcome)` hands one answer back as soon as it is ready.
Take: TypeAlias = "Callable[[int], list[tuple[Any, Item]]]"
Deliver: TypeAlias = "Callable[[Any, Outcome], None]"
# Which adapter a runner serves: an entry, the bare base model, or "resolve" (as the settings say).
AdapterChoice: TypeAlias = "AdapterEntry | None | Literal['resolve']"


class Runner(Protocol):
    """A loaded model that answers tickets synchronously, on the caller's thread (not thread-safe)."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def prompt_version(self) -> str: ...

    @property
    def supports_review(self) -> bool:
        """Whether a ReviewInput gets a second look (else it is answered with an EngineError)."""
        ...

    def run(self, items: Sequence[Item]) -> list[Outcome]:
        """One outcome per item, in order; a failing item yields an EngineError, not an exception."""
        ...

    def run_stream(self, take: Take, deliver: Deliver, max_batch: int | None = None) -> None:
        """Answer items from `take` until it runs dry and every taken item is delivered."""
        ...

    def stats(self) -> dict[str, Any]: ...


def run_to_list(run_stream: Callable[[Take, Deliver], None], items: Sequence[Item]) -> list[Outcome]:
    """`Runner.run` for any runner: its streaming loop over a list source."""
    results: list[Outcome | None] = [None] * len(items)
    todo: list[tuple[Any, Item]] = list(enumerate(items))

    def take(k: int) -> list[tuple[Any, Item]]:
        nonlocal todo
        got, todo = todo[:k], todo[k:]
        return got

    def deliver(key: Any, outcome: Outcome) -> None:
        results[key] = outcome

    run_stream(take, deliver)
    return [r if r is not None else EngineError("the runner returned no answer") for r in results]


# Where a served answer records the model that produced it: a swap may finish between the answer
# and the caller's look at `Engine.info`, so the answer carries its own provenance.
_SERVED_BY = "model"


def stamp(outcome: Outcome, info: ModelInfo) -> Outcome:
    if isinstance(outcome, ClassificationResult):
        outcome.extra[_SERVED_BY] = info
    return outcome


def served_by(outcome: ClassificationResult) -> ModelInfo | None:
    """The model that produced a served answer (None: it did not come through a served engine)."""
    info = outcome.extra.get(_SERVED_BY)
    return info if isinstance(info, ModelInfo) else None


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
