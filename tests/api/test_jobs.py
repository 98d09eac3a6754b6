"""Bulk jobs over HTTP (POST /v1/jobs, GET /v1/jobs/{id}, GET /v1/jobs/{id}/results): uploads and server-side
paths (and every way out of the input folder), bad and oversized files, progress to done with one result line
per ticket, who may read a job, a restart resuming an interrupted job, and online requests served before
queued job tickets. The app is `create_server` over a real SQLite store; the engine is the ScriptedEngine
double, or, for the priority test, the real served engine (continuous batcher) around a fake decode loop."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text, update

from server.api.app import create_server
from server.config import load_settings
from server.engines.base import Deliver, Item, ModelInfo, Outcome, Take
from server.engines.served import ServedEngine
from server.prompts import TicketInput
from server.results import ClassificationResult
from server.store.audit import events
from server.store.db import make_sessionmaker
from server.store.models import Classification, Job, JobTicket
from server.taxonomy import load_taxonomy
from tests.api.conftest import api_settings, bearer, make_app, make_key, open_db
from tests.routing.doubles import CONFIDENT, OUTPUT, ScriptedEngine

CSV = "ticket_id,subject,body\nA-1,charged twice,my card was charged twice\nA-2,login,cannot log in\n,no id,a row without an id\n"


def jsonl(n: int, prefix: str = "J") -> bytes:
    rows = [
        {"ticket_id": f"{prefix}-{i}", "subject": f"{prefix} subject {i}", "body": "body", "history": ["earlier"]}
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def upload(client: TestClient, name: str, data: bytes, key: str | None = None) -> Any:
    return client.post("/v1/jobs", files={"file": (name, data)}, headers=bearer(key) if key else {})


def wait_done(client: TestClient, job_id: str, key: str | None = None, timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get(f"/v1/jobs/{job_id}", headers=bearer(key) if key else {})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] == "done":
            return body
        assert time.monotonic() < deadline, f"job never finished: {body}"
        time.sleep(0.05)


def result_lines(client: TestClient, job_id: str, key: str | None = None, **params: int) -> list[dict[str, Any]]:
    r = client.get(f"/v1/jobs/{job_id}/results", params=params, headers=bearer(key) if key else {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in r.text.splitlines()]


def test_csv_upload_runs_to_done_with_one_stored_result_per_ticket(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    with TestClient(make_app(tmp_path, engine)) as client:
        r = upload(client, "tickets.csv", CSV.encode())
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["total"] == 3 and job["source"] == "upload" and job["filename"] == "tickets.csv"
        done = wait_done(client, job["job_id"])
        assert (done["done"], done["failed"]) == (3, 0)
        assert done["started_at"] and done["finished_at"] and done["tickets_per_s"] > 0
        lines = result_lines(client, job["job_id"])
        ids = [line["ticket_id"] for line in lines]
        assert ids[:2] == ["A-1", "A-2"] and ids[2].startswith("row3-")  # the auto id of `triage batch`
        for line in lines:
            assert line["category"] == OUTPUT["category"] and line["confidence"] == CONFIDENT
            assert {"model", "prompt_version", "usage", "input_truncated", "needs_review"} <= set(line)
            # Stored like any classification: readable (and reviewable) by its request_id.
            stored = client.get(f"/v1/results/{line['request_id']}")
            assert stored.status_code == 200 and stored.json()["ticket_id"] == line["ticket_id"]
        assert sorted(t.subject for t in engine.tickets_seen) == ["charged twice", "login", "no id"]
        # Paginated.
        assert [x["ticket_id"] for x in result_lines(client, job["job_id"], offset=1, limit=1)] == ["A-2"]
        assert result_lines(client, job["job_id"], offset=3) == []
    db = open_db(tmp_path)
    with make_sessionmaker(db)() as s:
        # Answered tickets keep no text of their own: the classification row holds it (retention, erasure).
        assert s.scalar(select(func.count()).where(JobTicket.body.is_not(None))) == 0
        assert [e.detail["total"] for e in events(s, actions=["job_create"]) if e.detail] == [3]
    db.dispose()


def test_jsonl_and_parquet_uploads_with_history(tmp_path: Path) -> None:
    engine = ScriptedEngine()
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{"ticket_id": "P-1", "subject": "parquet", "body": "b"}]), buf)
    with TestClient(make_app(tmp_path, engine)) as client:
        a = upload(client, "t.jsonl", jsonl(5))
        b = upload(client, "../../etc/t.parquet", buf.getvalue())  # only the name's extension is used
        assert a.status_code == b.status_code == 202, (a.text, b.text)
        wait_done(client, a.json()["job_id"])
        wait_done(client, b.json()["job_id"])
        assert [x["ticket_id"] for x in result_lines(client, a.json()["job_id"])] == [f"J-{i}" for i in range(5)]
        assert [x["ticket_id"] for x in result_lines(client, b.json()["job_id"])] == ["P-1"]
        assert b.json()["filename"] == "t.parquet"
    assert {t.previous_interactions for t in engine.tickets_seen if t.subject.startswith("J ")} == {("earlier",)}


def test_a_ticket_the_api_would_refuse_is_a_failed_line(tmp_path: Path) -> None:
    data = b'{"ticket_id": "E", "subject": "", "body": " "}\n{"ticket_id": "OK", "subject": "s", "body": "b"}\n'
    with TestClient(make_app(tmp_path, ScriptedEngine(item_errors={"s"}))) as client:
        job = upload(client, "t.jsonl", data).json()
        assert wait_done(client, job["job_id"])["failed"] == 2
        lines = {x["ticket_id"]: x for x in result_lines(client, job["job_id"])}
        assert lines["E"]["error"] == "empty ticket: no subject and no body"
        assert "could not encode" in lines["OK"]["error"] and lines["OK"]["request_id"]


def test_path_jobs_stay_inside_the_input_folder(tmp_path: Path) -> None:
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    (inbox / "sub").mkdir(parents=True)
    outside.mkdir()
    (inbox / "sub" / "t.csv").write_text(CSV)
    (outside / "secret.csv").write_text(CSV)
    os.symlink(outside / "secret.csv", inbox / "link.csv")
    os.symlink(outside, inbox / "dirlink")
    with TestClient(make_app(tmp_path, jobs={"input_dir": inbox})) as client:
        r = client.post("/v1/jobs", json={"path": "sub/t.csv"})
        assert r.status_code == 202 and r.json()["source"] == "path", r.text
        assert wait_done(client, r.json()["job_id"])["done"] == 3
        for escape in (
            "../outside/secret.csv",
            "sub/../../outside/secret.csv",
            str(outside / "secret.csv"),
            "link.csv",
            "dirlink/secret.csv",
        ):
            r = client.post("/v1/jobs", json={"path": escape})
            assert r.status_code == 403 and r.json()["error"] == "path_outside_input_dir", (escape, r.text)
            assert str(outside) not in r.json()["message"] or escape.startswith("/")
        r = client.post("/v1/jobs", json={"path": "sub/missing.csv"})
        assert r.status_code == 404 and r.json()["error"] == "file_not_found"
        r = client.post("/v1/jobs", json={"path": "sub"})
        assert r.status_code == 404
    with TestClient(make_app(tmp_path / "off")) as client:  # no input_dir: path jobs are off
        r = client.post("/v1/jobs", json={"path": "sub/t.csv"})
        assert r.status_code == 403 and "path jobs are off" in r.json()["message"]
    db = open_db(tmp_path)
    with make_sessionmaker(db)() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1  # no refused request stored a job
    db.dispose()


BAD_FILES = [
    ("t.txt", b"subject,body\na,b\n", "unknown extension"),
    ("t.csv", b"title,text\na,b\n", "missing column(s) subject, body"),
    ("t.jsonl", b'{"subject": "a", "body": "b"}\n{not json\n', "t.jsonl line 2: not JSON"),
    ("t.csv", b"ticket_id,subject,body\nX,a,b\nX,c,d\n", "duplicate ticket_id 'X'"),
    ("t.csv", b"subject,body\n", "no tickets"),
    ("t.parquet", b"PAR1 not really", "not a readable Parquet file"),
    ("t.csv", b"subject,body\na\x00,b\n", "NUL"),
]


@pytest.mark.parametrize(("name", "data", "message"), BAD_FILES)
def test_a_bad_file_is_a_422_with_the_reason(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    with TestClient(make_app(tmp_path)) as client:
        r = upload(client, name, data)
        assert r.status_code == 422, r.text
        assert message in r.json()["message"] and "triage-job-" not in r.json()["message"]
    db = open_db(tmp_path)
    with make_sessionmaker(db)() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0
    db.dispose()


def test_malformed_requests_are_4xx(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path)) as client:
        r = client.post("/v1/jobs", content=b"a,b", headers={"Content-Type": "text/csv"})
        assert r.status_code == 415
        r = client.post(
            "/v1/jobs", content=b"--x\r\nno end", headers={"Content-Type": "multipart/form-data; boundary=x"}
        )
        assert r.status_code == 400 and r.json()["error"] == "invalid_upload"
        r = client.post("/v1/jobs", content=b"--x--\r\n", headers={"Content-Type": "multipart/form-data"})
        assert r.status_code == 400 and "boundary" in r.json()["message"]
        r = client.post("/v1/jobs", files={"other": ("t.csv", CSV.encode())})
        assert r.status_code == 422 and "`file`" in r.json()["message"]
        r = client.post("/v1/jobs", files={"file": (None, CSV.encode())})  # a field, no name telling the format
        assert r.status_code == 422 and "no filename" in r.json()["message"]
        r = client.post("/v1/jobs", content=b"{", headers={"Content-Type": "application/json"})
        assert r.status_code == 400


def test_oversized_uploads_are_413(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, jobs={"max_upload_bytes": 2048, "max_tickets": 4})) as client:
        r = upload(client, "t.jsonl", jsonl(60))
        assert r.status_code == 413, r.text
        r = client.post(  # chunked: no Content-Length to refuse up front
            "/v1/jobs",
            content=iter([b'{"path": "', b"x" * 70_000, b'"}']),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 413
        r = upload(client, "t.jsonl", jsonl(5))
        assert r.status_code == 413 and r.json()["error"] == "too_many_tickets"
        assert upload(client, "t.jsonl", jsonl(4)).status_code == 202


def test_a_job_is_read_only_by_its_key_or_scope(tmp_path: Path) -> None:
    keys = {
        "mine": make_key(tmp_path, "classify", "mine"),
        "other": make_key(tmp_path, "classify", "other"),
        "acme1": make_key(tmp_path, "classify", "acme1", scope="acme"),
        "acme2": make_key(tmp_path, "classify", "acme2", scope="acme"),
        "admin": make_key(tmp_path, "admin", "boss"),
        "review": make_key(tmp_path, "review", "rev"),
    }
    with TestClient(make_app(tmp_path, auth={"required": True, "rate_limit": None})) as client:
        assert upload(client, "t.csv", CSV.encode(), keys["review"]).status_code == 403
        assert upload(client, "t.csv", CSV.encode()).status_code == 401
        mine = upload(client, "t.csv", CSV.encode(), keys["mine"]).json()["job_id"]
        acme = upload(client, "t.csv", CSV.encode(), keys["acme1"]).json()["job_id"]
        wait_done(client, mine, keys["mine"])
        for key in ("other", "acme1", "admin"):
            for url in (f"/v1/jobs/{mine}", f"/v1/jobs/{mine}/results"):
                r = client.get(url, headers=bearer(keys[key]))
                assert r.status_code == 404 and r.json()["error"] == "not_found", (key, url)
        assert client.get(f"/v1/jobs/{acme}", headers=bearer(keys["acme2"])).status_code == 200
        assert client.get(f"/v1/jobs/{acme}", headers=bearer(keys["other"])).status_code == 404
        assert client.get("/v1/jobs/job_nosuch", headers=bearer(keys["mine"])).status_code == 404
        wait_done(client, acme, keys["acme2"])
        lines = result_lines(client, acme, keys["acme2"])
        assert len(lines) == 3
    db = open_db(tmp_path)
    with make_sessionmaker(db)() as s:
        # The job's classifications are stored under its creator's scope, as an online request's would be.
        rid = lines[0]["request_id"]
        assert s.scalars(select(Classification.scope).where(Classification.request_id == rid)).one() == "acme"
        creations = events(s, actions=["job_create"])
        assert {e.actor for e in creations} == {"mine", "acme1"} and {e.target for e in creations} == {mine, acme}
    db.dispose()


def test_a_restart_resumes_an_interrupted_job_and_the_text_is_sealed(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, jobs={"enabled": False})) as client:
        job = upload(client, "t.jsonl", jsonl(12, prefix="SECRETWORD")).json()
        assert client.get(f"/v1/jobs/{job['job_id']}").json()["status"] == "queued"
    db = open_db(tmp_path)
    with db.connect() as conn:  # the raw table: sealed at rest like the classifications
        bodies = [str(r[0]) for r in conn.execute(text("SELECT subject FROM job_tickets"))]
        assert len(bodies) == 12 and not any("SECRETWORD" in b for b in bodies)
    with make_sessionmaker(db)() as s:
        # A replica died mid-chunk: 4 tickets running under a worker that will never finish them.
        ids = list(s.scalars(select(JobTicket.id).order_by(JobTicket.id).limit(4)))
        s.execute(update(JobTicket).where(JobTicket.id.in_(ids)).values(status="running", claimed_by="dead-1"))
        s.execute(update(Job).values(status="running"))
        s.commit()
    db.dispose()
    engine = ScriptedEngine()
    with TestClient(make_app(tmp_path, engine)) as client:
        done = wait_done(client, job["job_id"])
        assert (done["done"], done["failed"]) == (12, 0)
        ids_out = [x["ticket_id"] for x in result_lines(client, job["job_id"])]
        assert ids_out == [f"SECRETWORD-{i}" for i in range(12)]
    assert len(engine.tickets_seen) == 12  # each once


# -- priority --------------------------------------------------------------------------------------
STEP_S = 0.005


class SteppedRunner:
    """A decode loop of up to 8 tickets a step (STEP_S each): a job ticket takes 2 steps, an online one 40,
    so an online ticket is in the engine long enough to see whether job tickets keep coming meanwhile.
    Records (event, subject, time) of every take and delivery."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []
        self.lock = threading.Lock()

    info = ModelInfo("base", None, "float32", "stepped")
    prompt_version = "classify/v1"
    supports_review = False

    def stats(self) -> dict[str, Any]:
        return {}

    def run(self, items: Sequence[Item]) -> list[Outcome]:
        raise NotImplementedError

    def _log(self, event: str, item: Item) -> None:
        assert isinstance(item, TicketInput)
        with self.lock:
            self.events.append((event, item.subject, time.monotonic()))

    def run_stream(self, take: Take, deliver: Deliver, max_batch: int | None = None) -> None:
        active: list[list[Any]] = []  # [key, item, steps left]
        while True:
            for key, item in take(8 - len(active)):
                self._log("take", item)
                active.append([key, item, 40 if item.subject.startswith("online") else 2])
            if not active:
                return
            time.sleep(STEP_S)
            for entry in active:
                entry[2] -= 1
            for key, item, _ in [e for e in active if e[2] <= 0]:
                self._log("deliver", item)
                deliver(key, ClassificationResult(dict(OUTPUT), dict(CONFIDENT), "{}", 10, 5, False, "classify/v1"))
            active = [e for e in active if e[2] > 0]


