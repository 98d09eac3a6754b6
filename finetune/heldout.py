"""The held-out split, recorded by reference: no ticket text goes into the adapter folder (which is in git).

`heldout.json` names, per held-out example, its ticket id, where its text lives (a data file relative to
the project, or `feedback:<id>` in the store) and the SHA-256 of the canonical example (text, history,
answer, language). Reading it back rebuilds each example from its source the way training built it and
checks the hash: a row whose text is gone (erased, purged by retention) or is no longer what was held out
(redacted, edited) is skipped and counted, never used changed.

Adapters written before this format carried the text itself (`heldout.jsonl`); `convert` turns one
into `heldout.json` after checking that every row resolves to exactly the same example.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig
from finetune.data import DataError, Example, feedback_example, open_feedback_store, read_examples
from server.config import Settings, load_settings
from server.prompts import TicketInput
from server.registry import resolve_project_path
from server.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

HELDOUT_FILE = "heldout.json"
LEGACY_FILE = "heldout.jsonl"  # text included: read for old adapters, never written
FORMAT = "triage-heldout/1"
FEEDBACK = "feedback:"


def canonical(ex: Example) -> dict[str, Any]:
    """The held-out example as the old heldout.jsonl row held it: what calibration reads (minus source)."""
    return {
        "uid": ex.uid,
        "subject": ex.ticket.subject,
        "body": ex.ticket.body,
        "previous_interactions": list(ex.ticket.previous_interactions),
        "answer": ex.answer,
        "language": ex.language,
    }


def example_sha256(ex: Example) -> str:
    text = json.dumps(canonical(ex), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class HeldOutRef:
    uid: str
    source: str  # data file relative to the project, or "feedback:<feedback id>"
    sha256: str


@dataclass(frozen=True)
class ReadSpec:
    """How the examples were built from their sources (the fine-tuning config's data options)."""

    taxonomy: str
    target: str  # full | labels
    text_column: str | None = None
    label_sources: list[str] | None = None

    @classmethod
    def of(cls, cfg: FinetuneConfig) -> ReadSpec:
        return cls(cfg.taxonomy, cfg.data.target, cfg.data.text_column, cfg.data.label_sources)

    @property
    def need_reasoning(self) -> bool:
        return self.target == "full"


@dataclass
class HeldOut:
    examples: list[Example]
    missing: list[str] = field(default_factory=list)  # uids whose source row is gone
    changed: list[str] = field(default_factory=list)  # uids whose source no longer matches the hash

    @property
    def skipped(self) -> int:
        return len(self.missing) + len(self.changed)

    def summary(self) -> dict[str, int]:
        return {
            "rows": len(self.examples) + self.skipped,
            "resolved": len(self.examples),
            "missing": len(self.missing),
            "changed": len(self.changed),
        }


def write_heldout(path: Path, held: list[Example], spec: ReadSpec) -> None:
    """`heldout.json`: the references of the held-out split and how to rebuild it; no text."""
    refs = []
    for ex in held:
        if not ex.origin:
            raise ValueError(f"held-out example {ex.uid!r} names no source to read it back from")
        refs.append(HeldOutRef(ex.uid, ex.origin, example_sha256(ex)))
    write_refs(path, refs, spec)


def write_refs(path: Path, refs: list[HeldOutRef], spec: ReadSpec) -> None:
    record = {
        "format": FORMAT,
        "taxonomy": spec.taxonomy,
        "target": spec.target,
        "text_column": spec.text_column,
        "label_sources": spec.label_sources,
    }
    # One row per line: a diff of two splits reads row by row.
    head = json.dumps(record, ensure_ascii=False)[:-1]
    rows = ",\n".join(
        json.dumps({"uid": r.uid, "source": r.source, "sha256": r.sha256}, ensure_ascii=False) for r in refs
    )
    path.write_text(f'{head}, "rows": [\n{rows}\n]}}\n', encoding="utf-8")


def load_refs(path: Path) -> tuple[ReadSpec, list[HeldOutRef]]:
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    spec = ReadSpec(d["taxonomy"], d["target"], d.get("text_column"), d.get("label_sources"))
    return spec, [HeldOutRef(r["uid"], r["source"], r["sha256"]) for r in d["rows"]]


def _file_examples(source: str, spec: ReadSpec, taxonomy: Taxonomy) -> dict[str, list[Example]] | None:
    """The source file's examples by uid, as training read them; None when the file is gone."""
    path = resolve_project_path(source)
    if not path.is_file():
        return None
    examples, _ = read_examples(
        path,
        taxonomy,
        text_column=spec.text_column,
        label_sources=spec.label_sources,
        need_reasoning=spec.need_reasoning,
    )
    by_uid: dict[str, list[Example]] = {}
    for ex in examples:
        by_uid.setdefault(ex.uid, []).append(ex)
    return by_uid


def _feedback_examples(
    database_url: str,
    settings: Settings,
    spec: ReadSpec,
    taxonomy: Taxonomy,
    *,
    ids: list[int] | None = None,
    ticket_ids: list[str] | None = None,
) -> dict[int, Example | None]:
    """Feedback id -> its example rebuilt from the store (None: no longer a usable example), for the
    given feedback ids or every feedback row of the given tickets."""
    from sqlalchemy import select

    from server.store.db import make_sessionmaker
    from server.store.models import Classification, Feedback

    query = select(Feedback, Classification).join(Classification, Feedback.classification_id == Classification.id)
    query = (
        query.where(Feedback.id.in_(ids or []))
        if ticket_ids is None
        else query.where(Feedback.ticket_id.in_(ticket_ids))
    )
    engine = open_feedback_store(database_url, settings.storage)
    try:
        with make_sessionmaker(engine)() as session:
            rows = session.execute(query).all()
            return {fb.id: feedback_example(fb, cls, taxonomy, spec.need_reasoning) for fb, cls in rows}
    finally:
        engine.dispose()


def resolve(
    refs: Iterable[HeldOutRef],
    spec: ReadSpec,
    *,
    settings: Settings | None = None,
    database_url: str | None = None,
    taxonomy: Taxonomy | None = None,
) -> HeldOut:
    """The examples the references name, in their order, each checked against its hash. Feedback rows
    are read from `database_url` (default: the settings'), opened with the settings' data key."""
    refs = list(refs)
    taxonomy = taxonomy or load_taxonomy(spec.taxonomy)
    files = {
        src: _file_examples(src, spec, taxonomy) for src in {r.source for r in refs} if not src.startswith(FEEDBACK)
    }
    fb_ids = sorted({int(r.source.removeprefix(FEEDBACK)) for r in refs if r.source.startswith(FEEDBACK)})
    feedback: dict[int, Example | None] = {}
    if fb_ids:
        settings = settings or load_settings()
        feedback = _feedback_examples(database_url or settings.database_url, settings, spec, taxonomy, ids=fb_ids)
    out = HeldOut([])
    for ref in refs:
        if ref.source.startswith(FEEDBACK):
            fb = feedback.get(int(ref.source.removeprefix(FEEDBACK)))
            candidates = [fb] if fb is not None and fb.uid == ref.uid else []
        else:
            candidates = (files[ref.source] or {}).get(ref.uid, [])
        match = next((ex for ex in candidates if example_sha256(ex) == ref.sha256), None)
        if match is not None:
            out.examples.append(match)
        elif candidates:
            out.changed.append(ref.uid)
        else:
            out.missing.append(ref.uid)
    if out.skipped:
        log.warning(
            "held-out split: %d of %d row(s) skipped (%d gone, %d changed since training)",
            out.skipped,
            len(refs),
            len(out.missing),
            len(out.changed),
        )
    return out


def _database_url(adapter_dir: Path, database_url: str | None) -> str | None:
    """The feedback database the adapter was trained from, when its config named one."""
    if database_url is not None:
        return database_url
    manifest = adapter_dir / "manifest.json"
    if not manifest.is_file():
        return None
    recorded = (json.loads(manifest.read_text(encoding="utf-8")).get("config") or {}).get("data") or {}
    url = recorded.get("database_url")
    return url if isinstance(url, str) else None


def read_heldout(
    adapter_dir: str | Path, settings: Settings | None = None, *, database_url: str | None = None
) -> HeldOut:
    """The adapter's held-out split, rebuilt from its sources (heldout.json), or read from the text an
    adapter of the old format carries (heldout.jsonl)."""
    adapter_dir = Path(adapter_dir)
    path = adapter_dir / HELDOUT_FILE
    if path.is_file():
        spec, refs = load_refs(path)
        return resolve(refs, spec, settings=settings, database_url=_database_url(adapter_dir, database_url))
    legacy = adapter_dir / LEGACY_FILE
    if legacy.is_file():
        log.warning("%s holds ticket text: `triage heldout --convert %s` stores it by reference", legacy, adapter_dir)
        return HeldOut(read_legacy(legacy))
    raise FileNotFoundError(f"{adapter_dir}: no held-out split ({HELDOUT_FILE})")


def read_legacy(path: Path) -> list[Example]:
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        ticket = TicketInput(d["subject"], d["body"], tuple(d.get("previous_interactions") or ()))
        out.append(Example(d["uid"], ticket, d["answer"], d.get("source", ""), d.get("language")))
    return out


def legacy_row(ex: Example) -> dict[str, Any]:
    """An example as a heldout.jsonl line held it."""
    return canonical(ex) | {"source": ex.source}


def convert(
    adapter_dir: str | Path, settings: Settings | None = None, *, database_url: str | None = None
) -> dict[str, int]:
    """Rewrite an adapter's heldout.jsonl as heldout.json, then delete the text.

    Each row is found again, unchanged, in the adapter's recorded data files (by file name and ticket id)
    or, for feedback, in the store (by ticket id); the new file must read back to exactly the old rows,
    or nothing is changed and the rows that did not resolve are reported."""
    from finetune.config import config_from_dict
    from server.registry import read_manifest

    adapter_dir = Path(adapter_dir)
    legacy = adapter_dir / LEGACY_FILE
    if not legacy.is_file():
        raise FileNotFoundError(f"{legacy}: nothing to convert")
    manifest = read_manifest(adapter_dir).to_json()
    cfg = config_from_dict(manifest.get("config") or {}, None, f"{adapter_dir}/manifest.json config")
    spec = ReadSpec.of(cfg)
    url = _database_url(adapter_dir, database_url)
    taxonomy = load_taxonomy(spec.taxonomy)
    old = read_legacy(legacy)
    recorded = [str(s["path"]) for s in (manifest.get("data") or {}).get("sources", [])] or cfg.data.files
    files = {src: _file_examples(src, spec, taxonomy) or {} for src in recorded}
    feedback_uids = sorted({ex.uid for ex in old if ex.source == "feedback"})
    feedback: dict[int, Example | None] = {}
    if feedback_uids:
        settings = settings or load_settings()
        feedback = _feedback_examples(url or settings.database_url, settings, spec, taxonomy, ticket_ids=feedback_uids)
    refs: list[HeldOutRef] = []
    unresolved: list[str] = []
    for ex in old:
        want = legacy_row(ex)
        if ex.source == "feedback":
            options = [(f"{FEEDBACK}{i}", fb) for i, fb in sorted(feedback.items()) if fb is not None]
        else:
            options = [(src, c) for src in recorded if Path(src).name == ex.source for c in files[src].get(ex.uid, [])]
        found = next((src for src, c in options if c.uid == ex.uid and legacy_row(c) == want), None)
        if found is None:
            unresolved.append(ex.uid)
        else:
            refs.append(HeldOutRef(ex.uid, found, example_sha256(ex)))
    if unresolved:
        raise DataError(
            f"{legacy}: {len(unresolved)} row(s) not found unchanged in their sources "
            f"(first: {', '.join(unresolved[:5])}); nothing converted"
        )
    target = adapter_dir / HELDOUT_FILE
    tmp = adapter_dir / (HELDOUT_FILE + ".tmp")
    write_refs(tmp, refs, spec)
    back = resolve(load_refs(tmp)[1], spec, settings=settings, database_url=url, taxonomy=taxonomy)
    if back.skipped or [legacy_row(e) for e in back.examples] != [legacy_row(e) for e in old]:
        tmp.unlink()
        raise DataError(f"{legacy}: the converted split does not read back to the same rows; nothing converted")
    tmp.replace(target)
    legacy.unlink()
    return {"rows": len(refs), "feedback_rows": sum(r.source.startswith(FEEDBACK) for r in refs)}
