"""`triage serve` as a real process: its log is JSON lines carrying the request id the client sent, the
X-Request-ID comes back over real HTTP, and GET /metrics answers the Prometheus format. The model is pointed
at a folder that does not exist, so the server starts degraded in seconds (no model load needed here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import ServerProc
from tests.observability.samples import Samples


def wait_up(server: ServerProc, timeout_s: float = 60.0) -> None:
    assert server.proc is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"server exited with {server.proc.returncode}; log:\n{server.log_text()}")
        try:
            httpx.get(f"{server.base_url}/health", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    pytest.fail(f"server did not answer in {timeout_s}s; log:\n{server.log_text()}")


def test_serve_logs_json_with_the_request_id_and_serves_metrics(tmp_path: Path) -> None:
    server = ServerProc("observability", tmp_path, {"TRIAGE_MODEL__BASE": str(tmp_path / "no-model")})
    server.start()
    try:
        wait_up(server)
        r = httpx.get(f"{server.base_url}/health", headers={"X-Request-ID": "probe-7"}, timeout=10)
        assert r.status_code == 503 and r.headers["x-request-id"] == "probe-7"  # degraded: no model
        m = httpx.get(f"{server.base_url}/metrics", timeout=10)
        assert m.status_code == 200 and m.headers["x-request-id"]
        samples = Samples(m.text)
        assert samples.get("triage_http_requests_total", endpoint="/health", status="503") >= 1
        assert samples.get("triage_store_metrics_up") == 1
    finally:
        server.stop()
    lines = [line for line in server.log_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line of the server's output is a JSON object
    probe = [r for r in records if r.get("request_id") == "probe-7"]
    assert probe and probe[-1]["logger"] == "triage.access" and probe[-1]["status"] == 503
    assert any(r["logger"] == "server.engines.served" and r["level"] == "ERROR" for r in records)  # load failure
    assert any(r["logger"].startswith("uvicorn") for r in records)
