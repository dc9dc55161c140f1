"""import keys: which source-system id became which row (idempotent imports of a city's records)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 21:40:00+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('import_key',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('source_id', sa.String(length=100), nullable=False),
    sa.Column('target_id', sa.BigInteger(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('imported_at', advanced_alchemy.types.DateTimeUTC(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_import_key')),
    sa.UniqueConstraint('kind', 'source_id', name='uq_import_key_kind_source')
    )
    with op.batch_alter_table('import_key', schema=None) as batch_op:
        batch_op.create_index('ix_import_key_kind_target', ['kind', 'target_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('import_key', schema=None) as batch_op:
        batch_op.drop_index('ix_import_key_kind_target')
    op.drop_table('import_key')
