"""The model registry: LoRA adapters under models/adapters/<name>/ and an index naming the active one.

The index (`settings.model.registry`, default models/registry.json) is
`{"active": name | null, "history": [{action, name, previous, at, forced, reason, user}, ...]}`.
A server in registry mode serves the active entry and polls `Registry.version()` to hot-swap on a
promotion, so every write replaces the file atomically (temp file + os.replace: a reader never sees
half a file) under an exclusive flock on a sidecar `.lock` file (two CLI calls cannot interleave
their read-modify-write).

With `model.registry_backend: store` the index lives in the shared database instead (`SharedRegistry`):
every API replica reads the same active adapter, polls the same change token, and materialises
promoted adapters from the database, so a promotion made anywhere hot-swaps every replica.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.config import PROJECT_ROOT
from server.records import EvalSummary, JsonRecord, Number, ValidationError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MANIFEST = "manifest.json"
REQUIRED_FILES = (ADAPTER_CONFIG, ADAPTER_WEIGHTS, MANIFEST)
HEAD_FILES = ("head.json", "head.safetensors", "head_vocabulary.json")  # server.heads.head; checksummed when present


class RegistryError(RuntimeError):
    """A registry operation that cannot be done; the message is meant for the operator."""


class BaseModelRef(JsonRecord):
    path: str | None = None  # project-relative unless absolute
    safetensors_sha256: str | None = None


class Calibration(JsonRecord):
    """Written by `triage calibrate`; the engine divides each field's logits by its temperature."""

    temperatures: dict[str, Number] | None = None
    ece_before: dict[str, Any] | None = None
    ece_after: dict[str, Any] | None = None


class GateRecord(JsonRecord):
    """The verdict `triage eval` stored; `promote` refuses anything but "yes" unless forced."""

    verdict: str | None = None  # "yes" | "no"
    data: str | None = None  # the eval key (data hash) it was judged on
    n: int | None = None
    baseline: dict[str, Any] | None = None  # what it was compared with; None: absolute checks only
    classical: dict[str, Any] | None = None
    checks: list[dict[str, Any]] | None = None
    rules: dict[str, Any] | None = None
    at: str | None = None


class AdapterManifest(JsonRecord):
    """models/adapters/<name>/manifest.json. The fine-tuning job writes it, `triage eval` adds `evals` and
    `gate`; keys the server does not read (data, training, config, ...) are kept as they are."""

    name: str | None = None
    kind: str | None = None  # "head": a label head over the bare base model, no LoRA weights
    created_at: str | None = None
    base_model: BaseModelRef | None = None
    prompt_version: str | None = None  # the adapter must be served with the prompt it was trained on
    taxonomy: str | dict[str, Any] | None = None
    adapter_files: dict[str, str] | None = None  # file name -> sha256
    calibration: Calibration | None = None
    head: dict[str, Any] | None = None  # the label head's fit report
    out_of_scope_threshold: Number | None = None
    evals: dict[str, EvalSummary] | None = None  # eval key (data hash[:limit=N]) -> summary
    gate: GateRecord | None = None

    @classmethod
    def parse(cls, data: Any, where: Path | str) -> AdapterManifest:
        """The manifest in `data`, or RegistryError naming the file and every key that is wrong."""
        if not isinstance(data, dict):
            raise RegistryError(f"{where}: must be a JSON object")
        try:
            return cls.from_json(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise RegistryError(f"{where}: not a valid manifest ({problems})") from None


@dataclass
class AdapterEntry:
    name: str
    path: Path
    manifest: AdapterManifest = field(default_factory=AdapterManifest)
    error: str | None = None  # why the manifest could not be read (listed, never loadable)

    def __post_init__(self) -> None:
        # Callers outside the registry still build entries from the manifest's JSON object.
        if not isinstance(self.manifest, AdapterManifest):
            self.manifest = AdapterManifest.parse(self.manifest, self.path / MANIFEST)

    @property
    def has_lora(self) -> bool:
        """False for a head-only entry (manifest kind "head": a label head over the bare base model)."""
        return self.manifest.kind != "head"

    @property
    def base_model_path(self) -> Path | None:
        """The base model the adapter was trained on (relative manifest paths are project-relative)."""
        raw = self.manifest.base_model.path if self.manifest.base_model else None
        return resolve_project_path(raw) if raw else None


def resolve_project_path(raw: str | Path) -> Path:
    """Manifests are committed to git, so their relative paths mean the project root, not the cwd."""
    p = Path(raw).expanduser()
    return p if p.is_absolute() else PROJECT_ROOT / p


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write next to the target, fsync, then os.replace: readers see the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(folder: Path) -> AdapterManifest:
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path}: missing") from None
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: not readable JSON ({exc})") from exc
    return AdapterManifest.parse(data, path)


