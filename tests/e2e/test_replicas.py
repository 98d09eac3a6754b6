"""Two real API replicas (`triage serve` processes) on one PostgreSQL and one Redis, as compose and
Kubernetes run them: `triage migrate` once, then replicas with database_migrate_on_start=false and the
shared model registry (model.registry_backend: store). Each replica has its own empty adapter cache, so
whatever it serves came through the database.

- A promotion made once (the CLI, against the shared database) hot-swaps both replicas.
- A ticket classified on one replica is in the other's review queue, can be corrected there, and its
  correction is read back on the first: no replica holds state of its own that matters."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import READY_TIMEOUT_S, ROOT, ServerProc, clean_env, triage_command
from tests.store.conftest import pg_schema

pytestmark = pytest.mark.model

SEEDED = "tickets-smollm2-v1"  # the active adapter of models/registry.json: what `triage migrate` seeds
PROMOTED = "tickets-smollm2-v2"


@dataclass
class Replica(ServerProc):
    shared_url: str = ""
    shared_key: Path | None = None

    @property
    def db_url(self) -> str:
        return self.shared_url

    @property
    def data_key_file(self) -> Path:
        assert self.shared_key is not None
        return self.shared_key


def adapter_of(replica: ServerProc) -> str | None:
    return httpx.get(f"{replica.base_url}/health", timeout=10).json()["model"]["adapter"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[dict[str, str], list[Replica]]]:
    with pg_schema() as url:
        yield from _cluster(url, tmp_path_factory.mktemp("replicas"))


def _cluster(url: str, work: Path) -> Iterator[tuple[dict[str, str], list[Replica]]]:
    shared = {
        "TRIAGE_MODEL__REGISTRY_BACKEND": "store",
        "TRIAGE_MODEL__WATCH_REGISTRY_S": "0.5",
        "TRIAGE_DATABASE_MIGRATE_ON_START": "false",
        "TRIAGE_CACHE__BACKEND": "redis",
        "TRIAGE_CACHE__KEY_PREFIX": f"triage-test-{uuid.uuid4().hex[:12]}",
        # Every ticket goes to review (no hosted fallback): the review queue is what is shared.
        "TRIAGE_ROUTING__CONFIDENCE_THRESHOLD": "1.5",
    }
    cli_env = clean_env(
        TRIAGE_DATABASE_URL=url,
        TRIAGE_STORAGE__DATA_KEY_FILE=str(work / "data.key"),
        TRIAGE_MODEL__ADAPTER_CACHE_DIR=str(work / "cli-cache"),
        **shared,
    )
    replicas = [
        Replica(
            name,
            work / name,
            {
                **shared,
                # No adapter folder of its own (an empty models/ beside a registry path that does not exist):
                # what it serves must come out of the database.
                "TRIAGE_MODEL__REGISTRY": str(work / name / "models" / "registry.json"),
                "TRIAGE_MODEL__ADAPTER_CACHE_DIR": str(work / name / "adapters"),
            },
            shared_url=url,
            shared_key=work / "data.key",
        )
        for name in ("a", "b")
    ]
    try:
        migrated = subprocess.run(
            [*triage_command(), "migrate"], cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=300
        )
        assert migrated.returncode == 0, migrated.stderr
        assert f"started with {SEEDED}" in migrated.stdout
        for r in replicas:
            r.workdir.mkdir(parents=True, exist_ok=True)
            r.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        for r in replicas:
            r.wait_ready(deadline)
        yield cli_env, replicas
    finally:
        for r in replicas:
            r.stop()


def classify(replica: ServerProc, ticket_id: str) -> dict:
    r = httpx.post(
        f"{replica.base_url}/v1/classify",
        json={
            "ticket_id": ticket_id,
            "subject": "Invoice charged twice",
            "body": "I was billed twice for my subscription this month, please refund one payment.",
        },
        timeout=300,
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_a_promotion_hot_swaps_every_replica(cluster):
    cli_env, replicas = cluster
    assert [adapter_of(r) for r in replicas] == [SEEDED, SEEDED]
    for r in replicas:  # served from each replica's own cache, materialised from the database
        assert list((r.workdir / "adapters").glob(f"{SEEDED}@*/adapter_model.safetensors"))

    # The shipped v2's gate verdict is "no": forced here on a throwaway test database, with a reason.
    promoted = subprocess.run(
        [*triage_command(), "models", "promote", PROMOTED, "--force", "--reason", "replica hot-swap test"],
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert promoted.returncode == 0, promoted.stderr
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and [adapter_of(r) for r in replicas] != [PROMOTED, PROMOTED]:
        time.sleep(1)
    assert [adapter_of(r) for r in replicas] == [PROMOTED, PROMOTED], [r.log_text()[-2000:] for r in replicas]
    for i, r in enumerate(replicas):
        out = classify(r, f"swap-{i}-{uuid.uuid4().hex[:6]}")
        assert out["model"]["adapter"] == PROMOTED


def test_review_queue_and_corrections_are_shared(cluster):
    _, (a, b) = cluster
    ticket = f"shared-{uuid.uuid4().hex[:8]}"
    answered = classify(a, ticket)
    assert answered["needs_review"] is True

    queue = httpx.get(f"{b.base_url}/v1/review", params={"limit": 200}, timeout=30).json()
    assert ticket in {item["ticket_id"] for item in queue["items"]}

    correction = "Technical" if answered["category"] != "Technical" else "Billing"
    fb = httpx.post(
        f"{b.base_url}/v1/feedback",
        json={"ticket_id": ticket, "category": correction, "reviewer": "replica-b"},
        timeout=30,
    )
    assert fb.status_code == 201, fb.text
    assert fb.json()["request_id"] == answered["request_id"]

    read = httpx.get(f"{a.base_url}/v1/results/{answered['request_id']}", timeout=30)
    assert read.status_code == 200, read.text
    assert [f["corrections"]["category"] for f in read.json()["feedback"]] == [correction]
