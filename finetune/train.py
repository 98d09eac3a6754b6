"""`triage finetune`: LoRA on labelled files + reviewer feedback, with checkpoints, resume and a manifest.

main(cfg) -> the adapter folder. The job: read and validate all data (fail before any training),
render every example with the server's prompt code, train LoRA adapters (loss on answer tokens
only), save `adapter_model.safetensors` + `adapter_config.json` + `manifest.json` + `heldout.jsonl`,
then fit per-field temperatures on the held-out split (finetune.calibrate).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig
from finetune.data import Example, feedback_examples, merge, read_examples, split
from finetune.encode import IGNORE, ExampleEncoder
from server.config import PROJECT_ROOT, Settings, load_settings
from server.registry import resolve_project_path, sha256_file
from server.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def load_data(
    cfg: FinetuneConfig, settings: Settings, taxonomy: Taxonomy
) -> tuple[list[Example], list[Example], dict[str, Any]]:
    """All examples, validated, merged with feedback and split; plus the provenance record."""
    need_reasoning = cfg.data.target == "full"
    examples: list[Example] = []
    sources = []
    for f in cfg.data.files:
        got, record = read_examples(
            resolve_project_path(f),
            taxonomy,
            text_column=cfg.data.text_column,
            label_sources=cfg.data.label_sources,
            need_reasoning=need_reasoning,
        )
        record["path"] = _rel(resolve_project_path(f))
        examples += got
        sources.append(record)
    provenance: dict[str, Any] = {"sources": sources}
    if cfg.data.feedback:
        fb, snapshot = feedback_examples(
            cfg.data.database_url or settings.database_url, taxonomy, need_reasoning=need_reasoning
        )
        provenance["feedback"] = snapshot
        examples = merge(examples, fb)
    rng = random.Random(cfg.train.seed)
    rng.shuffle(examples)
    if cfg.data.max_rows:
        examples = examples[: cfg.data.max_rows]
    held_ids = (
        set(resolve_project_path(cfg.data.heldout_ids).read_text(encoding="utf-8").split())
        if cfg.data.heldout_ids
        else None
    )
    train, held = split(examples, cfg.data.heldout_fraction, cfg.train.seed, held_ids)
    provenance.update(train_rows=len(train), heldout_rows=len(held))
    return train, held, provenance


def pick_device(cfg: FinetuneConfig) -> tuple[Any, Any]:
    import torch

    from server.engines.loading import resolve_dtype

    device = torch.device(
        "cuda"
        if cfg.train.device == "auto" and torch.cuda.is_available()
        else (cfg.train.device if cfg.train.device != "auto" else "cpu")
    )
    dtype = resolve_dtype(cfg.train.dtype) if device.type == "cpu" or cfg.train.dtype != "auto" else torch.bfloat16
    return device, dtype


def _batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Length-grouped batches (little padding), in a seeded random order."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = batch_size * 32
    batches: list[list[int]] = []
    for i in range(0, len(order), mega):
        chunk = sorted(order[i : i + mega], key=lambda j: lengths[j])
        batches += [chunk[k : k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(rows: list[dict[str, Any]], pad_id: int, device: Any) -> dict[str, Any]:
    """Right padding (a left-padded row's pad queries see no key at all: a fully masked softmax row
    that some attention kernels turn into NaN, which then leaks through 0 * NaN). Logits are computed
    only for the last K positions, which cover every row's answer."""
    import torch

    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    positions = torch.arange(width).unsqueeze(0).expand(len(rows), -1)
    keep = width - min(len(r["input_ids"]) - r["answer_len"] for r in rows) + 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "position_ids": positions.to(device),
        "labels": labels.to(device),
        "keep": keep,
    }


def _loss(model: Any, batch: dict[str, Any]) -> Any:
    import torch.nn.functional as F

    keep = batch["keep"]
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=keep,
    )
    logits = out.logits[:, :-1].float()
    target = batch["labels"][:, -keep + 1 :]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE)


