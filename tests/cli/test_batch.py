"""`triage batch`: input parsing, resume after a kill, bad input, and one real SIGKILL-and-rerun with the model."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from server.bulk import BulkInputError, auto_id, done_ids, read_tickets, run_job
from server.cli import app
from server.engines.base import Deliver, EngineError, Outcome, Take
from server.prompts import TicketInput
from server.results import ClassificationResult
from tests.e2e.conftest import clean_env, triage_command

cli = CliRunner()


class Crash(Exception):
    pass


class ScriptedStream:
    """A runner's `run_stream` without a model: answers each ticket with its subject as the category,
    fails the ones whose body says "fail", and can crash after `crash_after` answers (a kill)."""

    def __init__(self, crash_after: int | None = None):
        self.crash_after = crash_after
        self.seen: list[str] = []
        self.max_batches: list[int | None] = []

    def __call__(self, take: Take, deliver: Deliver, max_batch: int | None = None) -> None:
        self.max_batches.append(max_batch)
        while batch := take(max_batch or 4):
            assert len(batch) <= (max_batch or 4)
            for key, item in batch:
                assert isinstance(item, TicketInput)
                if self.crash_after is not None and len(self.seen) >= self.crash_after:
                    raise Crash
                self.seen.append(str(key))
                out: Outcome = (
                    EngineError("scripted failure")
                    if item.body == "fail"
                    else ClassificationResult({"category": item.subject}, {"category": 0.9}, "", 1, 1, False, "v1")
                )
                deliver(key, out)


def record(tid: str, out: Outcome) -> dict[str, Any]:
    if isinstance(out, EngineError):
        return {"ticket_id": tid, "error": str(out)}
    assert isinstance(out, ClassificationResult)
    return {"ticket_id": tid, **out.output}


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_reads_csv_jsonl_and_parquet_alike(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = [
        {"ticket_id": "a", "subject": "s1", "body": "b1", "previous_interactions": '["hi", "again"]'},
        {"ticket_id": "", "subject": "s2", "body": "b2", "previous_interactions": "one message"},
    ]
    write_csv(tmp_path / "in.csv", rows)
    (tmp_path / "in.jsonl").write_text(
        json.dumps({**rows[0], "previous_interactions": ["hi", "again"]})
        + "\n\n"
        + json.dumps({"subject": "s2", "body": "b2", "history": "one message"})
        + "\n"
    )
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    want = [
        ("a", TicketInput("s1", "b1", ("hi", "again"))),
        (auto_id(2, "s2", "b2"), TicketInput("s2", "b2", ("one message",))),
    ]
    for name in ("in.csv", "in.jsonl", "in.parquet"):
        got = [(t.ticket_id, t.ticket) for t in read_tickets(tmp_path / name)]
        assert got == want, name
    # The derived id depends on the position and the text: stable across runs, changed by an edit.
    assert auto_id(2, "s2", "b2") == auto_id(2, "s2", "b2") != auto_id(3, "s2", "b2") != auto_id(2, "s2", "b3")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("in.txt", "x", "unknown extension '.txt'"),
        ("in.csv", "subject,text\na,b\n", "missing column(s) body"),
        ("in.csv", "ticket_id,subject,body\n1,a,b\n1,c,d\n", "duplicate ticket_id '1'"),
        ("in.jsonl", '{"subject": "a", "body": "b"}\nnot json\n', "line 2: not JSON"),
        ("in.jsonl", '{"subject": "a", "body": "b", "history": "[1, 2]"}\n', "history must be a JSON list"),
        ("in.parquet", "not parquet", "not a readable Parquet file"),
        ("missing.csv", None, "no such file"),
    ],
)
def test_bad_input_exits_2_before_the_model_loads(tmp_path: Path, name: str, content: str | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(BulkInputError):
        read_tickets(path)
    res = cli.invoke(app, ["batch", str(path), str(tmp_path / "out.jsonl")])
    assert res.exit_code == 2, res.output
    assert message in res.output, res.output


def test_unknown_output_extension_exits_2(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", [{"subject": "a", "body": "b"}])
    res = cli.invoke(app, ["batch", str(src), str(tmp_path / "out.csv")])
    assert res.exit_code == 2 and "expected .jsonl or .parquet" in res.output, res.output


def job(tmp_path: Path, n: int = 10, fail: frozenset[int] = frozenset()) -> tuple[list[Any], Path]:
    rows = [{"subject": f"s{i}", "body": "fail" if i in fail else f"b{i}"} for i in range(n)]
    return read_tickets(write_csv(tmp_path / "in.csv", rows)), tmp_path / "out.jsonl"


def test_resume_after_a_crash_classifies_each_ticket_once(tmp_path: Path) -> None:
    tickets, out = job(tmp_path, 10, fail=frozenset({3}))
    first = ScriptedStream(crash_after=6)
    with pytest.raises(Crash):
        run_job(tickets, out, first, record, concurrency=3)
    # A kill mid-write leaves a line without its newline: it must be cut, not parsed or kept.
    with out.open("a") as f:
        f.write('{"ticket_id": "torn')
    assert done_ids(out) == set(first.seen)
    assert out.read_text().endswith("\n")

    second = ScriptedStream()
    summary = run_job(tickets, out, second, record, concurrency=3)
    assert set(first.seen).isdisjoint(second.seen)
    assert summary.skipped == 6 and summary.classified + summary.failed == 4
    got = lines(out)
    assert sorted(r["ticket_id"] for r in got) == sorted(t.ticket_id for t in tickets)
    assert len(got) == 10
    failed = [r for r in got if "error" in r]
    assert [r["ticket_id"] for r in failed] == [tickets[3].ticket_id] and failed[0]["error"] == "scripted failure"
    assert {r["category"] for r in got if "error" not in r} == {f"s{i}" for i in range(10) if i != 3}
    assert second.max_batches == [3]

    third = ScriptedStream()
    assert run_job(tickets, out, third, record, concurrency=3).skipped == 10
    assert third.seen == [] and len(lines(out)) == 10


def test_an_empty_ticket_is_an_error_line_without_a_model_call(tmp_path: Path) -> None:
    tickets = read_tickets(
        write_csv(tmp_path / "in.csv", [{"subject": "", "body": " "}, {"subject": "a", "body": "b"}])
    )
    stream = ScriptedStream()
    run_job(tickets, tmp_path / "out.jsonl", stream, record, concurrency=2)
    got = {r["ticket_id"]: r for r in lines(tmp_path / "out.jsonl")}
    assert stream.seen == [tickets[1].ticket_id]
    assert "empty ticket" in got[tickets[0].ticket_id]["error"]


def test_an_output_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    tickets, out = job(tmp_path, 2)
    out.write_text("hello\n")
    with pytest.raises(BulkInputError, match="not a result line"):
        run_job(tickets, out, ScriptedStream(), record, concurrency=2)


def test_parquet_output_resumes_through_its_journal(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    tickets, _ = job(tmp_path, 5, fail=frozenset({1}))
    out = tmp_path / "out.parquet"
    with pytest.raises(Crash):
        run_job(tickets, out, ScriptedStream(crash_after=2), record, concurrency=2)
    assert not out.exists() and (tmp_path / "out.parquet.partial.jsonl").exists()
    run_job(tickets, out, ScriptedStream(), record, concurrency=2)
    table = pq.read_table(out).to_pylist()
    assert sorted(r["ticket_id"] for r in table) == sorted(t.ticket_id for t in tickets)
    assert [r["error"] for r in table if r["error"]] == ["scripted failure"]
    assert not (tmp_path / "out.parquet.partial.jsonl").exists()
    # Finished: a rerun touches nothing.
    again = ScriptedStream()
    assert run_job(tickets, out, again, record, concurrency=2).skipped == 5 and again.seen == []


def wait_for(cond: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        if proc.poll() is not None:
            pytest.fail(
                f"triage batch exited {proc.returncode} early: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        time.sleep(0.05)
    pytest.fail("no result written in time")


def golden_rows(n: int) -> list[dict[str, str]]:
    """The first `n` golden tickets as batch input rows (ticket_id, subject, body)."""
    golden = Path(__file__).resolve().parents[2] / "data" / "tickets" / "golden.csv"
    with golden.open(newline="") as f:
        return [
            {"ticket_id": r["ticket_id"], "subject": r["subject"], "body": r["body"]}
            for r, _ in zip(csv.DictReader(f), range(n))
        ]


@pytest.mark.model
def test_sigkill_mid_run_then_rerun_classifies_every_ticket_exactly_once(tmp_path: Path) -> None:
    rows = golden_rows(4)
    src = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.jsonl"
    cmd = [*triage_command(), "batch", str(src), str(out), "--concurrency", "2", "--engine", "embedded"]
    # Each run pays a model load: the tickets are few and short. Two rounds of 2 (--concurrency): the kill lands
    # after the first, while the second is in flight. This process is the only one computing: every core.
    env = clean_env(TRIAGE_PROMPT__MAX_BODY_TOKENS="32")
    env.pop("TRIAGE_MODEL__THREADS", None)

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: out.exists() and out.read_text().count("\n") >= 1, 120, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    text = out.read_text()
    before = [json.loads(x) for x in text[: text.rfind("\n") + 1].splitlines()]  # a torn last line is redone
    assert 1 <= len(before) < len(rows), "killed after the whole job: nothing left to resume"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    got = lines(out)
    assert sorted(r["ticket_id"] for r in got) == sorted(r["ticket_id"] for r in rows)
    assert [r["ticket_id"] for r in got[: len(before)]] == [r["ticket_id"] for r in before]
    assert f"{len(before)} already in out.jsonl" in done.stderr, done.stderr
    for r in got:
        assert "error" in r or {"category", "confidence", "needs_review", "usage"} <= r.keys(), r
