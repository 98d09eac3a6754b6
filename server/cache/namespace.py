"""The namespace a serving configuration caches under: a hash of everything that changes an answer.

A cached answer is only valid for the configuration that produced it. `ServingIdentity` names the
parts: the engine's kind, base model, adapter (its name and the checksums of its files, which cover
the LoRA weights and any label head), dtype and calibration; the prompt version, the taxonomy, the
decoding and prompt budgets; the routing thresholds (which decide what counts as a confident,
cacheable answer); and the hosted fallback's model (whose answers are cached too). It is read from
the engine's *current* state on every lookup, so a hot-swapped adapter starts a new namespace at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from server.cache.keys import cache_namespace
from server.config import Settings
from server.engines.base import Engine
from server.registry import AdapterManifest
from server.taxonomy import Taxonomy


def served_adapter_manifest(engine: Engine) -> AdapterManifest | None:
    """The manifest of the adapter the engine serves right now; None when it serves none.

    The transformers engine keeps it on its loaded runner (swapped on promotion); other engines
    have no adapter files, so their identity is their ModelInfo alone. Read on every lookup: only the
    few typed fields the identity needs, never a dump of the whole manifest (its evals are large)."""
    runner = getattr(engine, "runner", None)
    adapter = getattr(runner, "adapter", None)
    manifest = getattr(adapter, "manifest", None)
    return manifest if isinstance(manifest, AdapterManifest) else None


def _prompt_version(engine: Engine) -> str:
    try:
        return engine.prompt_version
    except NotImplementedError:
        return "unknown"


@dataclass(frozen=True)
class ServingIdentity:
    engine: str
    base: str
    adapter: str | None
    adapter_files: dict[str, str]  # file name -> sha256, from the adapter's manifest
    calibration: dict[str, Any]  # the manifest's fitted temperatures
    out_of_scope_threshold: float | None
    dtype: str
    prompt_version: str
    taxonomy: str
    decoding: dict[str, Any]
    thresholds: dict[str, float]
    fallback: dict[str, str] | None  # provider and model when the hosted fallback is on

    @classmethod
    def of(cls, settings: Settings, taxonomy: Taxonomy, engine: Engine) -> ServingIdentity:
        info = engine.info
        manifest = served_adapter_manifest(engine)
        oos = manifest.out_of_scope_threshold if manifest else None
        calibration = manifest.calibration if manifest else None
        fallback = settings.fallback
        return cls(
            engine=info.engine,
            base=str(info.base),
            adapter=info.adapter,
            adapter_files=dict(manifest.adapter_files or {}) if manifest else {},
            calibration=calibration.to_json() if calibration else {},
            out_of_scope_threshold=float(oos) if oos is not None else None,
            dtype=info.dtype,
            prompt_version=_prompt_version(engine),
            taxonomy=taxonomy.key,
            decoding={
                "max_string_tokens": settings.engine.max_string_tokens,
                "max_reasoning_tokens": settings.engine.max_reasoning_tokens,
                "max_body_tokens": settings.prompt.max_body_tokens,
                "max_history_tokens": settings.prompt.max_history_tokens,
                "review_version": settings.prompt.review_version,
            },
            thresholds={"default": settings.routing.confidence_threshold, **settings.routing.field_thresholds},
            fallback={"provider": fallback.provider, "model": fallback.model} if fallback.enabled else None,
        )

    def namespace(self) -> str:
        return cache_namespace(**asdict(self))


def engine_namespace(settings: Settings, taxonomy: Taxonomy, engine: Engine) -> str:
    """The namespace `engine`'s answers are cached under in this configuration."""
    return ServingIdentity.of(settings, taxonomy, engine).namespace()
