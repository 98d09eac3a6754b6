"""`triage batch --ray`: flag errors before anything loads, the actor-pool sizing, and one real job on a
local Ray instance with the embedded engine, checked against the single-process job on the same input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from server.bulk import read_tickets, result_record, run_job
from server.bulk_ray import RayJobError, RayPlan, pool_size
from server.cli import app
from tests.cli.test_batch import golden_rows, lines, write_csv
from tests.e2e.conftest import clean_env, triage_command

cli = CliRunner()
LABELS = ("category", "priority")


def test_ray_flags_without_ray_exit_2(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "in.csv", [{"subject": "a", "body": "b"}])
    res = cli.invoke(app, ["batch", str(src), str(tmp_path / "out.jsonl"), "--actors", "2"])
    assert res.exit_code == 2 and "only apply with --ray" in res.output, res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ray", "http://head:8265"], "expected local, auto, ray://HOST:PORT or HOST:PORT"),
        (["--ray", "ray://head"], "expected local, auto"),
        (["--ray", "local", "--cpus-per-actor", "0"], "an actor needs a CPU or a GPU"),
        (["--ray", "local", "--actors", "0"], "--actors"),
    ],
)
def test_bad_ray_arguments_exit_2_before_anything_starts(tmp_path: Path, args: list[str], message: str) -> None:
    pytest.importorskip("ray", reason="the address is checked once Ray is known to be installed")
    src = write_csv(tmp_path / "in.csv", [{"subject": "a", "body": "b"}])
    res = cli.invoke(app, ["batch", str(src), str(tmp_path / "out.jsonl"), *args])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "out.jsonl").exists()


def test_ray_not_installed_exits_2_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    src = write_csv(tmp_path / "in.csv", [{"subject": "a", "body": "b"}])
    res = cli.invoke(app, ["batch", str(src), str(tmp_path / "out.jsonl"), "--ray", "local"])
    assert res.exit_code == 2 and "pip install 'triage[ray]'" in res.output, res.output


def test_bad_input_with_ray_is_the_same_exit_2(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="--ray is refused first without Ray")
    (tmp_path / "in.csv").write_text("ticket_id,subject,body\n1,a,b\n1,c,d\n")
    res = cli.invoke(app, ["batch", str(tmp_path / "in.csv"), str(tmp_path / "out.jsonl"), "--ray", "local"])
    assert res.exit_code == 2 and "duplicate ticket_id '1'" in res.output, res.output


def test_the_pool_is_one_actor_per_slot_and_never_more_than_fits() -> None:
    cluster = {"CPU": 8.0, "GPU": 2.0}
    assert pool_size(RayPlan("auto"), cluster) == 8
    assert pool_size(RayPlan("auto", cpus_per_actor=3), cluster) == 2
    assert pool_size(RayPlan("auto", cpus_per_actor=1, gpus_per_actor=1), cluster) == 2
    assert pool_size(RayPlan("auto", cpus_per_actor=0, gpus_per_actor=0.5), cluster) == 4
    assert pool_size(RayPlan("auto", actors=3), cluster) == 3
    with pytest.raises(RayJobError, match="--actors 9 needs 9 CPU; the Ray cluster has 8 CPU"):
        pool_size(RayPlan("auto", actors=9), cluster)
    with pytest.raises(RayJobError, match="no room for one actor"):
        pool_size(RayPlan("auto", gpus_per_actor=1), {"CPU": 2.0})


def labels(rec: dict[str, Any]) -> tuple[Any, ...]:
    return (*(rec.get(f) for f in LABELS), rec.get("extracted_info", {}).get("sentiment"))


@pytest.mark.model
@pytest.mark.ray
def test_ray_job_matches_the_single_process_job_and_resumes(tmp_path: Path, runner: Any, fast_settings: Any) -> None:
    pytest.importorskip("ray", reason="pip install 'triage[ray]'")
    rows = golden_rows(4)
    src = write_csv(tmp_path / "in.csv", rows)
    tickets = read_tickets(src)
    ref = tmp_path / "single.jsonl"
    run_job(
        tickets,
        ref,
        runner.run_stream,
        lambda tid, out: result_record(tid, out, runner.info, fast_settings.routing),
        concurrency=2,
    )
    want = {r["ticket_id"]: r for r in lines(ref)}

    # A job interrupted after its first answer: the Ray run must keep that line and do only the rest.
    out = tmp_path / "out.jsonl"
    first = ref.read_text().splitlines(keepends=True)[0]
    out.write_text(first)
    cmd = [*triage_command(), "batch", str(src), str(out), "--concurrency", "2", "--engine", "embedded"]
    cmd += ["--ray", "local", "--actors", "2"]
    done = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "1 already in out.jsonl, 3 classified, 0 failed" in done.stderr, done.stderr
    assert "on 2 Ray actors" in done.stderr, done.stderr

    text = out.read_text()
    assert text.startswith(first)
    got = lines(out)
    assert sorted(r["ticket_id"] for r in got) == sorted(want) and len(got) == 4
    for r in got:
        assert {"category", "confidence", "needs_review", "usage", "model"} <= r.keys(), r
        # Greedy decoding of the same prompts by the same weights: the same labels, whichever process.
        assert labels(r) == labels(want[r["ticket_id"]]), (r, want[r["ticket_id"]])
        assert r["model"] == want[r["ticket_id"]]["model"]

    again = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "4 already in out.jsonl, 0 classified" in again.stderr, again.stderr
    assert "Ray actor" not in again.stderr, "a finished job's rerun started Ray"
    assert out.read_text() == text
