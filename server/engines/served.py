"""The served engine: any `Runner` behind the API, continuously batched through one bounded queue.

In registry mode it hot-swaps the adapter on promotion: the new runner loads beside the old one, the
decode loop stops admitting, tickets in flight finish on the old runner (their answers say so, see
`served_by`), and the next loop runs on the new one. A failed load leaves the old one serving.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from server.config import Settings
from server.engines.base import (
    AdapterChoice,
    Deliver,
    Engine,
    EngineUnavailable,
    Item,
    ModelInfo,
    Outcome,
    Runner,
    Take,
    stamp,
)
from server.engines.batcher import Batcher, ServiceEstimate
from server.engines.loading import set_torch_threads
from server.registry import AdapterEntry, Registry, open_registry, resolve_adapter
from server.taxonomy import Taxonomy

log = logging.getLogger(__name__)

# Builds a runner for an adapter (on a worker thread: loading takes seconds).
OpenRunner = Callable[[AdapterChoice], Runner]


class ServedEngine(Engine):
    name = "served"
    unloaded_dtype = "unloaded"  # what /health says before a model is loaded

    def __init__(self, settings: Settings, taxonomy: Taxonomy, open_runner: OpenRunner, runner: Runner | None = None):
        self.settings = settings
        self.taxonomy = taxonomy
        self.runner = runner
        self._open = open_runner
        self.load_error: str | None = None
        self.swap_error: str | None = None
        self.swaps = 0
        # Swap state, shared with the decode thread: a pending runner is installed only while no loop runs.
        self._lock = threading.Lock()
        self._next: Runner | None = None
        self._looping = False
        self._batcher: Batcher[Item, Outcome] | None = None
        self._registry: Registry | None = None
        self._seen = ""
        self._watcher: asyncio.Task[None] | None = None
        # One poll at a time (the watcher and an explicit caller): a poll returns once what it saw is applied.
        self._polling = asyncio.Lock()

    async def start(self) -> None:
        set_torch_threads(self.settings.model)  # process-wide, once at start-up
        if self.runner is None:
            started = time.perf_counter()
            try:
                self.runner = await asyncio.to_thread(self._open, "resolve")
            except Exception as exc:
                self.load_error = f"{type(exc).__name__}: {exc}"
                log.exception("model failed to load")
                return
            info = self.runner.info
            log.info("model loaded in %.1fs (%s, adapter %s)", time.perf_counter() - started, info.dtype, info.adapter)
        e = self.settings.engine
        self._batcher = Batcher(
            self._run_stream,
            max_batch=e.max_batch_size,
            wait_ms=e.batch_wait_ms,
            max_queue=e.max_queue,
            name=self.name,
            # Requests carry no deadline of their own: the pipeline's deadline is the one to keep.
            deadline_s=e.request_timeout_s if e.admission else None,
            estimate=ServiceEstimate(window_s=e.admission_window_s),
        )
        self._batcher.start()
        m = self.settings.model
        if m.adapter == "registry":
            self._registry = open_registry(m)
            # The version seen now, not when the watcher first looks: a promotion in between must count.
            self._seen = await asyncio.to_thread(self._registry.version)
            if m.watch_registry_s > 0:
                self._watcher = asyncio.get_running_loop().create_task(self._watch_registry(m.watch_registry_s))

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
        if self._batcher:
            await self._batcher.stop()

    # -- hot swap -------------------------------------------------------------------------------
    def _install(self, runner: Runner) -> None:
        """Caller holds the lock and no decode loop is running."""
        self.runner, self._next = runner, None
        self.swaps += 1
        log.info("now serving adapter %s", runner.info.adapter)

    def _run_stream(self, take: Take, deliver: Deliver) -> None:
        with self._lock:  # a swap asked for while no loop ran is installed already
            runner = self.runner
            self._looping = True
        assert runner is not None
        info = runner.info
        first = True

        def gated_take(k: int) -> list[tuple[Any, Item]]:
            nonlocal first
            # The loop's first take must run (it holds the ticket that woke the loop); afterwards a
            # pending swap stops admission so the loop drains and returns.
            if self._next is not None and not first:
                return []
            first = False
            return take(k)

        try:
            runner.run_stream(gated_take, lambda key, outcome: deliver(key, stamp(outcome, info)))
        finally:
            with self._lock:
                self._looping = False
                if self._next is not None:  # nothing in flight now: no need to wait for the next ticket
                    self._install(self._next)

    async def swap_to(self, adapter: AdapterEntry | None) -> None:
        """Load `adapter` beside the serving runner and switch to it once nothing runs on the old one."""
        try:
            new = await asyncio.to_thread(self._open, adapter)
        except Exception as exc:
            self.swap_error = f"{type(exc).__name__}: {exc}"
            log.exception(
                "hot swap to %s failed; still serving %s", adapter.name if adapter else "base", self.adapter_name
            )
            return
        self.swap_error = None
        self.install(new)

    def install(self, runner: Runner) -> None:
        """Serve `runner` from the next decode loop on (now, if none runs)."""
        with self._lock:
            self._next = runner
            if not self._looping:
                self._install(runner)

    async def poll_registry(self) -> None:
        """One look at the registry: swap if its active adapter is not the one served. Returns once a change
        it or a concurrent poll saw has been applied (or has failed, see `swap_error`)."""
        if self._registry is None:
            return
        async with self._polling:
            await self._poll_registry()

    async def _poll_registry(self) -> None:
        assert self._registry is not None
        # Off the event loop: the shared registry is a database read, and a new adapter is materialised from it.
        now = await asyncio.to_thread(self._registry.version)
        if now == self._seen:
            return
        self._seen = now
        try:
            entry = await asyncio.to_thread(resolve_adapter, self.settings.model)
        except Exception as exc:  # e.g. the index names a missing adapter: keep serving, say so in /health
            self.swap_error = f"{type(exc).__name__}: {exc}"
            log.error("registry names an adapter that cannot be used; still serving %s: %s", self.adapter_name, exc)
            return
        if (entry.name if entry else None) != self.adapter_name:
            log.info("registry changed: loading adapter %s", entry.name if entry else "none (base)")
            await self.swap_to(entry)

    async def _watch_registry(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.poll_registry()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad registry edit must not kill the server; the old model keeps serving
                log.exception("registry check failed")

    # -- Engine ---------------------------------------------------------------------------------
    async def classify(self, tickets: Sequence[Item]) -> list[Outcome]:
        if self._batcher is None or not self.ready:
            raise EngineUnavailable(self.load_error or "model not loaded")
        return await self._batcher.submit(list(tickets))

    @property
    def supports_review(self) -> bool:
        return self.runner is not None and self.runner.supports_review

    @property
    def ready(self) -> bool:
        return self.runner is not None and self._batcher is not None and self._batcher.running

    @property
    def adapter_name(self) -> str | None:
        return self.runner.info.adapter if self.runner else None

    @property
    def info(self) -> ModelInfo:
        if self.runner is not None:
            return self.runner.info
        return ModelInfo(self.settings.model.base, None, self.unloaded_dtype, self.name)

    @property
    def prompt_version(self) -> str:
        return self.runner.prompt_version if self.runner else f"classify/{self.settings.prompt.version}"

    def stats(self) -> dict[str, Any]:
        stats = dict(self._batcher.stats()) if self._batcher else {}
        stats["adapter_swaps"] = self.swaps
        if self.runner is not None:
            stats.update(self.runner.stats())
        if self.swap_error:
            stats["swap_error"] = self.swap_error
        return stats
