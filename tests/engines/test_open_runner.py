"""The offline entry point: `open_runner` builds the runner `engine.kind` names and applies the
process-wide torch settings once, up front (model loading itself no longer touches them)."""

from __future__ import annotations

from typing import Any

import pytest

import server.engines.embedded.runner as runner_module
import server.engines.loading as loading
import server.engines.outlines.reference as outlines_reference
from server.config import load_settings
from server.engines import open_batch_runner, open_runner


class Built:
    def __init__(self, settings: Any, taxonomy: Any, *, adapter: Any = "resolve"):
        self.settings, self.taxonomy, self.adapter = settings, taxonomy, adapter


@pytest.fixture
def threads(monkeypatch) -> list[int]:
    calls: list[int] = []
    monkeypatch.setattr(loading.torch, "set_num_threads", calls.append)
    monkeypatch.setattr(runner_module, "BatchRunner", type("BatchRunner", (Built,), {}))
    monkeypatch.setattr(outlines_reference, "OutlinesReference", type("OutlinesReference", (Built,), {}))
    return calls


def settings_for(tmp_path, kind: str = "transformers", threads: int | None = 3):
    return load_settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", engine={"kind": kind}, model={"threads": threads}
    )


@pytest.mark.parametrize("kind", ["transformers", "outlines"])
def test_open_runner_builds_the_configured_kind_and_sets_threads_once(tmp_path, taxonomy, threads, kind):
    runner = open_runner(settings_for(tmp_path, kind), taxonomy, adapter=None)
    assert type(runner).__name__ == {"transformers": "BatchRunner", "outlines": "OutlinesReference"}[kind]
    assert runner.adapter is None  # type: ignore[attr-defined]
    assert threads == [3]


def test_threads_are_left_alone_when_unset_or_declined(tmp_path, taxonomy, threads):
    open_runner(settings_for(tmp_path, threads=None), taxonomy)
    open_runner(settings_for(tmp_path), taxonomy, configure_threads=False)
    assert threads == []


def test_open_batch_runner_ignores_the_engine_kind(tmp_path, taxonomy, threads):
    runner = open_batch_runner(settings_for(tmp_path, "outlines"), taxonomy)
    assert type(runner).__name__ == "BatchRunner" and threads == [3]
