"""What a cache hit may give away, through ClassificationService with the real cache (in-process and a
real Redis), the real hosted fallback against the FakeOpenAI server, and the ScriptedEngine double.

Two tickets that differ only in their error code and the customer's e-mail are near-duplicates: the
second may reuse the first one's labels, never its product, error code or reasoning. A hosted answer
is cached with its placeholders, never with the personal data restored into it for its own customer.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

from server.cache import MemoryStore
from server.prompts import TicketInput
from server.service import TicketRequest
from tests.fallback.fake_hosted import FakeHostedAPI, Reply, default_answer
from tests.routing.conftest import Builder, fallback_settings
from tests.routing.doubles import ScriptedEngine

REDIS_URL = "redis://127.0.0.1:6379/0"
LOW_PRIORITY: dict[str, float | None] = {"category": 0.9, "priority": 0.3, "sentiment": 0.8}
FREE_TEXT = ["product", "error_code", "reasoning"]
EMAIL_PLACEHOLDER = re.compile(r"<EMAIL_ADDRESS_\d+>")

# Long enough to shingle; the two tickets differ in the last sentences only (similarity ~0.95).
STORY = (
    "Since the update on Monday the desktop sync client stops after a few minutes and shows a red "
    "banner at the top of the window. I have restarted the application, signed out and in again, "
    "reinstalled the client from your download page, cleared the local cache folder and even tried "
    "a second laptop, but the same thing happens on every device in our team. The web dashboard "
    "still shows the files, yet nothing new arrives on the laptops and the export button does "
    "nothing when I click it. Our quarterly report is due on Friday and the finance department "
    "cannot work without the shared folders, so this is getting urgent for us. Could you please "
    "check what is wrong with our account and tell us how to get the synchronisation running "
    "again as soon as possible. We are on the business plan with twenty seats and have not "
    "changed any settings recently."
)
ALICE = ("E-4471", "jane.doe@example.com")
BOB = ("E-9920", "bob.roe@example.org")


def body_of(code: str, email: str) -> str:
    return f"{STORY} The banner says error {code} every time. Please reply to {email}."


def local_output(code: str, email: str) -> dict[str, Any]:
    """The local model's answer to Alice's ticket: free text about her and her error."""
    return {
        "category": "Technical",
        "priority": "High",
        "extracted_info": {"product": "Sync client", "error_code": code, "sentiment": "negative"},
        "reasoning": f"{email} reports sync error {code} on all devices.",
    }


class RecordingStore(MemoryStore):
    """The in-process store, keeping every value written to it (to search the raw entries)."""

    def __init__(self) -> None:
        super().__init__(max_entries=1000)
        self.values: list[str] = []

    def put(self, key: str, value: str, *, ttl_s: float, member: str = "", buckets: Sequence[str] = ()) -> None:
        self.values.append(value)
        super().put(key, value, ttl_s=ttl_s, member=member, buckets=buckets)


class Backend:
    """One cache backend for a test: an injected recording store, or the Redis server under a fresh prefix."""

    def __init__(self, kind: str, admin: redis.Redis | None, prefix: str) -> None:
        self.kind, self.admin, self.prefix = kind, admin, prefix
        self.memory = RecordingStore() if kind == "memory" else None

    def service_kwargs(self) -> dict[str, Any]:
        if self.memory is not None:
            return {"cache_store": self.memory}
        return {"cache": {"backend": "redis", "redis_url": REDIS_URL, "key_prefix": self.prefix}}

    def raw_entries(self) -> list[str]:
        """Every cache entry as the backend holds it (bytes as written, not as a lookup returns them)."""
        if self.memory is not None:
            return list(self.memory.values)
        assert self.admin is not None
        keys = [str(k) for k in self.admin.scan_iter(match=f"{self.prefix}:*", count=1000) if ":e:" in str(k)]
        return [str(v) for v in self.admin.mget(keys) if v is not None]


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    prefix = f"triage-test-{uuid.uuid4().hex[:12]}"
    if request.param == "memory":
        yield Backend("memory", None, prefix)
        return
    admin = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_connect_timeout=2)
    try:
        admin.ping()
    except redis.RedisError as exc:
        admin.close()
        pytest.fail(f"Redis not reachable at {REDIS_URL} ({exc}); these tests need a running Redis", pytrace=False)
    try:
        yield Backend("redis", admin, prefix)
    finally:
        keys = list(admin.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            admin.delete(*keys)
        admin.close()


async def one(service: Any, request: TicketRequest) -> dict[str, Any]:
    (outcome,) = await service.classify_many([request])
    assert outcome.status == 200, outcome.error
    result: dict[str, Any] = outcome.result
    return result


def labels(body: dict[str, Any]) -> tuple[Any, ...]:
    return body["category"], body["priority"], body["extracted_info"]["sentiment"]


async def test_near_hit_reuses_labels_never_another_tickets_free_text(make_service: Builder, backend: Backend) -> None:
    engine = ScriptedEngine(outputs={"Sync stopped": local_output(*ALICE)})
    service = make_service(engine, **backend.service_kwargs())
    alice = await one(service, TicketRequest("Sync stopped", body_of(*ALICE)))
    assert alice["route"] == "local" and alice["extracted_info"]["error_code"] == "E-4471"

    bob = await one(service, TicketRequest("Sync stopped", body_of(*BOB)))
    assert (bob["route"], bob["cache"]) == ("cache", "near") and 0.9 <= bob["cache_similarity"] < 1.0
    assert len(engine.calls) == 1  # served from the cache
    assert labels(bob) == labels(alice) and bob["confidence"] == alice["confidence"]
    assert bob["extracted_info"]["product"] is None and bob["extracted_info"]["error_code"] is None
    assert bob["reasoning"] is None
    assert bob["cache_omitted"] == FREE_TEXT
    text = json.dumps(bob)
    assert "E-4471" not in text and ALICE[1] not in text and "Sync client" not in text

    # A labels-only request loses nothing on a near hit: nothing is omitted.
    labels_only = await one(service, TicketRequest("Sync stopped", body_of(*BOB), fields=("category", "priority")))
    assert (labels_only["route"], labels_only["cache"], labels_only["cache_omitted"]) == ("cache", "near", None)
    assert (labels_only["category"], labels_only["priority"]) == ("Technical", "High")
    # Asking for one free-text field: that one is named.
    partial = await one(service, TicketRequest("Sync stopped", body_of(*BOB), fields=("category", "error_code")))
    assert partial["cache_omitted"] == ["error_code"] and partial["extracted_info"] == {"error_code": None}

    # The same ticket (an exact hit) keeps its whole answer.
    again = await one(service, TicketRequest("SYNC stopped", body_of(*ALICE)))
    assert (again["route"], again["cache"], again["cache_omitted"]) == ("cache", "exact", None)
    assert again["extracted_info"]["error_code"] == "E-4471" and again["reasoning"] == alice["reasoning"]
    assert len(engine.calls) == 1


def _echo_email(request: dict[str, Any]) -> dict[str, Any]:
    """A hosted model that names the customer by the placeholder it was shown, as instructed."""
    (placeholder,) = set(EMAIL_PLACEHOLDER.findall(json.dumps(request)))
    answer = default_answer()
    answer["category"], answer["priority"] = "Technical", "High"
    answer["extracted_info"]["error_code"] = "E-4471"
    answer["reasoning"] = f"Sync error E-4471 for {placeholder}; reply to {placeholder}."
    return answer


async def test_hosted_answer_is_cached_redacted_and_no_hit_returns_the_email(
    make_service: Builder, fake_openai: FakeHostedAPI, backend: Backend
) -> None:
    fake_openai.script(Reply(_echo_email))
    engine = ScriptedEngine(first={"Sync stopped": LOW_PRIORITY})
    service = make_service(engine, hosted=True, fallback=fallback_settings(fake_openai), **backend.service_kwargs())

    alice = await one(service, TicketRequest("Sync stopped", body_of(*ALICE)))
    assert alice["route"] == "hosted" and alice["needs_review"] is False
    # Her own answer has her address back in it; the provider never saw it.
    assert ALICE[1] in alice["reasoning"] and not EMAIL_PLACEHOLDER.search(alice["reasoning"])
    (sent,) = fake_openai.requests
    assert ALICE[1].encode() not in sent.raw

    # What the cache holds: the placeholders, never the address.
    entries = backend.raw_entries()
    assert entries and all(ALICE[1] not in e for e in entries)
    (entry,) = [json.loads(e)["r"] for e in entries]
    assert entry["route"] == "hosted" and EMAIL_PLACEHOLDER.search(entry["output"]["reasoning"])
    assert entry["output"]["extracted_info"]["error_code"] == "E-4471"  # a span of her ticket: kept
    assert service.cache is not None
    view = service.cache.view(engine)
    assert view is not None
    exact = view.get(TicketInput("Sync stopped", body_of(*ALICE)))
    assert exact is not None and exact.result == entry

    # The same ticket again: an exact hit with the redacted free text.
    again = await one(service, TicketRequest("Sync stopped", body_of(*ALICE)))
    assert (again["route"], again["cache"], again["engine"]) == ("cache", "exact", "hosted:openai:fake-gpt")
    assert ALICE[1] not in json.dumps(again) and EMAIL_PLACEHOLDER.search(again["reasoning"])
    assert labels(again) == labels(alice)

    # Bob's near-identical ticket: Alice's labels, none of her text.
    bob = await one(service, TicketRequest("Sync stopped", body_of(*BOB)))
    assert (bob["route"], bob["cache"], bob["cache_omitted"]) == ("cache", "near", FREE_TEXT)
    assert labels(bob) == labels(alice) and bob["reasoning"] is None
    text = json.dumps(bob)
    assert ALICE[1] not in text and "E-4471" not in text and not EMAIL_PLACEHOLDER.search(text)
    assert len(fake_openai.requests) == 1 and len(engine.calls) == 1
