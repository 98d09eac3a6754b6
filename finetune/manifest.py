"""The manifest.json written next to a trained adapter: what was trained, on what data, how, and how fast."""

from __future__ import annotations

import json
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


def head_manifest(cfg: FinetuneConfig, *, base: str, taxonomy_key: str, provenance: dict[str, Any]) -> dict[str, Any]:
    """The manifest of a head-only folder (a label head over the bare base model, no LoRA weights);
    finetune.heads.add_head adds the head's report and files."""
    local = resolve_project_path(base)
    root = resolve_project_path(".")
    return {
        "name": cfg.name,
        "kind": "head",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {"path": str(local.relative_to(root)) if local.exists() and local.is_relative_to(root) else base},
        "prompt_version": f"classify/{cfg.prompt_version}",
        "taxonomy": taxonomy_key,
        "data": provenance,
        "config": cfg.to_dict(),
        "adapter_files": {},
        "hyperparameters": {"head": cfg.head.model_dump(mode="json")},
    }


def write_json(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
