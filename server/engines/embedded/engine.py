"""The embedded engine behind the API: the batched transformers runner (server.engines.embedded.runner)
served by the generic served engine (server.engines.served)."""

from __future__ import annotations

from typing import Any

from server.config import Settings
from server.engines.embedded.runner import BatchRunner
from server.engines.prompting import outlines_vocabulary
from server.engines.served import ServedEngine
from server.taxonomy import Taxonomy


class TransformersEngine(ServedEngine):
    """A `BatchRunner` behind the API, hot-swapped on promotion in registry mode."""

    name = "transformers"

    def __init__(self, settings: Settings, taxonomy: Taxonomy, runner: BatchRunner | None = None):
        super().__init__(
            settings, taxonomy, lambda adapter: BatchRunner(settings, taxonomy, adapter=adapter), runner=runner
        )

    def stats(self) -> dict[str, Any]:
        return {"label_head": None, **super().stats()} if self.runner is None else super().stats()


# The engine's name in `engine.kind` and on stored results stays "transformers"; the package says embedded.
EmbeddedEngine = TransformersEngine

__all__ = ["BatchRunner", "EmbeddedEngine", "TransformersEngine", "outlines_vocabulary"]
