"""`triage eval`: run the configured engine over a labelled CSV and report per field, per label and per
language, with calibration (ECE) of every confidence and the throughput."""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from server.config import Settings
from server.evaluation.metrics import extraction_match, field_report, group_accuracy
from server.evaluation.report import write_report
from server.registry import sha256_file
from server.prompts import TicketInput
from server.taxonomy import Taxonomy, load_taxonomy

REQUIRED_KEYS = ("category", "priority", "sentiment")


def read_labelled_csv(path: Path, taxonomy: Taxonomy, limit: int | None = None) -> list[dict[str, str]]:
    """Rows with `subject`/`body` (or `text` as the body) and the taxonomy's label columns, validated."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        if "body" not in columns and "text" not in columns:
            raise ValueError(f"{path}: needs a 'body' (or 'text') column; has {sorted(columns)}")
        label_cols = [f.name for f in taxonomy.label_fields if f.name in columns]
        if not label_cols:
            raise ValueError(f"{path}: no label column of taxonomy {taxonomy.key} ({', '.join(f.name for f in taxonomy.label_fields)})")
        rows = []
        for line, row in enumerate(reader, start=2):
            for name in label_cols:
                value = (row.get(name) or "").strip()
                if value and value not in taxonomy.field(name).values:
                    raise ValueError(f"{path}: row {line}, column {name!r}: {value!r} is not a label of {taxonomy.key}")
            row.setdefault("subject", "")
            row["body"] = row.get("body") if "body" in columns else row.get("text", "")
            rows.append(row)
            if limit and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def run_eval(settings: Settings, data: Path, out_dir: Path | None = None, limit: int | None = None, runner: Any = None, console: Console | None = None) -> dict[str, Any]:
    from server.engines.base import EngineOutput
    from server.engines.transformers_engine import BatchRunner

    console = console or Console(stderr=False)
    taxonomy = load_taxonomy(settings.taxonomy)
    rows = read_labelled_csv(Path(data), taxonomy, limit)
    runner = runner or BatchRunner(settings, taxonomy)
    bs = settings.engine.max_batch_size
    outputs: list[Any] = []
    started = time.perf_counter()
    with tqdm(total=len(rows), desc="classifying", unit="ticket") as bar:
        for i in range(0, len(rows), bs):
            chunk = rows[i : i + bs]
            outputs += runner.run([TicketInput(r.get("subject", ""), r["body"]) for r in chunk])
            bar.update(len(chunk))
    elapsed = time.perf_counter() - started

    def pred(out: Any, name: str) -> Any:
        if not isinstance(out, EngineOutput):
            return None
        spec = taxonomy.field(name)
        src = out.output.get("extracted_info", {}) if spec.in_extracted_info else out.output
        return src.get(name)

    invalid = sum(1 for o in outputs if not isinstance(o, EngineOutput))
    fields: dict[str, dict[str, Any]] = {}
    for spec in taxonomy.label_fields:
        if spec.name not in rows[0]:
            continue
        gold = [(r.get(spec.name) or "").strip() or None for r in rows]
        fields[spec.name] = field_report(
            gold,
            [pred(o, spec.name) for o in outputs],
            [o.confidence.get(spec.name) if isinstance(o, EngineOutput) else None for o in outputs],
            labels=spec.labels,
        )
    for spec in taxonomy.extracted_info:
        if not spec.is_label and spec.name in rows[0]:
            fields[spec.name] = extraction_match([(r.get(spec.name) or None) for r in rows], [pred(o, spec.name) for o in outputs])
    groups: dict[str, dict[str, Any]] = {}
    if "language" in rows[0]:
        langs = [r.get("language") or None for r in rows]
        for name, rep in fields.items():
            if "confusion" in rep:
                gold = [(r.get(name) or "").strip() or None for r in rows]
                groups[f"{name}_by_language"] = group_accuracy(langs, gold, [pred(o, name) for o in outputs])

    summary: dict[str, Any] = {
        "n": len(rows),
        "data": str(data),
        "taxonomy": taxonomy.key,
        "model": {"base": settings.model.base, "adapter": settings.model.adapter},
        "prompt_version": getattr(runner, "prompt_version", f"classify/{settings.prompt.version}"),
        "data_sha256": sha256_file(Path(data)),
        "invalid_json": invalid,
        "tickets_per_s": round(len(rows) / elapsed, 3) if elapsed else None,
        "seconds": round(elapsed, 1),
    }
    for name in sorted(set(REQUIRED_KEYS) | {f.name for f in taxonomy.label_fields}):
        rep = fields.get(name)
        summary[f"{name}_accuracy"] = rep["accuracy"] if rep else None
        summary[f"{name}_macro_f1"] = rep["macro_f1"] if rep else None
        summary[f"{name}_ece"] = rep["ece"] if rep else None
    for name, rep in fields.items():
        if "confusion" not in rep:
            summary[f"{name}_exact_match"] = rep.get("exact_match")
    # The regression gate compares labels one by one (no category may drop more than its tolerance).
    summary["per_label"] = {name: rep["per_label"] for name, rep in fields.items() if "per_label" in rep}
    _print(console, summary, fields, groups)
    if out_dir:
        paths = write_report(out_dir, summary, fields, groups)
        console.print(f"report written: {Path(out_dir) / 'report.md'} ({len(paths)} files)")
    return summary


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _print(console: Console, summary: dict[str, Any], fields: dict[str, dict[str, Any]], groups: dict[str, dict[str, Any]]) -> None:
    t = Table(title=f"{summary['n']} tickets, {summary['tickets_per_s']} tickets/s, invalid JSON {summary['invalid_json']}")
    for col in ("field", "accuracy", "macro-F1", "ECE", "n"):
        t.add_column(col)
    for name, rep in fields.items():
        if "confusion" in rep:
            t.add_row(name, _fmt(rep["accuracy"]), _fmt(rep["macro_f1"]), _fmt(rep["ece"]), str(rep["n"]))
        else:
            t.add_row(name + " (exact)", _fmt(rep.get("exact_match")), "-", "-", str(rep.get("n")))
    console.print(t)
    for name, rep in fields.items():
        if "per_label" in rep:
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
