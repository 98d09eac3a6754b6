"""ResultCache behaviour, each test on the in-process store and on a real Redis.

Redis tests use a fresh key prefix per test and delete only their own keys afterwards: the server
is shared, so no FLUSHDB. Redis is required (CI starts it); if it is down those tests fail and say so.
"""

from __future__ import annotations

import logging
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.cache import CacheHit, MemoryStore, ResultCache
from server.cache.store import redis_client_from_url
from server.config import CacheSettings
from server.prompts import TicketInput

REDIS_URL = "redis://127.0.0.1:6379/0"
WORDS = (
    "account login password reset invoice billing charge refund printer wireless driver update "
    "error message screen crash dashboard report export email notification subscription plan "
    "upgrade downgrade license key server timeout connection network slow page button click "
    "customer order shipping delivery tracking address payment card declined bank transfer "
    "mobile app android iphone sync calendar contacts backup restore data file upload download"
).split()

MakeCache = Callable[..., ResultCache]


def long_ticket(seed: int, n_words: int = 400) -> TicketInput:
    rng = random.Random(seed)
    body = " ".join(rng.choice(WORDS) for _ in range(n_words))
    return TicketInput(f"Problem report {seed}", body)


def edit_words(ticket: TicketInput, positions: tuple[int, ...]) -> TicketInput:
    words = ticket.body.split()
    for p in positions:
        words[p] = "zzz" + words[p]
    return TicketInput(ticket.subject, " ".join(words), ticket.previous_interactions)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def key_prefix() -> str:
    return f"triage-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def admin(backend: str, key_prefix: str) -> Iterator[redis.Redis | None]:
    """A plain client for inspecting and cleaning this test's keys (None on the memory backend)."""
    if backend != "redis":
        yield None
        return
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.fail(
            f"Redis not reachable at {REDIS_URL} ({exc}); the redis cache tests need a running Redis", pytrace=False
        )
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=f"{key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def make_cache(backend: str, key_prefix: str, admin: redis.Redis | None) -> Iterator[MakeCache]:
    """Caches of one test share a backend, as replicas share a Redis: one MemoryStore, or the server."""
    shared_memory = MemoryStore(max_entries=10_000)
    made: list[ResultCache] = []

    def make(namespace: str = "ns1", **overrides: Any) -> ResultCache:
        settings = CacheSettings(backend=backend, redis_url=REDIS_URL, key_prefix=key_prefix, **overrides)
        cache = ResultCache(settings, namespace, store=shared_memory if backend == "memory" else None)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


RESULT = {"category": "Technical", "priority": "High", "extracted_info": {"sentiment": "negative"}}


def test_exact_hit_after_put(make_cache: MakeCache) -> None:
    cache = make_cache()
    ticket = TicketInput("Printer offline", "My printer shows offline since the update.", ("We asked you to reboot.",))
    assert cache.get(ticket) is None
    cache.put(ticket, RESULT)
    assert cache.get(ticket) == CacheHit("exact", RESULT, 1.0)
    # History is part of the prompt, so a different history is a different ticket.
    assert cache.get(TicketInput(ticket.subject, ticket.body)) is None


def test_case_and_whitespace_variants_hit_exactly(make_cache: MakeCache) -> None:
    cache = make_cache()
    cache.put(TicketInput("Printer offline", "My printer shows offline since the update."), RESULT)
    hit = cache.get(TicketInput("  PRINTER   Offline\t", "my Printer shows\n\noffline since   the UPDATE. "))
    assert hit is not None and hit.kind == "exact" and hit.result == RESULT


def test_near_duplicate_hit(make_cache: MakeCache) -> None:
    cache = make_cache()
    original = long_ticket(1)
    cache.put(original, RESULT)
    hit = cache.get(edit_words(original, (100, 250)))
    assert hit is not None
    assert hit.kind == "near"
    assert cache.settings.near_threshold <= hit.similarity < 1.0
    assert hit.result == RESULT
    assert cache.stats()["near"] == {"hits": 1, "misses": 0}


