"""ORM models for classification requests and reviewer feedback.

Schema changes must come with a migration in ``migrations/versions``; a test
compares these models with the migrated schema so the two cannot drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from server.store.crypto import EncryptedJSON, EncryptedText

__all__ = [
    "ROLES",
    "STATUSES",
    "AdapterBlob",
    "ApiKey",
    "AuditEvent",
    "Base",
    "Classification",
    "Feedback",
    "RegistryEvent",
    "RegistryFile",
    "UTCDateTime",
    "utcnow",
]

STATUSES = ("pending", "done", "failed")
ROLES = ("classify", "review", "admin")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no timezone type and hands back naive values; normalising here
    means comparisons (e.g. stale-pending recovery) never mix naive and aware.
    Naive input is rejected because its zone is a guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL so predictions/corrections can be indexed and queried;
# none_as_null keeps Python None as SQL NULL rather than the JSON literal null.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# Deterministic constraint names, identical to those in the hand-written migration.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Classification(Base):
    """One classification request; written as 'pending' before inference so a
    crash mid-inference leaves a trace that can be recovered."""

    __tablename__ = "classifications"
    __table_args__ = (CheckConstraint("status IN ('pending', 'done', 'failed')", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(String(36), unique=True)
    ticket_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), index=True, default="pending")

    # Ticket text and free-text answers are sealed with the data key (server.store.crypto) when the
    # store has one: the database file and its backups hold no ticket plaintext.
    subject: Mapped[str | None] = mapped_column(EncryptedText)
    body: Mapped[str] = mapped_column(EncryptedText)
    previous_interactions: Mapped[list[str] | None] = mapped_column(EncryptedJSON)
    input_truncated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    # Denormalised from `prediction` so dashboards can filter without JSON operators.
    category: Mapped[str | None] = mapped_column(String(128))
    priority: Mapped[str | None] = mapped_column(String(64))
    sentiment: Mapped[str | None] = mapped_column(String(32))
    prediction: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON)
    confidence: Mapped[dict[str, float] | None] = mapped_column(JSONType)
    needs_review: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false(), index=True)

    # Provenance: which model/prompt produced the answer, for audits and A/B comparisons.
    model_base: Mapped[str] = mapped_column(String(256))
    model_adapter: Mapped[str | None] = mapped_column(String(256))
    prompt_version: Mapped[str] = mapped_column(String(64))
    taxonomy: Mapped[str | None] = mapped_column(String(128))

    # Routing (migration 0002): NULL while pending, for failures and for rows older than 0002.
    route: Mapped[str | None] = mapped_column(String(16))  # local | local+review | hosted | human | cache
    cache_kind: Mapped[str | None] = mapped_column(String(8))  # exact | near (route cache only)
    engine: Mapped[str | None] = mapped_column(String(256))  # which engine answered, e.g. hosted:openai:gpt-4o-mini
    cost_usd: Mapped[float | None] = mapped_column(Float)
    # Why a result needs review: low label field -> its confidence; hosted_invalid / deadline /
    # fallback_unavailable -> a short detail. NULL when no review is needed.
    review_reasons: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    # The output fields the request asked for (migration 0003), in the taxonomy's order; NULL = every
    # field (and rows older than 0003). `prediction` and `confidence` hold only these fields.
    fields: Mapped[list[str] | None] = mapped_column(JSONType)

    latency_ms: Mapped[float | None] = mapped_column(Float)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    raw_output: Mapped[str | None] = mapped_column(EncryptedText)

    # Who asked (migration 0004): the API key's id (NULL without keys) and its scope (tenant); a key with a
    # scope reads only rows of its scope.
    key_id: Mapped[int | None] = mapped_column(Integer)
    scope: Mapped[str | None] = mapped_column(String(128), index=True)
    # The A/B variant (settings `ab`) assigned to the ticket (migration 0005); NULL without an A/B test.
    variant: Mapped[str | None] = mapped_column(String(64), index=True)

    # passive_deletes: the database's ON DELETE CASCADE removes feedback, so the
    # ORM need not load every row just to delete it.
    feedback: Mapped[list[Feedback]] = relationship(
        back_populates="classification",
        order_by="Feedback.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    def __repr__(self) -> str:
        return f"<Classification id={self.id} request_id={self.request_id} status={self.status}>"


class Feedback(Base):
    """A reviewer's corrections to one classification, kept as training signal."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    classification_id: Mapped[int] = mapped_column(ForeignKey("classifications.id", ondelete="CASCADE"), index=True)
    # Copied from the classification so feedback for a ticket is found without a join.
    ticket_id: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reviewer: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str | None] = mapped_column(EncryptedText)
    corrections: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON)
    # The API key that sent it and its role then (migration 0004): fine-tuning can keep only feedback of
    # given keys or roles (a data-poisoning guard). NULL: sent without keys.
    key_id: Mapped[int | None] = mapped_column(Integer, index=True)
    key_role: Mapped[str | None] = mapped_column(String(16))
    # Set when retention redacted the ticket text this feedback trains on (the row was kept for training).
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    classification: Mapped[Classification] = relationship(back_populates="feedback")

    def __repr__(self) -> str:
        return f"<Feedback id={self.id} classification_id={self.classification_id}>"


