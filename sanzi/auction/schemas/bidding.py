"""Bidding and result API schemas: bids in, live state, results and the contract from a result."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from sanzi.ledger.schemas.contracts import PaymentFrequency
from sanzi.platform.money import YuanIn, YuanOut
from sanzi.platform.schemas import Schema


def _positive(fen: int) -> int:
    if fen <= 0:
        raise ValueError("出价须大于零 / a bid must be greater than zero")
    return fen


class BidCreate(Schema):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    amount: Annotated[YuanIn, AfterValidator(_positive)]
    #: chosen by the client for each new bid; a retry with the same key and amount answers the first bid
    client_key: str = Field(min_length=1, max_length=100)


class BidPlaced(Schema):
    seq: int
    amount: YuanOut
    bidder_number: str
    placed_at: datetime
    current_price: YuanOut
    bid_count: int
    current_end_at: datetime
    extensions_used: int
    extended: bool


class LiveBid(Schema):
    seq: int
    bidder_number: str
    amount: YuanOut
    placed_at: datetime
    extended_end_at: datetime | None = None


class LiveState(Schema):
    """What every watcher sees: numbers only, no identities, no reserve."""

    listing_id: int
    status: str
    current_price: YuanOut | None
    starting_price: YuanOut
    #: the acceptable range of the next bid while bidding is open (null once closed)
    next_min_bid: YuanOut | None
    next_max_bid: YuanOut | None
    min_increment: YuanOut
    max_increment: YuanOut
    bid_count: int
    bidding_starts_at: datetime
    current_end_at: datetime
    server_time: datetime
    extensions_used: int
    max_extensions: int
    extension_minutes: int
    bids: list[LiveBid]


class Result(Schema):
    """The published result of a closed listing."""

    listing_id: int
    number: str
    title: str
    village_code: str
    outcome: str  # sold | failed
    starting_price: YuanOut
    final_price: YuanOut | None
    #: (final - starting) / starting in percent, two decimals, e.g. "12.50"
    premium_percent: str | None
    #: the highest bid, also when it stayed below the reserve
    highest_bid: YuanOut | None
    #: null when the listing had no reserve
    reserve_met: bool | None
    qualified_bidders: int
    bidders_who_bid: int
    bid_count: int
    extensions_used: int
    closed_at: datetime
    publicity_ends_at: datetime | None
    sign_deadline: date | None
    winner_number: str | None
    winner_name: str | None
    contract_id: int | None
    bids: list[LiveBid]


class ResultSummary(Schema):
    listing_id: int
    number: str
    title: str
    village_code: str
    village_name: str
    outcome: str
    starting_price: YuanOut
    final_price: YuanOut | None
    bid_count: int
    closed_at: datetime
    publicity_ends_at: datetime | None
    winner_name: str | None


class BidderIdentity(Schema):
    """Who a bidder number was, for officials after the close."""

    bidder_number: str | None
    registration_id: int
    registration_status: str
    bidder_id: int
    kind: str
    name: str
    id_number: str
    legal_representative: str | None
    phone: str
    contact_phone: str
    contact_address: str | None
    deposit_state: str
    deposit_payer_name: str | None
    deposit_payer_account: str | None
    applied_ip: str | None
    applied_device: str | None
    bid_count: int
    highest_bid: YuanOut | None
    bid_ips: list[str]
    bid_devices: list[str]
    is_winner: bool


class ContractFromResult(Schema):
    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    number: str = Field(min_length=1, max_length=40, description="合同编号，集体内唯一")
    signed_on: date
    start_date: date
    payment_frequency: PaymentFrequency


class DepositSettlement(Schema):
    listing_id: int
    registration_id: int
    bidder_number: str | None
    deposit_state: str
    amount: YuanOut
    entry_id: int | None
