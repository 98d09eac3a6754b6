"""`triage batch`: classify a file of tickets offline, resumably.

Results are appended to the output one JSON line per ticket as soon as each is answered, so a killed
job loses at most the tickets in flight: a rerun reads the ticket_ids already written (dropping a torn
last line) and classifies only the rest. Parquet output goes through a JSONL journal beside it
(`OUTPUT.partial.jsonl`), converted once every ticket is answered: Parquet cannot be appended to."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from server.prompts import TicketInput, parse_history

if TYPE_CHECKING:
    from server.config import RoutingSettings, Settings
    from server.engines.base import Deliver, Item, ModelInfo, Outcome, Take

INPUT_FORMATS = (".csv", ".jsonl", ".parquet")
OUTPUT_FORMATS = (".jsonl", ".parquet")
HISTORY_COLUMNS = ("previous_interactions", "history")
# fsync at most this often: each line is flushed (a killed process loses nothing written), fsync only
# guards against the machine itself going down, and one per ticket would cost more than decoding.
FSYNC_EVERY_S = 1.0


class BulkInputError(ValueError):
    """The input or output file cannot be used (the CLI exits 2 with this message)."""


@dataclass(frozen=True)
class BulkTicket:
    ticket_id: str
    ticket: TicketInput


@dataclass(frozen=True)
class BulkSummary:
    total: int
    skipped: int  # already in the output from an earlier run
    classified: int
    failed: int
    seconds: float

    @property
    def per_second(self) -> float:
        return (self.classified + self.failed) / self.seconds if self.seconds > 0 else 0.0


def _kind(path: Path, allowed: tuple[str, ...], what: str) -> str:
    ext = path.suffix.lower()
    if ext not in allowed:
        raise BulkInputError(
            f"{what} {path}: unknown extension {ext or '(none)'!r}, expected one of {', '.join(allowed)}"
        )
    return ext


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    ext = _kind(path, INPUT_FORMATS, "input")
    try:
        if ext == ".csv":
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                _require_columns(path, reader.fieldnames or ())
                yield from reader
        elif ext == ".jsonl":
            with path.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except ValueError as exc:
                        raise BulkInputError(f"{path} line {n}: not JSON ({exc})") from None
                    if not isinstance(row, dict):
                        raise BulkInputError(f"{path} line {n}: expected a JSON object")
                    _require_columns(path, row.keys(), where=f" line {n}")
                    yield row
        else:
            try:
                import pyarrow.parquet as pq
            except ImportError:
                raise BulkInputError("Parquet needs pyarrow (pip install pyarrow)") from None
            try:
                table = pq.read_table(path)
            except Exception as exc:  # pyarrow raises several unrelated types for a bad file
                raise BulkInputError(f"{path}: not a readable Parquet file ({exc})") from None
            _require_columns(path, table.column_names)
            yield from table.to_pylist()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BulkInputError(f"cannot read {path}: {exc}") from None


def _require_columns(path: Path, columns: Any, where: str = "") -> None:
    missing = [c for c in ("subject", "body") if c not in set(columns)]
    if missing:
        raise BulkInputError(f"{path}{where}: missing column(s) {', '.join(missing)} (have: {', '.join(columns)})")


def _history(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        if not all(isinstance(m, str) for m in value):
            raise BulkInputError(f"{where}: history must be a list of strings")
        return tuple(value)
    text = str(value)
    if text.lstrip().startswith("["):
        try:
            return parse_history(text)
        except ValueError as exc:
            raise BulkInputError(f"{where}: history {exc}") from None
    # A plain string is one earlier message, not a list to parse.
    return (text,) if text.strip() else ()


def auto_id(position: int, subject: str, body: str) -> str:
    """The id of a row without one: its 1-based position and a hash of its text, so a rerun over the
    same file names it the same and an edited file does not silently reuse an old answer."""
    digest = hashlib.sha256(f"{subject}\x00{body}".encode()).hexdigest()[:12]
    return f"row{position}-{digest}"


def read_tickets(path: Path) -> list[BulkTicket]:
    """Every ticket of the input, in order. Duplicate ticket_ids are refused: resuming keys on the id,
    so two rows sharing one would have one of them skipped."""
    if not path.is_file():
        raise BulkInputError(f"input {path}: no such file")
    tickets: list[BulkTicket] = []
    seen: dict[str, int] = {}
    for pos, row in enumerate(_rows(path), 1):
        where = f"{path} row {pos}"
        subject, body = str(row.get("subject") or ""), str(row.get("body") or "")
        raw_id = row.get("ticket_id")
        tid = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else auto_id(pos, subject, body)
        if tid in seen:
            raise BulkInputError(
                f"{where}: duplicate ticket_id {tid!r} (also row {seen[tid]}); ticket_ids must be unique"
            )
        seen[tid] = pos
        hist = next((row[c] for c in HISTORY_COLUMNS if c in row and row[c] not in (None, "")), None)
        tickets.append(BulkTicket(tid, TicketInput(subject, body, _history(hist, where))))
    return tickets


def journal_path(output: Path) -> Path:
    return output if output.suffix.lower() == ".jsonl" else output.with_name(output.name + ".partial.jsonl")


def done_ids(journal: Path) -> set[str]:
    """The ticket_ids a previous run wrote. A last line without its newline was torn by a kill: it is
    cut off so the ticket is classified again and its line rewritten whole."""
    if not journal.exists():
        return set()
    data = journal.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with journal.open("r+b") as f:
            f.truncate(end)
    ids: set[str] = set()
    for n, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            ids.add(str(json.loads(line)["ticket_id"]))
        except (ValueError, KeyError, TypeError):
            raise BulkInputError(f"output {journal} line {n}: not a result line; refusing to resume into it") from None
    return ids


def result_record(ticket_id: str, outcome: Outcome, info: ModelInfo, routing: RoutingSettings) -> dict[str, Any]:
    """One output line: the fields `triage classify` prints, or an error object."""
    from server.engines.base import EngineError
    from server.routing.thresholds import unsure_fields

    if isinstance(outcome, EngineError) or not hasattr(outcome, "output"):
        return {"ticket_id": ticket_id, "error": str(outcome) or type(outcome).__name__}
    return {
        "ticket_id": ticket_id,
        **outcome.output,
        "confidence": outcome.confidence,
        # No re-review or fallback offline: what the first local pass says.
        "needs_review": bool(unsure_fields(routing, outcome.confidence)),
        "model": {"base": info.base, "adapter": info.adapter},
        "prompt_version": outcome.prompt_version,
        "usage": {"prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens},
        "input_truncated": outcome.truncated,
    }


class _Journal:
    def __init__(self, path: Path):
        self.f: IO[str] = path.open("a", encoding="utf-8")
        self.synced = time.monotonic()

    def write(self, record: dict[str, Any]) -> None:
        self.f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.f.flush()
        if time.monotonic() - self.synced >= FSYNC_EVERY_S:
            self.sync()

    def sync(self) -> None:
        os.fsync(self.f.fileno())
        self.synced = time.monotonic()

    def close(self) -> None:
        self.sync()
        self.f.close()


RunStream = Callable[["Take", "Deliver", "int | None"], None]
Emit = Callable[[dict[str, Any]], None]
# Classifies the tickets not yet in the output, emitting one result record per ticket as it is answered.
Classify = Callable[[Sequence[BulkTicket], Emit], None]


def stream_tickets(
    tickets: Iterable[BulkTicket],
    run_stream: RunStream,
    record: Callable[[str, Outcome], dict[str, Any]],
    emit: Emit,
    concurrency: int,
) -> None:
    """Feed the tickets through `run_stream` (a runner's streaming loop, at most `concurrency` in flight)
    and emit each answer's record as it comes. An empty ticket is an error record without a model call."""
    from server.engines.base import EngineError

    todo = iter(tickets)

    def take(k: int) -> list[tuple[Any, Item]]:
        got: list[tuple[Any, Item]] = []
        for t in todo:
            if not (t.ticket.subject.strip() or t.ticket.body.strip()):
                deliver(t.ticket_id, EngineError("empty ticket: no subject and no body"))
                continue
            got.append((t.ticket_id, t.ticket))
            if len(got) >= k:
                break
        return got

    def deliver(key: Any, outcome: Outcome) -> None:
        emit(record(str(key), outcome))

    run_stream(take, deliver, concurrency)


def run_records(
    tickets: Sequence[BulkTicket],
    output: Path,
    classify: Classify,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> BulkSummary:
    """Hand `classify` the tickets not yet in `output` and append each record it emits as it comes;
    Parquet output is written once every ticket is answered."""
    _kind(output, OUTPUT_FORMATS, "output")
    journal = journal_path(output)
    journal.parent.mkdir(parents=True, exist_ok=True)
    if journal != output and output.exists() and not journal.exists():
        return BulkSummary(len(tickets), len(tickets), 0, 0, 0.0)  # converted already: the job finished
    done = done_ids(journal)
    todo = [t for t in tickets if t.ticket_id not in done]
    skipped = len(tickets) - len(todo)
    counts = {"ok": 0, "failed": 0}
    progress(skipped, len(tickets))
    out = _Journal(journal)
    start = time.perf_counter()

    def emit(rec: dict[str, Any]) -> None:
        out.write(rec)
        counts["failed" if "error" in rec else "ok"] += 1
        progress(skipped + counts["ok"] + counts["failed"], len(tickets))

    try:
        if todo:
            classify(todo, emit)
    finally:
        out.close()
    seconds = time.perf_counter() - start
    if journal != output:
        _to_parquet(journal, output)
    return BulkSummary(len(tickets), skipped, counts["ok"], counts["failed"], seconds)


def run_job(
    tickets: Sequence[BulkTicket],
    output: Path,
    run_stream: RunStream,
    record: Callable[[str, Outcome], dict[str, Any]],
    concurrency: int,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> BulkSummary:
    """Classify the tickets not yet in `output` through `run_stream` (a runner's streaming loop, at most
    `concurrency` tickets in flight) and append each answer as it comes."""
    return run_records(
        tickets, output, lambda todo, emit: stream_tickets(todo, run_stream, record, emit, concurrency), progress
    )


def open_classifier(settings: Settings, concurrency: int | None = None) -> Classify:
    """The runner the settings describe, loaded once, as a `Classify` writing `result_record`s: the
    single-process job and every Ray actor (server.bulk_ray) classify through this one function."""
    from server.engines import open_runner
    from server.taxonomy import load_taxonomy

    runner = open_runner(settings, load_taxonomy(settings.taxonomy))

    def record(tid: str, outcome: Outcome) -> dict[str, Any]:
        return result_record(tid, outcome, runner.info, settings.routing)

    def classify(tickets: Sequence[BulkTicket], emit: Emit) -> None:
        stream_tickets(tickets, runner.run_stream, record, emit, concurrency or settings.engine.max_batch_size)

    return classify


def _to_parquet(journal: Path, output: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines() if line.strip()]
    # Nested values as JSON text: one column type whatever a ticket's answer or error holds.
    flat = [
        {k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v for k, v in r.items()} for r in rows
    ]
    columns = list(dict.fromkeys(k for r in flat for k in r))
    table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in flat])
    tmp = output.with_name(output.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, output)
    journal.unlink()
