"""What `triage eval` does between parsing its flags and printing: resolve the candidate and the baseline,
evaluate both (or reuse the baseline's stored eval), train the classical baseline, judge with the gate,
and record the eval and the verdict in the adapter's manifest.

Two steps, so the caller can show the verdict before anything is written: `EvalWorkflow.judge` and
`EvalWorkflow.record`. Messages go through `Notices` (the CLI prints them; tests collect them).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.config import Settings
from server.evaluation.comparison import compare_table, comparison_markdown
from server.evaluation.data import csv_columns, read_labelled_csv
from server.evaluation.gate import GateRules, GateVerdict, evaluate_gate
from server.records import EvalSummary
from server.registry import (
    MANIFEST,
    AdapterEntry,
    AdapterManifest,
    GateRecord,
    open_registry,
    resolve_adapter,
    resolve_project_path,
    sha256_file,
    utc_now,
    write_json_atomic,
)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class Notices:
    """Where the workflow's messages go: `info` for progress, `warn` for what was skipped or kept."""

    info: Callable[[str], None] = print
    warn: Callable[[str], None] = _stderr


# -- what --model / --baseline name ---------------------------------------------------------------


def adapter_spec(spec: str) -> str | None:
    """--model/--baseline values: 'base' and 'none' both mean the bare base model."""
    s = spec.strip()
    return None if s.lower() in ("", "base", "none") else s


def with_adapter(settings: Settings, adapter: str | None) -> Settings:
    return settings.variant(model={"adapter": adapter})


def identity(entry: AdapterEntry | None, settings: Settings) -> dict[str, Any]:
    if entry is None:
        return {"kind": "base", "base": settings.model.base}
    return {"kind": "adapter", "name": entry.name, "path": str(entry.path)}


@dataclass
class BaselineRef:
    """What --baseline names, resolved before the (slow) candidate eval so a typo fails fast."""

    identity: dict[str, Any]
    report: EvalSummary | None = None  # a report.json given as the baseline
    entry: AdapterEntry | None = None
    settings: Settings | None = None  # for a model baseline


def baseline_ref(spec: str, settings: Settings) -> BaselineRef:
    path = Path(spec).expanduser()
    if path.is_file():
        return BaselineRef({"kind": "report", "path": str(path)}, report=load_report(path))
    if spec.endswith(".json"):
        raise ValueError(f"baseline report not found: {spec}")
    base_settings = with_adapter(settings, adapter_spec(spec))
    entry = resolve_adapter(base_settings.model)
    return BaselineRef(identity(entry, settings), entry=entry, settings=base_settings)


