"""The model registry in the shared store, so every API replica serves the same adapter.

- `registry_events`: the promote/rollback history (the file index's `history`), one row per event; the
  active adapter is the replayed history's top, and the newest event id is the change token replicas poll.
- `adapter_blobs`: adapter files by content (sha256 -> bytes), written once, shared by every adapter that
  holds the same file.
- `registry_files`: which files (name -> sha256) make up a published adapter, so a replica with no copy of
  models/adapters/ can materialise and verify it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "registry_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("previous", sa.String(128), nullable=True),
        sa.Column("forced", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("user", sa.String(128), nullable=True),
        sa.CheckConstraint("action IN ('promote', 'rollback')", name=op.f("ck_registry_events_action")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_events")),
    )
    op.create_table(
        "adapter_blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_adapter_blobs")),
    )
    op.create_table(
        "registry_files",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("filename", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("published_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"], ["adapter_blobs.sha256"], name=op.f("fk_registry_files_sha256_adapter_blobs")
        ),
        sa.PrimaryKeyConstraint("name", "filename", name=op.f("pk_registry_files")),
    )


def downgrade() -> None:
    op.drop_table("registry_files")
    op.drop_table("adapter_blobs")
    op.drop_table("registry_events")
