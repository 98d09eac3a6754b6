"""Settings: defaults, precedence (explicit > env > YAML > defaults) and refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.config import DEFAULT_BASE_MODEL_DIR, PROJECT_ROOT, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No TRIAGE_* variable of the caller's shell may leak into these tests."""
    for key in list(os.environ):
        if key.upper().startswith("TRIAGE_"):
            monkeypatch.delenv(key, raising=False)


def write_yaml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults ---------------------------------------------------------------------------------


def test_defaults():
    s = load_settings()
    assert s.config_file is None
    assert s.taxonomy == "tickets"
    assert s.database_url == f"sqlite:///{PROJECT_ROOT / 'var' / 'triage.db'}"
    assert s.model.base == str(DEFAULT_BASE_MODEL_DIR)
    assert s.model.adapter == "registry"  # the active adapter of models/registry.json (none if nothing is promoted)
    assert s.model.dtype == "auto"
    assert s.model.threads is None
    assert s.engine.kind == "transformers"
    assert s.engine.max_batch_size == 32
    assert s.engine.batch_wait_ms == 5.0
    assert s.engine.max_queue == 1024
    assert s.engine.request_timeout_s == 300.0
    assert s.engine.prefix_cache is True
    assert s.engine.max_string_tokens == 16
    assert s.engine.max_reasoning_tokens == 48
    assert s.prompt.dir == PROJECT_ROOT / "prompts"  # the package data of an editable install: the repository folder
    assert s.prompt.version == "v1"
    assert s.prompt.review_version == "auto"  # the classify version's review prompt
    assert s.prompt.max_body_tokens == 768
    assert s.prompt.max_history_tokens == 256
    assert s.api.host == "127.0.0.1"
    assert s.api.port == 8000
    assert s.api.max_batch_items == 256
    assert s.api.max_ticket_bytes == 100_000
    assert s.api.max_history_items == 50
    assert s.routing.confidence_threshold == 0.5


def test_default_prompt_dir_exists():
    assert (load_settings().prompt.dir / "classify" / "v1.jinja").is_file()


# -- environment ------------------------------------------------------------------------------


def test_env_override_with_prefix_and_nested_delimiter(monkeypatch):
    monkeypatch.setenv("TRIAGE_MODEL__BASE", "/somewhere/else")
    monkeypatch.setenv("TRIAGE_ENGINE__MAX_BATCH_SIZE", "7")
    monkeypatch.setenv("TRIAGE_ROUTING__CONFIDENCE_THRESHOLD", "1.5")  # > 1 is allowed: flags every ticket
    monkeypatch.setenv("TRIAGE_TAXONOMY", "/tmp/banking.yaml")
    s = load_settings()
    assert s.model.base == "/somewhere/else"
    assert s.engine.max_batch_size == 7
    assert isinstance(s.engine.max_batch_size, int)
    assert s.routing.confidence_threshold == 1.5
    assert s.taxonomy == "/tmp/banking.yaml"
    # siblings of an overridden nested value keep their defaults
    assert s.model.dtype == "auto"
    assert s.engine.max_queue == 1024


def test_env_without_prefix_is_ignored(monkeypatch):
    monkeypatch.setenv("ENGINE__MAX_BATCH_SIZE", "3")
    monkeypatch.setenv("MAX_BATCH_SIZE", "3")
    assert load_settings().engine.max_batch_size == 32


def test_env_invalid_value_refused(monkeypatch):
    monkeypatch.setenv("TRIAGE_ENGINE__MAX_BATCH_SIZE", "many")
    with pytest.raises(ValidationError):
        load_settings()


# -- YAML file --------------------------------------------------------------------------------

YAML_TEXT = """\
taxonomy: banking
model:
  base: /models/yaml-base
  dtype: float32
engine:
  max_batch_size: 12
  batch_wait_ms: 3
routing:
  confidence_threshold: 0.8
"""


