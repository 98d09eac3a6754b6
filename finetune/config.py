"""The fine-tuning job's configuration: one pydantic model, read from YAML, `--set key=value` overrides and
the `triage finetune` flags (finetune/cli.py builds them from the fields marked with `Flag`).

Every source goes through the same validation: unknown keys, misspelt choices (`target: labelz`) and
values of the wrong type are refused with the key's dotted path, never trained on silently.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from server.config import Role, check_device

if typing.TYPE_CHECKING:
    from server.heads.head import Pool

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# The poolings of server.heads.head.Pool (POOL_KINDS there; a test keeps the two equal).
PoolKind = Literal["mean", "last", "history"]
# Whose corrections train by default: the keys allowed to review (admin holds every role's powers).
TRAINING_ROLES: tuple[Role, ...] = ("review", "admin")


class ConfigError(ValueError):
    """An invalid fine-tuning config; the message names each bad key by its dotted path."""


@dataclass(frozen=True)
class Flag:
    """Marks a field that `triage finetune` exposes as a flag of its own (all fields take `--set`)."""

    option: str  # click declaration, e.g. "--rank" or "--feedback/--no-feedback"
    comma_separated: bool = False  # a list field given as one value: `--target-modules q_proj,v_proj`

    @property
    def param(self) -> str:
        return self.option.split("/")[0].removeprefix("--").replace("-", "_")


def _pair(value: Any) -> Any:
    # YAML and JSON (a manifest's recorded config) have no tuples; a strict tuple would refuse their lists.
    return tuple(value) if isinstance(value, list) else value


PoolSpec = Annotated[tuple[int, PoolKind], BeforeValidator(_pair)]
DEFAULT_POOLS: list[tuple[int, PoolKind]] = [(16, "mean"), (30, "last")]


class _Section(BaseModel):
    # strict: YAML's `name: 2024` is refused instead of becoming a number, `epochs: "3"` is not a float.
    model_config = ConfigDict(extra="forbid", strict=True)


class DataArgs(_Section):
    files: Annotated[list[str], Flag("--data")] = Field(
        default_factory=lambda: ["data/tickets/train.csv"],
        description="Training CSV/JSONL file(s); replaces the config's list.",
    )
    # The dataset's own labels are noisy: only rows whose `label_source` is listed are read.
    label_sources: list[str] | None = Field(
        default_factory=lambda: ["reviewed"], description="label_source values to train on (null: every row)."
    )
    text_column: str | None = Field(None, description="Column of the ticket text, e.g. Banking77's `text`.")
    # A reviewer's correction is the newest truth: it wins over the file's label for the same ticket.
    feedback: Annotated[bool, Flag("--feedback/--no-feedback")] = Field(
        True, description="Add reviewer corrections from the database."
    )
    database_url: str | None = Field(None, description="Feedback database (default: the server settings').")
    # Corrections become training data: a key that may only classify must not be able to teach the model
    # (data poisoning), so only reviewers' and admins' corrections are read unless this says otherwise.
    feedback_roles: Annotated[list[Role], Flag("--feedback-roles", comma_separated=True)] = Field(
        default_factory=lambda: list(TRAINING_ROLES),
        min_length=1,
        description="Use corrections sent with a key of these roles, e.g. review,admin.",
    )
    feedback_keys: list[str] | None = Field(None, description="Only corrections sent with these API key names.")
    feedback_key_ids: list[int] | None = Field(None, description="Only corrections sent with these API key ids.")
    # Rows with no key: written before keys existed, or by a server running without keys, where anyone who
    # reached the port could post them.
    feedback_unattributed: bool = Field(False, description="Also use corrections sent without an API key.")
    heldout_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Kept apart for calibration and the report.")
    # The same held-out tickets for every run, and rows derived from them (augmentation) are never trained on.
    heldout_ids: str | None = Field(None, description="File of ticket ids (one per line) held out instead.")
    max_rows: Annotated[int | None, Flag("--max-rows")] = Field(
        None, ge=1, description="Use only this many rows (smoke runs); taken after shuffling."
    )
    target: Annotated[Literal["full", "labels"], Flag("--target")] = Field(
        "full", description="full (the whole JSON answer) or labels."
    )


class LoraArgs(_Section):
    r: Annotated[int, Flag("--rank")] = Field(16, ge=1, description="LoRA rank r.")
    alpha: Annotated[int, Flag("--alpha")] = Field(32, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: Annotated[list[str], Flag("--target-modules", comma_separated=True)] = Field(
        default_factory=lambda: list(ALL_LINEAR),
        min_length=1,
        description="Comma-separated module names, e.g. q_proj,v_proj.",
    )


class TrainArgs(_Section):
    epochs: Annotated[float, Flag("--epochs")] = Field(2.0, ge=0.0, description="Passes over the training rows.")
    lr: Annotated[float, Flag("--lr")] = Field(2e-4, gt=0.0, description="Peak learning rate.")
    batch_size: Annotated[int, Flag("--batch-size")] = Field(8, ge=1, description="Examples per micro-batch.")
    grad_accum: int = Field(1, ge=1)
    # The body is clipped by the prompt budget first; longer examples are dropped (and counted).
    max_length: Annotated[int, Flag("--max-length")] = Field(
        768, ge=1, description="Tokens per example (prompt + answer)."
    )
    warmup_ratio: float = Field(0.05, ge=0.0, le=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    seed: Annotated[int, Flag("--seed")] = Field(42, description="Seeds the shuffle, the split and the weights.")
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # The serving side's rule (server.engines.loading.resolve_device): a typo is refused, not run on the CPU.
    device: Annotated[str, BeforeValidator(check_device)] = Field(
        "auto", description="auto = cuda if available, else cpu; or cpu, cuda, cuda:N."
    )
    threads: int | None = Field(None, ge=1)
    checkpoint_every: int = Field(100, ge=0, description="Optimizer steps between checkpoints (0: none).")
    max_steps: Annotated[int | None, Flag("--max-steps")] = Field(
        None, ge=1, description="Stop after this many optimizer steps."
    )
    log_every: int = Field(10, ge=1)
    # LoRA weights train in fp32; fp16 storage halves the committed file (r=16 on all linear layers of
    # SmolLM2-135M: 19.6 -> 9.8 MB) at a relative rounding error of ~5e-4 per weight.
    save_dtype: Literal["float16", "float32"] = "float16"


class HeadArgs(_Section):
    """A label head (server.heads.head) fitted after training; see finetune/heads.py."""

    enabled: bool = False
    # A middle layer's mean over the ticket + the last layer's last token (sweep: EXPERIMENTS.md).
    pools: list[PoolSpec] = Field(
        default_factory=lambda: list(DEFAULT_POOLS), description="[hidden_states index, pooling] pairs."
    )
    hidden_c: float = Field(0.05, gt=0.0, description="Inverse L2 strength of the hidden-state regression.")
    text: bool = Field(True, description="Combine with the TF-IDF model.")
    # The classical baseline's C, chosen by cross-validation (server.evaluation.classical).
    text_c: float = Field(10.0, gt=0.0)
    text_weights: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], min_length=1)
    # Taxonomies with `out_of_scope`: the threshold with the largest out-of-scope recall at the wanted
    # in-scope accuracy, fitted on this file's rows (in-scope and out-of-scope).
    oos_data: str | None = None
    oos_min_in_scope_accuracy: float = Field(0.92, ge=0.0, le=1.0)

    @property
    def pool_list(self) -> list[Pool]:
        from server.heads.head import Pool

        return [Pool(layer, how) for layer, how in self.pools]


class FinetuneConfig(_Section):
    name: Annotated[str, Flag("--name")] = Field(
        "tickets-smollm2", min_length=1, description="Adapter name: written to models/adapters/<name>/."
    )
    output_dir: str = "models/adapters"
    base: Annotated[str | None, Flag("--base")] = Field(None, description="Base model folder (default: the server's).")
    taxonomy: str = "tickets"
    prompt_version: str = "v2"
    # Must match serving: the server's prompt budget unless set.
    max_body_tokens: int | None = Field(None, ge=1)
    calibrate: Annotated[bool, Flag("--calibrate/--no-calibrate")] = Field(
        True, description="Fit per-field temperatures on the held-out split."
    )
    # Its LoRA shape (rank, alpha, modules) is kept and `lora` is ignored; without, a fresh LoRA of shape `lora`.
    init_adapter: str | None = Field(None, description="Continue from this adapter (registered name or folder).")
    # head: no LoRA, only a label head over the bare base model (the folder's manifest says kind "head").
    kind: Literal["lora", "head"] = "lora"
    data: DataArgs = Field(default_factory=DataArgs)
    lora: LoraArgs = Field(default_factory=LoraArgs)
    train: TrainArgs = Field(default_factory=TrainArgs)
    head: HeadArgs = Field(default_factory=HeadArgs)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists, not tuples): what a manifest records and `config_from_dict` reads back."""
        return self.model_dump(mode="json")


