"""What the bidding pages show: the live state of an auction as a small view model (built from the database or
updated from the stream's events), and the reads the pages need that no service offers (all read-only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Listing, ListingStatus, Registration, RegistrationStatus
from sanzi.auction.schemas.bidding import Result
from sanzi.auction.services import bidding as engine
from sanzi.auction.services import results
from sanzi.platform.models import Bidder, District, Township, User, Village
from sanzi.platform.money import parse_yuan

#: the bid history shows the latest bids (the count says how many there were in all)
HISTORY_ROWS = 100


def utcnow() -> datetime:
    return datetime.now(UTC)


def _fen(value: Any) -> int | None:
    """An amount from the service (int fen) or from a stream event (a yuan string)."""
    if value is None or isinstance(value, int):
        return value
    return parse_yuan(value)


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))  # Python 3.11 reads a trailing "Z"


@dataclass
class LiveBidView:
    seq: int
    bidder_number: str
    amount_fen: int
    placed_at: datetime
    extended_end_at: datetime | None = None

    @classmethod
    def of(cls, bid: Any) -> LiveBidView:
        data = bid if isinstance(bid, dict) else bid.model_dump()
        return cls(
            seq=int(data["seq"]),
            bidder_number=str(data.get("bidder_number") or ""),
            amount_fen=_fen(data["amount"]) or 0,
            placed_at=_time(data["placed_at"]),  # type: ignore[arg-type]
            extended_end_at=_time(data.get("extended_end_at")),
        )


@dataclass
class LiveView:
    """Everything the live panel shows: numbers only (bidder numbers, never identities or the reserve)."""

    listing_id: int
    number: str
    title: str
    status: str
    starting_price_fen: int
    current_price_fen: int | None
    next_min_fen: int | None
    next_max_fen: int | None
    min_increment_fen: int
    max_increment_fen: int
    bid_count: int
    bidding_starts_at: datetime
    current_end_at: datetime
    server_time: datetime
    extensions_used: int
    max_extensions: int
    extension_minutes: int
    bids: list[LiveBidView] = field(default_factory=list)
    result: Result | None = None

    def update(self, live: dict[str, Any]) -> None:
        """Take the live summary carried by a stream event."""
        self.status = live["status"]
        self.current_price_fen = _fen(live.get("current_price"))
        self.next_min_fen = _fen(live.get("next_min_bid"))
        self.next_max_fen = _fen(live.get("next_max_bid"))
        self.bid_count = int(live["bid_count"])
        self.current_end_at = _time(live["current_end_at"])  # type: ignore[assignment]
        self.server_time = _time(live["server_time"])  # type: ignore[assignment]
        self.extensions_used = int(live["extensions_used"])

    def add_bid(self, bid: dict[str, Any]) -> None:
        """A bid from the stream; the stream sends each sequence number once, and a repeat is ignored anyway."""
        view = LiveBidView.of(bid)
        if not self.bids or view.seq > self.bids[-1].seq:
            self.bids.append(view)

    @property
    def last_seq(self) -> int:
        return self.bids[-1].seq if self.bids else 0

    @property
    def finished(self) -> bool:
        return self.result is not None

    @property
    def open(self) -> bool:
        return self.status in (ListingStatus.ANNOUNCED.value, ListingStatus.BIDDING.value)

    @property
    def started(self) -> bool:
        return self.server_time >= self.bidding_starts_at

    @property
    def leader_number(self) -> str | None:
        return self.bids[-1].bidder_number if self.bids else None

    @property
    def history(self) -> list[LiveBidView]:
        """Newest first, the latest :data:`HISTORY_ROWS`."""
        return list(reversed(self.bids[-HISTORY_ROWS:]))

    @property
    def last_extension(self) -> LiveBidView | None:
        return next((bid for bid in reversed(self.bids) if bid.extended_end_at is not None), None)

    @property
    def countdown_target(self) -> datetime | None:
        """The moment the countdown runs to: the start before bidding, the (extended) end while it runs."""
        if not self.open:
            return None
        return self.bidding_starts_at if not self.started else self.current_end_at

    @property
    def seconds_left(self) -> int:
        target = self.countdown_target
        return max(0, int((target - self.server_time).total_seconds())) if target else 0


async def live_view(session: AsyncSession, listing_id: int) -> LiveView:
    """The live state of a public listing from the database (404 for a listing that is not public)."""
    listing = await engine.public_listing(session, listing_id)
    now = utcnow()
    state = engine.live_summary(listing, now)
    view = LiveView(
        listing_id=listing.id,
        number=listing.number,
        title=listing.title,
        status=listing.status,
        starting_price_fen=listing.starting_price_fen,
        current_price_fen=state.current_price,
        next_min_fen=state.next_min_bid,
        next_max_fen=state.next_max_bid,
        min_increment_fen=listing.min_increment_fen,
        max_increment_fen=listing.max_increment_fen,
        bid_count=listing.bid_count,
        bidding_starts_at=as_utc(listing.bidding_starts_at),
        current_end_at=as_utc(state.current_end_at),
        server_time=now,
        extensions_used=listing.extensions_used,
        max_extensions=listing.max_extensions,
        extension_minutes=listing.extension_minutes,
    )
    view.bids = [LiveBidView.of(bid) for bid in await engine.bids_after(session, listing.id)]
    if listing.status in engine.FINISHED_STATUSES and listing.closed_at is not None:
        view.result = await results.result_of(session, listing)
    return view


def as_utc(moment: datetime) -> datetime:
    """A stored time as an aware UTC time (SQLite hands back naive UTC times)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# ---- reads for the bidder's pages ------------------------------------------------------------------------


