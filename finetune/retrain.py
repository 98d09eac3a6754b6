"""`triage retrain`: the learning loop, closed.

One run: count the corrections stored since the active adapter's feedback snapshot (the highest feedback id
its training read, recorded in its manifest's `data.feedback`), and when there are enough, fine-tune a
candidate on the active adapter's own training config (its base data) plus the feedback, calibrate it, gate
it against the active adapter with the regression gate, and promote it only when the gate says "yes" and
automatic promotion was asked for. Otherwise the candidate stays registered but not active, with its gate
verdict in its manifest and the gate report in `report_dir`. Every run, skipped or not, is one `retrain`
event in the audit log (the metrics read the latest one from there).

There is no scheduler here: a cron line or a Kubernetes CronJob (deploy/k8s/retrain-cronjob.yaml) runs
`triage retrain --if-new N` and the count decides.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from finetune.config import ConfigError, FinetuneConfig, config_from_dict, explain, load_config, read_yaml
from finetune.data import FeedbackFilter, open_feedback_store
from server.config import Settings
from server.registry import MANIFEST, AdapterEntry, Registry, RegistryError, open_registry, resolve_project_path

Verdict = Literal["promoted", "kept", "failed", "skipped"]
Progress = Callable[[str], None]

# A candidate of a candidate keeps the original stem: tickets-smollm2-v1-retrain-20261207T020000, not -retrain-...-retrain-...
_RETRAIN_SUFFIX = re.compile(r"-retrain-\d{8}T\d{6}$")


class RetrainConfig(BaseModel):
    """What `triage retrain` does; from a YAML file (`--config`), its flags on top. Validated like the
    fine-tuning config: unknown keys and wrong types are refused with the key's name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    if_new: int | None = Field(
        None, ge=1, description="Train only when at least this many new corrections passed the feedback filter."
    )
    # Opt-in: a candidate the gate let through still waits for a person unless this is set.
    promote: bool = Field(False, description="Promote the candidate when the gate says yes (never when it says no).")
    name: str | None = Field(
        None, min_length=1, description="Candidate adapter name (default: <active>-retrain-<UTC time>)."
    )
    # active: continue the served LoRA (cheap, keeps what it learned); fresh: the base config's own LoRA from zero.
    start: Literal["active", "fresh"] = Field("active", description="Continue from the active adapter, or fresh.")
    base_config: str | None = Field(
        None, description="Fine-tuning YAML to train with instead of the config recorded in the active manifest."
    )
    # Dotted keys of the fine-tuning config (train.max_steps, data.max_rows, data.feedback_roles, ...).
    finetune: dict[str, Any] = Field(default_factory=dict, description="Overrides of the fine-tuning config.")
    eval_data: str | None = Field(
        None, description="Labelled CSV the gate evaluates both adapters on (default: data/<taxonomy>/golden.csv)."
    )
    rules: str | dict[str, Any] | None = Field(
        None, description="Gate rules: a YAML file or a mapping (default: built-in)."
    )
    report_dir: str = Field("var/retrain", description="Gate reports go to <report_dir>/<candidate>/.")


@dataclass
class GateSummary:
    """What the audit event keeps of the gate: the verdict, the failed checks by name, where the report is."""

    verdict: Literal["yes", "no"]
    n: int | None
    failed_checks: list[str]
    baseline: str
    report: str

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "n": self.n,
            "failed_checks": self.failed_checks,
            "baseline": self.baseline,
            "report": self.report,
        }


@dataclass
class RetrainResult:
    verdict: Verdict
    active: str | None
    new_corrections: int
    since_feedback_id: int | None  # the active snapshot's max_feedback_id (None: it read no feedback)
    candidate: str | None = None
    gate: GateSummary | None = None
    message: str = ""
    error: str | None = None
    seconds: float = 0.0
    calibration: dict[str, Any] | None = field(default=None)

    def detail(self) -> dict[str, Any]:
        """The audit event's detail (the shape the metrics collector reads)."""
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "candidate": self.candidate,
            "new_corrections": self.new_corrections,
            "gate": self.gate.to_json() if self.gate else None,
            "active": self.active,
            "since_feedback_id": self.since_feedback_id,
            "seconds": round(self.seconds, 1),
        }
        if self.error is not None:
            out["error"] = self.error
        return out


class RetrainError(ValueError):
    """The run cannot start (no active adapter, a bad config, a taken name); nothing was trained."""


# -- configuration ----------------------------------------------------------------------------------


