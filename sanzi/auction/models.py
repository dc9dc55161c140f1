"""Auction tables: listings and their history, registrations (with deposits and bidder numbers), bids."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal

from advanced_alchemy.base import BigIntAuditBase, BigIntBase
from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column


class ListingStatus(str, enum.Enum):
    DRAFT = "draft"  # 草稿
    SUBMITTED = "submitted"  # 已提交（附村民代表会议决议）
    APPROVED = "approved"  # 镇街已审核
    ANNOUNCED = "announced"  # 公告中（报名）
    BIDDING = "bidding"  # 竞价中
    CLOSED = "closed"  # 竞价结束，待确认结果
    SOLD = "sold"  # 成交
    FAILED = "failed"  # 流拍
    SUSPENDED = "suspended"  # 中止
    TERMINATED = "terminated"  # 终止


class RegistrationStatus(str, enum.Enum):
    APPLIED = "applied"  # 已报名，待交保证金
    DEPOSIT_PAID = "deposit_paid"  # 保证金已到账，待资格审核
    QUALIFIED = "qualified"  # 资格审核通过，已取得竞买号
    REJECTED = "rejected"  # 资格审核不通过


class DepositState(str, enum.Enum):
    NONE = "none"
    HELD = "held"  # 在 21101 应付款—竞买保证金
    REFUNDED = "refunded"  # 已退还
    APPLIED = "applied"  # 转作首期价款
    FORFEITED = "forfeited"  # 没收


class Listing(BigIntAuditBase):
    """An asset put out to open bidding, from the village's draft to its result.

    The live state of bidding (current price, leader, bid count, end time, extensions) lives on this row, and
    every bid locks it first: that lock is what serialises bids and the close of one listing.
    """

    __tablename__ = "listing"
    __table_args__ = (
        UniqueConstraint("number", name="uq_listing_number"),
        CheckConstraint("starting_price_fen > 0", name="starting_price_positive"),
        CheckConstraint("min_increment_fen > 0", name="min_increment_positive"),
        CheckConstraint("max_increment_fen >= min_increment_fen", name="max_increment_at_least_min"),
        CheckConstraint("max_increment_fen % min_increment_fen = 0", name="max_increment_multiple_of_min"),
        CheckConstraint("deposit_fen >= 0 AND deposit_fen <= starting_price_fen", name="deposit_within_start"),
        CheckConstraint("performance_bond_fen >= 0", name="performance_bond_non_negative"),
        CheckConstraint("reserve_price_fen IS NULL OR reserve_price_fen > 0", name="reserve_positive"),
        CheckConstraint("extensions_used <= max_extensions", name="extensions_within_cap"),
        CheckConstraint("term_months > 0", name="term_positive"),
    )
    collective_id: Mapped[int] = mapped_column(ForeignKey("collective.id"), index=True)
    village_code: Mapped[str] = mapped_column(ForeignKey("village.code"), index=True)
    number: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ListingStatus.DRAFT.value, index=True)
    trade_type: Mapped[str] = mapped_column(String(16))
    term_months: Mapped[int]
    price_basis: Mapped[str] = mapped_column(String(16))
    area: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    starting_price_fen: Mapped[int] = mapped_column(BigInteger)
    #: secret reserve: never shown to bidders or the public before the result
    reserve_price_fen: Mapped[int | None] = mapped_column(BigInteger)
    min_increment_fen: Mapped[int] = mapped_column(BigInteger)
    max_increment_fen: Mapped[int] = mapped_column(BigInteger)
    deposit_fen: Mapped[int] = mapped_column(BigInteger)
    performance_bond_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    qualification_conditions: Mapped[str | None] = mapped_column(Text)
    announcement_days: Mapped[int]
    registration_deadline: Mapped[datetime]
    bidding_starts_at: Mapped[datetime]
    bidding_ends_at: Mapped[datetime]
    extension_minutes: Mapped[int]
    max_extensions: Mapped[int]
    # the villagers' resolution (村民代表会议决议)
    resolution_meeting_date: Mapped[date | None]
    resolution_present: Mapped[int | None]
    resolution_votes_for: Mapped[int | None]
    resolution_votes_against: Mapped[int | None]
    resolution_note: Mapped[str | None] = mapped_column(String(1000))
    # lifecycle facts
    announced_at: Mapped[datetime | None]
    #: the public reason for a suspension or termination, or the township's reason for sending it back
    status_reason: Mapped[str | None] = mapped_column(String(1000))
    relisted_from_id: Mapped[int | None] = mapped_column(ForeignKey("listing.id"), index=True)
    # live state, changed only under the listing's lock
    lock_version: Mapped[int] = mapped_column(default=0)
    current_end_at: Mapped[datetime | None] = mapped_column(index=True)
    extensions_used: Mapped[int] = mapped_column(default=0)
    current_price_fen: Mapped[int | None] = mapped_column(BigInteger)
    leading_registration_id: Mapped[int | None] = mapped_column(ForeignKey("registration.id", use_alter=True))
    bid_count: Mapped[int] = mapped_column(default=0)
    # result
    closed_at: Mapped[datetime | None]
    winner_registration_id: Mapped[int | None] = mapped_column(ForeignKey("registration.id", use_alter=True))
    final_price_fen: Mapped[int | None] = mapped_column(BigInteger)
    publicity_ends_at: Mapped[datetime | None]
    sign_deadline: Mapped[date | None]
    contract_id: Mapped[int | None] = mapped_column(ForeignKey("contract.id"))


class ListingAsset(BigIntBase):
    """An asset offered in a listing (a listing may bundle several)."""

    __tablename__ = "listing_asset"
    __table_args__ = (UniqueConstraint("listing_id", "asset_id", name="uq_listing_asset"),)
    listing_id: Mapped[int] = mapped_column(ForeignKey("listing.id", ondelete="CASCADE"), index=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id"), index=True)


class ListingEvent(BigIntBase):
    """One step of a listing's lifecycle: who moved it from which status to which, when, and why."""

    __tablename__ = "listing_event"
    listing_id: Mapped[int] = mapped_column(ForeignKey("listing.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    at: Mapped[datetime]
    note: Mapped[str | None] = mapped_column(String(1000))


class Registration(BigIntAuditBase):
    """A bidder's application for a listing: deposit, qualification and bidder number (竞买号)."""

    __tablename__ = "registration"
    __table_args__ = (
        UniqueConstraint("listing_id", "bidder_id", name="uq_registration_listing_bidder"),
        UniqueConstraint("listing_id", "bidder_number", name="uq_registration_listing_number"),
    )
    listing_id: Mapped[int] = mapped_column(ForeignKey("listing.id"), index=True)
    bidder_id: Mapped[int] = mapped_column(ForeignKey("bidder.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=RegistrationStatus.APPLIED.value)
    bidder_number: Mapped[str | None] = mapped_column(String(16))
    # contact traits as given for this application (the warning engine compares them across bidders)
    contact_phone: Mapped[str] = mapped_column(String(32))
    contact_address: Mapped[str | None] = mapped_column(String(200))
    applied_ip: Mapped[str | None] = mapped_column(String(64))
    applied_device: Mapped[str | None] = mapped_column(String(128))
    # the deposit
    deposit_state: Mapped[str] = mapped_column(String(16), default=DepositState.NONE.value)
    deposit_payer_name: Mapped[str | None] = mapped_column(String(100))
    deposit_payer_account: Mapped[str | None] = mapped_column(String(40), index=True)
    deposit_paid_at: Mapped[datetime | None]
    deposit_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entry.id"))
    deposit_settlement_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entry.id"))
    # the township's decision
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    decided_at: Mapped[datetime | None]
    reject_reason: Mapped[str | None] = mapped_column(String(500))


class Bid(BigIntBase):
    """An acknowledged bid: durable before it is acknowledged, never withdrawn, `seq`-th of its listing."""

    __tablename__ = "bid"
    __table_args__ = (
        UniqueConstraint("listing_id", "seq", name="uq_bid_listing_seq"),
        UniqueConstraint("listing_id", "client_key", name="uq_bid_listing_client_key"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
    )
    listing_id: Mapped[int] = mapped_column(ForeignKey("listing.id"))
    seq: Mapped[int]
    registration_id: Mapped[int] = mapped_column(ForeignKey("registration.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    client_key: Mapped[str] = mapped_column(String(100))
    placed_at: Mapped[datetime]
    #: the end time after this bid (set when the bid extended the auction)
    extended_end_at: Mapped[datetime | None]
    ip_address: Mapped[str | None] = mapped_column(String(64), index=True)
    device_fingerprint: Mapped[str | None] = mapped_column(String(128), index=True)


Index("ix_listing_status_end", Listing.status, Listing.current_end_at)
#: the results list: newest closings first, read backwards along this index; its count, from the index alone
Index("ix_listing_closed_at", Listing.closed_at, Listing.id)
Index("ix_listing_status_closed_at", Listing.status, Listing.closed_at)
#: a village's sold lots in closing order: the scoped BID rules' lots and 24-month windows (migration 0008)
Index(
    "ix_listing_sold_village_closed",
    Listing.village_code,
    Listing.closed_at,
    postgresql_where=Listing.status == "sold",
    sqlite_where=Listing.status == "sold",
)
#: the warning rules: is there a listing behind this contract (migration 0009)
Index("ix_listing_contract_id", Listing.contract_id)
#: the public announcements: newest first, read backwards along this index; its count, from the index alone
#: (migration 0010)
Index(
    "ix_listing_announced",
    Listing.announced_at,
    Listing.id,
    postgresql_where=Listing.announced_at.is_not(None),
    sqlite_where=Listing.announced_at.is_not(None),
)
