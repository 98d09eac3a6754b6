"""The embedded runner: transformers on CPU (or one GPU), continuously batched, with a shared
prompt-prefix cache.

Each admitted ticket's suffix is prefilled on top of the cached static prefix (no padding waste on
ragged lengths), then joins the running batch (server.engines.embedded.kv_cache). Each decode step feeds every
ticket whatever the schema forces after its last decision (jump-forward), so scaffolding costs no
extra steps; finished tickets leave the batch and are delivered at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from server.config import Settings
from server.engines.base import (
    AdapterChoice,
    Deliver,
    EngineError,
    Item,
    ModelInfo,
    ReviewInput,
    Take,
    run_to_list,
)
from server.engines.decoding import DecodingPlan, SequenceDecoder
from server.engines.embedded import cascade
from server.engines.embedded.kv_cache import BatchCache, RowKV, new_cache
from server.engines.loading import load_model
from server.engines.prompting import classify_renderer, outlines_vocabulary, prompt_version_for, review_renderer
from server.extraction import candidate_spans, ticket_texts
from server.fields import is_labels_only
from server.heads.copy import CopyScorer
from server.heads.head import LabelHead, Pool, has_head, pool_features
from server.prompts import EncodedPrompt, TicketInput
from server.registry import resolve_adapter
from server.results import ClassificationResult
from server.schema import output_layout
from server.taxonomy import Taxonomy

log = logging.getLogger(__name__)

# Tokens (rows x padded width) per batched-prefill forward pass: bounds the activations and the
# attention scores of one admission (B x heads x width x (prefix + width) floats). Measured on 2 CPU
# cores, 64 golden tickets labels-only (bench/prefill_sweep.py): 1024 -> 2.25-2.42
# tickets/s, 512/768/2048 -> 2.23-2.25, 4096 -> 1.69, 16384 -> 0.93, one ticket per pass -> 2.17-2.23:
# past ~1k tokens the masked (unfused) attention over wide groups costs more than the wider GEMMs save.
PREFILL_TOKENS = 1024


@dataclass
class _Row:
    key: Any  # the caller's handle, given back with the result
    enc: EncodedPrompt
    dec: SequenceDecoder
    queue: list[int]  # tokens to feed before the next decision
    pos: int  # position id of the next token


class BatchRunner:
    """Synchronous core: model + prompt renderer + decoding plan (a `Runner`, served by
    server.engines.served and called directly by the offline tools)."""

    engine = "transformers"

    def __init__(
        self,
        settings: Settings,
        taxonomy: Taxonomy,
        *,
        model: Any = None,
        tokenizer: Any = None,
        dtype: torch.dtype | None = None,
        adapter: AdapterChoice = "resolve",
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
                settings.model, adapter_path=adapter.path if adapter and adapter.has_lora else None
            )
        self.model, self.tokenizer = model, tokenizer
        self.dtype = dtype or next(model.parameters()).dtype
        self.device = next(model.parameters()).device
        manifest = adapter.manifest if adapter else None
        # A label head fitted for this model decides the label fields (server.heads.head).
        self.head: LabelHead | None = LabelHead.load(adapter.path) if adapter and has_head(adapter.path) else None
        # A copy scorer fitted for this adapter picks the error code among the ticket's spans (server.heads.copy).
        self.copy_scorer: CopyScorer | None = CopyScorer.load(adapter.path) if adapter else None
        self.out_of_scope = taxonomy.out_of_scope
        threshold = manifest.out_of_scope_threshold if manifest else None
        if self.out_of_scope is not None and threshold is not None:
            self.out_of_scope = replace(self.out_of_scope, threshold=float(threshold))
        self.prompt_version = prompt_version_for(settings, manifest)
        self.renderer = classify_renderer(settings, taxonomy, tokenizer, self.prompt_version)
        # No second look with a label head: it would give the same answer.
        self.review_renderer = None if self.head else review_renderer(settings, taxonomy, tokenizer, self.renderer)
        self.plan = DecodingPlan(
            output_layout(taxonomy, self.renderer.prompt.field_order),
            tokenizer,
            outlines_vocabulary(tokenizer),
            max_string_tokens=settings.engine.max_string_tokens,
            max_reasoning_tokens=settings.engine.max_reasoning_tokens,
        )
        # Temperature scaling fitted after training (finetune.calibrate): confidences mean what they say.
        calibration = manifest.calibration if manifest else None
        self.temperatures: dict[str, float] = {
            name: float(t) for name, t in ((calibration.temperatures if calibration else None) or {}).items()
        }
        self.labels_only = False  # stop after the labels (calibration, quick evals): same labels, no free text
        self.record = False  # keep label-decision scores on the result's extra["trace"]
        self.admit_fraction = settings.engine.admit_fraction
        self._prefix_kv: RowKV | None = None
        self.cascade = False
        if settings.engine.prefix_cache and self.renderer.prefix_ids:
            self._prefix_kv = self._compute_prefix(self.renderer.prefix_ids)
            # Shared-prefix attention where the architecture allows; else the prefix KV is copied per row.
            self.cascade = cascade.enable(model)

    # -- the Runner seam ------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            base=self.settings.model.base,
            adapter=self.adapter.name if self.adapter else None,
            dtype=str(self.dtype).removeprefix("torch."),
            engine=self.engine,
        )

    @property
    def supports_review(self) -> bool:
        return self.review_renderer is not None

    def stats(self) -> dict[str, Any]:
        return {"label_head": self.head.name if self.head is not None else None}

    def run(self, tickets: Sequence[Item]) -> list[ClassificationResult | EngineError]:
        """Classify a fixed list (eval, CLI, tests): the streaming loop over a list source."""
        return run_to_list(self.run_stream, tickets)

    @torch.inference_mode()
    def run_stream(self, take: Take, deliver: Deliver, max_batch: int | None = None) -> None:
        """Decode until `take` runs dry and every admitted ticket is delivered.

        New tickets join the running batch between steps (once `admit_fraction` of the slots are
        free, so admission prefill stalls stay rare), and each result is delivered as soon as it is complete:
        no ticket waits for the slowest of its batch."""
        max_batch = max_batch or self.settings.engine.max_batch_size
        rows: list[_Row] = []
        cache = BatchCache(self.model.config, self.device)
        while True:
            free = max_batch - len(rows)
            if free and (not rows or free >= max(1, int(max_batch * self.admit_fraction))):
                rows += self._admit(cache, take(free), deliver)
            if not rows:
                return
            rows = self._step(rows, cache, deliver)

    # -- prompts --------------------------------------------------------------------------------
    def encode(self, item: Item) -> EncodedPrompt:
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

    def spans_for(self, item: Item) -> dict[str, list[str]]:
        """Candidate spans of the ticket for every copy-only field (the same for all such fields)."""
        if not self.plan.copy_fields:
            return {}
        ticket = item.ticket if isinstance(item, ReviewInput) else item
        spans = candidate_spans(ticket_texts(ticket.subject, ticket.body, ticket.previous_interactions))
        return {name: spans for name in self.plan.copy_fields}

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

    # -- model calls ----------------------------------------------------------------------------
    @torch.inference_mode()
    def _compute_prefix(self, ids: list[int]) -> RowKV:
        with cascade.shared_prefix(None):
            out = self.model(torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in out.past_key_values.layers]

    @property
    def _shared(self) -> RowKV | None:
        """The prefix KV handed to cascade attention (None: rows carry their own copy)."""
        return self._prefix_kv if self.cascade else None

    @torch.inference_mode()
    def _prefill_one(self, enc: EncodedPrompt, first: list[int], pools: Sequence[Pool] = ()) -> tuple[RowKV, Any, Any]:
        """Prefill one ticket on top of the shared prefix; returns its KV, last-position logits and, with
        `pools`, the pooled hidden-state features of the ticket's tokens (None otherwise).

        The prefill itself runs plain SDPA over a cache seeded with the prefix (SDPA's fused kernel
        beats the two-part attention for long query blocks); with cascade decoding only the ticket's
        own part of the KV is kept."""
        if self._prefix_kv is not None:
            cache, start, ids = (
                new_cache(self.model.config, self._prefix_kv),
                len(enc.prefix_ids),
                enc.suffix_ids + first,
            )
        else:
            cache, start, ids = new_cache(self.model.config), 0, enc.ids + first
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
            out.logits[0, -1].float().cpu(),  # the decoder indexes logits with CPU ids (a no-op on the CPU)
            features,
        )

    # -- continuous batching --------------------------------------------------------------------
    def _decoder(self, item: Item) -> SequenceDecoder:
        ticket = item.ticket if isinstance(item, ReviewInput) else item
        # Per ticket: a request that asks only for label fields stops after the labels (same labels and
        # confidences as a full run) while the other rows of the batch decode their free text.
        labels_only = self.labels_only or is_labels_only(ticket.fields, self.taxonomy)
        dec = SequenceDecoder(
            self.plan, self.temperatures, labels_only=labels_only, record=self.record, spans=self.spans_for(item)
        )
        scorer = self.copy_scorer
        if scorer is not None and scorer.field in dec.spans and not isinstance(item, ReviewInput):
            dec.force_spans(
                {scorer.field: scorer.choose(ticket_texts(item.subject, item.body, item.previous_interactions))}
            )
        return dec

    @torch.inference_mode()
    def _prefill_many(
        self, prompts: Sequence[tuple[EncodedPrompt, list[int]]], pools: Sequence[Pool] = ()
    ) -> list[tuple[RowKV, Any, Any]]:
        """`_prefill_one` for several tickets in as few forward passes as `PREFILL_TOKENS` allows: the
        running rows wait for one admission stall instead of one per ticket, and the GEMMs are wider.

        Tickets are grouped by length (little padding), right-padded and masked; each row's KV, logits
        at its last real token and features are sliced back out."""
        out: list[tuple[RowKV, Any, Any] | None] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i][0].suffix_ids) + len(prompts[i][1]))
        group: list[int] = []
        for i in order:
            width = len(prompts[i][0].suffix_ids) + len(prompts[i][1])  # the longest so far (sorted)
            if group and (len(group) + 1) * width > PREFILL_TOKENS:
                self._prefill_group(prompts, group, pools, out)
                group = []
            group.append(i)
        if group:
            self._prefill_group(prompts, group, pools, out)
        return [o for o in out if o is not None]

    def _prefill_group(
        self,
        prompts: Sequence[tuple[EncodedPrompt, list[int]]],
        group: list[int],
        pools: Sequence[Pool],
        out: list[tuple[RowKV, Any, Any] | None],
    ) -> None:
        if len(group) == 1:  # nothing to batch: the unpadded path
            enc, first = prompts[group[0]]
            out[group[0]] = self._prefill_one(enc, first, pools)
            return
        if self._prefix_kv is not None:
            start = len(self.renderer.prefix_ids)
            seqs = [prompts[i][0].suffix_ids + prompts[i][1] for i in group]
        else:
            start = 0
            seqs = [prompts[i][0].ids + prompts[i][1] for i in group]
        B, width = len(group), max(len(ids) for ids in seqs)
        ids = torch.zeros((B, width), dtype=torch.long)
        mask = torch.zeros((B, start + width), dtype=torch.long)
        mask[:, :start] = 1
        for j, row in enumerate(seqs):
            ids[j, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[j, start : start + len(row)] = 1
        positions = torch.arange(start, start + width).unsqueeze(0).expand(B, width)
        if self._prefix_kv is not None:
            cache = new_cache(
                self.model.config, [(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in self._prefix_kv]
            )
        else:
            cache = new_cache(self.model.config)
        # Logits only where some row ends (the output layer is 49k wide).
        ends = sorted({len(row) - 1 for row in seqs})
        with cascade.shared_prefix(None):
            res = self.model(
                ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=torch.tensor(ends, device=self.device),
                output_hidden_states=bool(pools),
            )
        keep = start if self.cascade else 0
        logits = res.logits.float().cpu()  # the decoder indexes logits with CPU ids
        layers = res.past_key_values.layers
        for j, i in enumerate(group):
            n = len(seqs[j])
            kv = [
                (layer.keys[j : j + 1, :, keep : start + n], layer.values[j : j + 1, :, keep : start + n])
                for layer in layers
            ]
            features = (
                pool_features([h[j : j + 1, :n] for h in res.hidden_states], pools, prompts[i][0].history_start)
                if pools
                else None
            )
            out[i] = (kv, logits[j, ends.index(n - 1)], features)

    def _admit(self, cache: BatchCache, items: list[tuple[Any, Item]], deliver: Deliver) -> list[_Row]:
        """Prefill the taken tickets (together, `engine.batched_prefill`); those that still need decoding
        join `cache` (and are returned)."""
        taken: list[tuple[Any, Item, EncodedPrompt, SequenceDecoder, list[int]]] = []
        for key, item in items:
            try:
                enc = self.encode(item)
            except Exception as exc:  # one unencodable ticket must not sink the batch
                log.exception("encoding failed")
                deliver(key, EngineError(f"could not encode ticket: {exc}"))
                continue
            dec = self._decoder(item)
            taken.append((key, item, enc, dec, dec.start()))
        pools = self.head.pools if self.head else ()
        if self.settings.engine.batched_prefill:
            prefilled = self._prefill_many([(enc, first) for _, _, enc, _, first in taken], pools)
        else:
            prefilled = [self._prefill_one(enc, first, pools) for _, _, enc, _, first in taken]
        fresh: list[tuple[_Row, RowKV]] = []
        for (key, item, enc, dec, _), (kv, logits, features) in zip(taken, prefilled, strict=True):
            if features is not None and self.head is not None and isinstance(item, TicketInput):
                dec.force(self.head.predict(features, [item])[0])  # no ReviewInput here: a head has no review
            start = len(enc.prefix_ids) if self.cascade else 0  # a row's cache starts after the shared prefix
            row = _Row(key, enc, dec, dec.step(logits), start + kv[0][0].shape[2])
            if not row.queue:
                deliver(key, self._finish(enc, dec))
            else:
                fresh.append((row, kv))
        cache.add([kv for _, kv in fresh])
        return [row for row, _ in fresh]

    def _step(self, rows: list[_Row], cache: BatchCache, deliver: Deliver) -> list[_Row]:
        """One forward pass over the batch; returns the rows still decoding."""
        # Every row feeds the same number of real tokens, so no compute goes to padding; a row
        # with a longer forced run feeds the rest in the next steps (it needs no logits meanwhile).
        width = min(len(r.queue) for r in rows)
        ids = torch.tensor([r.queue[:width] for r in rows], dtype=torch.long)
        pos = torch.tensor([[r.pos + i for i in range(width)] for r in rows], dtype=torch.long)
        for r in rows:
            r.pos += width
        cache.extend(width)
        with cascade.shared_prefix(self._shared):
            out = self.model(
                ids.to(self.device),
                attention_mask=cache.mask,
                position_ids=pos.to(self.device),
                past_key_values=cache.cache,
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
        if len(keep) == len(rows):
            return rows
        cache.keep(keep)
        return [rows[i] for i in keep]

    def _finish(self, enc: EncodedPrompt, dec: SequenceDecoder) -> ClassificationResult | EngineError:
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
        return ClassificationResult(
            extra=extra,
            output=output,
            confidence=confidence,
            raw_text=dec.text,
            prompt_tokens=len(enc.ids),
            completion_tokens=len(dec.out_ids),
            truncated=enc.truncated,
            prompt_version=enc.prompt_version,
        )
