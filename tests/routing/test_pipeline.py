"""The routing pipeline through ClassificationService: real store, real cache, the real hosted fallback
against the FakeOpenAI test server; the local engine is the ScriptedEngine double (tests/routing/doubles.py)."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from sqlalchemy.exc import OperationalError

from server.engines.base import EngineOverloaded, EngineUnavailable, ModelInfo, ReviewInput
from server.service import StoreUnavailable, TicketRequest
from server.store import repository as repo
from tests.fallback.fake_hosted import Fail, Reply, Stall, default_answer
from tests.routing.conftest import fallback_settings, stored
from tests.routing.doubles import ScriptedEngine

LOW_PRIORITY = {"category": 0.9, "priority": 0.3, "sentiment": 0.8}
CARD, EMAIL = "4111 1111 1111 1111", "jane.doe@example.com"


def req(
    subject: str, body: str = "I was charged twice for my invoice, please refund one of them.", **kw
) -> TicketRequest:
    return TicketRequest(subject, body, **kw)


async def one(service, request: TicketRequest):
    (outcome,) = await service.classify_many([request])
    return outcome


# -- local / thresholds ---------------------------------------------------------------------------
async def test_confident_answer_is_local_and_stored_with_routing_fields(make_service, store):
    service = make_service(ScriptedEngine())
    out = await one(service, req("confident"))
    body = out.result
    assert out.status == 200
    assert (body["route"], body["needs_review"], body["cache"], body["review_reasons"]) == ("local", False, None, None)
    assert body["engine"] == "scripted:base-model"
    assert body["cost_usd"] == 0.0
    (row,) = stored(store)
    assert (row.status, row.route, row.engine, row.cache_kind, row.review_reasons) == (
        "done",
        "local",
        "scripted:base-model",
        None,
        None,
    )
    assert row.cost_usd == 0.0 and row.needs_review is False


async def test_field_thresholds_override_the_default(make_service):
    engine = ScriptedEngine(first={"t": {"category": 0.9, "priority": 0.4, "sentiment": 0.9}})
    strict = make_service(engine, routing={"field_thresholds": {"category": 0.95}})
    body = (await one(strict, req("t"))).result
    assert body["route"] == "human" and body["needs_review"] is True
    assert body["review_reasons"] == {"category": 0.9, "priority": 0.4}
    lenient = make_service(
        ScriptedEngine(first={"t": {"category": 0.9, "priority": 0.4, "sentiment": 0.9}}),
        routing={"field_thresholds": {"priority": 0.3}},
    )
    assert (await one(lenient, req("t"))).result["route"] == "local"


def test_unknown_field_threshold_is_refused(make_service):
    with pytest.raises(ValueError, match="colour"):
        make_service(ScriptedEngine(), routing={"field_thresholds": {"colour": 0.3}})


# -- local re-review ------------------------------------------------------------------------------
async def test_review_that_becomes_confident_is_local_review(make_service):
    engine = ScriptedEngine(
        review=True, first={"r": LOW_PRIORITY}, reviewed={"r": {"category": 0.9, "priority": 0.8, "sentiment": 0.8}}
    )
    body = (await one(make_service(engine, routing={"review": True}), req("r"))).result
    assert body["route"] == "local+review" and body["needs_review"] is False
    assert body["confidence"]["priority"] == 0.8
    (review,) = engine.reviews
    assert isinstance(review, ReviewInput)
    assert review.uncertain == ("priority",)
    assert review.previous == {"category": "Billing", "priority": "High", "extracted_info": {"sentiment": "negative"}}
    assert review.ticket.subject == "r"


@pytest.mark.parametrize("reviewed_priority, kept", [(0.4, 0.4), (0.2, 0.3)], ids=["review-better", "first-better"])
async def test_still_low_after_review_keeps_the_more_confident_and_goes_to_human(
    make_service, store, reviewed_priority, kept
):
    engine = ScriptedEngine(
        review=True, first={"r": LOW_PRIORITY}, reviewed={"r": {**LOW_PRIORITY, "priority": reviewed_priority}}
    )
    body = (await one(make_service(engine, routing={"review": True}), req("r", ticket_id="T-r"))).result
    assert body["route"] == "human" and body["needs_review"] is True
    assert body["confidence"]["priority"] == kept
    assert body["review_reasons"] == {"priority": kept}
    rows, total = _queue(store)
    assert total == 1 and rows[0].ticket_id == "T-r" and rows[0].review_reasons == {"priority": kept}


async def test_review_off_or_unsupported_skips_the_review(make_service):
    for engine, settings in [
        (ScriptedEngine(review=True, first={"r": LOW_PRIORITY}), {}),  # off by default
        (ScriptedEngine(review=True, first={"r": LOW_PRIORITY}), {"routing": {"review": False}}),
        (ScriptedEngine(review=False, first={"r": LOW_PRIORITY}), {"routing": {"review": True}}),
    ]:
        body = (await one(make_service(engine, **settings), req("r"))).result
        assert body["route"] == "human"
        assert engine.reviews == [] and len(engine.calls) == 1


async def test_failed_review_keeps_the_first_answer(make_service):
    engine = ScriptedEngine(review=True, first={"r": LOW_PRIORITY})
    original = engine.classify

    attempted = []

    async def fail_reviews(items):
        if any(isinstance(i, ReviewInput) for i in items):
            attempted.append(items)
            raise EngineOverloaded(1.0)
        return await original(items)

    engine.classify = fail_reviews  # type: ignore[method-assign]
    out = await one(make_service(engine, routing={"review": True}), req("r"))
    assert attempted, "the review must have been tried"
    assert out.status == 200 and out.result["route"] == "human" and out.result["confidence"]["priority"] == 0.3


def _queue(store, **kw):
    with store() as s:
        return repo.review_queue(s, **kw)


# -- hosted fallback ------------------------------------------------------------------------------
async def test_hosted_valid_answer_then_an_exact_cache_hit(make_service, fake_openai, store):
    fake_openai.script(Reply(value_logprobs={"Billing": math.log(0.7), "High": math.log(0.6)}, usage=(1000, 100)))
    engine = ScriptedEngine(first={"Charged twice": LOW_PRIORITY})
    service = make_service(
        engine, hosted=True, fallback=fallback_settings(fake_openai), routing={"cost_per_cpu_second": 0.01}
    )
    body = (
        await one(
            service,
            req(
                "Charged twice",
                f"Card {CARD}, mail {EMAIL}. I was charged twice for my invoice this month, please refund one payment.",
            ),
        )
    ).result

    assert body["route"] == "hosted" and body["needs_review"] is False and body["review_reasons"] is None
    assert body["engine"] == "hosted:openai:fake-gpt"
    assert body["category"] == "Billing" and body["extracted_info"]["product"] == "Pro plan"
    assert body["confidence"]["category"] == pytest.approx(0.7) and body["confidence"]["priority"] == pytest.approx(0.6)
    hosted_cost = 1.0 * 0.15 + 0.1 * 0.6
    assert body["cost_usd"] >= hosted_cost and body["cost_usd"] == pytest.approx(hosted_cost, abs=0.01)
    assert body["usage"] == {"prompt_tokens": 1000, "completion_tokens": 100}
    (sent,) = fake_openai.requests
    assert (
        CARD.encode() not in sent.raw
        and CARD.replace(" ", "").encode() not in sent.raw
        and EMAIL.encode() not in sent.raw
    )
    user = sent.json()["messages"][1]["content"]
    assert "priority: High" in user  # the local labels as a hint

    # The same ticket again (different case/whitespace): an exact hit, no model, no cost.
    again = (
        await one(
            service,
            req(
                "CHARGED  twice",
                f"card {CARD}, mail {EMAIL}. i was charged twice for my invoice this month, please refund one payment.",
            ),
        )
    ).result
    assert (again["route"], again["cache"], again["cache_similarity"], again["cost_usd"]) == (
        "cache",
        "exact",
        1.0,
        0.0,
    )
    assert (
        again["engine"] == "hosted:openai:fake-gpt"
        and again["category"] == "Billing"
        and again["needs_review"] is False
    )
    assert again["request_id"] != body["request_id"]
    assert len(fake_openai.requests) == 1 and len(engine.calls) == 1
    rows = stored(store)
    assert (
        [r.route for r in rows][:2] == ["hosted", "cache"] and rows[1].cache_kind == "exact" and rows[1].cost_usd == 0.0
    )
    assert rows[0].engine == "hosted:openai:fake-gpt" and rows[0].cost_usd == pytest.approx(body["cost_usd"])
    assert service.cache.stats()["exact"]["hits"] >= 1


async def test_near_duplicate_hit(make_service):
    base = "My invoice for March shows the Pro plan twice although we only have one subscription, please check and refund the second charge to the card on file"
    engine = ScriptedEngine()
    service = make_service(engine)
    assert (await one(service, req("Invoice", base))).result["route"] == "local"
    body = (await one(service, req("Invoice", base + " today"))).result
    assert body["route"] == "cache" and body["cache"] == "near"
    assert 0.9 <= body["cache_similarity"] < 1.0
    assert len(engine.calls) == 1


async def test_human_results_are_not_cached(make_service):
    engine = ScriptedEngine(first={"low": LOW_PRIORITY})
    service = make_service(engine)
    for _ in range(2):
        assert (await one(service, req("low"))).result["route"] == "human"
    assert len(engine.calls) == 2


async def test_hosted_partly_invalid_keeps_the_valid_part_and_flags_review(make_service, fake_openai):
    bad = default_answer()
    bad["priority"] = "Critical"  # not a priority of the taxonomy
    bad["category"] = "Technical"
    fake_openai.script(Reply(answer=bad))
    engine = ScriptedEngine(first={"p": LOW_PRIORITY})
    body = (await one(make_service(engine, hosted=True, fallback=fallback_settings(fake_openai)), req("p"))).result
    assert body["route"] == "hosted" and body["needs_review"] is True
    assert body["category"] == "Technical"  # the hosted answer's valid label
    assert body["priority"] == "High"  # the invalid one came from the local answer
    assert "Critical" in body["review_reasons"]["hosted_invalid"]
    assert body["review_reasons"]["priority"] == 0.3
    assert body["confidence"]["priority"] == 0.3


@pytest.mark.parametrize(
    "action, reason",
    [
        (Reply(answer="this is not JSON at all"), "hosted_invalid"),
        (Fail(500), "server_error"),
        (Fail(503), "server_error"),
        (Fail(429, retry_after=0.01), "rate_limited"),
        (Stall(3.0), "timeout"),
    ],
    ids=["malformed", "500", "503", "429", "timeout"],
)
async def test_hosted_failure_degrades_to_human_never_5xx(make_service, fake_openai, store, action, reason):
    fake_openai.script(action)
    engine = ScriptedEngine(first={"f": LOW_PRIORITY})
    # A short timeout only where the timeout is the fault: on a loaded CI machine the fake's real
    # answers can take longer than 0.5 s and would turn every case into "timeout".
    timeout = 0.5 if isinstance(action, Stall) else 10.0
    service = make_service(engine, hosted=True, fallback=fallback_settings(fake_openai, timeout_s=timeout))
    out = await one(service, req("f", ticket_id="T-f"))
    assert out.status == 200, out.error
    body = out.result
    assert body["route"] == "human" and body["needs_review"] is True
    assert body["category"] == "Billing" and body["confidence"]["priority"] == 0.3  # the local answer kept
    if reason == "hosted_invalid":
        assert "hosted_invalid" in body["review_reasons"]
    else:
        assert body["review_reasons"]["fallback_unavailable"] == reason
    assert body["review_reasons"]["priority"] == 0.3
    (row,) = stored(store)
    assert row.status == "done" and row.route == "human" and row.needs_review is True
    filter_by = "hosted_invalid" if reason == "hosted_invalid" else "fallback_unavailable"
    rows, total = _queue(store, reason=filter_by)
    assert total == 1 and rows[0].ticket_id == "T-f"


async def test_hosted_failure_answers_from_the_cache_when_one_appeared_meanwhile(make_service, fake_openai):
    """A concurrent request stored a confident answer for the same ticket while this one was in flight."""
    fake_openai.script(Fail(500))
    engine = ScriptedEngine(first={"dup": LOW_PRIORITY})
    service = make_service(engine, hosted=True, fallback=fallback_settings(fake_openai))
    ticket = req("dup")

    def concurrent_answer(items):
        from server.cache import CachedAnswer
        from server.prompts import TicketInput

        entry = CachedAnswer(
            output=default_answer(),
            confidence={"category": 0.99, "priority": 0.99, "sentiment": 0.99},
            answered_by="scripted:other",
            model=ModelInfo("b", None, "f", "x"),
            prompt_version="classify/v1",
            input_truncated=False,
            route="local",
        )
        service.cache.put(engine, TicketInput(ticket.subject, ticket.body), entry)

    engine.on_classify = concurrent_answer
    body = (await one(service, ticket)).result
    assert body["route"] == "cache" and body["cache"] == "exact" and body["needs_review"] is False
    assert body["engine"] == "scripted:other"


async def test_breaker_open_skips_the_call(make_service, fake_openai):
    engine = ScriptedEngine(first={"b": LOW_PRIORITY})
    service = make_service(
        engine, hosted=True, fallback=fallback_settings(fake_openai, breaker_failures=1, breaker_reset_s=60)
    )
    fake_openai.script(Fail(500))
    first = (await one(service, req("b", "first ticket body"))).result
    assert first["review_reasons"]["fallback_unavailable"] == "server_error"
    second = (await one(service, req("b", "second, different ticket body"))).result
    assert second["route"] == "human" and second["review_reasons"]["fallback_unavailable"] == "breaker_open"
    assert len(fake_openai.requests) == 1


async def test_anthropic_fallback(make_service, fake_anthropic):
    engine = ScriptedEngine(first={"a": LOW_PRIORITY})
    body = (
        await one(make_service(engine, hosted=True, fallback=fallback_settings(fake_anthropic, "anthropic")), req("a"))
    ).result
    assert body["route"] == "hosted" and body["engine"] == "hosted:anthropic:fake-gpt"
    assert body["confidence"] == {
        "category": None,
        "priority": None,
        "sentiment": None,
    }  # no logprobs: null, no further hop
    assert body["needs_review"] is False


# -- deadlines ------------------------------------------------------------------------------------
async def test_deadline_without_any_answer_is_a_stored_needs_review_result(make_service, store):
    service = make_service(ScriptedEngine(delay_s=5), engine={"request_timeout_s": 0.3})
    out = await one(service, req("slow", ticket_id="T-slow"))
    assert out.status == 200
    body = out.result
    assert (body["route"], body["needs_review"]) == ("human", True)
    assert "deadline" in body["review_reasons"] and "0.3s" in body["review_reasons"]["deadline"]
    assert body["category"] is None and body["priority"] is None and body["extracted_info"]["sentiment"] is None
    assert body["confidence"] == {"category": None, "priority": None, "sentiment": None}
    (row,) = stored(store)
    assert row.status == "done" and row.needs_review is True and row.route == "human" and row.category is None
    rows, total = _queue(store, reason="deadline")
    assert total == 1 and rows[0].ticket_id == "T-slow"


async def test_deadline_during_the_hosted_call_keeps_the_local_answer(make_service, fake_openai):
    fake_openai.script(Stall(3.0))
    engine = ScriptedEngine(first={"d": LOW_PRIORITY})
    service = make_service(
        engine, hosted=True, fallback=fallback_settings(fake_openai, timeout_s=10), engine={"request_timeout_s": 0.6}
    )
    body = (await one(service, req("d"))).result
    assert body["route"] == "human" and body["category"] == "Billing"
    assert set(body["review_reasons"]) == {"priority", "deadline"}


async def test_deadline_keeps_tickets_already_settled(make_service):
    """In one batch the confident ticket keeps its result; only the unsettled one gets the deadline."""
    fast = ScriptedEngine("fast")
    slow = ScriptedEngine("slow", delay_s=5)
    service = make_service(
        fast,
        engines={"slow": slow},
        engine={"request_timeout_s": 0.4},
        routing={"rules": [{"min_chars": 100, "engine": "slow"}, {"engine": "default"}]},
    )
    short, long_ = req("s", "short body"), req("l", "x" * 200)
    a, b = await service.classify_many([short, long_])
    assert a.result["route"] == "local" and a.result["category"] == "Billing"
    assert b.result["route"] == "human" and "deadline" in b.result["review_reasons"] and b.result["category"] is None


# -- engines: rules, backup, faults --------------------------------------------------------------
async def test_rules_pick_the_engine_and_record_it(make_service, store):
    default, small = ScriptedEngine("default-engine"), ScriptedEngine("small", adapter="small-adapter")
    service = make_service(
        default,
        engines={"small": small},
        routing={"rules": [{"max_chars": 200, "languages": ["en"], "engine": "small"}, {"engine": "default"}]},
    )
    en_short = req("Refund please", "I was charged twice for my invoice and would like a refund.")
    de_short = req("Rechnung doppelt", "Hallo, ich habe die Rechnung zweimal bezahlt und bitte um Erstattung.")
    en_long = req("Refund please", "I was charged twice for my invoice. " * 10)
    outs = await service.classify_many([en_short, de_short, en_long])
    assert [o.result["engine"] for o in outs] == [
        "small:small-adapter",
        "default-engine:base-model",
        "default-engine:base-model",
    ]
    assert [t.subject for t in small.tickets_seen] == ["Refund please"] and len(default.tickets_seen) == 2
    rows = stored(store)
    assert [r.engine for r in rows] == ["small:small-adapter", "default-engine:base-model", "default-engine:base-model"]
    assert rows[0].model_adapter == "small-adapter"
    assert service.router.stats()["engines"]["small"]["first_answers"] == 1


@pytest.mark.parametrize(
    "fault", [EngineUnavailable("GPU server down"), EngineOverloaded(3.0)], ids=["unavailable", "overloaded"]
)
async def test_backup_engine_answers_when_the_chosen_one_cannot(make_service, store, fault):
    primary, backup = ScriptedEngine("primary", fail=fault), ScriptedEngine("backup")
    service = make_service(primary, engines={"spare": backup}, routing={"backup": "spare"})
    out = await one(service, req("b"))
    assert out.status == 200 and out.result["engine"] == "backup:base-model" and out.result["route"] == "local"
    assert len(primary.calls) == 1 and len(backup.calls) == 1
    assert service.router.stats()["engines"]["spare"]["as_backup"] == 1
    (row,) = stored(store)
    assert row.status == "done" and row.engine == "backup:base-model"


@pytest.mark.parametrize(
    "fault, status", [(EngineUnavailable("down"), 503), (EngineOverloaded(3.0), 429)], ids=["unavailable", "overloaded"]
)
async def test_no_engine_left_is_a_stored_failure(make_service, store, fault, status):
    service = make_service(
        ScriptedEngine(fail=fault), engines={"spare": ScriptedEngine("b", fail=fault)}, routing={"backup": "spare"}
    )
    out = await one(service, req("x"))
    assert out.status == status and out.result is None
    (row,) = stored(store)
    assert row.status == "failed" and row.route is None


async def test_item_error_is_not_retried_on_backup(make_service):
    primary, backup = ScriptedEngine(item_errors={"bad"}), ScriptedEngine("b")
    service = make_service(primary, engines={"spare": backup}, routing={"backup": "spare"})
    a, b = await service.classify_many([req("good"), req("bad")])
    assert a.status == 200 and b.status == 502 and backup.calls == []


# -- cost -----------------------------------------------------------------------------------------
async def test_local_cost_is_the_ticket_share_of_engine_time(make_service, store):
    # Wall-clock based: sleeps never end early but may overshoot on a busy machine, so bounds are one-sided tight.
    service = make_service(ScriptedEngine(delay_s=0.3), routing={"cost_per_cpu_second": 2.0})
    a, b = await service.classify_many([req("one", "first body"), req("two", "second body")])
    # One call of 0.3 s shared by two tickets: 0.15 s each at 2 USD/s.
    assert a.result["cost_usd"] == b.result["cost_usd"]
    assert 0.3 * 0.99 <= a.result["cost_usd"] <= 0.9
    (single,) = await service.classify_many([req("three", "third body")])
    assert 0.6 * 0.99 <= single.result["cost_usd"] <= 1.8
    assert [r.cost_usd for r in stored(store)] == pytest.approx(
        [a.result["cost_usd"], b.result["cost_usd"], single.result["cost_usd"]]
    )


async def test_concurrent_requests_share_the_engine_time(make_service):
    service = make_service(ScriptedEngine(delay_s=0.4), routing={"cost_per_cpu_second": 1.0})
    outs = await asyncio.gather(*(service.classify_many([req(f"c{i}", f"body {i}")]) for i in range(4)))
    costs = [o[0].result["cost_usd"] for o in outs]
    # Four tickets in the engine at once: about 0.4 s in all, not 4 x 0.4 s.
    assert 0.4 * 0.99 <= sum(costs) <= 1.2 and all(c > 0 for c in costs)


async def test_engine_profile_price(make_service):
    service = make_service(
        ScriptedEngine(),
        engines={"gpu": ScriptedEngine("gpu", delay_s=0.2)},
        routing={
            "rules": [{"engine": "gpu"}],
            "engines": {"gpu": {"cost_per_cpu_second": 10.0}},
            "cost_per_cpu_second": 0.0,
        },
    )
    body = (await one(service, req("g"))).result
    assert 2.0 * 0.99 <= body["cost_usd"] <= 6.0


# -- cache namespace follows the serving model ----------------------------------------------------------
async def test_hot_swap_changes_the_cache_namespace(make_service):
    engine = ScriptedEngine(adapter="v1")
    service = make_service(engine)
    assert (await one(service, req("swap"))).result["route"] == "local"
    assert (await one(service, req("swap"))).result["route"] == "cache"
    engine.adapter = "v2"  # what a promotion does to the engine's info
    body = (await one(service, req("swap"))).result
    assert body["route"] == "local" and body["engine"] == "scripted:v2"
    assert len(engine.calls) == 2


async def test_cache_disabled(make_service):
    engine = ScriptedEngine()
    service = make_service(engine, cache={"enabled": False})
    for _ in range(2):
        assert (await one(service, req("nc"))).result["route"] == "local"
    assert len(engine.calls) == 2


# -- the database --------------------------------------------------------------------------------------
class FlakySessions:
    """A sessionmaker whose sessions of the given uses (1 = the first) fail on commit: the DB went away."""

    def __init__(self, real, fail_uses: set[int]):
        self.real, self.fail_uses, self.uses = real, fail_uses, 0

    def __call__(self):
        self.uses += 1
        session = self.real()
        if self.uses in self.fail_uses:

            def broken_commit():
                raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

            session.commit = broken_commit  # type: ignore[method-assign]
        return session


async def test_database_lost_while_storing_results_writes_nothing_half(make_service, store, monkeypatch):
    monkeypatch.setattr("server.service.STORE_RETRY_DELAYS_S", (0.01,))
    engine = ScriptedEngine()
    flaky = FlakySessions(store, fail_uses={2, 3})  # accepting works, storing the results does not
    service = make_service(engine, sessions=flaky)
    with pytest.raises(StoreUnavailable):
        await service.classify_many([req("a", "first"), req("b", "second")])
    assert flaky.uses == 3  # accept + two tries to store
    rows = stored(store)
    assert [r.status for r in rows] == ["pending", "pending"]  # all or nothing; recovery fails them at start-up
    # Nothing was cached either: the same ticket is classified again.
    assert (await one(make_service(engine), req("a", "first"))).result["route"] == "local"
    assert len(engine.calls) == 2


async def test_database_blip_while_storing_is_retried(make_service, store, monkeypatch):
    monkeypatch.setattr("server.service.STORE_RETRY_DELAYS_S", (0.01, 0.01))
    flaky = FlakySessions(store, fail_uses={2})
    out = await one(make_service(ScriptedEngine(), sessions=flaky), req("blip"))
    assert out.status == 200 and flaky.uses == 3
    (row,) = stored(store)
    assert row.status == "done" and row.request_id == out.request_id


async def test_database_down_at_accept_means_nothing_called(make_service):
    from server.store.db import make_db_engine, make_sessionmaker

    dead = make_db_engine("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=1")
    engine = ScriptedEngine()
    service = make_service(engine, sessions=make_sessionmaker(dead))
    with pytest.raises(StoreUnavailable):
        await service.classify_many([req("s")])
    assert engine.calls == []


def test_stats_shape(make_service):
    stats = make_service(ScriptedEngine()).stats()
    assert set(stats) == {"routing", "cache", "fallback"}
    assert set(stats["routing"]["routes"]) == {"local", "local+review", "hosted", "human", "cache"}
    assert stats["fallback"] == {"enabled": False}
    assert json.dumps(stats)


def test_a_ticket_is_settled_and_counted_once():
    from server.prompts import TicketInput
    from server.results import ROUTES
    from server.routing import Choice, Job, RouteLedger

    ledger = RouteLedger()
    job = Job(TicketInput("s", "b"), Choice("default", None, "unknown", 2))
    job.reasons["fallback_unavailable"] = "timeout"
    ledger.settle(job, "human", needs_review=True, reasons={"priority": 0.2, **job.reasons})
    assert (job.route, job.needs_review, job.reasons) == (
        "human",
        True,
        {"priority": 0.2, "fallback_unavailable": "timeout"},
    )
    with pytest.raises(RuntimeError, match="already settled"):
        ledger.settle(job, "local")
    assert job.route == "human" and dict(ledger.routes) == {r: int(r == "human") for r in ROUTES}
