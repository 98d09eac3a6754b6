"""One settings object for the whole service, read once and passed down.

Sources, highest precedence first: explicit arguments, environment (`TRIAGE_` prefix, `__` for
nesting, e.g. `TRIAGE_MODEL__BASE`), an optional YAML file (`TRIAGE_CONFIG_FILE` or `--config`),
then the defaults below. Nothing else in the code base reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from server.resources import builtin_prompts_dir
from server.results import DetectedLanguage

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BASE_MODEL_DIR = PROJECT_ROOT / "models" / "base" / "smollm2-135m-instruct"


class _Section(BaseModel):
    # A misspelt key must fail loudly, not fall back to a default; frozen: settings are read once and
    # passed down, and a variant is made with `Settings.variant`, which validates it again.
    model_config = ConfigDict(extra="forbid", frozen=True)


DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(value: Any) -> str:
    """A device setting as torch spells it (auto, cpu, cuda, cuda:N); anything else is refused by name, so a
    typo cannot fall back to the CPU unnoticed. Whether the GPU exists is checked when the model loads."""
    text = str(value).strip().lower() if isinstance(value, str) else value
    if not isinstance(text, str) or not DEVICE_PATTERN.fullmatch(text):
        raise ValueError(f"device {value!r} is not one of auto, cpu, cuda, cuda:N")
    return text


class ModelSettings(_Section):
    base: str = Field(
        default=str(DEFAULT_BASE_MODEL_DIR),
        description="HF model id or local folder of the base model (converted safetensors).",
    )
    adapter: str | None = Field(
        default="registry",
        description="LoRA adapter: 'registry' = the active entry of the model registry (none if nothing is promoted), "
        "a registered name, a folder, or none/'none' for the bare base model.",
    )
    registry: Path = Field(
        default=PROJECT_ROOT / "models" / "registry.json", description="The model registry index (promote/rollback)."
    )
    registry_backend: Literal["file", "store"] = Field(
        default="file",
        description="Where promotions live: 'file' = the `registry` JSON index (one machine); 'store' = the shared "
        "database (`database_url`), so every replica serves the same adapter and a promotion hot-swaps them all. "
        "In 'store' mode promoted adapters are published into the database and replicas materialise them "
        "under `adapter_cache_dir` (no shared volume needed).",
    )
    adapter_cache_dir: Path = Field(
        default=PROJECT_ROOT / "var" / "adapters",
        description="Where a replica materialises adapters published in the store (registry_backend: store).",
    )
    watch_registry_s: float = Field(
        default=2.0,
        ge=0,
        description="How often a server in registry mode checks for a promotion (0 = never; hot swap).",
    )
    device: str = Field(
        default="auto",
        description="Where the embedded engine runs: auto (cuda when torch sees a GPU, else cpu), cpu, cuda or cuda:N.",
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="auto = per device: bf16 on CUDA; fp32 on the CPU (triage eval: fp32 faster than bf16 at the same "
        "accuracy on an AMX CPU, 2.3x faster on an AVX2-only one; bf16 flips labels of the fp32 reference).",
    )
    threads: int | None = Field(default=None, ge=1, description="torch intra-op threads; default: all cores.")
    # The database of the shared registry (registry_backend: store): `Settings.database_url`, filled in by
    # Settings so everything handed only the model section (resolve_adapter) finds the same registry.
    _registry_database: str | None = PrivateAttr(default=None)

    _device = field_validator("device", mode="before")(classmethod(lambda cls, v: check_device(v)))

    @property
    def registry_database(self) -> str | None:
        return self._registry_database


EngineKind = Literal["transformers", "outlines", "vllm"]


def _engine_kind(value: Any) -> Any:
    # The embedded engine's package is server.engines.embedded; its kind keeps the name stored on results.
    return "transformers" if value == "embedded" else value


class EngineSettings(_Section):
    kind: EngineKind = Field(
        default="transformers",
        description="transformers (or embedded) = the batched embedded engine in this process; outlines = plain Outlines "
        "generation, one ticket at a time (the reference); vllm = one or more vLLM servers (see [vllm]).",
    )

    _kind_alias = field_validator("kind", mode="before")(classmethod(lambda cls, v: _engine_kind(v)))
    max_batch_size: int = Field(default=32, ge=1, le=512)
    batch_wait_ms: float = Field(default=5.0, ge=0, description="How long the first queued ticket waits for company.")
    max_queue: int = Field(default=1024, ge=1, description="Queued tickets beyond this get 429.")
    admit_fraction: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Continuous batching admits new tickets once this share of the batch slots is free (each admission stalls decoding for its prefill).",
    )
    request_timeout_s: float = Field(
        default=300.0, gt=0, description="Past this a request returns a stored needs_review failure."
    )
    prefix_cache: bool = Field(default=True, description="Reuse the KV cache of the static prompt prefix.")
    max_string_tokens: int = Field(
        default=16, ge=1, description="Budget for short free-text fields (product, error_code)."
    )
    max_reasoning_tokens: int = Field(default=48, ge=1, description="Reviewed reasoning sentences are <= 32 tokens.")
    admission: bool = Field(
        default=True,
        description="Refuse (429 + Retry-After) a ticket whose expected completion, from the measured service rate "
        "and the queue ahead of it, is past request_timeout_s; off: only max_queue bounds the queue.",
    )
    admission_window_s: float = Field(
        default=30.0, gt=0, description="Busy seconds over which the service rate for admission is measured."
    )
    batched_prefill: bool = Field(
        default=True,
        description="Prefill the tickets admitted together in one forward pass (false: one at a time, the old path).",
    )


class PromptSettings(_Section):
    dir: Path = Field(
        default_factory=builtin_prompts_dir,
        description="Folder of prompt templates (kind/version.jinja); the templates shipped in the package by default.",
    )
    version: str = "v1"
    review_version: str = Field(
        default="auto",
        description="Re-review prompt; auto = the classify prompt's version (review/v2 pairs with classify/v2).",
    )
    max_body_tokens: int = Field(default=768, ge=32, description="Body beyond this keeps its head and tail.")
    max_history_tokens: int = Field(default=256, ge=0, description="Budget for previous interactions, newest first.")


class MetricsSettings(_Section):
    """GET /metrics (Prometheus). Open by default like /health, since scrapers rarely hold a bearer key: keep
    the port off the internet, or set require_admin and give Prometheus an admin key (authorization: Bearer)."""

    enabled: bool = True
    require_admin: bool = Field(default=False, description="/metrics needs an admin API key.")
    store_cache_s: float = Field(
        default=10.0, ge=0, description="How long the store metrics (accuracy, override rate, retrain) are reused."
    )
    drift_cache_s: float = Field(
        default=300.0, ge=0, description="How long the drift PSI is reused (it reads every result of its windows)."
    )
    accuracy_window_s: float = Field(
        default=7 * 86_400.0, gt=0, description="Feedback of this many seconds counts toward accuracy and overrides."
    )
    drift_window_s: float = Field(default=86_400.0, gt=0, description="The recent window of the drift PSI.")
    drift_reference_s: float = Field(
        default=7 * 86_400.0, gt=0, description="The reference window, just before the recent one."
    )


class LogSettings(_Section):
    """How `triage serve` logs: json (one object per line with the request id; the default) or text."""

    format: Literal["json", "text"] = "json"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    access: bool = Field(default=True, description="One line per HTTP request (method, path, status, duration).")


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_batch_items: int = Field(default=256, ge=1)
    max_ticket_bytes: int = Field(
        default=100_000, ge=1024, description="Per ticket (subject+body+history, UTF-8); beyond: 413."
    )
    max_history_items: int = Field(default=50, ge=0)
    default_fields: list[str] | None = Field(
        default=None,
        min_length=1,
        description="The output fields a request without `fields` gets (None: all). Only label fields: "
        "labels-only answers by default. Checked against the taxonomy at start-up.",
    )


class RouteRule(_Section):
    """One row of the engine rule table: the first rule whose conditions all hold picks the engine.

    A rule without conditions matches every ticket (the catch-all, normally the last row).
    """

    engine: str = Field(
        default="default", description="'default' (the engine of the [model] settings) or a name under routing.engines."
    )
    max_chars: int | None = Field(
        default=None, ge=0, description="Ticket text (subject + body + history) at most this many characters."
    )
    min_chars: int | None = Field(default=None, ge=0, description="Ticket text at least this many characters.")
    languages: list[DetectedLanguage] | None = Field(
        default=None, description="The detected language is one of these ('unknown': none could be told)."
    )


class EngineProfile(_Section):
    """A further local engine for the rule table: the [model]/[engine] settings with these overrides."""

    base: str | None = Field(default=None, description="Base model (HF id or folder); none = model.base.")
    adapter: str | None = Field(
        default=None, description="A registered adapter name or folder; none = the bare base model."
    )
    kind: EngineKind | None = Field(default=None, description="none = engine.kind.")

    _kind_alias = field_validator("kind", mode="before")(classmethod(lambda cls, v: _engine_kind(v)))
    cost_per_cpu_second: float | None = Field(
        default=None, ge=0, description="This engine's price of one second (USD); none = routing.cost_per_cpu_second."
    )
    prompt_version: str | None = Field(
        default=None, description="Classify prompt version (prompt.version) of this engine; none = as [prompt]."
    )


class RoutingSettings(_Section):
    confidence_threshold: float = Field(
        default=0.5,
        ge=0.0,
        description="A label field under this takes the low-confidence path; above 1 sends every ticket down it.",
    )
    field_thresholds: dict[str, float] = Field(
        default_factory=dict, description="Per-field overrides of confidence_threshold, e.g. {priority: 0.4}."
    )
    review: bool = Field(
        default=False,
        description="Re-run a low-confidence ticket through the review prompt on the local model first. Off by default: "
        "measured on the golden set it made 107 of 109 unsure tickets 'confident' without making them more accurate, "
        "and a model with a label head has no review prompt.",
    )
    cost_per_cpu_second: float = Field(
        default=0.0, ge=0, description="Cost of one second of local engine time (USD), stored per result."
    )
    rules: list[RouteRule] = Field(
        default_factory=lambda: [RouteRule()],
        description="Which local engine answers a ticket: the first matching rule; none matching = 'default'. "
        "E.g. [{max_chars: 600, languages: [en], engine: small}, {engine: default}].",
    )
    engines: dict[str, EngineProfile] = Field(
        default_factory=dict, description="Named further engines the rules can pick, e.g. {small: {adapter: ...}}."
    )
    backup: str | None = Field(
        default=None,
        description="Engine ('default' or a name under engines) asked when the chosen one is unavailable or overloaded.",
    )
    hosted_concurrency: int = Field(
        default=8, ge=1, description="Hosted fallback calls in flight at once (per process)."
    )

    @model_validator(mode="after")
    def _known_engines(self) -> RoutingSettings:
        if "default" in self.engines:
            raise ValueError(
                "routing.engines: 'default' is the engine of the [model] settings; give this one another name"
            )
        known = {"default", *self.engines}
        for i, rule in enumerate(self.rules):
            if rule.engine not in known:
                raise ValueError(
                    f"routing.rules[{i}].engine {rule.engine!r} is not 'default' nor a name under routing.engines"
                )
        if self.backup is not None and self.backup not in known:
            raise ValueError(f"routing.backup {self.backup!r} is not 'default' nor a name under routing.engines")
        return self


class FallbackSettings(_Section):
    """The hosted model asked about tickets the local model stays unsure of. Off by default."""

    enabled: bool = False
    provider: Literal["openai", "anthropic"] = "openai"
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible or Anthropic endpoint; none = the provider's default."
    )
    model: str = "gpt-4o-mini"
    api_key: SecretStr | None = Field(default=None, description="The key itself (TRIAGE_FALLBACK__API_KEY).")
    api_key_env: str | None = Field(default=None, description="Or the name of an environment variable holding the key.")
    timeout_s: float = Field(default=20.0, gt=0)
    max_retries: int = Field(
        default=2, ge=0, description="Retries (with backoff) on 429/5xx/timeouts; one hosted attempt per ticket."
    )
    price_input_per_1k: float = Field(default=0.0, ge=0, description="USD per 1K input tokens.")
    price_output_per_1k: float = Field(default=0.0, ge=0, description="USD per 1K output tokens.")
    breaker_failures: int = Field(default=5, ge=1, description="Consecutive failures that open the circuit breaker.")
    breaker_reset_s: float = Field(
        default=30.0, gt=0, description="How long the breaker stays open before one trial call."
    )


class RedactionSettings(_Section):
    """PII removal applied to everything sent to a hosted model."""

    spacy_model: str | None = Field(
        default=None,
        description="Installed spaCy model for PERSON/LOCATION NER (e.g. en_core_web_sm); none = patterns only.",
    )
    patterns: dict[str, str] = Field(
        default_factory=dict,
        description="Extra recognisers: entity type -> regex (group 1, if any, is the value). Account, customer, "
        "order and invoice numbers, IDs, passwords, PINs and dates of birth are built in (server/privacy/contextual.py), "
        "found after their labels in en/de/es/fr/pt; add a pattern here for an identifier of your own.",
    )


class VllmSettings(_Section):
    """The vLLM backend (`engine.kind: vllm`): OpenAI-compatible vLLM servers started with
    `triage vllm-args` (the base model plus the registered LoRA adapters, chosen per request by name)."""

    urls: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:8001"],
        min_length=1,
        description="vLLM servers, in order of preference: a request fails over to the next healthy one.",
    )
    served_model_name: str = Field(
        default="triage-base", description="The base model's name on the vLLM servers (--served-model-name)."
    )
    api_key: SecretStr | None = Field(default=None, description="Sent as a bearer token when the servers want one.")
    port: int = Field(default=8001, ge=1, le=65535, description="The port `triage vllm-args` serves on.")
    max_lora_rank: int = Field(default=16, ge=1, description="--max-lora-rank: the largest rank of a served adapter.")
    max_model_len: int = Field(
        default=2048,
        ge=256,
        description="--max-model-len: prompt (prefix + body + history budgets) plus the answer; it sizes vLLM's KV cache.",
    )
    structured_outputs_backend: Literal["outlines", "xgrammar", "guidance"] = Field(
        default="outlines",
        description="--structured-outputs-config.backend: vLLM 0.32 picks the JSON-schema backend per server, not per "
        "request (a request naming another one is refused), so it is part of the serve command.",
    )
    timeout_s: float = Field(
        default=120.0, gt=0, description="A ticket's whole budget across replicas (failover included)."
    )
    attempt_timeout_s: float = Field(
        default=60.0, gt=0, description="One attempt on one replica; past it the next healthy replica is tried."
    )
    connect_timeout_s: float = Field(default=2.0, gt=0, description="Connecting to a replica (a dead one fails fast).")
    health_interval_s: float = Field(
        default=5.0, ge=0, description="A replica marked dead is probed on /health at most this often."
    )
    concurrency: int = Field(default=32, ge=1, le=1024, description="Requests in flight to the vLLM servers at once.")
    top_logprobs: int = Field(
        default=20,
        ge=1,
        le=20,
        description="Top logprobs per generated token; a label option outside them is bounded by the k-th (flagged).",
    )


class CacheSettings(_Section):
    enabled: bool = True
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "triage"
    ttl_s: float = Field(default=86_400.0, gt=0)
    max_entries: int = Field(default=100_000, ge=1, description="In-process backend only (LRU beyond it).")
    near_duplicates: bool = True
    near_threshold: float = Field(
        default=0.9, gt=0, le=1, description="Estimated Jaccard similarity of word shingles for a near-duplicate hit."
    )
    num_perm: int = Field(default=128, ge=16, le=1024)
    shingle_size: int = Field(default=3, ge=1, le=10)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

Role = Literal["classify", "review", "admin"]


class AuthSettings(_Section):
    """API keys (`triage keys create`), roles and per-key rate limits."""

    required: bool | None = Field(
        default=None,
        description="true: every /v1 request needs `Authorization: Bearer KEY`. false: no keys (logged loudly at "
        "start; refused unless api.host is loopback). None (default): required unless api.host is loopback.",
    )
    rate_limit: str | None = Field(
        default="600/minute",
        description="Per-key request limit in the `limits` syntax (e.g. 100/second, 600/minute); none = unlimited. "
        "Kept in Redis when cache.backend is redis (shared by every replica), else in process memory.",
    )
    role_rate_limits: dict[Role, str] = Field(
        default_factory=dict, description="Per-role overrides of rate_limit, e.g. {classify: 6000/minute}."
    )
    rate_limit_storage: str | None = Field(
        default=None,
        description="A `limits` storage URI (memory://, redis://...); none = cache.redis_url when cache.backend is "
        "redis, else memory://.",
    )
    hash_n: int = Field(
        default=2**14,
        ge=2,
        description="scrypt cost (N) for stored key hashes; checked once per key per process, then remembered.",
    )


class StorageSettings(_Section):
    """Encryption at rest of ticket text and free-text answers (AES-256-GCM, `cryptography`)."""

    encrypt: bool = Field(
        default=True, description="Encrypt ticket text, answers, feedback comments and audit payloads in the database."
    )
    data_key: SecretStr | None = Field(
        default=None,
        description="The data key(s) as base64 of 32 bytes, comma-separated, the first is current (TRIAGE_STORAGE__DATA_KEY). "
        "None: data_key_file.",
    )
    data_key_file: Path = Field(
        default=PROJECT_ROOT / "var" / "data.key",
        description="Keyring file (created with mode 0600 on first start when missing: back it up; without it the "
        "stored text cannot be read).",
    )


class RetentionSettings(_Section):
    """How long stored data is kept (`triage retention run`, and the server's periodic task)."""

    days: float | None = Field(
        default=None, gt=0, description="Classifications older than this are purged (none = kept)."
    )
    tables: dict[Literal["classifications", "feedback", "audit_payloads", "jobs"], float] = Field(
        default_factory=dict,
        description="Per-table overrides of days, e.g. {audit_payloads: 30, feedback: 365}; jobs: finished bulk "
        "jobs (their ticket rows, ids and errors) this long after they ended.",
    )
    keep_feedback_for_training: bool = Field(
        default=True,
        description="A purged classification with feedback is kept for training with its text redacted (labels and "
        "redacted text), instead of being deleted.",
    )
    interval_s: float = Field(
        default=3600.0, ge=0, description="How often the server runs retention (0 = only `triage retention run`)."
    )


class AuditSettings(_Section):
    hosted_payload: Literal["full", "hash"] = Field(
        default="full",
        description="What the audit keeps of each hosted-API call: the exact redacted request body (encrypted at rest), "
        "or only its sha256 and the redaction counts.",
    )


class TlsSettings(_Section):
    certfile: Path | None = Field(default=None, description="PEM certificate (chain): serve HTTPS.")
    keyfile: Path | None = Field(default=None, description="PEM private key of certfile.")
    ca_certs: Path | None = Field(default=None, description="CA bundle to verify client certificates (mutual TLS).")
    require_client_cert: bool = False

    @model_validator(mode="after")
    def _pair(self) -> TlsSettings:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("tls.certfile and tls.keyfile go together")
        if self.require_client_cert and self.ca_certs is None:
            raise ValueError("tls.require_client_cert needs tls.ca_certs")
        return self


class JobsSettings(_Section):
    """Bulk jobs over HTTP (POST /v1/jobs): files of tickets classified in the background at low priority."""

    input_dir: Path | None = Field(
        default=None,
        description='The folder a job may name a file in (`{"path": ...}`, relative to it); None: only uploads. '
        "A path resolving outside it (.., an absolute path elsewhere, a symlink out) is refused.",
    )
    max_upload_bytes: int = Field(default=50_000_000, ge=1024, description="An uploaded file over this: 413.")
    max_tickets: int = Field(default=100_000, ge=1, description="A file with more tickets than this: 413.")
    enabled: bool = Field(default=True, description="Run the job worker in this server process.")
    chunk_size: int = Field(
        default=4,
        ge=1,
        description="Job tickets classified at a time, and only while no online ticket waits: an online request "
        "arriving meanwhile shares the decode loop with at most this many job tickets.",
    )
    lease_s: float = Field(
        default=600.0,
        gt=0,
        description="A chunk claimed by a replica that has not finished it after this long is claimed again "
        "(that replica died). Keep it well above engine.request_timeout_s.",
    )
    poll_s: float = Field(default=1.0, gt=0, description="How often an idle worker looks for queued job tickets.")
    idle_grace_s: float = Field(
        default=1.0,
        ge=0,
        description="Job tickets start only after this long without online requests: a caller sending its next "
        "request right after an answer does not share the decode loop with job tickets started in between. Under "
        "unbroken online traffic a job waits (low priority).",
    )


AB_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class AbVariant(_Section):
    """One arm of an A/B test. It either names an engine profile (`engine`), or builds one from the default
    model with another `adapter` and/or `prompt_version`, or names none of them: the control, answered by
    whichever profile the rule table picks."""

    name: str = Field(pattern=AB_NAME, description="Stored with every result (classifications.variant).")
    weight: float = Field(default=1.0, gt=0, description="Relative share of the traffic (normalised over variants).")
    engine: str | None = Field(default=None, description="'default' or a name under routing.engines.")
    adapter: str | None = Field(default=None, description="A registered adapter name or folder ('none': bare base).")
    prompt_version: str | None = Field(default=None, description="A classify prompt version, e.g. v2.")

    @model_validator(mode="after")
    def _one_way(self) -> AbVariant:
        if self.engine is not None and (self.adapter is not None or self.prompt_version is not None):
            raise ValueError(f"ab variant {self.name!r}: name an engine or give adapter/prompt_version, not both")
        return self


class AbSettings(_Section):
    """A/B test: each ticket id is hashed with `salt` into [0, 1) and falls in one variant's weight slice,
    so a ticket keeps its variant across requests and replicas. Off by default."""

    enabled: bool = False
    salt: str = Field(default="triage-ab", min_length=1, description="Change it to reshuffle the assignment.")
    variants: list[AbVariant] = Field(default_factory=list)

    @model_validator(mode="after")
    def _variants(self) -> AbSettings:
        if self.enabled and len(self.variants) < 2:
            raise ValueError("ab.enabled needs at least two variants")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"ab.variants: duplicate names in {names}")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIAGE_", env_nested_delimiter="__", extra="forbid", frozen=True)

    config_file: Path | None = Field(default=None, description="Optional YAML file with any of these settings.")
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'triage.db'}"
    database_migrate_on_start: bool = Field(
        default=True,
        description="The server brings the schema to head at start. Set false where several replicas share one "
        "PostgreSQL and `triage migrate` runs once before them: concurrent Alembic upgrades of an empty schema race "
        "(a replica fails on a duplicate pg_type key).",
    )
    taxonomy: str = Field(default="tickets", description="Built-in taxonomy name or path to a taxonomy YAML file.")
    model: ModelSettings = ModelSettings()
    engine: EngineSettings = EngineSettings()
    prompt: PromptSettings = PromptSettings()
    api: ApiSettings = ApiSettings()
    metrics: MetricsSettings = MetricsSettings()
    log: LogSettings = LogSettings()
    routing: RoutingSettings = RoutingSettings()
    fallback: FallbackSettings = FallbackSettings()
    redaction: RedactionSettings = RedactionSettings()
    cache: CacheSettings = CacheSettings()
    vllm: VllmSettings = VllmSettings()
    auth: AuthSettings = AuthSettings()
    storage: StorageSettings = StorageSettings()
    retention: RetentionSettings = RetentionSettings()
    audit: AuditSettings = AuditSettings()
    tls: TlsSettings = TlsSettings()
    ab: AbSettings = AbSettings()
    jobs: JobsSettings = JobsSettings()

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
        if self.auth.required is False and self.api.host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"auth.required=false (no API keys) is refused on api.host {self.api.host!r}: anyone who reaches the "
                "port could classify, read results and post training data. Create keys (`triage keys create`) instead."
            )
        return self

    @model_validator(mode="after")
    def _shared_registry(self) -> Settings:
        # A copy: the section may be the class default, shared by every Settings built without a model section.
        section = self.model.model_copy()
        object.__setattr__(section, "_registry_database", self.database_url)
        object.__setattr__(self, "model", section)
        return self

    @model_validator(mode="after")
    def _ab_engines(self) -> Settings:
        known = {"default", *self.routing.engines}
        for v in self.ab.variants:
            if v.engine is not None and v.engine not in known:
                raise ValueError(
                    f"ab variant {v.name!r}: engine {v.engine!r} is not 'default' nor under routing.engines"
                )
        return self

    @property
    def auth_required(self) -> bool:
        """Whether /v1 requests need a key: auth.required, or by default unless the server is bound to loopback."""
        if self.auth.required is not None:
            return self.auth.required
        return self.api.host not in LOOPBACK_HOSTS

    def variant(self, **sections: Mapping[str, Any] | Any) -> Settings:
        """These settings with some values changed, validated like the originals (a `model_copy(update=...)`
        would skip validation). A section takes a mapping of the keys to change:
        `settings.variant(model={"adapter": "x"}, taxonomy="banking77")`. The environment and the YAML
        file are not read again."""
        data = self.model_dump()  # every key given: the environment cannot fill a gap
        changed: dict[str, set[str]] = {}
        for key, value in sections.items():
            if key not in type(self).model_fields:
                raise ValueError(f"unknown settings key: {key}")
            current = data[key]
            if isinstance(current, dict) and isinstance(value, Mapping):
                data[key] = {**current, **value}
                changed[key] = set(value)
            else:
                data[key] = value
                changed[key] = set()
        variant = type(self).model_validate(data)
        # "Was this key given?" must keep its answer (an adapter's trained prompt version overrides the
        # default prompt version, never an explicit one): only the original's and the changed keys are set.
        object.__setattr__(variant, "__pydantic_fields_set__", self.model_fields_set | set(changed))
        for key in type(self).model_fields:
            section, original = getattr(variant, key), getattr(self, key)
            replaced_whole = key in changed and not changed[key]
            if isinstance(section, BaseModel) and isinstance(original, BaseModel) and not replaced_whole:
                fields = original.model_fields_set | changed.get(key, set())
                object.__setattr__(section, "__pydantic_fields_set__", fields)
        return variant

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
