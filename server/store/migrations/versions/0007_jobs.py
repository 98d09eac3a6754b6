"""Bulk jobs over HTTP (POST /v1/jobs).

- `jobs`: one accepted file of tickets: who created it (key id, scope), its status, counts and times.
- `job_tickets`: its tickets, the text sealed like `classifications`' (and cleared once answered), the
  replica that claimed each (a claim older than `jobs.lease_s` is taken over) and the classification row
  (`request_id`) that answered it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
# Frozen copy of EncryptedJSON's storage type (migrations must not import app models).
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("filename", sa.String(256), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("scope", sa.String(128), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'cancelled')", name=op.f("ck_jobs_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.create_index("ix_jobs_key_id", "jobs", ["key_id"])
    op.create_table(
        "job_tickets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("previous_interactions", JSON, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("request_id", sa.String(36), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_job_tickets_status")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_tickets_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_tickets")),
        sa.UniqueConstraint("job_id", "position", name=op.f("uq_job_tickets_job_id")),
    )
    op.create_index("ix_job_tickets_status", "job_tickets", ["status"])
    op.create_index("ix_job_tickets_request_id", "job_tickets", ["request_id"])


def downgrade() -> None:
    op.drop_table("job_tickets")
    op.drop_table("jobs")
