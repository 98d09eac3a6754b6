"""Wire models of the HTTP API. Unknown fields are refused (a typo must not be silently ignored)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Strict = ConfigDict(extra="forbid")


def _storable(value: str) -> str:
    """Text that every store and tokenizer accepts: valid Unicode (no lone surrogates), no NUL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("text is not valid Unicode (lone surrogate escape)") from exc
    if "\x00" in value:
        raise ValueError("text contains a NUL character")
    return value


Text = Annotated[str, AfterValidator(_storable)]


class TicketIn(BaseModel):
    model_config = Strict
    ticket_id: Text | None = Field(
        default=None, min_length=1, max_length=128, description="Caller's id; generated when absent."
    )
    subject: Text = Field(default="", description="May be empty when the body is not.")
    body: Text = Field(default="")
    previous_interactions: list[Text] = Field(default_factory=list, description="Earlier messages, oldest first.")

    @model_validator(mode="after")
    def _not_empty(self) -> TicketIn:
        if not self.subject.strip() and not self.body.strip():
            raise ValueError("subject and body are both empty: nothing to classify")
        return self

    def size_bytes(self) -> int:
        return sum(len(s.encode("utf-8")) for s in (self.subject, self.body, *self.previous_interactions))


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
    route: Literal["local", "local+review", "hosted", "human", "cache"] = Field(
        description="local: the local model was confident; local+review: confident after a re-review on the local model; "
        "hosted: the hosted fallback answered; human: still unsure (needs_review); cache: reused an earlier answer."
    )
    review_reasons: dict[str, float | str | None] | None = Field(
        default=None,
        description="Why review is needed: each low label field -> its confidence; hosted_invalid / fallback_unavailable / deadline -> a short detail.",
    )
    cache: Literal["exact", "near"] | None = Field(
        default=None, description="A cache hit: the same ticket (exact) or a near-duplicate (near)."
    )
    cache_similarity: float | None = Field(
        default=None, description="Estimated similarity to the cached ticket (1.0 for exact)."
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


class BatchOut(BaseModel):
    results: list[dict[str, Any]] = Field(
        description='In request order: a classification (as /v1/classify) or {"ticket_id", "error": {"status", "message"}}.'
    )


class FeedbackIn(BaseModel):
    model_config = Strict
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
    route: str | None
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
    error: str
    message: str
    details: Any = None
