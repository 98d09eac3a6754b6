"""The bulk-job queue metrics on a seeded store (SQLite and PostgreSQL), seeded through server.store.jobs
itself (create, claim, finish, cancel) so the numbers follow the queue's real bookkeeping: jobs by status,
the tickets of the jobs not ended by status, and the age of the oldest job with queued tickets. And over
HTTP: a job posted to /v1/jobs is on GET /metrics while it waits, and leaves the queue once the job worker
(with a scripted engine: the model is not what is tested) has answered it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker

from server.auth.principal import Principal
from server.bulk import BulkTicket
from server.observability.metrics import StoreCollector, StoreWindows, render
from server.prompts import TicketInput
from server.store import jobs as store
from server.store.db import make_sessionmaker
from server.store.models import JOB_STATUSES, JOB_TICKET_STATUSES, Job
from tests.api.conftest import make_app
from tests.api.test_jobs import jsonl, upload, wait_done
from tests.observability.samples import Samples
from tests.routing.doubles import ScriptedEngine
from tests.store.conftest import db_engine, migrated  # noqa: F401 - fixtures on both backends

WHO = Principal("k", "classify", key_id=7, scope="acme")
NOW = datetime(2026, 12, 14, 12, 0, tzinfo=UTC)
WINDOWS = StoreWindows()


def scrape(collector: StoreCollector) -> Samples:
    return Samples(render([collector]).decode())


def new_job(sessions: sessionmaker[Session], n: int, created: datetime) -> Job:
    tickets = [BulkTicket(f"T-{i}", TicketInput("subject", "body", ())) for i in range(n)]
    with sessions() as s:
        job = store.create_job(s, WHO, source="upload", filename="t.csv", tickets=tickets)
        s.execute(update(Job).where(Job.id == job.id).values(created_at=created))
        s.commit()
        s.refresh(job)
        return job


def claim(sessions: sessionmaker[Session], worker: str, k: int) -> list[store.ClaimedTicket]:
    with sessions() as s:
        return store.claim(s, worker, k, lease_s=600)


def settle(
    sessions: sessionmaker[Session], worker: str, done: store.ClaimedTicket, failed: store.ClaimedTicket
) -> None:
    with sessions() as s:
        store.finish(
            s,
            worker,
            [store.Settled(done.id, done.job_id, None, None), store.Settled(failed.id, failed.job_id, None, "engine")],
        )


def job_numbers(m: Samples) -> tuple[dict[str, float], dict[str, float], float]:
    return (
        {status: m.get("triage_jobs", status=status) for status in JOB_STATUSES},
        {status: m.get("triage_job_tickets", status=status) for status in JOB_TICKET_STATUSES},
        m.get("triage_job_oldest_queued_age_seconds"),
    )


def test_an_empty_queue_reports_zeros(migrated: Engine) -> None:  # noqa: F811
    m = scrape(StoreCollector(make_sessionmaker(migrated), WINDOWS, cache_s=0, now=lambda: NOW))
    assert m.get("triage_store_metrics_up") == 1
    assert job_numbers(m) == (dict.fromkeys(JOB_STATUSES, 0), dict.fromkeys(JOB_TICKET_STATUSES, 0), 0)


def test_jobs_tickets_and_the_oldest_queued_age_from_the_store(migrated: Engine) -> None:  # noqa: F811
    sessions = make_sessionmaker(migrated)
    new_job(sessions, 2, NOW - timedelta(hours=5))
    cancelled = new_job(sessions, 4, NOW - timedelta(hours=4))
    running = new_job(sessions, 5, NOW - timedelta(hours=3))
    waiting = new_job(sessions, 3, NOW - timedelta(minutes=30))
    # Claims go oldest job first: `finished`'s two tickets are answered (one done, one failed): it is done.
    first, second = claim(sessions, "w1", 2)
    settle(sessions, "w1", first, second)
    # One ticket of `cancelled` is being classified when the job is cancelled: its 3 queued become failed, and
    # the one running belongs to an ended job, so it is no longer part of the queue.
    (taken,) = claim(sessions, "w1", 1)
    assert taken.job_id == cancelled.id
    with sessions() as s:
        assert store.cancel_job(s, s.get_one(Job, cancelled.id), WHO)
    # `running`: 3 claimed, 2 of them answered (done, failed), 1 still running, 2 queued.
    a, b, c = claim(sessions, "w1", 3)
    assert {a.job_id, b.job_id} == {running.id}
    settle(sessions, "w1", a, b)

    collector = StoreCollector(sessions, WINDOWS, cache_s=0, now=lambda: NOW)
    jobs, tickets, age = job_numbers(scrape(collector))
    assert jobs == {"queued": 1, "running": 1, "done": 1, "cancelled": 1}
    # `running` (2 queued, 1 running, 1 done, 1 failed) and `waiting` (3 queued); nothing of the ended jobs.
    assert tickets == {"queued": 5, "running": 1, "done": 1, "failed": 1}
    assert age == 3 * 3600  # `running` still has queued tickets and is the oldest such job

    # `running`'s last queued tickets are claimed: the oldest job with queued tickets is now `waiting`.
    rest = claim(sessions, "w2", 2)
    assert {t.job_id for t in rest} == {running.id}
    jobs, tickets, age = job_numbers(scrape(collector))
    assert tickets == {"queued": 3, "running": 3, "done": 1, "failed": 1}
    assert age == 30 * 60

    # Everything answered: both jobs are done, nothing is queued or running.
    more = claim(sessions, "w2", 3)
    assert {t.job_id for t in more} == {waiting.id}
    with sessions() as s:
        store.finish(s, "w1", [store.Settled(c.id, c.job_id, None, None)])
        store.finish(s, "w2", [store.Settled(t.id, t.job_id, None, None) for t in [*rest, *more]])
    jobs, tickets, age = job_numbers(scrape(collector))
    assert jobs == {"queued": 0, "running": 0, "done": 3, "cancelled": 1}
    assert tickets == dict.fromkeys(JOB_TICKET_STATUSES, 0) and age == 0


def test_job_metrics_are_cached_for_cache_s(migrated: Engine) -> None:  # noqa: F811
    sessions = make_sessionmaker(migrated)
    clock = [100.0]
    collector = StoreCollector(sessions, WINDOWS, cache_s=10.0, clock=lambda: clock[0], now=lambda: NOW)
    new_job(sessions, 2, NOW - timedelta(minutes=10))
    assert scrape(collector).get("triage_job_tickets", status="queued") == 2
    new_job(sessions, 3, NOW - timedelta(minutes=20))
    clock[0] += 9.9
    assert scrape(collector).get("triage_job_tickets", status="queued") == 2  # within cache_s: the same numbers
    clock[0] += 0.2
    after = scrape(collector)
    assert after.get("triage_job_tickets", status="queued") == 5
    assert after.get("triage_job_oldest_queued_age_seconds") == 20 * 60


def test_a_posted_job_is_on_metrics_until_the_worker_answers_it(tmp_path: Path) -> None:
    no_cache = {"store_cache_s": 0.0, "drift_cache_s": 0.0}
    with TestClient(make_app(tmp_path, jobs={"enabled": False}, metrics=no_cache)) as client:
        r = upload(client, "t.jsonl", jsonl(6))
        assert r.status_code == 202, r.text
        m = Samples(client.get("/metrics").text)
        assert m.get("triage_jobs", status="queued") == 1
        assert m.get("triage_job_tickets", status="queued") == 6
        assert 0 <= m.get("triage_job_oldest_queued_age_seconds") < 60
    with TestClient(make_app(tmp_path, ScriptedEngine(), metrics=no_cache)) as client:  # the worker runs now
        wait_done(client, r.json()["job_id"])
        jobs, tickets, age = job_numbers(Samples(client.get("/metrics").text))
    assert jobs == {"queued": 0, "running": 0, "done": 1, "cancelled": 0}
    assert tickets == dict.fromkeys(JOB_TICKET_STATUSES, 0) and age == 0
