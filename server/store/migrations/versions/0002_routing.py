"""Routing: route, cache kind, answering engine, cost and review reasons per classification.

Plain ADD COLUMN / CREATE INDEX on both backends (no batch table rebuild: on SQLite a rebuild drops
and re-creates `classifications`, and with foreign keys on that would cascade-delete feedback).
The new columns are nullable: rows written before this revision, pending rows and failures have none.

Revision ID: 0002
Revises: 0001
Create Date: 2025-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the model's JSON type (see 0001).
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")

COLUMNS = (
    ("route", sa.String(16)),
    ("cache_kind", sa.String(8)),
    ("engine", sa.String(256)),
    ("cost_usd", sa.Float()),
    ("review_reasons", JSON),
)


def upgrade() -> None:
    for name, type_ in COLUMNS:
        op.add_column("classifications", sa.Column(name, type_, nullable=True))
    # The review queue filters on needs_review.
    op.create_index("ix_classifications_needs_review", "classifications", ["needs_review"])


def downgrade() -> None:
    op.drop_index("ix_classifications_needs_review", table_name="classifications")
    for name, _ in reversed(COLUMNS):
        op.drop_column("classifications", name)
