"""The vLLM runner: tickets answered by vLLM OpenAI-compatible servers over HTTP.

The prompt is sent as token ids (`/v1/completions` with `prompt: [ids]`), rendered by the same
renderer as the embedded engine and the fine-tuning job, so the model sees exactly the tokens it was
trained on (vLLM's chat endpoint would apply its own template and BOS handling). The output is
constrained by the JSON schema through `structured_outputs` (vLLM >= 0.12; `guided_json` is gone);
confidences come from the returned top logprobs (server.engines.vllm.confidence). The adapter is
chosen per request by model name: the LoRA module's name, which is the registry's adapter name.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from server.config import Settings
from server.engines.base import AdapterChoice, Deliver, EngineError, Item, ModelInfo, ReviewInput, Take, run_to_list
from server.engines.decoding import DecodingPlan
from server.engines.prompting import classify_renderer, prompt_version_for, review_renderer
from server.engines.vllm.client import ReplicaPool, UnknownModel, VllmError
from server.engines.vllm.confidence import Position, label_confidences, token_offsets
from server.extraction import candidate_spans, ticket_texts
from server.heads.copy import CopyScorer
from server.heads.head import has_head
from server.prompts import EncodedPrompt
from server.registry import AdapterEntry, resolve_adapter
from server.results import ClassificationResult
from server.schema import output_json_schema, output_layout
from server.taxonomy import Taxonomy

log = logging.getLogger(__name__)

LOAD_LORA = "/v1/load_lora_adapter"


class VllmRunner:
    """A `Runner` over a `ReplicaPool` (shared with the runner it replaces on a hot swap)."""

    engine = "vllm"

    def __init__(
        self,
        settings: Settings,
        taxonomy: Taxonomy,
        *,
        adapter: AdapterChoice = "resolve",
        pool: ReplicaPool | None = None,
        tokenizer: Any = None,
    ):
        """Loads the tokenizer only (the model lives in the vLLM servers) and makes sure every reachable
        replica serves `adapter` (runtime LoRA loading) before the runner is used: a promotion switches
        names only once the new adapter is loaded everywhere."""
        self.settings = settings
        self.taxonomy = taxonomy
        entry = resolve_adapter(settings.model) if adapter == "resolve" else adapter
        if entry is not None and has_head(entry.path):
            raise ValueError(
                f"adapter {entry.name!r} carries a label head, which needs hidden states: serve it embedded"
            )
        self.adapter: AdapterEntry | None = entry
        self.model_name = entry.name if entry is not None and entry.has_lora else settings.vllm.served_model_name
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(settings.model.base)
        self.tokenizer = tokenizer
        manifest = entry.manifest if entry else None
        self.prompt_version = prompt_version_for(settings, manifest)
        self.renderer = classify_renderer(settings, taxonomy, tokenizer, self.prompt_version)
        self.review_renderer = review_renderer(settings, taxonomy, tokenizer, self.renderer)
        order = self.renderer.prompt.field_order
        # No vocabulary: the plan is used for its label tries and token ids, never to decode text.
        self.plan = DecodingPlan(
            output_layout(taxonomy, order),
            tokenizer,
            None,
            max_string_tokens=settings.engine.max_string_tokens,
            max_reasoning_tokens=settings.engine.max_reasoning_tokens,
        )
        self.schema = json.loads(output_json_schema(taxonomy, order))
        e = settings.engine
        # The embedded engine's token budget for the same JSON (scaffolding ~ 2 tokens per key).
        self.max_tokens = 2 * e.max_string_tokens + e.max_reasoning_tokens + 16 * len(self.plan.layout) + 16
        calibration = manifest.calibration if manifest else None
        self.temperatures: dict[str, float] = {
            name: float(t) for name, t in ((calibration.temperatures if calibration else None) or {}).items()
        }
        self.out_of_scope = taxonomy.out_of_scope
        threshold = manifest.out_of_scope_threshold if manifest else None
        if self.out_of_scope is not None and threshold is not None:
            self.out_of_scope = replace(self.out_of_scope, threshold=float(threshold))
        self.copy_scorer: CopyScorer | None = CopyScorer.load(entry.path) if entry else None
        # Keep each label decision's option scores on result.extra["trace"] (calibration), as the embedded runner.
        self.record = False
        # Accepted for the offline jobs' sake; the server always writes the whole JSON (no early stop over HTTP).
        self.labels_only = False
        self.pool = pool or ReplicaPool(settings.vllm)
        self._owns_pool = pool is None
        self.requests = 0
        self.failures = 0
        self.ensure_loaded()

    # -- adapters -------------------------------------------------------------------------------
    def ensure_loaded(self) -> None:
        """Load this runner's adapter on every reachable replica that lacks it; raise if one refuses.
        An unreachable replica gets it when it is back (a 404 there loads it, see `_classify`)."""
        if self.adapter is None or not self.adapter.has_lora:
            return
        for replica in self.pool.replicas:
            try:
                served = self.pool.models(replica, self.settings.vllm.connect_timeout_s + 5)
            except Exception as exc:
                log.warning("vLLM replica %s unreachable while loading %s: %s", replica.url, self.model_name, exc)
                continue
            if self.model_name not in served:
                self._load_on(replica)

    def _load_on(self, replica: Any) -> None:
        assert self.adapter is not None
        body = {"lora_name": self.model_name, "lora_path": str(self.adapter.path.resolve())}
        resp = self.pool.post_to(replica, LOAD_LORA, body, self.settings.vllm.attempt_timeout_s)
        if resp.status_code != 200 and "already" not in resp.text:
            raise VllmError(
                f"{replica.url}: loading adapter {self.model_name!r} failed: HTTP {resp.status_code}: {resp.text[:300]}"
            )
        log.info("adapter %s loaded on vLLM replica %s", self.model_name, replica.url)

    # -- the Runner seam ------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.settings.model.base, self.adapter.name if self.adapter else None, "vllm", self.engine)

    @property
    def supports_review(self) -> bool:
        return self.review_renderer is not None

    def stats(self) -> dict[str, Any]:
        return {
            "vllm_requests": self.requests,
            "vllm_failures": self.failures,
            "vllm_replicas": {r.url: r.healthy for r in self.pool.replicas},
        }

    def close(self) -> None:
        if self._owns_pool:
            self.pool.close()

    def run(self, items: Sequence[Item]) -> list[ClassificationResult | EngineError]:
        return run_to_list(self.run_stream, items)

    def run_stream(self, take: Take, deliver: Deliver, max_batch: int | None = None) -> None:
        """Keep up to `vllm.concurrency` requests in flight (vLLM batches them itself); each answer is
        delivered the moment it arrives, exactly once."""
        width = min(max_batch or self.settings.vllm.concurrency, self.settings.vllm.concurrency)
        inflight: dict[Future[ClassificationResult | EngineError], Any] = {}
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="vllm") as workers:
            while True:
                if len(inflight) < width:
                    for key, item in take(width - len(inflight)):
                        inflight[workers.submit(self.classify_one, item)] = key
                if not inflight:
                    return  # the source is dry and everything taken is delivered
                # A short wait so tickets queued meanwhile are admitted without waiting for a completion.
                done, _ = wait(inflight, timeout=0.05, return_when=FIRST_COMPLETED)
                for fut in done:
                    deliver(inflight.pop(fut), fut.result())

    # -- one ticket -----------------------------------------------------------------------------
    def encode(self, item: Item) -> EncodedPrompt:
        if not isinstance(item, ReviewInput):
            return self.renderer.render(item)
        if self.review_renderer is None:
            raise EngineError("this model has no review prompt that shares its classify prompt")
        return self.review_renderer.render(
            item.ticket,
            low_confidence_fields=", ".join(item.uncertain),
            previous_result=json.dumps(item.previous, ensure_ascii=False),
        )

    def request_body(self, enc: EncodedPrompt) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "prompt": enc.ids,  # token ids: no server-side template, no second BOS
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
            "logprobs": self.settings.vllm.top_logprobs,
            "return_tokens_as_token_ids": True,
            "return_token_ids": True,
            "structured_outputs": {"json": self.schema},
        }

    def classify_one(self, item: Item) -> ClassificationResult | EngineError:
        """Never raises: every failure is this ticket's EngineError (stored, or the backup route)."""
        self.requests += 1
        try:
            return self._classify(item)
        except EngineError as exc:
            self.failures += 1
            return exc
        except VllmError as exc:
            self.failures += 1
            return EngineError(f"vLLM: {exc}")
        except Exception as exc:  # a malformed answer must cost one ticket, not the loop
            self.failures += 1
            log.exception("vLLM answer could not be used")
            return EngineError(f"vLLM: unusable answer: {type(exc).__name__}: {exc}")

    def _classify(self, item: Item) -> ClassificationResult:
        enc = self.encode(item)
        body = self.request_body(enc)
        deadline = time.monotonic() + self.settings.vllm.timeout_s
        try:
            replica, data = self.pool.post("/v1/completions", body, deadline)
        except UnknownModel as exc:
            if self.adapter is None or not self.adapter.has_lora:
                raise
            # A replica restarted without it (or was down during the promotion): load it there, once.
            target = next(r for r in self.pool.replicas if r.url == exc.url)
            self._load_on(target)
            replica, data = self.pool.post("/v1/completions", body, deadline)
        return self._parse(item, enc, data, replica.url)

    def _parse(self, item: Item, enc: EncodedPrompt, data: dict[str, Any], url: str) -> ClassificationResult:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise EngineError(f"vLLM {url}: no choices in the answer")
        choice = choices[0]
        text = choice.get("text")
        if not isinstance(text, str):
            raise EngineError(f"vLLM {url}: no text in the answer")
        if choice.get("finish_reason") == "length":
            raise EngineError(f"vLLM {url}: output cut at {self.max_tokens} tokens: {text[:200]}")
        try:
            output = json.loads(text)
        except ValueError as exc:
            raise EngineError(f"vLLM {url}: invalid JSON output: {exc}: {text[:200]}") from None
        if not isinstance(output, dict):
            raise EngineError(f"vLLM {url}: the output is not a JSON object: {text[:200]}")
        positions = _positions(choice, url)
        ids = [p.token for p in positions]
        scores = label_confidences(
            self.plan, text, output, positions, token_offsets(self.tokenizer, ids), self.temperatures
        )
        confidence: dict[str, float | None] = {
            f.name: scores.confidence.get(f.name) for f in self.taxonomy.label_fields
        }
        extra: dict[str, Any] = {"vllm_url": url}
        if self.record:
            import torch

            extra["trace"] = {
                name: [(torch.tensor(raw), k) for raw, k in steps] for name, steps in scores.trace.items()
            }
        if scores.bounded:
            extra["vllm_confidence_bounded"] = scores.bounded
        if scores.fallback:
            extra["vllm_confidence_fallback"] = scores.fallback
        self._hold_copy_fields(item, output, extra)
        oos = self.out_of_scope
        if oos is not None and (confidence.get(oos.field) or 0.0) < oos.threshold:
            target = (
                output.setdefault("extracted_info", {}) if self.taxonomy.field(oos.field).in_extracted_info else output
            )
            target[oos.field] = oos.label
        usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
        return ClassificationResult(
            extra=extra,
            output=output,
            confidence=confidence,
            raw_text=text,
            prompt_tokens=int(usage.get("prompt_tokens", len(enc.ids))),
            completion_tokens=int(usage.get("completion_tokens", len(ids))),
            truncated=enc.truncated,
            prompt_version=enc.prompt_version,
        )

    def _hold_copy_fields(self, item: Item, output: dict[str, Any], extra: dict[str, Any]) -> None:
        """A copy-only field (error_code) is null or one of the ticket's spans, as in the embedded decoder:
        the grammar cannot say "a substring of this ticket", so the rule is applied to the answer."""
        ticket = item.ticket if isinstance(item, ReviewInput) else item
        texts = ticket_texts(ticket.subject, ticket.body, ticket.previous_interactions)
        for name in self.plan.copy_fields:
            slot = next(s for s in self.plan.layout if s.name == name)
            target: Any = output
            for key in slot.path[:-1]:
                target = target.setdefault(key, {})
            if self.copy_scorer is not None and self.copy_scorer.field == name:
                target[name] = self.copy_scorer.choose(texts)
            elif target.get(name) is not None and target.get(name) not in candidate_spans(texts):
                extra.setdefault("vllm_uncopied", {})[name] = target[name]
                target[name] = None


def _positions(choice: dict[str, Any], url: str) -> list[Position]:
    """Generated tokens with their logprobs; the token ids come back as `token_id:N` strings."""
    lp = choice.get("logprobs")
    if not isinstance(lp, dict) or not lp.get("tokens") or not isinstance(lp.get("top_logprobs"), list):
        raise EngineError(f"vLLM {url}: the answer has no logprobs (needed for the label confidences)")
    out = []
    for tok, own, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True):
        out.append(
            Position(
                _token_id(tok),
                float(own) if own is not None else 0.0,
                {_token_id(t): float(v) for t, v in (top or {}).items()},
            )
        )
    return out


def _token_id(token: str) -> int:
    if not token.startswith("token_id:"):
        raise ValueError(f"expected token ids (return_tokens_as_token_ids), got {token!r}")
    return int(token.removeprefix("token_id:"))
