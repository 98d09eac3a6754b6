"""The key the service caches under, built the way production builds it: from the settings, the
taxonomy and the transformers engine serving an adapter from its folder (checksummed files and a
manifest, as the registry loads them), through `ServiceCache.put` into a real store, so the key read
back is the one a lookup or a put of the service uses. Anything that changes an answer must change
the key; an identical configuration must find its entries again."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.cache import CachedAnswer, MemoryStore, ServiceCache, engine_namespace
from server.config import Settings, load_settings
from server.engines.base import ModelInfo
from server.engines.embedded.engine import TransformersEngine
from server.prompts import TicketInput
from server.registry import AdapterEntry, sha256_file
from server.resources import builtin_prompts_dir
from server.taxonomy import FieldSpec, Taxonomy

FALLBACK = {"enabled": True, "model": "gpt-4o-mini", "api_key": "sk-test-not-a-real-key"}
TICKET = TicketInput("Printer offline", "My printer shows offline since the update.")
ENTRY = CachedAnswer(
    output={"category": "Technical"},
    confidence={"category": 0.9},
    answered_by="transformers:tickets-v1",
    model=ModelInfo("b", "tickets-v1", "float32", "transformers"),
    prompt_version="classify/v2",
    input_truncated=False,
    route="local",
)


class RecordingStore(MemoryStore):
    """The in-process store, remembering the entry key of every put (bucket keys are not entries)."""

    def __init__(self) -> None:
        super().__init__(max_entries=100)
        self.keys: list[str] = []

    def put(self, key: str, value: str, *, ttl_s: float, member: str = "", buckets: Sequence[str] = ()) -> None:
        self.keys.append(key)
        super().put(key, value, ttl_s=ttl_s, member=member, buckets=buckets)


@dataclass
class LoadedRunner:
    """What a TransformersEngine holds once its model is loaded: the adapter entry it was loaded
    from, the dtype and the prompt version (loading real weights is tests/engines' business)."""

    adapter: AdapterEntry
    base: str
    dtype: str = "float32"
    prompt_version: str = "classify/v2"

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(self.base, self.adapter.name, self.dtype, "transformers")


def write_adapter(
    folder: Path, *, weights: bytes = b"lora-weights-v1", temperatures: dict[str, float] | None = None
) -> AdapterEntry:
    """An adapter folder as the fine-tuning job leaves it: files, and a manifest with their checksums."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text('{"r": 16}')
    (folder / "adapter_model.safetensors").write_bytes(weights)
    files = {name: sha256_file(folder / name) for name in ("adapter_config.json", "adapter_model.safetensors")}
    manifest: dict[str, Any] = {
        "name": folder.name,
        "prompt_version": "classify/v2",
        "adapter_files": files,
        "calibration": {"temperatures": temperatures or {"category": 1.3, "priority": 0.9}},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return AdapterEntry(folder.name, folder, json.loads((folder / "manifest.json").read_text()))


def write_base(folder: Path, weights: bytes = b"base-weights-v1") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(weights)
    return str(folder)


@pytest.fixture
def base_dir(tmp_path: Path) -> str:
    return write_base(tmp_path / "base" / "smollm2-135m-instruct")


@pytest.fixture
def key_of(taxonomy: Taxonomy, base_dir: str) -> Callable[..., str]:
    """The entry key `ServiceCache.put` writes for TICKET under a configuration."""

    def build(
        adapter: AdapterEntry,
        *,
        taxonomy_: Taxonomy | None = None,
        dtype: str = "float32",
        prompt_version: str = "classify/v2",
        base: str | None = None,
        fields: tuple[str, ...] | None = None,
        **overrides: Any,
    ) -> str:
        values = {"database_url": "sqlite://", "fallback": FALLBACK, "cache": {"enabled": True}, **overrides}
        settings: Settings = load_settings(**values)
        tax = taxonomy_ or taxonomy
        runner = LoadedRunner(adapter, base or base_dir, dtype=dtype, prompt_version=prompt_version)
        engine = TransformersEngine(settings, tax, runner=runner)  # type: ignore[arg-type]
        store = RecordingStore()
        cache = ServiceCache(settings, tax, store=store)
        ticket = dataclasses.replace(TICKET, fields=fields)
        cache.put(engine, ticket, ENTRY)
        (key,) = store.keys
        # The lookup reads what the put wrote, and the namespace is the engine's.
        assert cache.get(engine, ticket) is not None
        assert engine_namespace(settings, tax, engine) in key
        return key

    return build


def test_identical_configuration_same_key(key_of: Callable[..., str], tmp_path: Path) -> None:
    a = write_adapter(tmp_path / "one" / "tickets-v1")
    b = write_adapter(tmp_path / "two" / "tickets-v1")  # the same adapter, copied elsewhere
    other_base = write_base(tmp_path / "elsewhere" / "base")  # the same base model, copied elsewhere
    assert key_of(a) == key_of(a) == key_of(b)
    assert key_of(a, base=other_base) != key_of(a)  # its path is part of the key, as the engine reports it


def _edited_prompts(tmp_path: Path) -> Path:
    """The shipped prompt templates with classify/v2 edited in place (no new version number)."""
    folder = tmp_path / "prompts"
    shutil.copytree(builtin_prompts_dir(), folder)
    template = folder / "classify" / "v2.jinja"
    template.write_text(template.read_text() + "\nAnswer carefully.")
    return folder


def test_every_answer_changing_part_changes_the_key(
    key_of: Callable[..., str], taxonomy: Taxonomy, tmp_path: Path
) -> None:
    adapter = write_adapter(tmp_path / "tickets-v1")
    key = key_of(adapter)
    other_version = dataclasses.replace(taxonomy, version=f"{taxonomy.version}-next")
    # The same name and version, one definition reworded: the prompt the model sees changes.
    first = taxonomy.labels[0]
    reworded = dataclasses.replace(
        taxonomy,
        labels=(
            FieldSpec(first.name, first.description, {k: v + " (reworded)" for k, v in first.values.items()}),
            *taxonomy.labels[1:],
        ),
    )
    assert reworded.key == taxonomy.key
    base_path = tmp_path / "base" / "smollm2-135m-instruct"
    shipped_prompts = builtin_prompts_dir()
    changed = {
        # Same name, retrained weights: only the checksums say it is another adapter.
        "adapter content": key_of(write_adapter(tmp_path / "retrained" / "tickets-v1", weights=b"lora-v2")),
        "calibration": key_of(
            write_adapter(tmp_path / "recalibrated" / "tickets-v1", temperatures={"category": 1.1, "priority": 0.9})
        ),
        "prompt version": key_of(adapter, prompt_version="classify/v1"),
        "prompt template content": key_of(adapter, prompt={"dir": str(_edited_prompts(tmp_path))}),
        "review prompt": key_of(adapter, prompt={"dir": str(shipped_prompts), "review_version": "v1"}),
        "taxonomy version": key_of(adapter, taxonomy_=other_version),
        "taxonomy content": key_of(adapter, taxonomy_=reworded),
        "dtype": key_of(adapter, dtype="bfloat16"),
        "field set": key_of(adapter, fields=("category", "priority")),
        "threshold": key_of(adapter, routing={"confidence_threshold": 0.61}),
        "field threshold": key_of(adapter, routing={"field_thresholds": {"priority": 0.4}}),
        "local re-review": key_of(adapter, routing={"review": True}),
        "fallback provider": key_of(adapter, fallback={**FALLBACK, "provider": "anthropic"}),
        "fallback model": key_of(adapter, fallback={**FALLBACK, "model": "gpt-4o"}),
        "fallback endpoint": key_of(adapter, fallback={**FALLBACK, "base_url": "http://127.0.0.1:9/v1"}),
        "fallback off": key_of(adapter, fallback={**FALLBACK, "enabled": False}),
        "redaction": key_of(adapter, redaction={"patterns": {"CUSTOMER_REF": r"\bCR-\d{6}\b"}}),
    }
    # The base model converted again into the same folder: its path says nothing, its content does.
    write_base(base_path, weights=b"base-weights-v2, reconverted")
    changed["base content"] = key_of(adapter)
    for part, other in changed.items():
        assert other != key, f"changing the {part} kept the cache key"
    assert len(set(changed.values())) == len(changed)
