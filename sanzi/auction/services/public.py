"""What the public portal reads beyond single listings: the platform's figures (trades, value, premium by
district and by year) and published results with their filters.

Everything here is set-based SQL over published rows only (a listing is public from its announcement on);
money stays integer fen, and premiums are summed as integer parts per million so no float touches an amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import Integer, Select, and_, bindparam, case, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from sanzi.auction.models import Bid, Listing, ListingAsset, ListingStatus, Registration
from sanzi.auction.services.listings import like_pattern, listing_text_match, listings_out
from sanzi.ledger.models import Asset, AssetKind, TradeType
from sanzi.platform.geography import normalise_code
from sanzi.platform.models import Bidder, District, Township, Village
from sanzi.platform.schemas import Page

SOLD = ListingStatus.SOLD.value
FAILED = ListingStatus.FAILED.value
#: statuses a published listing may have (drafts, submitted and approved ones are never public)
PUBLIC_STATUSES = (
    ListingStatus.ANNOUNCED,
    ListingStatus.BIDDING,
    ListingStatus.CLOSED,
    ListingStatus.SOLD,
    ListingStatus.FAILED,
    ListingStatus.SUSPENDED,
    ListingStatus.TERMINATED,
)
#: open for registration or bidding
OPEN_STATUSES = (ListingStatus.ANNOUNCED.value, ListingStatus.BIDDING.value)
PPM = 1_000_000


class local_year(FunctionElement[int]):  # noqa: N801 - a SQL function's name
    """The calendar year of an aware UTC time in Beijing (a trade closed at 20:00 UTC on 31 December counts
    for the next year, as it did on the screen)."""

    type = Integer()
    inherit_cache = True


@compiles(local_year)
def _local_year_default(element: local_year, compiler: Any, **kw: Any) -> str:
    # stored as timestamptz: the year of its Asia/Shanghai wall-clock time
    moment = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(YEAR FROM ({moment}) AT TIME ZONE 'Asia/Shanghai') AS INTEGER)"


@compiles(local_year, "sqlite")
def _local_year_sqlite(element: local_year, compiler: Any, **kw: Any) -> str:
    # stored as naive UTC text; China has kept UTC+8 all year since 1991
    return f"CAST(strftime('%Y', {compiler.process(element.clauses, **kw)}, '+8 hours') AS INTEGER)"


def premium_rate(starting_fen: int, final_fen: int | None) -> Decimal | None:
    """(final − starting) / starting as a fraction (four decimals), e.g. Decimal("0.1250")."""
    if final_fen is None or starting_fen <= 0:
        return None
    return (Decimal(final_fen - starting_fen) / Decimal(starting_fen)).quantize(
        Decimal("0.0001"), ROUND_HALF_UP
    )


# ---- the platform's figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeFigures:
    """Trades of one group (a district, a year, or all): sold and failed counts, value and premium."""

    key: str
    name: str
    sold: int
    failed: int
    value_fen: int
    starting_fen: int
    premium_ppm_sum: int

    @property
    def closed(self) -> int:
        return self.sold + self.failed

    @property
    def average_premium(self) -> Decimal | None:
        """The mean of each sale's premium over its starting price (a fraction)."""
        if not self.sold:
            return None
        return (Decimal(self.premium_ppm_sum) / PPM / self.sold).quantize(Decimal("0.0001"), ROUND_HALF_UP)

    @property
    def success_rate(self) -> Decimal | None:
        if not self.closed:
            return None
        return (Decimal(self.sold) / self.closed).quantize(Decimal("0.0001"), ROUND_HALF_UP)


@dataclass(frozen=True)
class PlatformFigures:
    total: TradeFigures
    by_district: list[TradeFigures]
    by_year: list[TradeFigures]
    #: published listings by status code (announced, bidding, ...)
    listings_by_status: dict[str, int]

    @property
    def open_now(self) -> int:
        return sum(self.listings_by_status.get(s, 0) for s in OPEN_STATUSES)

    @property
    def published(self) -> int:
        return sum(self.listings_by_status.values())


def _trade_columns() -> list[ColumnElement[Any]]:
    sold = Listing.status == SOLD
    return [
        func.count(case((sold, 1))).label("sold"),
        func.count(case((Listing.status == FAILED, 1))).label("failed"),
        func.coalesce(func.sum(case((sold, Listing.final_price_fen))), 0).label("value"),
        func.coalesce(func.sum(case((sold, Listing.starting_price_fen))), 0).label("starting"),
        # integer division on both backends: each sale's premium in parts per million
        func.coalesce(
            func.sum(
                case(
                    (
                        sold,
                        (Listing.final_price_fen - Listing.starting_price_fen)
                        * PPM
                        // Listing.starting_price_fen,
                    )
                )
            ),
            0,
        ).label("premium_ppm"),
    ]


