"""Fields: the output fields a request asked for (`"fields"` on /v1/classify, or `api.default_fields`).

A plain nullable ADD COLUMN on both backends (no batch table rebuild, see 0002): NULL means every field,
which is what every row written before this revision answered.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of the model's JSON type (see 0001).
JSON = sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


def upgrade() -> None:
    op.add_column("classifications", sa.Column("fields", JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("classifications", "fields")
