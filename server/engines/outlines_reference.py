"""The reference engine: plain Outlines + transformers, one ticket at a time, full JSON schema.

It is the yardstick of the benchmark (the "naive" way to do this) and a fallback engine kind.
It has no label-confidence hook, so its confidences are null and every ticket needs review.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import torch

from server.config import Settings
from server.engines.base import Engine, EngineError, EngineOutput, EngineUnavailable, ModelInfo
from server.engines.loading import load_model
from server.prompts import PromptRenderer, TicketInput, load_prompt
from server.schema import output_json_schema
from server.taxonomy import Taxonomy


class OutlinesReference:
    def __init__(
        self,
        settings: Settings,
        taxonomy: Taxonomy,
        *,
        model: Any = None,
        tokenizer: Any = None,
        max_new_tokens: int | None = None,
    ):
        import outlines
        from outlines.types import JsonSchema

        from server.engines.transformers_engine import prompt_version_for
        from server.registry import resolve_adapter

        self.adapter = resolve_adapter(settings.model)  # a given model must be the one the settings name
        if model is None:
            model, tokenizer, _ = load_model(
                settings.model, adapter_path=self.adapter.path if self.adapter else None, dtype=torch.float32
            )
        self.taxonomy = taxonomy
        self.tokenizer = tokenizer
        version = prompt_version_for(settings, self.adapter.manifest if self.adapter else {})
        prompt = load_prompt(settings.prompt.dir, "classify", version.removeprefix("classify/"))
        self.renderer = PromptRenderer(
            prompt,
            taxonomy,
            tokenizer,
            max_body_tokens=settings.prompt.max_body_tokens,
            max_history_tokens=settings.prompt.max_history_tokens,
        )
        schema = output_json_schema(taxonomy, prompt.field_order)
        self.generator = outlines.Generator(outlines.from_transformers(model, tokenizer), JsonSchema(schema))
        e = settings.engine
        # The same text budget as the batched engine, plus room for the JSON scaffolding.
        self.max_new_tokens = max_new_tokens or (2 * e.max_string_tokens + e.max_reasoning_tokens + 64)

    def run_one(self, ticket: TicketInput) -> EngineOutput | EngineError:
        enc = self.renderer.render(ticket)
        text = self.generator(enc.text, max_new_tokens=self.max_new_tokens, do_sample=False)
        completion = len(self.tokenizer.encode(text, add_special_tokens=False))
        try:
            output = json.loads(text)
        except ValueError:
            return EngineError(f"invalid JSON (generation cut at {self.max_new_tokens} tokens?): {text[:200]}")
        return EngineOutput(
            output=output,
            confidence={f.name: None for f in self.taxonomy.label_fields},
            raw_text=text,
            prompt_tokens=len(enc.ids),
            completion_tokens=completion,
            truncated=enc.truncated,
            prompt_version=enc.prompt_version,
        )


class OutlinesReferenceEngine(Engine):
    name = "outlines"

    def __init__(self, settings: Settings, taxonomy: Taxonomy):
        self.settings, self.taxonomy = settings, taxonomy
        self.ref: OutlinesReference | None = None
        self.load_error: str | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        try:
            self.ref = await asyncio.to_thread(OutlinesReference, self.settings, self.taxonomy)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"

    async def stop(self) -> None:
        self.ref = None

    async def classify(self, tickets: Sequence[TicketInput]) -> list[EngineOutput | EngineError]:
        if self.ref is None:
            raise EngineUnavailable(self.load_error or "model not loaded")
        out: list[EngineOutput | EngineError] = []
        async with self._lock:  # one at a time: that is what this engine is for
            for ticket in tickets:
                out.append(await asyncio.to_thread(self.ref.run_one, ticket))
        return out

    @property
    def ready(self) -> bool:
        return self.ref is not None

    @property
    def info(self) -> ModelInfo:
        adapter = self.ref.adapter.name if self.ref and self.ref.adapter else None
        return ModelInfo(self.settings.model.base, adapter, "float32", self.name)

    @property
    def prompt_version(self) -> str:
        return self.ref.renderer.prompt.id if self.ref else f"classify/{self.settings.prompt.version}"
