"""Encryption at rest: AES-256-GCM over ticket text, free-text answers, feedback and audit payloads.

Each stored value is an envelope `enc:v1:<key id>:<base64(nonce | ciphertext+tag)>`, so every row names
the key that sealed it and a keyring holding old and new keys reads both (rotation re-encrypts row by
row). The key id is the first 12 hex digits of the key's SHA-256: it identifies a key without revealing it.

The keyring travels with the database engine (`attach`), not with a global, so two stores with two
keyrings can live in one process (tests, migrations between deployments). Columns declared
`EncryptedText` / `EncryptedJSON` seal on write when their engine has a keyring and read both sealed
and plain values (rows written before encryption was turned on, or with `storage.encrypt: false`).
A sealed value read without the keyring is an error, never ciphertext handed on as text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import JSON, Dialect, Text, TypeDecorator
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

if TYPE_CHECKING:
    from sqlalchemy import Engine as DbEngine

    from server.config import StorageSettings

__all__ = [
    "PREFIX",
    "DataKeyError",
    "EncryptedJSON",
    "EncryptedText",
    "KeyFile",
    "KeySource",
    "Keyring",
    "attach",
    "is_sealed",
    "key_id_of",
    "current_keyring",
    "key_source_of",
    "keyring_of",
    "load_key_source",
    "load_keyring",
    "write_keyring",
]

log = logging.getLogger(__name__)

PREFIX = "enc:v1:"
NONCE_BYTES = 12
KEY_BYTES = 32
_DIALECT_ATTR = "triage_keyring"


class DataKeyError(RuntimeError):
    """A sealed value cannot be read: no keyring, an unknown key id, or a tampered ciphertext."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:12]


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def key_id_of(value: object) -> str | None:
    """The key id a stored value was sealed with; None for a plain value."""
    if not is_sealed(value):
        return None
    assert isinstance(value, str)
    return value[len(PREFIX) :].split(":", 1)[0]


@dataclass(frozen=True)
class Keyring:
    """Data keys by id; `current` seals, every key opens."""

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise ValueError("the current key is not in the keyring")
        for kid, key in self.keys.items():
            if len(key) != KEY_BYTES or key_id(key) != kid:
                raise ValueError(f"data key {kid}: not a {KEY_BYTES}-byte key with that id")

    @classmethod
    def of(cls, keys: Sequence[bytes]) -> Keyring:
        """The first key is current."""
        if not keys:
            raise ValueError("a keyring needs at least one key")
        return cls({key_id(k): k for k in keys}, key_id(keys[0]))

    @classmethod
    def generate(cls) -> Keyring:
        return cls.of([AESGCM.generate_key(bit_length=256)])

    def with_new_key(self) -> Keyring:
        """A new current key; the old ones stay to open what they sealed."""
        key = AESGCM.generate_key(bit_length=256)
        return Keyring({key_id(key): key, **self.keys}, key_id(key))

    def seal(self, text: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.keys[self.current]).encrypt(nonce, text.encode("utf-8"), self._aad(self.current))
        return f"{PREFIX}{self.current}:{base64.b64encode(nonce + sealed).decode('ascii')}"

    def open(self, value: str) -> str:
        if not is_sealed(value):
            return value
        kid, _, body = value[len(PREFIX) :].partition(":")
        key = self.keys.get(kid)
        if key is None:
            raise DataKeyError(f"value sealed with data key {kid}, which is not in the keyring")
        raw = base64.b64decode(body)
        try:
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], self._aad(kid)).decode("utf-8")
        except InvalidTag as exc:
            raise DataKeyError(f"value sealed with data key {kid} failed authentication (tampered?)") from exc

    @staticmethod
    def _aad(kid: str) -> bytes:
        return f"triage:{kid}".encode()

    def encode(self) -> str:
        """The keyring file's text: one base64 key per line, the current one first."""
        ordered = [self.current, *(k for k in self.keys if k != self.current)]
        return "".join(base64.b64encode(self.keys[k]).decode("ascii") + "\n" for k in ordered)


def _decode_keys(text: str, source: str) -> Keyring:
    keys: list[bytes] = []
    for part in text.replace(",", "\n").splitlines():
        part = part.strip()
        if not part or part.startswith("#"):
            continue
        try:
            key = base64.b64decode(part, validate=True)
        except ValueError as exc:
            raise ValueError(f"{source}: a data key is not base64") from exc
        if len(key) != KEY_BYTES:
            raise ValueError(f"{source}: a data key is {len(key)} bytes, not {KEY_BYTES}")
        keys.append(key)
    if not keys:
        raise ValueError(f"{source}: no data key")
    return Keyring.of(keys)