def write_manifest(folder: Path, manifest: AdapterManifest) -> None:
    write_json_atomic(folder / MANIFEST, manifest.to_json())


class Registry:
    def __init__(self, index_path: Path, adapters_dir: Path | None = None):
        self.index_path = Path(index_path)
        self.adapters_dir = Path(adapters_dir) if adapters_dir is not None else self.index_path.parent / "adapters"
        self.lock_path = self.index_path.with_name(self.index_path.name + ".lock")

    # -- reading ----------------------------------------------------------------------------------
    def _read_index(self) -> dict[str, Any]:
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"active": None, "history": []}
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{self.index_path}: not readable JSON ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("history", []), list):
            raise RegistryError(f"{self.index_path}: expected {{'active': ..., 'history': [...]}}")
        data.setdefault("active", None)
        data.setdefault("history", [])
        return data

    @property
    def active(self) -> str | None:
        return self._read_index().get("active")

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self._read_index()["history"])

    def list(self) -> list[AdapterEntry]:
        """Every folder with a manifest.json; an unreadable manifest is listed with its `error` rather than
        hiding the folder (the operator should see it is broken)."""
        if not self.adapters_dir.is_dir():
            return []
        entries = []
        for folder in sorted(p for p in self.adapters_dir.iterdir() if p.is_dir() and (p / MANIFEST).is_file()):
            try:
                entries.append(AdapterEntry(folder.name, folder, read_manifest(folder)))
            except RegistryError as exc:
                entries.append(AdapterEntry(folder.name, folder, AdapterManifest(), error=str(exc)))
        return entries

    def _folder(self, name: str) -> Path:
        # Names are folder names, never paths: `promote ../../etc` must not escape adapters/.
        if not name or name in (".", "..") or "/" in name or "\\" in name:
            raise RegistryError(f"invalid adapter name {name!r}")
        return self.adapters_dir / name

    def get(self, name: str) -> AdapterEntry:
        folder = self._folder(name)
        if not folder.is_dir():
            known = ", ".join(e.name for e in self.list()) or "none"
            raise RegistryError(f"adapter {name!r} not found in {self.adapters_dir} (registered: {known})")
        return AdapterEntry(name, folder, read_manifest(folder))

    def validate(self, name: str) -> AdapterEntry:
        """The adapter can be loaded and is the one the manifest describes; RegistryError says what is wrong."""
        entry = self.get(name)
        required = REQUIRED_FILES if entry.has_lora else (MANIFEST, *HEAD_FILES)
        for filename in required:
            if not (entry.path / filename).is_file():
                raise RegistryError(f"adapter {name!r}: {filename} missing in {entry.path}")
        if entry.has_lora:
            _check_adapter_config(entry.path / ADAPTER_CONFIG, name)
            _check_safetensors(entry.path / ADAPTER_WEIGHTS, name)
        _check_checksums(entry, name, [f for f in required if f != MANIFEST])
        return entry

    def version(self) -> str:
        """Change token for hot-swap polling: one stat, no parsing. os.replace gives a new inode and the
        history only grows, so two writes within the filesystem's timestamp granularity still differ."""
        try:
            st = self.index_path.stat()
        except FileNotFoundError:
            return "missing"
        return f"{st.st_ino}-{st.st_mtime_ns}-{st.st_size}"

    # -- writing ----------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive across processes. Not re-entrant: never nest (a second flock in-process would block)."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def promote(
        self, name: str, *, force: bool = False, reason: str | None = None, user: str | None = None
    ) -> AdapterEntry:
        """Make `name` active. It must validate; its gate verdict must be "yes" unless forced with a reason."""
        reason = reason.strip() if reason and reason.strip() else None
        with self._locked():
            entry = self.validate(name)
            verdict = entry.manifest.gate.verdict if entry.manifest.gate else None
            overridden = verdict != "yes"
            if overridden:
                shown = verdict if verdict else "missing (never gated)"
                if not force:
                    raise RegistryError(
                        f"adapter {name!r}: gate verdict is {shown}; promote with --force --reason TEXT to override"
                    )
                if reason is None:
                    raise RegistryError(
                        f"adapter {name!r}: gate verdict is {shown}; --force needs a non-empty --reason"
                    )
            index = self._read_index()
            previous = index.get("active")
            if previous == name:
                return entry  # already active: no history entry, so rollback still means "before this one"
            self._before_promote(entry)
            self._append(index, _event("promote", name, previous, forced=overridden, reason=reason, user=user))
        return entry

    def rollback(self, *, user: str | None = None) -> str | None:
        """Re-activate what was active before the latest promotion still in effect.

        History is replayed as a stack (promote pushes, rollback pops), so repeated rollbacks walk
        back through earlier promotions instead of bouncing between the last two.
        """
        with self._locked():
            index = self._read_index()
            stack = _effective_promotions(index["history"])
            if not stack:
                raise RegistryError("nothing to roll back: no promotion in the registry history")
            target = stack[-1].get("previous")
            if target is None:
                raise RegistryError(
                    f"nothing to roll back to: {stack[-1].get('name')!r} was promoted when no adapter was active "
                    "(set model.adapter to none for the bare base model, or promote another adapter)"
                )
            self.validate(target)  # never hot-swap a server onto a deleted or damaged adapter
            self._append(index, _event("rollback", target, index.get("active"), forced=False, reason=None, user=user))
        return str(target)

    def _append(self, index: dict[str, Any], event: dict[str, Any]) -> None:
        """Record `event` (caller holds the lock and read `index` under it); its `name` becomes active."""
        index["history"].append(event)
        index["active"] = event["name"]
        write_json_atomic(self.index_path, index)

    def _before_promote(self, entry: AdapterEntry) -> None:
        """Hook for the shared registry (publishing the adapter's files); the file registry needs nothing."""

    def edit_manifest(self, folder: Path, edit: Callable[[AdapterManifest], None]) -> AdapterManifest:
        """Read-modify-write a manifest under the registry lock (the eval records evals and the gate).

        Also used for adapter folders outside adapters/: the lock is only a mutex."""
        with self._locked():
            manifest = read_manifest(Path(folder))
            edit(manifest)
            # validate_assignment checks set keys, not edits inside them: parse again before writing.
            manifest = AdapterManifest.parse(manifest.to_json(), Path(folder) / MANIFEST)
            write_manifest(Path(folder), manifest)
        return manifest

    def update_manifest(self, folder: Path, update: Callable[[dict[str, Any]], None]) -> AdapterManifest:
        """`edit_manifest` for callers that edit the JSON object (the fine-tuning jobs)."""

        with self._locked():
            data = read_manifest(Path(folder)).to_json()
            update(data)
            manifest = AdapterManifest.parse(data, Path(folder) / MANIFEST)
            write_manifest(Path(folder), manifest)
        return manifest


