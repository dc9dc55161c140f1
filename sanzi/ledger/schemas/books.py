"""Books API schemas: chart of accounts, journal entries, reports, chain verification and published roots.

Checks about the body alone (line count, one side per line, balance) live here; checks that need the database
(the accounts belong to this collective) live in the service.
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import Field, ValidationInfo, field_validator

from sanzi.platform.money import YuanIn, YuanOut
from sanzi.platform.schemas import Schema

MAX_LINES = 200


class Account(Schema):
    code: str
    name: str
    type: str
    normal_side: str
    category: str | None = None
    parent_code: str | None = None
    is_active: bool


class LineIn(Schema):
    account_code: str = Field(min_length=1, max_length=16)
    debit: YuanIn = 0
    #: validated even when left out, so the one-side check below always runs
    credit: YuanIn = Field(default=0, validate_default=True)
    memo: str | None = Field(default=None, max_length=200)

    @field_validator("credit")
    @classmethod
    def _exactly_one_side(cls, credit: int, info: ValidationInfo) -> int:
        debit = info.data.get("debit")
        if debit is not None and (debit > 0) == (credit > 0):
            raise ValueError(
                "每行须且只能填写借方或贷方金额之一（大于零） / "
                "a line needs exactly one of debit or credit, greater than zero"
            )
        return credit


class EntryCreate(Schema):
    entry_date: date
    memo: str = Field(min_length=1, max_length=500)
    counterparty: str | None = Field(default=None, max_length=100)
    client_key: str | None = Field(default=None, min_length=1, max_length=100)
    lines: list[LineIn] = Field(max_length=MAX_LINES)

    @field_validator("lines")
    @classmethod
    def _balanced(cls, lines: list[LineIn]) -> list[LineIn]:
        if len(lines) < 2:
            raise ValueError("凭证至少需要两行分录 / an entry needs at least two lines")
        debits, credits = sum(line.debit for line in lines), sum(line.credit for line in lines)
        if debits != credits:
            raise ValueError(
                f"借贷不平衡：借方 {debits} 分，贷方 {credits} 分 / "
                f"unbalanced: debits {debits} fen, credits {credits} fen"
            )
        return lines


class ReversalCreate(Schema):
    """A correction: the mirror entry of one already posted. Date and memo default to today and a note."""

    entry_date: date | None = None
    memo: str | None = Field(default=None, min_length=1, max_length=500)


class Line(Schema):
    line_no: int
    account_code: str
    account_name: str
    debit: YuanOut
    credit: YuanOut
    memo: str | None = None


class Entry(Schema):
    id: int
    village_code: str
    seq: int
    entry_date: date
    memo: str
    counterparty: str | None = None
    source: str
    client_key: str | None = None
    reverses_entry_id: int | None = None
    reversed_by_entry_id: int | None = None
    total: YuanOut
    posted_by_id: int | None = None
    posted_at: datetime
    prev_hash: str
    hash: str
    lines: list[Line]


# ---- reports ---------------------------------------------------------------------------------------------


class TrialBalanceRow(Schema):
    code: str
    name: str
    type: str
    normal_side: str
    debit: YuanOut
    credit: YuanOut
    #: debits minus credits for a debit-normal account, credits minus debits for a credit-normal one
    balance: YuanOut


class TrialBalance(Schema):
    village_code: str
    as_of: date | None
    accounts: list[TrialBalanceRow]
    total_debit: YuanOut
    total_credit: YuanOut
    #: the sum of debit-side balances and of credit-side balances (equal when the books balance)
    total_debit_balance: YuanOut
    total_credit_balance: YuanOut
    balanced: bool


class StatementLine(Schema):
    entry_id: int
    seq: int
    entry_date: date
    memo: str
    line_memo: str | None = None
    debit: YuanOut
    credit: YuanOut
    balance: YuanOut


class AccountStatement(Schema):
    village_code: str
    account: Account
    date_from: date | None
    date_to: date | None
    opening_balance: YuanOut
    lines: list[StatementLine]
    total_debit: YuanOut
    total_credit: YuanOut
    closing_balance: YuanOut


class IncomeExpenditureRow(Schema):
    code: str
    name: str
    amount: YuanOut


class IncomeExpenditure(Schema):
    village_code: str
    date_from: date | None
    date_to: date | None
    income: list[IncomeExpenditureRow]
    expenditure: list[IncomeExpenditureRow]
    total_income: YuanOut
    total_expenditure: YuanOut
    net: YuanOut


# ---- chain and roots -------------------------------------------------------------------------------------


class ChainStatus(Schema):
    """The public answer to "do this village's books still verify?" (no entry contents)."""

    village_code: str
    ok: bool
    chain_length: int
    first_broken_seq: int | None = None
    reason: str | None = None


class LedgerRoot(Schema):
    id: int
    published_at: datetime
    tree_size: int
    root_hash: str


class InclusionProof(Schema):
    """A village's leaf in a published root with its RFC 6962 audit path (hex), enough to check it offline.

    leaf = village_code (12 ASCII digits) ‖ chain_length (uint64 big-endian) ‖ chain_head (32 bytes);
    leaf hash = SHA-256(0x00 ‖ leaf); node = SHA-256(0x01 ‖ left ‖ right).
    """

    root: LedgerRoot
    village_code: str
    leaf_index: int
    chain_length: int
    chain_head: str
    leaf: str
    leaf_hash: str
    audit_path: list[str]
