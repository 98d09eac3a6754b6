"""Content hashes of what a serving configuration reads from disk: the base model's folder, an adapter
folder without checksums in its manifest, the prompt templates, and the taxonomy's own content.

The cache namespace follows the bytes, not the names: a base model converted again into the same
folder, a prompt edited without a new version number, or a taxonomy whose definitions changed under
the same version, starts a new namespace instead of serving answers of the old one.

The namespace is computed on every lookup, and hashing a base model takes about a second per GB, so a
file's hash is remembered with its inode, size and modification and change times, and recomputed only
when one of those changes (a rewrite in place moves the change time, a replacement the inode): a
lookup then costs one directory walk and a stat per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path

from server.config import PROJECT_ROOT
from server.registry import sha256_file
from server.taxonomy import Taxonomy

ABSENT = "absent"

_lock = threading.Lock()
# path as given -> (stat key, sha256). Plain strings and os calls: this runs for every lookup.
_file_hashes: dict[str, tuple[tuple[int, int, int, int], str]] = {}


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The file's sha256, rehashed only when its stat says it changed."""
    name = os.fspath(path)
    st = os.stat(name)
    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    with _lock:
        known = _file_hashes.get(name)
    if known is not None and known[0] == key:
        return known[1]
    digest = sha256_file(Path(name))
    with _lock:
        _file_hashes[name] = (key, digest)
    return digest


def _visible_files(folder: str, prefix: str = "") -> list[tuple[str, str]]:
    """(relative name, path) of every file under `folder`, sorted; hidden entries (a download cache) skipped."""
    out: list[tuple[str, str]] = []
    with os.scandir(folder) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                out += _visible_files(entry.path, f"{prefix}{entry.name}/")
            elif entry.is_file():
                out.append((prefix + entry.name, entry.path))
    return out


def path_sha256(path: str | os.PathLike[str]) -> str:
    """A file's sha256, or one hash over a folder's files (relative names and contents); ABSENT when
    nothing is there."""
    name = os.fspath(path)
    if os.path.isfile(name):
        return file_sha256(name)
    if not os.path.isdir(name):
        return ABSENT
    h = hashlib.sha256()
    for rel, full in _visible_files(name):
        h.update(f"{rel}\0{file_sha256(full)}\n".encode())
    return h.hexdigest()


def _local_folder(name: str) -> str | None:
    """The folder a base model name means here, as the loader reads it: a path (absolute, relative to
    the working directory, or to the project), else the Hugging Face cache's snapshot of the id."""
    for candidate in (os.path.expanduser(name), os.path.join(PROJECT_ROOT, name)):
        if os.path.exists(candidate):
            return candidate
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(name, "config.json")  # offline: reads the local cache only
    except Exception:  # noqa: BLE001 - not an id the hub library accepts: no local copy to hash
        return None
    return os.path.dirname(found) if isinstance(found, str) else None


def base_model_hash(name: str) -> str:
    """The content hash of the base model `name` (a folder or a cached hub id); for one with no local
    copy (a remote vLLM server's model) the name is all that is known: "name:<name>"."""
    folder = _local_folder(name)
    return path_sha256(folder) if folder is not None else f"name:{name}"


def prompt_hashes(prompts_dir: Path, prompt_version: str, review_version: str) -> dict[str, str]:
    """sha256 of each template file the engine renders with (classify and review, .jinja and .yaml)."""
    kind, _, version = prompt_version.partition("/")
    review = version if review_version == "auto" else review_version
    out: dict[str, str] = {}
    for k, v in ((kind, version), ("review", review)):
        for suffix in (".jinja", ".yaml"):
            rel = f"{k}/{v}{suffix}"
            out[rel] = path_sha256(os.path.join(prompts_dir, rel))
    return out


@lru_cache(maxsize=32)
def taxonomy_hash(taxonomy: Taxonomy) -> str:
    """Every field, label and definition (the definitions are part of the prompt). Not the file it was
    read from: the same taxonomy in another folder is the same taxonomy. Taxonomies hash by identity,
    so this is computed once per loaded taxonomy."""
    data = asdict(taxonomy)
    data.pop("source", None)
    blob = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()
