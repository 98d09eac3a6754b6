"""`triage eval`: run the configured engine (or the classical baseline) over a labelled CSV and report per
field, per label and per language, with calibration (ECE) of every confidence and the throughput."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from tqdm import tqdm

from server.config import Settings
from server.evaluation.data import read_labelled_csv, row_ticket
from server.evaluation.metrics import extraction_match, field_report, group_accuracy
from server.evaluation.report import write_report
from server.extraction import candidate_spans, ticket_texts
from server.prompts import parse_history
from server.records import EvalSummary
from server.registry import sha256_file
from server.taxonomy import Taxonomy, load_taxonomy

REQUIRED_KEYS = ("category", "priority", "sentiment")

__all__ = ["read_labelled_csv", "row_ticket", "run_eval", "run_classical_eval"]  # the readers live in .data


@dataclass
class Predictions:
    """What a predictor said about each row, field by field (None: no answer for that row)."""

    values: dict[str, list[Any]] = field(default_factory=dict)  # field name -> value per row
    confidence: dict[str, list[float | None]] = field(default_factory=dict)
    invalid: int = 0
    seconds: float = 0.0


def engine_predictions(runner: Any, rows: list[dict[str, str]], taxonomy: Taxonomy, batch_size: int) -> Predictions:
    from server.engines.base import EngineOutput

    outputs: list[Any] = []
    started = time.perf_counter()
    with tqdm(total=len(rows), desc="classifying", unit="ticket") as bar:
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            outputs += runner.run([row_ticket(r) for r in chunk])
            bar.update(len(chunk))
    preds = Predictions(seconds=time.perf_counter() - started)
    preds.invalid = sum(1 for o in outputs if not isinstance(o, EngineOutput))
    for spec in (*taxonomy.labels, *taxonomy.extracted_info):
        values = [o.label(spec.name) if isinstance(o, EngineOutput) else None for o in outputs]
        preds.values[spec.name] = values
        if spec.is_label:
            preds.confidence[spec.name] = [
                o.confidence.get(spec.name) if isinstance(o, EngineOutput) else None for o in outputs
            ]
    return preds


def classical_predictions(model: Any, rows: list[dict[str, str]]) -> Predictions:
    started = time.perf_counter()
    probs = model.predict([row_ticket(r) for r in rows])
    preds = Predictions(seconds=time.perf_counter() - started)
    for name, fp in probs.items():
        preds.values[name] = fp.argmax()
        preds.confidence[name] = fp.max()
    return preds


def summarise(
    rows: list[dict[str, str]], preds: Predictions, taxonomy: Taxonomy
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(summary, per-field reports, per-group reports) of one predictor on one data set."""
    fields: dict[str, dict[str, Any]] = {}
    for spec in taxonomy.label_fields:
        if spec.name not in rows[0] or spec.name not in preds.values:
            continue
        gold = [(r.get(spec.name) or "").strip() or None for r in rows]
        oos = taxonomy.out_of_scope_label(spec.name)
        fields[spec.name] = field_report(
            gold, preds.values[spec.name], preds.confidence.get(spec.name), labels=spec.labels + ([oos] if oos else [])
        )
    for spec in taxonomy.extracted_info:
        if not spec.is_label and spec.name in rows[0] and spec.name in preds.values:
            rep = extraction_match([(r.get(spec.name) or None) for r in rows], preds.values[spec.name])
            if spec.copy_only:
                # A copy-only value must be text of the ticket; anything else was made up.
                rep["invented"] = sum(
                    1
                    for r, v in zip(rows, preds.values[spec.name])
                    if v is not None
                    and v
                    not in candidate_spans(
                        ticket_texts(r.get("subject") or "", r["body"], parse_history(r.get("previous_interactions")))
                    )
                )
            fields[spec.name] = rep
    groups: dict[str, dict[str, Any]] = {}
    if "language" in rows[0]:
        langs = [r.get("language") or None for r in rows]
        for name, rep in fields.items():
            if "confusion" in rep:
                gold = [(r.get(name) or "").strip() or None for r in rows]
                groups[f"{name}_by_language"] = group_accuracy(langs, gold, preds.values[name])

    summary: dict[str, Any] = {"n": len(rows), "invalid_json": preds.invalid}
    for name in sorted(set(REQUIRED_KEYS) | {f.name for f in taxonomy.label_fields}):
        found = fields.get(name)
        summary[f"{name}_accuracy"] = found["accuracy"] if found else None
        summary[f"{name}_macro_f1"] = found["macro_f1"] if found else None
        summary[f"{name}_ece"] = found["ece"] if found else None
    for name, rep in fields.items():
        if "confusion" not in rep:
            summary[f"{name}_exact_match"] = rep.get("exact_match")
            summary[f"{name}_exact_match_gold_present"] = rep.get("exact_match_gold_present")
            if "invented" in rep:
                summary[f"{name}_invented"] = rep["invented"]
    for spec in taxonomy.label_fields:
        oos = taxonomy.out_of_scope_label(spec.name)
        if oos and spec.name in fields:
            summary.update(out_of_scope_metrics(rows, preds.values[spec.name], spec.name, oos))
    # The regression gate compares labels one by one (no category may drop more than its tolerance)
    # and languages one by one.
    summary["per_label"] = {name: rep["per_label"] for name, rep in fields.items() if "per_label" in rep}
    summary["per_language"] = {name.removesuffix("_by_language"): rep for name, rep in groups.items()}
    summary["tickets_per_s"] = round(len(rows) / preds.seconds, 3) if preds.seconds else None
    summary["seconds"] = round(preds.seconds, 1)
    return summary, fields, groups


