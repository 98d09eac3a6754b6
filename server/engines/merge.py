"""`triage models merge NAME`: a registered LoRA adapter merged into its base model, saved as one model
folder (safetensors + tokenizer) for production serving, where a merged model skips the LoRA kernels a
runtime adapter costs on every token (`bench/vllm_lora.py` measures the difference on vLLM).

The folder's manifest.json names what was merged (base and adapter files with their sha256), so a served
merged model can be traced back to its registry entry, and SOURCE.txt says the same for a person.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from server.config import PROJECT_ROOT, ModelSettings, Settings
from server.records import JsonRecord
from server.registry import (
    AdapterEntry,
    RegistryError,
    open_registry,
    sha256_file,
    utc_now,
    write_json_atomic,
)

MERGED_DIR = PROJECT_ROOT / "models" / "merged"  # gitignored: rebuilt from the registry, never committed
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class MergedAdapter(JsonRecord):
    name: str
    path: str
    files: dict[str, str]  # adapter file -> sha256
    prompt_version: str | None = None


class MergedBase(JsonRecord):
    path: str
    safetensors_sha256: str | None = None


class MergedManifest(JsonRecord):
    """models/merged/<name>/manifest.json."""

    kind: str = "merged"
    adapter: MergedAdapter
    base_model: MergedBase
    dtype: str
    created_at: str


@dataclass(frozen=True)
class MergeResult:
    out: Path
    manifest: MergedManifest


def default_out(name: str) -> Path:
    return MERGED_DIR / name


def merge_adapter(settings: Settings, name: str, *, out: Path | None = None, dtype: str = "bfloat16") -> MergeResult:
    """Merge the registered adapter `name` into its base model and write the result to `out`
    (default models/merged/NAME), replacing what is there only once the new folder is complete."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    registry = open_registry(settings.model)
    entry = registry.validate(name)  # missing adapter, files or checksums: RegistryError naming it
    if not entry.has_lora:
        raise RegistryError(f"adapter {name!r} is a label head over the bare base model: there is no LoRA to merge")
    base = _base_of(entry, settings.model)
    out = Path(out) if out is not None else default_out(name)
    model, tokenizer = merged_model(base, entry.path, DTYPES[dtype])
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    base_weights = base / "model.safetensors"
    manifest = MergedManifest(
        kind="merged",
        adapter=MergedAdapter(
            name=entry.name,
            path=str(entry.path),
            files=dict(entry.manifest.adapter_files or {}),
            prompt_version=entry.manifest.prompt_version,
        ),
        base_model=MergedBase(
            path=str(base), safetensors_sha256=sha256_file(base_weights) if base_weights.is_file() else None
        ),
        dtype=dtype,
        created_at=utc_now(),
    )
    write_json_atomic(tmp / "manifest.json", manifest.to_json())
    (tmp / "SOURCE.txt").write_text(
        f"merged model: base {base} (model.safetensors sha256 {manifest.base_model.safetensors_sha256})\n"
        f"+ LoRA adapter {entry.name} ({entry.path}; "
        + ", ".join(f"{f} sha256 {h}" for f, h in manifest.adapter.files.items())
        + f")\nmerged with peft merge_and_unload, saved as {dtype}, {manifest.created_at}\n"
    )
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)  # a half-written folder never looks merged
    return MergeResult(out, manifest)


def merged_model(base: Path, adapter: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    """(model, tokenizer): merged in fp32 on the CPU (no rounding of the LoRA product before it is added),
    cast to `dtype` once at the end."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    model = model.to(dtype)
    model.eval()
    return model, AutoTokenizer.from_pretrained(base)


def _base_of(entry: AdapterEntry, model: ModelSettings) -> Path:
    """The base the adapter was trained on (its manifest), else the configured one."""
    base = entry.base_model_path or Path(model.base)
    if not (base / "config.json").is_file():
        raise RegistryError(f"adapter {entry.name!r}: base model folder not found: {base} (run `make install`)")
    return base
