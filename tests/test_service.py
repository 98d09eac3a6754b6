"""Accepted tickets always end stored: faults injected at the engine seam must leave a 'failed' row.

`FaultyEngine` is a test double of the Engine interface that fails on purpose (the real engine is
exercised in tests/engines and tests/api); the store is the real SQLite database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from server.api.app import create_server
from server.config import load_settings
from server.engines.base import Engine, EngineError, EngineOutput, EngineOverloaded, ModelInfo
from server.prompts import TicketInput
from server.service import ClassificationService, StoreUnavailable, TicketRequest
from server.store import repository as repo
from server.store.db import make_db_engine, make_sessionmaker, migrate
from server.store.models import Classification
from server.taxonomy import load_taxonomy


class FaultyEngine(Engine):
    """Test double: answers per `mode` ('ok', 'raise', 'slow', 'overloaded', 'item_error')."""

    name = "faulty"

    def __init__(self, mode: str):
        self.mode = mode
        self.calls = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def classify(self, tickets: Sequence[TicketInput]):
        self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("kernel exploded")
        if self.mode == "slow":
            await asyncio.sleep(5)
        if self.mode == "overloaded":
            raise EngineOverloaded(2.0)
        out = []
        for i, _ in enumerate(tickets):
            if self.mode == "item_error" and i == 1:
                out.append(EngineError("could not encode ticket"))
                continue
            out.append(
                EngineOutput(
                    output={
                        "category": "Billing",
                        "priority": "High",
                        "extracted_info": {"product": None, "error_code": None, "sentiment": "negative"},
                        "reasoning": "r",
                    },
                    confidence={"category": 0.9, "priority": 0.4, "sentiment": 0.8},
                    raw_text="{}",
                    prompt_tokens=10,
                    completion_tokens=5,
                    truncated=False,
                    prompt_version="classify/v1",
                )
            )
        return out

    @property
    def ready(self) -> bool:
        return True

    @property
    def info(self) -> ModelInfo:
        return ModelInfo("base-model", None, "float32", self.name)

    @property
    def prompt_version(self) -> str:
        return "classify/v1"


@pytest.fixture()
def store(tmp_path):
    db_engine = make_db_engine(f"sqlite:///{tmp_path / 't.db'}")
    migrate(db_engine)
    yield make_sessionmaker(db_engine)
    db_engine.dispose()


def service(store, mode: str, timeout: float = 1.0) -> ClassificationService:
    settings = load_settings(database_url="sqlite://", engine={"request_timeout_s": timeout})
    return ClassificationService(settings, load_taxonomy("tickets"), FaultyEngine(mode), store)


def rows(store) -> list[Classification]:
    with store() as s:
        return list(s.scalars(select(Classification).order_by(Classification.id)))


TICKETS = [TicketRequest("Invoice wrong", "charged twice"), TicketRequest("x", "y", ticket_id="T-2")]


async def test_results_are_stored_with_versions(store):
    outcomes = await service(store, "ok").classify_many(list(TICKETS))
    assert [o.status for o in outcomes] == [200, 200]
    assert outcomes[1].ticket_id == "T-2" and outcomes[0].ticket_id.startswith("t_")
    assert outcomes[0].result["needs_review"] is True  # priority 0.4 < default threshold 0.5
    assert outcomes[0].result["route"] == "human"  # the double has no review prompt; the fallback is off
    assert outcomes[0].result["review_reasons"] == {"priority": 0.4}
    stored = rows(store)
    assert [r.status for r in stored] == ["done", "done"]
    assert stored[0].prompt_version == "classify/v1" and stored[0].model_base == "base-model"
    assert stored[0].confidence == {"category": 0.9, "priority": 0.4, "sentiment": 0.8}
    assert stored[0].needs_review is True and stored[0].category == "Billing"


@pytest.mark.parametrize(
    "mode,status,error",
    [("raise", 502, "kernel exploded"), ("overloaded", 429, "queue is full")],
)
async def test_engine_faults_end_as_stored_failures(store, mode, status, error):
    outcomes = await service(store, mode, timeout=0.3).classify_many([TicketRequest("s", "b")])
    assert outcomes[0].status == status and error in outcomes[0].error
    (row,) = rows(store)
    assert row.status == "failed" and error in row.error
    assert row.completed_at is not None


async def test_deadline_ends_as_a_stored_needs_review_result(store):
    """Past engine.request_timeout_s the caller gets a 200 needs_review result (route human, labels null), not a 504."""
    outcomes = await service(store, "slow", timeout=0.3).classify_many([TicketRequest("s", "b")])
    (outcome,) = outcomes
    assert outcome.status == 200 and outcome.error is None
    body = outcome.result
    assert body["route"] == "human" and body["needs_review"] is True and "deadline" in body["review_reasons"]
    assert body["category"] is None and body["priority"] is None
    (row,) = rows(store)
    assert row.status == "done" and row.needs_review is True and row.route == "human"
    assert "deadline" in row.review_reasons and row.completed_at is not None


async def test_one_failing_item_does_not_sink_the_others(store):
    outcomes = await service(store, "item_error").classify_many(
        [TicketRequest("a", "a"), TicketRequest("b", "b"), TicketRequest("c", "c")]
    )
    assert [o.status for o in outcomes] == [200, 502, 200]
    assert [r.status for r in rows(store)] == ["done", "failed", "done"]


async def test_database_down_means_nothing_accepted(tmp_path):
    dead = make_db_engine("postgresql+psycopg://postgres@127.0.0.1:1/test?connect_timeout=1")
    svc = service(make_sessionmaker(dead), "ok")
    with pytest.raises(StoreUnavailable):
        await svc.classify_many([TicketRequest("s", "b")])
    assert svc.engine.calls == 0  # not accepted -> never classified


def test_startup_fails_tickets_left_pending_by_a_crash(tmp_path):
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    db_engine = make_db_engine(url)
    migrate(db_engine)
    with make_sessionmaker(db_engine)() as s:
        repo.create_pending(
            s,
            request_id="r1",
            ticket_id="T-crash",
            subject="s",
            body="b",
            previous_interactions=None,
            model_base="m",
            model_adapter=None,
            prompt_version="classify/v1",
            taxonomy="tickets@1",
        )
    db_engine.dispose()
    app = create_server(load_settings(database_url=url), engine=FaultyEngine("ok"))
    with TestClient(app) as client:
        assert client.get("/ready").status_code == 200
        r = client.post("/v1/classify", json={"subject": "s", "body": "b"})
        assert r.status_code == 200 and r.json()["category"] == "Billing"
    db_engine = make_db_engine(url)
    with make_sessionmaker(db_engine)() as s:
        row = s.scalars(select(Classification).where(Classification.request_id == "r1")).one()
        assert row.status == "failed" and "restarted" in row.error
    db_engine.dispose()


def test_engine_failure_over_http_is_a_clear_error_and_stored(tmp_path):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    app = create_server(load_settings(database_url=url), engine=FaultyEngine("overloaded"))
    with TestClient(app) as client:
        r = client.post("/v1/classify", json={"subject": "s", "body": "b", "ticket_id": "T-9"})
        assert r.status_code == 429 and "Retry-After" in r.headers
        assert r.json()["error"] == "classification_failed"
        b = client.post("/v1/batch", json={"tickets": [{"subject": "s", "body": "b"}]})
        assert b.status_code == 429
    db_engine = make_db_engine(url)
    with make_sessionmaker(db_engine)() as s:
        assert s.scalar(select(func.count()).where(Classification.status == "failed")) == 2
    db_engine.dispose()