class ApiKey(Base):
    """An API key: only a slow hash of its secret is stored (scrypt); `prefix` is the public part that
    finds the row. Revoked keys are kept (audit rows refer to them), never reused."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('classify', 'review', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"<ApiKey id={self.id} name={self.name} role={self.role}>"


class AuditEvent(Base):
    """Append-only (database triggers refuse UPDATE and DELETE, except erasing a payload): who did what, when.

    `payload` is what left the premises on a hosted-API call (the redacted request body, sealed with the data
    key) or NULL when only its hash is kept (`audit.hosted_payload: hash`) or after erasure."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    key_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(128))  # the key's name, "anonymous" or "cli:<user>"
    action: Mapped[str] = mapped_column(String(32), index=True)
    ticket_id: Mapped[str | None] = mapped_column(String(128), index=True)
    target: Mapped[str | None] = mapped_column(String(256))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    payload: Mapped[str | None] = mapped_column(EncryptedText)
    payload_sha256: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"<AuditEvent id={self.id} action={self.action} actor={self.actor}>"


class RegistryEvent(Base):
    """One promote or rollback of the shared model registry (migration 0006). The active adapter is the top of
    the replayed history; the newest id is the token every replica polls to hot-swap on a change."""

    __tablename__ = "registry_events"
    __table_args__ = (CheckConstraint("action IN ('promote', 'rollback')", name="action"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    previous: Mapped[str | None] = mapped_column(String(128))
    forced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    reason: Mapped[str | None] = mapped_column(Text)
    user: Mapped[str | None] = mapped_column(String(128))


class AdapterBlob(Base):
    """An adapter file's bytes, by content: replicas without the adapter folder materialise it from here."""

    __tablename__ = "adapter_blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RegistryFile(Base):
    """A published adapter's file list: (adapter name, file name) -> blob."""

    __tablename__ = "registry_files"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    filename: Mapped[str] = mapped_column(String(128), primary_key=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("adapter_blobs.sha256"))
    published_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


JOB_STATUSES = ("queued", "running", "done", "cancelled")
JOB_TICKET_STATUSES = ("queued", "running", "done", "failed")
OPEN_JOB_STATUSES = ("queued", "running")  # a job not ended: cancellable, claimable, counted as the queue


class Job(Base):
    """A bulk job (POST /v1/jobs, migration 0007): a file of tickets accepted at once and classified in the
    background. Readable only by the key that created it, or by keys of its scope."""

    __tablename__ = "jobs"
    __table_args__ = (CheckConstraint("status IN ('queued', 'running', 'done', 'cancelled')", name="status"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))  # upload | path
    filename: Mapped[str] = mapped_column(String(256))
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    key_id: Mapped[int | None] = mapped_column(Integer, index=True)
    scope: Mapped[str | None] = mapped_column(String(128))
    actor: Mapped[str] = mapped_column(String(128))

    def __repr__(self) -> str:
        return f"<Job id={self.id} status={self.status} {self.done + self.failed}/{self.total}>"


class JobTicket(Base):
    """One ticket of a job. Its text is sealed like a classification's and held only until it is answered
    (then the classification row `request_id` holds it, under retention and erasure like any other)."""

    __tablename__ = "job_tickets"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
        UniqueConstraint("job_id", "position"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)  # 0-based row of the input file
    ticket_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    subject: Mapped[str | None] = mapped_column(EncryptedText)
    body: Mapped[str | None] = mapped_column(EncryptedText)
    previous_interactions: Mapped[list[str] | None] = mapped_column(EncryptedJSON)
    # Which replica classifies it and since when: a claim older than jobs.lease_s is taken over.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The stored classification that answered it (no foreign key: retention and erasure delete those rows).
    request_id: Mapped[str | None] = mapped_column(String(36), index=True)
    error: Mapped[str | None] = mapped_column(Text)