def _figures(key: str, name: str, row: Any) -> TradeFigures:
    return TradeFigures(
        key=key,
        name=name,
        sold=int(row.sold),
        failed=int(row.failed),
        value_fen=int(row.value),
        starting_fen=int(row.starting),
        premium_ppm_sum=int(row.premium_ppm),
    )


async def platform_figures(session: AsyncSession) -> PlatformFigures:
    """Closed trades by district (every district, also those without trades) and by Beijing year, and the
    published listings by status: three grouped queries, whatever the number of districts or years."""
    finished = and_(Listing.status.in_((SOLD, FAILED)), Listing.closed_at.is_not(None))
    per_district = (
        select(Village.district_code.label("district_code"), *_trade_columns())
        .select_from(Listing)
        .join(Village, Village.code == Listing.village_code)
        .where(finished)
        .group_by(Village.district_code)
        .subquery()
    )
    district_rows = await session.execute(
        select(District.code, District.name, per_district)
        .outerjoin(per_district, per_district.c.district_code == District.code)
        .order_by(District.code)
    )
    by_district = []
    for row in district_rows:
        if row.district_code is None:  # a district without any closed trade
            by_district.append(TradeFigures(row.code, row.name, 0, 0, 0, 0, 0))
        else:
            by_district.append(_figures(row.code, row.name, row))
    year = local_year(Listing.closed_at).label("year")
    year_rows = await session.execute(
        select(year, *_trade_columns()).where(finished).group_by(year).order_by(year)
    )
    by_year = [_figures(str(row.year), str(row.year), row) for row in year_rows]
    status_rows = await session.execute(
        select(Listing.status, func.count()).where(Listing.announced_at.is_not(None)).group_by(Listing.status)
    )
    by_status = {status: int(count) for status, count in status_rows}
    total = TradeFigures(
        key="all",
        name="全市",
        sold=sum(f.sold for f in by_district),
        failed=sum(f.failed for f in by_district),
        value_fen=sum(f.value_fen for f in by_district),
        starting_fen=sum(f.starting_fen for f in by_district),
        premium_ppm_sum=sum(f.premium_ppm_sum for f in by_district),
    )
    return PlatformFigures(
        total=total, by_district=by_district, by_year=by_year, listings_by_status=by_status
    )


async def open_listings(session: AsyncSession, limit: int) -> list[Any]:
    """The newest listings open for registration or bidding, as the public sees them."""
    rows = await session.scalars(
        select(Listing)
        .where(Listing.status.in_(OPEN_STATUSES), Listing.announced_at.is_not(None))
        .order_by(Listing.announced_at.desc(), Listing.id.desc())
        .limit(limit)
    )
    return await listings_out(session, list(rows), None)


# ---- published results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PublicResult:
    """A closed listing's result as published: prices in fen, the number of bidders who bid, the winner."""

    listing_id: int
    number: str
    title: str
    village_code: str
    village_name: str
    township_name: str
    district_name: str
    trade_type: str
    outcome: str  # sold | failed
    starting_price_fen: int
    final_price_fen: int | None
    bid_count: int
    bidders: int
    closed_at: datetime
    publicity_ends_at: datetime | None
    sign_deadline: date | None
    winner_number: str | None
    winner_name: str | None

    @property
    def premium(self) -> Decimal | None:
        return premium_rate(self.starting_price_fen, self.final_price_fen)


def _inline(value: Any) -> Any:
    """A value written into the SQL text when the statement runs, not sent as a parameter: PostgreSQL plans a
    prepared statement with parameters again on every execution while its generic plan looks dearer (it did
    for the results list: 1.4 ms of planning for 0.4 ms of running); one without parameters keeps its plan for
    the connection. SQLAlchemy's compiled cache still holds the statement."""
    return literal(value, literal_execute=True)


