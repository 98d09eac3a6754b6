"""The vLLM engine behind the API: the vLLM runner served by the generic served engine.

In registry mode a promotion opens a new runner for the new adapter (server.engines.served), which loads
it into every replica at runtime (`/v1/load_lora_adapter`) before it is installed: until then requests
keep naming the old adapter, which every replica still serves. One replica pool is shared by all the
runners, so health state survives a swap."""

from __future__ import annotations

from server.config import Settings
from server.engines.base import AdapterChoice
from server.engines.served import ServedEngine
from server.engines.vllm.client import ReplicaPool
from server.engines.vllm.runner import VllmRunner
from server.taxonomy import Taxonomy


class VllmEngine(ServedEngine):
    name = "vllm"
    unloaded_dtype = "vllm"

    def __init__(self, settings: Settings, taxonomy: Taxonomy, runner: VllmRunner | None = None):
        self.pool = runner.pool if runner is not None else ReplicaPool(settings.vllm)

        def open_runner(adapter: AdapterChoice) -> VllmRunner:
            return VllmRunner(settings, taxonomy, adapter=adapter, pool=self.pool)

        super().__init__(settings, taxonomy, open_runner, runner=runner)

    async def stop(self) -> None:
        await super().stop()
        self.pool.close()
