"""Contract API schemas: terms in, the generated schedule, receipts, arrears out (yuan strings)."""

from __future__ import annotations

import enum
import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer, WithJsonSchema, field_validator

from sanzi.ledger.models import ContractOrigin, PriceBasis, TradeType
from sanzi.ledger.schemas.assets import AreaIn, AreaOut
from sanzi.platform.identity import person_or_company_number
from sanzi.platform.money import YuanIn, YuanOut
from sanzi.platform.problems import DomainError
from sanzi.platform.schemas import Schema


class PaymentFrequency(str, enum.Enum):
    ONCE = "once"  # 一次性
    ANNUAL = "annual"  # 按年
    SEMIANNUAL = "semiannual"  # 按半年
    QUARTERLY = "quarterly"  # 按季
    MONTHLY = "monthly"  # 按月


class ContractStatus(str, enum.Enum):
    ACTIVE = "active"  # 履行中
    TERMINATED = "terminated"  # 已解除
    EXPIRED = "expired"  # 已到期


def _positive(fen: int) -> int:
    if fen <= 0:
        raise ValueError("金额须大于零 / amount must be greater than zero")
    return fen


#: a yuan amount that must be more than zero (prices, receipts)
PositiveYuanIn = Annotated[YuanIn, AfterValidator(_positive)]

_PERCENT = re.compile(r"^\d{1,3}(\.\d{1,2})?$")


def parse_percent(value: Any) -> Decimal:
    """A step-up percentage as a decimal string ("5" = +5 %), more than 0 and at most 100, two decimals."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _PERCENT.match(value.strip()):
        raise ValueError('涨幅须为字符串形式的百分数，如 "5" / percent must be a decimal string like "5"')
    percent = Decimal(value.strip())
    if not 0 < percent <= 100:
        raise ValueError("涨幅须大于 0 且不超过 100 / percent must be more than 0 and at most 100")
    return percent


def normalise_id_number(value: str | None) -> str | None:
    """A resident ID number (身份证号) or a unified social credit code (统一社会信用代码), as the platform
    checks them for bidders (sanzi.platform.identity); returned compact and upper-case; blank means none."""
    if value is None or not value.strip():
        return None
    try:
        return person_or_company_number(value, "counterparty_id_number")
    except DomainError as exc:
        raise ValueError(f"{exc.message} / {exc.message_en}") from None


class StepUp(Schema):
    """The yearly price rises by ``percent`` from contract year ``from_year`` on; step-ups compound."""

    from_year: int = Field(ge=2, le=100)
    percent: Annotated[
        Decimal,
        BeforeValidator(parse_percent),
        PlainSerializer(lambda p: format(p, "f"), return_type=str),
        WithJsonSchema({"type": "string", "examples": ["5"]}),
    ]


class ContractCreate(Schema):
    number: str = Field(min_length=1, max_length=40, description="合同编号，集体内唯一")
    asset_id: int
    trade_type: TradeType
    counterparty_name: str = Field(min_length=1, max_length=100)
    counterparty_id_number: str | None = Field(default=None, max_length=30)
    start_date: date
    #: the term: exactly one of term_months, term_years or end_date (the last day, inclusive)
    term_months: int | None = Field(default=None, ge=1, le=600)
    term_years: int | None = Field(default=None, ge=1, le=50)
    end_date: date | None = None
    price_basis: PriceBasis
    #: the total price (total), the yearly price (per_year) or the price per mu per year (per_mu_year)
    unit_price: PositiveYuanIn
    #: the area (亩) a per-mu price applies to; defaults to the asset's area when the asset is measured in mu
    area: AreaIn | None = None
    step_ups: list[StepUp] = Field(default_factory=list, max_length=20)
    payment_frequency: PaymentFrequency
    signed_on: date
    origin: ContractOrigin = ContractOrigin.DIRECT
    origin_reason: str | None = Field(default=None, max_length=500)

    @field_validator("counterparty_id_number")
    @classmethod
    def _valid_id_number(cls, value: str | None) -> str | None:
        return normalise_id_number(value)


class Installment(Schema):
    seq: int
    period_start: date
    period_end: date
    due_date: date
    amount: YuanOut = Field(validation_alias="amount_fen")


class ContractSummary(Schema):
    id: int
    village_code: str
    number: str
    asset_id: int | None
    trade_type: str
    counterparty_name: str
    counterparty_id_number: str | None
    start_date: date
    term_months: int
    end_date: date
    price_basis: str
    unit_price: YuanOut = Field(validation_alias="unit_price_fen")
    area: AreaOut | None
    step_ups: list[StepUp]
    payment_frequency: str
    total_value: YuanOut = Field(validation_alias="total_value_fen")
    origin: str
    origin_reason: str | None
    listing_id: int | None
    signed_on: date
    status: str
    created_at: datetime


class Contract(ContractSummary):
    installments: list[Installment]


class ScheduleLine(Schema):
    seq: int
    period_start: date
    period_end: date
    due_date: date
    amount: YuanOut
    #: receipts applied to this installment (oldest unpaid installments first)
    received: YuanOut
    outstanding: YuanOut
    overdue: bool


class Schedule(Schema):
    contract_id: int
    number: str
    as_of: date
    total_value: YuanOut
    received: YuanOut
    outstanding: YuanOut
    #: outstanding on installments due before as_of
    overdue: YuanOut
    installments: list[ScheduleLine]


class ReceiptCreate(Schema):
    amount: PositiveYuanIn
    received_on: date
    account: Literal["cash", "bank"] = "bank"
    client_key: str | None = Field(default=None, min_length=1, max_length=100)


class Receipt(Schema):
    id: int
    contract_id: int
    entry_id: int
    amount: YuanOut = Field(validation_alias="amount_fen")
    received_on: date
    created_at: datetime


class ArrearsLine(Schema):
    contract_id: int
    number: str
    counterparty_name: str
    asset_id: int | None
    #: installments due before as_of, receipts up to as_of, and the difference
    due: YuanOut
    received: YuanOut
    overdue: YuanOut
    oldest_due_date: date | None = None


class Arrears(Schema):
    village_code: str
    as_of: date
    total_overdue: YuanOut
    contracts: list[ArrearsLine]