def test_online_requests_are_served_before_queued_job_tickets(tmp_path: Path) -> None:
    settings = api_settings(tmp_path, engine={"batch_wait_ms": 0, "max_batch_size": 8}, jobs={"chunk_size": 4})
    runner = SteppedRunner()
    engine = ServedEngine(settings, load_taxonomy(settings.taxonomy), lambda _: runner, runner=runner)
    app = create_server(settings, engine=engine)
    with TestClient(app) as client:
        job = upload(client, "t.jsonl", jsonl(400)).json()
        while client.get(f"/v1/jobs/{job['job_id']}").json()["done"] < 8:
            time.sleep(0.01)
        latencies = []
        for i in range(3):
            started = time.monotonic()
            r = client.post("/v1/classify", json={"subject": f"online {i}", "body": "now"})
            assert r.status_code == 200, r.text
            latencies.append(time.monotonic() - started)
        status = client.get(f"/v1/jobs/{job['job_id']}").json()
        assert status["status"] == "running"  # the job was still going: the online requests did not wait for it
    with runner.lock:
        log = list(runner.events)
    for i in range(3):
        (taken,) = [t for e, s, t in log if e == "take" and s == f"online {i}"]
        (answered,) = [t for e, s, t in log if e == "deliver" and s == f"online {i}"]
        # While an online ticket decodes (40 steps, about 20 job tickets' worth), the worker feeds nothing new:
        # at most the one chunk it had already claimed when the request came in.
        during = [s for e, s, t in log if e == "take" and taken < t < answered and not s.startswith("online")]
        assert len(during) <= 4, (i, during)
    # 40 steps of STEP_S each plus the HTTP and store round trips; a queue of ~390 job tickets ahead would be >2 s.
    assert max(latencies) < 1.5, latencies


