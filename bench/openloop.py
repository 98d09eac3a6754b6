"""Open-loop load against a real server process over HTTP: does admission keep its promise?

For each variant (batched admission prefill on, and the old one-ticket-at-a-time prefill) it starts
`triage serve` on a free port with a temp SQLite database, measures capacity (closed loop, tickets/s
at concurrency 32), then offers Poisson arrivals at 0.5x, 1x and 2x that capacity for `--duration`
seconds each and waits for every answer. Per level: offered rate, sustained throughput (answers per
second from the level's start to its last answer), p50/p95 latency of the accepted (200) requests,
429s (with their Retry-After), and what the database holds for the level's tickets (done, failed,
pending: an accepted ticket is never lost, a refused one is a stored failure, none stays pending).
Prints one JSON line (progress on stderr).

    .venv/bin/python bench/openloop.py [--variants batched,one-by-one] [--duration 30] [--deadline-s 45]

The deadline (`engine.request_timeout_s`, 300 s by default in production) is lowered so that a
short run reaches the point where admission refuses; the result cache is off (every ticket would
otherwise be a distinct miss anyway, but near-duplicates could hit).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"batched": "true", "one-by-one": "false"}  # engine.batched_prefill


@dataclass
class Shot:
    ticket_id: str
    status: int = 0
    latency_s: float = 0.0
    done_at: float = 0.0
    retry_after: str | None = None
    deadline: bool = False  # a 200 cut by the deadline (stored needs_review, route human)


@dataclass
class Server:
    workdir: Path
    env: dict[str, str]
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.workdir / "triage.db"

    def start(self, ready_timeout_s: float = 240.0) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
        env.update(self.env, TRIAGE_DATABASE_URL=f"sqlite:///{self.db}", PYTHONUNBUFFERED="1")
        triage = Path(sys.executable).parent / "triage"
        cmd = [str(triage)] if triage.is_file() else [sys.executable, "-m", "server.cli"]
        with open(self.workdir / "server.log", "wb") as log:
            self.proc = subprocess.Popen(
                [*cmd, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.workdir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError("server not ready in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stored(self, prefix: str) -> dict[str, int]:
        with sqlite3.connect(self.db) as conn:
            rows = conn.execute(
                "SELECT status, count(*) FROM classifications WHERE ticket_id LIKE ? GROUP BY status", (prefix + "%",)
            ).fetchall()
        return {"done": 0, "failed": 0, "pending": 0} | {status: n for status, n in rows}


def load_tickets(path: Path, seed: int) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if (r["subject"] or r["body"]).strip()]
    random.Random(seed).shuffle(rows)
    return rows


class Tickets:
    """Distinct tickets, never the same one twice in a run (no cache effects)."""

    def __init__(self, rows: list[dict[str, str]]):
        self.rows, self.i = rows, 0

    def next(self, ticket_id: str) -> dict[str, str]:
        row = self.rows[self.i % len(self.rows)]
        self.i += 1
        return {"ticket_id": ticket_id, "subject": row["subject"], "body": row["body"][:4000]}


async def shoot(client: httpx.AsyncClient, payload: dict[str, str], t0: float) -> Shot:
    shot = Shot(payload["ticket_id"])
    started = time.monotonic()
    try:
        r = await client.post("/v1/classify", json=payload)
        shot.status, shot.retry_after = r.status_code, r.headers.get("retry-after")
        if r.status_code == 200:
            shot.deadline = "deadline" in (r.json().get("review_reasons") or {})
    except httpx.HTTPError:
        shot.status = -1
    shot.done_at = time.monotonic() - t0
    shot.latency_s = time.monotonic() - started
    return shot


async def closed_loop(client: httpx.AsyncClient, tickets: Tickets, n: int, concurrency: int, tag: str) -> float:
    """Capacity: tickets/s with `concurrency` clients each sending the next ticket when answered."""
    todo = list(range(n))
    shots: list[Shot] = []
    t0 = time.monotonic()

    async def worker() -> None:
        while todo:
            i = todo.pop()
            shots.append(await shoot(client, tickets.next(f"{tag}-{i}"), t0))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.monotonic() - t0
    ok = sum(s.status == 200 for s in shots)
    return ok / wall


async def open_loop(
    client: httpx.AsyncClient, tickets: Tickets, rate: float, duration: float, tag: str, rng: random.Random
) -> list[Shot]:
    """Poisson arrivals at `rate` for `duration` seconds, each sent without waiting for the others."""
    tasks = []
    t0 = time.monotonic()
    at = rng.expovariate(rate)
    i = 0
    while at < duration:
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        tasks.append(asyncio.create_task(shoot(client, tickets.next(f"{tag}-{i}"), t0)))
        i += 1
        at += rng.expovariate(rate)
    return list(await asyncio.gather(*tasks))


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def level_report(
    level: float, rate: float, duration: float, shots: list[Shot], stored: dict[str, int]
) -> dict[str, Any]:
    ok = [s for s in shots if s.status == 200]
    refused = [s for s in shots if s.status == 429]
    last = max((s.done_at for s in ok), default=0.0)
    retry = [int(s.retry_after) for s in refused if s.retry_after and s.retry_after.isdigit()]
    return {
        "load": level,
        "offered_per_s": round(rate, 3),
        "sent": len(shots),
        "answered": len(ok),
        "throughput_per_s": round(len(ok) / last, 3) if last else 0.0,
        "p50_s": pct([s.latency_s for s in ok], 0.5),
        "p95_s": pct([s.latency_s for s in ok], 0.95),
        "sent_per_s": round(len(shots) / duration, 3),
        "past_deadline": sum(s.deadline for s in ok),
        "n_429": len(refused),
        "retry_after_s": [min(retry), int(statistics.median(retry)), max(retry)] if retry else None,
        "other_errors": len(shots) - len(ok) - len(refused),
        "stored": stored,
        "duration_s": duration,
    }


async def run_variant(name: str, args: argparse.Namespace, tickets: Tickets) -> dict[str, Any]:
    env = {
        "TRIAGE_ENGINE__BATCHED_PREFILL": VARIANTS[name],
        "TRIAGE_ENGINE__REQUEST_TIMEOUT_S": str(args.deadline_s),
        "TRIAGE_CACHE__ENABLED": "false",
    }
    with tempfile.TemporaryDirectory(prefix="openloop-") as tmp:
        server = Server(Path(tmp), env)
        started = time.monotonic()
        server.start()
        print(f"[{name}] server ready in {time.monotonic() - started:.0f}s", file=sys.stderr)
        try:
            timeout = httpx.Timeout(args.deadline_s + 60)
            limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
            async with httpx.AsyncClient(base_url=server.url, timeout=timeout, limits=limits) as client:
                await closed_loop(client, tickets, 4, 4, f"{name}-warm")
                capacity = await closed_loop(client, tickets, args.capacity_n, args.concurrency, f"{name}-cap")
                print(f"[{name}] capacity {capacity:.3f} tickets/s at concurrency {args.concurrency}", file=sys.stderr)
                rng = random.Random(args.seed)
                levels = []
                for level in args.levels:
                    tag = f"{name}-L{level}-"
                    shots = await open_loop(client, tickets, level * capacity, args.duration, tag, rng)
                    report = level_report(level, level * capacity, args.duration, shots, server.stored(tag))
                    print(f"[{name}] {json.dumps(report)}", file=sys.stderr)
                    levels.append(report)
                health = (await client.get("/health")).json()
        finally:
            server.stop()
    return {"capacity_per_s": round(capacity, 3), "levels": levels, "engine": health.get("engine")}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="batched,one-by-one", help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("--levels", default="0.5,1,2", help="offered load as multiples of the measured capacity")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of arrivals per level")
    ap.add_argument("--deadline-s", type=float, default=45.0, help="engine.request_timeout_s of the server")
    ap.add_argument("--capacity-n", type=int, default=32, help="tickets of the closed-loop capacity run")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "tickets" / "train.csv")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the JSON line here")
    args = ap.parse_args()
    args.levels = [float(x) for x in args.levels.split(",")]
    tickets = Tickets(load_tickets(args.data, args.seed))
    started = time.monotonic()
    result: dict[str, Any] = {
        "bench": "openloop",
        "duration_s": args.duration,
        "deadline_s": args.deadline_s,
        "concurrency": args.concurrency,
        "variants": {},
    }
    for name in args.variants.split(","):
        if name not in VARIANTS:
            raise SystemExit(f"unknown variant {name!r}: one of {', '.join(VARIANTS)}")
        result["variants"][name] = await run_variant(name, args, tickets)
    result["wall_s"] = round(time.monotonic() - started, 1)
    line = json.dumps(result)
    print(line)
    if args.out:
        args.out.write_text(line + "\n")


if __name__ == "__main__":
    asyncio.run(main())
