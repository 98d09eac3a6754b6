"""Model engines. Offline callers (CLI, evaluation, fine-tuning, benchmarks) open a `Runner` with
`open_runner` and call it synchronously; the server serves one through `server.engines.served`.

Importing this package stays light (no torch): the heavy modules load when a runner is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from server.engines.base import AdapterChoice, Runner

if TYPE_CHECKING:
    from server.config import Settings
    from server.engines.embedded.runner import BatchRunner
    from server.taxonomy import Taxonomy


def open_runner(
    settings: Settings, taxonomy: Taxonomy, *, adapter: AdapterChoice = "resolve", configure_threads: bool = True
) -> Runner:
    """The runner the settings describe (`engine.kind`): base model + `adapter` ("resolve" = as the
    settings say). Applies the process-wide torch settings first unless `configure_threads` is False
    (a caller that opens several runners, or has applied them already)."""
    from server.engines.loading import set_torch_threads

    if configure_threads:
        set_torch_threads(settings.model)
    if settings.engine.kind == "outlines":
        from server.engines.outlines.reference import OutlinesReference

        return OutlinesReference(settings, taxonomy, adapter=adapter)
    if settings.engine.kind == "vllm":
        from server.engines.vllm.runner import VllmRunner

        return VllmRunner(settings, taxonomy, adapter=adapter)
    return open_batch_runner(settings, taxonomy, adapter=adapter, configure_threads=False)


def open_batch_runner(
    settings: Settings, taxonomy: Taxonomy, *, adapter: AdapterChoice = "resolve", configure_threads: bool = True
) -> BatchRunner:
    """The embedded transformers runner whatever `engine.kind` says, for the offline jobs that use its
    extras (`labels_only`, `record`, `features`, the label head): evaluation, calibration, head fitting."""
    from server.engines.embedded.runner import BatchRunner
    from server.engines.loading import set_torch_threads

    if configure_threads:
        set_torch_threads(settings.model)
    return BatchRunner(settings, taxonomy, adapter=adapter)


__all__ = ["Runner", "open_batch_runner", "open_runner"]
