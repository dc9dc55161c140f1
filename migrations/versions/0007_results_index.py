"""results index: the public results list reads the newest closings along (closed_at, id) and counts
them along (status, closed_at)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 00:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('listing', schema=None) as batch_op:
        batch_op.create_index('ix_listing_closed_at', ['closed_at', 'id'], unique=False)
        batch_op.create_index('ix_listing_status_closed_at', ['status', 'closed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('listing', schema=None) as batch_op:
        batch_op.drop_index('ix_listing_status_closed_at')
        batch_op.drop_index('ix_listing_closed_at')
