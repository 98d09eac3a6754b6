"""The embedded engine: transformers on CPU (or one GPU), batched, with a shared prompt-prefix cache.

Per batch: each ticket's suffix is prefilled on top of the cached static prefix (no padding waste
on ragged lengths), then the per-ticket caches are merged into one padded batch and decoded
together. Each decode step feeds every ticket whatever the schema forces after its last decision
(jump-forward), so scaffolding costs no extra steps; finished tickets leave the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Sequence

import torch
from transformers.cache_utils import DynamicLayer

from server.config import Settings
from server.engines import cascade
from server.engines.base import Engine, EngineError, EngineOutput, EngineUnavailable, ModelInfo
from server.engines.batcher import DynamicBatcher
from server.engines.decoding import DecodingPlan, SequenceDecoder
from server.engines.loading import load_model
from server.prompts import EncodedPrompt, PromptRenderer, TicketInput, load_prompt
from server.schema import output_layout
from server.taxonomy import Taxonomy

log = logging.getLogger(__name__)
DECODE_HEADROOM = 256  # KV slots reserved for generated tokens; grows by doubling if exceeded


class PreallocatedLayer(DynamicLayer):
    """A KV-cache layer that writes new tokens into spare capacity instead of re-concatenating the
    whole cache each step (that copy dominated batched decoding on CPU)."""

    def __init__(self, shape: tuple[int, int, int, int], capacity: int, like: torch.Tensor):
        super().__init__()
        B, H, n, D = shape
        self.kbuf = like.new_zeros((B, H, capacity, D))
        self.vbuf = like.new_zeros((B, H, capacity, D))
        self.length = n
        self.dtype, self.device, self.is_initialized = like.dtype, like.device, True
        self._views()

    def _views(self) -> None:
        self.keys = self.kbuf[:, :, : self.length]
        self.values = self.vbuf[:, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[-2]
        if self.length + n > self.kbuf.shape[2]:
            grow = max(self.kbuf.shape[2], n)
            self.kbuf = torch.cat([self.kbuf, self.kbuf.new_zeros(*self.kbuf.shape[:2], grow, self.kbuf.shape[3])], dim=2)
            self.vbuf = torch.cat([self.vbuf, self.vbuf.new_zeros(*self.vbuf.shape[:2], grow, self.vbuf.shape[3])], dim=2)
        self.kbuf[:, :, self.length : self.length + n] = key_states
        self.vbuf[:, :, self.length : self.length + n] = value_states
        self.length += n
        self._views()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
        self._views()


def outlines_vocabulary(tokenizer: Any):
    """The token vocabulary exactly as Outlines builds it for a transformers model."""
    from outlines.backends.outlines_core import OutlinesCoreBackend
    from outlines.models.transformers import TransformerTokenizer

    tt = TransformerTokenizer(tokenizer)
    return OutlinesCoreBackend.create_outlines_core_vocabulary(tokenizer.get_vocab(), tokenizer.eos_token_id, tokenizer.eos_token, tt.convert_token_to_string)


class BatchRunner:
    """Synchronous core: model + prompt renderer + decoding plan. Used by the engine and the benchmark."""

    def __init__(self, settings: Settings, taxonomy: Taxonomy, *, model: Any = None, tokenizer: Any = None, dtype: torch.dtype | None = None):
        self.settings = settings
        self.taxonomy = taxonomy
        if model is None:
            model, tokenizer, dtype = load_model(settings.model)
        self.model, self.tokenizer = model, tokenizer
        self.dtype = dtype or next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        prompt = load_prompt(settings.prompt.dir, "classify", settings.prompt.version)
        self.renderer = PromptRenderer(prompt, taxonomy, tokenizer, max_body_tokens=settings.prompt.max_body_tokens, max_history_tokens=settings.prompt.max_history_tokens)
        self.plan = DecodingPlan(
            output_layout(taxonomy, prompt.field_order),
            tokenizer,
            outlines_vocabulary(tokenizer),
            max_string_tokens=settings.engine.max_string_tokens,
            max_reasoning_tokens=settings.engine.max_reasoning_tokens,
        )
        self.temperatures: dict[str, float] = {}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self.cascade = False
        if settings.engine.prefix_cache and self.renderer.prefix_ids:
            self._prefix_kv = self._compute_prefix(self.renderer.prefix_ids)
            # Shared-prefix attention where the architecture allows; else the prefix KV is copied per row.
            self.cascade = cascade.enable(model)

    # -- model calls ----------------------------------------------------------------------------
    @torch.inference_mode()
    def _compute_prefix(self, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        with cascade.shared_prefix(None):
            out = self.model(torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in out.past_key_values.layers]

    @property
    def _shared(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """The prefix KV handed to cascade attention (None: rows carry their own copy)."""
        return self._prefix_kv if self.cascade else None

    def _new_cache(self, kv: list[tuple[torch.Tensor, torch.Tensor]] | None):
        from transformers import DynamicCache

        return DynamicCache(ddp_cache_data=kv, config=self.model.config) if kv else DynamicCache(config=self.model.config)

    @torch.inference_mode()
    def _prefill_one(self, enc: EncodedPrompt, first: list[int]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """Prefill one ticket on top of the shared prefix; returns its KV and last-position logits.

        The prefill itself runs plain SDPA over a cache seeded with the prefix (SDPA's fused kernel
        beats the two-part attention for long query blocks); with cascade decoding only the ticket's
        own part of the KV is kept."""
        if self._prefix_kv is not None:
            cache, start, ids = self._new_cache(self._prefix_kv), len(enc.prefix_ids), enc.suffix_ids + first
        else:
            cache, start, ids = self._new_cache(None), 0, enc.ids + first
        positions = torch.arange(start, start + len(ids), device=self.device).unsqueeze(0)
        with cascade.shared_prefix(None):
            out = self.model(
                torch.tensor([ids], device=self.device), position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1
            )
        keep = start if self.cascade else 0
        return [(layer.keys[:, :, keep:], layer.values[:, :, keep:]) for layer in out.past_key_values.layers], out.logits[0, -1].float()

    def _merge(self, kvs: list[list[tuple[torch.Tensor, torch.Tensor]]], lengths: list[int]) -> tuple[Any, torch.Tensor]:
        """Left-pad each ticket's KV (after the shared prefix) to a common length; pads are masked out."""
        from transformers import DynamicCache

        shared = len(self.renderer.prefix_ids) if (self._prefix_kv is not None and not self.cascade) else 0
        width = max(lengths)
        B = len(kvs)
        mask = torch.zeros(B, width, dtype=torch.long, device=self.device)
        for b, n in enumerate(lengths):
            mask[b, :shared] = 1
            mask[b, width - (n - shared) :] = 1
        cache = DynamicCache(config=self.model.config)
        layers = []
        for layer_i in range(len(kvs[0])):
            k0 = kvs[0][layer_i][0]
            layer = PreallocatedLayer((B, k0.shape[1], width, k0.shape[3]), capacity=width + DECODE_HEADROOM, like=k0)
            for b, (kv, n) in enumerate(zip(kvs, lengths)):
                k, v = kv[layer_i]
                layer.kbuf[b, :, :shared] = k[0, :, :shared]
                layer.vbuf[b, :, :shared] = v[0, :, :shared]
                layer.kbuf[b, :, width - (n - shared) : width] = k[0, :, shared:n]
                layer.vbuf[b, :, width - (n - shared) : width] = v[0, :, shared:n]
            layers.append(layer)
        cache.layers = layers
        return cache, mask

    # -- a batch ------------------------------------------------------------------------------
    def encode(self, ticket: TicketInput) -> EncodedPrompt:
        return self.renderer.render(ticket)

    @torch.inference_mode()
    def run(self, tickets: Sequence[TicketInput]) -> list[EngineOutput | EngineError]:
        results: list[EngineOutput | EngineError | None] = [None] * len(tickets)
        live: list[int] = []
        encs: dict[int, EncodedPrompt] = {}
        decoders: dict[int, SequenceDecoder] = {}
        for i, ticket in enumerate(tickets):
            try:
                encs[i] = self.encode(ticket)
                decoders[i] = SequenceDecoder(self.plan, self.temperatures)
                live.append(i)
            except Exception as exc:  # one unencodable ticket must not sink the batch
                log.exception("encoding failed")
                results[i] = EngineError(f"could not encode ticket: {exc}")
        if live:
            self._decode(live, encs, decoders)
            for i in live:
                results[i] = self._finish(encs[i], decoders[i])
        return results  # type: ignore[return-value]

    def _decode(self, live: list[int], encs: dict[int, EncodedPrompt], decoders: dict[int, SequenceDecoder]) -> None:
        kvs, lengths, queues = [], [], []
        for i in live:
            first = decoders[i].start()
            kv, logits = self._prefill_one(encs[i], first)
            kvs.append(kv)
            lengths.append(kv[0][0].shape[2])
            queues.append(decoders[i].step(logits))
        offset = len(self.renderer.prefix_ids) if self.cascade else 0  # the rows' caches start after the prefix
        positions = torch.tensor(lengths, dtype=torch.long) + offset
        cache, mask = self._merge(kvs, lengths)
        del kvs
        rows = list(live)
        while True:
            keep = [r for r, q in enumerate(queues) if q]
            if not keep:
                return
            if len(keep) < len(rows):  # finished tickets leave the batch
                index = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index.cpu()]
                rows = [rows[r] for r in keep]
                queues = [queues[r] for r in keep]
            # Every row feeds the same number of real tokens, so no compute goes to padding; a row
            # with a longer forced run feeds the rest in the next steps (it needs no logits meanwhile).
            width = min(len(q) for q in queues)
            ids = torch.tensor([q[:width] for q in queues], dtype=torch.long)
            pos = positions.unsqueeze(1) + torch.arange(width)
            positions += width
            mask = torch.cat([mask, torch.ones((len(rows), width), dtype=torch.long, device=self.device)], dim=1)
            with cascade.shared_prefix(self._shared):
                out = self.model(ids.to(self.device), attention_mask=mask, position_ids=pos.to(self.device), past_key_values=cache, use_cache=True, logits_to_keep=1)
            logits = out.logits[:, -1].float().cpu()
            for r, i in enumerate(rows):
                rest = queues[r][width:]
                queues[r] = rest if rest else decoders[i].step(logits[r])

    def _finish(self, enc: EncodedPrompt, dec: SequenceDecoder) -> EngineOutput | EngineError:
        try:
            output = dec.result()
        except ValueError as exc:  # cannot happen by construction; stored as a failure if it ever does
            return EngineError(f"invalid JSON from decoder: {exc}: {dec.text[:200]}")
        confidence = {f.name: dec.confidence.get(f.name) for f in self.taxonomy.label_fields}
        return EngineOutput(
            output=output,
            confidence=confidence,
            raw_text=dec.text,
            prompt_tokens=len(enc.ids),
            completion_tokens=len(dec.out_ids),
            truncated=enc.truncated,
            prompt_version=enc.prompt_version,
        )


