"""The embedded engine: transformers in this process, on the CPU or one GPU (`model.device`).

`runner.BatchRunner` is the synchronous runner (continuous batching, shared-prefix KV cache,
jump-forward constrained decoding); `engine.TransformersEngine` serves it behind the API.
Importing this package loads torch."""

from server.engines.embedded.engine import EmbeddedEngine, TransformersEngine
from server.engines.embedded.runner import BatchRunner

__all__ = ["BatchRunner", "EmbeddedEngine", "TransformersEngine"]
