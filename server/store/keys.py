"""API keys in the store: create (the plaintext is returned once and never stored), list, revoke, find.

Revoked keys stay (audit rows refer to their ids) and their names stay taken, so a name in the audit log
means one key forever."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from server.auth.keys import generate_key, hash_secret
from server.config import Role
from server.store.models import ROLES, ApiKey, utcnow

__all__ = ["CreatedKey", "KeyRefused", "KeyRecord", "create_key", "find_by_prefix", "list_keys", "revoke_key"]

NAME_MAX = 128
SCOPE_MAX = 128
# Prefixes are 10 random letters/digits (62**10): a collision is a retry, not an error.
PREFIX_TRIES = 5


class KeyRefused(ValueError):
    """A key operation refused: bad name/role/scope, a name taken, no such key."""


@dataclass(frozen=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    role: Role
    scope: str | None
    created_at: datetime
    revoked_at: datetime | None
    secret_hash: str = field(repr=False)  # never listed or printed

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @classmethod
    def of(cls, row: ApiKey) -> KeyRecord:
        role: Role = row.role  # type: ignore[assignment]  # the CHECK constraint keeps it a Role
        return cls(row.id, row.name, row.prefix, role, row.scope, row.created_at, row.revoked_at, row.secret_hash)


@dataclass(frozen=True)
class CreatedKey:
    record: KeyRecord
    key: str = field(repr=False)  # the full key: shown once to whoever created it


def _check(name: str, role: str, scope: str | None) -> None:
    if not name or len(name) > NAME_MAX or not name.isprintable() or name != name.strip():
        raise KeyRefused(f"key name must be 1-{NAME_MAX} printable characters without surrounding spaces")
    if role not in ROLES:
        raise KeyRefused(f"role {role!r} is not one of {', '.join(ROLES)}")
    if scope is not None and (not scope or len(scope) > SCOPE_MAX or not scope.isprintable()):
        raise KeyRefused(f"scope must be 1-{SCOPE_MAX} printable characters")


def create_key(session: Session, *, name: str, role: Role, scope: str | None = None, hash_n: int) -> CreatedKey:
    """A new key of `role` (limited to tickets of `scope` when given); its full text is in the result only."""
    _check(name, role, scope)
    if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise KeyRefused(f"a key named {name!r} exists (revoked keys keep their names)")
    for attempt in range(PREFIX_TRIES):
        text, parsed = generate_key()
        row = ApiKey(
            name=name,
            prefix=parsed.prefix,
            secret_hash=hash_secret(parsed.secret, hash_n),
            role=role,
            scope=scope,
            created_at=utcnow(),
        )
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            # A concurrent create of the same name, or (62**-10) the same prefix: retry only the latter.
            if session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
                raise KeyRefused(f"a key named {name!r} exists") from None
            if attempt == PREFIX_TRIES - 1:
                raise
            continue
        return CreatedKey(KeyRecord.of(row), text)
    raise AssertionError("unreachable")


def list_keys(session: Session, *, include_revoked: bool = True) -> list[KeyRecord]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return [KeyRecord.of(row) for row in session.scalars(query)]


def revoke_key(session: Session, name: str) -> KeyRecord:
    """Revoke the key named `name` (refused from the next request on); revoking it again changes nothing."""
    row = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise KeyRefused(f"no key named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        try:
            session.commit()
        except Exception:
            session.rollback()
            raise
    return KeyRecord.of(row)


def find_by_prefix(session: Session, prefix: str) -> KeyRecord | None:
    """The key whose public prefix this is (one indexed SELECT: `prefix` is unique), revoked or not."""
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    return KeyRecord.of(row) if row is not None else None
