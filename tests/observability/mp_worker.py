"""A worker process for the multiprocess test: `python -m tests.observability.mp_worker DIR work N` classifies
N tickets through the in-process app and exits; `... DIR scrape` prints the app's GET /metrics.
PROMETHEUS_MULTIPROC_DIR is set by the caller, before anything imports prometheus-client."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from server.observability import metrics
from tests.api.conftest import make_app


def main() -> None:
    workdir, mode = Path(sys.argv[1]), sys.argv[2]
    assert metrics.multiprocess_dir() is not None, "PROMETHEUS_MULTIPROC_DIR must be set"
    with TestClient(make_app(workdir)) as client:
        if mode == "scrape":
            sys.stdout.write(client.get("/metrics").text)
            return
        for n in range(int(sys.argv[3])):
            r = client.post("/v1/classify", json={"subject": f"{workdir.name} ticket {n}", "body": "printer jams"})
            assert r.status_code == 200, r.text
        metrics.queue_changed("mp-engine", depth=int(sys.argv[3]), in_flight=0)
        metrics.breaker_state("open" if int(sys.argv[3]) == 2 else "closed")
        sys.stdout.write(str(os.getpid()))


if __name__ == "__main__":
    main()
