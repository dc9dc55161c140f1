"""Fast ORM builders for warning-rule tests: bidders, assets, listings with registrations and bids, results,
contracts, cadres and their relatives. Nothing goes through the services or the books (deposits are marked
held without a journal entry), so a test can build dozens of lots in a blink; every builder flushes and
returns the rows, with distinct identity traits unless told otherwise.

    lot = await make_auction(db, VILLAGE_A, amounts=[(0, 100_000_00), (1, 101_000_00)])
    lot.listing, lot.registrations, lot.bids, lot.bidders
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import (
    Bid,
    DepositState,
    Listing,
    ListingAsset,
    ListingStatus,
    Registration,
    RegistrationStatus,
)
from sanzi.ledger.models import Asset, AssetStatus, Contract
from sanzi.platform.models import Bidder, Cadre, CadreRelative, Collective, Role, User, Village
from tests.auction.factories import resident_id_number

_serial = itertools.count(random.randrange(10**6))
DEFAULT_CLOSED_AT = datetime(2025, 6, 30, 10, 0, tzinfo=UTC)


def _n() -> int:
    return next(_serial)


async def collective_of(session: AsyncSession, village_code: str) -> Collective:
    collective = await session.scalar(select(Collective).where(Collective.village_code == village_code))
    assert collective is not None, f"no collective for {village_code}: load the villages first"
    return collective


async def villages_of_township(session: AsyncSession, township_code: str) -> list[str]:
    """The codes of a township's villages, in code order (for comparables in one township)."""
    return list(
        await session.scalars(
            select(Village.code).where(Village.township_code == township_code).order_by(Village.code)
        )
    )


async def village_township(session: AsyncSession, village_code: str) -> str:
    return (await session.get_one(Village, village_code)).township_code


async def make_bidder(
    session: AsyncSession,
    *,
    name: str | None = None,
    id_number: str | None = None,
    phone: str | None = None,
    address: str | None = None,
    bank_account: str | None = None,
    kind: str = "person",
) -> Bidder:
    """A bidder with its (never logged-in) user; every trait distinct unless given."""
    n = _n()
    user = User(
        username=f"wb-{uuid.uuid4().hex[:12]}",
        password_hash="!",
        display_name="竞买人",
        role=Role.BIDDER.value,
    )
    session.add(user)
    await session.flush()
    bidder = Bidder(
        user_id=user.id,
        kind=kind,
        name=name or f"竞买人{n % 100000}",
        id_number=id_number or resident_id_number(),
        phone=phone or f"137{n % 10**8:08d}",
        address=address or f"广州市测试区测试路{n}号",
        bank_name="测试银行",
        bank_account=bank_account or f"6217{n:015d}"[:19],
    )
    session.add(bidder)
    await session.flush()
    return bidder


async def make_asset(
    session: AsyncSession,
    village_code: str,
    *,
    kind: str = "fish_pond",
    area: Decimal | str | int = Decimal(10),
    area_unit: str = "mu",
    status: str = AssetStatus.LEASED.value,
) -> Asset:
    collective = await collective_of(session, village_code)
    asset = Asset(
        collective_id=collective.id,
        village_code=village_code,
        code=f"W-{uuid.uuid4().hex[:10].upper()}",
        name="测试资产",
        kind=kind,
        area=Decimal(area),
        area_unit=area_unit,
        location="村内",
        status=status,
    )
    session.add(asset)
    await session.flush()
    return asset


