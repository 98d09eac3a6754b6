"""The two places cached answers can live, behind one small interface.

The result cache needs only: string values with a TTL (entries), and sets of entry ids (LSH
buckets) that expire too. Keys arrive fully qualified (namespace included), so a store never
needs to know about namespaces except to clear one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# A cache lookup must cost far less than a classification, so a slow or absent Redis gives up
# quickly instead of waiting out redis-py's defaults (5 s timeouts, 10 retries with backoff).
REDIS_SOCKET_TIMEOUT_S = 0.5
REDIS_CONNECT_TIMEOUT_S = 0.5
REDIS_RETRIES = 1
_CLEAR_BATCH = 500


class CacheStore(Protocol):
    def get(self, key: str) -> str | None: ...
    def get_many(self, keys: Sequence[str]) -> list[str | None]: ...
    def members(self, bucket_keys: Sequence[str]) -> list[set[str]]:
        """The entry ids in each bucket, in the order of `bucket_keys`."""
        ...

    def put(self, key: str, value: str, *, ttl_s: float, member: str = "", buckets: Sequence[str] = ()) -> None:
        """Store an entry and (when buckets are given) add `member` to each bucket; all expire after ttl_s."""
        ...

    def remove_members(self, bucket_keys: Sequence[str], members: Sequence[str]) -> None: ...
    def clear(self, prefix: str) -> None: ...
    def forget(self, prefix: str, suffix: str) -> int:
        """Delete the entries whose key starts with `prefix` and ends with `suffix`; how many there were."""
        ...

    def ping(self) -> bool: ...


@dataclass
class _MemoryEntry:
    value: str
    expires_at: float
    member: str
    buckets: tuple[str, ...]


class MemoryStore:
    """In-process LRU with expiry times.

    Bucket memberships are tied to their entry and removed with it (eviction or expiry), so the
    buckets can never outgrow `max_entries` entries. Expired entries are dropped when read;
    until then they only occupy LRU slots, which eviction reclaims first as they are never touched.
    """

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _MemoryEntry] = OrderedDict()
        self._buckets: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _live(self, key: str, now: float) -> _MemoryEntry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        for bucket in entry.buckets:
            ids = self._buckets.get(bucket)
            if ids is not None:
                ids.discard(entry.member)
                if not ids:
                    del self._buckets[bucket]

    def get(self, key: str) -> str | None:
        return self.get_many([key])[0]

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        with self._lock:
            now = self._clock()
            found = [self._live(k, now) for k in keys]
            return [e.value if e is not None else None for e in found]

    def members(self, bucket_keys: Sequence[str]) -> list[set[str]]:
        with self._lock:
            return [set(self._buckets.get(b, ())) for b in bucket_keys]

    def put(self, key: str, value: str, *, ttl_s: float, member: str = "", buckets: Sequence[str] = ()) -> None:
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = _MemoryEntry(value, self._clock() + ttl_s, member, tuple(buckets))
            for bucket in buckets:
                self._buckets.setdefault(bucket, set()).add(member)
            while len(self._entries) > self._max_entries:
                self._drop(next(iter(self._entries)))

    def remove_members(self, bucket_keys: Sequence[str], members: Sequence[str]) -> None:
        # Memberships already leave with their entries; nothing can be stale here.
        return None

    def clear(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k.startswith(prefix)]:
                self._drop(key)
            for bucket in [b for b in self._buckets if b.startswith(prefix)]:
                del self._buckets[bucket]

    def forget(self, prefix: str, suffix: str) -> int:
        with self._lock:
            keys = [k for k in self._entries if k.startswith(prefix) and k.endswith(suffix)]
            for key in keys:
                self._drop(key)
            return len(keys)

    def ping(self) -> bool:
        return True


def redis_client_from_url(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), REDIS_RETRIES),
        decode_responses=True,
    )


def _text(value: Any) -> str:
    # An injected client may not decode responses.
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    """Entries are plain string keys with PX; buckets are sets whose expiry is refreshed on every
    insert, so a bucket lives as long as its newest member. Members whose entry has expired are
    pruned when a lookup notices them. The redis client is thread-safe (connection pool)."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client

    def get(self, key: str) -> str | None:
        value = self._client.get(key)
        return None if value is None else _text(value)

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        return [None if v is None else _text(v) for v in self._client.mget(list(keys))]

    def members(self, bucket_keys: Sequence[str]) -> list[set[str]]:
        pipe = self._client.pipeline(transaction=False)
        for bucket in bucket_keys:
            pipe.smembers(bucket)
        return [{_text(m) for m in ids} for ids in pipe.execute()]

    def put(self, key: str, value: str, *, ttl_s: float, member: str = "", buckets: Sequence[str] = ()) -> None:
        ttl_ms = max(1, round(ttl_s * 1000))
        # MULTI/EXEC: a reader never sees bucket memberships without the entry's TTL'd state.
        pipe = self._client.pipeline(transaction=True)
        pipe.set(key, value, px=ttl_ms)
        for bucket in buckets:
            pipe.sadd(bucket, member)
            pipe.pexpire(bucket, ttl_ms)
        pipe.execute()

    def remove_members(self, bucket_keys: Sequence[str], members: Sequence[str]) -> None:
        if not members:
            return
        pipe = self._client.pipeline(transaction=False)
        for bucket in bucket_keys:
            pipe.srem(bucket, *members)
        pipe.execute()

    def clear(self, prefix: str) -> None:
        batch: list[Any] = []
        for key in self._client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
            batch.append(key)
            if len(batch) >= _CLEAR_BATCH:
                self._client.unlink(*batch)
                batch = []
        if batch:
            self._client.unlink(*batch)

    def forget(self, prefix: str, suffix: str) -> int:
        # Bucket memberships of a deleted entry are pruned by the next lookup that meets them.
        keys = list(self._client.scan_iter(match=_glob_escape(prefix) + "*" + _glob_escape(suffix), count=1000))
        return int(self._client.unlink(*keys)) if keys else 0

    def ping(self) -> bool:
        return bool(self._client.ping())

    def close(self) -> None:
        self._client.close()