# --- reading ---------------------------------------------------------------------------------------


class _YamlLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type information
    """YAML 1.1 reads `2e-4` as a string; this loader reads it as the float everyone means (YAML 1.2)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?\.?\d*(?:[eE][-+]?\d+)$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> FinetuneConfig:
    """YAML file (optional), then dotted overrides (`train.epochs`: 3 or "3") on top, all validated."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"fine-tuning config not found: {p}")
        loaded = read_yaml(p.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: must be a mapping")
        raw = loaded
    return config_from_dict(raw, overrides, str(path or "config"))


def config_from_dict(
    raw: dict[str, Any], overrides: dict[str, Any] | None = None, where: str = "config"
) -> FinetuneConfig:
    """A config from a mapping (e.g. the one recorded in an adapter's manifest), overrides on top.

    An override's value may be typed (`3`, `["a"]`) or text from the command line (`"3"`, `"[a, b]"`),
    which `parse_override` reads as the field's type. None means "not given" (an unset flag)."""
    raw = copy.deepcopy(raw)
    for name in _sections(FinetuneConfig):
        if name in raw and raw[name] is None:  # an empty `head:` block
            raw[name] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            is_leaf = field_info(".".join(parents[: i + 1])) is not None and _model_at(parents[: i + 1]) is None
            if is_leaf or not isinstance(node, dict):
                raise ConfigError(f"{where}: {dotted}: {part!r} is not a section")
        node[leaf] = parse_override(dotted, value) if isinstance(value, str) else value
    try:
        return FinetuneConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain(exc, where)) from None


