"""Training checkpoints (adapter weights + optimizer + scheduler + position), resumed only by the same config."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.config import FinetuneConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
KEEP = 2  # newest checkpoints kept


@dataclass
class Position:
    step: int  # optimizer steps done
    micro: int  # micro-batches done


def config_hash(cfg: FinetuneConfig) -> str:
    """The training-relevant config: a checkpoint of another configuration is never resumed."""
    d = cfg.to_dict()
    for key in ("checkpoint_every", "log_every", "threads"):
        d["train"].pop(key, None)
    # Neither changes the LoRA training itself (the head is fitted after it).
    d.pop("head", None)
    d.pop("kind", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def save_checkpoint(
    root: Path,
    weights: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    position: Position,
    chash: str,
) -> None:
    import torch
    from safetensors.torch import save_file

    tmp = root / f".step-{position.step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(tmp / "adapter_model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    state = {"step": position.step, "micro": position.micro, "config_hash": chash}
    (tmp / "state.json").write_text(json.dumps(state))
    final = root / f"step-{position.step:06d}"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)  # a checkpoint exists completely or not at all
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(root: Path, chash: str) -> Path | None:
    if not root.is_dir():
        return None
    for ckpt in sorted(root.glob("step-*"), reverse=True):
        try:
            state = json.loads((ckpt / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if state.get("config_hash") == chash:
            return ckpt
        log.warning("ignoring checkpoint %s: made with a different configuration", ckpt)
    return None


def load_checkpoint(
    ckpt: Path, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any, device: torch.device
) -> Position:
    """Restore the adapter weights, optimizer and scheduler in place; the position to go on from."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors"), device=str(device)))
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    state = json.loads((ckpt / "state.json").read_text())
    return Position(state["step"], state["micro"])
