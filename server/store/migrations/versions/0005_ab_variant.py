"""A/B tests: `classifications.variant`, the A/B variant (settings `ab`) that answered the request.

A plain nullable ADD COLUMN (NULL without an A/B test and for rows written before this revision), indexed
because `triage ab report` groups by it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("classifications", sa.Column("variant", sa.String(64), nullable=True))
    op.create_index("ix_classifications_variant", "classifications", ["variant"])


def downgrade() -> None:
    op.drop_index("ix_classifications_variant", table_name="classifications")
    op.drop_column("classifications", "variant")
