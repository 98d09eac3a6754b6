"""The embedded engine: transformers on CPU (or one GPU), batched, with a shared prompt-prefix cache.

Per batch: each ticket's suffix is prefilled on top of the cached static prefix (no padding waste
on ragged lengths), then the per-ticket caches are merged into one padded batch and decoded
together. Each decode step feeds every ticket whatever the schema forces after its last decision
(jump-forward), so scaffolding costs no extra steps; finished tickets leave the batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from transformers.cache_utils import DynamicLayer

from server.config import Settings
from server.engines import cascade
from server.engines.base import Engine, EngineError, EngineOutput, EngineUnavailable, ModelInfo, ReviewInput
from server.engines.batcher import ContinuousBatcher, DynamicBatcher
from server.engines.decoding import DecodingPlan, SequenceDecoder
from server.engines.loading import load_model
from server.extraction import candidate_spans, ticket_texts
from server.heads.copy import CopyScorer
from server.heads.head import LabelHead, Pool, has_head, pool_features
from server.prompts import EncodedPrompt, PromptRenderer, PromptVersion, TicketInput, load_prompt
from server.registry import AdapterEntry, resolve_adapter
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

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = key_states.shape[-2]
        if self.length + n > self.kbuf.shape[2]:
            grow = max(self.kbuf.shape[2], n)
            self.kbuf = torch.cat(
                [self.kbuf, self.kbuf.new_zeros(*self.kbuf.shape[:2], grow, self.kbuf.shape[3])], dim=2
            )
            self.vbuf = torch.cat(
                [self.vbuf, self.vbuf.new_zeros(*self.vbuf.shape[:2], grow, self.vbuf.shape[3])], dim=2
            )
        self.kbuf[:, :, self.length : self.length + n] = key_states
        self.vbuf[:, :, self.length : self.length + n] = value_states
        self.length += n
        self._views()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.kbuf, self.vbuf = self.kbuf[indices], self.vbuf[indices]
        self._views()

    def crop_left(self, n: int) -> None:
        """Drop the n oldest columns (padding no remaining row uses); a view, no copy."""
        self.kbuf, self.vbuf = self.kbuf[:, :, n:], self.vbuf[:, :, n:]
        self.length -= n
        self._views()


@dataclass
class _Row:
    key: Any  # the caller's handle, given back with the result
    enc: EncodedPrompt
    dec: SequenceDecoder
    queue: list[int]  # tokens to feed before the next decision
    pos: int  # position id of the next token


@dataclass
class _BatchState:
    rows: list[_Row] = field(default_factory=list)
    cache: Any = None
    mask: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.long))


def outlines_vocabulary(tokenizer: Any):
    """The token vocabulary exactly as Outlines builds it for a transformers model."""
    from outlines.backends.outlines_core import OutlinesCoreBackend
    from outlines.models.transformers import TransformerTokenizer

    tt = TransformerTokenizer(tokenizer)
    return OutlinesCoreBackend.create_outlines_core_vocabulary(
        tokenizer.get_vocab(), tokenizer.eos_token_id, tokenizer.eos_token, tt.convert_token_to_string
    )


def prompt_version_for(settings: Settings, manifest: dict[str, Any]) -> str:
    """An adapter is trained on one prompt version and must be served with it: its manifest decides,
    and an explicitly configured different version is refused rather than silently mis-serving."""
    configured = f"classify/{settings.prompt.version}"
    trained = manifest.get("prompt_version")
    if not trained:
        return configured
    if "version" in settings.prompt.model_fields_set and trained != configured:
        raise ValueError(
            f"adapter {manifest.get('name')!r} was trained with prompt {trained} but {configured} is configured"
        )
    return trained


class BatchRunner:
    """Synchronous core: model + prompt renderer + decoding plan. Used by the engine and the benchmark."""

    def __init__(
        self,
        settings: Settings,
        taxonomy: Taxonomy,
        *,
        model: Any = None,
        tokenizer: Any = None,
        dtype: torch.dtype | None = None,
        adapter: AdapterEntry | None | Literal["resolve"] = "resolve",
    ):
        """`adapter`: the LoRA adapter to merge ("resolve" = as the settings say: registry, name or folder).
        With a `model` given, `adapter` only names what that model already is (its manifest still
        supplies prompt version and calibration)."""
        self.settings = settings
        self.taxonomy = taxonomy
        if adapter == "resolve":
            adapter = resolve_adapter(settings.model) if model is None else None
        self.adapter = adapter
        if model is None:
            model, tokenizer, dtype = load_model(
                settings.model, adapter_path=self.adapter.path if self.adapter and self.adapter.has_lora else None
            )
        self.model, self.tokenizer = model, tokenizer
        self.dtype = dtype or next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        manifest = self.adapter.manifest if self.adapter else {}
        # A label head fitted for this model decides the label fields (server.heads.head).
        self.head: LabelHead | None = (
            LabelHead.load(self.adapter.path) if self.adapter and has_head(self.adapter.path) else None
        )
        # A copy scorer fitted for this adapter picks the error code among the ticket's spans (server.heads.copy).
        self.copy_scorer: CopyScorer | None = CopyScorer.load(self.adapter.path) if self.adapter else None
        self.out_of_scope = taxonomy.out_of_scope
        if self.out_of_scope is not None and manifest.get("out_of_scope_threshold") is not None:
            self.out_of_scope = replace(self.out_of_scope, threshold=float(manifest["out_of_scope_threshold"]))
        self.prompt_version = prompt_version_for(settings, manifest)
        prompt = load_prompt(settings.prompt.dir, "classify", self.prompt_version.removeprefix("classify/"))
        self.renderer = PromptRenderer(
            prompt,
            taxonomy,
            tokenizer,
            max_body_tokens=settings.prompt.max_body_tokens,
            max_history_tokens=settings.prompt.max_history_tokens,
        )
        self.review_renderer = self._review_renderer(prompt)
        self.plan = DecodingPlan(
            output_layout(taxonomy, prompt.field_order),
            tokenizer,
            outlines_vocabulary(tokenizer),
            max_string_tokens=settings.engine.max_string_tokens,
            max_reasoning_tokens=settings.engine.max_reasoning_tokens,
        )
        # Temperature scaling fitted after training (finetune.calibrate): confidences mean what they say.
        self.temperatures: dict[str, float] = dict((manifest.get("calibration") or {}).get("temperatures") or {})
        self.labels_only = False  # stop after the labels (calibration, quick evals): same labels, no free text
        self.record = False  # keep label-decision scores on EngineOutput.extra["trace"]
        self.admit_fraction = settings.engine.admit_fraction
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

        return (
            DynamicCache(ddp_cache_data=kv, config=self.model.config) if kv else DynamicCache(config=self.model.config)
        )

    @torch.inference_mode()
    def _prefill_one(
        self, enc: EncodedPrompt, first: list[int], pools: Sequence[Pool] = ()
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor, Any]:
        """Prefill one ticket on top of the shared prefix; returns its KV, last-position logits and, with
        `pools`, the pooled hidden-state features of the ticket's tokens (None otherwise).

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
                torch.tensor([ids], device=self.device),
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
                output_hidden_states=bool(pools),
            )
        features = pool_features(out.hidden_states, pools, enc.history_start) if pools else None
        keep = start if self.cascade else 0
        return (
            [(layer.keys[:, :, keep:], layer.values[:, :, keep:]) for layer in out.past_key_values.layers],
            out.logits[0, -1].float(),
            features,
        )

    def _review_renderer(self, classify: PromptVersion) -> PromptRenderer | None:
        """The review prompt, if it can run in the same batches: it must share the classify prompt's
        static prefix (the cached KV and the shared-prefix attention assume one prefix per batch).
        None with a label head: the head would give a second look the same answer."""
        if self.head is not None:
            return None
        p = self.settings.prompt
        version = classify.version if p.review_version == "auto" else p.review_version
        try:
            review = load_prompt(p.dir, "review", version)
        except FileNotFoundError:
            return None
        if review.field_order != classify.field_order or review.system != classify.system:
            log.warning(
                "review/%s does not match classify/%s (system message or field order): local re-review disabled",
                version,
                classify.version,
            )
            return None
        renderer = PromptRenderer(
            review,
            self.taxonomy,
            self.tokenizer,
            max_body_tokens=p.max_body_tokens,
            max_history_tokens=p.max_history_tokens,
        )
        probe = renderer.render(TicketInput("s", "b"), low_confidence_fields="x", previous_result="{}")
        if self.renderer.prefix_text and not probe.text.startswith(self.renderer.prefix_text):
            log.warning(
                "review/%s does not start with classify/%s's prefix: local re-review disabled",
                version,
                classify.version,
            )
            return None
        return renderer

    # -- continuous batching --------------------------------------------------------------------
    def encode(self, item: TicketInput | ReviewInput) -> EncodedPrompt:
        if not isinstance(item, ReviewInput):
            return self.renderer.render(item)
        if self.review_renderer is None:
            raise EngineError("this model has no review prompt that shares its classify prompt")
        enc = self.review_renderer.render(
            item.ticket,
            low_confidence_fields=", ".join(item.uncertain),
            previous_result=json.dumps(item.previous, ensure_ascii=False),
        )
        prefix = self.renderer.prefix_text
        if not prefix:
            return enc
        suffix = self.tokenizer.encode(enc.text[len(prefix) :], add_special_tokens=False)
        return EncodedPrompt(list(self.renderer.prefix_ids), suffix, enc.truncated, enc.prompt_version, enc.text)

    @torch.inference_mode()
    def features(self, tickets: Sequence[TicketInput], pools: Sequence[Pool]) -> Any:
        """Pooled hidden states of each ticket exactly as a label head sees them when serving (the same
        prompt, prefix cache and forced opening of the answer): the fine-tuning job fits heads on these."""
        import numpy as np

        rows = []
        for ticket in tickets:
            dec = SequenceDecoder(self.plan, spans=self.spans_for(ticket))
            rows.append(self._prefill_one(self.encode(ticket), dec.start(), pools)[2])
        return np.stack(rows)

    def spans_for(self, item: TicketInput | ReviewInput) -> dict[str, list[str]]:
        """Candidate spans of the ticket for every copy-only field (the same for all such fields)."""
        if not self.plan.copy_fields:
            return {}
        ticket = item.ticket if isinstance(item, ReviewInput) else item
        spans = candidate_spans(ticket_texts(ticket.subject, ticket.body, ticket.previous_interactions))
        return {name: spans for name in self.plan.copy_fields}

    def run(self, tickets: Sequence[TicketInput]) -> list[EngineOutput | EngineError]:
        """Classify a fixed list (eval, CLI, tests): the streaming loop over a list source."""
        results: list[EngineOutput | EngineError | None] = [None] * len(tickets)
        todo = list(enumerate(tickets))

        def take(k: int) -> list[tuple[Any, TicketInput]]:
            nonlocal todo
            got, todo = todo[:k], todo[k:]
            return got

        def deliver(key: Any, result: EngineOutput | EngineError) -> None:
            results[key] = result

        self.run_stream(take, deliver)
        return results  # type: ignore[return-value]

    @torch.inference_mode()
    def run_stream(
        self,
        take: Callable[[int], list[tuple[Any, TicketInput]]],
        deliver: Callable[[Any, EngineOutput | EngineError], None],
        max_batch: int | None = None,
    ) -> None:
        """Decode until `take` runs dry and every admitted ticket is delivered.

        New tickets join the running batch between steps (once `admit_fraction` of the slots are
        free, so admission prefill stalls stay rare), and each result is delivered as soon as it is complete:
        no ticket waits for the slowest of its batch."""
        max_batch = max_batch or self.settings.engine.max_batch_size
        state = _BatchState()
        while True:
            free = max_batch - len(state.rows)
            if free and (not state.rows or free >= max(1, int(max_batch * self.admit_fraction))):
                self._admit(state, take(free), deliver)
            if not state.rows:
                return
            self._step(state, deliver)

    def _admit(
        self, state: _BatchState, items: list[tuple[Any, TicketInput]], deliver: Callable[[Any, Any], None]
    ) -> None:
        fresh: list[tuple[_Row, list[tuple[torch.Tensor, torch.Tensor]]]] = []
        for key, ticket in items:
            try:
                enc = self.encode(ticket)
            except Exception as exc:  # one unencodable ticket must not sink the batch
                log.exception("encoding failed")
                deliver(key, EngineError(f"could not encode ticket: {exc}"))
                continue
            dec = SequenceDecoder(
                self.plan,
                self.temperatures,
                labels_only=self.labels_only,
                record=self.record,
                spans=self.spans_for(ticket),
            )
            if (
                self.copy_scorer is not None
                and self.copy_scorer.field in dec.spans
                and not isinstance(ticket, ReviewInput)
            ):
                dec.force_spans(
                    {
                        self.copy_scorer.field: self.copy_scorer.choose(
                            ticket_texts(ticket.subject, ticket.body, ticket.previous_interactions)
                        )
                    }
                )
            kv, logits, features = self._prefill_one(enc, dec.start(), self.head.pools if self.head else ())
            if features is not None:
                dec.force(self.head.predict(features, [ticket])[0])  # type: ignore[union-attr]
            start = len(enc.prefix_ids) if self.cascade else 0  # a row's cache starts after the shared prefix
            row = _Row(key, enc, dec, dec.step(logits), start + kv[0][0].shape[2])
            if not row.queue:
                deliver(key, self._finish(enc, dec))
            else:
                fresh.append((row, kv))
        if not fresh:
            return
        # Rows are left-padded to a common width; padding is masked out and positions are explicit.
        old_w = state.mask.shape[1] if state.rows else 0
        width = max([old_w] + [kv[0][0].shape[2] for _, kv in fresh])
        b0, B = len(state.rows), len(state.rows) + len(fresh)
        mask = torch.zeros(B, width, dtype=torch.long, device=self.device)
        if b0:
            mask[:b0, width - old_w :] = state.mask
        layers = []
        for li in range(len(fresh[0][1])):
            k0 = fresh[0][1][li][0]
            layer = PreallocatedLayer((B, k0.shape[1], width, k0.shape[3]), capacity=width + DECODE_HEADROOM, like=k0)
            if b0:
                old = state.cache.layers[li]
                layer.kbuf[:b0, :, width - old_w : width] = old.keys
                layer.vbuf[:b0, :, width - old_w : width] = old.values
            for j, (_, kv) in enumerate(fresh):
                k, v = kv[li]
                n = k.shape[2]
                layer.kbuf[b0 + j, :, width - n : width] = k[0]
                layer.vbuf[b0 + j, :, width - n : width] = v[0]
            layers.append(layer)
        for j, (_, kv) in enumerate(fresh):
            mask[b0 + j, width - kv[0][0].shape[2] :] = 1
        state.cache = self._new_cache(None)
        state.cache.layers = layers
        state.mask = mask
        state.rows += [row for row, _ in fresh]

    def _step(self, state: _BatchState, deliver: Callable[[Any, Any], None]) -> None:
        rows = state.rows
        # Every row feeds the same number of real tokens, so no compute goes to padding; a row
        # with a longer forced run feeds the rest in the next steps (it needs no logits meanwhile).
        width = min(len(r.queue) for r in rows)
        ids = torch.tensor([r.queue[:width] for r in rows], dtype=torch.long)
        pos = torch.tensor([[r.pos + i for i in range(width)] for r in rows], dtype=torch.long)
        for r in rows:
            r.pos += width
        state.mask = torch.cat(
            [state.mask, torch.ones((len(rows), width), dtype=torch.long, device=self.device)], dim=1
        )
        with cascade.shared_prefix(self._shared):
            out = self.model(
                ids.to(self.device),
                attention_mask=state.mask,
                position_ids=pos.to(self.device),
                past_key_values=state.cache,
                use_cache=True,
                logits_to_keep=1,
            )
        logits = out.logits[:, -1].float().cpu()
        keep = []
        for i, r in enumerate(rows):
            rest = r.queue[width:]
            r.queue = rest if rest else r.dec.step(logits[i])
            if r.queue:
                keep.append(i)
            else:
                deliver(r.key, self._finish(r.enc, r.dec))
        if len(keep) < len(rows):  # finished tickets leave the batch
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            state.cache.batch_select_indices(index)
            state.mask = state.mask[index]
            state.rows = [rows[i] for i in keep]
            if state.rows:  # columns that only the departed rows used
                first = int(state.mask.any(dim=0).nonzero()[0])
                if first:
                    state.mask = state.mask[:, first:]
                    for layer in state.cache.layers:
                        layer.crop_left(first)

    def _finish(self, enc: EncodedPrompt, dec: SequenceDecoder) -> EngineOutput | EngineError:
        try:
            output = dec.result()
        except ValueError as exc:  # cannot happen by construction; stored as a failure if it ever does
            return EngineError(f"invalid JSON from decoder: {exc}: {dec.text[:200]}")
        confidence = {f.name: dec.confidence.get(f.name) for f in self.taxonomy.label_fields}
        oos = self.out_of_scope
        if oos is not None and (confidence.get(oos.field) or 0.0) < oos.threshold:
            # Too unsure for any label: the taxonomy's out-of-scope label (the model never writes it).
            target = (
                output.setdefault("extracted_info", {}) if self.taxonomy.field(oos.field).in_extracted_info else output
            )
            target[oos.field] = oos.label
        extra = {"trace": dec.trace} if dec.trace is not None else {}
        return EngineOutput(
            extra=extra,
            output=output,
            confidence=confidence,
            raw_text=dec.text,
            prompt_tokens=len(enc.ids),
            completion_tokens=len(dec.out_ids),
            truncated=enc.truncated,
            prompt_version=enc.prompt_version,
        )


