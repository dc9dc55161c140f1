"""bid rule indexes: a village's sold lots in closing order, for the scoped BID rules (24-month windows)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 01:00:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('listing', schema=None) as batch_op:
        batch_op.create_index(
            'ix_listing_sold_village_closed',
            ['village_code', 'closed_at'],
            unique=False,
            postgresql_where=sa.text("status = 'sold'"),
            sqlite_where=sa.text("status = 'sold'"),
        )


def downgrade() -> None:
    with op.batch_alter_table('listing', schema=None) as batch_op:
        batch_op.drop_index('ix_listing_sold_village_closed')
