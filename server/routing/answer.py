"""One answer to one ticket as the router carries it: the model's `ClassificationResult` and where it
came from. The cache entry, the stored row and the API body are all read from it.

A hosted answer also carries its redacted form (`cache_output`): the answer and the stored row hold
this customer's personal data restored, the cache only ever the placeholders."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from server.cache import CachedAnswer
from server.cache.entry import without_free_text
from server.engines.base import Engine, ModelInfo, served_by
from server.fields import FieldSelection, trim_confidence, trim_output
from server.results import ClassificationResult, Route
from server.routing.rules import answered_by_label
from server.taxonomy import Taxonomy


def prompt_version_of(engine: Engine) -> str:
    try:
        return engine.prompt_version
    except NotImplementedError:
        return "unknown"


@dataclass(frozen=True)
class Answer:
    result: ClassificationResult
    answered_by: str  # e.g. transformers:tickets-smollm2-v1, hosted:openai:gpt-4o-mini (the API's `engine`)
    model: ModelInfo  # the local model asked (provenance kept for hosted and cached answers too)
    # What `to_cache` keeps instead of `output` when they differ (a hosted answer before its placeholders
    # were restored); None: `output` itself.
    cache_output: dict[str, Any] | None = None

    @property
    def output(self) -> dict[str, Any]:
        return self.result.output

    @property
    def confidence(self) -> dict[str, float | None]:
        return self.result.confidence

    @property
    def prompt_version(self) -> str:
        return self.result.prompt_version

    @property
    def truncated(self) -> bool:
        return self.result.truncated

    @property
    def raw_text(self) -> str | None:
        """None for answers that have no text of the local model's (hosted, cached, none at all)."""
        return self.result.raw_text or None

    def only(self, fields: FieldSelection, taxonomy: Taxonomy) -> Answer:
        """This answer narrowed to the asked fields (itself for None). Every answer enters a job through
        this, so the routing thresholds, the response, the store and the cache see only what was asked."""
        if fields is None:
            return self
        result = replace(
            self.result,
            output=trim_output(self.output, fields, taxonomy),
            confidence=trim_confidence(self.confidence, fields),
        )
        cached = trim_output(self.cache_output, fields, taxonomy) if self.cache_output is not None else None
        return Answer(result, self.answered_by, self.model, cached)

    @classmethod
    def from_engine(cls, result: ClassificationResult, engine: Engine) -> Answer:
        # The model that produced the answer, not the engine's current one: a hot swap may have
        # happened while the ticket was in flight.
        model = served_by(result) or engine.info
        return cls(result, answered_by_label(model), model)

    @classmethod
    def without_text(
        cls,
        *,
        output: dict[str, Any],
        confidence: dict[str, float | None],
        answered_by: str,
        model: ModelInfo,
        prompt_version: str,
        truncated: bool = False,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cache_output: dict[str, Any] | None = None,
    ) -> Answer:
        """An answer not decoded by a local engine just now (hosted, cached, or none at a deadline)."""
        result = ClassificationResult(
            output=output,
            confidence=confidence,
            raw_text="",
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            truncated=truncated,
            prompt_version=prompt_version,
        )
        return cls(result, answered_by, model, cache_output)

    def to_cache(self, route: Route, taxonomy: Taxonomy) -> CachedAnswer:
        """The entry to cache. A hosted answer is cached in its redacted form; one that lacks it loses its
        free text instead (fail closed: restored personal data never enters the cache)."""
        output = self.output
        if self.cache_output is not None:
            output = self.cache_output
        elif route == "hosted":
            output = without_free_text(self.output, taxonomy)
        return CachedAnswer(
            output=output,
            confidence=self.confidence,
            answered_by=self.answered_by,
            model=self.model,
            prompt_version=self.prompt_version,
            input_truncated=self.truncated,
            route=route,
        )

    @classmethod
    def from_cache(cls, entry: CachedAnswer) -> Answer:
        return cls.without_text(
            output=dict(entry.output),
            confidence=dict(entry.confidence),
            answered_by=entry.answered_by,
            model=entry.model,
            prompt_version=entry.prompt_version,
            truncated=entry.input_truncated,
        )
