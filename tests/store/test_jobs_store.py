"""The job queue in the store (server.store.jobs), on SQLite and PostgreSQL: replicas claim disjoint chunks
(SKIP LOCKED), a dead replica's claim is taken over after its lease, finishing counts and closes the job
(also when two replicas finish its last chunks at once), and the ticket text is cleared once answered (sealing: tests/api/test_jobs.py)."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import Engine, select, update

from server.auth.principal import Principal
from server.bulk import BulkTicket
from server.prompts import TicketInput
from server.store import jobs as store
from server.store.db import make_sessionmaker
from server.store.models import Job, JobTicket, utcnow

WHO = Principal("k", "classify", key_id=7, scope="acme")


def tickets(n: int) -> list[BulkTicket]:
    return [BulkTicket(f"T-{i}", TicketInput(f"PLAINSUBJECT {i}", "body", ("earlier",))) for i in range(n)]


def test_claims_are_disjoint_and_finishing_closes_the_job(migrated: Engine) -> None:
    sessions = make_sessionmaker(migrated)
    with sessions() as s:
        job = store.create_job(s, WHO, source="upload", filename="t.csv", tickets=tickets(40))

    claims: dict[str, list[store.ClaimedTicket]] = {"a": [], "b": [], "c": [], "d": []}
    barrier = threading.Barrier(len(claims))

    def replica(name: str) -> None:
        barrier.wait()
        while True:
            with sessions() as s:
                got = store.claim(s, name, 3, lease_s=600)
            if not got:
                return
            claims[name] += got
            with sessions() as s:
                store.finish(s, name, [store.Settled(c.id, c.job_id, f"r-{c.id}", None) for c in got])

    threads = [threading.Thread(target=replica, args=(n,)) for n in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [c.ticket_id for got in claims.values() for c in got]
    assert sorted(ids) == sorted(f"T-{i}" for i in range(40))  # every ticket once, none twice
    first = min((c for got in claims.values() for c in got), key=lambda c: c.id)
    assert first.ticket == TicketInput("PLAINSUBJECT 0", "body", ("earlier",))
    assert (first.key_id, first.scope) == (7, "acme")
    with sessions() as s:
        row = s.get(Job, job.id)
        assert row is not None and (row.status, row.done, row.failed) == ("done", 40, 0) and row.finished_at
        assert s.scalar(select(JobTicket.body).where(JobTicket.body.is_not(None))) is None
        results = store.results_page(s, job.id, 0, 100)
        assert [r.position for r in results] == list(range(40))
        assert store.visible_job(s, job.id, Principal("other", "classify", key_id=8, scope="acme")) is not None
        assert store.visible_job(s, job.id, Principal("other", "classify", key_id=8)) is None
        assert store.visible_job(s, job.id, Principal("admin", "admin")) is None


def test_a_dead_replicas_claim_is_taken_over_after_its_lease(migrated: Engine) -> None:
    sessions = make_sessionmaker(migrated)
    with sessions() as s:
        job = store.create_job(s, WHO, source="upload", filename="t.csv", tickets=tickets(3))
        dead = store.claim(s, "dead", 2, lease_s=60)
        assert len(dead) == 2
        assert [c.ticket_id for c in store.claim(s, "alive", 10, lease_s=60)] == ["T-2"]
        assert store.claim(s, "alive", 10, lease_s=60) == []  # the dead one's lease still holds
        s.execute(
            update(JobTicket).where(JobTicket.claimed_by == "dead").values(claimed_at=utcnow() - timedelta(seconds=61))
        )
        s.commit()
        taken = store.claim(s, "alive", 10, lease_s=60)
        assert sorted(c.ticket_id for c in taken) == ["T-0", "T-1"]
        # The dead replica coming back cannot finish what was taken over.
        store.finish(s, "dead", [store.Settled(c.id, c.job_id, None, "late") for c in dead])
        assert s.scalar(select(Job.failed).where(Job.id == job.id)) == 0
        store.release(s, "alive", [taken[0].id])
        assert [c.ticket_id for c in store.claim(s, "again", 10, lease_s=60)] == [taken[0].ticket_id]


def test_erasure_clears_a_queued_job_ticket_and_closes_the_job(migrated: Engine) -> None:
    from server.store.tickets import erase_ticket

    sessions = make_sessionmaker(migrated)
    with sessions() as s:
        job = store.create_job(s, WHO, source="upload", filename="t.csv", tickets=tickets(2))
    with sessions() as s:  # another tenant: nothing of theirs to erase, nothing touched
        assert erase_ticket(s, "T-1", Principal("other", "admin", key_id=9, scope="globex")) is None
    with sessions() as s:
        counts = erase_ticket(s, "T-0", Principal("ops", "admin", key_id=8, scope="acme"))
        assert counts is not None and counts.job_tickets == 1 and counts.classifications == 0
    with sessions() as s:
        rows = {t.ticket_id: t for t in s.scalars(select(JobTicket).where(JobTicket.job_id == job.id))}
        assert rows["T-0"].status == "failed" and rows["T-0"].error == "erased before it was classified"
        assert (rows["T-0"].subject, rows["T-0"].body, rows["T-0"].previous_interactions) == (None, None, None)
        assert rows["T-1"].status == "queued" and rows["T-1"].body == "body"
        j = s.get(Job, job.id)
        assert j is not None and j.failed == 1 and j.status == "queued"
    with sessions() as s:
        assert erase_ticket(s, "T-1", Principal("ops", "admin", key_id=8)) is not None  # unscoped admin
    with sessions() as s:
        j = s.get(Job, job.id)
        assert j is not None and (j.status, j.failed) == ("done", 2) and j.finished_at is not None
        assert [r.line()["error"] for r in store.results_page(s, job.id, 0, 10)] == [
            "erased before it was classified"
        ] * 2


def test_results_of_a_running_job_are_its_answered_prefix(migrated: Engine) -> None:
    """Tickets settle out of order; a page must never show a line that a later page would push to another
    offset (a caller paging by offset would skip it)."""
    sessions = make_sessionmaker(migrated)
    with sessions() as s:
        job = store.create_job(s, WHO, source="upload", filename="t.csv", tickets=tickets(3))
    with sessions() as s:
        claimed = store.claim(s, "w", 3, lease_s=600)
    by_position = {c.ticket_id: c for c in claimed}

    def settle(ticket_id: str) -> list[int]:
        c = by_position[ticket_id]
        with sessions() as s:
            store.finish(s, "w", [store.Settled(c.id, c.job_id, None, "refused")])
            return [r.position for r in store.results_page(s, job.id, 0, 10)]

    assert settle("T-1") == []  # T-0 still running: nothing after it is shown yet
    assert settle("T-0") == [0, 1]
    assert settle("T-2") == [0, 1, 2]