def test_job_tickets_wait_for_a_lull_in_online_traffic(tmp_path: Path) -> None:
    """A caller sending its next request right after an answer must not find job tickets started in the gap:
    the worker holds back for jobs.idle_grace_s after the last online request ended."""
    settings = api_settings(tmp_path, jobs={"idle_grace_s": 0.5})
    runner = SteppedRunner()
    engine = ServedEngine(settings, load_taxonomy(settings.taxonomy), lambda _: runner, runner=runner)
    with TestClient(create_server(settings, engine=engine)) as client:
        worker = client.app.state.jobs  # type: ignore[attr-defined]
        assert worker._online() is False  # nothing has run yet
        assert client.post("/v1/classify", json={"subject": "online", "body": "now"}).status_code == 200
        ended = time.monotonic()
        assert worker._online() is True
        job = upload(client, "t.jsonl", jsonl(4)).json()
        while client.get(f"/v1/jobs/{job['job_id']}").json()["status"] != "done":
            time.sleep(0.01)
        with runner.lock:
            first_job_take = min(t for e, s, t in runner.events if e == "take" and not s.startswith("online"))
        assert first_job_take - ended >= 0.45  # monotonic clocks of the same process
        assert worker._online() is False


def test_the_job_setting_defaults_keep_path_jobs_off() -> None:
    settings = load_settings()
    assert settings.jobs.input_dir is None and settings.jobs.chunk_size < settings.engine.max_batch_size


