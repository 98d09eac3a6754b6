"""Result cache: exact and near-duplicate (MinHash LSH) reuse of classifications, in-process or Redis."""

from server.cache.keys import cache_namespace, normalise_text
from server.cache.lsh import lsh_params
from server.cache.result_cache import CacheHit, ResultCache
from server.cache.store import CacheStore, MemoryStore, RedisStore

__all__ = [
    "CacheHit",
    "CacheStore",
    "MemoryStore",
    "RedisStore",
    "ResultCache",
    "cache_namespace",
    "lsh_params",
    "normalise_text",
]