def load_report(path: Path) -> EvalSummary:
    """A report.json written by `triage eval` ({summary, fields, groups}) or a bare summary."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object")
    summary = dict(raw.get("summary") or raw)
    # Older reports keep per-label metrics only under `fields`; the gate reads summary["per_label"].
    if "per_label" not in summary and isinstance(raw.get("fields"), dict):
        summary["per_label"] = {
            name: rep["per_label"]
            for name, rep in raw["fields"].items()
            if isinstance(rep, dict) and "per_label" in rep
        }
    try:
        return EvalSummary.from_json(summary)
    except ValueError as exc:  # pydantic's ValidationError
        raise ValueError(f"{path}: not an eval summary ({exc})") from None


def eval_key(summary: EvalSummary, data: Path, limit: int | None) -> str:
    """Manifest `evals` key: the data hash; a --limit run is a subset of that file, so it gets its own key
    (it must never be reused as the full-data baseline)."""
    sha = summary.data_sha256 or sha256_file(data)
    return f"{sha}:limit={limit}" if limit else sha


# -- the steps ------------------------------------------------------------------------------------


@dataclass
class GateOutcome:
    """Everything `judge` found; `record` writes it."""

    summary: EvalSummary
    key: str
    candidate: AdapterEntry | None
    verdict: GateVerdict
    record: GateRecord
    rows: list[dict[str, Any]] = field(default_factory=list)  # candidate vs baseline, empty without one
    baseline: EvalSummary | None = None
    classical: EvalSummary | None = None


class EvalWorkflow:
    def __init__(self, settings: Settings, notices: Notices | None = None) -> None:
        self.settings = settings
        self.notices = notices or Notices()
        self.registry = open_registry(settings.model)

    def judge(
        self, data: Path, rules: GateRules, *, baseline: str | None, out: Path | None, limit: int | None
    ) -> GateOutcome:
        """Evaluate the configured adapter on `data` (and the baseline, and the classical baseline) and
        judge it. Raises RegistryError for an unknown adapter, ValueError for bad data or reports."""
        candidate = resolve_adapter(self.settings.model)
        ref = baseline_ref(baseline, self.settings) if baseline is not None else None
        summary = self.run_eval(self.settings, candidate, data, out, limit)
        key = eval_key(summary, data, limit)
        base = self.baseline_summary(ref, data, key, out, limit, rules.field) if ref else None
        classical = self.classical_summary(data, limit, rules, out) if rules.classical else None
        verdict = evaluate_gate(summary, base, rules, classical)
        record = GateRecord.from_json(
            {
                "verdict": "yes" if verdict.proceed else "no",
                "data": key,
                "n": summary.n,
                "baseline": ref.identity if ref else None,
                "classical": classical.headline(("_accuracy",)) if classical else None,
                "checks": verdict.to_dict()["checks"],
                "rules": rules.to_dict(),
                "at": utc_now(),
            }
        )
        rows = compare_table(summary, base, field=rules.field) if base is not None else []
        return GateOutcome(summary, key, candidate, verdict, record, rows, base, classical)

    def record(self, outcome: GateOutcome, out: Path | None) -> None:
        """gate.json and comparison.md (with a baseline), and the eval and verdict in the manifest."""
        if out is not None and outcome.baseline is not None:
            write_json_atomic(
                out / "gate.json",
                {**outcome.record.to_json(), "candidate": outcome.summary.model, "comparison": outcome.rows},
            )
            (out / "comparison.md").write_text(comparison_markdown(outcome.rows, outcome.verdict), encoding="utf-8")
        entry = outcome.candidate
        # A --limit run is a smoke check, not evidence for promotion: the manifest keeps full runs only.
        if entry is not None and (entry.path / MANIFEST).is_file() and ":limit=" not in outcome.key:
            self.store(entry, outcome.key, outcome.summary, outcome.record)

    # -- pieces (public for tests and other front ends) -------------------------------------------

    def run_eval(
        self, settings: Settings, entry: AdapterEntry | None, data: Path, out: Path | None, limit: int | None
    ) -> EvalSummary:
        """Evaluate exactly `entry`: its folder is pinned into the settings, so a promotion while the eval
        runs cannot make the engine load something other than what the manifest record will name."""
        from server.evaluation.run import run_eval  # imported per call: tests stand in a fake module

        pinned = with_adapter(settings, str(entry.path) if entry else "none")
        summary = EvalSummary.coerce(run_eval(pinned, data, out_dir=out, limit=limit))
        if "data_sha256" not in summary:  # run_eval sets it; hashing again would read the file twice
            summary.set("data_sha256", sha256_file(data))
        model_info = dict(summary.model or {})
        model_info["adapter_name"] = entry.name if entry else None
        summary.set("model", model_info)
        return summary

    def baseline_summary(
        self, ref: BaselineRef, data: Path, key: str, out: Path | None, limit: int | None, field_name: str
    ) -> EvalSummary:
        """The baseline summary: the report, a stored eval of the adapter on this data, or a fresh eval."""
        if ref.report is not None:
            return ref.report
        entry = ref.entry
        stored = (entry.manifest.evals or {}).get(key) if entry else None
        # Reuse only what the gate can use: an older stored eval without per-label metrics (or without
        # per-language metrics, on data that has a language column) is re-run.
        if (
            entry is not None
            and stored is not None
            and stored.labels_of(field_name) is not None
            and ("per_language" in stored or "language" not in csv_columns(data))
        ):
            self.notices.info(
                f"baseline {entry.name}: reusing its stored eval of this data ({stored.get('evaluated_at', 'undated')})"
            )
            ref.identity["reused_eval"] = True
            return stored
        assert ref.settings is not None
        summary = self.run_eval(ref.settings, entry, data, out / "baseline" if out else None, limit)
        if entry is not None and (entry.path / MANIFEST).is_file():
            self.store(entry, key, summary, None)
        return summary

    def classical_summary(
        self, data: Path, limit: int | None, rules: GateRules, out: Path | None
    ) -> EvalSummary | None:
        """The classical baseline trained on the rules' files, or the taxonomy's own training file (the
        eval's own tickets left out), scored on `data`. None, with a message, when there is no such file or
        it does not fit the taxonomy: the eval's own numbers are still reported (the gate's rule then fails)."""
        from server.evaluation.run import run_classical_eval  # imported per call: tests stand in a fake module
        from server.taxonomy import load_taxonomy

        taxonomy = load_taxonomy(self.settings.taxonomy)
        rows = read_labelled_csv(data, taxonomy, limit)
        exclude = {r["ticket_id"] for r in rows if r.get("ticket_id")}
        names = list(rules.classical_train) or [f"data/{taxonomy.name}/train.csv"]
        files = [resolve_project_path(f) for f in names]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            self.notices.warn(
                f"classical baseline skipped: no training file {', '.join(missing)} (set classical_train in the gate rules)"
            )
            return None
        sources: tuple[str, ...] = rules.classical_label_sources
        if sources and not rules.classical_train:  # the default file: filter by label_source only where it has one
            if "label_source" not in csv_columns(files[0]):
                sources = ()
        self.notices.warn(
            f"classical baseline: TF-IDF + logistic regression trained on {', '.join(names)} ({', '.join(sources) or 'all'} rows)"
        )
        try:
            summary = run_classical_eval(
                self.settings,
                data,
                files,
                sources or None,
                out / "classical" if out else None,
                limit,
                exclude_ids=exclude,
            )
        except ValueError as exc:
            self.notices.warn(f"classical baseline skipped: {exc}")
            return None
        return EvalSummary.coerce(summary)

    def store(self, entry: AdapterEntry, key: str, summary: EvalSummary, gate: GateRecord | None) -> None:
        """Keep the eval (and the verdict) in the adapter's manifest."""

        def edit(manifest: AdapterManifest) -> None:
            evals = dict(manifest.evals or {})
            evals[key] = EvalSummary.from_json({**summary.to_json(), "evaluated_at": utc_now()})
            manifest.set("evals", evals)
            if gate is None:
                return
            # A verdict from absolute checks alone must not overwrite one earned against a baseline.
            if gate.baseline is None and manifest.gate is not None and manifest.gate.baseline is not None:
                self.notices.warn(
                    f"note: {entry.name} keeps its gate verdict from a baseline comparison (this run had no --baseline)"
                )
                return
            manifest.set("gate", gate)

        self.registry.edit_manifest(entry.path, edit)
