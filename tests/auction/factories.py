"""Auction test data through the ORM and the books service, usable with any AsyncSession.

``make_live_listing`` gives a listing already announced or bidding, with an asset and N qualified bidders
whose deposits are held in the village's books (Dr 102 / Cr 21101), each with a user and a bearer token.
Committed by default (in the ``db`` fixture a commit only releases a savepoint).
"""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum.cn import ric

from sanzi.auction.models import DepositState, Listing, ListingAsset, ListingStatus, Registration, RegistrationStatus
from sanzi.ledger.models import Asset, AssetStatus
from sanzi.ledger.schemas.books import EntryCreate, LineIn
from sanzi.ledger.services.books import BooksService
from sanzi.platform.auth import Passwords, issue_token
from sanzi.platform.models import Bidder, Collective, Role, User
from sanzi.platform.money import fen_to_yuan

VILLAGE_A = "440111020200"
PASSWORD = "Sanzi-test-2026"
_cheap = Passwords(cheap=True)
_serial = itertools.count(random.randrange(10**6))


def resident_id_number() -> str:
    """A valid, practically unique 18-digit resident ID (Baiyun district, born 1950-2004)."""
    n = next(_serial)
    born = date(1950, 1, 1) + timedelta(days=(n // 1000) % 20000)
    body = f"440111{born:%Y%m%d}{n % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")  # the function ignores the last digit


@dataclass
class LiveBidder:
    user: User
    bidder: Bidder
    registration: Registration
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def number(self) -> str:
        return self.registration.bidder_number or ""


@dataclass
class LiveListing:
    listing: Listing
    collective: Collective
    asset: Asset
    bidders: list[LiveBidder] = field(default_factory=list)
    #: kept apart from the ORM object, which a refused bid's savepoint rollback expires
    id: int = 0


async def make_bidder_user(session: AsyncSession, name: str | None = None) -> tuple[User, Bidder, str]:
    """A bidder's user account, identity and bearer token."""
    username = f"bidder-{uuid.uuid4().hex[:10]}"
    user = User(
        username=username, password_hash=_cheap.hash(PASSWORD), display_name=username, role=Role.BIDDER.value
    )
    session.add(user)
    await session.flush()
    n = next(_serial)
    bidder = Bidder(
        user_id=user.id,
        kind="person",
        name=name or f"竞买人{n % 10000}",
        id_number=resident_id_number(),
        phone=f"139{n % 10**8:08d}",
        address=f"广州市白云区测试路{n % 1000}号",
        bank_name="测试银行",
        bank_account=f"6222{n:012d}"[:19],
    )
    session.add(bidder)
    await session.flush()
    token = await issue_token(session, user, days=1)
    return user, bidder, token


async def add_bidder(
    session: AsyncSession,
    listing: Listing,
    *,
    qualified: bool = True,
    deposit: bool = True,
    name: str | None = None,
    now: datetime | None = None,
) -> LiveBidder:
    """Register a new bidder for the listing; with ``deposit`` the deposit is posted to the books and held,
    with ``qualified`` the bidder gets the next bidder number."""
    now = now or datetime.now(UTC)
    user, bidder, token = await make_bidder_user(session, name)
    registration = Registration(
        listing_id=listing.id,
        bidder_id=bidder.id,
        status=RegistrationStatus.APPLIED.value,
        contact_phone=bidder.phone,
        contact_address=bidder.address,
        applied_ip="10.0.0.1",
        applied_device="factory-device",
        deposit_state=DepositState.NONE.value,
    )
    session.add(registration)
    await session.flush()
    if deposit:
        collective = await session.get_one(Collective, listing.collective_id)
        amount = fen_to_yuan(listing.deposit_fen)
        entry, _ = await BooksService(session).post_entry(
            collective,
            EntryCreate(
                entry_date=now.date(),
                memo=f"收到交易项目 {listing.number} 竞买保证金",
                counterparty=bidder.name,
                client_key=f"factory-deposit-{registration.id}",
                lines=[LineIn(account_code="102", debit=amount), LineIn(account_code="21101", credit=amount)],
            ),
            None,
            source="deposit",
        )
        registration.status = RegistrationStatus.DEPOSIT_PAID.value
        registration.deposit_state = DepositState.HELD.value
        registration.deposit_payer_name = bidder.name
        registration.deposit_payer_account = bidder.bank_account
        registration.deposit_paid_at = now
        registration.deposit_entry_id = entry.id
    if qualified:
        numbered = await session.scalar(
            select(func.count()).select_from(Registration).where(
                Registration.listing_id == listing.id, Registration.bidder_number.is_not(None)
            )
        )
        registration.status = RegistrationStatus.QUALIFIED.value
        registration.bidder_number = f"{(numbered or 0) + 1:03d}"
        registration.decided_at = now
    await session.flush()
    return LiveBidder(user, bidder, registration, token)


async def make_live_listing(
    session: AsyncSession,
    *,
    bidders: int = 3,
    village_code: str = VILLAGE_A,
    now: datetime | None = None,
    status: ListingStatus = ListingStatus.BIDDING,
    starts_in: timedelta = timedelta(minutes=-10),
    ends_in: timedelta = timedelta(hours=1),
    starting_price_fen: int = 100_000_00,
    min_increment_fen: int = 1_000_00,
    max_increment_fen: int = 5_000_00,
    reserve_price_fen: int | None = None,
    deposit_fen: int = 10_000_00,
    extension_minutes: int = 5,
    max_extensions: int = 3,
    trade_type: str = "lease",
    price_basis: str = "per_year",
    term_months: int = 60,
    commit: bool = True,
) -> LiveListing:
    """A listing in ``status`` (announced or bidding) whose window is [now + starts_in, now + ends_in)."""
    now = now or datetime.now(UTC)
    collective = await session.scalar(select(Collective).where(Collective.village_code == village_code))
    assert collective is not None, f"no collective for {village_code}: load the villages first"
    tag = uuid.uuid4().hex[:10].upper()
    asset = Asset(
        collective_id=collective.id,
        village_code=village_code,
        code=f"A-{tag}",
        name="测试鱼塘",
        kind="fish_pond",
        area=Decimal("12.50"),
        area_unit="mu",
        location="村东",
        status=AssetStatus.LISTED.value,
    )
    session.add(asset)
    await session.flush()
    starts_at, ends_at = now + starts_in, now + ends_in
    listing = Listing(
        collective_id=collective.id,
        village_code=village_code,
        number=f"L{tag}",
        title="测试鱼塘出租",
        status=status.value,
        trade_type=trade_type,
        term_months=term_months,
        price_basis=price_basis,
        area=Decimal("12.50"),
        starting_price_fen=starting_price_fen,
        reserve_price_fen=reserve_price_fen,
        min_increment_fen=min_increment_fen,
        max_increment_fen=max_increment_fen,
        deposit_fen=deposit_fen,
        performance_bond_fen=0,
        announcement_days=5,
        registration_deadline=min(starts_at, now) - timedelta(hours=1),
        bidding_starts_at=starts_at,
        bidding_ends_at=ends_at,
        extension_minutes=extension_minutes,
        max_extensions=max_extensions,
        announced_at=now - timedelta(days=6),
        current_end_at=ends_at,
    )
    session.add(listing)
    await session.flush()
    session.add(ListingAsset(listing_id=listing.id, asset_id=asset.id))
    live = LiveListing(listing, collective, asset, id=listing.id)
    for _ in range(bidders):
        live.bidders.append(await add_bidder(session, listing, now=now))
    if commit:
        await session.commit()
    return live
