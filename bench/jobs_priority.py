"""Online /v1/classify latency while a bulk job runs, against its baselines in the same run.

    .venv/bin/python bench/jobs_priority.py [--tickets 400] [--online 20] [--step-ms 4] [--steps 20]
        [--database-url postgresql+psycopg://...]  (an empty database or schema: it is migrated)

The app is `create_server` over a real SQLite store with the real served engine (continuous batcher, up to
8 tickets per step) around a fake decode loop: every step costs `--step-ms` (plus 5% per ticket in the
batch), every ticket takes `--steps` steps, so the engine is the bottleneck as a model's would be without
loading one. Prints one JSON object with the online latency percentiles (ms) of `--online` sequential
requests in three scenarios:
- `idle`: nothing else runs;
- `job`: a job of `--tickets` tickets (POST /v1/jobs) is running through the low-priority worker; also the
  job's progress meanwhile and its tickets/s once done;
- `batch_flood`: the same tickets sent as concurrent /v1/batch calls of 32 (what a client would do without
  jobs): online requests queue behind them.
`--real` runs the same scenarios on the configured engine and model instead of the fake loop (seconds per
ticket on a CPU: `--tickets 24 --online 6`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from server.api.app import create_server  # noqa: E402
from server.config import Settings, load_settings  # noqa: E402
from server.engines.base import Deliver, Item, ModelInfo, Outcome, Take  # noqa: E402
from server.engines.served import ServedEngine  # noqa: E402
from server.results import ClassificationResult  # noqa: E402
from server.taxonomy import load_taxonomy  # noqa: E402

OUTPUT = {
    "category": "Billing",
    "priority": "High",
    "extracted_info": {"product": None, "error_code": None, "sentiment": "negative"},
    "reasoning": "charged twice",
}
CONFIDENT = {"category": 0.9, "priority": 0.9, "sentiment": 0.9}


class StepRunner:
    info = ModelInfo("bench-base", None, "float32", "bench")
    prompt_version = "classify/v1"
    supports_review = False

    def __init__(self, step_s: float, steps: int):
        self.step_s, self.steps = step_s, steps

    def stats(self) -> dict[str, Any]:
        return {}

    def run(self, items: Sequence[Item]) -> list[Outcome]:
        raise NotImplementedError

    def run_stream(self, take: Take, deliver: Deliver, max_batch: int | None = None) -> None:
        active: list[list[Any]] = []
        while True:
            active += [[key, self.steps] for key, _ in take(8 - len(active))]
            if not active:
                return
            time.sleep(self.step_s * (1 + 0.05 * len(active)))
            for entry in active:
                entry[1] -= 1
            for key, _ in [e for e in active if e[1] <= 0]:
                deliver(key, ClassificationResult(dict(OUTPUT), dict(CONFIDENT), "{}", 100, 20, False, "classify/v1"))
            active = [e for e in active if e[1] > 0]


def app_for(tmp: Path, args: argparse.Namespace) -> tuple[Any, Settings]:
    settings = load_settings(
        database_url=args.database_url or f"sqlite:///{tmp / 'bench.db'}",
        storage={"data_key_file": tmp / "data.key"},
        engine={"batch_wait_ms": 0, "max_batch_size": 8, "max_queue": 100_000, "admission": False},
        jobs={"chunk_size": args.chunk},
        auth={"required": False, "rate_limit": None},
    )
    if args.real:  # the configured engine and model (the shipped adapter on the embedded engine by default)
        return create_server(settings), settings
    runner = StepRunner(args.step_ms / 1000, args.steps)
    engine = ServedEngine(settings, load_taxonomy(settings.taxonomy), lambda _: runner, runner=runner)
    return create_server(settings, engine=engine), settings


def online(client: TestClient, n: int, tag: str) -> list[float]:
    out = []
    for i in range(n):
        started = time.perf_counter()
        r = client.post("/v1/classify", json={"subject": f"online {tag} {i}", "body": "please help"})
        assert r.status_code == 200, r.text
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=20, method="inclusive")  # never past the max on a few samples
    return {"p50_ms": round(statistics.median(ms), 1), "p95_ms": round(q[18], 1), "max_ms": round(max(ms), 1)}


def jsonl(n: int) -> bytes:
    return "".join(
        json.dumps({"ticket_id": f"B-{i}", "subject": f"job {i}", "body": "body"}) + "\n" for i in range(n)
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=400)
    parser.add_argument("--online", type=int, default=20)
    parser.add_argument("--step-ms", type=float, default=4.0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temporary folder")
    parser.add_argument(
        "--real", action="store_true", help="the real model instead of the fake decode loop (use small --tickets)"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {"config": vars(args)}
    with tempfile.TemporaryDirectory() as d:
        app, _ = app_for(Path(d), args)
        with TestClient(app) as client:
            online(client, 3, "warm-up")  # first-request costs (imports, connections) are no one's latency
            result["idle"] = summary(online(client, args.online, "idle"))

            job = client.post("/v1/jobs", files={"file": ("bench.jsonl", jsonl(args.tickets))}).json()
            url = f"/v1/jobs/{job['job_id']}"
            while client.get(url).json()["status"] == "queued":
                time.sleep(0.01)
            before = client.get(url).json()["done"]
            lat = online(client, args.online, "job")
            during = client.get(url).json()["done"] - before
            while (status := client.get(url).json())["status"] != "done":
                time.sleep(0.05)
            result["job"] = {
                **summary(lat),
                "job_tickets_done_meanwhile": during,
                "job_tickets_per_s": status["tickets_per_s"],
            }

            flood_started = time.perf_counter()
            batches = [
                [{"subject": f"flood {i}", "body": "b"} for i in range(start, min(start + 32, args.tickets))]
                for start in range(0, args.tickets, 32)
            ]
            threads = [
                threading.Thread(target=client.post, args=("/v1/batch",), kwargs={"json": {"tickets": b}})
                for b in batches
            ]
            for t in threads:
                t.start()
            time.sleep(0.2)  # the batches are queued in the engine
            lat = online(client, args.online, "flood")
            for t in threads:
                t.join()
            result["batch_flood"] = {
                **summary(lat),
                "flood_tickets_per_s": round(args.tickets / (time.perf_counter() - flood_started), 1),
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
