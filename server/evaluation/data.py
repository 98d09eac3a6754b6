"""The labelled CSV every evaluation reads (the eval, the classical baseline, the label head's data):
one reader, so every consumer validates labels and histories the same way."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from server.prompts import TicketInput, parse_history
from server.taxonomy import Taxonomy


def read_labelled_csv(
    path: Path, taxonomy: Taxonomy, limit: int | None = None, label_sources: Sequence[str] | None = None
) -> list[dict[str, str]]:
    """Rows with `subject`/`body` (or `text` as the body), optional `previous_interactions` (a JSON list)
    and the taxonomy's label columns, validated. `label_sources` keeps only rows whose `label_source`
    column is one of them (files without that column are kept whole)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or ())
        if "body" not in columns and "text" not in columns:
            raise ValueError(f"{path}: needs a 'body' (or 'text') column; has {sorted(columns)}")
        label_cols = [f.name for f in taxonomy.label_fields if f.name in columns]
        if not label_cols:
            raise ValueError(
                f"{path}: no label column of taxonomy {taxonomy.key} ({', '.join(f.name for f in taxonomy.label_fields)})"
            )
        rows = []
        for line, row in enumerate(reader, start=2):
            if label_sources and "label_source" in columns and row.get("label_source") not in label_sources:
                continue
            for name in label_cols:
                value = (row.get(name) or "").strip()
                if value and value not in taxonomy.field(name).values and value != taxonomy.out_of_scope_label(name):
                    raise ValueError(f"{path}: row {line}, column {name!r}: {value!r} is not a label of {taxonomy.key}")
            try:
                parse_history(row.get("previous_interactions"))
            except ValueError as exc:
                raise ValueError(f"{path}: row {line}, column 'previous_interactions': {exc}") from None
            row.setdefault("subject", "")
            row["body"] = row.get("body") if "body" in columns else row.get("text", "")
            rows.append(row)
            if limit and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def row_ticket(row: dict[str, str]) -> TicketInput:
    return TicketInput(row.get("subject") or "", row.get("body") or "", parse_history(row.get("previous_interactions")))


def csv_columns(path: Path) -> list[str]:
    """The header row only (the file may be large)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), None) or []