async def make_listing(
    session: AsyncSession,
    village_code: str,
    *,
    status: str = ListingStatus.SOLD.value,
    kind: str = "fish_pond",
    area: Decimal | str | int | None = Decimal(10),
    area_unit: str = "mu",
    asset: Asset | None = None,
    trade_type: str = "lease",
    price_basis: str = "per_mu_year",
    term_months: int = 60,
    starting_price_fen: int = 1_000_00,
    min_increment_fen: int = 10_00,
    deposit_fen: int = 100_00,
    closed_at: datetime | None = DEFAULT_CLOSED_AT,
    bidding_hours: float = 1,
    announcement_days: int = 10,
    announced_days_before: float | None = None,
    relisted_from: Listing | None = None,
) -> Listing:
    """A listing whose bidding ended at ``closed_at`` (or is under way), announced ``announced_days_before``
    days before bidding started (default ``announcement_days``); its asset made on the fly unless given."""
    collective = await collective_of(session, village_code)
    asset = asset or await make_asset(
        session,
        village_code,
        kind=kind,
        area=area if area is not None else Decimal(10),
        area_unit=area_unit,
    )
    ends_at = closed_at or DEFAULT_CLOSED_AT
    starts_at = ends_at - timedelta(hours=bidding_hours)
    announced_at = starts_at - timedelta(
        days=announcement_days if announced_days_before is None else announced_days_before
    )
    finished = status in {ListingStatus.SOLD.value, ListingStatus.FAILED.value, ListingStatus.CLOSED.value}
    listing = Listing(
        collective_id=collective.id,
        village_code=village_code,
        number=f"W{uuid.uuid4().hex[:12].upper()}",
        title="测试标的",
        status=status,
        trade_type=trade_type,
        term_months=term_months,
        price_basis=price_basis,
        area=Decimal(area) if area is not None else None,
        starting_price_fen=starting_price_fen,
        min_increment_fen=min_increment_fen,
        max_increment_fen=min_increment_fen * 5,
        deposit_fen=min(deposit_fen, starting_price_fen),
        performance_bond_fen=0,
        announcement_days=announcement_days,
        registration_deadline=starts_at - timedelta(hours=2),
        bidding_starts_at=starts_at,
        bidding_ends_at=ends_at,
        extension_minutes=5,
        max_extensions=3,
        announced_at=announced_at,
        current_end_at=ends_at,
        closed_at=ends_at if finished else None,
        relisted_from_id=relisted_from.id if relisted_from else None,
    )
    session.add(listing)
    await session.flush()
    session.add(ListingAsset(listing_id=listing.id, asset_id=asset.id))
    await session.flush()
    return listing


async def add_registration(
    session: AsyncSession,
    listing: Listing,
    bidder: Bidder | None = None,
    *,
    status: str = RegistrationStatus.QUALIFIED.value,
    deposit: bool = True,
    contact_phone: str | None = None,
    contact_address: str | None = None,
    applied_ip: str | None = None,
    applied_device: str | None = None,
    deposit_payer_name: str | None = None,
    deposit_payer_account: str | None = None,
) -> Registration:
    """A registration (qualified with a held deposit by default) of a bidder (a new one unless given); its
    contact traits default to the bidder's profile, its network address and device are its own."""
    bidder = bidder or await make_bidder(session)
    n = _n()
    numbered = await session.scalar(
        select(func.count()).select_from(Registration).where(Registration.listing_id == listing.id)
    )
    registration = Registration(
        listing_id=listing.id,
        bidder_id=bidder.id,
        status=status,
        bidder_number=f"{(numbered or 0) + 1:03d}" if status == RegistrationStatus.QUALIFIED.value else None,
        contact_phone=contact_phone or bidder.phone,
        contact_address=contact_address or bidder.address,
        applied_ip=applied_ip or f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}",
        applied_device=applied_device or f"device-{uuid.uuid4().hex[:16]}",
        deposit_state=DepositState.HELD.value if deposit else DepositState.NONE.value,
        deposit_payer_name=(deposit_payer_name or bidder.name) if deposit else None,
        deposit_payer_account=(deposit_payer_account or bidder.bank_account) if deposit else None,
        deposit_paid_at=listing.bidding_starts_at - timedelta(days=1) if deposit else None,
        decided_at=listing.bidding_starts_at - timedelta(hours=3),
    )
    session.add(registration)
    await session.flush()
    return registration


async def add_bid(
    session: AsyncSession,
    listing: Listing,
    registration: Registration,
    amount_fen: int,
    *,
    placed_at: datetime | None = None,
    ip_address: str | None = None,
    device_fingerprint: str | None = None,
) -> Bid:
    """The listing's next bid (by seq), from the registration's own address and device unless given."""
    seq = (await session.scalar(select(func.max(Bid.seq)).where(Bid.listing_id == listing.id)) or 0) + 1
    bid = Bid(
        listing_id=listing.id,
        seq=seq,
        registration_id=registration.id,
        amount_fen=amount_fen,
        client_key=uuid.uuid4().hex,
        placed_at=placed_at or listing.bidding_starts_at + timedelta(minutes=seq),
        ip_address=ip_address or registration.applied_ip,
        device_fingerprint=device_fingerprint or registration.applied_device,
    )
    session.add(bid)
    await session.flush()
    return bid


async def close_listing(session: AsyncSession, listing: Listing) -> Listing:
    """Record the result as closing does: sold to the highest bid, failed without bids."""
    best = (
        await session.execute(
            select(Bid.registration_id, Bid.amount_fen)
            .where(Bid.listing_id == listing.id)
            .order_by(Bid.amount_fen.desc(), Bid.seq)
            .limit(1)
        )
    ).first()
    listing.closed_at = listing.closed_at or listing.bidding_ends_at
    listing.bid_count = await session.scalar(select(func.count()).where(Bid.listing_id == listing.id)) or 0
    if best is None:
        listing.status = ListingStatus.FAILED.value
    else:
        listing.status = ListingStatus.SOLD.value
        listing.winner_registration_id, listing.final_price_fen = best
        listing.leading_registration_id, listing.current_price_fen = best
    await session.flush()
    return listing


