"""The reference runner: plain Outlines + transformers, one ticket at a time, full JSON schema.

It is the yardstick of the benchmark (the "naive" way to do this) and a fallback engine kind, served
like any runner (server.engines.served). It has no label-confidence hook, so its confidences are null
and every ticket needs review.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch

from server.config import Settings
from server.engines.base import AdapterChoice, Deliver, EngineError, Item, ModelInfo, ReviewInput, Take, run_to_list
from server.engines.loading import load_model
from server.engines.prompting import classify_renderer, prompt_version_for
from server.engines.served import ServedEngine
from server.prompts import TicketInput
from server.registry import resolve_adapter
from server.results import ClassificationResult
from server.schema import output_json_schema
from server.taxonomy import Taxonomy


class OutlinesReference:
    """A `Runner`: Outlines' own generator, one ticket per call."""

    engine = "outlines"
    supports_review = False  # no review prompt sharing: a ReviewInput is answered with an EngineError

    def __init__(
        self,
        settings: Settings,
        taxonomy: Taxonomy,
        *,
        model: Any = None,
        tokenizer: Any = None,
        max_new_tokens: int | None = None,
        adapter: AdapterChoice = "resolve",
    ):
        """`adapter` as for BatchRunner, except that with a `model` given "resolve" still names what the
        settings say (a given model must be the one the settings name)."""
        import outlines
        from outlines.types import JsonSchema

        self.settings = settings
        self.adapter = resolve_adapter(settings.model) if adapter == "resolve" else adapter
        if model is None:
            model, tokenizer, _ = load_model(
                settings.model, adapter_path=self.adapter.path if self.adapter else None, dtype=torch.float32
            )
        self.taxonomy = taxonomy
        self.tokenizer = tokenizer
        version = prompt_version_for(settings, self.adapter.manifest if self.adapter else None)
        self.renderer = classify_renderer(settings, taxonomy, tokenizer, version)
        schema = output_json_schema(taxonomy, self.renderer.prompt.field_order)
        wrapped = outlines.from_transformers(model, tokenizer)
        # The renderer's text is already the chat-templated prompt (the tokens the embedded engine and the
        # fine-tuning job use); Outlines 1.x would wrap a str prompt in the chat template a second time
        # (SmolLM2's default system prompt + a user turn around ours: 30 more tokens, other answers).
        wrapped.type_adapter.has_chat_template = False  # type: ignore[attr-defined]
        self.generator = outlines.Generator(wrapped, JsonSchema(schema))
        e = settings.engine
        # The same text budget as the batched engine, plus room for the JSON scaffolding.
        self.max_new_tokens = max_new_tokens or (2 * e.max_string_tokens + e.max_reasoning_tokens + 64)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.settings.model.base, self.adapter.name if self.adapter else None, "float32", self.engine)

    @property
    def prompt_version(self) -> str:
        return str(self.renderer.prompt.id)

    def stats(self) -> dict[str, Any]:
        return {}

    def run_one(self, ticket: TicketInput) -> ClassificationResult | EngineError:
        enc = self.renderer.render(ticket)
        text = str(self.generator(enc.text, max_new_tokens=self.max_new_tokens, do_sample=False))
        completion = len(self.tokenizer.encode(text, add_special_tokens=False))
        try:
            output = json.loads(text)
        except ValueError:
            return EngineError(f"invalid JSON (generation cut at {self.max_new_tokens} tokens?): {text[:200]}")
        return ClassificationResult(
            output=output,
            confidence={f.name: None for f in self.taxonomy.label_fields},
            raw_text=text,
            prompt_tokens=len(enc.ids),
            completion_tokens=completion,
            truncated=enc.truncated,
            prompt_version=enc.prompt_version,
        )

    def run(self, items: Sequence[Item]) -> list[ClassificationResult | EngineError]:
        return run_to_list(self.run_stream, items)

    def run_stream(self, take: Take, deliver: Deliver, max_batch: int | None = None) -> None:
        """One ticket at a time, whatever `max_batch` says: that is what this runner is for."""
        while taken := take(1):
            for key, item in taken:
                if isinstance(item, ReviewInput):
                    deliver(key, EngineError("the outlines reference engine has no review prompt"))
                else:
                    deliver(key, self.run_one(item))


class OutlinesReferenceEngine(ServedEngine):
    """The reference runner behind the API."""

    name = "outlines"
    unloaded_dtype = "float32"

    def __init__(self, settings: Settings, taxonomy: Taxonomy, runner: OutlinesReference | None = None):
        super().__init__(
            settings, taxonomy, lambda adapter: OutlinesReference(settings, taxonomy, adapter=adapter), runner=runner
        )
