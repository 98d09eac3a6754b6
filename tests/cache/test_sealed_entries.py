"""Cache entries in Redis are sealed with the data keys: the raw value holds no answer text, the cache still
hits, an entry sealed under keys this process lacks is a miss (never an error, never ciphertext served)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from server.cache import ResultCache
from server.cache.store import RedisStore, redis_client_from_url
from server.config import CacheSettings
from server.prompts import TicketInput
from server.store import crypto

REDIS_URL = "redis://127.0.0.1:6379/0"
TICKET = TicketInput("Refund for order 5531", "Please refund Erika Mustermann, she was charged twice for Nimbus Pro.")
ANSWER = {"category": "Billing", "reasoning": "Erika Mustermann was charged twice for Nimbus Pro."}


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"triage-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def cache(prefix: str, keys: crypto.KeySource | None) -> ResultCache:
    settings = CacheSettings(backend="redis", redis_url=REDIS_URL, key_prefix=prefix)
    return ResultCache(settings, "ns", store=RedisStore(redis_client_from_url(REDIS_URL)), keys=keys)


def test_sealed_in_redis_and_read_back(prefix: str) -> None:
    keyring = crypto.Keyring.generate()
    sealed = cache(prefix, keyring)
    sealed.put(TICKET, ANSWER)
    raw = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    (entry_key,) = [k for k in raw.scan_iter(f"{prefix}:ns:e:*")]
    value = raw.get(entry_key)
    assert value is not None and value.startswith(f"enc:v1:{keyring.current}:")
    assert "Mustermann" not in value and "Nimbus" not in value
    hit = sealed.get(TICKET)
    assert hit is not None and hit.result == ANSWER
    near = sealed.get(TicketInput(TICKET.subject, TICKET.body + " Thanks"))
    assert near is None or near.result == ANSWER  # the near path opens sealed candidates too

    # Another deployment's keys (or none): a miss, not an error and not ciphertext.
    assert cache(prefix, crypto.Keyring.generate()).get(TICKET) is None
    assert cache(prefix, None).get(TICKET) is None


def test_without_keys_entries_stay_plain(prefix: str) -> None:
    plain = cache(prefix, None)
    plain.put(TICKET, ANSWER)
    raw = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    (entry_key,) = [k for k in raw.scan_iter(f"{prefix}:ns:e:*")]
    assert "Mustermann" in (raw.get(entry_key) or "")
    assert (hit := plain.get(TICKET)) is not None and hit.result == ANSWER