def test_yaml_file_via_load_settings(tmp_path):
    path = write_yaml(tmp_path / "triage.yaml", YAML_TEXT)
    s = load_settings(path)
    assert s.config_file == path
    assert s.taxonomy == "banking"
    assert s.model.base == "/models/yaml-base"
    assert s.model.dtype == "float32"
    assert s.engine.max_batch_size == 12
    assert s.engine.batch_wait_ms == 3.0
    assert s.routing.confidence_threshold == 0.8
    assert s.engine.max_queue == 1024  # not in the file: default


def test_yaml_file_as_str_path(tmp_path):
    path = write_yaml(tmp_path / "triage.yaml", YAML_TEXT)
    assert load_settings(str(path)).engine.max_batch_size == 12


def test_yaml_file_via_env(monkeypatch, tmp_path):
    path = write_yaml(tmp_path / "triage.yaml", YAML_TEXT)
    monkeypatch.setenv("TRIAGE_CONFIG_FILE", str(path))
    s = load_settings()
    assert s.engine.max_batch_size == 12
    assert s.model.base == "/models/yaml-base"


def test_env_beats_yaml(monkeypatch, tmp_path):
    path = write_yaml(tmp_path / "triage.yaml", YAML_TEXT)
    monkeypatch.setenv("TRIAGE_ENGINE__MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("TRIAGE_TAXONOMY", "tickets")
    s = load_settings(path)
    assert s.engine.max_batch_size == 16
    assert s.taxonomy == "tickets"
    # the rest of the nested section still comes from the file
    assert s.engine.batch_wait_ms == 3.0
    assert s.model.base == "/models/yaml-base"


def test_explicit_args_beat_env_and_yaml(monkeypatch, tmp_path):
    path = write_yaml(tmp_path / "triage.yaml", YAML_TEXT)
    monkeypatch.setenv("TRIAGE_ENGINE__MAX_BATCH_SIZE", "16")
    monkeypatch.setenv("TRIAGE_ENGINE__MAX_QUEUE", "99")
    monkeypatch.setenv("TRIAGE_TAXONOMY", "from-env")
    s = load_settings(path, engine={"max_batch_size": 4}, taxonomy="explicit")
    assert s.engine.max_batch_size == 4
    assert s.taxonomy == "explicit"
    assert s.engine.max_queue == 99  # env, not overridden explicitly
    assert s.engine.batch_wait_ms == 3.0  # YAML


def test_explicit_config_file_beats_env_config_file(monkeypatch, tmp_path):
    env_file = write_yaml(tmp_path / "env.yaml", "engine:\n  max_batch_size: 2\n")
    arg_file = write_yaml(tmp_path / "arg.yaml", "engine:\n  max_batch_size: 3\n")
    monkeypatch.setenv("TRIAGE_CONFIG_FILE", str(env_file))
    assert load_settings(arg_file).engine.max_batch_size == 3


def test_missing_config_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "nope.yaml")