def test_near_hit_returns_most_similar(make_cache: MakeCache) -> None:
    cache = make_cache(near_threshold=0.8)
    original = long_ticket(2)
    close = edit_words(original, (10,))
    farther = edit_words(original, (10, 120, 240, 360))
    cache.put(farther, {"which": "farther"})
    cache.put(close, {"which": "close"})
    hit = cache.get(edit_words(original, (10, 11)))
    assert hit is not None and hit.kind == "near" and hit.result == {"which": "close"}


def test_different_ticket_misses(make_cache: MakeCache) -> None:
    cache = make_cache()
    cache.put(long_ticket(3), RESULT)
    assert cache.get(long_ticket(4)) is None
    assert cache.get(TicketInput("Refund", "Please refund order 1234, it arrived broken.")) is None
    assert cache.stats() == {"exact": {"hits": 0, "misses": 2}, "near": {"hits": 0, "misses": 2}}


def test_namespaces_are_isolated(make_cache: MakeCache) -> None:
    a, b = make_cache("adapter-a"), make_cache("adapter-b")
    ticket = long_ticket(5)
    a.put(ticket, RESULT)
    assert b.get(ticket) is None
    assert b.get(edit_words(ticket, (50,))) is None
    assert a.get(ticket) is not None
    b.put(ticket, {"other": True})
    a.clear()
    assert a.get(ticket) is None
    assert b.get(ticket) == CacheHit("exact", {"other": True}, 1.0)


def test_entries_expire(make_cache: MakeCache, admin: redis.Redis | None, key_prefix: str) -> None:
    cache = make_cache(ttl_s=1.0)
    ticket = long_ticket(6)
    cache.put(ticket, RESULT)
    assert cache.get(ticket) is not None
    if admin is not None:
        keys = list(admin.scan_iter(match=f"{key_prefix}:*"))
        assert keys and all(k.startswith(f"{key_prefix}:ns1:") for k in keys)
        assert len(keys) == 1 + cache._signer.bands  # one entry, one set per band
        assert all(0 < admin.pttl(k) <= 1000 for k in keys)
    time.sleep(1.2)
    assert cache.get(ticket) is None
    assert cache.get(edit_words(ticket, (100, 250))) is None
    if admin is not None:
        assert not list(admin.scan_iter(match=f"{key_prefix}:*"))


def test_stats_count_each_lookup(make_cache: MakeCache) -> None:
    cache = make_cache()
    ticket = long_ticket(7)
    short = TicketInput("hi", "")  # under shingle_size words: exact cache only
    cache.get(ticket)  # exact miss, near miss
    cache.put(ticket, RESULT)
    cache.get(ticket)  # exact hit
    cache.get(edit_words(ticket, (100, 250)))  # exact miss, near hit
    cache.get(short)  # exact miss, no near lookup
    cache.put(short, RESULT)
    assert cache.get(short) is not None  # exact hit
    assert cache.stats() == {"exact": {"hits": 2, "misses": 3}, "near": {"hits": 1, "misses": 1}}


def test_short_text_uses_exact_cache_only(make_cache: MakeCache) -> None:
    cache = make_cache(near_threshold=0.1)
    cache.put(TicketInput("help", "login"), RESULT)
    assert cache.get(TicketInput("help", "login")) is not None
    assert cache.get(TicketInput("help", "logout")) is None
    assert cache.stats()["near"] == {"hits": 0, "misses": 0}


def test_near_duplicates_can_be_turned_off(make_cache: MakeCache) -> None:
    cache = make_cache(near_duplicates=False)
    ticket = long_ticket(8)
    cache.put(ticket, RESULT)
    assert cache.get(ticket) is not None
    assert cache.get(edit_words(ticket, (100,))) is None
    assert cache.stats()["near"] == {"hits": 0, "misses": 0}


def test_concurrent_use(make_cache: MakeCache) -> None:
    cache = make_cache()
    tickets = [long_ticket(100 + i, n_words=60) for i in range(40)]

    def work(i: int) -> bool:
        t = tickets[i % len(tickets)]
        cache.put(t, {"i": i % len(tickets)})
        hit = cache.get(t)
        return hit is not None and hit.result == {"i": i % len(tickets)}

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(work, range(160)))
    assert cache.stats()["exact"]["hits"] == 160


