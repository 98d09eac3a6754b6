"""Wire models of the HTTP API. Unknown fields are refused (a typo must not be silently ignored)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from server.results import CacheKind, Route

Strict = ConfigDict(extra="forbid")
# JSON Schema patterns are unanchored: "has a character that is not whitespace" (Python's \s is str.isspace).
NOT_BLANK = r"\S"
NO_NUL = "^[^\\x00]*$"


def _storable(value: str) -> str:
    """Text that every store and tokenizer accepts: valid Unicode (no lone surrogates), no NUL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text is not valid Unicode (lone surrogate escape)") from exc
    if "\x00" in value:
        raise ValueError("text contains a NUL character")
    return value


# The pattern documents the NUL rule; the validator enforces both rules with its own messages.
Text = Annotated[str, AfterValidator(_storable), Field(json_schema_extra={"pattern": NO_NUL})]


def _one_of_required(*alternatives: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """A JSON Schema `anyOf`: at least one of these properties is present with this schema."""
    return {"anyOf": [{"required": [name], "properties": {name: schema}} for name, schema in alternatives]}


class TicketIn(BaseModel):
    # A rule across two fields, so a schema-level anyOf; `_not_empty` enforces it with a clear message.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_one_of_required(
            ("subject", {"type": "string", "pattern": NOT_BLANK}), ("body", {"type": "string", "pattern": NOT_BLANK})
        ),
    )
    ticket_id: Text | None = Field(
        default=None, min_length=1, max_length=128, description="Caller's id; generated when absent."
    )
    subject: Text = Field(default="", description="May be empty when the body is not.")
    body: Text = Field(default="")
    previous_interactions: list[Text] = Field(default_factory=list, description="Earlier messages, oldest first.")
    fields: list[str] | None = Field(
        default=None,
        min_length=1,
        description="The output fields to answer (default: the deployment's api.default_fields, else all). "
        "Only label fields (e.g. category, priority, sentiment): answered from the label decisions alone, no "
        "free text decoded. The answer, its confidences, the routing thresholds and the stored result cover "
        "only these fields; an unknown name is a 422.",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> TicketIn:
        if not self.subject.strip() and not self.body.strip():
            raise ValueError("subject and body are both empty: nothing to classify")
        return self


class BatchIn(BaseModel):
    model_config = Strict
    # Items stay loosely typed so one malformed ticket yields a per-item error, not a failed batch.
    tickets: list[Any] = Field(min_length=1)


class ExtractedInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    product: str | None = None
    error_code: str | None = None
    sentiment: str | None = None


class ModelRef(BaseModel):
    base: str
    adapter: str | None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int


class ClassificationOut(BaseModel):
    """Fields of the default taxonomy are typed; other taxonomies add their own label fields."""

    model_config = ConfigDict(extra="allow")
    ticket_id: str
    category: str | None = None
    priority: str | None = None
    extracted_info: ExtractedInfo | None = None
    reasoning: str | None = None
    confidence: dict[str, float | None] = Field(
        description="Per label field; null where unknown (hosted answer without logprobs, deadline)."
    )
    needs_review: bool = Field(
        description="True: a person should check this result; it is listed by GET /v1/review until feedback arrives."
    )
    route: Route = Field(
        description="local: the local model was confident; local+review: confident after a re-review on the local model; "
        "hosted: the hosted fallback answered; human: still unsure (needs_review); cache: reused an earlier answer."
    )
    review_reasons: dict[str, float | str | None] | None = Field(
        default=None,
        description="Why review is needed: each low label field -> its confidence; hosted_invalid / fallback_unavailable / deadline -> a short detail.",
    )
    cache: CacheKind | None = Field(
        default=None, description="A cache hit: the same ticket (exact) or a near-duplicate (near)."
    )
    cache_similarity: float | None = Field(
        default=None, description="Estimated similarity to the cached ticket (1.0 for exact)."
    )
    cache_omitted: list[str] | None = Field(
        default=None,
        description="On a near-duplicate hit: the asked free-text fields (e.g. product, error_code, reasoning) left "
        "null, because only the labels of another ticket's answer are reused, never its text.",
    )
    engine: str = Field(
        description="Which engine/adapter answered, e.g. transformers:tickets-smollm2-v1 or hosted:openai:gpt-4o-mini."
    )
    cost_usd: float = Field(
        description="This ticket's share of local engine time x routing.cost_per_cpu_second, plus the hosted call's cost."
    )
    model: ModelRef
    prompt_version: str
    taxonomy: str
    latency_ms: float
    usage: Usage
    input_truncated: bool
    request_id: str
    fields: list[str] | None = Field(
        default=None, description="The output fields this answer carries, as asked; null: every field."
    )
    variant: str | None = Field(
        default=None, description="The A/B variant (settings `ab`) the ticket id is assigned to; null: no A/B test."
    )


class BatchOut(BaseModel):
    results: list[dict[str, Any]] = Field(
        description='In request order: a classification (as /v1/classify) or {"ticket_id", "error": {"status", "message"}}.'
    )


class FeedbackIn(BaseModel):
    # At least one correction or a non-empty comment (the 422 of the feedback router otherwise).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=_one_of_required(
            ("category", {"type": "string"}),
            ("priority", {"type": "string"}),
            ("extracted_info", {"type": "object", "minProperties": 1}),
            ("labels", {"type": "object", "minProperties": 1}),
            ("comment", {"type": "string", "minLength": 1}),
        ),
    )
    ticket_id: Text = Field(min_length=1, max_length=128)
    category: Text | None = None
    priority: Text | None = None
    extracted_info: dict[str, Text | None] | None = None
    labels: dict[str, Text] | None = Field(default=None, description="Corrections of other taxonomies' label fields.")
    reviewer: Text = Field(min_length=1, max_length=128)
    comment: Text | None = Field(default=None, max_length=10_000)


