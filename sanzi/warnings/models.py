"""Warning tables: alerts (one per rule and subject), their review history, and the integrity index."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from advanced_alchemy.base import BigIntBase
from sqlalchemy import JSON, CheckConstraint, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class Severity(str, enum.Enum):
    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"


class AlertStatus(str, enum.Enum):
    NEW = "new"  # 新预警
    ASSIGNED = "assigned"  # 已分派
    INVESTIGATING = "investigating"  # 核查中
    CONFIRMED = "confirmed"  # 属实，限期整改
    DISMISSED = "dismissed"  # 不属实，已排除


class Alert(BigIntBase):
    """What a rule found about one subject; raised once and updated as the evidence grows."""

    __tablename__ = "alert"
    __table_args__ = (
        UniqueConstraint("rule_id", "subject_type", "subject_id", name="uq_alert_rule_subject"),
        CheckConstraint("severity in ('red','orange','yellow')", name="severity_known"),
        CheckConstraint("score >= 0 AND score <= 100", name="score_in_range"),
    )
    rule_id: Mapped[str] = mapped_column(String(48), index=True)
    family: Mapped[str] = mapped_column(String(16), index=True)
    #: listing, bidder, contract, village, entry, election, asset ...
    subject_type: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[str] = mapped_column(String(40))
    village_code: Mapped[str] = mapped_column(ForeignKey("village.code"), index=True)
    township_code: Mapped[str] = mapped_column(String(12), index=True)
    district_code: Mapped[str] = mapped_column(String(12), index=True)
    severity: Mapped[str] = mapped_column(String(8))
    score: Mapped[float] = mapped_column(Float)
    explanation: Mapped[str] = mapped_column(Text)
    #: {"listings": [ids], "bids": [...], "registrations": [...], "contracts": [...], "entries": [...], ...}
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: when the facts behind it happened (the integrity index decays from here)
    occurred_at: Mapped[datetime]
    first_raised_at: Mapped[datetime]
    last_updated_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default=AlertStatus.NEW.value, index=True)
    assigned_to_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    #: review deadline (new/assigned/investigating) or rectification deadline (confirmed)
    due_on: Mapped[date | None]
    rectified_at: Mapped[datetime | None]


class AlertEvent(BigIntBase):
    """One step of an alert's history: raised, updated, assigned, investigating, confirmed, dismissed,
    a village committee's response, rectified; with who, when and the note."""

    __tablename__ = "alert_event"
    alert_id: Mapped[int] = mapped_column(ForeignKey("alert.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class IntegrityIndex(BigIntBase):
    """A village's integrity index (廉情指数) for one month: 100 is clean."""

    __tablename__ = "integrity_index"
    __table_args__ = (
        UniqueConstraint("village_code", "month", name="uq_integrity_index_village_month"),
        CheckConstraint("score >= 0 AND score <= 100", name="score_in_range"),
    )
    village_code: Mapped[str] = mapped_column(ForeignKey("village.code"), index=True)
    township_code: Mapped[str] = mapped_column(String(12), index=True)
    district_code: Mapped[str] = mapped_column(String(12), index=True)
    #: the first day of the month
    month: Mapped[date] = mapped_column(index=True)
    score: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(8))
    open_red: Mapped[int] = mapped_column(default=0)
    open_orange: Mapped[int] = mapped_column(default=0)
    open_yellow: Mapped[int] = mapped_column(default=0)
    #: when these values were computed; a recompute that finds the same values leaves the row as it is
    computed_at: Mapped[datetime]


Index("ix_alert_village_status", Alert.village_code, Alert.status)