def test_two_replicas_on_postgresql_split_a_job_and_classify_each_ticket_once(tmp_path: Path) -> None:
    from server.store.db import make_db_engine, migrate
    from tests.store.conftest import pg_schema

    with pg_schema() as url:
        db = make_db_engine(url)
        migrate(db)  # once, before the replicas (database_migrate_on_start off, as deployed)
        settings = api_settings(tmp_path, database_migrate_on_start=False, jobs={"chunk_size": 2, "poll_s": 0.05})
        settings = settings.variant(database_url=url)
        engines = [ScriptedEngine("a", delay_s=0.01), ScriptedEngine("b", delay_s=0.01)]
        apps = [create_server(settings, engine=e) for e in engines]
        with TestClient(apps[0]) as a, TestClient(apps[1]):
            job = upload(a, "t.jsonl", jsonl(80)).json()
            assert wait_done(a, job["job_id"])["done"] == 80
            assert [x["ticket_id"] for x in result_lines(a, job["job_id"])] == [f"J-{i}" for i in range(80)]
        seen = [len(e.tickets_seen) for e in engines]
        assert sum(seen) == 80 and min(seen) > 0, seen  # both replicas worked, no ticket twice
        with make_sessionmaker(db)() as s:
            per_ticket = s.execute(select(Classification.ticket_id, func.count()).group_by(Classification.ticket_id))
            assert {n for _, n in per_ticket} == {1}
        db.dispose()