class FeedbackOut(BaseModel):
    feedback_id: int
    ticket_id: str
    request_id: str
    corrections: dict[str, Any]
    original: dict[str, Any] | None


class ReviewItem(BaseModel):
    request_id: str
    ticket_id: str
    created_at: datetime
    route: Route | None
    reasons: dict[str, float | str | None] = Field(description="As `review_reasons` of the result.")
    prediction: dict[str, Any] | None
    confidence: dict[str, float | None] | None
    engine: str | None


class ReviewQueueOut(BaseModel):
    items: list[ReviewItem] = Field(description="Oldest first.")
    total: int = Field(description="Items matching the filter, all pages.")
    limit: int
    offset: int


class ErrorOut(BaseModel):
    """The body of every 4xx/5xx answer."""

    error: str = Field(description="A stable code, e.g. invalid_request, not_found, overloaded, engine_unavailable.")
    message: str = Field(description="What was wrong, for a person.")
    details: Any = Field(default=None, description="Optional: the validation errors, or the ticket's ids.")


class ModelInfoOut(BaseModel):
    base: str
    adapter: str | None
    dtype: str
    engine: str


class HealthOut(BaseModel):
    """GET /health; the counters of the routing, the cache and the fallback are added when the service runs."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded"] = Field(description="degraded (HTTP 503): the model or the database is down.")
    model_loaded: bool
    database: Literal["ok", "unreachable"]
    model: ModelInfoOut
    prompt_version: str
    taxonomy: str
    engine: dict[str, Any] = Field(description="The engine's queue statistics.")
    error: str | None = Field(default=None, description="Why the model failed to load, when it did.")


class ReadyOut(BaseModel):
    ready: bool = Field(description="False (HTTP 503): the model or the database is not ready.")


class FeedbackRecordOut(BaseModel):
    feedback_id: int
    created_at: datetime
    reviewer: str
    corrections: dict[str, Any]
    comment: str | None
    redacted_at: datetime | None = Field(description="Set when retention redacted the ticket text it trains on.")


class TicketTextOut(BaseModel):
    subject: str | None
    body: str
    previous_interactions: list[str] | None


class ResultRefOut(BaseModel):
    request_id: str
    status: Literal["pending", "done", "failed"]


class StoredResultOut(BaseModel):
    """A stored result read back (GET /v1/results/{request_id}, GET /v1/tickets/{ticket_id}): what was
    answered, by which model, adapter and prompt, how sure it was, which route it took and why it needs
    review, and the feedback given on it."""

    request_id: str
    ticket_id: str
    status: Literal["pending", "done", "failed"]
    created_at: datetime
    completed_at: datetime | None
    model: ModelRef
    prompt_version: str
    taxonomy: str | None
    engine: str | None = Field(description="Which engine answered (null while pending and for failures).")
    route: Route | None
    cache: CacheKind | None
    fields: list[str] | None = Field(description="The output fields asked; null: every field.")
    prediction: dict[str, Any] | None = Field(description="The answer as stored (null while pending and for failures).")
    reasoning: str | None = Field(description="The answer's reasoning, when it has one.")
    confidence: dict[str, float | None] | None
    needs_review: bool
    review_reasons: dict[str, float | str | None] | None
    input_truncated: bool
    latency_ms: float | None
    cost_usd: float | None
    error: str | None = Field(description="Why a failed result failed.")
    variant: str | None = Field(default=None, description="The A/B variant that answered; null: no A/B test.")
    feedback: list[FeedbackRecordOut] = Field(description="Corrections given on this result, oldest first.")
    text: TicketTextOut | None = Field(
        default=None, description="The ticket text as stored; only with ?include_text=true (null once redacted)."
    )
    history: list[ResultRefOut] | None = Field(
        default=None, description="GET /v1/tickets only: every stored result of the ticket, oldest first."
    )


class ErasureOut(BaseModel):
    ticket_id: str
    erased: dict[str, int] = Field(
        description="Per kind: classifications, feedback, cache_entries, audit_payloads (the audit events stay, "
        "without payloads), job_tickets (queued in a bulk job and not classified yet: their text cleared)."
    )


class JobPathIn(BaseModel):
    """POST /v1/jobs as JSON: a file already on the server, inside `jobs.input_dir`."""

    model_config = Strict
    path: Text = Field(
        min_length=1,
        max_length=1024,
        description="The file's path relative to the server's jobs.input_dir (.csv, .jsonl or .parquet, the "
        "columns of `triage batch`); a path resolving outside that folder is refused (403).",
    )


class JobOut(BaseModel):
    """A bulk job: its state and progress."""

    job_id: str
    status: Literal["queued", "running", "done", "cancelled"]
    source: Literal["upload", "path"]
    filename: str
    total: int = Field(description="Tickets in the file.")
    done: int = Field(description="Tickets answered.")
    failed: int = Field(description="Tickets that failed (their result line carries the error).")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    tickets_per_s: float | None = Field(description="Tickets settled per second since the job started.")