def _event(
    action: str, name: str, previous: str | None, *, forced: bool, reason: str | None, user: str | None
) -> dict[str, Any]:
    return {
        "action": action,
        "name": name,
        "previous": previous,
        "at": utc_now(),
        "forced": forced,
        "reason": reason,
        "user": user,
    }


def _effective_promotions(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    stack: list[dict[str, Any]] = []
    for event in history:
        if event.get("action") == "promote":
            stack.append(event)
        elif event.get("action") == "rollback" and stack:
            stack.pop()
    return stack


def _check_adapter_config(path: Path, name: str) -> None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RegistryError(f"adapter {name!r}: {path.name} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise RegistryError(f"adapter {name!r}: {path.name} must be a JSON object")


def _check_safetensors(path: Path, name: str) -> None:
    """Parse the header only (numpy framework: no torch, no tensor data read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            keys = list(fh.keys())
    except Exception as exc:  # SafetensorError, OSError: both mean "cannot be loaded"
        raise RegistryError(f"adapter {name!r}: {path.name} is not a readable safetensors file ({exc})") from exc
    if not keys:
        raise RegistryError(f"adapter {name!r}: {path.name} holds no tensors")


def _check_checksums(entry: AdapterEntry, name: str, required: list[str]) -> None:
    expected = entry.manifest.adapter_files
    if not isinstance(expected, dict) or not expected:
        raise RegistryError(f"adapter {name!r}: manifest has no adapter_files checksums")
    missing = [f for f in required if f not in expected]
    if missing:
        raise RegistryError(f"adapter {name!r}: manifest adapter_files lacks {', '.join(missing)}")
    for filename, sha in expected.items():
        path = entry.path / filename
        if Path(filename).name != filename or not path.is_file():
            raise RegistryError(f"adapter {name!r}: {filename} listed in the manifest is missing")
        actual = sha256_file(path)
        if actual != str(sha).lower():
            raise RegistryError(
                f"adapter {name!r}: sha256 of {filename} is {actual[:12]}…, manifest says {str(sha)[:12]}…"
            )


def open_registry(model_settings: Any) -> Registry:
    """The registry `model_settings` names: the JSON index, or the shared one in the database."""
    if getattr(model_settings, "registry_backend", "file") == "store":
        url = model_settings.registry_database
        if not url:
            raise RegistryError("model.registry_backend is 'store' but no database is known for it")
        return SharedRegistry(url, Path(model_settings.registry).parent / "adapters", model_settings.adapter_cache_dir)
    return Registry(model_settings.registry)


def seed_shared_registry(model_settings: Any, *, user: str | None = None) -> str | None:
    """With registry_backend store: start an empty shared registry from this image's file registry (its
    active adapter, published into the database). Run after migrations; a no-op once any history exists."""
    registry = open_registry(model_settings)
    if not isinstance(registry, SharedRegistry):
        return None
    return registry.seed_from(Registry(model_settings.registry), user=user)


def resolve_adapter(model_settings: Any) -> AdapterEntry | None:
    """What `model.adapter` means: "registry" -> the active entry (None when there is no index or nothing
    is active); None/"none" -> None (bare base); a registered name -> that entry; a folder -> an entry
    named after it (manifest {} when it has none)."""
    spec = model_settings.adapter
    if spec is None or not str(spec).strip() or str(spec).strip().lower() == "none":
        return None
    spec = str(spec).strip()
    registry = open_registry(model_settings)
    if spec == "registry":
        active = registry.active
        return registry.get(active) if active else None
    if "/" not in spec and "\\" not in spec and (registry.adapters_dir / spec).is_dir():
        return registry.get(spec)
    for folder in _candidate_folders(spec):
        if folder.is_dir():
            folder = folder.resolve()
            manifest = read_manifest(folder) if (folder / MANIFEST).is_file() else AdapterManifest()
            return AdapterEntry(folder.name, folder, manifest)
    raise RegistryError(f"adapter {spec!r} is neither a registered name in {registry.adapters_dir} nor a folder")


def _candidate_folders(spec: str) -> list[Path]:
    p = Path(spec).expanduser()
    return [p] if p.is_absolute() else [p, PROJECT_ROOT / p]


# -- the shared registry (model.registry_backend: store) ------------------------------------------------
_DB_ENGINES: dict[str, Any] = {}
_DB_ENGINES_LOCK = threading.Lock()
# pg_advisory_xact_lock key for promotions (any constant: it only has to be the same in every process).
_PG_LOCK_KEY = 0x7472_6961_6765  # "triage"


def _db_engine(url: str) -> Any:
    """One pool per URL per process: the watcher polls every few seconds and must not open a pool each time."""
    from server.store.db import make_db_engine

    with _DB_ENGINES_LOCK:
        if url not in _DB_ENGINES:
            _DB_ENGINES[url] = make_db_engine(url)
        return _DB_ENGINES[url]


def _folder_files(folder: Path) -> dict[str, str]:
    """What publishing a folder stores: every visible top-level file, by sha256."""
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


class SharedRegistry(Registry):
    """The registry in the shared database (tables of migration 0006).

    - The history is the `registry_events` table; the active adapter is the newest event's name, and the
      newest event id is the change token (one indexed read per poll per replica).
    - Promoting publishes the adapter's files into `adapter_blobs` (by sha256) and `registry_files` first,
      in the same transaction as the event, so no replica can see an event whose files are missing.
    - A replica materialises a published adapter under `cache_dir/<name>@<digest>/` (temp folder, then an
      atomic rename) and checks it like any other adapter (the manifest's checksums) before serving it.
    - Published names are immutable: publishing other content under a taken name is refused, because a
      replica that compares names would otherwise never swap to the new content.
    - Promotions are serialised with a PostgreSQL advisory transaction lock (SQLite: the database file's
      own write lock, taken by the first write of the transaction).
    """

    def __init__(self, database_url: str, adapters_dir: Path, cache_dir: Path):
        self.database_url = database_url
        self.cache_dir = Path(cache_dir)
        super().__init__(self.cache_dir / "registry.json", adapters_dir)  # index_path: unused, kept for messages
        self._conn: Any = None  # the connection of the transaction `_locked` holds

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url

        return f"SharedRegistry({make_url(self.database_url).render_as_string(hide_password=True)})"

    @property
    def db(self) -> Any:
        return _db_engine(self.database_url)

    # -- reading ----------------------------------------------------------------------------------
    @contextmanager
    def _reading(self) -> Iterator[Any]:
        if self._conn is not None:  # inside `_locked`: read what this transaction sees
            yield self._conn
            return
        from sqlalchemy.exc import DBAPIError

        try:
            with self.db.connect() as conn:
                yield conn
        except DBAPIError as exc:
            raise RegistryError(f"shared registry unreadable ({exc.orig}); has `triage migrate` run?") from exc

    def _read_index(self) -> dict[str, Any]:
        from sqlalchemy import select

        from server.store.models import RegistryEvent

        with self._reading() as conn:
            rows = conn.execute(select(RegistryEvent.__table__).order_by(RegistryEvent.id)).mappings().all()
        history = [
            {
                "action": r["action"],
                "name": r["name"],
                "previous": r["previous"],
                "at": r["at"].isoformat(timespec="seconds") if r["at"] else None,
                "forced": bool(r["forced"]),
                "reason": r["reason"],
                "user": r["user"],
            }
            for r in rows
        ]
        return {"active": history[-1]["name"] if history else None, "history": history}

    def version(self) -> str:
        from sqlalchemy import func, select

        from server.store.models import RegistryEvent

        with self._reading() as conn:
            newest = conn.execute(select(func.max(RegistryEvent.id))).scalar()
        return f"store-{newest or 0}"

    def published(self) -> dict[str, dict[str, str]]:
        """Adapter name -> {file name: sha256} of everything published."""
        from sqlalchemy import select

        from server.store.models import RegistryFile

        out: dict[str, dict[str, str]] = {}
        with self._reading() as conn:
            for name, filename, sha in conn.execute(
                select(RegistryFile.name, RegistryFile.filename, RegistryFile.sha256)
            ):
                out.setdefault(name, {})[filename] = sha
        return out

    def list(self) -> list[AdapterEntry]:
        """Published adapters (their manifest read from the store) and local folders not yet published."""
        published = self.published()
        entries = []
        for name, files in sorted(published.items()):
            folder = self._cache_folder(name, files)
            try:
                manifest = AdapterManifest.parse(json.loads(self._blob(files[MANIFEST])), f"{name}/{MANIFEST}")
                entries.append(AdapterEntry(name, folder, manifest))
            except (KeyError, ValueError, RegistryError) as exc:
                entries.append(AdapterEntry(name, folder, AdapterManifest(), error=f"{type(exc).__name__}: {exc}"))
        local = [e for e in super().list() if e.name not in published]
        return sorted(entries + local, key=lambda e: e.name)

    def get(self, name: str) -> AdapterEntry:
        self._folder(name)  # the same name check as the file registry
        files = self.published().get(name)
        if files is None:
            return super().get(name)  # a local adapter, published when promoted
        local = self.adapters_dir / name
        if (local / MANIFEST).is_file() and _folder_files(local) == files:
            # The same content in this host's adapters folder (a volume shared with vLLM pods, which load
            # LoRA weights by path): serve that folder, so the path the API hands vLLM exists there too.
            return AdapterEntry(name, local, read_manifest(local))
        folder = self._materialise(name, files)
        return AdapterEntry(name, folder, read_manifest(folder))

    def _blob(self, sha: str) -> bytes:
        from sqlalchemy import select

        from server.store.models import AdapterBlob

        with self._reading() as conn:
            content = conn.execute(select(AdapterBlob.content).where(AdapterBlob.sha256 == sha)).scalar()
        if content is None:
            raise RegistryError(f"adapter blob {sha[:12]}… is missing from the shared registry")
        if hashlib.sha256(content).hexdigest() != sha:
            raise RegistryError(f"adapter blob {sha[:12]}… does not match its sha256 (damaged in the store)")
        return bytes(content)

    def _cache_folder(self, name: str, files: dict[str, str]) -> Path:
        """Where this host materialises a published adapter: by content, so other files never reuse it."""
        digest = hashlib.sha256("\n".join(f"{k}:{v}" for k, v in sorted(files.items())).encode()).hexdigest()
        return self.cache_dir / f"{name}@{digest[:12]}"

    def _materialise(self, name: str, files: dict[str, str]) -> Path:
        target = self._cache_folder(name, files)
        if (target / MANIFEST).is_file():
            return target  # validate() still checks every checksum before it is served
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.cache_dir))
        try:
            for filename, sha in files.items():
                (tmp / filename).write_bytes(self._blob(sha))
            try:
                os.rename(tmp, target)
            except OSError:  # another process of this host materialised it first: theirs is the same content
                if not (target / MANIFEST).is_file():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    # -- writing ----------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        if self._conn is not None:
            raise RegistryError("shared registry lock is not re-entrant")
        try:
            with self.db.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                else:
                    # pysqlite opens the transaction lazily; a write takes the file's RESERVED lock now, so
                    # two promotions cannot both read the same history before either writes.
                    conn.execute(text("UPDATE registry_events SET id = id WHERE id < 0"))
                self._conn = conn
                try:
                    yield
                finally:
                    self._conn = None
        except DBAPIError as exc:
            raise RegistryError(f"shared registry write failed ({exc.orig}); has `triage migrate` run?") from exc

    def _append(self, index: dict[str, Any], event: dict[str, Any]) -> None:
        from sqlalchemy import insert

        from server.store.models import RegistryEvent

        assert self._conn is not None, "_append runs inside _locked"
        row = {k: event[k] for k in ("action", "name", "previous", "forced", "reason", "user")}
        self._conn.execute(insert(RegistryEvent).values(at=datetime.now(UTC), **row))

    def _before_promote(self, entry: AdapterEntry) -> None:
        # This machine's own folder of that name, if any, is what the operator means to promote: publish it
        # (refused when it differs from what is published under the name), else the published copy stands.
        local = self.adapters_dir / entry.name
        self.publish(AdapterEntry(entry.name, local, read_manifest(local)) if (local / MANIFEST).is_file() else entry)

    def publish(self, entry: AdapterEntry) -> dict[str, str]:
        """Copy the adapter folder's files into the store (inside `_locked`'s transaction). Idempotent."""
        from sqlalchemy import insert, select

        from server.store.models import AdapterBlob, RegistryFile

        assert self._conn is not None, "publish runs inside _locked"
        files = _folder_files(entry.path)
        existing = self.published().get(entry.name)
        if existing is not None:
            if existing != files:
                raise RegistryError(
                    f"adapter {entry.name!r} is already published with other files; published names are immutable "
                    "(every replica would keep serving the old content): save it under a new name"
                )
            return files
        known = set(
            self._conn.execute(select(AdapterBlob.sha256).where(AdapterBlob.sha256.in_(files.values()))).scalars()
        )
        now = datetime.now(UTC)
        for filename, sha in files.items():
            if sha not in known:
                content = (entry.path / filename).read_bytes()
                self._conn.execute(
                    insert(AdapterBlob).values(sha256=sha, size=len(content), content=content, created_at=now)
                )
                known.add(sha)
            self._conn.execute(
                insert(RegistryFile).values(name=entry.name, filename=filename, sha256=sha, published_at=now)
            )
        return files

    def seed_from(self, source: Registry, *, user: str | None = None) -> str | None:
        """Start an empty shared registry from a file registry's active adapter (what a fresh deployment of the
        image serves); does nothing when the shared registry has any history. Returns the seeded name."""
        with self._locked():
            index = self._read_index()
            if index["history"]:
                return None
            name = source.active
            if name is None:
                return None
            entry = source.validate(name)
            last: dict[str, Any] = next((e for e in reversed(source.history) if e.get("name") == name), {})
            self.publish(entry)
            reason = f"seeded from {source.index_path.name}" + (f": {last['reason']}" if last.get("reason") else "")
            self._append(
                index,
                _event("promote", name, None, forced=bool(last.get("forced")), reason=reason, user=user),
            )
        return name