def out_of_scope_metrics(rows: list[dict[str, str]], pred: list[Any], name: str, oos: str) -> dict[str, Any]:
    """In-scope accuracy (gold in scope, answered with the right label) and out-of-scope recall."""
    gold = [(r.get(name) or "").strip() for r in rows]
    inside = [(g, p) for g, p in zip(gold, pred) if g and g != oos]
    outside = [p for g, p in zip(gold, pred) if g == oos]
    return {
        "in_scope_accuracy": sum(g == p for g, p in inside) / len(inside) if inside else None,
        "oos_recall": sum(p == oos for p in outside) / len(outside) if outside else None,
        "oos_false_positive_rate": sum(p == oos for _, p in inside) / len(inside) if inside else None,
        "n_in_scope": len(inside),
        "n_out_of_scope": len(outside),
    }


def run_eval(
    settings: Settings,
    data: Path,
    out_dir: Path | None = None,
    limit: int | None = None,
    runner: Any = None,
    console: Console | None = None,
) -> EvalSummary:
    from server.engines import open_batch_runner, open_runner

    taxonomy = load_taxonomy(settings.taxonomy)
    rows = read_labelled_csv(Path(data), taxonomy, limit)
    # The embedded engine by default (its extras: label heads); another engine.kind is scored as it serves.
    if runner is None:
        embedded = settings.engine.kind == "transformers"
        runner = open_batch_runner(settings, taxonomy) if embedded else open_runner(settings, taxonomy)
    preds = engine_predictions(runner, rows, taxonomy, settings.engine.max_batch_size)
    meta = {
        "model": {"base": settings.model.base, "adapter": settings.model.adapter},
        "prompt_version": getattr(runner, "prompt_version", f"classify/{settings.prompt.version}"),
        "head": getattr(getattr(runner, "head", None), "name", None),
    }
    return _report(rows, preds, taxonomy, Path(data), meta, out_dir, console)


def run_classical_eval(
    settings: Settings,
    data: Path,
    train_files: Sequence[Path],
    label_sources: Sequence[str] | None,
    out_dir: Path | None = None,
    limit: int | None = None,
    console: Console | None = None,
    exclude_ids: set[str] | None = None,
) -> EvalSummary:
    """The classical baseline (server.evaluation.classical) trained on `train_files`, scored on `data`."""
    from server.evaluation.classical import train_classical

    taxonomy = load_taxonomy(settings.taxonomy)
    rows = read_labelled_csv(Path(data), taxonomy, limit)
    model = train_classical(train_files, taxonomy, label_sources, exclude_ids=exclude_ids)
    meta = {
        "model": {
            "classical": "tfidf word 1-2 + char 2-5, logistic regression C=10, balanced",
            "train": [str(f) for f in train_files],
            "label_sources": list(label_sources or []),
        }
    }
    return _report(rows, classical_predictions(model, rows), taxonomy, Path(data), meta, out_dir, console)


def _report(
    rows: list[dict[str, str]],
    preds: Predictions,
    taxonomy: Taxonomy,
    data: Path,
    meta: dict[str, Any],
    out_dir: Path | None,
    console: Console | None,
) -> EvalSummary:
    console = console or Console(stderr=False)
    metrics, fields, groups = summarise(rows, preds, taxonomy)
    summary = {"data": str(data), "taxonomy": taxonomy.key, **meta, "data_sha256": sha256_file(data), **metrics}
    _print(console, summary, fields, groups)
    if out_dir:
        paths = write_report(out_dir, summary, fields, groups)
        console.print(f"report written: {Path(out_dir) / 'report.md'} ({len(paths)} files)")
    return EvalSummary.from_json(summary)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _print(
    console: Console, summary: dict[str, Any], fields: dict[str, dict[str, Any]], groups: dict[str, dict[str, Any]]
) -> None:
    from rich.table import Table

    t = Table(
        title=f"{summary['n']} tickets, {summary['tickets_per_s']} tickets/s, invalid JSON {summary['invalid_json']}"
    )
    for col in ("field", "accuracy", "macro-F1", "ECE", "n"):
        t.add_column(col)
    for name, rep in fields.items():
        if "confusion" in rep:
            t.add_row(name, _fmt(rep["accuracy"]), _fmt(rep["macro_f1"]), _fmt(rep["ece"]), str(rep["n"]))
        else:
            extra = (
                f" (exact; gold present {_fmt(rep.get('exact_match_gold_present'))}, invented {rep['invented']})"
                if "invented" in rep
                else " (exact)"
            )
            t.add_row(name + extra, _fmt(rep.get("exact_match")), "-", "-", str(rep.get("n")))
    console.print(t)
    if summary.get("oos_recall") is not None or summary.get("in_scope_accuracy") is not None:
        console.print(
            f"in-scope accuracy {_fmt(summary.get('in_scope_accuracy'))}, out-of-scope recall {_fmt(summary.get('oos_recall'))}"
        )
    for name, rep in fields.items():
        if "per_label" in rep and len(rep["per_label"]) <= 20:
            lt = Table(title=f"{name} per label")
            for col in ("label", "precision", "recall", "F1", "support"):
                lt.add_column(col)
            for label, m in rep["per_label"].items():
                lt.add_row(label, _fmt(m["precision"]), _fmt(m["recall"]), _fmt(m["f1"]), str(m["support"]))
            console.print(lt)
    for name, rep in groups.items():
        gt = Table(title=name)
        gt.add_column("group")
        gt.add_column("accuracy")
        gt.add_column("n")
        for g, m in rep.items():
            gt.add_row(str(g), _fmt(m["accuracy"]), str(m["n"]))
        console.print(gt)
