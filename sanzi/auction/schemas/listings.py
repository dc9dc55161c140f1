"""Listing API schemas: terms in (yuan strings, aware times), listings out (the reserve only in the
officials' view).

Checks of one field live here (a 400 naming it); checks across fields and against the database live in the
service (a 422 naming the field to correct).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

from sanzi.ledger.models import PriceBasis, TradeType
from sanzi.ledger.schemas.assets import AreaIn, AreaOut
from sanzi.platform.money import YuanIn, YuanOut
from sanzi.platform.schemas import Schema, StrictSchema


def _positive(fen: int) -> int:
    if fen <= 0:
        raise ValueError("金额须大于零 / amount must be greater than zero")
    return fen


#: a yuan amount that must be more than zero
PositiveYuanIn = Annotated[YuanIn, AfterValidator(_positive)]
Title = Annotated[str, Field(min_length=1, max_length=200)]
AssetIds = Annotated[list[int], Field(min_length=1, max_length=50)]
Reason = Annotated[str, Field(min_length=1, max_length=1000)]


class ListingCreate(StrictSchema):
    """A draft listing's terms. The term is given either in years or in months."""

    asset_ids: AssetIds
    title: Title
    description: str | None = Field(default=None, max_length=5000)
    trade_type: TradeType
    term_years: int | None = Field(default=None, ge=1, le=50)
    term_months: int | None = Field(default=None, ge=1, le=600)
    price_basis: PriceBasis
    #: 亩; for a per-mu price it defaults to the assets' total area when they are measured in mu
    area: AreaIn | None = None
    starting_price: PositiveYuanIn
    #: secret reserve (保留价): never shown to bidders or the public before the result
    reserve_price: PositiveYuanIn | None = None
    min_increment: PositiveYuanIn
    max_increment: PositiveYuanIn
    deposit: PositiveYuanIn
    performance_bond: YuanIn = 0
    qualification_conditions: str | None = Field(default=None, max_length=5000)
    announcement_days: int = Field(ge=1, le=365)
    registration_deadline: AwareDatetime
    bidding_starts_at: AwareDatetime
    bidding_ends_at: AwareDatetime
    extension_minutes: int = Field(ge=1, le=60)
    max_extensions: int = Field(ge=0, le=100)


class ListingUpdate(StrictSchema):
    """A change to a draft: only the fields given change; the whole set of terms is then checked again."""

    asset_ids: AssetIds | None = None
    title: Title | None = None
    description: str | None = Field(default=None, max_length=5000)
    trade_type: TradeType | None = None
    term_years: int | None = Field(default=None, ge=1, le=50)
    term_months: int | None = Field(default=None, ge=1, le=600)
    price_basis: PriceBasis | None = None
    area: AreaIn | None = None
    starting_price: PositiveYuanIn | None = None
    reserve_price: PositiveYuanIn | None = None
    min_increment: PositiveYuanIn | None = None
    max_increment: PositiveYuanIn | None = None
    deposit: PositiveYuanIn | None = None
    performance_bond: YuanIn | None = None
    qualification_conditions: str | None = Field(default=None, max_length=5000)
    announcement_days: int | None = Field(default=None, ge=1, le=365)
    registration_deadline: AwareDatetime | None = None
    bidding_starts_at: AwareDatetime | None = None
    bidding_ends_at: AwareDatetime | None = None
    extension_minutes: int | None = Field(default=None, ge=1, le=60)
    max_extensions: int | None = Field(default=None, ge=0, le=100)


class ResolutionIn(StrictSchema):
    """The villagers' resolution (村民代表会议决议) that allows the listing."""

    meeting_date: date
    members_present: int = Field(gt=0, le=100_000)
    votes_for: int = Field(ge=0, le=100_000)
    votes_against: int = Field(ge=0, le=100_000)
    note: str | None = Field(default=None, max_length=1000)


class ReasonIn(StrictSchema):
    reason: Reason


class ResumeIn(StrictSchema):
    """Resuming a suspended listing; a new bidding window is needed when the old one has run out."""

    note: str | None = Field(default=None, max_length=1000)
    bidding_starts_at: AwareDatetime | None = None
    bidding_ends_at: AwareDatetime | None = None


class RelistIn(StrictSchema):
    """A failed listing offered again: new dates, a new starting price; other terms copied unless given."""

    starting_price: PositiveYuanIn
    reserve_price: PositiveYuanIn | None = None
    min_increment: PositiveYuanIn | None = None
    max_increment: PositiveYuanIn | None = None
    deposit: PositiveYuanIn | None = None
    announcement_days: int | None = Field(default=None, ge=1, le=365)
    registration_deadline: AwareDatetime
    bidding_starts_at: AwareDatetime
    bidding_ends_at: AwareDatetime


class ListingAsset(Schema):
    id: int
    code: str
    name: str
    kind: str
    area: AreaOut
    area_unit: str
    location: str


class Listing(Schema):
    """A listing as the public sees it (announced and later): no reserve, no resolution, no internal notes."""

    id: int
    number: str
    village_code: str
    village_name: str
    township_name: str
    district_name: str
    title: str
    description: str | None
    status: str
    status_name: str
    trade_type: str
    term_months: int
    price_basis: str
    area: AreaOut | None
    starting_price: YuanOut
    min_increment: YuanOut
    max_increment: YuanOut
    deposit: YuanOut
    performance_bond: YuanOut
    qualification_conditions: str | None
    announcement_days: int
    registration_deadline: datetime
    bidding_starts_at: datetime
    bidding_ends_at: datetime
    extension_minutes: int
    max_extensions: int
    announced_at: datetime | None
    current_end_at: datetime | None
    extensions_used: int
    current_price: YuanOut | None
    bid_count: int
    final_price: YuanOut | None
    closed_at: datetime | None
    #: the public reason of a suspension or termination
    status_reason: str | None
    relisted_from_id: int | None
    assets: list[ListingAsset]


class ListingDetail(Listing):
    """A listing as the village's officials, the supervisors of its area and admins see it."""

    reserve_price: YuanOut | None
    resolution_meeting_date: date | None
    resolution_present: int | None
    resolution_votes_for: int | None
    resolution_votes_against: int | None
    resolution_note: str | None
    created_at: datetime
    updated_at: datetime


class ListingEvent(Schema):
    at: datetime
    from_status: str | None
    to_status: str
    step: str
    note: str | None = None
    #: the official who made the step (officials only)
    actor: str | None = None
