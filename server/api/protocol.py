"""Wire models of the HTTP API. Unknown fields are refused (a typo must not be silently ignored)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

Strict = ConfigDict(extra="forbid")


class TicketIn(BaseModel):
    model_config = Strict
    ticket_id: str | None = Field(default=None, min_length=1, max_length=128, description="Caller's id; generated when absent.")
    subject: str = Field(default="", description="May be empty when the body is not.")
    body: str = Field(default="")
    previous_interactions: list[str] = Field(default_factory=list, description="Earlier messages, oldest first.")

    @model_validator(mode="after")
    def _not_empty(self) -> TicketIn:
        if not self.subject.strip() and not self.body.strip():
            raise ValueError("subject and body are both empty: nothing to classify")
        return self

    def size_bytes(self) -> int:
        return sum(len(s.encode("utf-8", "surrogatepass")) for s in (self.subject, self.body, *self.previous_interactions))


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
    confidence: dict[str, float | None]
    needs_review: bool
    model: ModelRef
    prompt_version: str
    taxonomy: str
    latency_ms: float
    usage: Usage
    input_truncated: bool
    request_id: str


class ItemError(BaseModel):
    status: int
    message: str


class BatchItemOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    ticket_id: str | None = None
    error: ItemError | None = None


class BatchOut(BaseModel):
    results: list[dict[str, Any]]


class FeedbackIn(BaseModel):
    model_config = Strict
    ticket_id: str = Field(min_length=1, max_length=128)
    category: str | None = None
    priority: str | None = None
    extracted_info: dict[str, str | None] | None = None
    labels: dict[str, str] | None = Field(default=None, description="Corrections of other taxonomies' label fields.")
    reviewer: str = Field(min_length=1, max_length=128)
    comment: str | None = Field(default=None, max_length=10_000)


class FeedbackOut(BaseModel):
    feedback_id: int
    ticket_id: str
    request_id: str
    corrections: dict[str, Any]
    original: dict[str, Any] | None


class ErrorOut(BaseModel):
    error: str
    message: str
    details: Any = None
