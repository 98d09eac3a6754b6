"""The vLLM servers as one failover list (no load balancing: that is the deployment's load balancer's job).

A request goes to the first replica believed healthy; a connection error, a timeout or a 5xx marks
that replica dead and the request moves on to the next one within the ticket's deadline. A dead
replica is skipped until its `/health` answers 200 again (probed at most every `health_interval_s`).
Every failure ends as a `VllmError` the runner turns into the ticket's EngineError.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from server.config import VllmSettings

log = logging.getLogger(__name__)


class VllmError(RuntimeError):
    """A request no replica answered usefully (the message says why)."""


class UnknownModel(VllmError):
    """A replica does not serve the requested model (adapter) name: HTTP 404."""

    def __init__(self, message: str, url: str):
        super().__init__(message)
        self.url = url


@dataclass
class Replica:
    url: str
    healthy: bool = True
    checked_at: float = 0.0  # last /health probe (monotonic)
    failures: int = 0


class ReplicaPool:
    """Thread-safe: the runner posts from a pool of worker threads."""

    def __init__(self, settings: VllmSettings):
        self.settings = settings
        self.replicas = [Replica(url.rstrip("/")) for url in settings.urls]
        headers = {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"} if settings.api_key else {}
        self._http = httpx.Client(
            headers=headers,
            limits=httpx.Limits(
                max_connections=settings.concurrency + 8, max_keepalive_connections=settings.concurrency
            ),
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    # -- health ---------------------------------------------------------------------------------
    def probe(self, replica: Replica) -> bool:
        try:
            ok = self._http.get(f"{replica.url}/health", timeout=self.settings.connect_timeout_s).status_code == 200
        except httpx.HTTPError:
            ok = False
        with self._lock:
            replica.checked_at = time.monotonic()
            if ok and not replica.healthy:
                log.info("vLLM replica %s is healthy again", replica.url)
            replica.healthy = ok
        return ok

    def mark_dead(self, replica: Replica, why: str) -> None:
        with self._lock:
            if replica.healthy:
                log.warning("vLLM replica %s marked dead: %s", replica.url, why)
            replica.healthy, replica.checked_at = False, time.monotonic()
            replica.failures += 1

    def candidates(self) -> list[Replica]:
        """Replicas to try, in configured order: the healthy ones, plus dead ones whose probe is due and passes."""
        now = time.monotonic()
        out = []
        for replica in self.replicas:
            if replica.healthy:
                out.append(replica)
            elif now - replica.checked_at >= self.settings.health_interval_s and self.probe(replica):
                out.append(replica)
        return out

    # -- requests -------------------------------------------------------------------------------
    def post(self, path: str, body: dict[str, Any], deadline: float) -> tuple[Replica, dict[str, Any]]:
        """POST to the first replica that answers 2xx before `deadline` (monotonic); its JSON body."""
        errors: list[str] = []
        for replica in self.candidates():
            left = deadline - time.monotonic()
            if left <= 0:
                errors.append("deadline passed")
                break
            budget = min(left, self.settings.attempt_timeout_s)
            timeout = httpx.Timeout(budget, connect=min(budget, self.settings.connect_timeout_s))
            try:
                resp = self._http.post(f"{replica.url}{path}", json=body, timeout=timeout)
            except httpx.TimeoutException as exc:
                self.mark_dead(replica, f"timeout after {budget:.1f}s ({type(exc).__name__})")
                errors.append(f"{replica.url}: timeout after {budget:.1f}s")
                continue
            except httpx.HTTPError as exc:
                self.mark_dead(replica, f"{type(exc).__name__}: {exc}")
                errors.append(f"{replica.url}: {type(exc).__name__}: {exc}")
                continue
            if resp.status_code >= 500:
                self.mark_dead(replica, f"HTTP {resp.status_code}")
                errors.append(f"{replica.url}: HTTP {resp.status_code}: {resp.text[:200]}")
                continue
            if resp.status_code == 404:
                raise UnknownModel(f"{replica.url}: HTTP 404: {_message(resp)}", replica.url)
            if resp.status_code >= 400:
                # The request itself is wrong (the same on every replica): no failover.
                raise VllmError(f"{replica.url}: HTTP {resp.status_code}: {_message(resp)}")
            try:
                data = resp.json()
            except ValueError:
                raise VllmError(f"{replica.url}: the response is not JSON: {resp.text[:200]!r}") from None
            if not isinstance(data, dict):
                raise VllmError(f"{replica.url}: the response is not a JSON object: {resp.text[:200]!r}")
            return replica, data
        raise VllmError("no vLLM replica answered: " + ("; ".join(errors) or "none is healthy"))

    def post_to(self, replica: Replica, path: str, body: dict[str, Any], timeout_s: float) -> httpx.Response:
        """One request to one replica (adapter management), no failover."""
        return self._http.post(f"{replica.url}{path}", json=body, timeout=timeout_s)

    def models(self, replica: Replica, timeout_s: float) -> set[str]:
        """The model names a replica serves (its base and the loaded LoRA adapters)."""
        resp = self._http.get(f"{replica.url}/v1/models", timeout=timeout_s)
        resp.raise_for_status()
        return {str(m.get("id")) for m in resp.json().get("data", [])}


def _message(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error", {})
        return str(err.get("message") if isinstance(err, dict) else err)[:300]
    except (ValueError, AttributeError):
        return resp.text[:300]