def load_retrain_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RetrainConfig:
    """YAML (optional), then flag values on top (None: not given). `finetune` overrides merge key by key."""
    raw: dict[str, Any] = {}
    where = str(path or "retrain config")
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"retrain config not found: {p}")
        loaded = read_yaml(p.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: must be a mapping")
        raw = loaded
    if isinstance(raw.get("finetune"), dict):
        raw["finetune"] = flatten(raw["finetune"])
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "finetune":
            raw["finetune"] = {**(raw.get("finetune") or {}), **value}
        else:
            raw[key] = value
    try:
        return RetrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain(exc, where).replace("fine-tuning config", "retrain config")) from None


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{train: {max_steps: 2}}` as `{"train.max_steps": 2}` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def candidate_name(active: str, now: datetime) -> str:
    return f"{_RETRAIN_SUFFIX.sub('', active)}-retrain-{now.strftime('%Y%m%dT%H%M%S')}"


def training_config(cfg: RetrainConfig, active: AdapterEntry, registry: Registry, name: str) -> FinetuneConfig:
    """The active adapter's training config (its base data and recipe) with the run's overrides; the
    candidate always reads the feedback, is calibrated, and is written into the registry's folder."""
    forced: dict[str, Any] = {
        "name": name,
        "output_dir": str(registry.adapters_dir),
        "data.feedback": True,
        "calibrate": True,
        "init_adapter": str(active.path) if cfg.start == "active" else None,
    }
    overrides = {**cfg.finetune, **forced}
    if cfg.base_config is not None:
        return load_config(resolve_project_path(cfg.base_config), overrides)
    recorded = active.manifest.get("config")
    if not isinstance(recorded, dict):
        raise RetrainError(
            f"the active adapter {active.name} records no training config in its manifest; pass --base-config"
        )
    if cfg.start == "fresh":
        recorded = {**recorded, "init_adapter": None}
    return config_from_dict(recorded, overrides, f"{active.name}/manifest.json config")


# -- the feedback since the snapshot ----------------------------------------------------------------


def snapshot_feedback_id(active: AdapterEntry) -> int | None:
    """The highest feedback id the active adapter's training saw (None: it read no feedback)."""
    data = active.manifest.get("data")
    snapshot = data.get("feedback") if isinstance(data, dict) else None
    value = snapshot.get("max_feedback_id") if isinstance(snapshot, dict) else None
    return value if isinstance(value, int) else None


def _snapshot_database(active: AdapterEntry) -> str | None:
    data = active.manifest.get("data")
    snapshot = data.get("feedback") if isinstance(data, dict) else None
    value = snapshot.get("database") if isinstance(snapshot, dict) else None
    return value if isinstance(value, str) else None


def _shown_url(url: str) -> str:
    """The URL as a manifest's snapshot records it (password hidden)."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def count_new_corrections(
    database_url: str, settings: Settings, taxonomy_key: str, only: FeedbackFilter, after_id: int | None
) -> int:
    """Corrections stored after `after_id` that training would read: of this taxonomy and passing the
    feedback filter (a classify-only key's correction neither trains nor triggers a retrain)."""
    from sqlalchemy import select

    from server.store.db import make_sessionmaker
    from server.store.models import ApiKey, Classification, Feedback

    engine = open_feedback_store(database_url, settings.storage)
    try:
        with make_sessionmaker(engine)() as session:
            query = (
                select(Feedback.key_id, Feedback.key_role, ApiKey.name, Classification.taxonomy)
                .join(Classification, Feedback.classification_id == Classification.id)
                .outerjoin(ApiKey, Feedback.key_id == ApiKey.id)
            )
            if after_id is not None:
                query = query.where(Feedback.id > after_id)
            return sum(
                1
                for key_id, key_role, key_name, taxonomy in session.execute(query)
                if (not taxonomy or taxonomy == taxonomy_key) and only.refusal(key_id, key_role, key_name) is None
            )
    finally:
        engine.dispose()


# -- the run ----------------------------------------------------------------------------------------


def run(
    cfg: RetrainConfig, settings: Settings, *, progress: Progress | None = None, user: str | None = None
) -> RetrainResult:
    """One retrain, audited. Raises RetrainError (nothing trained, nothing audited) when it cannot start;
    a failure after training started is the verdict "failed", audited, not an exception."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    registry = open_registry(settings.model)
    active_name = registry.active
    if active_name is None:
        raise RetrainError(
            f"no active adapter in {registry.index_path}: retrain needs one to start from and gate against"
        )
    active = registry.get(active_name)
    name = cfg.name or candidate_name(active_name, datetime.now(UTC))
    out_dir = registry.adapters_dir / name
    if out_dir.exists():
        raise RetrainError(f"adapter {name!r} already exists in {registry.adapters_dir}; choose another --name")
    try:
        ft = training_config(cfg, active, registry, name)
    except ConfigError as exc:
        raise RetrainError(str(exc)) from None
    from server.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(ft.taxonomy)
    eval_data = resolve_project_path(cfg.eval_data or f"data/{taxonomy.name}/golden.csv")
    if not eval_data.is_file():
        raise RetrainError(f"gate data not found: {eval_data} (set eval_data / --eval-data)")
    from server.evaluation.gate import load_rules

    try:
        rules = load_rules(resolve_project_path(cfg.rules) if isinstance(cfg.rules, str) else cfg.rules)
    except ValueError as exc:
        raise RetrainError(str(exc)) from None

    since = snapshot_feedback_id(active)
    say(f"active adapter: {active_name} (feedback snapshot: {'id <= ' + str(since) if since is not None else 'none'})")
    feedback_url = ft.data.database_url or settings.database_url
    snapshot_db = _snapshot_database(active)
    if since is not None and snapshot_db is not None and snapshot_db != _shown_url(feedback_url):
        # Ids of another database say nothing about this one; the count is still made, but flagged.
        say(
            f"warning: {active_name}'s snapshot was taken from {snapshot_db}, this run reads {_shown_url(feedback_url)}"
        )
    new = count_new_corrections(feedback_url, settings, taxonomy.key, FeedbackFilter.of(ft.data), since)
    result = RetrainResult("skipped", active_name, new, since)
    say(f"{new} new correction(s) since the snapshot (filter: {FeedbackFilter.of(ft.data).to_json()})")
    if cfg.if_new is not None and new < cfg.if_new:
        result.message = (
            f"{new} new correction(s) since {active_name}'s snapshot, fewer than --if-new {cfg.if_new}: nothing to do"
        )
        return _finish(result, settings, started)

    result.candidate = name
    report_dir = resolve_project_path(cfg.report_dir) / name
    try:
        _train(ft, settings, out_dir, say)
        result.calibration = registry.get(name).manifest.get("calibration")
        result.gate = _gate(settings, out_dir, active_name, eval_data, rules, report_dir, say)
    except Exception as exc:  # a failed run must still be audited; the operator gets the reason
        result.verdict, result.error = "failed", f"{type(exc).__name__}: {exc}"
        result.message = f"retrain failed: {result.error}"
        if out_dir.is_dir() and not (out_dir / MANIFEST).is_file():
            shutil.rmtree(out_dir, ignore_errors=True)  # only checkpoints of an unfinished run: not an adapter
        return _finish(result, settings, started)

    if result.gate.verdict != "yes":
        result.verdict = "kept"
        result.message = (
            f"gate: no ({', '.join(result.gate.failed_checks)}); {name} is registered, not promoted; "
            f"{active_name} stays active"
        )
    elif not cfg.promote:
        result.verdict = "kept"
        result.message = (
            f"gate: yes; {name} is registered, not promoted (automatic promotion is off: --promote); "
            f"promote it with `triage models promote {name}`"
        )
    else:
        try:
            # Never forced: the registry itself refuses anything whose stored verdict is not "yes".
            registry.promote(name, user=user)
        except RegistryError as exc:
            result.verdict, result.error = "failed", f"RegistryError: {exc}"
            result.message = f"gate: yes, but the promotion failed: {exc}"
            return _finish(result, settings, started)
        result.verdict = "promoted"
        result.message = f"gate: yes; promoted {name} (previous: {active_name})"
        _audit(
            settings, "promote", name, {"previous": active_name, "forced": False, "reason": "triage retrain: gate yes"}
        )
    return _finish(result, settings, started)


def _train(ft: FinetuneConfig, settings: Settings, out_dir: Path, say: Progress) -> None:
    from finetune.train import main

    say(
        f"training {ft.name}: {', '.join(ft.data.files)} + feedback, "
        f"{'continuing ' + str(ft.init_adapter) if ft.init_adapter else 'fresh LoRA'}"
    )
    main(ft, settings)
    if not (out_dir / MANIFEST).is_file():
        raise RuntimeError(f"training finished without writing {out_dir / MANIFEST}")


def _gate(
    settings: Settings,
    candidate: Path,
    active: str,
    data: Path,
    rules: Any,
    report_dir: Path,
    say: Progress,
) -> GateSummary:
    """The regression gate of `triage eval --model <candidate> --baseline <active>`; the verdict is stored in
    the candidate's manifest (where `promote` reads it) and the report written to `report_dir`."""
    from server.evaluation.workflow import EvalWorkflow, Notices

    say(f"gating {candidate.name} against {active} on {data}")
    report_dir.mkdir(parents=True, exist_ok=True)
    workflow = EvalWorkflow(settings.variant(model={"adapter": str(candidate)}), Notices(info=say, warn=say))
    outcome = workflow.judge(data, rules, baseline=active, out=report_dir, limit=None)
    workflow.record(outcome, report_dir)
    say(outcome.verdict.line())
    return GateSummary(
        "yes" if outcome.verdict.proceed else "no",
        outcome.summary.n,
        [c.name for c in outcome.verdict.checks if not c.passed],
        active,
        str(report_dir),
    )


def _finish(result: RetrainResult, settings: Settings, started: float) -> RetrainResult:
    result.seconds = time.perf_counter() - started
    _audit(settings, "retrain", result.candidate, result.detail())
    return result


def _audit(
    settings: Settings, action: Literal["retrain", "promote"], target: str | None, detail: dict[str, Any]
) -> None:
    from sqlalchemy.orm import Session

    from server.auth.principal import cli_principal
    from server.store import audit
    from server.store.db import migrate, open_store

    db = open_store(settings.database_url, settings.storage)
    try:
        migrate(db)
        with Session(db) as session:
            audit.record(session, cli_principal(), action, target=target, detail=detail)
    finally:
        db.dispose()
