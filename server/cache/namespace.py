"""The namespace a serving configuration caches under: a hash of everything that changes an answer.

A cached answer is only valid for the configuration that produced it. `ServingIdentity` names the
parts: the engine's kind; the base model by name and by content (`fingerprint.base_model_hash`: the
same folder converted again is another model); the adapter by name and by the checksums of its files
as they are on disk (the LoRA weights and any label head), dtype and calibration; the prompt version and the
content of its template files; the taxonomy by key and by content; the decoding and prompt budgets;
the routing thresholds and the local re-review switch (which decide what counts as a confident,
cacheable answer); and the hosted fallback's provider, model, endpoint and redaction settings (its
answers are cached too). The field set a request asks for is the last part of the namespace
(`ServiceCache.view`). It is read from the engine's *current* state on every lookup, so a hot-swapped
adapter starts a new namespace at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from server.cache.fingerprint import base_model_hash, file_sha256, prompt_hashes, taxonomy_hash
from server.cache.keys import cache_namespace
from server.config import Settings
from server.engines.base import Engine
from server.registry import MANIFEST, AdapterEntry, AdapterManifest
from server.taxonomy import Taxonomy


def served_adapter_entry(engine: Engine) -> AdapterEntry | None:
    """The adapter the engine serves right now; None when it serves none. The local engines keep it on
    their loaded runner (swapped on promotion); an engine without a runner has only its ModelInfo."""
    runner = getattr(engine, "runner", None)
    adapter = getattr(runner, "adapter", None)
    return adapter if isinstance(adapter, AdapterEntry) else None


def served_adapter_manifest(engine: Engine) -> AdapterManifest | None:
    """Its manifest, read on every lookup: only the few typed fields the identity needs, never a dump of
    the whole manifest (its evals are large)."""
    entry = served_adapter_entry(engine)
    return entry.manifest if entry is not None else None


def _adapter_files(engine: Engine) -> dict[str, str]:
    """sha256 of each file of the served adapter's folder as it is on disk now. Not the manifest's
    `adapter_files`: those are what training wrote, and an adapter loaded by name or folder is not
    checked against them (only `promote` validates), so a folder retrained in place would keep its old
    checksums. The manifest is left out (`triage eval` rewrites it; the parts of it that change answers,
    calibration and the out-of-scope threshold, are identity fields of their own), and so are the
    data files (.jsonl) that serving never reads."""
    entry = served_adapter_entry(engine)
    if entry is None:
        return {}
    return {
        f.name: file_sha256(f)
        for f in sorted(entry.path.iterdir())
        if f.is_file() and not f.name.startswith(".") and f.name != MANIFEST and f.suffix != ".jsonl"
    }


def _prompt_version(engine: Engine) -> str:
    try:
        return engine.prompt_version
    except NotImplementedError:
        return "unknown"


@dataclass(frozen=True)
class ServingIdentity:
    engine: str
    base: str
    base_sha256: str  # the base model's content (fingerprint.base_model_hash)
    adapter: str | None
    adapter_files: dict[str, str]  # file name -> sha256 of the served adapter's files
    calibration: dict[str, Any]  # the manifest's fitted temperatures
    out_of_scope_threshold: float | None
    dtype: str
    prompt_version: str
    prompt_files: dict[str, str]  # template file -> sha256
    taxonomy: str
    taxonomy_sha256: str
    decoding: dict[str, Any]
    thresholds: dict[str, float]
    review: bool  # routing.review: a re-reviewed answer is cached as confident only when it is on
    fallback: dict[str, Any] | None  # provider, model, endpoint and redaction when the hosted fallback is on

    @classmethod
    def of(cls, settings: Settings, taxonomy: Taxonomy, engine: Engine) -> ServingIdentity:
        info = engine.info
        manifest = served_adapter_manifest(engine)
        oos = manifest.out_of_scope_threshold if manifest else None
        calibration = manifest.calibration if manifest else None
        fallback = settings.fallback
        prompt_version = _prompt_version(engine)
        return cls(
            engine=info.engine,
            base=str(info.base),
            base_sha256=base_model_hash(str(info.base)),
            adapter=info.adapter,
            adapter_files=_adapter_files(engine),
            calibration=calibration.to_json() if calibration else {},
            out_of_scope_threshold=float(oos) if oos is not None else None,
            dtype=info.dtype,
            prompt_version=prompt_version,
            prompt_files=prompt_hashes(settings.prompt.dir, prompt_version, settings.prompt.review_version),
            taxonomy=taxonomy.key,
            taxonomy_sha256=taxonomy_hash(taxonomy),
            decoding={
                "max_string_tokens": settings.engine.max_string_tokens,
                "max_reasoning_tokens": settings.engine.max_reasoning_tokens,
                "max_body_tokens": settings.prompt.max_body_tokens,
                "max_history_tokens": settings.prompt.max_history_tokens,
                "review_version": settings.prompt.review_version,
                # How a vLLM engine decodes and reads confidences (unused, and harmless, on the others).
                "vllm_structured_outputs": settings.vllm.structured_outputs_backend,
                "vllm_top_logprobs": settings.vllm.top_logprobs,
            },
            thresholds={"default": settings.routing.confidence_threshold, **settings.routing.field_thresholds},
            review=settings.routing.review,
            fallback=(
                {
                    "provider": fallback.provider,
                    "model": fallback.model,
                    "base_url": fallback.base_url,
                    # What the hosted model is shown depends on what is redacted.
                    "redaction": settings.redaction.model_dump(mode="json"),
                }
                if fallback.enabled
                else None
            ),
        )

    def namespace(self) -> str:
        return cache_namespace(**asdict(self))


def engine_namespace(settings: Settings, taxonomy: Taxonomy, engine: Engine) -> str:
    """The namespace `engine`'s answers are cached under in this configuration."""
    return ServingIdentity.of(settings, taxonomy, engine).namespace()
