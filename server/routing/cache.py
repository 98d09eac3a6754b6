"""The result cache as the service uses it: one backend, one namespace per serving configuration.

A cached answer is only valid for the configuration that produced it, so the namespace is a hash of
everything that changes an answer: the engine's base model and adapter, the prompt version, the
taxonomy, the decoding and prompt budgets and the routing thresholds (which decide what counts as
a confident, cacheable answer). It is computed from the engine's *current* info on every lookup, so a
hot-swapped adapter starts a new namespace at once (the old entries simply stop being read and age out).

One backing store (in-process LRU or one Redis connection pool) serves all namespaces; a
`ResultCache` per namespace is a thin view on it, created on first use.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

from server.cache import CacheHit, ResultCache, cache_namespace
from server.cache.store import CacheStore, MemoryStore, RedisStore, redis_client_from_url
from server.config import Settings
from server.engines.base import Engine
from server.prompts import TicketInput
from server.taxonomy import Taxonomy

log = logging.getLogger(__name__)

MAX_VIEWS = 16  # namespaces kept open (a few per engine across hot swaps)


def engine_namespace(settings: Settings, taxonomy: Taxonomy, engine: Engine) -> str:
    info = engine.info
    return cache_namespace(
        engine=info.engine,
        base=info.base,
        adapter=info.adapter,
        prompt_version=engine.prompt_version,
        taxonomy=taxonomy.key,
        decoding={
            "max_string_tokens": settings.engine.max_string_tokens,
            "max_reasoning_tokens": settings.engine.max_reasoning_tokens,
            "max_body_tokens": settings.prompt.max_body_tokens,
            "max_history_tokens": settings.prompt.max_history_tokens,
            "review_version": settings.prompt.review_version,
        },
        thresholds={"default": settings.routing.confidence_threshold, **settings.routing.field_thresholds},
    )


class ServiceCache:
    def __init__(self, settings: Settings, taxonomy: Taxonomy, *, store: CacheStore | None = None):
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
        self._views: OrderedDict[str, ResultCache] = OrderedDict()
        self._retired = {"exact": {"hits": 0, "misses": 0}, "near": {"hits": 0, "misses": 0}}
        self._lock = threading.Lock()

    def view(self, engine: Engine) -> ResultCache | None:
        if self._store is None:
            return None
        namespace = engine_namespace(self.settings, self.taxonomy, engine)
        with self._lock:
            cache = self._views.get(namespace)
            if cache is None:
                cache = ResultCache(self.settings.cache, namespace, store=self._store)
                self._views[namespace] = cache
                while len(self._views) > MAX_VIEWS:
                    _, old = self._views.popitem(last=False)
                    self._retire(old)
            else:
                self._views.move_to_end(namespace)
            return cache

    def get(self, engine: Engine, ticket: TicketInput) -> CacheHit | None:
        cache = self.view(engine)
        return cache.get(ticket) if cache is not None else None

    def put(self, engine: Engine, ticket: TicketInput, result: dict[str, Any]) -> None:
        cache = self.view(engine)
        if cache is not None:
            cache.put(ticket, result)

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
