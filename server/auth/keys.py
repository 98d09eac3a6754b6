"""API key material: `trk_<prefix>_<secret>`, the secret's slow hash, and its constant-time check.

The prefix is public (it finds the key's row and shows in `triage keys list`); only an scrypt hash of the
secret is stored, as a self-describing string `scrypt$<n>$<r>$<p>$<salt>$<hash>` (base64url, no padding),
so the cost can be raised later without breaking the keys already issued."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

__all__ = ["KEY_PATTERN", "ParsedKey", "generate_key", "hash_secret", "key_digest", "parse_key", "verify_secret"]

PREFIX_LENGTH = 10
SECRET_BYTES = 32  # 256 bits of entropy; token_urlsafe encodes them in 43 characters
# Letters and digits only: "_" separates the parts and url-safe base64 would bring its own "_" and "-".
_PREFIX_ALPHABET = string.ascii_letters + string.digits
# The secret's length is bounded so a megabyte-long header is refused by the regex, not hashed.
KEY_PATTERN = re.compile(rf"trk_([A-Za-z0-9]{{{PREFIX_LENGTH}}})_([A-Za-z0-9_-]{{43,128}})")

SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32


@dataclass(frozen=True)
class ParsedKey:
    prefix: str
    secret: str

    def __repr__(self) -> str:  # never print the secret by accident (logs, tracebacks)
        return f"ParsedKey(prefix={self.prefix!r}, secret=<hidden>)"


def generate_key() -> tuple[str, ParsedKey]:
    """A new key: its full text (shown once) and its parts."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = secrets.token_urlsafe(SECRET_BYTES)
    return f"trk_{prefix}_{secret}", ParsedKey(prefix, secret)


def parse_key(text: str) -> ParsedKey | None:
    """The parts of a presented key, or None when it does not have the shape of one."""
    match = KEY_PATTERN.fullmatch(text.strip())
    return ParsedKey(match.group(1), match.group(2)) if match else None


def key_digest(text: str) -> str:
    """A fast digest of a whole presented key: the cache of verified keys is keyed by it, never by the key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem: scrypt needs 128 * n * r * p bytes; OpenSSL's default cap (32 MiB) would refuse n = 2**15.
    return hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r * p + 2**20, dklen=HASH_BYTES
    )


def hash_secret(secret: str, n: int) -> str:
    """The stored form of a secret: scrypt with a fresh random salt, cost `n` (a power of two, `auth.hash_n`)."""
    if n < 2 or n & (n - 1):
        raise ValueError(f"scrypt cost n={n} must be a power of two >= 2")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(secret, salt, n, SCRYPT_R, SCRYPT_P)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether `secret` matches a stored hash; a malformed stored value matches nothing."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = _scrypt(secret, _unb64(salt), int(n), int(r), int(p))
    except (ValueError, binascii.Error, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)