def write_keyring(path: Path, keyring: Keyring) -> None:
    """Write atomically with mode 0600 (owner only) from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(keyring.encode())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_keyring(settings: StorageSettings, *, create: bool = True) -> Keyring | None:
    """The configured keyring; None when encryption is off. With no key configured and no key file, a new
    key is generated into data_key_file (mode 0600) when `create`, with a log line asking for a backup."""
    if not settings.encrypt:
        return None
    if settings.data_key is not None:
        return _decode_keys(settings.data_key.get_secret_value(), "storage.data_key")
    path = settings.data_key_file
    if path.is_file():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("data key file %s is readable by others (mode %o): chmod 600 it", path, mode)
        return _decode_keys(path.read_text(), str(path))
    if not create:
        raise DataKeyError(f"no data key: {path} does not exist and storage.data_key is not set")
    keyring = Keyring.generate()
    write_keyring(path, keyring)
    log.warning(
        "generated a new data key %s in %s (mode 0600): BACK IT UP; without it the stored tickets cannot be read",
        keyring.current,
        path,
    )
    return keyring


class KeyFile:
    """A keyring read from `storage.data_key_file` and read again when the file changes (checked at most every
    `check_every_s`), so a running server picks up `triage keys rotate-data-key` without a restart: it opens the
    re-sealed rows and seals new ones with the new key."""

    def __init__(self, path: Path, keyring: Keyring, *, check_every_s: float = 2.0) -> None:
        self.path = path
        self._keyring = keyring
        self._check_every_s = check_every_s
        self._checked_at = time.monotonic()
        self._mtime = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> int | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def current(self, *, force: bool = False) -> Keyring:
        now = time.monotonic()
        if not force and now - self._checked_at < self._check_every_s:
            return self._keyring
        with self._lock:
            self._checked_at = now
            mtime = self._stat()
            if mtime is not None and (force or mtime != self._mtime):
                try:
                    keyring = _decode_keys(self.path.read_text(), str(self.path))
                except (OSError, ValueError) as exc:  # a half-edited file: keep the keys we have
                    log.error("data key file %s could not be read again (%s): keeping the loaded keys", self.path, exc)
                else:
                    if keyring.current != self._keyring.current:
                        log.warning("data key file %s changed: sealing with key %s now", self.path, keyring.current)
                    self._keyring = keyring
                self._mtime = mtime
            return self._keyring


KeySource = Keyring | KeyFile


def load_key_source(settings: StorageSettings, *, create: bool = True) -> KeySource | None:
    """`load_keyring`, watched for changes when the keys come from the key file."""
    keyring = load_keyring(settings, create=create)
    if keyring is None or settings.data_key is not None:
        return keyring
    return KeyFile(settings.data_key_file, keyring)


def attach(db_engine: DbEngine, keys: KeySource | None) -> DbEngine:
    """Seal this engine's encrypted columns with `keys` (None: write plain, read plain only)."""
    setattr(db_engine.dialect, _DIALECT_ATTR, keys)
    return db_engine


def key_source_of(db_engine: DbEngine) -> KeySource | None:
    """The keys attached to this engine (to seal other stores with the same keys: the result cache)."""
    keys: KeySource | None = getattr(db_engine.dialect, _DIALECT_ATTR, None)
    return keys


def current_keyring(keys: KeySource | None) -> Keyring | None:
    return keys.current() if isinstance(keys, KeyFile) else keys


def keyring_of(dialect: Dialect) -> Keyring | None:
    return current_keyring(getattr(dialect, _DIALECT_ATTR, None))


def _open(value: str, dialect: Dialect) -> str:
    if not is_sealed(value):
        return value
    keyring = keyring_of(dialect)
    if keyring is None:
        raise DataKeyError("this store holds encrypted values but no data key was configured (storage.data_key_file)")
    keys = getattr(dialect, _DIALECT_ATTR, None)
    if isinstance(keys, KeyFile) and key_id_of(value) not in keyring.keys:
        keyring = keys.current(force=True)  # sealed by a newer key than ours: the file may have been rotated
    return keyring.open(value)


class EncryptedText(TypeDecorator[str]):
    """Text sealed with the engine's keyring."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        keyring = keyring_of(dialect)
        if value is None or keyring is None or is_sealed(value):
            return value
        return keyring.seal(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else _open(value, dialect)


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON value sealed with the engine's keyring: stored as a JSON string holding the envelope, so the
    column keeps its JSON type (JSONB on PostgreSQL) and rows written before encryption read unchanged."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=True))
        return dialect.type_descriptor(JSON(none_as_null=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        keyring = keyring_of(dialect)
        if value is None or keyring is None or is_sealed(value):
            return value
        return keyring.seal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if is_sealed(value):
            return json.loads(_open(value, dialect))
        return value