@pytest.mark.model
def test_a_job_on_the_real_model_answers_like_the_stored_results(tmp_path: Path, base_model_dir: Path) -> None:
    from tests.conftest import SEED_TICKET, fast_overrides

    settings = api_settings(tmp_path, engine=fast_overrides(tmp_path)["engine"])
    data = json.dumps({"ticket_id": "R-1", **SEED_TICKET}) + "\n"
    data += json.dumps({"ticket_id": "R-2", "subject": "Invoice charged twice", "body": "Please refund one."}) + "\n"
    with TestClient(create_server(settings)) as client:
        job = upload(client, "real.jsonl", data.encode()).json()
        done = wait_done(client, job["job_id"], timeout_s=300)
        assert (done["done"], done["failed"]) == (2, 0)
        lines = result_lines(client, job["job_id"])
        assert [x["ticket_id"] for x in lines] == ["R-1", "R-2"]
        for line in lines:
            assert line["category"] in {"Sales", "Technical", "Billing", "General"}
            stored = client.get(f"/v1/results/{line['request_id']}").json()
            assert stored["prediction"]["category"] == line["category"] and stored["confidence"] == line["confidence"]
            assert stored["model"] == line["model"] and stored["status"] == "done"


def test_cancel_stops_a_job_and_a_restart_leaves_it_cancelled(tmp_path: Path) -> None:
    keys = {"mine": make_key(tmp_path, "classify", "mine"), "other": make_key(tmp_path, "classify", "other")}
    auth = {"required": True, "rate_limit": None}
    with TestClient(make_app(tmp_path, jobs={"enabled": False}, auth=auth)) as client:
        job = upload(client, "t.jsonl", jsonl(6), keys["mine"]).json()
        url = f"/v1/jobs/{job['job_id']}"
        assert client.delete(url, headers=bearer(keys["other"])).status_code == 404
        r = client.delete(url, headers=bearer(keys["mine"]))
        assert r.status_code == 200 and (r.json()["status"], r.json()["failed"]) == ("cancelled", 6), r.text
        assert r.json()["finished_at"]
        r = client.delete(url, headers=bearer(keys["mine"]))
        assert r.status_code == 409 and r.json()["error"] == "conflict"
        lines = result_lines(client, job["job_id"], keys["mine"])
        assert [x["error"] for x in lines] == ["job cancelled"] * 6
    engine = ScriptedEngine()
    with TestClient(make_app(tmp_path, engine, jobs={"poll_s": 0.05}, auth=auth)) as client:
        time.sleep(0.3)
        assert client.get(url, headers=bearer(keys["mine"])).json()["status"] == "cancelled"
    assert engine.tickets_seen == []
    db = open_db(tmp_path)
    with make_sessionmaker(db)() as s:
        assert s.scalar(select(func.count()).where(JobTicket.body.is_not(None))) == 0
        assert [e.target for e in events(s, actions=["job_cancel"])] == [job["job_id"]]
    db.dispose()
