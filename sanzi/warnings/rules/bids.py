"""Bid irregularities (围标串标): the rules that read listings, registrations, bids and bidders.

Every rule is set-based SQL run by the database on SQLite and PostgreSQL; Python only shapes the result rows
into findings. A scope narrows the subjects found (their village, district, date), never the comparables:
the fences, the 24-month windows and the groups of bidders are computed over all the data.

Severities: red where the facts themselves breach the rules (shared identity, a bidder related to an
official); orange where they are strong signs of collusion or loss (single bidder, reserve hugging, close
second bid, identical amounts, cover bidding, rotation, dominant winner, below market); yellow for procedural
lapses (short announcement, relisted cheaper).
"""

from __future__ import annotations

import functools
import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import (
    Float,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from sanzi.auction.models import Bid, Listing, ListingAsset, Registration
from sanzi.ledger.models import Asset
from sanzi.platform.models import Bidder, Cadre, CadreRelative, Village
from sanzi.platform.money import fen_to_yuan
from sanzi.warnings.models import Severity
from sanzi.warnings.rules.base import Family, Finding, Rule, Scope
from sanzi.warnings.rules.base import rule_parameter as _parameter
from sanzi.warnings.rules.stats import as_date, days_between, id_list, parse_ids, quartile_fences

SOLD = "sold"
FINISHED = ("closed", "sold", "failed")
QUALIFIED = "qualified"
REJECTED = "rejected"
DAYS_PER_MONTH = 365.25 / 12
#: built once per process: a fresh alias of a wide model cost milliseconds of column adaptation per evaluation
_PREVIOUS_LISTING = aliased(Listing)


# --------------------------------------------------------------------------------------------- helpers


def _values(rule: Rule, params: dict[str, Any]) -> dict[str, Any]:
    """The rule's parameters: those given (resolved by the engine), else their documented defaults."""
    return {p.key.rsplit(".", 1)[1]: params.get(p.key.rsplit(".", 1)[1], p.default) for p in rule.parameters}


def _in_scope(village: ColumnElement, when: ColumnElement | None, scope: Scope) -> list[ColumnElement[bool]]:
    """Conditions on a subject's village and time for the scope (never applied to comparables)."""
    conditions: list[ColumnElement[bool]] = []
    if scope.village_codes is not None:
        conditions.append(village.in_(scope.village_codes))
    if scope.district_codes is not None:
        conditions.append(
            village.in_(select(Village.code).where(Village.district_code.in_(scope.district_codes)))
        )
    if scope.since is not None and when is not None:
        conditions.append(when >= datetime.combine(scope.since, time(), UTC))
    return conditions


@dataclass(frozen=True)
class _Shape:
    """Which narrowings a scope applies, without their values: a rule may build its statement once per shape
    (several milliseconds of Python for the larger statements, on every event) with the values as named
    parameters (:func:`_bound_in_scope`, ``listing_ids``), and bind :func:`_scope_values` when it runs it."""

    listings: bool  # an incremental evaluation's listings (``Scope.event_ids("listing_id")``)
    villages: bool
    districts: bool
    since: bool

    @classmethod
    def of(cls, scope: Scope) -> _Shape:
        return cls(
            scope.event_ids("listing_id") is not None,
            scope.village_codes is not None,
            scope.district_codes is not None,
            scope.since is not None,
        )


def _built_per_shape(build: Callable[[_Shape, dict[str, Any]], Select]) -> Any:
    """A rule's statement built once per shape of scope and set of parameter values, the scope's own values
    bound when it runs: the larger statements took milliseconds of Python to build, and they run after every
    close."""

    @functools.cache
    def built(shape: _Shape, values: tuple[tuple[str, Any], ...]) -> Select:
        return build(shape, dict(values))

    def statement(shape: _Shape, params: dict[str, Any]) -> Select:
        return built(shape, tuple(sorted(params.items())))

    return staticmethod(statement)


def _scope_values(scope: Scope) -> dict[str, Any]:
    """The values of the parameters a statement built for the scope's :class:`_Shape` names."""
    return {
        "listing_ids": sorted(scope.event_ids("listing_id") or ()),
        "village_codes": list(scope.village_codes or ()),
        "district_codes": list(scope.district_codes or ()),
        "since": datetime.combine(scope.since, time(), UTC) if scope.since is not None else None,
    }


def _codes(name: str) -> BindParameter:
    """The scope's village or district codes (``name``), bound when the statement runs."""
    return bindparam(name, expanding=True, type_=String())


def _bound_in_scope(
    village: ColumnElement, when: ColumnElement | None, shape: _Shape
) -> list[ColumnElement[bool]]:
    """:func:`_in_scope` with the scope's values as named parameters."""
    conditions: list[ColumnElement[bool]] = []
    if shape.villages:
        conditions.append(village.in_(_codes("village_codes")))
    if shape.districts:
        districts = _codes("district_codes")
        conditions.append(village.in_(select(Village.code).where(Village.district_code.in_(districts))))
    if shape.since and when is not None:
        conditions.append(when >= bindparam("since"))  # typed as ``when``
    return conditions


def _scope_townships(shape: _Shape) -> Any:
    """A subquery of the townships the scope's villages (or districts) lie in, or None for no narrowing: the
    comparables of a township-fenced rule, all that a scoped evaluation needs to read."""
    if not shape.villages and not shape.districts:
        return None
    conditions = []
    if shape.villages:
        conditions.append(Village.code.in_(_codes("village_codes")))
    if shape.districts:
        conditions.append(Village.district_code.in_(_codes("district_codes")))
    return select(Village.township_code).where(*conditions)


def _listing_ids(
    scope: Scope, column: ColumnElement, when: ColumnElement | None = None
) -> list[ColumnElement[bool]]:
    """Conditions on ``column`` (a listing id) narrowing a per-listing rule's reads to its possible subjects:
    the listings of the triggering events in an incremental evaluation (the rule's findings about a listing
    depend on that listing's own rows only), else the listings of the scope's villages and dates (``when``
    of the listing); nothing in a full scan. Pushed into the innermost aggregates so they read one listing's
    bids, not the city's."""
    ids = scope.event_ids("listing_id")
    if ids is not None:
        return [column.in_(sorted(ids))]
    conditions = _in_scope(Listing.village_code, when, scope)
    if conditions:
        return [column.in_(select(Listing.id).where(*conditions).correlate(None))]
    return []


def _event_kinds(shape: _Shape) -> Select | None:
    """In an incremental evaluation, the asset kinds of the events' listings (a listing's kind is its assets'
    smallest, as in :func:`_listing_kind`); None otherwise.

    A closed listing enters the fences of its own kind only, in its township and district: the findings of a
    kind-fenced rule about the village's listings of other kinds cannot change, so the rule evaluates the
    listings of these kinds, and reads the comparables of these kinds only."""
    if not shape.listings:
        return None
    return (
        select(func.min(Asset.kind))
        .join(ListingAsset, ListingAsset.asset_id == Asset.id)
        .where(ListingAsset.listing_id.in_(bindparam("listing_ids", expanding=True)))
        .group_by(ListingAsset.listing_id)
    )


def _of_event_kinds(shape: _Shape, kind: ColumnElement) -> list[ColumnElement[bool]]:
    """Conditions on ``kind`` (a listing's kind) keeping the kinds of the events' listings (incremental)."""
    kinds = _event_kinds(shape)
    return [] if kinds is None else [kind.in_(kinds)]


def _comparable_listings(shape: _Shape, column: ColumnElement) -> list[ColumnElement[bool]]:
    """Conditions on ``column`` (a listing id) keeping the listings of the scope's districts: every comparable
    of a township- or district-fenced rule for the scope's subjects, and nothing else (none in a full
    scan). In an incremental evaluation also only the listings with an asset of the events' kinds: a superset
    of those of these kinds, which the rule keeps with :func:`_of_event_kinds` on the listing's kind."""
    if not shape.villages and not shape.districts:
        return []
    conditions = []
    kinds = _event_kinds(shape)
    if kinds is not None:
        of_kinds = select(ListingAsset.listing_id).join(Asset, Asset.id == ListingAsset.asset_id)
        conditions.append(column.in_(of_kinds.where(Asset.kind.in_(kinds)).correlate(None)))
    districts = select(Village.district_code)
    if shape.villages:
        districts = districts.where(Village.code.in_(_codes("village_codes")))
    if shape.districts:
        districts = districts.where(Village.district_code.in_(_codes("district_codes")))
    local = aliased(Listing)
    villages = select(Village.code).where(Village.district_code.in_(districts))
    conditions.append(column.in_(select(local.id).where(local.village_code.in_(villages)).correlate(None)))
    return conditions


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _yuan(fen: float | None) -> str:
    return "¥" + fen_to_yuan(round(fen or 0))


def _bidders_per_listing(scope: Scope, when: ColumnElement | None = None) -> Any:
    """Per listing (of the scope): the registrations that bid. Counted from the distinct (listing,
    registration) pairs, two hashed groupings, not ``count(DISTINCT …)`` (a sort of every bid); the bids' ids
    are read afterwards for the findings' listings only (:func:`_bid_ids_of`)."""
    pairs = (
        select(Bid.listing_id, Bid.registration_id)
        .where(*_listing_ids(scope, Bid.listing_id, when))
        .group_by(Bid.listing_id, Bid.registration_id)
        .subquery("bidding")
    )
    return (
        select(pairs.c.listing_id, func.count().label("bidders"))
        .group_by(pairs.c.listing_id)
        .subquery("bidders")
    )


#: listing ids per statement when reading the bids of a scan's findings (a city's stay within its parameters)
_ID_CHUNK = 5_000


async def _bid_ids_of(
    session: AsyncSession, listing_ids: Any, *, losers_only: bool = False
) -> dict[int, list[int]]:
    """The ids of the bids on each of these listings (of the bidders other than the winner when
    ``losers_only``), ascending; read in chunks, so a city's findings stay within a statement's parameters."""
    ids: dict[int, list[int]] = defaultdict(list)
    ordered = sorted(listing_ids)
    for start in range(0, len(ordered), _ID_CHUNK):
        chunk = ordered[start : start + _ID_CHUNK]
        statement = select(Bid.listing_id, Bid.id).where(Bid.listing_id.in_(chunk))
        if losers_only:
            statement = statement.join(Listing, Listing.id == Bid.listing_id).where(
                Bid.registration_id != Listing.winner_registration_id
            )
        for listing_id, bid_id in await session.execute(statement.order_by(Bid.id)):
            ids[listing_id].append(bid_id)
    return ids


def _qualified_per_listing(scope: Scope, when: ColumnElement | None = None) -> Any:
    return (
        select(Registration.listing_id, func.count().label("qualified"))
        .where(Registration.status == QUALIFIED, *_listing_ids(scope, Registration.listing_id, when))
        .group_by(Registration.listing_id)
        .subquery("qualified")
    )


def _listing_kind(*conditions: ColumnElement[bool]) -> Any:
    """Per listing: its asset kind and area unit (the smallest when it bundles several) and the assets' area;
    ``conditions`` (on ``ListingAsset.listing_id``) narrow the listings read."""
    return (
        select(
            ListingAsset.listing_id,
            func.min(Asset.kind).label("kind"),
            func.min(Asset.area_unit).label("unit"),
            func.sum(Asset.area).label("asset_area"),
        )
        .join(Asset, Asset.id == ListingAsset.asset_id)
        .where(*conditions)
        .group_by(ListingAsset.listing_id)
        .cte("listing_kind")  # a rule may read it twice: computed once
    )


def _fenced(values: Any, min_comparables: int) -> Any:
    """Each row of ``values`` (listing_id, township_code, district_code, kind, value) with the fences of its
    township's rows of the same kind, or its district's when the township has fewer than ``min_comparables``;
    ``n`` is 0 (quiet) when even the district has too few."""
    # materialised: when the planner expects few subjects it joins them by nested loops, and each loop over
    # a plain subquery would compute the fences again
    town = quartile_fences(values, ["township_code", "kind"]).cte("town")
    district = quartile_fences(values, ["district_code", "kind"]).cte("district")
    town, district = (fences.prefix_with("MATERIALIZED", dialect="postgresql") for fences in (town, district))
    use_town = func.coalesce(town.c.n, 0) >= min_comparables
    use_district = func.coalesce(district.c.n, 0) >= min_comparables

    def pick(column: str) -> Any:
        return case((use_town, town.c[column]), (use_district, district.c[column]), else_=None).label(column)

    return (
        select(
            values.c.listing_id,
            values.c.value,
            case((use_town, town.c.n), (use_district, district.c.n), else_=0).label("n"),
            case((use_town, "镇街"), else_="区").label("area_level"),
            *(pick(c) for c in ("q1", "median", "q3", "lower_fence", "upper_fence")),
        )
        .outerjoin(town, and_(town.c.township_code == values.c.township_code, town.c.kind == values.c.kind))
        .outerjoin(
            district,
            and_(district.c.district_code == values.c.district_code, district.c.kind == values.c.kind),
        )
        .subquery("fenced")
    )


class _all_ids(FunctionElement):  # noqa: N801 - reads like a SQL function
    """An aggregate: every value of a column joined by commas, repeats kept (``string_agg`` / ``group_concat``
    without DISTINCT, so PostgreSQL may hash the groups); :func:`parse_ids` reads it back distinct. A variant
    of ``stats.id_list``."""

    type = String()
    inherit_cache = True


@compiles(_all_ids)
def _all_ids_default(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"string_agg(CAST({compiler.process(element.clauses, **kw)} AS TEXT), ',')"


@compiles(_all_ids, "sqlite")
def _all_ids_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"group_concat({compiler.process(element.clauses, **kw)})"


class _trailing(FunctionElement):  # noqa: N801 - reads like a SQL function
    """A window aggregate over the rows of the same ``partition`` whose ``moment`` lies at most ``days`` days
    before the row's own (ties with it included): the frame ``RANGE BETWEEN … PRECEDING AND CURRENT ROW``,
    a time interval on PostgreSQL (seconds are exact), a day count over ``julianday`` on SQLite. The rows a
    self-join on that window would pair, without building the pairs."""

    inherit_cache = True

    def __init__(self, aggregate: Any, moment: Any, days: float, *partition: Any) -> None:
        self.type = aggregate.type
        # a float this module computed, written into the frame: a frame's offset must be a constant
        super().__init__(aggregate, moment, literal_column(repr(float(days))), *partition)


def _trailing_parts(element, compiler, **kw):  # type: ignore[no-untyped-def]
    aggregate, moment, days, *partition = (compiler.process(c, **kw) for c in element.clauses)
    return aggregate, moment, days, ", ".join(partition)


@compiles(_trailing)
def _trailing_pg(element, compiler, **kw):  # type: ignore[no-untyped-def]
    aggregate, moment, days, partition = _trailing_parts(element, compiler, **kw)
    return (
        f"{aggregate} OVER (PARTITION BY {partition} ORDER BY {moment} RANGE BETWEEN "
        f"make_interval(secs => {days} * 86400) PRECEDING AND CURRENT ROW)"
    )


@compiles(_trailing, "sqlite")
def _trailing_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    aggregate, moment, days, partition = _trailing_parts(element, compiler, **kw)
    return (
        f"{aggregate} OVER (PARTITION BY {partition} ORDER BY julianday({moment}) RANGE BETWEEN "
        f"{days} PRECEDING AND CURRENT ROW)"
    )


async def _rows(session: AsyncSession, statement: Select) -> list[Any]:
    return list((await session.execute(statement)).all())


class _BidRule(Rule):
    family = Family.BID

    def finding(
        self,
        subject_type: str,
        subject_id: Any,
        village_code: str,
        score: float,
        explanation: str,
        evidence: dict[str, list[Any]],
        occurred_at: datetime,
        **numbers: Any,
    ) -> Finding:
        return Finding(
            rule_id=self.id,
            subject_type=subject_type,
            subject_id=str(subject_id),
            village_code=village_code,
            score=max(0.0, min(100.0, float(score))),
            explanation=explanation,
            evidence={key: sorted(set(ids)) for key, ids in evidence.items()},
            occurred_at=_aware(occurred_at),
            numbers=numbers,
        )


# --------------------------------------------------------------------------------------------- rules


class SingleBidder(_BidRule):
    """A listing sold with a single bidder: no competition set the price.

    Basis: OCDS red flag R018 (single bid received); 《广州市农村集体资产交易管理办法》 requires open competitive
    bidding, and a lone bidder (especially when other qualified bidders stayed silent) is the first sign of
    a pre-arranged deal.
    """

    id = "BID-SINGLE-BIDDER"
    title = "单一竞买人成交"
    severity = Severity.ORANGE
    ocds_code = "R018"
    triggers = frozenset({"listing_closed"})
    parameters = (
        _parameter(
            id,
            "max_bidders",
            1,
            int,
            1,
            5,
            "出价竞买人不超过此数即预警 / raise when at most this many bidders bid",
        ),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        p = _values(self, params)
        bidders = _bidders_per_listing(scope, Listing.closed_at)
        qualified = _qualified_per_listing(scope, Listing.closed_at)
        statement = (
            select(
                Listing.id,
                Listing.village_code,
                Listing.closed_at,
                Listing.final_price_fen,
                Listing.starting_price_fen,
                Listing.winner_registration_id,
                bidders.c.bidders,
                func.coalesce(qualified.c.qualified, 0).label("qualified"),
            )
            .join(bidders, bidders.c.listing_id == Listing.id)
            .outerjoin(qualified, qualified.c.listing_id == Listing.id)
            .where(
                Listing.status == SOLD,
                bidders.c.bidders <= p["max_bidders"],
                *_in_scope(Listing.village_code, Listing.closed_at, scope),
                *_listing_ids(scope, Listing.id) if scope.events is not None else (),
            )
        )
        rows = await _rows(session, statement)
        bid_ids = await _bid_ids_of(session, {row.id for row in rows})
        findings = []
        for row in rows:
            silent = max(row.qualified - row.bidders, 0)
            text = (
                f"该标的仅 {row.bidders} 名竞买人出价即成交（资格审核通过 {row.qualified} 名"
                + (f"，其中 {silent} 名未出价" if silent else "")
                + f"），成交价 {_yuan(row.final_price_fen)}，起始价 {_yuan(row.starting_price_fen)}"
            )
            findings.append(
                self.finding(
                    "listing",
                    row.id,
                    row.village_code,
                    60 + 10 * min(silent, 2),
                    text,
                    {
                        "listings": [row.id],
                        "registrations": [row.winner_registration_id],
                        "bids": bid_ids[row.id],
                    },
                    row.closed_at,
                    bidders=row.bidders,
                    qualified=row.qualified,
                )
            )
        return findings


class ReserveHugging(_BidRule):
    """Several bidders, yet the lot sold at (or one increment above) the starting price.

    Basis: bidders who compete raise the price; a competitive field that stops at the floor suggests the
    others bid for show (陪标). 《广州市农村集体资产交易管理办法》 (open bidding to find the market price).
    """

    id = "BID-RESERVE-HUGGING"
    title = "多人竞价但以起始价附近成交"
    severity = Severity.ORANGE
    triggers = frozenset({"listing_closed"})
    parameters = (
        _parameter(
            id,
            "increments",
            1,
            int,
            0,
            20,
            "成交价不超过起始价加此数个最小加价幅度即预警 / raise at or below start + this many increments",
        ),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        p = _values(self, params)
        bidders = _bidders_per_listing(scope, Listing.closed_at)
        ceiling = Listing.starting_price_fen + p["increments"] * Listing.min_increment_fen
        statement = (
            select(
                Listing.id,
                Listing.village_code,
                Listing.closed_at,
                Listing.final_price_fen,
                Listing.starting_price_fen,
                Listing.min_increment_fen,
                Listing.winner_registration_id,
                bidders.c.bidders,
            )
            .join(bidders, bidders.c.listing_id == Listing.id)
            .where(
                Listing.status == SOLD,
                bidders.c.bidders >= 2,
                Listing.final_price_fen <= ceiling,
                *_in_scope(Listing.village_code, Listing.closed_at, scope),
                *_listing_ids(scope, Listing.id) if scope.events is not None else (),
            )
        )
        rows = await _rows(session, statement)
        bid_ids = await _bid_ids_of(session, {row.id for row in rows})
        findings = []
        for row in rows:
            steps = (row.final_price_fen - row.starting_price_fen) / row.min_increment_fen
            text = (
                f"{row.bidders} 名竞买人出价，成交价 {_yuan(row.final_price_fen)} 仅比起始价 "
                f"{_yuan(row.starting_price_fen)} 高 {steps:g} 个加价幅度（每个 {_yuan(row.min_increment_fen)}，"
                f"预警线 {p['increments']} 个）"
            )
            findings.append(
                self.finding(
                    "listing",
                    row.id,
                    row.village_code,
                    55 + 5 * min(row.bidders, 5),
                    text,
                    {
                        "listings": [row.id],
                        "registrations": [row.winner_registration_id],
                        "bids": bid_ids[row.id],
                    },
                    row.closed_at,
                    bidders=row.bidders,
                    increments_above_start=steps,
                )
            )
        return findings


class CloseSecondBid(_BidRule):
    """The winning bid and the runner-up's best bid lie unusually close: the runner-up stopped just short.

    Basis: OCDS red flag R024 (price close to the winning bid); a gap at or below ``max_gap_ratio`` of the
    winning price, or below the lower robust fence (Q1 − 1.5·IQR) of the gaps, counted in minimum increments,
    in comparable sold listings (same asset kind, same township — or district when the township has too
    few), suggests coordinated bids.
    """

    id = "BID-CLOSE-SECOND"
    title = "第二名报价与成交价过于接近"
    severity = Severity.ORANGE
    ocds_code = "R024"
    triggers = frozenset({"listing_closed"})
    parameters = (
        _parameter(
            id,
            "max_gap_ratio",
            0.005,
            float,
            0.0,
            0.5,
            "成交价与第二名最高报价之差不超过成交价的此比例即预警 / raise at or below this gap share",
        ),
        _parameter(
            id,
            "min_comparables",
            8,
            int,
            3,
            1000,
            "稳健界限所需最少可比成交数 / fewest comparables for the robust fence",
        ),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        p = _values(self, params)
        statement = self.statement(_Shape.of(scope), p)
        rows = list(await session.execute(statement, _scope_values(scope)))
        bid_ids = await _bid_ids_of(session, {row.id for row in rows}, losers_only=True)
        findings = []
        for row in rows:
            gap = row.final_price_fen - row.runner_up
            text = (
                f"成交价 {_yuan(row.final_price_fen)}，第二名最高报价 {_yuan(row.runner_up)}，相差 {_yuan(gap)}"
                f"（成交价的 {row.ratio:.2%}，预警线 {p['max_gap_ratio']:.2%}；合 {row.value:.1f} 个最小加价幅度"
            )
            if row.n:
                text += (
                    f"；同{row.area_level}同类成交 {row.n} 宗的差距中位数 {row.median:.1f} 个加价幅度，"
                    f"下限 {row.lower_fence:.1f}"
                )
            text += "）"
            findings.append(
                self.finding(
                    "listing",
                    row.id,
                    row.village_code,
                    70 if row.below_fence else 55,
                    text,
                    {
                        "listings": [row.id],
                        "registrations": [row.winner_registration_id],
                        "bids": bid_ids[row.id],
                    },
                    row.closed_at,
                    gap_fen=gap,
                    gap_ratio=row.ratio,
                    gap_increments=row.value,
                    comparables=row.n,
                )
            )
        return findings

    @_built_per_shape
    def statement(shape: _Shape, p: dict[str, Any]) -> Select:
        """The flagged listings of a scope of this shape, for these parameter values."""
        kinds = _listing_kind(*_comparable_listings(shape, ListingAsset.listing_id))
        # a scoped evaluation reads the bids of the comparables found for the kinds, not found again
        comparables = (
            [Listing.id.in_(select(kinds.c.listing_id).where(*_of_event_kinds(shape, kinds.c.kind)))]
            if shape.villages or shape.districts
            else []
        )
        runner_bid = aliased(Bid)
        # the best bid of the others than the winner, hashed per listing (the ids of those bids are read for
        # the findings' listings only, afterwards: gathering them for every sold listing forced a sort)
        runner_up = (
            select(
                runner_bid.listing_id,
                func.max(runner_bid.amount_fen).label("runner_up"),
            )
            .join(Listing, Listing.id == runner_bid.listing_id)
            .where(
                Listing.status == SOLD,
                runner_bid.registration_id != Listing.winner_registration_id,
                *comparables,
            )
            .group_by(runner_bid.listing_id)
            .cte("runner_up")  # read twice (the gaps, then the findings): computed once
        )
        gap = Listing.final_price_fen - runner_up.c.runner_up
        gap_ratio = cast(gap, Float) / Listing.final_price_fen
        # compared across lots in minimum increments, not as a share of the price: in an ascending auction the
        # runner-up is always at least one increment behind, so only a finish unusually close for the market
        # (fewer increments than the comparables' lower fence) says something
        gap_increments = cast(gap, Float) / Listing.min_increment_fen
        values = (
            select(
                Listing.id.label("listing_id"),
                Village.township_code,
                Village.district_code,
                kinds.c.kind,
                gap_increments.label("value"),
            )
            .join(runner_up, runner_up.c.listing_id == Listing.id)
            .join(Village, Village.code == Listing.village_code)
            .join(kinds, kinds.c.listing_id == Listing.id)
            .where(Listing.status == SOLD, *_of_event_kinds(shape, kinds.c.kind))
            .cte("gaps")
        )
        fenced = _fenced(values, p["min_comparables"])
        below_fence = and_(fenced.c.n >= p["min_comparables"], fenced.c.value < fenced.c.lower_fence)
        statement = (
            select(
                Listing.id,
                Listing.village_code,
                Listing.closed_at,
                Listing.final_price_fen,
                Listing.winner_registration_id,
                runner_up.c.runner_up,
                fenced.c.value,
                fenced.c.n,
                fenced.c.median,
                fenced.c.lower_fence,
                fenced.c.area_level,
                gap_ratio.label("ratio"),
                below_fence.label("below_fence"),
            )
            .join(runner_up, runner_up.c.listing_id == Listing.id)
            .join(fenced, fenced.c.listing_id == Listing.id)
            .where(
                or_(gap_ratio <= p["max_gap_ratio"], below_fence),
                *_bound_in_scope(Listing.village_code, Listing.closed_at, shape),
            )
        )
        return statement


class IdenticalAmounts(_BidRule):
    """Different bidders on one listing offered the very same amount.

    Basis: OCDS red flag R028 (identical bid prices). In an open ascending auction prices strictly rise, so
    equal amounts from two bidders can only come from imported, offline or tampered bids: a sibling of
    BID-CLOSE-SECOND kept apart so each keeps one subject per listing with its own evidence.
    """

    id = "BID-IDENTICAL-AMOUNTS"
    title = "不同竞买人报价完全相同"
    severity = Severity.ORANGE
    ocds_code = "R028"
    #: not ``bid_placed``: the bidding service takes only bids above the current price, so a bid placed on the
    #: platform can never equal another; imported or offline bids are found when the listing closes
    triggers = frozenset({"listing_closed"})

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        when = func.coalesce(Listing.closed_at, Listing.bidding_starts_at)
        # the bids grouped alone, in one hashed pass that keeps two numbers a group (two bidders differ when min
        # and max differ); then, for each of the few groups found, its bids' ids read along the index on
        # (listing, seq): gathering every group's ids in that one pass held a string per bid and spilled to disk
        # at 4x the city's data (0.6 s against 0.08 s at 2x); the ids are made distinct when read back
        shared = (
            select(Bid.listing_id, Bid.amount_fen)
            .where(*_listing_ids(scope, Bid.listing_id, when))
            .group_by(Bid.listing_id, Bid.amount_fen)
            .having(func.min(Bid.registration_id) != func.max(Bid.registration_id))
            .subquery("shared")
        )

        def ids_of(column: Any) -> Any:
            same = and_(Bid.listing_id == shared.c.listing_id, Bid.amount_fen == shared.c.amount_fen)
            return select(_all_ids(column)).where(same).scalar_subquery()

        equal = select(
            shared.c.listing_id,
            shared.c.amount_fen,
            ids_of(Bid.id).label("bid_ids"),
            ids_of(Bid.registration_id).label("registration_ids"),
        ).subquery("equal")
        statement = (
            select(equal, Listing.village_code, when.label("occurred_at"))
            .join(Listing, Listing.id == equal.c.listing_id)
            .where(*_in_scope(Listing.village_code, when, scope))
            .order_by(equal.c.listing_id, equal.c.amount_fen)
        )
        by_listing: dict[int, list[Any]] = defaultdict(list)
        for row in await _rows(session, statement):
            by_listing[row.listing_id].append(row)
        findings = []
        for listing_id, rows in by_listing.items():
            parts = "；".join(
                f"{len(parse_ids(row.registration_ids))} 名竞买人均报价 {_yuan(row.amount_fen)}" for row in rows
            )
            findings.append(
                self.finding(
                    "listing",
                    listing_id,
                    rows[0].village_code,
                    75,
                    f"同一标的不同竞买人报价相同：{parts}",
                    {
                        "listings": [listing_id],
                        "bids": [i for r in rows for i in parse_ids(r.bid_ids)],
                        "registrations": [i for r in rows for i in parse_ids(r.registration_ids)],
                    },
                    rows[0].occurred_at,
                    amounts=[row.amount_fen for row in rows],
                )
            )
        return findings


TRAIT_NAMES = {
    "phone": "联系电话",
    "address": "联系地址",
    "bank_account": "银行账户",
    "deposit_payer": "保证金缴款人",
    "network": "网络地址",
    "device": "设备指纹",
}


def _normalised(value: ColumnElement[str]) -> ColumnElement[str]:
    return func.lower(func.replace(func.replace(func.trim(value), " ", ""), "-", ""))


class SharedIdentity(_BidRule):
    """Bidders of one listing share a phone, address, bank account, deposit payer, network address or device.

    Basis: OCDS red flag R044 (bidders sharing contact details); 《招标投标法实施条例》第四十条 treats bids from
    one device, one payer's account or one contact as collusion (视为串通投标). Traits come from the
    registrations, the bids and the bidders' profiles; a deposit payer counts when someone paid for another.
    """

    id = "BID-SHARED-IDENTITY"
    title = "同一标的竞买人身份特征相同"
    severity = Severity.RED
    ocds_code = "R044"
    triggers = frozenset({"bidder_qualified", "bid_placed", "listing_closed"})

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        # run after every bid: the statement is built once per shape of scope
        statement = self.statement(_Shape.of(scope))
        by_listing: dict[int, list[Any]] = defaultdict(list)
        for row in await session.execute(statement, _scope_values(scope)):
            by_listing[row.listing_id].append(row)
        findings = []
        for listing_id, rows in by_listing.items():
            parts = "；".join(
                f"{TRAIT_NAMES[r.trait]} {r.value} 为 {len(parse_ids(r.bidder_ids))} 名竞买人共用" for r in rows
            )
            kinds = sorted({r.trait for r in rows})
            findings.append(
                self.finding(
                    "listing",
                    listing_id,
                    rows[0].village_code,
                    75 + 5 * len(kinds),
                    f"同一标的的竞买人身份特征相同：{parts}",
                    {
                        "listings": [listing_id],
                        "registrations": [i for r in rows for i in parse_ids(r.registration_ids)],
                        "bidders": [i for r in rows for i in parse_ids(r.bidder_ids)],
                        "traits": kinds,
                    },
                    rows[0].occurred_at,
                    traits=kinds,
                )
            )
        return findings

    @staticmethod
    @functools.cache
    def statement(shape: _Shape) -> Select:
        """The shared traits per listing of the scope's shape (its values bound when run)."""
        R, B = Registration, Bidder
        when = func.coalesce(Listing.closed_at, Listing.bidding_starts_at)
        # every trait is compared within one listing only, so the scope (and an event's listings) narrows the
        # registrations read in the first place
        active = [R.status != REJECTED]
        scoped = _bound_in_scope(Listing.village_code, when, shape)
        if shape.listings:
            active.append(R.listing_id.in_(bindparam("listing_ids", expanding=True)))
        elif scoped:
            active.append(R.listing_id.in_(select(Listing.id).where(*scoped)))
        # A value can be shared within a listing only if two bidders use it somewhere. The first pass finds,
        # per trait column, the distinct raw values with the least and greatest bidder using each (narrow,
        # hashed rows; every bidder's profile, a superset of the registered ones, is enough to rule a value
        # out), normalises only those values and keeps the ones two bidders share; the second pass reads
        # only the registrations and bids carrying such a value, normalises and groups them per listing.
        # Before, every trait of every registration and bid was normalised and sorted.
        own = [("phone", R.contact_phone), ("address", R.contact_address), ("bank_account", R.deposit_payer_account),
               ("deposit_payer", R.deposit_payer_name), ("network", R.applied_ip), ("device", R.applied_device)]
        profile = [("phone", B.phone), ("address", B.address), ("bank_account", B.bank_account),
                   ("deposit_payer", B.name)]
        bid_uses = (
            select(R.bidder_id, Bid.ip_address, Bid.device_fingerprint)
            .join(R, R.id == Bid.registration_id)
            .where(*active)
            .group_by(R.bidder_id, Bid.ip_address, Bid.device_fingerprint)
            .cte("bid_uses")
        )

        def uses(name: str, raw: Any, bidder: Any, *where: Any) -> Select:
            return (
                select(literal(name).label("trait"), raw.label("raw"), func.min(bidder).label("lo"),
                       func.max(bidder).label("hi"))
                .where(raw.is_not(None), *where)
                .group_by(raw)
            )

        # in a scoped evaluation only the profiles of the bidders registered in scope can share a value within
        # one of its listings; a full scan reads every profile rather than look up each bidder's registrations
        profiled = [B.id.in_(select(R.bidder_id).where(*active))] if len(active) > 1 else []
        raw_values = union_all(
            *(uses(name, raw, R.bidder_id, *active) for name, raw in own),
            *(uses(name, raw, B.id, *profiled) for name, raw in profile),
            uses("network", bid_uses.c.ip_address, bid_uses.c.bidder_id),
            uses("device", bid_uses.c.device_fingerprint, bid_uses.c.bidder_id),
        ).subquery("raw_values")
        normed = select(
            raw_values.c.trait, raw_values.c.raw, _normalised(raw_values.c.raw).label("value"),
            raw_values.c.lo, raw_values.c.hi,
        ).cte("normed")
        shared_values = (
            select(normed.c.trait, normed.c.value)
            .where(normed.c.value != "")
            .group_by(normed.c.trait, normed.c.value)
            .having(func.min(normed.c.lo) != func.max(normed.c.hi))
            .subquery("shared_values")
        )
        candidates = (
            select(normed.c.trait, normed.c.raw)
            .join(shared_values, and_(shared_values.c.trait == normed.c.trait, shared_values.c.value == normed.c.value))
            .cte("candidates")
        )

        def candidate(name: str, raw: Any) -> ColumnElement[bool]:
            return raw.in_(select(candidates.c.raw).where(candidates.c.trait == name))

        registration_columns = [*own, *profile]
        matched = (
            select(
                R.listing_id,
                R.id.label("registration_id"),
                R.bidder_id,
                *(raw.label(f"c{i}") for i, (_, raw) in enumerate(registration_columns)),
                case((R.deposit_payer_name != B.name, 1), else_=0).label("paid_for_other"),
            )
            .join(B, B.id == R.bidder_id)
            .where(*active, or_(*(candidate(name, raw) for name, raw in registration_columns)))
            .cte("matched")
        )
        bids_matched = (
            select(R.listing_id, R.id.label("registration_id"), R.bidder_id, Bid.ip_address, Bid.device_fingerprint)
            .join(R, R.id == Bid.registration_id)
            .where(*active, or_(candidate("network", Bid.ip_address), candidate("device", Bid.device_fingerprint)))
            .cte("bids_matched")
        )

        def trait(source: Any, name: str, raw: Any, paid: Any = None) -> Select:
            return select(
                source.c.listing_id,
                source.c.registration_id,
                source.c.bidder_id,
                literal(name).label("trait"),
                _normalised(raw).label("value"),
                (literal(0) if paid is None else paid).label("paid_for_other"),
            ).where(candidate(name, raw))

        traits = union_all(
            *(
                trait(matched, name, matched.c[f"c{i}"],
                      matched.c.paid_for_other if raw is R.deposit_payer_name else None)
                for i, (name, raw) in enumerate(registration_columns)
            ),
            trait(bids_matched, "network", bids_matched.c.ip_address),
            trait(bids_matched, "device", bids_matched.c.device_fingerprint),
        ).subquery("traits")
        # the ids are gathered without DISTINCT and made distinct when read back
        keys = (traits.c.listing_id, traits.c.trait, traits.c.value)
        shared = (
            select(
                *keys,
                _all_ids(traits.c.registration_id).label("registration_ids"),
                _all_ids(traits.c.bidder_id).label("bidder_ids"),
            )
            .group_by(*keys)
            .having(
                func.min(traits.c.bidder_id) != func.max(traits.c.bidder_id),
                or_(traits.c.trait != "deposit_payer", func.max(traits.c.paid_for_other) == 1),
            )
            .subquery("shared")
        )
        return (
            select(shared, Listing.village_code, when.label("occurred_at"))
            .join(Listing, Listing.id == shared.c.listing_id)
            .where(*_bound_in_scope(Listing.village_code, when, shape))
            .order_by(shared.c.listing_id, shared.c.trait, shared.c.value)
        )


class RelatedToOfficial(_BidRule):
    """A bidder is a cadre of the listing's village (in office over the listing's dates) or a declared
    relative of one.

    Basis: 《农村基层干部廉洁履行职责若干规定》 forbids cadres and their relatives from dealing in the collective's
    assets they manage; 《广东省农村集体资产管理条例》 requires their withdrawal (回避). Matched on the ID number,
    or name and phone; a relative declared without an ID number only by name (then orange, lower score).
    """

    id = "BID-RELATED-TO-OFFICIAL"
    title = "竞买人为本村干部或其近亲属"
    severity = Severity.RED
    triggers = frozenset({"bidder_qualified", "listing_closed"})

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        R, B, L = Registration, Bidder, Listing
        starts = as_date(func.coalesce(L.announced_at, L.bidding_starts_at))
        ends = as_date(func.coalesce(L.closed_at, L.bidding_ends_at))
        in_office = and_(
            Cadre.village_code == L.village_code,
            Cadre.term_start <= ends,
            or_(Cadre.term_end.is_(None), Cadre.term_end >= starts),
        )
        when = func.coalesce(L.closed_at, L.bidding_starts_at)
        base = [R.status != REJECTED, *_in_scope(L.village_code, when, scope)]
        if scope.events is not None:
            base += _listing_ids(scope, R.listing_id)
        columns = (
            R.id.label("registration_id"),
            R.listing_id,
            R.bidder_number,
            L.village_code,
            when.label("occurred_at"),
            (L.winner_registration_id == R.id).label("won"),
            L.final_price_fen,
            B.id.label("bidder_id"),
            B.name.label("bidder_name"),
            Cadre.id.label("cadre_id"),
            Cadre.name.label("cadre_name"),
            Cadre.body,
            Cadre.position,
        )
        same_id = Cadre.id_number == B.id_number
        cadres = (
            select(
                *columns,
                literal(None).label("relative_id"),
                literal(None).label("relation"),
                case((same_id, "id_number"), else_="name_phone").label("matched"),
            )
            .join(L, L.id == R.listing_id)
            .join(B, B.id == R.bidder_id)
            .join(Cadre, in_office)
            .where(
                *base,
                or_(
                    same_id,
                    and_(Cadre.name == B.name, or_(Cadre.phone == B.phone, Cadre.phone == R.contact_phone)),
                ),
            )
        )
        relative_same_id = CadreRelative.id_number == B.id_number
        relatives = (
            select(
                *columns,
                CadreRelative.id.label("relative_id"),
                CadreRelative.relation,
                case((relative_same_id, "id_number"), else_="name").label("matched"),
            )
            .join(L, L.id == R.listing_id)
            .join(B, B.id == R.bidder_id)
            .join(Cadre, in_office)
            .join(CadreRelative, CadreRelative.cadre_id == Cadre.id)
            .where(
                *base,
                or_(relative_same_id, and_(CadreRelative.id_number.is_(None), CadreRelative.name == B.name)),
            )
        )
        matches = union_all(cadres, relatives).subquery("matches")
        rows = await _rows(
            session,
            select(matches).order_by(matches.c.registration_id, matches.c.cadre_id, matches.c.relative_id),
        )
        by_registration: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            by_registration[row.registration_id].append(row)
        findings = []
        body_names = {"committee": "村委会", "party_branch": "党支部"}
        how = {
            "id_number": "身份证号相同",
            "name_phone": "姓名和电话相同",
            "name": "姓名相同（亲属未申报身份证号）",
        }
        for registration_id, matched in by_registration.items():
            first = matched[0]
            parts = []
            for m in matched:
                office = f"{body_names.get(m.body, m.body)}{m.position} {m.cadre_name}"
                parts.append(
                    f"与本村{office}{how[m.matched]}"
                    if m.relative_id is None
                    else f"为本村{office}申报的亲属（{m.relation}），{how[m.matched]}"
                )
            text = f"竞买人 {first.bidder_name}（竞买号 {first.bidder_number or '未编号'}）" + "；".join(
                parts
            )
            if first.won:
                text += f"，并竞得该标的（成交价 {_yuan(first.final_price_fen)}）"
            weak = all(m.matched == "name" for m in matched)
            finding = self.finding(
                "registration",
                registration_id,
                first.village_code,
                (60 if weak else 85) + (10 if first.won else 0),
                text,
                {
                    "listings": [first.listing_id],
                    "registrations": [registration_id],
                    "bidders": [first.bidder_id],
                    "cadres": [m.cadre_id for m in matched],
                    "relatives": [m.relative_id for m in matched if m.relative_id is not None],
                },
                first.occurred_at,
                won=bool(first.won),
            )
            finding.severity = Severity.ORANGE if weak else None
            findings.append(finding)
        return findings


class CoverBidding(_BidRule):
    """A bidder who repeatedly qualifies with a deposit, never bids, and watches another bidder win.

    Basis: 陪标 (cover bidding), named in 《招标投标法实施条例》第三十九、四十条 and in Guangzhou's rural trading
    rules; counted over the 24 months (``window_months``) richest in such lots, anywhere in the city.
    """

    id = "BID-COVER-BIDDING"
    title = "多次交纳保证金取得资格却不出价（陪标）"
    severity = Severity.ORANGE
    triggers = frozenset({"listing_closed"})
    parameters = (
        _parameter(
            id, "min_lots", 3, int, 2, 100, "窗口内至少此数宗即预警 / lots within the window to raise"
        ),
        _parameter(id, "window_months", 24, int, 1, 120, "统计窗口（月） / the window, in months"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        p = _values(self, params)
        R, L = Registration, Listing
        # After listings closed only their covers' windows can change: a bidder with no cover registration in
        # them keeps every window it had. Its windows span the city, so all of such a bidder's lots are read.
        closed = scope.event_ids("listing_id")
        covers_of_closed = []
        if closed is not None:
            in_closed = select(Registration.bidder_id).where(Registration.listing_id.in_(sorted(closed)))
            covers_of_closed.append(R.bidder_id.in_(in_closed))
        cover = (
            select(
                R.bidder_id,
                R.id.label("registration_id"),
                L.id.label("listing_id"),
                L.village_code,
                L.closed_at,
            )
            .join(L, L.id == R.listing_id)
            .where(
                L.status == SOLD,
                L.winner_registration_id != R.id,
                R.status == QUALIFIED,
                R.deposit_paid_at.is_not(None),
                ~exists().where(Bid.registration_id == R.id),
                *covers_of_closed,
            )
            .cte("cover")
        )
        days = p["window_months"] * DAYS_PER_MONTH
        # each cover lot with the bidder's cover lots in the window ending at it (window frames, not a join of
        # every cover lot with every other of the same bidder)
        bidder = cover.c.bidder_id
        windows = select(
            bidder,
            cover.c.listing_id,
            cover.c.village_code,
            cover.c.closed_at,
            _trailing(func.count(), cover.c.closed_at, days, bidder).label("lots"),
            _trailing(_all_ids(cover.c.listing_id), cover.c.closed_at, days, bidder).label("listing_ids"),
            _trailing(_all_ids(cover.c.registration_id), cover.c.closed_at, days, bidder).label(
                "registration_ids"
            ),
        ).subquery("windows")
        ranked = select(
            windows,
            func.row_number()
            .over(
                partition_by=windows.c.bidder_id,
                order_by=(windows.c.lots.desc(), windows.c.closed_at.desc(), windows.c.listing_id.desc()),
            )
            .label("rank"),
        ).subquery("ranked")
        statement = (
            select(ranked, Bidder.name)
            .join(Bidder, Bidder.id == ranked.c.bidder_id)
            .where(
                ranked.c.rank == 1,
                ranked.c.lots >= p["min_lots"],
                *_in_scope(ranked.c.village_code, ranked.c.closed_at, scope),
            )
        )
        findings = []
        for row in await _rows(session, statement):
            text = (
                f"竞买人 {row.name} 在 {p['window_months']} 个月内 {row.lots} 宗交易中交纳保证金并取得竞买资格，"
                f"却从未出价，均由他人竞得（预警线 {p['min_lots']} 宗）"
            )
            findings.append(
                self.finding(
                    "bidder",
                    row.bidder_id,
                    row.village_code,
                    50 + 10 * min(row.lots, 5),
                    text,
                    {
                        "listings": parse_ids(row.listing_ids),
                        "registrations": parse_ids(row.registration_ids),
                        "bidders": [row.bidder_id],
                    },
                    row.closed_at,
                    lots=row.lots,
                )
            )
        return findings


def _participation(townships: Any = None, *conditions: ColumnElement[bool]) -> Any:
    """Qualified bidders of sold lots with the lot's township, time and winning bidder (of the given
    townships only, a subquery, when not None; of the lots meeting ``conditions`` on ``Listing``)."""
    R, winner = Registration, aliased(Registration)
    return (
        select(
            R.bidder_id,
            Listing.id.label("listing_id"),
            Listing.village_code,
            Village.township_code,
            Listing.closed_at,
            winner.bidder_id.label("winner_id"),
        )
        .join(Listing, Listing.id == R.listing_id)
        .join(Village, Village.code == Listing.village_code)
        .join(winner, winner.id == Listing.winner_registration_id)
        .where(
            Listing.status == SOLD,
            R.status == QUALIFIED,
            *([] if townships is None else [Village.township_code.in_(townships)]),
            *conditions,
        )
        .cte("participation")
    )


def group_subject_id(bidder_ids: list[int]) -> str:
    """The subject id of a group of bidders: their sorted ids joined, hashed when too long for the column."""
    joined = "-".join(str(i) for i in sorted(bidder_ids))
    return joined if len(joined) <= 40 else "g" + hashlib.sha1(joined.encode()).hexdigest()


class Rotation(_BidRule):
    """A recurring group of bidders in one township whose wins rotate among them.

    Basis: 轮流坐庄 (bid rotation), a classic collusion pattern (OECD Guidelines for Fighting Bid Rigging; 《招标投标
    法实施条例》第三十九条). Seeds are trios of bidders qualified together in at least ``min_lots`` sold lots of
    the township within ``window_months`` up to their latest lot together; the group is every bidder present
    in all of those lots; every lot was won inside the group and each of the trio won at least once.
    """

    id = "BID-ROTATION"
    title = "固定竞买人群体轮流中标"
    severity = Severity.ORANGE
    triggers = frozenset({"listing_closed"})
    parameters = (
        _parameter(id, "min_lots", 4, int, 3, 100, "共同参加至少此数宗 / lots together to raise"),
        _parameter(id, "window_months", 24, int, 1, 120, "统计窗口（月） / the window, in months"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        p = _values(self, params)
        closed = scope.event_ids("listing_id")
        statement = self.statement(_Shape.of(scope), p)
        trio_rows: dict[tuple, list[Any]] = defaultdict(list)
        for row in await session.execute(statement, _scope_values(scope)):
            trio_rows[(row.a, row.b, row.c, row.township_code)].append(row)
        groups: dict[str, list[Any]] = {}
        touched: set[str] = set()
        for rows in trio_rows.values():
            subject = group_subject_id([r.bidder_id for r in rows])
            if closed is not None and closed & set(parse_ids(rows[0].ids)):
                touched.add(subject)
            best = groups.get(subject)
            if best is None or (rows[0].n, rows[0].latest, rows[0].ids) > (
                best[0].n,
                best[0].latest,
                best[0].ids,
            ):
                groups[subject] = rows
        if closed is not None:
            # A group whose lots include a closed listing has every member qualified in it, so every trio of
            # the group was counted here and the choice below is the full scan's; a group none of whose trios
            # counts a closed listing is unchanged by it (and may have trios not counted here): left alone.
            groups = {subject: rows for subject, rows in groups.items() if subject in touched}
        findings = []
        for subject, rows in sorted(groups.items()):
            first = rows[0]
            shares = "、".join(f"{r.name} {r.wins} 宗" for r in rows)
            text = (
                f"{len(rows)} 名竞买人在 {p['window_months']} 个月内共同参加本镇街 {first.n} 宗成交交易"
                f"（预警线 {p['min_lots']} 宗），均由其中之一竞得，轮流中标：{shares}"
            )
            findings.append(
                self.finding(
                    "bidder_group",
                    subject,
                    first.village_code,
                    60 + 5 * min(first.n, 8),
                    text,
                    {"listings": parse_ids(first.ids), "bidders": [r.bidder_id for r in rows]},
                    first.latest,
                    lots=first.n,
                    wins={r.bidder_id: r.wins for r in rows},
                )
            )
        return findings

    @_built_per_shape
    def statement(shape: _Shape, p: dict[str, Any]) -> Select:
        """Per qualifying trio of a scope of this shape, its members and their wins, for these parameter
        values."""
        # An incremental evaluation after listings closed re-counts only the trios qualified together in
        # one of those listings: any other trio's lots, members and wins do not include them (see evaluate).
        # every lot of a trio lies in one township: a scoped evaluation reads its townships' lots only; after
        # an event, only the lots some bidder of the closed listings qualified in (each whole, for presence)
        lots_of_closed = []
        if shape.listings:
            bidders_of_closed = select(Registration.bidder_id).where(
                Registration.listing_id.in_(bindparam("listing_ids", expanding=True)),
                Registration.status == QUALIFIED,
            )
            lots_of_closed.append(
                Listing.id.in_(
                    select(Registration.listing_id).where(
                        Registration.bidder_id.in_(bidders_of_closed), Registration.status == QUALIFIED
                    )
                )
            )
        part = _participation(_scope_townships(shape), *lots_of_closed)
        # Only bidders who could be one of a qualifying trio are paired: each of a, b, c took part in at least
        # ``min_lots`` sold lots of the township and won one of them (wins_a >= 1 counts a lot a took part in);
        # in a scoped evaluation each also took part in the trio's latest lot, which lies in the scope. This
        # prunes the cubic self-join to the few winners of each township; members, presence and outsider wins
        # are still counted over every participant.
        candidates = (
            select(part.c.bidder_id, part.c.township_code)
            .where(*([part.c.bidder_id.in_(bidders_of_closed)] if shape.listings else []))
            .group_by(part.c.bidder_id, part.c.township_code)
            .having(
                func.count() >= p["min_lots"],
                func.sum(case((part.c.winner_id == part.c.bidder_id, 1), else_=0)) >= 1,
            )
        )
        scoped = _bound_in_scope(part.c.village_code, part.c.closed_at, shape)
        if scoped:
            candidates = candidates.having(func.sum(case((and_(*scoped), 1), else_=0)) >= 1)
        candidates = candidates.cte("candidates")
        pruned = (
            select(part)
            .join(
                candidates,
                and_(
                    candidates.c.bidder_id == part.c.bidder_id,
                    candidates.c.township_code == part.c.township_code,
                ),
            )
            .cte("pruned")
        )
        a, b, c = pruned.alias("a"), pruned.alias("b"), pruned.alias("c")
        trio = (
            a.c.bidder_id.label("a"),
            b.c.bidder_id.label("b"),
            c.c.bidder_id.label("c"),
            a.c.township_code,
        )
        together = (
            select(*trio, a.c.listing_id, a.c.village_code, a.c.closed_at, a.c.winner_id)
            .join(b, and_(b.c.listing_id == a.c.listing_id, b.c.bidder_id > a.c.bidder_id))
            .join(c, and_(c.c.listing_id == a.c.listing_id, c.c.bidder_id > b.c.bidder_id))
            .subquery("together")
        )
        keys = (together.c.a, together.c.b, together.c.c, together.c.township_code)
        latest = select(
            together,
            func.count().over(partition_by=keys).label("together_lots"),
            func.max(together.c.closed_at).over(partition_by=keys).label("latest"),
            func.first_value(together.c.village_code)
            .over(partition_by=keys, order_by=(together.c.closed_at.desc(), together.c.listing_id.desc()))
            .label("latest_village"),
        ).subquery("latest")
        lots = (
            select(latest)
            .where(
                # a trio with fewer lots together in all than min_lots cannot have them within the window:
                # dropped before its members are counted (nearly every trio meets only once)
                latest.c.together_lots >= p["min_lots"],
                days_between(latest.c.closed_at, latest.c.latest) <= p["window_months"] * DAYS_PER_MONTH,
            )
            .cte("lots")
        )
        trio_keys = (lots.c.a, lots.c.b, lots.c.c, lots.c.township_code)
        counts = select(*trio_keys, func.count().label("n")).group_by(*trio_keys).subquery("counts")
        member_part = part.alias("member_part")
        presence = (
            select(*trio_keys, member_part.c.bidder_id, func.count().label("present"))
            .join(member_part, member_part.c.listing_id == lots.c.listing_id)
            .group_by(*trio_keys, member_part.c.bidder_id)
            .subquery("presence")
        )

        def same_trio(x: Any, y: Any) -> ColumnElement[bool]:
            return and_(
                x.c.a == y.c.a, x.c.b == y.c.b, x.c.c == y.c.c, x.c.township_code == y.c.township_code
            )

        # the group: every bidder qualified in all the trio's lots
        members = (
            select(presence.c.a, presence.c.b, presence.c.c, presence.c.township_code, presence.c.bidder_id)
            .join(counts, same_trio(counts, presence))
            .where(presence.c.present == counts.c.n)
            .cte("members")
        )
        won = (
            select(*trio_keys, lots.c.winner_id, func.count().label("wins"))
            .group_by(*trio_keys, lots.c.winner_id)
            .subquery("won")
        )
        inside = members.alias("inside")
        wins = lambda who: func.sum(case((lots.c.winner_id == who, 1), else_=0))
        trios = (
            select(
                *trio_keys,
                func.count().label("n"),
                func.max(lots.c.latest).label("latest"),
                func.max(lots.c.latest_village).label("village_code"),
                id_list(lots.c.listing_id).label("ids"),
                wins(lots.c.a).label("wins_a"),
                wins(lots.c.b).label("wins_b"),
                wins(lots.c.c).label("wins_c"),
                func.sum(case((inside.c.bidder_id.is_(None), 1), else_=0)).label("outsider_wins"),
            )
            .outerjoin(inside, and_(same_trio(inside, lots), inside.c.bidder_id == lots.c.winner_id))
            .group_by(*trio_keys)
            .subquery("trios")
        )
        qualifying = (
            select(trios)
            .where(
                trios.c.n >= p["min_lots"],
                trios.c.wins_a >= 1,
                trios.c.wins_b >= 1,
                trios.c.wins_c >= 1,
                trios.c.outsider_wins == 0,
                *_bound_in_scope(trios.c.village_code, trios.c.latest, shape),
            )
            .subquery("qualifying")
        )
        return (
            select(qualifying, members.c.bidder_id, Bidder.name, func.coalesce(won.c.wins, 0).label("wins"))
            .join(members, same_trio(members, qualifying))
            .join(Bidder, Bidder.id == members.c.bidder_id)
            .outerjoin(won, and_(same_trio(won, qualifying), won.c.winner_id == members.c.bidder_id))
            .order_by(
                qualifying.c.a,
                qualifying.c.b,
                qualifying.c.c,
                qualifying.c.township_code,
                members.c.bidder_id,
            )
        )


class DominantWinner(_BidRule):
    """One bidder wins most of a village's sold lots within 24 months.

    Basis: concentration of a collective's assets in one hand is a sign of a captured market (Cardinal's
    winner-share flag); raised at ``min_share`` and ``min_wins``, or when the share lies above the upper
    robust fence (Q3 + 1.5·IQR) of the leading winners' shares in the township's villages.
    """

    id = "BID-DOMINANT-WINNER"
    title = "同一竞买人包揽本村多数交易"
    severity = Severity.ORANGE
    triggers = frozenset({"listing_closed"})
    parameters = (
        _parameter(
            id, "min_share", 0.5, float, 0.05, 1.0, "中标份额达到此比例 / share of the village's sold lots"
        ),
        _parameter(id, "min_wins", 4, int, 2, 100, "且至少中标此数宗 / and at least this many wins"),
        _parameter(id, "window_months", 24, int, 1, 120, "统计窗口（月） / the window, in months"),
        _parameter(
            id,
            "min_comparables",
            8,
            int,
            3,
            1000,
            "稳健界限所需最少村数 / fewest villages for the robust fence",
        ),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        p = _values(self, params)
        statement = self.statement(_Shape.of(scope), p)
        findings = []
        for row in await session.execute(statement, _scope_values(scope)):
            text = (
                f"竞买人 {row.name} 在 {p['window_months']} 个月内竞得本村 {row.lots} 宗成交交易中的 {row.wins} 宗"
                f"（{row.share:.0%}，预警线 {p['min_share']:.0%} 且不少于 {p['min_wins']} 宗"
            )
            if row.n and row.n >= p["min_comparables"]:
                text += (
                    f"；本镇街 {row.n} 个村最大中标份额的中位数 {row.median:.0%}，上限 {row.upper_fence:.0%}"
                )
            text += "）"
            findings.append(
                self.finding(
                    "bidder",
                    f"{row.bidder_id}:{row.village_code}",
                    row.village_code,
                    50 + 40 * row.share,
                    text,
                    {"listings": parse_ids(row.won_ids), "bidders": [row.bidder_id]},
                    row.latest,
                    wins=row.wins,
                    lots=row.lots,
                    share=row.share,
                )
            )
        return findings

    @_built_per_shape
    def statement(shape: _Shape, p: dict[str, Any]) -> Select:
        """The dominant winners of a scope of this shape, for these parameter values."""
        days = p["window_months"] * DAYS_PER_MONTH
        winner = aliased(Registration)
        # shares are counted per village and fenced per township: a scoped evaluation needs the lots of the
        # scope's townships only (all of them: the fence compares every village of the township)
        townships = _scope_townships(shape)
        sold = (
            select(
                Listing.id.label("listing_id"),
                Listing.village_code,
                Village.township_code,
                Listing.closed_at,
                winner.bidder_id,
            )
            .join(winner, winner.id == Listing.winner_registration_id)
            .join(Village, Village.code == Listing.village_code)
            .where(
                Listing.status == SOLD, *([] if townships is None else [Village.township_code.in_(townships)])
            )
            .cte("sold")
        )
        # each win with the village's lots and the bidder's wins in the window ending at it; a pair (bidder,
        # village) keeps the window ending at its latest win. Window frames, not a join of every pair with
        # every lot of its village: the same counts, without the pairs the window throws away.
        village, mine = (sold.c.village_code,), (sold.c.village_code, sold.c.bidder_id)
        framed = select(
            sold.c.bidder_id,
            sold.c.village_code,
            sold.c.township_code,
            sold.c.closed_at.label("latest"),
            _trailing(func.count(), sold.c.closed_at, days, *village).label("lots"),
            _trailing(func.count(), sold.c.closed_at, days, *mine).label("wins"),
            _trailing(_all_ids(sold.c.listing_id), sold.c.closed_at, days, *mine).label("won_ids"),
            func.row_number()
            .over(partition_by=mine, order_by=(sold.c.closed_at.desc(), sold.c.listing_id.desc()))
            .label("newest"),
        ).subquery("framed")
        shares = (
            select(
                *(framed.c[name] for name in ("bidder_id", "village_code", "township_code", "latest")),
                *(framed.c[name] for name in ("lots", "wins", "won_ids")),
            )
            .where(framed.c.newest == 1)
            .cte("shares")  # read twice (the leaders' fences, then the findings): computed once
        )
        share = cast(shares.c.wins, Float) / shares.c.lots
        leaders = (
            select(shares.c.village_code, shares.c.township_code, func.max(share).label("value"))
            .group_by(shares.c.village_code, shares.c.township_code)
            .subquery("leaders")
        )
        fences = quartile_fences(leaders, ["township_code"]).subquery("fences")
        above = and_(fences.c.n >= p["min_comparables"], share > fences.c.upper_fence)
        statement = (
            select(
                shares,
                share.label("share"),
                fences.c.n,
                fences.c.median,
                fences.c.upper_fence,
                above.label("above_fence"),
                Bidder.name,
            )
            .join(Bidder, Bidder.id == shares.c.bidder_id)
            .outerjoin(fences, fences.c.township_code == shares.c.township_code)
            .where(
                shares.c.wins >= p["min_wins"],
                or_(share >= p["min_share"], above),
                *_bound_in_scope(shares.c.village_code, shares.c.latest, shape),
            )
        )
        return statement


UNIT_NAMES = {"mu": "每亩每年", "m2": "每平方米每年", "item": "每台（套）每年"}


class BelowMarket(_BidRule):
    """A final price per unit of area per year below the lower robust fence of comparable sold listings.

    Basis: 《广东省农村集体资产管理条例》 (collective assets leased at a fair price; undervaluation is a loss of
    collective assets, 集体资产流失). Comparables: sold listings of the same asset kind and area unit in the
    same township, or the district when the township has fewer than ``min_comparables``; quiet with fewer.
    The price is taken per mu (or m², item) per year: per-unit-year prices as they are, yearly prices over
    the area, totals over the term in years and the area. Where comparables cluster tightly the fence sits
    close to the median, so the price must also fall ``min_shortfall`` below the median: a lot a few per
    cent under a tight market is not a loss worth a supervisor's visit.
    """

    id = "BID-BELOW-MARKET"
    title = "成交价明显低于同类资产市场水平"
    severity = Severity.ORANGE
    triggers = frozenset({"listing_closed"})
    parameters = (
        _parameter(
            id,
            "min_comparables",
            8,
            int,
            3,
            1000,
            "计算稳健界限所需最少可比成交数 / fewest comparables for the robust fence",
        ),
        _parameter(
            id,
            "min_shortfall",
            0.2,
            float,
            0.0,
            0.9,
            "成交价至少低于中位数的比例 / the least shortfall below the comparables' median",
        ),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        p = _values(self, params)
        statement = self.statement(_Shape.of(scope), p)
        findings = []
        for row in await session.execute(statement, _scope_values(scope)):
            unit = UNIT_NAMES.get(row.unit, "每单位每年")
            text = (
                f"成交价 {unit} {_yuan(row.value)}，低于同{row.area_level}同类资产下限 {_yuan(row.lower_fence)}"
                f"（样本 {row.n} 宗，中位数 {_yuan(row.median)}，低于中位数 {1 - row.value / row.median:.0%}）"
            )
            depth = (row.lower_fence - row.value) / row.median if row.median else 0
            findings.append(
                self.finding(
                    "listing",
                    row.id,
                    row.village_code,
                    60 + 40 * min(max(depth, 0), 1),
                    text,
                    {"listings": [row.id], "registrations": [row.winner_registration_id]},
                    row.closed_at,
                    unit_price_fen=row.value,
                    lower_fence_fen=row.lower_fence,
                    median_fen=row.median,
                    comparables=row.n,
                )
            )
        return findings

    @_built_per_shape
    def statement(shape: _Shape, p: dict[str, Any]) -> Select:
        """The listings below the market of a scope of this shape, for these parameter values."""
        kinds = _listing_kind(*_comparable_listings(shape, ListingAsset.listing_id))
        area = cast(func.coalesce(Listing.area, kinds.c.asset_area), Float)
        price = cast(Listing.final_price_fen, Float)
        unit_price = case(
            (Listing.price_basis == "per_mu_year", price),
            (Listing.price_basis == "per_year", price / area),
            (Listing.price_basis == "total", price / (Listing.term_months / 12.0) / area),
        )
        values = (
            select(
                Listing.id.label("listing_id"),
                Village.township_code,
                Village.district_code,
                (kinds.c.kind + "/" + kinds.c.unit).label("kind"),
                unit_price.label("value"),
            )
            .join(Village, Village.code == Listing.village_code)
            .join(kinds, kinds.c.listing_id == Listing.id)
            .where(Listing.status == SOLD, area > 0, *_of_event_kinds(shape, kinds.c.kind))
            .cte("unit_prices")
        )
        fenced = _fenced(values, p["min_comparables"])
        statement = (
            select(
                Listing.id,
                Listing.village_code,
                Listing.closed_at,
                Listing.final_price_fen,
                Listing.winner_registration_id,
                kinds.c.kind,
                kinds.c.unit,
                fenced,
            )
            .join(fenced, fenced.c.listing_id == Listing.id)
            .join(kinds, kinds.c.listing_id == Listing.id)
            .where(
                fenced.c.n >= p["min_comparables"],
                fenced.c.value < fenced.c.lower_fence,
                fenced.c.value <= fenced.c.median * (1 - p["min_shortfall"]),
                *_bound_in_scope(Listing.village_code, Listing.closed_at, shape),
            )
        )
        return statement


class ShortAnnouncement(_BidRule):
    """The announcement ran shorter than the minimum before bidding began.

    Basis: OCDS red flag R003 (short tender period); 《广州市农村集体资产交易管理办法》 sets a minimum public
    announcement so every villager and bidder can learn of the lot. Measured from the announcement to the
    start of bidding (the declared ``announcement_days`` when the announcement time is unknown).
    """

    id = "BID-SHORT-ANNOUNCEMENT"
    title = "公告期不足"
    severity = Severity.YELLOW
    ocds_code = "R003"
    triggers = frozenset({"listing_closed"})
    parameters = (
        _parameter(id, "min_days", 5, int, 1, 90, "最短公告期（天） / the shortest announcement, in days"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        p = _values(self, params)
        days = case(
            (
                Listing.announced_at.is_not(None),
                days_between(Listing.announced_at, Listing.bidding_starts_at),
            ),
            else_=cast(Listing.announcement_days, Float),
        )
        statement = select(Listing.id, Listing.village_code, Listing.closed_at, days.label("days")).where(
            Listing.status.in_(FINISHED),
            days < p["min_days"],
            *_in_scope(Listing.village_code, Listing.closed_at, scope),
            *_listing_ids(scope, Listing.id) if scope.events is not None else (),
        )
        findings = []
        for row in await _rows(session, statement):
            text = f"公告期 {row.days:.1f} 天（自公告至竞价开始），短于最短公告期 {p['min_days']} 天"
            findings.append(
                self.finding(
                    "listing",
                    row.id,
                    row.village_code,
                    40 + 40 * (1 - max(row.days, 0) / p["min_days"]),
                    text,
                    {"listings": [row.id]},
                    row.closed_at,
                    announcement_days=row.days,
                )
            )
        return findings


class RelistedCheaper(_BidRule):
    """A failed listing relisted with its starting price cut by more than allowed.

    Basis: 《广州市农村集体资产交易管理办法》 lets a failed lot be relisted at a lower price within a limit set by
    the villagers' resolution; a deeper cut (even by editing the relisted draft afterwards) hands the asset
    to a waiting buyer below value.
    """

    id = "BID-RELISTED-CHEAPER"
    title = "流拍后重新挂牌降价超限"
    severity = Severity.YELLOW
    #: not ``bid_placed``: a bid changes neither listing's price nor status, and the relisted listing's first
    #: qualified bidder has already triggered it
    triggers = frozenset({"bidder_qualified", "listing_closed"})
    parameters = (
        _parameter(
            id,
            "max_cut",
            0.2,
            float,
            0.0,
            1.0,
            "起始价最大降幅 / the largest allowed cut of the starting price",
        ),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        p = _values(self, params)
        previous = _PREVIOUS_LISTING
        cut = (
            cast(previous.starting_price_fen - Listing.starting_price_fen, Float)
            / previous.starting_price_fen
        )
        when = func.coalesce(Listing.announced_at, Listing.created_at)
        statement = (
            select(
                Listing.id,
                Listing.village_code,
                when.label("occurred_at"),
                Listing.starting_price_fen,
                previous.id.label("previous_id"),
                previous.starting_price_fen.label("previous_price"),
                cut.label("cut"),
            )
            .join(previous, previous.id == Listing.relisted_from_id)
            .where(
                previous.status == "failed",
                Listing.status.not_in(("draft", "submitted")),
                cut > p["max_cut"],
                *_in_scope(Listing.village_code, when, scope),
                *self._touched(scope),
            )
        )
        findings = []
        for row in await _rows(session, statement):
            text = (
                f"流拍后重新挂牌，起始价由 {_yuan(row.previous_price)} 降至 {_yuan(row.starting_price_fen)}，"
                f"降幅 {row.cut:.1%}，超过允许的 {p['max_cut']:.0%}"
            )
            findings.append(
                self.finding(
                    "listing",
                    row.id,
                    row.village_code,
                    40 + 60 * min(row.cut, 1),
                    text,
                    {"listings": [row.previous_id, row.id]},
                    row.occurred_at,
                    cut=row.cut,
                )
            )
        return findings

    @staticmethod
    def _touched(scope: Scope) -> list[ColumnElement[bool]]:
        """In an incremental evaluation, the relisted listings the events touched: the event's listing itself,
        or the listing relisted from it (the finding reads only the pair)."""
        ids = scope.event_ids("listing_id")
        if ids is None:
            return []
        ordered = sorted(ids)
        return [or_(Listing.id.in_(ordered), Listing.relisted_from_id.in_(ordered))]


RULES: list[Rule] = [
    SingleBidder(),
    ReserveHugging(),
    CloseSecondBid(),
    IdenticalAmounts(),
    SharedIdentity(),
    RelatedToOfficial(),
    CoverBidding(),
    Rotation(),
    DominantWinner(),
    BelowMarket(),
    ShortAnnouncement(),
    RelistedCheaper(),
]