def test_missing_config_file_from_env_raises(monkeypatch, tmp_path):
    monkeypatch.setenv("TRIAGE_CONFIG_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(FileNotFoundError):
        load_settings()


def test_unknown_key_in_yaml_refused(tmp_path):
    path = write_yaml(tmp_path / "triage.yaml", "engine:\n  max_batch_size: 4\nbogus_key: 1\n")
    with pytest.raises(ValidationError):
        load_settings(path)


def test_unknown_nested_key_in_yaml_refused(tmp_path):
    path = write_yaml(tmp_path / "triage.yaml", "engine:\n  max_batch_sise: 4\n")
    with pytest.raises(ValidationError):
        load_settings(path)


# -- refusals ---------------------------------------------------------------------------------


def test_unknown_top_level_key_refused():
    with pytest.raises(ValidationError):
        load_settings(bogus=1)


def test_negative_threshold_refused():
    with pytest.raises(ValidationError):
        load_settings(routing={"confidence_threshold": -0.1})


def test_threshold_bounds_accepted():
    assert load_settings(routing={"confidence_threshold": 0.0}).routing.confidence_threshold == 0.0
    assert load_settings(routing={"confidence_threshold": 1.5}).routing.confidence_threshold == 1.5


def test_zero_batch_size_refused():
    with pytest.raises(ValidationError):
        load_settings(engine={"max_batch_size": 0})


def test_batch_size_above_limit_refused():
    with pytest.raises(ValidationError):
        load_settings(engine={"max_batch_size": 513})


@pytest.mark.parametrize(
    "overrides",
    [
        {"engine": {"kind": "tgi"}},
        {"vllm": {"urls": []}},
        {"engine": {"max_queue": 0}},
        {"engine": {"request_timeout_s": 0}},
        {"engine": {"batch_wait_ms": -1}},
        {"model": {"dtype": "float16"}},
        {"model": {"threads": 0}},
        {"prompt": {"max_body_tokens": 16}},
        {"api": {"port": 0}},
        {"api": {"port": 70000}},
        {"api": {"max_ticket_bytes": 10}},
    ],
)
def test_other_invalid_values_refused(overrides):
    with pytest.raises(ValidationError):
        load_settings(**overrides)


@pytest.mark.parametrize("url", ["mysql://x", "", "oracle://db", "http://sqlite"])
def test_unknown_database_refused(url):
    with pytest.raises(ValidationError):
        load_settings(database_url=url)


@pytest.mark.parametrize("url", ["sqlite:///tmp/x.db", "postgresql+psycopg://u@h:5432/db", "postgresql://u@h/db"])
def test_known_databases_accepted(url):
    assert load_settings(database_url=url).database_url == url


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_database_on_public_host_refused(url):
    with pytest.raises(ValidationError, match="in-memory"):
        load_settings(database_url=url, api={"host": "0.0.0.0"})


def test_in_memory_database_on_public_host_from_env_refused(monkeypatch):
    monkeypatch.setenv("TRIAGE_DATABASE_URL", "sqlite://")
    monkeypatch.setenv("TRIAGE_API__HOST", "0.0.0.0")
    with pytest.raises(ValidationError):
        load_settings()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_in_memory_database_on_localhost_allowed(host):
    s = load_settings(database_url="sqlite://", api={"host": host})
    assert s.database_url == "sqlite://"


def test_settings_class_directly_reads_env(monkeypatch):
    monkeypatch.setenv("TRIAGE_API__PORT", "9001")
    assert Settings().api.port == 9001


# -- variants -----------------------------------------------------------------------------------


def test_settings_are_frozen_and_variants_are_validated(monkeypatch):
    settings = load_settings(fallback={"api_key": "sk-kept"})
    with pytest.raises(ValidationError, match="frozen"):
        settings.model.adapter = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        settings.taxonomy = "banking77"  # type: ignore[misc]

    variant = settings.variant(model={"adapter": "none"}, engine={"max_batch_size": 3}, taxonomy="banking77")
    assert (variant.model.adapter, variant.engine.max_batch_size, variant.taxonomy) == ("none", 3, "banking77")
    assert settings.model.adapter == "registry" and settings.taxonomy == "tickets"  # the original is untouched
    assert variant.model.base == settings.model.base  # the keys not named are kept
    assert variant.fallback.api_key is not None and variant.fallback.api_key.get_secret_value() == "sk-kept"
    # What was not given stays "not given": the adapter's trained prompt version still applies to a variant.
    assert "version" not in variant.prompt.model_fields_set and "adapter" in variant.model.model_fields_set
    assert "max_batch_size" in variant.engine.model_fields_set and "kind" not in variant.engine.model_fields_set

    # A variant is validated like the settings it comes from (model_copy(update=...) would accept these).
    with pytest.raises(ValidationError, match="max_batch_size"):
        settings.variant(engine={"max_batch_size": 0})
    with pytest.raises(ValidationError, match="misspelt|Extra inputs"):
        settings.variant(engine={"misspelt": 1})
    with pytest.raises(ValueError, match="unknown settings key"):
        settings.variant(modle={"adapter": "x"})

    # The environment is read once, when the settings are loaded, not again for a variant.
    monkeypatch.setenv("TRIAGE_TAXONOMY", "clinc150")
    assert settings.variant().taxonomy == "tickets"


def test_engine_kind_embedded_is_the_transformers_engine():
    assert load_settings(engine={"kind": "embedded"}).engine.kind == "transformers"
    assert load_settings(engine={"kind": "vllm"}).engine.kind == "vllm"
