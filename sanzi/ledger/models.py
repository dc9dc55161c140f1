"""Ledger tables: assets and their history, the chart of accounts, the chained journal, contracts."""

from __future__ import annotations

import enum
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from advanced_alchemy.base import BigIntAuditBase, BigIntBase
from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship


class AssetKind(str, enum.Enum):
    FARMLAND = "farmland"  # 耕地
    FISH_POND = "fish_pond"  # 鱼塘
    FOREST = "forest"  # 林地
    CONSTRUCTION_LAND = "construction_land"  # 集体建设用地
    BUILDING = "building"  # 厂房/楼宇
    SHOP = "shop"  # 商铺
    EQUIPMENT = "equipment"  # 设备
    OTHER = "other"


class AssetStatus(str, enum.Enum):
    IDLE = "idle"  # 闲置
    LISTED = "listed"  # 挂牌中
    LEASED = "leased"  # 出租/发包中
    SOLD = "sold"  # 已转让
    DISPOSED = "disposed"  # 已报废/处置


class AreaUnit(str, enum.Enum):
    MU = "mu"  # 亩
    SQUARE_METRE = "m2"  # 平方米
    ITEM = "item"  # 台/套 (equipment)


class Asset(BigIntAuditBase):
    """A collective asset or resource (资产/资源) owned by one collective."""

    __tablename__ = "asset"
    __table_args__ = (
        UniqueConstraint("collective_id", "code", name="uq_asset_collective_code"),
        CheckConstraint("book_value_fen >= 0", name="book_value_non_negative"),
        CheckConstraint("appraisal_fen IS NULL OR appraisal_fen >= 0", name="appraisal_non_negative"),
        CheckConstraint("area > 0", name="area_positive"),
    )
    collective_id: Mapped[int] = mapped_column(ForeignKey("collective.id"), index=True)
    village_code: Mapped[str] = mapped_column(ForeignKey("village.code"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(24), index=True)
    area: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    area_unit: Mapped[str] = mapped_column(String(8))
    location: Mapped[str] = mapped_column(String(200))
    book_value_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    appraisal_fen: Mapped[int | None] = mapped_column(BigInteger)
    appraised_on: Mapped[date | None]
    status: Mapped[str] = mapped_column(String(16), default=AssetStatus.IDLE.value, index=True)
    description: Mapped[str | None] = mapped_column(String(1000))


class AssetStatusChange(BigIntBase):
    """One change of an asset's status, with who made it and why."""

    __tablename__ = "asset_status_change"
    asset_id: Mapped[int] = mapped_column(ForeignKey("asset.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500))
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    changed_at: Mapped[datetime]


class AccountType(str, enum.Enum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    COST = "cost"
    INCOME = "income"
    EXPENSE = "expense"


class Account(BigIntBase):
    """An account of one collective's chart (after the national accounting system for village collectives)."""

    __tablename__ = "account"
    __table_args__ = (
        UniqueConstraint("collective_id", "code", name="uq_account_collective_code"),
        CheckConstraint("normal_side in ('debit','credit')", name="normal_side_known"),
    )
    collective_id: Mapped[int] = mapped_column(ForeignKey("collective.id"), index=True)
    code: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(16))
    normal_side: Mapped[str] = mapped_column(String(8))
    #: what the warning rules look for: deposit_held, contract_income, hospitality, villager_payout, ...
    category: Mapped[str | None] = mapped_column(String(32), index=True)
    parent_code: Mapped[str | None] = mapped_column(String(16))
    is_active: Mapped[bool] = mapped_column(default=True)


class JournalEntry(BigIntBase):
    """A posted, immutable, balanced journal entry; the `seq`-th link of its collective's hash chain."""

    __tablename__ = "journal_entry"
    __table_args__ = (
        UniqueConstraint("collective_id", "seq", name="uq_journal_entry_collective_seq"),
        UniqueConstraint("collective_id", "client_key", name="uq_journal_entry_collective_client_key"),
        CheckConstraint("seq >= 1", name="seq_positive"),
        CheckConstraint("total_fen > 0", name="total_positive"),
    )
    collective_id: Mapped[int] = mapped_column(ForeignKey("collective.id"), index=True)
    seq: Mapped[int]
    entry_date: Mapped[date]
    memo: Mapped[str] = mapped_column(String(500))
    counterparty: Mapped[str | None] = mapped_column(String(100))
    #: where the entry came from: manual, contract_receipt, deposit, reversal, import ...
    source: Mapped[str] = mapped_column(String(32), default="manual")
    client_key: Mapped[str | None] = mapped_column(String(100))
    #: SHA-256 of the request body that created it, to refuse a reused client key with another body
    request_hash: Mapped[str | None] = mapped_column(String(64))
    reverses_entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entry.id"), unique=True)
    total_fen: Mapped[int] = mapped_column(BigInteger)
    posted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    posted_at: Mapped[datetime]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    lines: Mapped[list[JournalLine]] = relationship(
        back_populates="entry", lazy="selectin", order_by="JournalLine.line_no"
    )


class JournalLine(BigIntBase):
    """One debit or one credit of an entry, in positive integer fen."""

    __tablename__ = "journal_line"
    __table_args__ = (
        UniqueConstraint("entry_id", "line_no", name="uq_journal_line_entry_line"),
        CheckConstraint("debit_fen >= 0 AND credit_fen >= 0", name="amounts_non_negative"),
        CheckConstraint("(debit_fen = 0) <> (credit_fen = 0)", name="one_side_only"),
    )
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entry.id"), index=True)
    line_no: Mapped[int]
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id"), index=True)
    debit_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    memo: Mapped[str | None] = mapped_column(String(200))
    entry: Mapped[JournalEntry] = relationship(back_populates="lines", lazy="raise")
    account: Mapped[Account] = relationship(lazy="joined", innerjoin=True)


class LedgerRoot(BigIntBase):
    """A published root: the RFC 6962 Merkle tree hash over every collective's chain head at one moment."""

    __tablename__ = "ledger_root"
    published_at: Mapped[datetime] = mapped_column(index=True)
    tree_size: Mapped[int]
    root_hash: Mapped[str] = mapped_column(String(64))


class LedgerRootLeaf(BigIntBase):
    """One leaf of a published root: a collective's chain head at that moment (kept for inclusion proofs)."""

    __tablename__ = "ledger_root_leaf"
    __table_args__ = (
        UniqueConstraint("root_id", "leaf_index", name="uq_ledger_root_leaf_index"),
        UniqueConstraint("root_id", "village_code", name="uq_ledger_root_leaf_village"),
    )
    root_id: Mapped[int] = mapped_column(ForeignKey("ledger_root.id", ondelete="CASCADE"))
    leaf_index: Mapped[int]
    village_code: Mapped[str] = mapped_column(String(12))
    chain_length: Mapped[int]
    chain_head: Mapped[str] = mapped_column(String(64))


class PriceBasis(str, enum.Enum):
    TOTAL = "total"  # 总价
    PER_YEAR = "per_year"  # 元/年
    PER_MU_YEAR = "per_mu_year"  # 元/亩/年


class TradeType(str, enum.Enum):
    LEASE = "lease"  # 出租
    CONTRACTING = "contracting"  # 发包
    TRANSFER = "transfer"  # 转让
    JOINT_VENTURE = "joint_venture"  # 合作


class ContractOrigin(str, enum.Enum):
    AUCTION = "auction"  # 平台交易
    DIRECT = "direct"  # 直接签订（须说明理由）


class Contract(BigIntAuditBase):
    """A contract of the collective with a counterparty over an asset, with its payment schedule."""

    __tablename__ = "contract"
    __table_args__ = (
        UniqueConstraint("collective_id", "number", name="uq_contract_collective_number"),
        CheckConstraint("term_months > 0", name="term_positive"),
        CheckConstraint("unit_price_fen > 0", name="price_positive"),
        CheckConstraint("origin <> 'direct' OR origin_reason IS NOT NULL", name="direct_has_reason"),
    )
    collective_id: Mapped[int] = mapped_column(ForeignKey("collective.id"), index=True)
    village_code: Mapped[str] = mapped_column(ForeignKey("village.code"), index=True)
    number: Mapped[str] = mapped_column(String(40))
    asset_id: Mapped[int | None] = mapped_column(ForeignKey("asset.id"), index=True)
    trade_type: Mapped[str] = mapped_column(String(16))
    counterparty_name: Mapped[str] = mapped_column(String(100), index=True)
    counterparty_id_number: Mapped[str | None] = mapped_column(String(18), index=True)
    counterparty_bidder_id: Mapped[int | None] = mapped_column(ForeignKey("bidder.id"), index=True)
    start_date: Mapped[date]
    term_months: Mapped[int]
    end_date: Mapped[date]
    price_basis: Mapped[str] = mapped_column(String(16))
    unit_price_fen: Mapped[int] = mapped_column(BigInteger)
    #: area the per-mu price applies to (亩)
    area: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    #: [{"from_year": 5, "percent": "5"}]: the yearly price rises by percent from that contract year on
    step_ups: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    payment_frequency: Mapped[str] = mapped_column(String(16))
    total_value_fen: Mapped[int] = mapped_column(BigInteger)
    origin: Mapped[str] = mapped_column(String(16))
    origin_reason: Mapped[str | None] = mapped_column(String(500))
    #: the auction listing this contract came from (auction module)
    listing_id: Mapped[int | None] = mapped_column(index=True)
    signed_on: Mapped[date]
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    installments: Mapped[list[ContractInstallment]] = relationship(
        lazy="selectin", order_by="ContractInstallment.seq", cascade="all, delete-orphan"
    )


class ContractInstallment(BigIntBase):
    """One due payment of a contract's schedule."""

    __tablename__ = "contract_installment"
    __table_args__ = (
        UniqueConstraint("contract_id", "seq", name="uq_contract_installment_seq"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
    )
    contract_id: Mapped[int] = mapped_column(ForeignKey("contract.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int]
    period_start: Mapped[date]
    period_end: Mapped[date]
    due_date: Mapped[date] = mapped_column(index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)


class ContractReceipt(BigIntBase):
    """Money received against a contract, posted to the books as its own journal entry."""

    __tablename__ = "contract_receipt"
    __table_args__ = (CheckConstraint("amount_fen > 0", name="amount_positive"),)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contract.id"), index=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entry.id"), unique=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    received_on: Mapped[date]
    created_at: Mapped[datetime]


Index("ix_journal_entry_collective_date", JournalEntry.collective_id, JournalEntry.entry_date)
