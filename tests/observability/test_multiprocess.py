"""Multiprocess mode: two worker processes write to one PROMETHEUS_MULTIPROC_DIR and /metrics (served by a
third) reports their sum; a worker marked dead drops out of the live gauges but keeps its counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from server.observability import metrics
from tests.observability.samples import Samples

ROOT = Path(__file__).resolve().parents[2]


def run(mp_dir: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    workdir.mkdir(exist_ok=True)
    env = {**os.environ, metrics.MULTIPROC_ENV: str(mp_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "tests.observability.mp_worker", str(workdir), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_processes_share_one_directory(tmp_path: Path, monkeypatch) -> None:
    mp_dir = tmp_path / "prometheus"
    mp_dir.mkdir()
    one = run(mp_dir, tmp_path / "w1", "work", "2")
    two = run(mp_dir, tmp_path / "w2", "work", "3")
    assert one.returncode == two.returncode == 0
    assert len(list(mp_dir.glob("counter_*.db"))) == 2  # one file per process

    scraped = Samples(run(mp_dir, tmp_path / "w3", "scrape").stdout)
    assert scraped.get("triage_routes_total", route="local") == 5
    assert scraped.get("triage_classification_duration_seconds_count", endpoint="/v1/classify") == 5
    assert scraped.get("triage_http_requests_total", endpoint="/v1/classify", status="200") == 5
    assert scraped.get("triage_queue_depth", engine="mp-engine") == 2 + 3  # livesum
    assert scraped.get("triage_hosted_breaker_state", state="open") == 1  # livemax: one worker saw it open
    assert scraped.get("triage_store_metrics_up") == 1  # the scraping worker's own store

    # This process is not in multiprocess mode, but renders the directory once it is pointed at it.
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(mp_dir))
    metrics.mark_process_dead(int(one.stdout))
    after = Samples(metrics.render().decode())
    assert after.get("triage_routes_total", route="local") == 5  # counters survive their process
    assert after.get("triage_queue_depth", engine="mp-engine") == 3  # the first worker's live gauge is gone
    assert after.get("triage_hosted_breaker_state", state="open") == 0
