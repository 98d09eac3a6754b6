"""Security: API keys with roles, who sent each request and correction, an append-only audit log.

- `api_keys`: a slow hash of each key's secret, its role and optional scope (tenant); revoked, never deleted.
- `classifications.key_id`/`scope` and `feedback.key_id`/`key_role`/`redacted_at`: plain nullable ADD
  COLUMNs (NULL for rows written before keys existed).
- `audit_log`, with triggers on both backends that refuse DELETE and any UPDATE other than erasing a
  payload (setting `payload` to NULL), so the log cannot be rewritten through the application's connection.

Encryption at rest needs no column change: sealed values are stored as text (a JSON string in JSON
columns), and rows written before this revision stay readable as they are (`triage keys rotate-data-key`
seals them).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model's types (see 0001).
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TS = sa.DateTime(timezone=True)

APPEND_ONLY = "audit_log is append-only"

PG_TRIGGER = f"""
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION '{APPEND_ONLY}';
    END IF;
    IF NEW.payload IS NOT NULL OR
       (NEW.id, NEW.at, NEW.key_id, NEW.actor, NEW.action, NEW.ticket_id, NEW.target,
        NEW.detail::text, NEW.payload_sha256)
       IS DISTINCT FROM
       (OLD.id, OLD.at, OLD.key_id, OLD.actor, OLD.action, OLD.ticket_id, OLD.target,
        OLD.detail::text, OLD.payload_sha256) THEN
        RAISE EXCEPTION '{APPEND_ONLY}: only erasing a payload is allowed';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
"""

SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END""",
    f"""CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    WHEN NEW.payload IS NOT NULL
      OR NEW.id IS NOT OLD.id OR NEW.at IS NOT OLD.at OR NEW.key_id IS NOT OLD.key_id
      OR NEW.actor IS NOT OLD.actor OR NEW.action IS NOT OLD.action OR NEW.ticket_id IS NOT OLD.ticket_id
      OR NEW.target IS NOT OLD.target OR NEW.detail IS NOT OLD.detail OR NEW.payload_sha256 IS NOT OLD.payload_sha256
    BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: only erasing a payload is allowed'); END""",
)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(256), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(128), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        sa.CheckConstraint("role IN ('classify', 'review', 'admin')", name="ck_api_keys_role"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("ticket_id", sa.String(128), nullable=True),
        sa.Column("target", sa.String(256), nullable=True),
        sa.Column("detail", JSON, nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("payload_sha256", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_index("ix_audit_log_ticket_id", "audit_log", ["ticket_id"])
    op.add_column("classifications", sa.Column("key_id", sa.Integer(), nullable=True))
    op.add_column("classifications", sa.Column("scope", sa.String(128), nullable=True))
    op.create_index("ix_classifications_scope", "classifications", ["scope"])
    op.add_column("feedback", sa.Column("key_id", sa.Integer(), nullable=True))
    op.add_column("feedback", sa.Column("key_role", sa.String(16), nullable=True))
    op.add_column("feedback", sa.Column("redacted_at", TS, nullable=True))
    op.create_index("ix_feedback_key_id", "feedback", ["key_id"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_TRIGGER)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION IF EXISTS audit_log_append_only()")
    op.drop_index("ix_feedback_key_id", table_name="feedback")
    op.drop_column("feedback", "redacted_at")
    op.drop_column("feedback", "key_role")
    op.drop_column("feedback", "key_id")
    op.drop_index("ix_classifications_scope", table_name="classifications")
    op.drop_column("classifications", "scope")
    op.drop_column("classifications", "key_id")
    op.drop_index("ix_audit_log_ticket_id", table_name="audit_log")
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")  # its SQLite triggers go with it
    op.drop_table("api_keys")
