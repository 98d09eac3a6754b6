"""The manifest.json written next to a trained adapter: what was trained, on what data, how, and how fast."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig
from server.config import PROJECT_ROOT, Settings
from server.registry import resolve_project_path, sha256_file

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def project_relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def base_model_record(base: str) -> dict[str, Any]:
    """The base model as the manifest names it: a project-relative folder (or a hub id) and its weights' hash."""
    local = resolve_project_path(base)
    weights = local / "model.safetensors"
    return {
        "path": project_relative(local) if Path(base).exists() or local.exists() else base,
        "safetensors_sha256": sha256_file(weights) if weights.is_file() else None,
    }


def lora_manifest(
    cfg: FinetuneConfig,
    settings: Settings,
    *,
    adapter_dir: Path,
    base: str,
    prompt_id: str,
    taxonomy_key: str,
    provenance: dict[str, Any],
    training: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of a LoRA adapter whose files are already in `adapter_dir` (their hashes are recorded)."""
    return {
        "name": cfg.name,
        "kind": "lora",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": base_model_record(base),
        "prompt_version": prompt_id,
        "taxonomy": taxonomy_key,
        "target": cfg.data.target,
        "data": provenance,
        "hyperparameters": {
            "lora": cfg.lora.model_dump(mode="json"),
            "train": cfg.train.model_dump(mode="json"),
            "max_body_tokens": cfg.max_body_tokens or settings.prompt.max_body_tokens,
        },
        "training": training,
        "config": cfg.to_dict(),
        "adapter_files": {f: sha256_file(adapter_dir / f) for f in ADAPTER_FILES},
    }