def _config_hash(cfg: FinetuneConfig) -> str:
    d = cfg.to_dict()
    d["train"].pop("checkpoint_every", None)
    d["train"].pop("log_every", None)
    d["train"].pop("threads", None)
    # Neither changes the LoRA training itself (the head is fitted after it).
    d.pop("head", None)
    d.pop("kind", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def main(cfg: FinetuneConfig, settings: Settings | None = None, *, progress: bool = True) -> Path:
    import datasets
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    settings = settings or load_settings()
    taxonomy = load_taxonomy(cfg.taxonomy)
    base = cfg.base or settings.model.base
    out_dir = resolve_project_path(cfg.output_dir) / cfg.name
    ckpt_root = out_dir / "checkpoints"
    started = time.perf_counter()
    random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)

    # 1. Data: everything validated before the model is even loaded.
    train_ex, held_ex, provenance = load_data(cfg, settings, taxonomy)
    if cfg.kind == "head":  # no LoRA: a label head over the bare base model
        from finetune.heads import head_only

        return head_only(cfg, settings, taxonomy, out_dir, train_ex, held_ex, provenance, base, progress=progress)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    encoder = ExampleEncoder(
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
    rows: dict[str, list[Any]] = {"uid": [], "input_ids": [], "labels": [], "answer_len": []}
    too_long = 0
    for ex in tqdm(train_ex, desc="encoding", unit="ex", disable=not progress):
        enc = encoder.encode(ex)
        if len(enc.input_ids) > cfg.train.max_length:
            too_long += 1
            continue
        rows["uid"].append(ex.uid)
        rows["input_ids"].append(enc.input_ids)
        rows["labels"].append(enc.labels)
        rows["answer_len"].append(enc.answer_len)
    dataset = datasets.Dataset.from_dict(rows)
    provenance["dropped_too_long"] = too_long
    lengths = [len(x) for x in rows["input_ids"]]
    log.info(
        "%d training examples (mean %.0f tokens), %d held out, %d dropped (> %d tokens)",
        len(dataset),
        sum(lengths) / max(1, len(lengths)),
        len(held_ex),
        too_long,
        cfg.train.max_length,
    )

    # 2. Model + LoRA.
    device, dtype = pick_device(cfg)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype).to(device)
    init = _init_adapter(cfg, settings)
    if init is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(init.path), is_trainable=True)
        provenance["init_adapter"] = {"name": init.name, "adapter_files": init.manifest.get("adapter_files")}
        lora_shape = model.peft_config["default"]
        log.info("continuing from adapter %s (r=%s, alpha=%s)", init.name, lora_shape.r, lora_shape.lora_alpha)
    else:
        lora = LoraConfig(
            task_type="CAUSAL_LM",
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=list(cfg.lora.target_modules),
        )
        model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    per_epoch = math.ceil(len(dataset) / cfg.train.batch_size)
    total_micro = math.ceil(per_epoch * cfg.train.epochs)
    total_steps = math.ceil(total_micro / cfg.train.grad_accum)
    if cfg.train.max_steps:
        total_steps = min(total_steps, cfg.train.max_steps)
        total_micro = total_steps * cfg.train.grad_accum
    scheduler = get_linear_schedule_with_warmup(optimizer, int(total_steps * cfg.train.warmup_ratio), total_steps)

    # 3. Resume from the newest checkpoint of the same configuration.
    chash = _config_hash(cfg)
    step = micro = 0
    resumed_from = None
    ckpt = _latest_checkpoint(ckpt_root, chash)
    if ckpt is not None:
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors"), device=str(device)))
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
        scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        state = json.loads((ckpt / "state.json").read_text())
        step, micro = state["step"], state["micro"]
        resumed_from = step
        log.info("resumed from %s (step %d)", ckpt, step)

    # 4. Train.
    model.train()
    losses: list[float] = []
    seen_tokens = skipped_batches = 0
    step_times: list[float] = []  # per optimizer step (the last micro-batch's wall time with grad_accum=1)
    t_train = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc=f"training {cfg.name}", unit="step", disable=not progress)
    epoch_batches: list[list[int]] = []
    optimizer.zero_grad(set_to_none=True)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and dtype == torch.bfloat16
        else contextlib.nullcontext()
    )
    while step < total_steps:
        epoch, pos = divmod(micro, per_epoch)
        if pos == 0 or not epoch_batches:
            epoch_batches = _batches(lengths, cfg.train.batch_size, cfg.train.seed + epoch)
        t_step = time.perf_counter()
        batch = _collate([dataset[j] for j in epoch_batches[pos]], tokenizer.pad_token_id, device)
        with autocast:
            loss = _loss(model, batch) / cfg.train.grad_accum
        micro += 1
        seen_tokens += int(batch["attention_mask"].sum())
        if torch.isfinite(loss):
            loss.backward()
            losses.append(float(loss.detach()) * cfg.train.grad_accum)
        else:  # one bad batch must not poison the adapter: skip it, and say so in the manifest
            skipped_batches += 1
        if micro % cfg.train.grad_accum == 0:
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            if not torch.isfinite(norm):
                skipped_batches += 1
                optimizer.zero_grad(set_to_none=True)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if device.type == "cuda":
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - t_step)
            bar.update(1)
            if step % cfg.train.log_every == 0:
                bar.set_postfix(
                    loss=f"{sum(losses[-cfg.train.log_every * cfg.train.grad_accum :]) / (cfg.train.log_every * cfg.train.grad_accum):.4f}",
                    epoch=f"{micro / per_epoch:.2f}",
                )
            if cfg.train.checkpoint_every and step % cfg.train.checkpoint_every == 0 and step < total_steps:
                _save_checkpoint(ckpt_root, model, optimizer, scheduler, step, micro, chash, get_peft_model_state_dict)
    bar.close()
    train_s = time.perf_counter() - t_train

    # 5. Save the adapter atomically, then the manifest.
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval()
    if cfg.train.save_dtype == "float16":
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.data = p.data.to(torch.float16)
    model.save_pretrained(tmp)
    for name in ("checkpoints",):
        if (out_dir / name).exists():
            shutil.move(str(out_dir / name), str(tmp / name))
    _write_heldout(tmp / "heldout.jsonl", held_ex)
    manifest = {
        "name": cfg.name,
        "kind": "lora",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "base_model": {
            "path": _rel(resolve_project_path(base))
            if Path(base).exists() or resolve_project_path(base).exists()
            else base,
            "safetensors_sha256": _base_hash(base),
        },
        "prompt_version": encoder.prompt_id,
        "taxonomy": taxonomy.key,
        "target": cfg.data.target,
        "data": provenance,
        "hyperparameters": {
            "lora": asdict(cfg.lora),
            "train": asdict(cfg.train),
            "max_body_tokens": cfg.max_body_tokens or settings.prompt.max_body_tokens,
        },
        "training": {
            "seconds": round(train_s, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
            "steps": step,
            "epochs": round(micro / per_epoch, 3),
            "examples": len(dataset),
            "examples_per_s": round(micro * cfg.train.batch_size / train_s, 3) if train_s and micro else None,
            "tokens_per_s": round(seen_tokens / train_s, 1) if train_s else None,
            "seconds_per_step_median": round(sorted(step_times)[len(step_times) // 2], 4) if step_times else None,
            "final_loss": round(sum(losses[-20:]) / max(1, len(losses[-20:])), 5) if losses else None,
            "trainable_parameters": trainable,
            "skipped_nonfinite_batches": skipped_batches,
            "resumed_from_step": resumed_from,
            "device": str(device) + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""),
            "dtype": str(dtype).removeprefix("torch."),
            "torch": torch.__version__,
            "config_hash": chash,
        },
        "config": cfg.to_dict(),
        "adapter_files": {f: sha256_file(tmp / f) for f in ADAPTER_FILES},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    shutil.rmtree(tmp / "checkpoints", ignore_errors=True)  # the finished adapter supersedes them
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    log.info("adapter written: %s (%.0fs training)", out_dir, train_s)
    del model, optimizer
    if cfg.calibrate and held_ex:
        from finetune.calibrate import calibrate

        calibrate(out_dir, settings, progress=progress)
    if cfg.head.enabled:
        from finetune.heads import add_head

        add_head(out_dir, cfg, settings, taxonomy, train_ex, held_ex, progress=progress)
    return out_dir


def _init_adapter(cfg: FinetuneConfig, settings: Settings) -> Any:
    """The adapter to continue from, resolved like a served one (name or folder); it must share the base."""
    if not cfg.init_adapter:
        return None
    from server.registry import resolve_adapter

    entry = resolve_adapter(settings.model.model_copy(update={"adapter": cfg.init_adapter}))
    if entry is None:
        raise ValueError(f"init_adapter {cfg.init_adapter!r} names no adapter")
    if entry.manifest.get("prompt_version") not in (None, f"classify/{cfg.prompt_version}"):
        raise ValueError(
            f"init_adapter {entry.name} was trained on {entry.manifest.get('prompt_version')}, this job uses classify/{cfg.prompt_version}"
        )
    return entry


def _base_hash(base: str) -> str | None:
    f = resolve_project_path(base) / "model.safetensors"
    return sha256_file(f) if f.is_file() else None


def _write_heldout(path: Path, held: list[Example]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for ex in held:
            fh.write(
                json.dumps(
                    {
                        "uid": ex.uid,
                        "subject": ex.ticket.subject,
                        "body": ex.ticket.body,
                        "previous_interactions": list(ex.ticket.previous_interactions),
                        "answer": ex.answer,
                        "language": ex.language,
                        "source": ex.source,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )


def read_heldout(path: Path) -> list[Example]:
    from server.prompts import TicketInput

    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out.append(
            Example(
                d["uid"],
                TicketInput(d["subject"], d["body"], tuple(d.get("previous_interactions") or ())),
                d["answer"],
                d.get("source", ""),
                d.get("language"),
            )
        )
    return out


def _save_checkpoint(
    root: Path, model: Any, optimizer: Any, scheduler: Any, step: int, micro: int, chash: str, state_dict_fn: Any
) -> None:
    import torch
    from safetensors.torch import save_file

    tmp = root / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in state_dict_fn(model).items()},
        str(tmp / "adapter_model.safetensors"),
    )
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "micro": micro, "config_hash": chash}))
    final = root / f"step-{step:06d}"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)  # a checkpoint exists completely or not at all
    for old in sorted(root.glob("step-*"))[:-2]:
        shutil.rmtree(old, ignore_errors=True)


def _latest_checkpoint(root: Path, chash: str) -> Path | None:
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
