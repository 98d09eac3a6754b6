"""What access control and encryption at rest cost per request, each against its baseline in the same run.

    .venv/bin/python bench/security_overhead.py [--rows 400]

Prints one JSON object:
- `auth`: the middleware's decision for a request (`Authenticator.decide`, real SQLite key store): without
  keys (the open-mode baseline), a key's first request (one scrypt at the configured cost) and every later
  request of that key (one indexed SELECT, the scrypt outcome remembered), in ms, and the ratio to open mode;
- `encryption`: storing and reading back classification rows with ticket-sized text (~1.5 KB) on SQLite,
  with and without the data key, ms per row and the ratio.
A classification itself takes seconds on this CPU (see bench/throughput.py): both costs are far below it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.api.auth import Authenticator  # noqa: E402
from server.config import load_settings  # noqa: E402
from server.store import crypto  # noqa: E402
from server.store import repository as repo  # noqa: E402
from server.store.db import make_db_engine, make_sessionmaker, migrate  # noqa: E402
from server.store.keys import create_key  # noqa: E402
from server.store.models import Classification  # noqa: E402

BODY = (
    "Hello support, since the update to version 4.2 the dashboard shows error 0x80070005 whenever I export "
    "the monthly invoice report. My colleague Maria Gonzalez sees the same on her laptop. "
) * 8


def _ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 4)


def bench_auth(tmp: Path, n: int) -> dict[str, float]:
    settings = load_settings(database_url=f"sqlite:///{tmp / 'auth.db'}", auth={"required": True, "rate_limit": None})
    db = make_db_engine(settings.database_url)
    migrate(db)
    sessions = make_sessionmaker(db)
    with sessions() as session:
        created = create_key(session, name="bench", role="classify", hash_n=settings.auth.hash_n)
    header = f"Bearer {created.key}"
    open_mode = Authenticator(load_settings(auth={"required": False, "rate_limit": None}))
    keyed = Authenticator(settings)
    baseline = []
    for _ in range(n):
        t = time.perf_counter()
        open_mode.decide(sessions, None, ("classify",), "127.0.0.1")
        baseline.append(time.perf_counter() - t)
    t = time.perf_counter()
    assert not hasattr(keyed.decide(sessions, header, ("classify",), "127.0.0.1"), "status")
    first = time.perf_counter() - t
    steady = []
    for _ in range(n):
        t = time.perf_counter()
        keyed.decide(sessions, header, ("classify",), "127.0.0.1")
        steady.append(time.perf_counter() - t)
    db.dispose()
    return {
        "open_mode_ms": _ms(baseline),
        "first_request_ms": round(first * 1000, 2),
        "later_request_ms": _ms(steady),
        "later_vs_open_mode": round(statistics.median(steady) / statistics.median(baseline), 2),
        "scrypt_n": settings.auth.hash_n,
    }


def _store_rows(db_url: str, keyring: crypto.Keyring | None, rows: int) -> tuple[float, float]:
    db = crypto.attach(make_db_engine(db_url), keyring)
    migrate(db)
    sessions = make_sessionmaker(db)
    t = time.perf_counter()
    with sessions() as session:
        for i in range(rows):
            repo.create_pending(
                session,
                request_id=f"r{i}",
                ticket_id=f"T-{i}",
                subject=f"Export fails with 0x80070005 ({i})",
                body=BODY,
                previous_interactions=["Agent: please reinstall.", "Customer: did not help."],
                model_base="base",
                model_adapter="adapter",
                prompt_version="classify/v2",
                taxonomy="tickets@1",
            )
    write_s = time.perf_counter() - t
    t = time.perf_counter()
    with sessions() as session:
        read = session.query(Classification).all()
        assert len(read) == rows and read[-1].body == BODY
    read_s = time.perf_counter() - t
    db.dispose()
    return write_s / rows, read_s / rows


def bench_encryption(tmp: Path, rows: int) -> dict[str, float]:
    plain_w, plain_r = _store_rows(f"sqlite:///{tmp / 'plain.db'}", None, rows)
    sealed_w, sealed_r = _store_rows(f"sqlite:///{tmp / 'sealed.db'}", crypto.Keyring.generate(), rows)
    return {
        "rows": rows,
        "body_chars": len(BODY),
        "plain_write_ms_per_row": round(plain_w * 1000, 4),
        "sealed_write_ms_per_row": round(sealed_w * 1000, 4),
        "write_ratio": round(sealed_w / plain_w, 3),
        "plain_read_ms_per_row": round(plain_r * 1000, 4),
        "sealed_read_ms_per_row": round(sealed_r * 1000, 4),
        "read_ratio": round(sealed_r / plain_r, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"auth": bench_auth(Path(tmp), args.requests), "encryption": bench_encryption(Path(tmp), args.rows)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
