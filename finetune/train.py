"""`triage finetune`: LoRA on labelled files + reviewer feedback, with checkpoints, resume and a manifest.

`main(cfg, settings)` runs the job as named steps: load and validate all data (fail before any model is
loaded), encode every example with the server's prompt code, build the model + LoRA, train (loss on
answer tokens only, resuming from a checkpoint of the same config), save `adapter_model.safetensors` +
`adapter_config.json` + `heldout.json` (the held-out split by reference) + `manifest.json` atomically, then fit per-field temperatures
on the held-out split (finetune.calibrate) and, if configured, a label head (finetune.heads).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.batching import answer_loss, collate, length_grouped_batches
from finetune.checkpoints import Position, config_hash, latest_checkpoint, load_checkpoint, save_checkpoint
from finetune.config import FinetuneConfig
from finetune.data import TrainingData, load_data
from finetune.encode import Encoded, ExampleEncoder
from finetune.heldout import HELDOUT_FILE, ReadSpec, write_heldout
from finetune.manifest import lora_manifest, write_json
from server.config import Settings, load_settings
from server.registry import AdapterEntry, resolve_project_path
from server.taxonomy import Taxonomy, load_taxonomy

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)


@dataclass
class ModelParts:
    model: PeftModel
    device: torch.device
    dtype: torch.dtype
    params: list[torch.nn.Parameter]  # the trainable ones


@dataclass
class Schedule:
    optimizer: torch.optim.Optimizer
    scheduler: Any  # a transformers LambdaLR
    per_epoch: int  # micro-batches per epoch
    total_steps: int  # optimizer steps


@dataclass
class TrainStats:
    """What the manifest's `training` section reports."""

    position: Position
    resumed_from: int | None
    losses: list[float] = field(default_factory=list)
    seen_tokens: int = 0
    skipped_batches: int = 0
    step_times: list[float] = field(default_factory=list)  # per optimizer step
    seconds: float = 0.0


def main(cfg: FinetuneConfig, settings: Settings | None = None, *, progress: bool = True) -> Path:
    """Run the job; the adapter folder (`output_dir/name`)."""
    started = time.perf_counter()
    settings = settings or load_settings()
    taxonomy = load_taxonomy(cfg.taxonomy)
    base = cfg.base or settings.model.base
    out_dir = resolve_project_path(cfg.output_dir) / cfg.name
    seed_everything(cfg)
    data = load_data(cfg, settings, taxonomy)
    if cfg.kind == "head":  # no LoRA: a label head over the bare base model
        from finetune.heads import head_only

        return head_only(
            cfg, settings, taxonomy, out_dir, data.train, data.held, data.provenance, base, progress=progress
        )
    tokenizer = load_tokenizer(base)
    encoder = build_encoder(cfg, settings, taxonomy, tokenizer)
    examples = encode_examples(cfg, encoder, data, progress=progress)
    parts = build_model(cfg, settings, base, data.provenance)
    schedule = build_schedule(cfg, parts, len(examples))
    chash = config_hash(cfg)
    stats = resume(out_dir / "checkpoints", chash, parts, schedule)
    train(cfg, parts, schedule, examples, tokenizer.pad_token_id, stats, out_dir / "checkpoints", chash, progress)
    training = training_record(cfg, parts, schedule, stats, len(examples), chash, started)
    save_adapter(cfg, settings, parts, out_dir, base, encoder.prompt_id, taxonomy, data, training)
    del parts, schedule  # free the training model before calibration loads the served one
    if cfg.calibrate and data.held:
        from finetune.calibrate import calibrate

        calibrate(out_dir, settings, progress=progress)
    if cfg.head.enabled:
        from finetune.heads import add_head

        add_head(out_dir, cfg, settings, taxonomy, data.train, data.held, progress=progress)
    return out_dir


def seed_everything(cfg: FinetuneConfig) -> None:
    import torch

    random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)


