"""API keys in the store (SQLite and PostgreSQL): the plaintext is returned once and never stored, the
scrypt hash verifies only the right secret, revocation is kept, names stay unique."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from server.auth.keys import KEY_PATTERN, hash_secret, key_digest, parse_key, verify_secret
from server.store.keys import KeyRefused, create_key, find_by_prefix, list_keys, revoke_key

FAST_N = 2**4  # scrypt cost for tests: the format and check are the same at any cost


def test_a_created_key_is_returned_once_and_only_its_hash_is_stored(session: Session, migrated: Engine) -> None:
    created = create_key(session, name="ci", role="classify", scope="acme", hash_n=FAST_N)
    assert KEY_PATTERN.fullmatch(created.key)
    parsed = parse_key(created.key)
    assert parsed is not None and parsed.prefix == created.record.prefix
    assert (created.record.role, created.record.scope, created.record.revoked) == ("classify", "acme", False)
    assert created.key not in repr(created) and parsed.secret not in repr(parsed)
    with migrated.connect() as conn:
        (row,) = conn.execute(text("SELECT name, prefix, secret_hash, role, scope FROM api_keys")).all()
    assert parsed.secret not in str(tuple(row)) and created.key not in str(tuple(row))
    assert row.secret_hash.startswith(f"scrypt${FAST_N}$8$1$")
    assert verify_secret(parsed.secret, row.secret_hash)


def test_the_hash_verifies_only_the_right_secret() -> None:
    stored = hash_secret("s" * 43, FAST_N)
    assert verify_secret("s" * 43, stored)
    assert not verify_secret("s" * 42 + "t", stored)
    assert hash_secret("s" * 43, FAST_N) != stored  # a fresh salt per key
    assert not verify_secret("s" * 43, "scrypt$16$8$1$bad")  # malformed stored values match nothing
    assert not verify_secret("s" * 43, "bcrypt$x")
    with pytest.raises(ValueError, match="power of two"):
        hash_secret("x", 1000)
    assert key_digest("a") != key_digest("b") and len(key_digest("a")) == 64


@pytest.mark.parametrize(
    "text_",
    ["", "trk_short_" + "a" * 43, "trk_abcdefghij_" + "a" * 10, "Bearer trk", "trk_abcdefghij_" + "a" * 300, "x" * 60],
)
def test_text_without_the_shape_of_a_key_is_not_parsed(text_: str) -> None:
    assert parse_key(text_) is None


def test_list_find_and_revoke(session: Session) -> None:
    a = create_key(session, name="a", role="review", hash_n=FAST_N)
    b = create_key(session, name="b", role="admin", hash_n=FAST_N)
    assert [k.name for k in list_keys(session)] == ["a", "b"]
    found = find_by_prefix(session, a.record.prefix)
    assert found is not None and found.id == a.record.id and found.secret_hash
    assert "secret_hash" not in repr(found)
    assert find_by_prefix(session, "AAAAAAAAAA") is None

    revoked = revoke_key(session, "a")
    assert revoked.revoked and revoked.revoked_at is not None
    again = revoke_key(session, "a")  # idempotent: the first revocation time is kept
    assert again.revoked_at == revoked.revoked_at
    found = find_by_prefix(session, a.record.prefix)
    assert found is not None and found.revoked  # kept: audit rows refer to it
    assert [k.name for k in list_keys(session, include_revoked=False)] == [b.record.name]
    with pytest.raises(KeyRefused, match="no key named"):
        revoke_key(session, "nobody")


def test_names_stay_unique_even_after_revocation(session: Session) -> None:
    create_key(session, name="dup", role="classify", hash_n=FAST_N)
    revoke_key(session, "dup")
    with pytest.raises(KeyRefused, match="exists"):
        create_key(session, name="dup", role="classify", hash_n=FAST_N)
    assert len(list_keys(session)) == 1


@pytest.mark.parametrize(
    ("name", "role", "scope"),
    [
        ("", "classify", None),
        (" x", "classify", None),
        ("x", "root", None),
        ("x", "review", ""),
        ("x\n", "admin", None),
    ],
)
def test_bad_names_roles_and_scopes_are_refused(session: Session, name: str, role: str, scope: str | None) -> None:
    with pytest.raises(KeyRefused):
        create_key(session, name=name, role=role, scope=scope, hash_n=FAST_N)  # type: ignore[arg-type]
    assert list_keys(session) == []
