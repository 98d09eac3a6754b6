"""Result cache: exact and near-duplicate (MinHash LSH) reuse of classifications, in-process or Redis,
one namespace per serving configuration."""

from server.cache.entry import CachedAnswer
from server.cache.keys import cache_namespace, normalise_text
from server.cache.lsh import lsh_params
from server.cache.namespace import ServingIdentity, engine_namespace
from server.cache.result_cache import CacheHit, ResultCache
from server.cache.service_cache import ServiceCache
from server.cache.store import CacheStore, MemoryStore, RedisStore

__all__ = [
    "CacheHit",
    "CacheStore",
    "CachedAnswer",
    "MemoryStore",
    "RedisStore",
    "ResultCache",
    "ServiceCache",
    "ServingIdentity",
    "cache_namespace",
    "engine_namespace",
    "lsh_params",
    "normalise_text",
]
