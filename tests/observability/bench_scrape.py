"""Scrape cost of the store metrics on a seeded SQLite store: `.venv/bin/python -m tests.observability.bench_scrape`
(20,000 results over 8 days, 2,000 feedback rows; drift recomputed every scrape vs reused per drift_cache_s;
bulk jobs: 1,000 ended jobs of 100 tickets, one running job of 100,000 and 5 queued of 1,000)."""

import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from server.config import load_settings
from server.observability.metrics import StoreCollector, StoreWindows, render
from server.store.db import make_sessionmaker, migrate, open_store
from server.store.models import Classification, Feedback, Job, JobTicket, utcnow

tmp = Path(tempfile.mkdtemp())
s = load_settings(database_url=f"sqlite:///{tmp / 'b.db'}", storage={"data_key_file": tmp / "k"})
eng = open_store(s.database_url, s.storage)
migrate(eng)
sessions = make_sessionmaker(eng)
now = utcnow()
N, F = 20000, 2000
with sessions() as ss:
    rows = []
    for i in range(N):
        rows.append(
            Classification(
                request_id=uuid.uuid4().hex,
                ticket_id=f"t{i}",
                created_at=now - timedelta(hours=i % 200),
                status="done",
                body="x",
                category=["Billing", "Technical", "Account"][i % 3],
                priority="High",
                sentiment="negative",
                confidence={"category": (i % 10) / 10, "priority": 0.9, "sentiment": 0.8},
                model_base="b",
                prompt_version="v1",
            )
        )
    ss.add_all(rows)
    ss.commit()
    ss.add_all(
        [
            Feedback(
                classification_id=rows[i].id,
                ticket_id=f"t{i}",
                reviewer="r",
                corrections={"category": "Billing"} if i % 4 == 0 else {},
                created_at=now - timedelta(hours=i % 150),
            )
            for i in range(F)
        ]
    )
    ss.commit()
JOBS = [("done", 100, 100)] * 1000 + [("running", 100_000, 50_000)] + [("queued", 1000, 0)] * 5
with sessions() as ss:
    for j, (status, total, settled) in enumerate(JOBS):
        job_id = f"job_{j}"
        ss.execute(
            insert(Job),
            [dict(id=job_id, status=status, created_at=now - timedelta(minutes=len(JOBS) - j), source="upload",
                  filename="b.csv", total=total, done=settled, failed=0, actor="bench")],
        )  # fmt: skip
        ss.execute(
            insert(JobTicket),
            [
                dict(job_id=job_id, position=i, ticket_id=f"t{i}", body=None,
                     status="done" if i < settled else "running" if i < settled + 64 else "queued")
                for i in range(total)
            ],
        )  # fmt: skip
    ss.commit()
for drift_cache_s in (0.0, 300.0):
    c = StoreCollector(sessions, StoreWindows.of(s.metrics), cache_s=0, drift_cache_s=drift_cache_s)
    for _ in range(2):
        render([c])
    t = time.perf_counter()
    n = 10
    for _ in range(n):
        body = render([c])
    print(
        f"{N} results, {F} feedback, drift_cache_s={drift_cache_s:g}: scrape {1000 * (time.perf_counter() - t) / n:.1f} ms, {len(body)} bytes"
    )
c2 = StoreCollector(sessions, StoreWindows.of(s.metrics), cache_s=10)
render([c2])
t = time.perf_counter()
for _ in range(100):
    render([c2])
print(f"cached: {1000 * (time.perf_counter() - t) / 100:.2f} ms")
with sessions() as ss:
    for name in ("_review", "_drift", "_retrain", "_jobs"):
        t = time.perf_counter()
        for _ in range(5):
            getattr(c, name)(ss)
        print(name, f"{1000 * (time.perf_counter() - t) / 5:.1f} ms")
    # For comparison: counting the tickets of the jobs not ended row by row.
    t = time.perf_counter()
    for _ in range(5):
        ss.execute(
            select(JobTicket.status, func.count())
            .join(Job, Job.id == JobTicket.job_id)
            .where(Job.status.in_(("queued", "running")))
            .group_by(JobTicket.status)
        ).all()
    print("tickets counted row by row", f"{1000 * (time.perf_counter() - t) / 5:.1f} ms")
