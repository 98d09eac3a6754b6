"""Training examples from labelled files (CSV/JSONL) and from reviewer feedback in the database.

Every problem with a file is reported with its file, row and column before any training starts.
Feedback wins over a file's labels for the same ticket id: a reviewer's correction is the newest truth.
Only feedback that passes the config's filter is read (by default: sent with a review or admin key).
The held-out split is recorded next to the adapter by reference (finetune.heldout), never as text.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune.config import TRAINING_ROLES, DataArgs, FinetuneConfig
from finetune.manifest import project_relative
from server.config import Settings, StorageSettings
from server.extraction import candidate_spans, ticket_texts
from server.prompts import TicketInput, parse_history
from server.registry import resolve_project_path, sha256_file
from server.results import label_of
from server.taxonomy import Taxonomy

if TYPE_CHECKING:
    from sqlalchemy import Engine as DbEngine

    from server.store.models import Classification, Feedback

log = logging.getLogger(__name__)
MAX_REPORTED = 20


class DataError(ValueError):
    """Bad training data; the message lists the problems as `file: row N, column C: what`."""


@dataclass
class Example:
    uid: str
    ticket: TicketInput
    answer: dict[str, Any]  # the target JSON in the taxonomy's output shape
    source: str  # file name or "feedback"
    language: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # Where the text can be read again: the data file (project-relative) or "feedback:<feedback id>";
    # the held-out split is stored as these references (finetune.heldout), not as the text.
    origin: str = ""


@dataclass
class TrainingData:
    train: list[Example]
    held: list[Example]
    provenance: dict[str, Any]  # recorded as the manifest's `data`


def _rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """(columns, (row number, row)) for CSV (row 1 = header) or JSONL (row = line)."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        lines = path.read_text(encoding="utf-8").splitlines()
        parsed: list[tuple[int, dict[str, Any]]] = []
        seen: set[str] = set()
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: row {n}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}: row {n}: expected a JSON object")
            seen |= set(obj)
            parsed.append((n, obj))
        return sorted(seen), iter(parsed)
    fh = open(path, newline="", encoding="utf-8")
    reader = csv.DictReader(fh)
    columns = list(reader.fieldnames or [])

    def gen() -> Iterator[tuple[int, dict[str, Any]]]:
        with fh:
            yield from enumerate(reader, start=2)

    return columns, gen()


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def read_examples(
    path: str | Path,
    taxonomy: Taxonomy,
    *,
    text_column: str | None = None,
    label_sources: list[str] | None = None,
    need_reasoning: bool = True,
) -> tuple[list[Example], dict[str, Any]]:
    """Validated examples of one file, and its provenance record (hash, rows read/used/skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    columns, rows = _rows(path)
    body_col = text_column or ("body" if "body" in columns else "text" if "text" in columns else None)
    problems: list[str] = []
    if body_col is None or body_col not in columns:
        problems.append(f"{path}: missing column {text_column or 'body'!r} (the ticket text); has {columns}")
    for spec in taxonomy.label_fields:
        if spec.name not in columns:
            problems.append(f"{path}: missing column {spec.name!r} required by taxonomy {taxonomy.key}")
    reasoning = taxonomy.reasoning and need_reasoning
    if reasoning and "reasoning" not in columns:
        problems.append(f"{path}: missing column 'reasoning' (the full-answer target needs it; or use target: labels)")
    if problems:
        raise DataError("\n".join(problems))
    assert body_col is not None  # else reported above
    filter_col = "label_source" if label_sources and "label_source" in columns else None
    origin = project_relative(path)
    examples: list[Example] = []
    read = skipped = 0
    for n, row in rows:
        read += 1
        if filter_col and label_sources and _text(row.get(filter_col)) not in label_sources:
            skipped += 1
            continue
        where = f"{path}: row {n}"
        subject, body = _text(row.get("subject")), _text(row.get(body_col))
        if not subject and not body:
            problems.append(f"{where}, column {body_col!r}: empty ticket (no subject and no body)")
            continue
        try:
            history = parse_history(row.get("previous_interactions"))
        except ValueError as exc:
            problems.append(f"{where}, column 'previous_interactions': {exc}")
            continue
        answer: dict[str, Any] = {}
        for spec in taxonomy.label_fields:
            value = _text(row.get(spec.name))
            if not value:
                problems.append(f"{where}, column {spec.name!r}: empty label")
            elif value not in spec.values:
                problems.append(
                    f"{where}, column {spec.name!r}: {value!r} is not a label of {taxonomy.key} ({', '.join(spec.labels[:8])}{', ...' if len(spec.labels) > 8 else ''})"
                )
            target = answer.setdefault("extracted_info", {}) if spec.in_extracted_info else answer
            target[spec.name] = value
        for spec in taxonomy.extracted_info:
            if not spec.is_label:
                free: str | None = _text(row.get(spec.name)) or None
                if spec.copy_only:
                    free = copyable(free, candidate_spans(ticket_texts(subject, body, history)))
                answer.setdefault("extracted_info", {})[spec.name] = free
        if reasoning:
            answer["reasoning"] = _text(row.get("reasoning"))
            if not answer["reasoning"]:
                problems.append(f"{where}, column 'reasoning': empty (the full-answer target needs it)")
        if len(problems) >= MAX_REPORTED:
            break
        uid = _text(row.get("ticket_id")) or f"{path.name}:{n}"
        meta = {"source_ticket_id": _text(row.get("source_ticket_id"))} if _text(row.get("source_ticket_id")) else {}
        examples.append(
            Example(
                uid,
                TicketInput(subject, body, history),
                answer,
                path.name,
                _text(row.get("language")) or None,
                meta,
                origin,
            )
        )
    if problems:
        more = " (first problems only)" if len(problems) >= MAX_REPORTED else ""
        raise DataError(f"{len(problems)} problem(s) in {path}{more}:\n" + "\n".join(problems))
    if not examples:
        raise DataError(
            f"{path}: no usable rows (read {read}, skipped {skipped} by label_source filter {label_sources})"
        )
    record = {
        "path": str(path),
        "sha256": sha256_file(path),
        "rows_read": read,
        "rows_used": len(examples),
        "rows_skipped": skipped,
        "label_sources": label_sources,
        "text_column": body_col,
    }
    return examples, record


def copyable(value: str | None, spans: list[str]) -> str | None:
    """A copy-only target the decoder can write: the value if it is one of the ticket's spans, else the
    span with the same digits (a label "Error 502" for a ticket saying "Error Code 502"), else null."""
    if value is None or value in spans:
        return value
    digits = "".join(c for c in value if c.isdigit())
    same = [s for s in spans if digits and "".join(c for c in s if c.isdigit()) == digits]
    return same[0] if same else None


@dataclass(frozen=True)
class FeedbackFilter:
    """Which stored corrections may become training data, by the API key that sent them."""

    roles: tuple[str, ...] = TRAINING_ROLES
    key_names: tuple[str, ...] | None = None
    key_ids: tuple[int, ...] | None = None
    unattributed: bool = False  # rows with no key (before keys existed, or a server running without keys)

    @classmethod
    def of(cls, data: DataArgs) -> FeedbackFilter:
        return cls(
            tuple(data.feedback_roles),
            tuple(data.feedback_keys) if data.feedback_keys is not None else None,
            tuple(data.feedback_key_ids) if data.feedback_key_ids is not None else None,
            data.feedback_unattributed,
        )

    def refusal(self, key_id: int | None, key_role: str | None, key_name: str | None) -> str | None:
        """Why a row is left out ("unattributed", "role", "key"), or None when it is used."""
        if key_id is None:
            # An open-mode request acts as admin without a key: its role says nothing about who sent it.
            return None if self.unattributed else "unattributed"
        if key_role not in self.roles:
            return "role"
        if self.key_names is None and self.key_ids is None:
            return None
        if key_id in (self.key_ids or ()) or key_name in (self.key_names or ()):
            return None
        return "key"

    def to_json(self) -> dict[str, Any]:
        return {
            "roles": list(self.roles),
            "key_names": list(self.key_names) if self.key_names is not None else None,
            "key_ids": list(self.key_ids) if self.key_ids is not None else None,
            "unattributed": self.unattributed,
        }


def open_feedback_store(database_url: str, storage: StorageSettings) -> DbEngine:
    """The store with its data keyring, as the server opens it, so sealed ticket text and corrections read.

    A training job never creates a data key: with none configured it reads plain rows only (written
    before encryption, or with storage.encrypt off), and a sealed row is an error naming the key setting."""
    from server.store.crypto import DataKeyError
    from server.store.db import migrate, open_store

    try:
        engine = open_store(database_url, storage, create_key=False)
    except DataKeyError as exc:
        log.warning("%s: reading unencrypted feedback only", exc)
        engine = open_store(database_url, storage.model_copy(update={"encrypt": False}))
    migrate(engine)
    return engine


def feedback_example(fb: Feedback, cls: Classification, taxonomy: Taxonomy, need_reasoning: bool) -> Example | None:
    """The stored answer with the reviewer's corrections on top; None when it lacks a label (or reasoning)
    the target needs, or the ticket text is gone."""
    answer = _corrected(cls.prediction or {}, fb.corrections or {})
    if not _complete(answer, taxonomy, need_reasoning) or not (cls.subject or cls.body):
        return None
    ticket = TicketInput(cls.subject or "", cls.body or "", tuple(cls.previous_interactions or ()))
    meta = {
        "feedback_id": fb.id,
        "reviewer": fb.reviewer,
        "key_id": fb.key_id,
        "key_role": fb.key_role,
        "redacted": fb.redacted_at is not None,
    }
    return Example(fb.ticket_id, ticket, answer, "feedback", None, meta, f"feedback:{fb.id}")


def feedback_examples(
    database_url: str,
    taxonomy: Taxonomy,
    *,
    storage: StorageSettings,
    need_reasoning: bool = True,
    only: FeedbackFilter | None = None,
) -> tuple[list[Example], dict[str, Any]]:
    """Reviewed predictions: the stored answer with the reviewer's corrections applied on top.

    Fields the reviewer did not correct are taken as confirmed. Rows the filter refuses are left out
    before the latest feedback per ticket is chosen, so a refused key cannot override a reviewer. Rows
    whose ticket text retention redacted are used with the redacted text (and counted). The snapshot
    (highest feedback id, row counts, the filter, content hash) goes into the adapter's manifest so a run
    can be traced to the exact database state it saw."""
    from sqlalchemy import select

    from server.store.db import make_sessionmaker
    from server.store.models import ApiKey, Classification, Feedback

    only = only or FeedbackFilter()
    engine = open_feedback_store(database_url, storage)
    try:
        with make_sessionmaker(engine)() as session:
            if only.key_names:
                known = set(session.scalars(select(ApiKey.name).where(ApiKey.name.in_(only.key_names))))
                unknown = [n for n in only.key_names if n not in known]
                if unknown:
                    raise DataError(f"data.feedback_keys: no API key named {', '.join(map(repr, unknown))}")
            rows = session.execute(
                select(Feedback, Classification, ApiKey.name)
                .join(Classification, Feedback.classification_id == Classification.id)
                .outerjoin(ApiKey, Feedback.key_id == ApiKey.id)
                .order_by(Feedback.id)
            ).all()
            latest: dict[str, tuple[Feedback, Classification]] = {}
            skipped = 0
            refused = {"unattributed": 0, "role": 0, "key": 0}
            for fb, cls, key_name in rows:
                if cls.taxonomy and cls.taxonomy != taxonomy.key:
                    skipped += 1
                    continue
                reason = only.refusal(fb.key_id, fb.key_role, key_name)
                if reason is not None:
                    refused[reason] += 1
                    continue
                latest[fb.ticket_id] = (fb, cls)
            examples: list[Example] = []
            digest = hashlib.sha256()
            invalid = 0
            for ticket_id, (fb, cls) in latest.items():
                ex = feedback_example(fb, cls, taxonomy, need_reasoning)
                if ex is None:
                    invalid += 1
                    continue
                digest.update(json.dumps([fb.id, ticket_id, ex.answer], sort_keys=True, ensure_ascii=False).encode())
                examples.append(ex)
            if sum(refused.values()):
                log.warning(
                    "feedback: %d row(s) left out by the filter %s (%s)",
                    sum(refused.values()),
                    only.to_json(),
                    ", ".join(f"{k}: {v}" for k, v in refused.items() if v),
                )
            snapshot = {
                "database": engine.url.render_as_string(hide_password=True),
                "max_feedback_id": max((fb.id for fb, _, _ in rows), default=None),
                "feedback_rows": len(rows),
                "filter": only.to_json(),
                "rows_used": len(examples),
                "rows_redacted": sum(1 for ex in examples if ex.meta["redacted"]),
                "rows_skipped_filter": refused,
                "rows_skipped_other_taxonomy": skipped,
                "rows_skipped_incomplete": invalid,
                "sha256": digest.hexdigest(),
            }
            return examples, snapshot
    finally:
        engine.dispose()


def _corrected(prediction: dict[str, Any], corrections: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(json.dumps(prediction))  # a deep copy
    for key, value in corrections.items():
        if key == "extracted_info" and isinstance(value, dict):
            answer.setdefault("extracted_info", {}).update(value)
        else:
            answer[key] = value
    return answer


def _complete(answer: dict[str, Any], taxonomy: Taxonomy, need_reasoning: bool) -> bool:
    for spec in taxonomy.label_fields:
        if label_of(answer, spec.name) not in spec.values:
            return False
    return not (taxonomy.reasoning and need_reasoning and not answer.get("reasoning"))


def merge(file_examples: list[Example], feedback: list[Example]) -> list[Example]:
    """Feedback replaces a file example with the same ticket id; other feedback is added."""
    by_id = {ex.uid: ex for ex in feedback}
    merged = [by_id.pop(ex.uid, ex) for ex in file_examples]
    return merged + list(by_id.values())


def split(
    examples: list[Example], heldout_fraction: float, seed: int, heldout_ids: set[str] | None = None
) -> tuple[list[Example], list[Example]]:
    """With `heldout_ids`: exactly those tickets are held out, and rows derived from them (augmented rows
    naming them as `source_ticket_id`) are dropped, so nothing of a held-out ticket is trained on.
    Without: a seeded split, stratified on the first label field so thin classes appear on both sides."""
    if heldout_ids is not None:
        fixed = [ex for ex in examples if ex.uid in heldout_ids]
        rest = [
            ex for ex in examples if ex.uid not in heldout_ids and ex.meta.get("source_ticket_id") not in heldout_ids
        ]
        return rest, fixed
    rng = random.Random(seed)
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        first = next(iter(v for k, v in ex.answer.items() if isinstance(v, str)), "")
        groups.setdefault(first, []).append(ex)
    train: list[Example] = []
    held: list[Example] = []
    for key in sorted(groups):
        group = groups[key]
        rng.shuffle(group)
        k = int(round(len(group) * heldout_fraction)) if heldout_fraction > 0 else 0
        if heldout_fraction > 0 and len(group) >= 4:
            k = max(k, 1)
        held += group[:k]
        train += group[k:]
    rng.shuffle(train)
    return train, held


def load_data(cfg: FinetuneConfig, settings: Settings, taxonomy: Taxonomy) -> TrainingData:
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
        record["path"] = project_relative(resolve_project_path(f))
        examples += got
        sources.append(record)
    provenance: dict[str, Any] = {"sources": sources}
    if cfg.data.feedback:
        fb, snapshot = feedback_examples(
            cfg.data.database_url or settings.database_url,
            taxonomy,
            storage=settings.storage,
            need_reasoning=need_reasoning,
            only=FeedbackFilter.of(cfg.data),
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
    train_ex, held = split(examples, cfg.data.heldout_fraction, cfg.train.seed, held_ids)
    provenance.update(train_rows=len(train_ex), heldout_rows=len(held))
    return TrainingData(train_ex, held, provenance)
