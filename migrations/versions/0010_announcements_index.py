"""announcements index: the public list of announcements reads its newest page without sorting every listing

The announcements page (and its API) lists published listings newest first and counts them. Without an index
on ``announced_at`` each view read and sorted the whole listing table: on the city's ten years (105,000
listings) about 130 ms for the first page and 90–300 ms for the count. A partial index on the published ones
serves the page by a backward scan and the count from the index alone.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 15:10:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('listing', schema=None) as batch_op:
        batch_op.create_index(
            'ix_listing_announced',
            ['announced_at', 'id'],
            unique=False,
            postgresql_where=sa.text('announced_at IS NOT NULL'),
            sqlite_where=sa.text('announced_at IS NOT NULL'),
        )


def downgrade() -> None:
    with op.batch_alter_table('listing', schema=None) as batch_op:
        batch_op.drop_index('ix_listing_announced')
