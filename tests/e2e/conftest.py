"""Real-HTTP fixtures: the server runs as a separate process (`triage serve`) on a free port.

Two servers are started together at the beginning of the session (their model loads overlap): the main
one with the default routing threshold and one with TRIAGE_ROUTING__CONFIDENCE_THRESHOLD=1.5, which must
flag every ticket for review (the hosted fallback is off there, so every ticket goes to a human). A third,
`hosted_server`, starts only when a test asks for it: threshold 1.5 and the hosted fallback pointed at
the FakeOpenAI test server of tests/fallback (a real HTTP server in this process). Storage is checked by
opening the server's SQLite file with SQLAlchemy.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from server.config import StorageSettings
from server.store.db import make_sessionmaker, open_store
from server.store.models import Classification
from tests.fallback.fake_hosted import FakeHostedAPI

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = float(os.environ.get("TRIAGE_TEST_READY_TIMEOUT_S", "180"))

# Small token budgets keep one CPU classification to a few seconds; one torch thread per process
# is much faster than two when the 2 cores are shared with other processes.
FAST_ENV = {
    "TRIAGE_ENGINE__MAX_STRING_TOKENS": "4",
    "TRIAGE_ENGINE__MAX_REASONING_TOKENS": "6",
    "TRIAGE_ENGINE__BATCH_WAIT_MS": "20",
    "TRIAGE_MODEL__THREADS": "1",
}


def triage_command() -> list[str]:
    script = Path(sys.executable).parent / "triage"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "server.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any TRIAGE_* setting, plus the fast budgets and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}
    env.update(FAST_ENV)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProc:
    name: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.workdir / 'triage.db'}"

    @property
    def data_key_file(self) -> Path:
        return self.workdir / "data.key"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        env = clean_env(
            TRIAGE_DATABASE_URL=self.db_url, TRIAGE_STORAGE__DATA_KEY_FILE=str(self.data_key_file), **self.extra_env
        )
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*triage_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def open_store(self) -> Engine:
        """The server's SQLite file, opened with its data key (the rows are sealed at rest)."""
        return open_store(self.db_url, StorageSettings(data_key_file=self.data_key_file), create_key=False)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"

    def wait_ready(self, deadline: float) -> None:
        assert self.proc is not None
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"{self.name} server exited with {self.proc.returncode} before ready; log:\n{self.log_text()}"
                )
            try:
                r = httpx.get(f"{self.base_url}/ready", timeout=5)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        pytest.fail(
            f"{self.name} server not ready after {READY_TIMEOUT_S:.0f}s (last: {last}); log:\n{self.log_text()}"
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def _servers(tmp_path_factory) -> Iterator[dict[str, ServerProc]]:
    servers = {
        "main": ServerProc("main", tmp_path_factory.mktemp("server-main")),
        "review": ServerProc(
            "review", tmp_path_factory.mktemp("server-review"), {"TRIAGE_ROUTING__CONFIDENCE_THRESHOLD": "1.5"}
        ),
    }
    try:
        for s in servers.values():
            s.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        for s in servers.values():
            s.wait_ready(deadline)
        yield servers
    finally:
        for s in servers.values():
            s.stop()


HOSTED_MODEL = "fake-gpt-4o-mini"


@pytest.fixture(scope="session")
def hosted_server(tmp_path_factory, openai_server: FakeHostedAPI) -> Iterator[ServerProc]:
    """Every ticket takes the low-confidence path (threshold 1.5) and the hosted fallback is FakeOpenAI."""
    proc = ServerProc(
        "hosted",
        tmp_path_factory.mktemp("server-hosted"),
        {
            "TRIAGE_ROUTING__CONFIDENCE_THRESHOLD": "1.5",
            "TRIAGE_FALLBACK__ENABLED": "true",
            "TRIAGE_FALLBACK__PROVIDER": "openai",
            "TRIAGE_FALLBACK__BASE_URL": f"{openai_server.url}/v1",
            "TRIAGE_FALLBACK__MODEL": HOSTED_MODEL,
            "TRIAGE_FALLBACK__API_KEY": "sk-test-not-a-real-key",
            "TRIAGE_FALLBACK__TIMEOUT_S": "10",
        },
    )
    try:
        proc.start()
        proc.wait_ready(time.monotonic() + READY_TIMEOUT_S)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def server(_servers) -> ServerProc:
    """The main server (default settings apart from the fast budgets)."""
    return _servers["main"]


@pytest.fixture(scope="session")
def review_server(_servers) -> ServerProc:
    """A server whose routing threshold (1.5) is above any confidence: every ticket needs review."""
    return _servers["review"]


@pytest.fixture(scope="session")
def base_url(server) -> str:
    return server.base_url


@pytest.fixture(scope="session")
def client(server) -> Iterator[httpx.Client]:
    # Classifications on a shared 2-core machine can take a while: generous read timeout.
    with httpx.Client(base_url=server.base_url, timeout=httpx.Timeout(300.0, connect=10.0)) as c:
        yield c


@pytest.fixture(scope="session")
def db_sessions(server) -> Iterator[sessionmaker[Session]]:
    """Sessions on the main server's own SQLite file (read from this process)."""
    engine = open_store(server.db_url, StorageSettings(data_key_file=server.data_key_file), create_key=False)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def ok_request_ids() -> list[str]:
    """request_id of every 200 classification answered by the main server during the session."""
    return []


@pytest.fixture(scope="session")
def seed_classification(client, ok_request_ids) -> dict:
    """One real classification of the seed ticket, with a caller-given ticket_id (shared by several tests)."""
    from tests.conftest import SEED_TICKET

    r = client.post("/v1/classify", json={"ticket_id": "seed-0001", **SEED_TICKET})
    assert r.status_code == 200, r.text
    body = r.json()
    ok_request_ids.append(body["request_id"])
    return body


def row_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as s:
        return s.scalar(select(func.count()).select_from(Classification)) or 0


def get_row(sessions: sessionmaker[Session], request_id: str) -> Classification | None:
    with sessions() as s:
        return s.scalar(select(Classification).where(Classification.request_id == request_id))