class TransformersEngine(Engine):
    name = "transformers"

    def __init__(self, settings: Settings, taxonomy: Taxonomy, runner: BatchRunner | None = None):
        self.settings = settings
        self.taxonomy = taxonomy
        self.runner = runner
        self.load_error: str | None = None
        self._batcher: DynamicBatcher | None = None

    async def start(self) -> None:
        if self.runner is None:
            started = time.perf_counter()
            try:
                self.runner = await asyncio.to_thread(BatchRunner, self.settings, self.taxonomy)
            except Exception as exc:
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.exception("model failed to load")
                return
            log.info("model loaded in %.1fs (%s)", time.perf_counter() - started, self.runner.dtype)
        e = self.settings.engine
        self._batcher = DynamicBatcher(self.runner.run, max_batch=e.max_batch_size, wait_ms=e.batch_wait_ms, max_queue=e.max_queue)
        self._batcher.start()

    async def stop(self) -> None:
        if self._batcher:
            await self._batcher.stop()

    async def classify(self, tickets: Sequence[TicketInput]) -> list[EngineOutput | EngineError]:
        if self._batcher is None or not self.ready:
            raise EngineUnavailable(self.load_error or "model not loaded")
        return await self._batcher.submit(list(tickets))

    @property
    def ready(self) -> bool:
        return self.runner is not None and self._batcher is not None and self._batcher.running

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            base=self.settings.model.base,
            adapter=self.settings.model.adapter,
            dtype=str(self.runner.dtype).removeprefix("torch.") if self.runner else "unloaded",
            engine=self.name,
        )

    @property
    def prompt_version(self) -> str:
        return f"classify/{self.settings.prompt.version}"

    def stats(self) -> dict[str, Any]:
        return self._batcher.stats() if self._batcher else {}