class TransformersEngine(Engine):
    """The batched engine behind the API. In registry mode it hot-swaps the adapter on promotion:
    the new model loads beside the old one, the decode loop stops admitting, in-flight tickets finish
    on the old model, and the next loop runs on the new one. A failed load leaves the old one serving."""

    name = "transformers"

    def __init__(self, settings: Settings, taxonomy: Taxonomy, runner: BatchRunner | None = None):
        self.settings = settings
        self.taxonomy = taxonomy
        self.runner = runner
        self.load_error: str | None = None
        self.swap_error: str | None = None
        self.swaps = 0
        self._next: BatchRunner | None = None
        self._batcher: DynamicBatcher | None = None
        self._watcher: asyncio.Task | None = None

    async def start(self) -> None:
        if self.runner is None:
            started = time.perf_counter()
            try:
                self.runner = await asyncio.to_thread(BatchRunner, self.settings, self.taxonomy)
            except Exception as exc:
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.exception("model failed to load")
                return
            log.info(
                "model loaded in %.1fs (%s, adapter %s)",
                time.perf_counter() - started,
                self.runner.dtype,
                self.adapter_name,
            )
        e = self.settings.engine
        self._batcher = ContinuousBatcher(
            self._run_stream, max_batch=e.max_batch_size, wait_ms=e.batch_wait_ms, max_queue=e.max_queue
        )
        self._batcher.start()
        if self.settings.model.adapter == "registry" and self.settings.model.watch_registry_s > 0:
            from server.registry import Registry

            registry = Registry(self.settings.model.registry)
            # The version seen now, not when the task first runs: a promotion in between must count.
            self._watcher = asyncio.get_running_loop().create_task(self._watch_registry(registry, registry.version()))

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
        if self._batcher:
            await self._batcher.stop()

    # -- hot swap -------------------------------------------------------------------------------
    def _run_stream(self, take: Callable[[int], list], deliver: Callable[[Any, Any], None]) -> None:
        if self._next is not None:  # between decode loops: nothing is in flight
            self.runner, self._next = self._next, None
            self.swaps += 1
            log.info("now serving adapter %s", self.adapter_name)
        runner = self.runner
        assert runner is not None
        first = True

        def gated_take(k: int) -> list:
            nonlocal first
            # The loop's first take must run (it holds the ticket that woke the loop); afterwards a
            # pending swap stops admission so the loop drains and returns.
            if self._next is not None and not first:
                return []
            first = False
            return take(k)

        runner.run_stream(gated_take, deliver)

    async def swap_to(self, adapter: AdapterEntry | None) -> None:
        """Load `adapter` beside the serving model and switch to it between decode loops."""
        try:
            new = await asyncio.to_thread(BatchRunner, self.settings, self.taxonomy, adapter=adapter)
        except Exception as exc:
            self.swap_error = f"{type(exc).__name__}: {exc}"
            log.exception(
                "hot swap to %s failed; still serving %s", adapter.name if adapter else "base", self.adapter_name
            )
            return
        self.swap_error = None
        self._next = new
        if self._batcher is not None and self._batcher.depth == 0 and self.runner is not None:
            # Idle: no loop will come round to pick it up, so take it now.
            self.runner, self._next = new, None
            self.swaps += 1

    async def _watch_registry(self, registry: Any, seen: str) -> None:
        while True:
            await asyncio.sleep(self.settings.model.watch_registry_s)
            try:
                now = registry.version()
                if now == seen:
                    continue
                seen = now
                try:
                    entry = resolve_adapter(self.settings.model)
                except Exception as exc:  # e.g. the index names a missing adapter: keep serving, say so in /health
                    self.swap_error = f"{type(exc).__name__}: {exc}"
                    log.error(
                        "registry names an adapter that cannot be used; still serving %s: %s", self.adapter_name, exc
                    )
                    continue
                if (entry.name if entry else None) != self.adapter_name:
                    log.info("registry changed: loading adapter %s", entry.name if entry else "none (base)")
                    await self.swap_to(entry)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad registry edit must not kill the server; the old model keeps serving
                log.exception("registry check failed")

    # -- Engine -------------------------------------------------------------------------------
    @property
    def supports_review(self) -> bool:
        return self.runner is not None and self.runner.review_renderer is not None

    async def classify(self, tickets: Sequence[TicketInput | ReviewInput]) -> list[EngineOutput | EngineError]:
        if self._batcher is None or not self.ready:
            raise EngineUnavailable(self.load_error or "model not loaded")
        return await self._batcher.submit(list(tickets))

    @property
    def ready(self) -> bool:
        return self.runner is not None and self._batcher is not None and self._batcher.running

    @property
    def adapter_name(self) -> str | None:
        return self.runner.adapter.name if self.runner and self.runner.adapter else None

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            base=self.settings.model.base,
            adapter=self.adapter_name,
            dtype=str(self.runner.dtype).removeprefix("torch.") if self.runner else "unloaded",
            engine=self.name,
        )

    @property
    def prompt_version(self) -> str:
        return self.runner.prompt_version if self.runner else f"classify/{self.settings.prompt.version}"

    def stats(self) -> dict[str, Any]:
        stats = dict(self._batcher.stats()) if self._batcher else {}
        stats["adapter_swaps"] = self.swaps
        stats["label_head"] = (
            self.runner.head.name if self.runner is not None and self.runner.head is not None else None
        )
        if self.swap_error:
            stats["swap_error"] = self.swap_error
        return stats
