"""Shared fixtures. Tests marked `model` use the real base model (converted by `make install`).

`pytest -m "not model"` is the fast lane. A test is marked `model` by hand (the real-process e2e
suites, the CLI) or, so that nobody can forget, by `pytest_collection_modifyitems` below whenever
its fixtures load the model (`runner`, `base_model_dir` and everything built on them)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from server.config import DEFAULT_BASE_MODEL_DIR, Settings, load_settings
from server.taxonomy import load_taxonomy

# Settings built by tests without their own storage.data_key_file share one throwaway keyring for the run,
# never the checkout's var/data.key (which `make run` creates and a developer must keep).
os.environ.setdefault(
    "TRIAGE_STORAGE__DATA_KEY_FILE", str(Path(tempfile.mkdtemp(prefix="triage-test-keys-")) / "data.key")
)

# The fake hosted APIs' fixtures (real HTTP servers speaking the providers' wire protocols) for every suite.
pytest_plugins = ["tests.fallback.fake_hosted"]

ROOT = Path(__file__).resolve().parent.parent
# What `make run` serves: the registry's active adapter and the prompt it was trained with. Pinned, not
# read from registry.json, so a registry with nothing promoted (or the wrong adapter) fails the tests
# that expect the shipped model instead of passing with None; a promotion updates these two lines.
ACTIVE_ADAPTER = "tickets-smollm2-v1"
ACTIVE_PROMPT = "classify/v2"
MODEL_FIXTURES = frozenset({"base_model_dir", "runner"})
SEED_TICKET = {
    "subject": "Can't log into my account after password reset",
    "body": "Hi, I reset my password an hour ago and now I get 'invalid credentials' every time I try to log in "
    "to the dashboard. I have a client demo in 2 hours and need access urgently. Please help!",
}


def fast_overrides(tmp: Path) -> dict:
    """Small text budgets keep a CPU classification to a few seconds; labels are decided the same way."""
    return {
        "database_url": f"sqlite:///{tmp / 'triage.db'}",
        "engine": {"max_string_tokens": 4, "max_reasoning_tokens": 6, "batch_wait_ms": 20, "max_batch_size": 8},
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def base_model_dir() -> Path:
    if not (DEFAULT_BASE_MODEL_DIR / "model.safetensors").is_file():
        pytest.fail(f"base model missing at {DEFAULT_BASE_MODEL_DIR}: run `make install`")
    return DEFAULT_BASE_MODEL_DIR


@pytest.fixture(scope="session")
def fast_settings(tmp_path_factory, base_model_dir) -> Settings:
    return load_settings(**fast_overrides(tmp_path_factory.mktemp("db")))


@pytest.fixture(scope="session")
def taxonomy():
    return load_taxonomy("tickets")


@pytest.fixture(scope="session")
def runner(fast_settings, taxonomy):
    """One real model for the whole session (loading costs seconds on CPU)."""
    from server.engines import open_batch_runner

    return open_batch_runner(fast_settings, taxonomy)
