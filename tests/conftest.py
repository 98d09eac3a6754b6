"""Shared fixtures. Tests marked `model` use the real base model (converted by `make install`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from server.config import DEFAULT_BASE_MODEL_DIR, Settings, load_settings
from server.taxonomy import load_taxonomy

# The fake hosted APIs' fixtures (real HTTP servers speaking the providers' wire protocols) for every suite.
pytest_plugins = ["tests.fallback.fake_hosted"]

ROOT = Path(__file__).resolve().parent.parent
# What `make run` serves: the registry's active adapter and the prompt it was trained with.
_REGISTRY = json.loads((ROOT / "models" / "registry.json").read_text())
ACTIVE_ADAPTER: str | None = _REGISTRY["active"]
ACTIVE_PROMPT = (
    json.loads((ROOT / "models" / "adapters" / ACTIVE_ADAPTER / "manifest.json").read_text())["prompt_version"]
    if ACTIVE_ADAPTER
    else "classify/v1"
)
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
    from server.engines.transformers_engine import BatchRunner

    return BatchRunner(fast_settings, taxonomy)