async def bidder_of(session: AsyncSession, user: User) -> Bidder | None:
    return await session.scalar(select(Bidder).where(Bidder.user_id == user.id))


async def my_registration(session: AsyncSession, listing_id: int, user: User) -> Registration | None:
    """The caller's registration for the listing, if any."""
    return await session.scalar(
        select(Registration)
        .join(Bidder, Bidder.id == Registration.bidder_id)
        .where(Registration.listing_id == listing_id, Bidder.user_id == user.id)
        .execution_options(populate_existing=True)
    )


async def listings_by_id(session: AsyncSession, ids: list[int]) -> dict[int, Listing]:
    if not ids:
        return {}
    return {
        listing.id: listing for listing in await session.scalars(select(Listing).where(Listing.id.in_(ids)))
    }


# ---- reads for the approval queue ------------------------------------------------------------------------


@dataclass
class PendingQualification:
    registration: Registration
    bidder: Bidder
    listing: Listing
    village_name: str


async def pending_qualifications(
    session: AsyncSession, user: User, limit: int = 200
) -> list[PendingQualification]:
    """Registrations whose deposit is held and which await the township's decision, in the caller's area
    (every area for an admin), for listings still open for registration decisions (announced)."""
    query = (
        select(Registration, Bidder, Listing, Village.name)
        .join(Bidder, Bidder.id == Registration.bidder_id)
        .join(Listing, Listing.id == Registration.listing_id)
        .join(Village, Village.code == Listing.village_code)
        .where(
            Registration.status == RegistrationStatus.DEPOSIT_PAID.value,
            Listing.status == ListingStatus.ANNOUNCED.value,
        )
        .order_by(Listing.registration_deadline, Registration.id)
        .limit(limit)
    )
    prefix = area_prefix(user)
    if prefix is not None:
        query = query.where(Listing.village_code.like(prefix + "%"))
    rows = await session.execute(query)
    return [PendingQualification(r, b, listing, name) for r, b, listing, name in rows]


def area_prefix(user: User) -> str | None:
    """The village-code prefix of a supervisor's area; None for an admin (every area)."""
    if user.role == "admin":
        return None
    return user.area_prefix or "-"  # a supervisor without an area sees nothing


async def area_name(session: AsyncSession, user: User) -> str | None:
    """The name of a supervisor's township or district (None for an admin)."""
    if not user.area_code:
        return None
    model = District if user.area_code.endswith("000000") else Township
    return await session.scalar(select(model.name).where(model.code == user.area_code)) or user.area_code
