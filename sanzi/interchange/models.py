"""The one table of the interchange: which source-system id became which row, and with what content."""

from __future__ import annotations

from datetime import datetime

from advanced_alchemy.base import BigIntBase
from sqlalchemy import BigInteger, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class ImportKey(BigIntBase):
    """A record imported from another system: its kind and source id, the row it became, its content hash.

    A second import of the same id with the same content changes nothing; with other content it is refused.
    """

    __tablename__ = "import_key"
    __table_args__ = (UniqueConstraint("kind", "source_id", name="uq_import_key_kind_source"),)
    kind: Mapped[str] = mapped_column(String(24))
    source_id: Mapped[str] = mapped_column(String(100))
    target_id: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime]


Index("ix_import_key_kind_target", ImportKey.kind, ImportKey.target_id)
