"""governance rule indexes: a contract's listing is found through listing.contract_id without a scan

The undisclosed-transaction and election rules ask of every contract they judge whether a listing names it
(``no_listing_behind``: contract.listing_id, or a listing's contract_id), and an incremental evaluation after
``contract_recorded`` asks it of one contract; without an index each such probe reads the whole listing table.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 01:10:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('listing', schema=None) as batch_op:
        batch_op.create_index('ix_listing_contract_id', ['contract_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('listing', schema=None) as batch_op:
        batch_op.drop_index('ix_listing_contract_id')
