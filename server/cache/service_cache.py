"""The result cache as the service uses it: one backend, one namespace per serving configuration
(`server.cache.namespace`: a namespace changes whenever anything that changes an answer does, so an
old configuration's entries simply stop being read and age out).

One backing store (in-process LRU or one Redis connection pool) serves all namespaces; a
`ResultCache` per namespace is a thin view on it, created on first use.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import replace
from typing import Any

from server.cache.entry import CachedAnswer, free_text_fields
from server.cache.keys import normalise_text, text_digest
from server.cache.namespace import engine_namespace
from server.cache.result_cache import CacheHit, ResultCache
from server.cache.store import CacheStore, MemoryStore, RedisStore, redis_client_from_url
from server.config import Settings
from server.engines.base import Engine
from server.fields import FieldSelection
from server.observability import metrics
from server.prompts import TicketInput
from server.results import CACHE_KINDS
from server.store.crypto import KeySource
from server.taxonomy import Taxonomy

log = logging.getLogger(__name__)

MAX_VIEWS = 16  # namespaces kept open (a few per engine across hot swaps)


class ServiceCache:
    def __init__(
        self, settings: Settings, taxonomy: Taxonomy, *, store: CacheStore | None = None, keys: KeySource | None = None
    ) -> None:
        """`keys`: the data keys; entries in Redis are sealed with them (the in-process store holds nothing at rest)."""
        self.settings = settings
        self.taxonomy = taxonomy
        self.enabled = settings.cache.enabled
        self._store: CacheStore | None = None
        if self.enabled:
            if store is not None:
                self._store = store
            elif settings.cache.backend == "redis":
                self._store = RedisStore(redis_client_from_url(settings.cache.redis_url))
            else:
                self._store = MemoryStore(settings.cache.max_entries)
        self._keys = keys if isinstance(self._store, RedisStore) else None
        self._views: OrderedDict[str, ResultCache] = OrderedDict()
        self._retired: dict[str, dict[str, int]] = {kind: {"hits": 0, "misses": 0} for kind in CACHE_KINDS}
        self._lock = threading.Lock()

    def view(self, engine: Engine, fields: FieldSelection = None) -> ResultCache | None:
        """The cache of this engine's serving configuration for answers of these fields (None: every
        field). A subset's answers live apart: a labels-only answer never serves a full request."""
        if self._store is None:
            return None
        namespace = engine_namespace(self.settings, self.taxonomy, engine)
        if fields is not None:
            namespace = f"{namespace}:{'+'.join(fields)}"
        with self._lock:
            cache = self._views.get(namespace)
            if cache is None:
                cache = ResultCache(self.settings.cache, namespace, store=self._store, keys=self._keys)
                self._views[namespace] = cache
                while len(self._views) > MAX_VIEWS:
                    _, old = self._views.popitem(last=False)
                    self._retire(old)
            else:
                self._views.move_to_end(namespace)
            return cache

    def get(self, engine: Engine, ticket: TicketInput) -> CacheHit | None:
        """An answer for the fields the ticket asks. A request for a subset also takes a cached full
        answer (deliberately: it holds every asked field, decided the same way; the router trims it),
        never the reverse.

        A near hit is another ticket's answer: only its labels are served. Its free text (product, error
        code, reasoning) describes that ticket and may quote its personal data, so it is nulled here, in
        the one place every lookup passes, and the asked free-text fields are named in `omitted`.
        Decoding them for this ticket would cost about what a miss costs (the free text is most of the
        decoding), so a near hit does not try."""
        cache = self.view(engine, ticket.fields)
        hit = cache.get(ticket) if cache is not None else None
        if hit is None and ticket.fields is not None:
            full = self.view(engine)
            hit = full.get(ticket) if full is not None else None
        if hit is not None and hit.kind == "near":
            hit = self._labels_only(hit, ticket.fields)
        if cache is not None:
            metrics.cache_lookup(hit.kind if hit is not None else None)
        return hit

    def _labels_only(self, hit: CacheHit, fields: FieldSelection) -> CacheHit | None:
        try:
            entry = CachedAnswer.from_json(hit.result).labels_only(self.taxonomy)
        except (KeyError, TypeError, ValueError) as exc:  # an entry of another shape: a miss
            log.warning("ignoring a near-duplicate cache entry of unexpected shape (%s)", type(exc).__name__)
            return None
        omitted = tuple(name for name in free_text_fields(self.taxonomy) if fields is None or name in fields)
        return replace(hit, result=entry.to_json(), omitted=omitted)

    def put(self, engine: Engine, ticket: TicketInput, entry: CachedAnswer) -> None:
        cache = self.view(engine, ticket.fields)
        if cache is not None:
            cache.put(ticket, entry.to_json())

    def forget(self, ticket: TicketInput) -> int:
        """Erase this ticket text's entries from every namespace, old configurations' too (`DELETE
        /v1/tickets/{id}`); how many there were. Backend errors propagate: an erasure must not pass silently."""
        if self._store is None:
            return 0
        return self._store.forget(f"{self.settings.cache.key_prefix}:", f":e:{text_digest(normalise_text(ticket))}")

    def _retire(self, cache: ResultCache) -> None:
        for kind, counts in cache.stats().items():
            for k, v in counts.items():
                self._retired[kind][k] += v

    def stats(self) -> dict[str, Any]:
        with self._lock:
            totals = {kind: dict(counts) for kind, counts in self._retired.items()}
            for cache in self._views.values():
                for kind, counts in cache.stats().items():
                    for k, v in counts.items():
                        totals[kind][k] += v
            namespaces = len(self._views)
        return {
            "enabled": self.enabled,
            "backend": self.settings.cache.backend,
            "near_duplicates": self.settings.cache.near_duplicates,
            "namespaces": namespaces,
            **totals,
        }

    def ping(self) -> bool:
        if self._store is None:
            return False
        try:
            return bool(self._store.ping())
        except Exception:  # noqa: BLE001 - "unreachable" is the answer
            return False

    def close(self) -> None:
        close = getattr(self._store, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001
                log.warning("result cache did not close cleanly", exc_info=True)
