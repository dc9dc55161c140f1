"""Registration API schemas: a bidder's application, the deposit's arrival, the township's decision, and
three views of registrations (the bidder's own, the committee's numbers-only, the supervisor's full)."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, Field

from sanzi.platform.money import YuanOut
from sanzi.platform.schemas import Schema, StrictSchema


class RegistrationCreate(StrictSchema):
    """Contact details for this application; they default to the bidder's profile."""

    contact_phone: str | None = Field(default=None, min_length=1, max_length=32)
    contact_address: str | None = Field(default=None, max_length=200)


class DepositIn(StrictSchema):
    """The deposit as it arrived in the village's bank account (the amount is the listing's deposit)."""

    payer_name: str = Field(min_length=1, max_length=100)
    payer_account: str = Field(min_length=1, max_length=40, pattern=r"^[0-9A-Za-z\- ]+$")
    paid_at: AwareDatetime


class RejectIn(StrictSchema):
    reason: str = Field(min_length=1, max_length=500)


class Registration(Schema):
    """A registration as its bidder sees it."""

    id: int
    listing_id: int
    listing_number: str
    listing_title: str
    listing_status: str
    status: str
    bidder_number: str | None
    deposit: YuanOut
    deposit_state: str
    deposit_paid_at: datetime | None
    contact_phone: str
    contact_address: str | None
    reject_reason: str | None
    created_at: datetime


class RegistrationBrief(Schema):
    """What the village's committee sees before the close: numbers and statuses, no identities."""

    id: int
    bidder_number: str | None
    status: str
    deposit_state: str


class RegistrationFull(RegistrationBrief):
    """What the supervisors see (and the committee after the close): identities and contact traits."""

    bidder_id: int
    bidder_kind: str
    bidder_name: str
    bidder_id_number: str
    contact_phone: str
    contact_address: str | None
    applied_ip: str | None
    applied_device: str | None
    deposit_payer_name: str | None
    deposit_payer_account: str | None
    deposit_paid_at: datetime | None
    deposit_entry_id: int | None
    deposit_settlement_entry_id: int | None
    decided_at: datetime | None
    reject_reason: str | None
    created_at: datetime


class RegistrationCounts(Schema):
    total: int
    applied: int
    deposit_paid: int
    qualified: int
    rejected: int


class ListingRegistrations(Schema):
    listing_id: int
    #: whether identities are shown (supervisors, admins; the committee once the listing is closed)
    identities: bool
    counts: RegistrationCounts
    items: list[RegistrationFull] | list[RegistrationBrief]