def parse_override(dotted: str, text: str) -> Any:
    """Command-line text as a value for the field `dotted`. A text field keeps the text as written
    (`--name 2024` is the name "2024", not a number); other fields read it as YAML (`3`, `2e-4`, `true`,
    `[q_proj, v_proj]`, `null`); a single value for a list field is a one-item list."""
    annotation = field_type(dotted)
    if annotation is not None and _is_text(annotation):
        return None if _is_optional(annotation) and text.strip() in ("", "null", "~") else text
    value = read_yaml(text)
    if annotation is not None and _is_list(annotation) and isinstance(value, str):
        return [value]
    return value


def explain(exc: ValidationError, where: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            parent = _model_at([str(p) for p in err["loc"][:-1]])
            known = f"; known: {', '.join(parent.model_fields)}" if parent is not None else ""
            lines.append(f"{loc}: unknown key{known}")
        else:
            lines.append(f"{loc}: {err['msg']}, got {err['input']!r}")
    return f"{where}: invalid fine-tuning config:\n  " + "\n  ".join(lines)


# --- the model's fields ----------------------------------------------------------------------------


def _sections(model: type[BaseModel]) -> list[str]:
    return [n for n, f in model.model_fields.items() if _submodel(f.annotation) is not None]


def _submodel(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _model_at(path: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = FinetuneConfig
    for part in path:
        info = model.model_fields.get(part) if model is not None else None
        model = _submodel(info.annotation) if info is not None else None
    return model


def field_info(dotted: str) -> FieldInfo | None:
    *parents, leaf = dotted.split(".")
    model = _model_at(parents)
    return model.model_fields.get(leaf) if model is not None else None


def field_type(dotted: str) -> Any:
    info = field_info(dotted)
    return info.annotation if info is not None else None


def flags() -> Iterator[tuple[str, FieldInfo, Flag]]:
    """(dotted key, field, flag) of every field with its own flag, in the model's order."""

    def walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo, Flag]]:
        for name, info in model.model_fields.items():
            sub = _submodel(info.annotation)
            if sub is not None:
                yield from walk(sub, f"{prefix}{name}.")
            for marker in info.metadata:
                if isinstance(marker, Flag):
                    yield f"{prefix}{name}", info, marker

    yield from walk(FinetuneConfig, "")


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(a for a in get_args(annotation) if a is not type(None))
    return (annotation,)


def _is_optional(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _is_text(annotation: Any) -> bool:
    return all(
        a is str or (get_origin(a) is Literal and all(isinstance(v, str) for v in get_args(a)))
        for a in _members(annotation)
    )


def _is_list(annotation: Any) -> bool:
    return any(get_origin(a) is list for a in _members(annotation))


def scalar_type(annotation: Any) -> Any:
    """The type a flag of this field parses: the field's type without None, a Literal as str."""
    [member] = _members(annotation)
    if get_origin(member) is Literal:
        return str
    return member