@dataclass
class Lot:
    listing: Listing
    bidders: list[Bidder] = field(default_factory=list)
    registrations: list[Registration] = field(default_factory=list)
    bids: list[Bid] = field(default_factory=list)

    @property
    def winner(self) -> Registration | None:
        return next((r for r in self.registrations if r.id == self.listing.winner_registration_id), None)


async def make_auction(
    session: AsyncSession,
    village_code: str,
    *,
    amounts: Sequence[tuple[int, int]] = (),
    bidders: Sequence[Bidder] | int | None = None,
    close: bool = True,
    **listing_terms: object,
) -> Lot:
    """A lot with registered bidders (new ones, or those given; by default as many as ``amounts`` names) and
    bids ``amounts`` = [(bidder index, amount in fen), ...] in order, then closed (sold to the highest)."""
    listing_terms.setdefault(
        "status", ListingStatus.BIDDING.value if not close else ListingStatus.CLOSED.value
    )
    listing = await make_listing(session, village_code, **listing_terms)  # type: ignore[arg-type]
    if bidders is None:
        bidders = max((index for index, _ in amounts), default=-1) + 1
    people = (
        [await make_bidder(session) for _ in range(bidders)] if isinstance(bidders, int) else list(bidders)
    )
    lot = Lot(listing, people)
    for bidder in people:
        lot.registrations.append(await add_registration(session, listing, bidder))
    for index, amount in amounts:
        lot.bids.append(await add_bid(session, listing, lot.registrations[index], amount))
    if close:
        await close_listing(session, listing)
    return lot


async def make_cadre(
    session: AsyncSession,
    village_code: str,
    *,
    name: str = "王村官",
    id_number: str | None = None,
    phone: str | None = None,
    body: str = "committee",
    position: str = "主任",
    term_start: date = date(2021, 4, 1),
    term_end: date | None = date(2026, 3, 31),
    relatives: Sequence[tuple[str, str | None, str]] = (),
) -> Cadre:
    """A cadre of the village with declared relatives [(name, id_number or None, relation), ...]."""
    cadre = Cadre(
        village_code=village_code,
        name=name,
        id_number=id_number or resident_id_number(),
        phone=phone or f"135{_n() % 10**8:08d}",
        body=body,
        position=position,
        term_start=term_start,
        term_end=term_end,
    )
    session.add(cadre)
    await session.flush()
    for relative_name, relative_id, relation in relatives:
        session.add(
            CadreRelative(cadre_id=cadre.id, name=relative_name, id_number=relative_id, relation=relation)
        )
    await session.flush()
    return cadre


async def make_contract(
    session: AsyncSession,
    village_code: str,
    *,
    counterparty_name: str = "承租人",
    counterparty_id_number: str | None = None,
    counterparty_bidder: Bidder | None = None,
    origin: str = "direct",
    listing: Listing | None = None,
    asset: Asset | None = None,
    trade_type: str = "lease",
    signed_on: date = date(2025, 7, 1),
    start_date: date | None = None,
    term_months: int = 36,
    price_basis: str = "per_year",
    unit_price_fen: int = 50_000_00,
    area: Decimal | None = None,
    total_value_fen: int | None = None,
    payment_frequency: str = "yearly",
) -> Contract:
    """A contract row (no schedule): direct by default (with a reason), or from ``listing``'s auction."""
    collective = await collective_of(session, village_code)
    start = start_date or signed_on
    end_month = start.month - 1 + term_months
    end = date(start.year + end_month // 12, end_month % 12 + 1, 1) - timedelta(days=1)
    contract = Contract(
        collective_id=collective.id,
        village_code=village_code,
        number=f"C{uuid.uuid4().hex[:12].upper()}",
        asset_id=asset.id if asset else None,
        trade_type=trade_type,
        counterparty_name=counterparty_bidder.name if counterparty_bidder else counterparty_name,
        counterparty_id_number=counterparty_bidder.id_number
        if counterparty_bidder
        else counterparty_id_number,
        counterparty_bidder_id=counterparty_bidder.id if counterparty_bidder else None,
        start_date=start,
        term_months=term_months,
        end_date=end,
        price_basis=price_basis,
        unit_price_fen=unit_price_fen,
        area=area,
        step_ups=[],
        payment_frequency=payment_frequency,
        total_value_fen=total_value_fen or unit_price_fen * term_months // 12,
        origin="auction" if listing else origin,
        origin_reason=None if listing or origin != "direct" else "测试：直接签订",
        listing_id=listing.id if listing else None,
        signed_on=signed_on,
    )
    session.add(contract)
    await session.flush()
    return contract