@lru_cache(maxsize=128)
def _results_statements(shape: frozenset[str]) -> tuple[Select[Any], Select[Any]]:
    """The count, and the page with the count in every row, of the results list for one combination of filters,
    built once per worker with the filters' values as bound parameters and the offset and limit written in when
    the statement runs: building the statements (and their cache keys) took about as much CPU as running them."""
    # two equalities rather than IN: an IN list is re-rendered into the SQL on every execution (an
    # "expanding" parameter), the equalities keep the whole statement in SQLAlchemy's compiled cache
    conditions: list[Any] = [
        or_(Listing.status == _inline(SOLD), Listing.status == _inline(FAILED)),
        Listing.closed_at.is_not(None),
    ]
    if "district" in shape:
        conditions.append(Listing.village_code.startswith(bindparam("district")))
    if "township" in shape:
        conditions.append(Listing.village_code.startswith(bindparam("township")))
    if "village" in shape:
        conditions.append(Listing.village_code == bindparam("village"))
    if "outcome" in shape:
        conditions.append(Listing.status == bindparam("outcome"))
    if "trade_type" in shape:
        conditions.append(Listing.trade_type == bindparam("trade_type"))
    if "asset_kind" in shape:
        conditions.append(
            exists().where(
                ListingAsset.listing_id == Listing.id,
                ListingAsset.asset_id == Asset.id,
                Asset.kind == bindparam("asset_kind"),
            )
        )
    if "q" in shape:
        conditions.append(listing_text_match(bindparam("q")))
    # the total from the index alone (listing (status, closed_at), migration 0007) and the page's ids along
    # listing (closed_at, id): a window count in the page's statement read every matching row of the table, 5x
    # the time of the two on ten years of data; the bidders are counted for the page's rows only
    count = select(func.count()).select_from(Listing).where(*conditions)
    chosen = (
        select(Listing.id.label("id"))
        .where(*conditions)
        .order_by(Listing.closed_at.desc(), Listing.id.desc())
        .offset(bindparam("offset", type_=Integer(), literal_execute=True))
        .limit(bindparam("limit", type_=Integer(), literal_execute=True))
        .subquery("chosen")
    )
    bidders = (
        select(func.count(func.distinct(Bid.registration_id)))
        .where(Bid.listing_id == chosen.c.id)
        .scalar_subquery()
    )
    rows = (
        select(
            Listing.id,
            Listing.number,
            Listing.title,
            Listing.village_code,
            Listing.trade_type,
            Listing.status,
            Listing.starting_price_fen,
            Listing.final_price_fen,
            Listing.bid_count,
            Listing.closed_at,
            Listing.publicity_ends_at,
            Listing.sign_deadline,
            Village.name.label("village_name"),
            Township.name.label("township_name"),
            District.name.label("district_name"),
            Registration.bidder_number,
            Bidder.name.label("winner_name"),
            bidders.label("bidders"),
            # the total rides along as an uncorrelated subquery (run once, an InitPlan): one round trip a page
            count.scalar_subquery().label("total"),
        )
        .select_from(chosen)
        .join(Listing, Listing.id == chosen.c.id)
        .join(Village, Village.code == Listing.village_code)
        .join(Township, Township.code == Village.township_code)
        .join(District, District.code == Village.district_code)
        .outerjoin(Registration, Registration.id == Listing.winner_registration_id)
        .outerjoin(Bidder, Bidder.id == Registration.bidder_id)
        .order_by(Listing.closed_at.desc(), Listing.id.desc())
    )
    return count, rows


async def public_results(
    session: AsyncSession,
    *,
    district: str | None = None,
    township: str | None = None,
    village: str | None = None,
    outcome: str | None = None,
    trade_type: TradeType | None = None,
    asset_kind: AssetKind | None = None,
    q: str | None = None,
    page: int = 1,
    page_size: int = 20,
) -> Page[PublicResult]:
    """Sold and failed listings, newest close first, with the filters of the announcements list."""
    filters: dict[str, Any] = {}
    if district:
        filters["district"] = normalise_code(district, "district")[:6]
    if township:
        filters["township"] = normalise_code(township, "township")[:9]
    if village:
        filters["village"] = normalise_code(village, "village")
    if outcome in (SOLD, FAILED):
        filters["outcome"] = outcome
    if trade_type:
        filters["trade_type"] = trade_type.value
    if asset_kind:
        filters["asset_kind"] = asset_kind.value
    if q:
        filters["q"] = like_pattern(q)
    count, statement = _results_statements(frozenset(filters))
    rows = (
        await session.execute(statement, {**filters, "offset": (page - 1) * page_size, "limit": page_size})
    ).all()
    if rows:
        total = rows[0].total
    else:  # past the last page (or nothing at all): the count on its own
        total = (await session.scalar(count, filters) or 0) if page > 1 else 0
    items = [
        PublicResult(
            listing_id=row.id,
            number=row.number,
            title=row.title,
            village_code=row.village_code,
            village_name=row.village_name,
            township_name=row.township_name,
            district_name=row.district_name,
            trade_type=row.trade_type,
            outcome="sold" if row.status == SOLD else "failed",
            starting_price_fen=row.starting_price_fen,
            final_price_fen=row.final_price_fen,
            bid_count=row.bid_count,
            bidders=row.bidders or 0,
            closed_at=row.closed_at,
            publicity_ends_at=row.publicity_ends_at,
            sign_deadline=row.sign_deadline,
            winner_number=row.bidder_number,
            winner_name=row.winner_name,
        )
        for row in rows
    ]
    return Page(items=items, total=total, page=page, page_size=page_size)
