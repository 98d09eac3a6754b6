"""Typed job configuration, from a YAML file and/or flags (flags win). Unknown keys are errors."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class DataArgs:
    files: list[str] = field(default_factory=lambda: ["data/tickets/train.csv"])
    # Rows whose `label_source` column is not listed are skipped (the dataset's own labels are noisy).
    label_sources: list[str] | None = field(default_factory=lambda: ["reviewed"])
    text_column: str | None = None  # e.g. Banking77's `text`: the ticket body
    feedback: bool = True  # add reviewer corrections from the database (they win over file labels)
    database_url: str | None = None  # default: the server settings' database
    heldout_fraction: float = 0.1  # kept apart for calibration and the held-out report
    # A file of ticket ids (one per line) held out instead of a random fraction: the same held-out
    # tickets for every run, and rows derived from them (augmentation) are never trained on.
    heldout_ids: str | None = None
    max_rows: int | None = None  # cap for smoke runs (taken after shuffling)
    target: Literal["full", "labels"] = "full"  # full JSON answer, or stop after the labels


@dataclass
class LoraArgs:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))


@dataclass
class TrainArgs:
    epochs: float = 2.0
    lr: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 768  # tokens per example (prompt + answer); the body is clipped by the prompt budget first
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    seed: int = 42
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: str = "auto"  # auto = cuda if available, else cpu
    threads: int | None = None
    checkpoint_every: int = 100  # optimizer steps
    max_steps: int | None = None
    log_every: int = 10
    # LoRA weights are trained in fp32; fp16 storage halves the committed file (r=16 on all linear
    # layers of SmolLM2-135M: 19.6 -> 9.8 MB) at a relative rounding error of ~5e-4 per weight.
    save_dtype: Literal["float16", "float32"] = "float16"


@dataclass
class HeadArgs:
    """A label head (server.heads.head) fitted after training; see finetune/heads.py."""

    enabled: bool = False
    # hidden_states indices and poolings: a middle layer's mean over the ticket + the last layer's last token.
    pools: list[list[Any]] = field(default_factory=lambda: [[16, "mean"], [30, "last"]])
    hidden_c: float = 0.05  # inverse L2 strength of the hidden-state regression (d = 576 per pool)
    text: bool = True  # combine with the TF-IDF model
    text_c: float = 10.0  # the classical baseline's C (chosen by cross-validation, server.evaluation.classical)
    text_weights: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    # Out-of-scope threshold (taxonomies with `out_of_scope`): fitted on this file's rows (in-scope and
    # out-of-scope), the largest recall of out-of-scope at the wanted in-scope accuracy.
    oos_data: str | None = None
    oos_min_in_scope_accuracy: float = 0.92

    @property
    def pool_list(self) -> list[Any]:
        from server.heads.head import POOL_KINDS, Pool

        pools = []
        for item in self.pools:
            if (
                not isinstance(item, (list, tuple))
                or len(item) != 2
                or not isinstance(item[0], int)
                or item[1] not in POOL_KINDS
            ):
                raise ValueError(f"head.pools: each item is [layer, {'|'.join(POOL_KINDS)}], got {item!r}")
            pools.append(Pool(int(item[0]), item[1]))
        return pools


@dataclass
class FinetuneConfig:
    name: str = "tickets-smollm2"
    output_dir: str = "models/adapters"
    base: str | None = None  # default: the server's base model
    taxonomy: str = "tickets"
    prompt_version: str = "v2"
    max_body_tokens: int | None = None  # default: the server's prompt budget (must match serving)
    calibrate: bool = True
    # Continue from an existing adapter (registered name or folder): its LoRA shape (rank, alpha,
    # modules) is kept and `lora` is ignored. Without: a fresh LoRA of shape `lora`.
    init_adapter: str | None = None
    # lora: train a LoRA adapter (and a head if head.enabled); head: no LoRA, only a label head over
    # the bare base model (the folder's manifest says kind "head").
    kind: Literal["lora", "head"] = "lora"
    data: DataArgs = field(default_factory=DataArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    head: HeadArgs = field(default_factory=HeadArgs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        sub = (
            {"data": DataArgs, "lora": LoraArgs, "train": TrainArgs, "head": HeadArgs}.get(name)
            if cls is FinetuneConfig
            else None
        )
        kwargs[name] = _build(sub, value or {}, f"{where}.{name}") if sub else value
    return cls(**kwargs)


def _coerce(text: str) -> Any:
    """Flag values are YAML scalars/lists: `3`, `2e-4`, `true`, `[q_proj, v_proj]`, `null`."""
    return yaml.safe_load(text)


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> FinetuneConfig:
    """YAML file (optional), then dotted overrides (`train.epochs`: 3) on top."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"fine-tuning config not found: {p}")
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{p}: must be a mapping")
    return config_from_dict(raw, overrides, str(path or "config"))


def config_from_dict(
    raw: dict[str, Any], overrides: dict[str, Any] | None = None, where: str = "config"
) -> FinetuneConfig:
    """A config from a mapping (e.g. the one recorded in an adapter's manifest), overrides on top."""
    raw = copy.deepcopy(raw)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _coerce(value) if isinstance(value, str) else value
    return _build(FinetuneConfig, raw, where)
