"""One settings object for the whole service, read once and passed down.

Sources, highest precedence first: explicit arguments, environment (`TRIAGE_` prefix, `__` for
nesting, e.g. `TRIAGE_MODEL__BASE`), an optional YAML file (`TRIAGE_CONFIG_FILE` or `--config`),
then the defaults below. Nothing else in the code base reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE_MODEL_DIR = PROJECT_ROOT / "models" / "base" / "smollm2-135m-instruct"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key must fail loudly, not fall back to a default


class ModelSettings(_Section):
    base: str = Field(
        default=str(DEFAULT_BASE_MODEL_DIR),
        description="HF model id or local folder of the base model (converted safetensors).",
    )
    adapter: str | None = Field(default=None, description="Folder of a LoRA adapter, or none.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="auto = bf16 only where the CPU has native bf16 (AMX/AVX512-BF16); emulated bf16 is slower than fp32.",
    )
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads; default: all cores.")


class EngineSettings(_Section):
    kind: Literal["transformers", "outlines"] = Field(
        default="transformers",
        description="transformers = the batched embedded engine; outlines = plain Outlines generation, one ticket at a time (the reference).",
    )
    max_batch_size: int = Field(default=32, ge=1, le=512)
    batch_wait_ms: float = Field(default=5.0, ge=0, description="How long the first queued ticket waits for company.")
    max_queue: int = Field(default=1024, ge=1, description="Queued tickets beyond this get 429.")
    admit_fraction: float = Field(
        default=0.5, gt=0, le=1, description="Continuous batching admits new tickets once this share of the batch slots is free (each admission stalls decoding for its prefill)."
    )
    request_timeout_s: float = Field(default=300.0, gt=0, description="Past this a request returns a stored needs_review failure.")
    prefix_cache: bool = Field(default=True, description="Reuse the KV cache of the static prompt prefix.")
    max_string_tokens: int = Field(default=16, ge=1, description="Budget for short free-text fields (product, error_code).")
    max_reasoning_tokens: int = Field(default=48, ge=1, description="Reviewed reasoning sentences are <= 32 tokens.")


class PromptSettings(_Section):
    dir: Path = PROJECT_ROOT / "prompts"
    version: str = "v1"
    review_version: str = "v1"
    max_body_tokens: int = Field(default=768, ge=32, description="Body beyond this keeps its head and tail.")
    max_history_tokens: int = Field(default=256, ge=0, description="Budget for previous interactions, newest first.")


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_batch_items: int = Field(default=256, ge=1)
    max_ticket_bytes: int = Field(default=100_000, ge=1024, description="Per ticket (subject+body+history, UTF-8); beyond: 413.")
    max_history_items: int = Field(default=50, ge=0)


class RoutingSettings(_Section):
    confidence_threshold: float = Field(
        default=0.5, ge=0.0, description="A label field under this gets needs_review; above 1 flags every ticket."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_nested_delimiter="__", extra="forbid")

    config_file: Path | None = Field(default=None, description="Optional YAML file with any of these settings.")
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'triage.db'}"
    taxonomy: str = Field(default="tickets", description="Built-in taxonomy name or path to a taxonomy YAML file.")
    model: ModelSettings = ModelSettings()
    engine: EngineSettings = EngineSettings()
    prompt: PromptSettings = PromptSettings()
    api: ApiSettings = ApiSettings()
    routing: RoutingSettings = RoutingSettings()

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, v: str) -> str:
        if not v.startswith(("sqlite", "postgresql")):
            raise ValueError("database_url must be a sqlite:// or postgresql:// URL")
        return v

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        # An in-memory SQLite database loses every accepted ticket on restart: allowed for tests only when explicit.
        if self.database_url in ("sqlite://", "sqlite:///:memory:") and self.api.host not in ("127.0.0.1", "localhost"):
            raise ValueError("an in-memory database cannot back a server listening beyond localhost")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = _yaml_file(init_settings, env_settings)
        if yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        return tuple(sources)


def _yaml_file(*sources: PydanticBaseSettingsSource) -> Path | None:
    for source in sources:
        value: Any = source().get("config_file")
        if value:
            path = Path(value)
            if not path.is_file():
                raise FileNotFoundError(f"config file not found: {path}")
            return path
    return None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings once; the CLI and the app factory call this, nothing else does."""
    if config_file is not None:
        overrides["config_file"] = Path(config_file)
    return Settings(**overrides)
