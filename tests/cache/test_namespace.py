"""The namespace the service caches under, built the way production builds it: from the settings,
the taxonomy and the transformers engine serving an adapter from its folder (checksummed files and a
manifest, as the registry loads them). Anything that changes an answer must change the namespace;
an identical configuration must find its entries again."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.cache import ServiceCache, engine_namespace
from server.config import Settings, load_settings
from server.engines.base import ModelInfo
from server.engines.embedded.engine import TransformersEngine
from server.registry import AdapterEntry, sha256_file
from server.taxonomy import Taxonomy

BASE = "/models/base/smollm2-135m-instruct"
FALLBACK = {"enabled": True, "model": "gpt-4o-mini", "api_key": "sk-test-not-a-real-key"}


@dataclass
class LoadedRunner:
    """What a TransformersEngine holds once its model is loaded: the adapter entry it was loaded
    from, the dtype and the prompt version (loading real weights is tests/engines' business)."""

    adapter: AdapterEntry
    dtype: str = "float32"
    prompt_version: str = "classify/v2"

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(BASE, self.adapter.name, self.dtype, "transformers")


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


@pytest.fixture
def namespace_of(taxonomy: Taxonomy) -> Callable[..., str]:
    def build(
        adapter: AdapterEntry,
        *,
        taxonomy_: Taxonomy | None = None,
        dtype: str = "float32",
        prompt_version: str = "classify/v2",
        **overrides: Any,
    ) -> str:
        values = {"database_url": "sqlite://", "fallback": FALLBACK, "cache": {"enabled": True}, **overrides}
        settings: Settings = load_settings(**values)
        tax = taxonomy_ or taxonomy
        runner = LoadedRunner(adapter, dtype=dtype, prompt_version=prompt_version)
        engine = TransformersEngine(settings, tax, runner=runner)  # type: ignore[arg-type]
        ns = engine_namespace(settings, tax, engine)
        view = ServiceCache(settings, tax).view(engine)  # what each lookup and put of the service uses
        assert view is not None and view.namespace == ns
        return ns

    return build


def test_identical_configuration_same_namespace(namespace_of, tmp_path: Path) -> None:
    a = write_adapter(tmp_path / "one" / "tickets-v1")
    b = write_adapter(tmp_path / "two" / "tickets-v1")  # the same adapter, copied elsewhere
    assert namespace_of(a) == namespace_of(a) == namespace_of(b)


def test_every_answer_changing_part_changes_the_namespace(namespace_of, taxonomy: Taxonomy, tmp_path: Path) -> None:
    adapter = write_adapter(tmp_path / "tickets-v1")
    ns = namespace_of(adapter)
    other_taxonomy = dataclasses.replace(taxonomy, version=f"{taxonomy.version}-next")
    assert other_taxonomy.key != taxonomy.key
    changed = {
        "prompt version": namespace_of(adapter, prompt_version="classify/v1"),
        "review prompt": namespace_of(adapter, prompt={"review_version": "review/v1"}),
        "taxonomy": namespace_of(adapter, taxonomy_=other_taxonomy),
        # Same name, retrained weights: only the checksums say it is another adapter.
        "adapter content": namespace_of(write_adapter(tmp_path / "retrained" / "tickets-v1", weights=b"lora-v2")),
        "calibration": namespace_of(
            write_adapter(tmp_path / "recalibrated" / "tickets-v1", temperatures={"category": 1.1, "priority": 0.9})
        ),
        "dtype": namespace_of(adapter, dtype="bfloat16"),
        "fallback model": namespace_of(adapter, fallback={**FALLBACK, "model": "gpt-4o"}),
        "threshold": namespace_of(adapter, routing={"confidence_threshold": 0.61}),
    }
    for part, other in changed.items():
        assert other != ns, f"changing the {part} kept the namespace"
    assert len(set(changed.values())) == len(changed)
