"""Answers already computed for the same ticket (exact) or nearly the same ticket (MinHash LSH).

Layout under the namespace prefix `{key_prefix}:{namespace}:`:
    e:<sha256 of normalised text>  -> JSON {"r": result, "s": signature, "t": signer tag}
    b:<tag>:<band>:<band hash>     -> set of entry ids (the sha256 above)
One entry serves both lookups: the exact key is the entry id the buckets point at.

The cache must never break classification: backend failures are logged and read as misses, and
after one the backend is left alone for `retry_after_s` so a dead Redis costs one timeout, not
one per ticket.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import redis

from server.cache.keys import normalise_text, text_digest
from server.cache.lsh import Signature, Signer
from server.cache.store import CacheStore, MemoryStore, RedisStore, redis_client_from_url
from server.config import CacheSettings
from server.prompts import TicketInput
from server.results import CacheKind
from server.store.crypto import DataKeyError, KeySource, current_keyring, is_sealed

log = logging.getLogger(__name__)

# Reading candidates costs one comparison each; a bucket crowded by templated tickets must not
# turn a lookup into a scan. The candidates sharing the most bands (the likeliest matches) go first.
MAX_NEAR_CANDIDATES = 64
DEFAULT_RETRY_AFTER_S = 5.0


@dataclass(frozen=True)
class CacheHit:
    kind: CacheKind
    result: dict[str, Any]
    similarity: float  # 1.0 for exact
    # Asked fields left null because the hit is another ticket's answer (`ServiceCache.get`: a near hit
    # reuses labels only); the API lists them as `cache_omitted`.
    omitted: tuple[str, ...] = ()


class ResultCache:
    """Thread-safe: the stores lock (memory) or pool connections (Redis); counters have their own lock.

    `store` is injectable so tests can put two namespaces on one in-process store; otherwise the
    backend follows `settings.backend`. A disabled cache never hits, stores nothing and pings False.
    """

    def __init__(
        self,
        settings: CacheSettings,
        namespace: str,
        *,
        redis_client: redis.Redis | None = None,
        store: CacheStore | None = None,
        retry_after_s: float = DEFAULT_RETRY_AFTER_S,
        keys: KeySource | None = None,
    ) -> None:
        """`keys`: seal every entry with the data keyring (the answers hold free text; Redis may persist it)."""
        self.settings = settings
        self._keys = keys
        self.namespace = namespace
        self._prefix = f"{settings.key_prefix}:{namespace}:"
        self._retry_after_s = retry_after_s
        self._store: CacheStore | None = None
        if settings.enabled:
            if store is not None:
                self._store = store
            elif settings.backend == "redis":
                self._store = RedisStore(
                    redis_client if redis_client is not None else redis_client_from_url(settings.redis_url)
                )
            else:
                self._store = MemoryStore(settings.max_entries)
        self._signer = (
            Signer(settings.near_threshold, settings.num_perm, settings.shingle_size)
            if settings.enabled and settings.near_duplicates
            else None
        )
        self._lock = threading.Lock()
        self._counts = {"exact": {"hits": 0, "misses": 0}, "near": {"hits": 0, "misses": 0}}
        self._skip_until = 0.0

    # -- public -------------------------------------------------------------------------------

    def get(self, ticket: TicketInput) -> CacheHit | None:
        """Exact match first, then (if enabled and the text is long enough) the most similar
        near-duplicate whose estimated Jaccard similarity reaches near_threshold."""
        store = self._store
        if store is None:
            return None
        text = normalise_text(ticket)
        entry_id = text_digest(text)
        if self._backend_resting():
            self._count("exact", hit=False)
            return None
        try:
            raw = store.get(self._entry_key(entry_id))
        except Exception as exc:  # noqa: BLE001 - any backend failure is a miss, never an error
            self._backend_failed("get", exc)
            self._count("exact", hit=False)
            return None
        decoded = self._decode(raw) if raw is not None else None
        result = decoded["r"] if decoded is not None else None
        if result is not None:
            self._count("exact", hit=True)
            return CacheHit("exact", result, 1.0)
        self._count("exact", hit=False)

        signature = self._signer.signature(text) if self._signer is not None else None
        if signature is None:
            return None
        try:
            hit = self._near(store, signature)
        except Exception as exc:  # noqa: BLE001
            self._backend_failed("get", exc)
            hit = None
        self._count("near", hit=hit is not None)
        return hit

    def put(self, ticket: TicketInput, result: dict[str, Any]) -> None:
        store = self._store
        if store is None or self._backend_resting():
            return
        text = normalise_text(ticket)
        entry_id = text_digest(text)
        signature = self._signer.signature(text) if self._signer is not None else None
        entry: dict[str, Any] = {"r": result}
        buckets: list[str] = []
        if signature is not None and self._signer is not None:
            entry["s"] = signature.encode()
            entry["t"] = self._signer.tag
            buckets = [self._bucket_key(k) for k in self._signer.band_keys(signature)]
        try:
            value = self._seal(json.dumps(entry, separators=(",", ":"), ensure_ascii=False))
        except (TypeError, ValueError) as exc:
            log.warning("result cache: result not JSON-serialisable, not cached: %s", exc)
            return
        try:
            store.put(self._entry_key(entry_id), value, ttl_s=self.settings.ttl_s, member=entry_id, buckets=buckets)
        except Exception as exc:  # noqa: BLE001
            self._backend_failed("put", exc)

    def stats(self) -> dict[str, dict[str, int]]:
        """Counts of this process's lookups (not shared between replicas on one Redis)."""
        with self._lock:
            return {kind: dict(counts) for kind, counts in self._counts.items()}

    def clear(self) -> None:
        """Drop this namespace's entries and buckets; other namespaces keep theirs. Errors propagate."""
        if self._store is not None:
            self._store.clear(self._prefix)

    def ping(self) -> bool:
        if self._store is None:
            return False
        try:
            return self._store.ping()
        except Exception:  # noqa: BLE001 - "unreachable" is the answer, not an error
            return False

    def close(self) -> None:
        close = getattr(self._store, "close", None)
        if close is not None:
            close()

    # -- internals ----------------------------------------------------------------------------

    def _entry_key(self, entry_id: str) -> str:
        return f"{self._prefix}e:{entry_id}"

    def _bucket_key(self, band_key: str) -> str:
        return f"{self._prefix}b:{band_key}"

    def _near(self, store: CacheStore, signature: Signature) -> CacheHit | None:
        assert self._signer is not None
        bucket_keys = [self._bucket_key(k) for k in self._signer.band_keys(signature)]
        shared_bands: Counter[str] = Counter()
        for ids in store.members(bucket_keys):
            shared_bands.update(ids)
        if not shared_bands:
            return None
        # Ties broken by id so the same lookup always reads the same candidates.
        ranked = sorted(shared_bands.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_NEAR_CANDIDATES]
        candidate_ids = [entry_id for entry_id, _ in ranked]
        raws = store.get_many([self._entry_key(i) for i in candidate_ids])
        best: tuple[float, str, dict[str, Any]] | None = None
        stale: list[str] = []
        for entry_id, raw in zip(candidate_ids, raws):
            if raw is None:
                stale.append(entry_id)
                continue
            entry = self._decode(raw)
            if entry is None or entry.get("t") != self._signer.tag or "s" not in entry:
                continue
            similarity = signature.similarity(Signature.decode(entry["s"]))
            if similarity >= self.settings.near_threshold and (best is None or (similarity, entry_id) > best[:2]):
                best = (similarity, entry_id, entry["r"])
        if stale:
            store.remove_members(bucket_keys, stale)
        return CacheHit("near", best[2], best[0]) if best is not None else None

    def _seal(self, value: str) -> str:
        keyring = current_keyring(self._keys)
        return keyring.seal(value) if keyring is not None else value

    def _decode(self, raw: str) -> dict[str, Any] | None:
        """An entry's JSON, opened with the keyring when sealed; None (a miss) when it cannot be read: sealed
        under a key this process lacks, or sealed while this process has no keys."""
        try:
            if is_sealed(raw):
                keyring = current_keyring(self._keys)
                if keyring is None:
                    raise DataKeyError("a sealed cache entry and no data key")
                raw = keyring.open(raw)
            entry = json.loads(raw)
        except (DataKeyError, ValueError) as exc:
            log.warning("result cache: unreadable entry ignored (%s)", exc)
            return None
        return entry if isinstance(entry, dict) else None

    def _count(self, kind: str, *, hit: bool) -> None:
        with self._lock:
            self._counts[kind]["hits" if hit else "misses"] += 1

    def _backend_resting(self) -> bool:
        with self._lock:
            return time.monotonic() < self._skip_until

    def _backend_failed(self, op: str, exc: Exception) -> None:
        with self._lock:
            self._skip_until = time.monotonic() + self._retry_after_s
        log.warning(
            "result cache %s failed (%s: %s); treating as a miss and skipping the backend for %.1f s",
            op,
            type(exc).__name__,
            exc,
            self._retry_after_s,
        )
