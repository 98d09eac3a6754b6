"""What one API replica sustains apart from the model: HTTP, validation, routing, redaction of nothing,
sealing the text, two database writes per ticket and the cache, with the model answering instantly.

    .venv/bin/python bench/api_capacity.py [--n 1500] [--concurrency 32]

The engine is `tests/routing/doubles.py`'s ScriptedEngine (a stand-in for the model server: on GPU hosts
the model runs in vLLM pods, so an API replica's own ceiling is everything else). The server is a real
`uvicorn` process on a free port; the load generator is this process (httpx, asyncio). Each ticket is
distinct (no cache hits). Configurations, all in the same run:
- `sqlite_memory`: the single-machine default (SQLite file, in-process cache): the baseline of the ratios;
- `postgres_redis`: a replica as compose/Kubernetes run it (PostgreSQL, Redis cache, shared registry);
- `health`: GET /health on the postgres_redis server, the HTTP stack's own ceiling;
- `postgres_bytes_per_ticket`: table + index + TOAST bytes per stored ticket (sealed text), for sizing.
Prints one JSON object. On this 2-core machine the load generator and the server share the cores, so the
figures are a floor for a replica with cores of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

PG_URL = os.environ.get("TRIAGE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

SERVER = """
import sys, uvicorn
sys.path.insert(0, {root!r})
from server.api.app import create_server
from server.config import load_settings
from tests.routing.doubles import ScriptedEngine
uvicorn.run(create_server(load_settings(), engine=ScriptedEngine()), host="127.0.0.1", port={port}, log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(env_extra: dict[str, str], work: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(env_extra, TRIAGE_STORAGE__DATA_KEY_FILE=str(work / "data.key"), TRIAGE_LOG__FORMAT="text")
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(root=str(ROOT), port=port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(work / f"server-{port}.log", "wb"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start; see {work}")


async def load(url: str, n: int, concurrency: int, path: str) -> dict[str, object]:
    latencies: list[float] = []
    errors: dict[int, int] = {}
    tag = uuid.uuid4().hex[:8]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            t = time.perf_counter()
            if path == "/health":
                r = await client.get(path)
            else:
                body = {
                    "ticket_id": f"cap-{tag}-{i}",
                    "subject": f"Invoice {i} charged twice",
                    "body": f"Order {tag}-{i}: I was billed twice for my subscription this month. " * 6,
                }
                r = await client.post(path, json=body)
            latencies.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                errors[r.status_code] = errors.get(r.status_code, 0) + 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": n,
        "errors": errors,  # status -> count; per_s counts only a run without errors as capacity
        "per_s": round(n / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()

    from sqlalchemy import text

    from server.store.db import make_db_engine

    work = Path(tempfile.mkdtemp(prefix="api-capacity-"))
    schema = f"bench_capacity_{uuid.uuid4().hex[:10]}"
    admin = make_db_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    pg = f"{PG_URL}?options={quote(f'-csearch_path={schema}')}"
    # The per-key limit (600/minute by default, anonymous callers included) would turn most of the load into 429s.
    common = {"TRIAGE_MODEL__ADAPTER": "none", "TRIAGE_AUTH__RATE_LIMIT": "1000000/minute"}
    configs = {
        "sqlite_memory": {**common, "TRIAGE_DATABASE_URL": f"sqlite:///{work / 'triage.db'}"},
        "postgres_redis": {
            **common,
            "TRIAGE_DATABASE_URL": pg,
            "TRIAGE_CACHE__BACKEND": "redis",
            "TRIAGE_CACHE__KEY_PREFIX": f"bench-{schema}",
            "TRIAGE_MODEL__REGISTRY_BACKEND": "store",
        },
    }
    out: dict[str, object] = {"n": args.n, "concurrency": args.concurrency, "cpus": os.cpu_count()}
    try:
        for name, env in configs.items():
            proc, url = start(env, work)
            try:
                asyncio.run(load(url, 50, 8, "/v1/classify"))  # warm-up: connections, first writes
                out[name] = asyncio.run(load(url, args.n, args.concurrency, "/v1/classify"))
                if name == "postgres_redis":
                    out["health"] = asyncio.run(load(url, args.n, args.concurrency, "/health"))
            finally:
                proc.terminate()
                proc.wait(30)
        # What PostgreSQL stores per ticket (table + indexes + TOAST), for sizing the database.
        with admin.connect() as conn:
            conn.execute(text(f'SET search_path TO "{schema}"'))
            rows = conn.execute(text("SELECT count(*) FROM classifications")).scalar() or 1
            sizes = {
                t: conn.execute(text(f"SELECT pg_total_relation_size('{t}')")).scalar() or 0
                for t in ("classifications", "audit_log")
            }
        out["postgres_bytes_per_ticket"] = {t: round(b / rows) for t, b in sizes.items()}
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    base = out["sqlite_memory"]["per_s"]  # type: ignore[index]
    out["postgres_redis_vs_sqlite"] = round(out["postgres_redis"]["per_s"] / base, 2)  # type: ignore[index]
    if any(out[k]["errors"] for k in ("sqlite_memory", "postgres_redis", "health")):  # type: ignore[index]
        print("warning: some requests failed; per_s is not a capacity", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