def load_tokenizer(base: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_encoder(
    cfg: FinetuneConfig, settings: Settings, taxonomy: Taxonomy, tokenizer: PreTrainedTokenizerBase
) -> ExampleEncoder:
    return ExampleEncoder(
        tokenizer,
        taxonomy,
        prompts_dir=settings.prompt.dir,
        prompt_version=cfg.prompt_version,
        max_body_tokens=cfg.max_body_tokens or settings.prompt.max_body_tokens,
        max_history_tokens=settings.prompt.max_history_tokens,
        max_string_tokens=settings.engine.max_string_tokens,
        max_reasoning_tokens=settings.engine.max_reasoning_tokens,
        labels_only=cfg.data.target == "labels",
    )


def encode_examples(
    cfg: FinetuneConfig, encoder: ExampleEncoder, data: TrainingData, *, progress: bool
) -> list[Encoded]:
    """The training examples as token ids; those over `train.max_length` are dropped (and counted)."""
    from tqdm import tqdm

    encoded: list[Encoded] = []
    too_long = 0
    for ex in tqdm(data.train, desc="encoding", unit="ex", disable=not progress):
        enc = encoder.encode(ex)
        if len(enc.input_ids) > cfg.train.max_length:
            too_long += 1
            continue
        encoded.append(enc)
    data.provenance["dropped_too_long"] = too_long
    lengths = [len(e.input_ids) for e in encoded]
    log.info(
        "%d training examples (mean %.0f tokens), %d held out, %d dropped (> %d tokens)",
        len(encoded),
        sum(lengths) / max(1, len(lengths)),
        len(data.held),
        too_long,
        cfg.train.max_length,
    )
    return encoded


def pick_device(cfg: FinetuneConfig) -> tuple[torch.device, torch.dtype]:
    import torch

    from server.engines.loading import cpu_has_native_bf16, resolve_device, resolve_dtype

    device = resolve_device(cfg.train.device)
    if cfg.train.dtype == "auto" and device.type == "cpu":
        # Training keeps bf16 on a CPU with native bf16: the fp32-is-faster measurement was inference only.
        return device, torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return device, resolve_dtype(cfg.train.dtype, device)


def build_model(cfg: FinetuneConfig, settings: Settings, base: str, provenance: dict[str, Any]) -> ModelParts:
    """The base model with a fresh LoRA of shape `cfg.lora`, or the `init_adapter` to continue from."""
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    device, dtype = pick_device(cfg)
    model: torch.nn.Module = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    model = model.to(device)
    init = init_adapter(cfg, settings)
    if init is not None:
        peft_model = PeftModel.from_pretrained(model, str(init.path), is_trainable=True)
        provenance["init_adapter"] = {"name": init.name, "adapter_files": init.manifest.adapter_files}
        shape = peft_model.peft_config["default"]
        log.info("continuing from adapter %s (r=%s, alpha=%s)", init.name, shape.r, shape.lora_alpha)  # type: ignore[attr-defined]
    else:
        lora = LoraConfig(
            task_type="CAUSAL_LM",
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=list(cfg.lora.target_modules),
        )
        peft_model = get_peft_model(model, lora)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    return ModelParts(peft_model, device, dtype, params)


def init_adapter(cfg: FinetuneConfig, settings: Settings) -> AdapterEntry | None:
    """The adapter to continue from, resolved like a served one (name or folder); it must share the prompt."""
    if not cfg.init_adapter:
        return None
    from server.registry import resolve_adapter

    entry = resolve_adapter(settings.variant(model={"adapter": cfg.init_adapter}).model)
    if entry is None:
        raise ValueError(f"init_adapter {cfg.init_adapter!r} names no adapter")
    trained_on = entry.manifest.prompt_version
    if trained_on not in (None, f"classify/{cfg.prompt_version}"):
        raise ValueError(
            f"init_adapter {entry.name} was trained on {trained_on}, this job uses classify/{cfg.prompt_version}"
        )
    return entry


def build_schedule(cfg: FinetuneConfig, parts: ModelParts, n_examples: int) -> Schedule:
    """AdamW with linear warmup and decay over the run's optimizer steps (`max_steps` caps them)."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.AdamW(parts.params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    per_epoch = math.ceil(n_examples / cfg.train.batch_size)
    total_micro = math.ceil(per_epoch * cfg.train.epochs)
    total_steps = math.ceil(total_micro / cfg.train.grad_accum)
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
    warmup = int(total_steps * cfg.train.warmup_ratio)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)  # type: ignore[no-untyped-call]
    return Schedule(optimizer, scheduler, per_epoch, total_steps)


def resume(ckpt_root: Path, chash: str, parts: ModelParts, schedule: Schedule) -> TrainStats:
    """Restore the newest checkpoint of the same configuration, if any; the stats to go on from."""
    ckpt = latest_checkpoint(ckpt_root, chash)
    if ckpt is None:
        return TrainStats(Position(0, 0), resumed_from=None)
    position = load_checkpoint(ckpt, parts.model, schedule.optimizer, schedule.scheduler, parts.device)
    log.info("resumed from %s (step %d)", ckpt, position.step)
    return TrainStats(position, resumed_from=position.step)


def train(
    cfg: FinetuneConfig,
    parts: ModelParts,
    schedule: Schedule,
    examples: list[Encoded],
    pad_id: int,
    stats: TrainStats,
    ckpt_root: Path,
    chash: str,
    progress: bool,
) -> None:
    """Optimizer steps until `schedule.total_steps`, checkpointing every `train.checkpoint_every`."""
    import torch
    from peft import get_peft_model_state_dict
    from tqdm import tqdm

    t = cfg.train
    model, device, pos, optimizer = parts.model, parts.device, stats.position, schedule.optimizer
    lengths = [len(e.input_ids) for e in examples]
    model.train()
    t_train = time.perf_counter()
    bar = tqdm(
        total=schedule.total_steps, initial=pos.step, desc=f"training {cfg.name}", unit="step", disable=not progress
    )
    epoch_batches: list[list[int]] = []
    optimizer.zero_grad(set_to_none=True)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and parts.dtype == torch.bfloat16
        else contextlib.nullcontext()
    )
    while pos.step < schedule.total_steps:
        epoch, at = divmod(pos.micro, schedule.per_epoch)
        if at == 0 or not epoch_batches:
            epoch_batches = length_grouped_batches(lengths, t.batch_size, t.seed + epoch)
        t_step = time.perf_counter()
        batch = collate([examples[j] for j in epoch_batches[at]], pad_id, device)
        with autocast:
            loss = answer_loss(model, batch) / t.grad_accum
        pos.micro += 1
        stats.seen_tokens += int(batch.attention_mask.sum())
        if torch.isfinite(loss):
            loss.backward()  # type: ignore[no-untyped-call]
            stats.losses.append(float(loss.detach()) * t.grad_accum)
        else:  # one bad batch must not poison the adapter: skip it, and say so in the manifest
            stats.skipped_batches += 1
        if pos.micro % t.grad_accum:
            continue
        norm = torch.nn.utils.clip_grad_norm_(parts.params, 1.0)
        if not torch.isfinite(norm):
            stats.skipped_batches += 1
            optimizer.zero_grad(set_to_none=True)
        optimizer.step()
        schedule.scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        pos.step += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        stats.step_times.append(time.perf_counter() - t_step)
        bar.update(1)
        if pos.step % t.log_every == 0:
            window = t.log_every * t.grad_accum
            bar.set_postfix(
                loss=f"{sum(stats.losses[-window:]) / window:.4f}", epoch=f"{pos.micro / schedule.per_epoch:.2f}"
            )
        if t.checkpoint_every and pos.step % t.checkpoint_every == 0 and pos.step < schedule.total_steps:
            weights = get_peft_model_state_dict(model)
            save_checkpoint(ckpt_root, weights, optimizer, schedule.scheduler, pos, chash)
    bar.close()
    stats.seconds = time.perf_counter() - t_train


def training_record(
    cfg: FinetuneConfig,
    parts: ModelParts,
    schedule: Schedule,
    stats: TrainStats,
    n_examples: int,
    chash: str,
    started: float,
) -> dict[str, Any]:
    """The manifest's `training` section: duration, throughput, final loss, where it ran."""
    import torch

    s, micro, device = stats.seconds, stats.position.micro, parts.device
    tail = stats.losses[-20:]
    return {
        "seconds": round(s, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "steps": stats.position.step,
        "epochs": round(micro / schedule.per_epoch, 3),
        "examples": n_examples,
        "examples_per_s": round(micro * cfg.train.batch_size / s, 3) if s and micro else None,
        "tokens_per_s": round(stats.seen_tokens / s, 1) if s else None,
        "seconds_per_step_median": round(sorted(stats.step_times)[len(stats.step_times) // 2], 4)
        if stats.step_times
        else None,
        "final_loss": round(sum(tail) / max(1, len(tail)), 5) if tail else None,
        "trainable_parameters": sum(p.numel() for p in parts.params),
        "skipped_nonfinite_batches": stats.skipped_batches,
        "resumed_from_step": stats.resumed_from,
        "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
        "dtype": str(parts.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "config_hash": chash,
    }


def save_adapter(
    cfg: FinetuneConfig,
    settings: Settings,
    parts: ModelParts,
    out_dir: Path,
    base: str,
    prompt_id: str,
    taxonomy: Taxonomy,
    data: TrainingData,
    training: dict[str, Any],
) -> None:
    """Adapter weights, held-out split and manifest, written aside and swapped in at once; the finished
    adapter supersedes its checkpoints."""
    import torch

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = parts.model
    model.eval()
    if cfg.train.save_dtype == "float16":
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.data = p.data.to(torch.float16)
    model.save_pretrained(str(tmp))
    write_heldout(tmp / HELDOUT_FILE, data.held, ReadSpec.of(cfg))
    manifest = lora_manifest(
        cfg,
        settings,
        adapter_dir=tmp,
        base=base,
        prompt_id=prompt_id,
        taxonomy_key=taxonomy.key,
        provenance=data.provenance,
        training=training,
    )
    write_json(tmp / "manifest.json", manifest)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    log.info("adapter written: %s (%.0fs training)", out_dir, training["seconds"])