def test_ping(make_cache: MakeCache) -> None:
    assert make_cache().ping() is True


def test_disabled_cache_is_inert(make_cache: MakeCache) -> None:
    cache = make_cache(enabled=False)
    cache.put(long_ticket(9), RESULT)
    assert cache.get(long_ticket(9)) is None
    assert cache.ping() is False


# -- memory only --------------------------------------------------------------------------------


def test_memory_lru_limit() -> None:
    cache = ResultCache(CacheSettings(max_entries=2), "ns")
    a, b, c = long_ticket(10), long_ticket(11), long_ticket(12)
    cache.put(a, {"t": "a"})
    cache.put(b, {"t": "b"})
    assert cache.get(a) is not None  # a is now the most recently used
    cache.put(c, {"t": "c"})  # evicts b
    assert cache.get(b) is None
    assert cache.get(edit_words(b, (100, 250))) is None  # its buckets went with it
    assert cache.get(a) is not None and cache.get(c) is not None


def test_memory_store_drops_buckets_with_entries() -> None:
    store = MemoryStore(max_entries=1)
    store.put("p:e:1", "v1", ttl_s=60, member="1", buckets=["p:b:x", "p:b:y"])
    store.put("p:e:2", "v2", ttl_s=60, member="2", buckets=["p:b:y"])
    assert len(store) == 1
    assert store.members(["p:b:x", "p:b:y"]) == [set(), {"2"}]


# -- broken backends ------------------------------------------------------------------------------


def test_unreachable_redis_is_a_miss(caplog: pytest.LogCaptureFixture, key_prefix: str) -> None:
    settings = CacheSettings(backend="redis", redis_url=f"redis://127.0.0.1:{closed_port()}/0", key_prefix=key_prefix)
    cache = ResultCache(settings, "ns")
    ticket = long_ticket(13)
    with caplog.at_level(logging.WARNING, logger="server.cache.result_cache"):
        started = time.perf_counter()
        assert cache.get(ticket) is None
        cache.put(ticket, RESULT)  # must not raise
        assert cache.get(ticket) is None
        assert time.perf_counter() - started < 2.0
    assert any("result cache get failed" in r.getMessage() for r in caplog.records)
    assert cache.ping() is False
    assert cache.stats()["exact"] == {"hits": 0, "misses": 2}


def test_injected_broken_client_is_a_miss(key_prefix: str) -> None:
    client = redis.Redis(port=closed_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    cache = ResultCache(CacheSettings(backend="redis", key_prefix=key_prefix), "ns", redis_client=client)
    cache.put(long_ticket(14), RESULT)
    assert cache.get(long_ticket(14)) is None
    assert cache.ping() is False


class FlakyStore(MemoryStore):
    """Fails its next `failures` calls, then works: a Redis restart."""

    def __init__(self, failures: int) -> None:
        super().__init__(max_entries=100)
        self.failures = failures

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise redis.ConnectionError("connection refused")

    def get_many(self, keys):  # type: ignore[no-untyped-def]
        self._maybe_fail()
        return super().get_many(keys)

    def put(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self._maybe_fail()
        return super().put(*args, **kwargs)


def test_backend_is_retried_after_a_rest() -> None:
    store = FlakyStore(failures=1)
    cache = ResultCache(CacheSettings(), "ns", store=store, retry_after_s=0.2)
    ticket = long_ticket(15)
    assert cache.get(ticket) is None  # fails: backend rests
    cache.put(ticket, RESULT)  # skipped while resting, does not reach the store
    assert store.failures == 0 and len(store) == 0
    time.sleep(0.25)
    cache.put(ticket, RESULT)
    assert cache.get(ticket) == CacheHit("exact", RESULT, 1.0)


def test_redis_client_from_url_fails_fast() -> None:
    client = redis_client_from_url(f"redis://127.0.0.1:{closed_port()}/0")
    started = time.perf_counter()
    with pytest.raises(redis.ConnectionError):
        client.get("x")
    assert time.perf_counter() - started < 2.0
    client.close()
