"""Initial schema: classifications and reviewer feedback.

Written by hand to match ``server.store.models``; tests/store checks that the
migrated schema and the models agree.

Revision ID: 0001
Revises:
Create Date: 2025-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the model's JSON type: migrations must not import app models,
# whose later changes would silently rewrite history.
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "classifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(36), nullable=False),
        sa.Column("ticket_id", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("previous_interactions", JSON, nullable=True),
        sa.Column("input_truncated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("category", sa.String(128), nullable=True),
        sa.Column("priority", sa.String(64), nullable=True),
        sa.Column("sentiment", sa.String(32), nullable=True),
        sa.Column("prediction", JSON, nullable=True),
        sa.Column("confidence", JSON, nullable=True),
        sa.Column("needs_review", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("model_base", sa.String(256), nullable=False),
        sa.Column("model_adapter", sa.String(256), nullable=True),
        sa.Column("prompt_version", sa.String(64), nullable=False),
        sa.Column("taxonomy", sa.String(128), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("raw_output", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_classifications"),
        sa.UniqueConstraint("request_id", name="uq_classifications_request_id"),
        sa.CheckConstraint("status IN ('pending', 'done', 'failed')", name="ck_classifications_status"),
    )
    op.create_index("ix_classifications_ticket_id", "classifications", ["ticket_id"])
    op.create_index("ix_classifications_status", "classifications", ["status"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("classification_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.String(128), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("corrections", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.ForeignKeyConstraint(
            ["classification_id"],
            ["classifications.id"],
            name="fk_feedback_classification_id_classifications",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_feedback_classification_id", "feedback", ["classification_id"])
    op.create_index("ix_feedback_ticket_id", "feedback", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_ticket_id", table_name="feedback")
    op.drop_index("ix_feedback_classification_id", table_name="feedback")
    op.drop_table("feedback")
    op.drop_index("ix_classifications_status", table_name="classifications")
    op.drop_index("ix_classifications_ticket_id", table_name="classifications")
    op.drop_table("classifications")
