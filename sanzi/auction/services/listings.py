"""Listings: the village's draft terms, the villagers' resolution, the township's review, announcement,
suspension, termination and relisting, and the public and official reads.

Every change to an existing listing takes :func:`lock_listing` first (so it queues behind bids and the close)
and goes through :func:`transition`, which records the actor and time. Creating a listing first takes its
collective's row, so listing numbers of one village are handed out one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from sanzi.auction.lifecycle import STATUS_NAMES_ZH, lock_listing, transition
from sanzi.auction.models import DepositState, Listing, ListingAsset, ListingEvent, Registration
from sanzi.auction.models import ListingStatus as S
from sanzi.auction.schemas import listings as schemas
from sanzi.ledger.models import AreaUnit, Asset, AssetKind, AssetStatus, PriceBasis, TradeType
from sanzi.ledger.services.assets import AssetService
from sanzi.platform.geography import normalise_code
from sanzi.platform.models import Collective, District, Role, Township, User, Village
from sanzi.platform.money import fen_to_yuan
from sanzi.platform.parameters import Parameter, get_parameter, register
from sanzi.platform.problems import Conflict, DomainError, Forbidden, NotFound
from sanzi.platform.schemas import Page
from sanzi.platform.settings import get_settings

MIN_ANNOUNCEMENT_DAYS = register(
    Parameter(
        "auction.min_announcement_days",
        5,
        int,
        minimum=1,
        maximum=90,
        description="最短公告期（天）/ the shortest announcement period a listing may have, in days",
    )
)
RELIST_MAX_CUT = register(
    Parameter(
        "auction.relist_max_cut",
        0.2,
        float,
        minimum=0.0,
        maximum=1.0,
        description="重新挂牌起始价最大降幅 / the largest share by which a relisted starting price may fall",
    )
)

#: listings that still hold their assets (a new listing of the same asset must wait for them)
OPEN_STATUSES = {s.value for s in S} - {S.SOLD.value, S.FAILED.value, S.TERMINATED.value}
#: steps whose note is public (the reasons of a suspension or termination, a resumption)
PUBLIC_NOTES = {S.SUSPENDED.value, S.TERMINATED.value}
_TERM_FIELDS = (
    "title",
    "description",
    "trade_type",
    "term_months",
    "price_basis",
    "area",
    "starting_price_fen",
    "reserve_price_fen",
    "min_increment_fen",
    "max_increment_fen",
    "deposit_fen",
    "performance_bond_fen",
    "qualification_conditions",
    "announcement_days",
    "registration_deadline",
    "bidding_starts_at",
    "bidding_ends_at",
    "extension_minutes",
    "max_extensions",
)
_MONEY_FIELDS = {
    "starting_price",
    "reserve_price",
    "min_increment",
    "max_increment",
    "deposit",
    "performance_bond",
}


def _refuse(field: str, zh: str, en: str) -> DomainError:
    return DomainError(zh, en, field=field)


def _yuan(fen: int) -> str:
    return fen_to_yuan(fen)


# ---- who may do what ------------------------------------------------------------------------------------


def is_official_of(user: User | None, village_code: str) -> bool:
    """The village's committee, a supervisor whose area covers it, or an admin."""
    return user is not None and user.role != Role.BIDDER.value and user.may_read_village(village_code)


def is_published(listing: Listing) -> bool:
    """A listing is public from its announcement on (and stays so, whatever happens to it later)."""
    return listing.announced_at is not None


def _hide_or_forbid(user: User | None, listing: Listing) -> DomainError:
    """Outsiders get 404 for a listing they cannot see, 403 for one they can see but not change."""
    if is_published(listing) or is_official_of(user, listing.village_code):
        return Forbidden("您无权对该交易项目执行此操作", "you may not do this to this listing")
    return NotFound("交易项目", "listing")


def require_committee(user: User, listing: Listing) -> None:
    """The village's committee (or an admin)."""
    if not user.may_write_village(listing.village_code):
        raise _hide_or_forbid(user, listing)


def require_supervisor(user: User, listing: Listing) -> None:
    """A supervisor whose area covers the village (or an admin)."""
    if user.role == Role.ADMIN.value:
        return
    if user.role != Role.SUPERVISOR.value or not user.may_read_village(listing.village_code):
        raise _hide_or_forbid(user, listing)


# ---- terms ----------------------------------------------------------------------------------------------


def _mu_of(assets: Sequence[Asset]) -> Decimal | None:
    """The assets' total area in mu, or None when one of them is not measured in mu."""
    if not assets or any(a.area_unit != AreaUnit.MU.value for a in assets):
        return None
    return sum((Decimal(a.area) for a in assets), Decimal(0))


def _term_months(years: int | None, months: int | None, current: int | None) -> int:
    if years is not None and months is not None:
        raise _refuse("term_months", "期限请只填写年数或月数之一", "give the term in years or in months, not both")
    if years is not None:
        return years * 12
    if months is not None:
        return months
    if current is not None:
        return current
    raise _refuse("term_months", "请填写期限（年或月）", "the term is required (term_years or term_months)")


async def _check_terms(session: AsyncSession, listing: Listing, district_code: str, now: datetime) -> None:
    """Refuse terms that do not hold together, naming the field to correct."""
    if listing.reserve_price_fen is not None and listing.reserve_price_fen < listing.starting_price_fen:
        raise _refuse("reserve_price", "保留价不得低于起始价", "the reserve price may not be below the starting price")
    minimum, maximum = listing.min_increment_fen, listing.max_increment_fen
    if maximum < minimum or maximum % minimum:
        raise _refuse(
            "max_increment",
            f"最高加价幅度须为最低加价幅度（{_yuan(listing.min_increment_fen)} 元）的整数倍",
            f"the maximum increment must be a whole multiple of the minimum ({_yuan(minimum)})",
        )
    if listing.deposit_fen > listing.starting_price_fen:
        raise _refuse("deposit", "竞买保证金不得高于起始价", "the deposit may not be above the starting price")
    if listing.price_basis == PriceBasis.PER_MU_YEAR.value and listing.area is None:
        raise _refuse(
            "area",
            "按亩计价须填写面积（亩）：标的资产不全以亩计量",
            "a per-mu price needs the area in mu: the assets are not all measured in mu",
        )
    shortest = int(await get_parameter(session, MIN_ANNOUNCEMENT_DAYS.key, district_code))
    if listing.announcement_days < shortest:
        raise _refuse(
            "announcement_days",
            f"公告期不得少于 {shortest} 天",
            f"the announcement period must be at least {shortest} days in this district",
        )
    if listing.registration_deadline < now + timedelta(days=listing.announcement_days):
        raise _refuse(
            "registration_deadline",
            f"报名截止时间须在公告期（{listing.announcement_days} 天）届满之后：公告期内须一直可以报名",
            f"the registration deadline must be at least the announcement period "
            f"({listing.announcement_days} days) from now: registration stays open through the announcement",
        )
    if listing.bidding_starts_at <= listing.registration_deadline:
        raise _refuse(
            "bidding_starts_at",
            "竞价开始时间须在报名截止时间之后",
            "bidding must start after the registration deadline",
        )
    if listing.bidding_ends_at <= listing.bidding_starts_at:
        raise _refuse("bidding_ends_at", "竞价结束时间须晚于开始时间", "bidding must end after it starts")


async def _assets_for(
    session: AsyncSession, listing: Listing, asset_ids: Sequence[int], exclude_listing_id: int | None
) -> list[Asset]:
    """The assets to offer: this collective's, not sold or disposed, and not held by another open listing."""
    if len(set(asset_ids)) != len(asset_ids):
        raise _refuse("asset_ids", "资产重复", "an asset is given twice")
    query = select(Asset).where(Asset.id.in_(asset_ids)).with_for_update()
    assets = {a.id: a for a in await session.scalars(query)}
    for asset_id in asset_ids:
        asset = assets.get(asset_id)
        if asset is None or asset.collective_id != listing.collective_id:
            raise _refuse(
                "asset_ids",
                f"资产 {asset_id} 不是本村集体的资产",
                f"asset {asset_id} is not an asset of this collective",
            )
        if asset.status in (AssetStatus.SOLD.value, AssetStatus.DISPOSED.value):
            raise _refuse(
                "asset_ids",
                f"资产“{asset.name}”已转让或处置，不能挂牌",
                f"asset {asset_id} is sold or disposed and cannot be listed",
            )
    holding = (
        select(Listing.number, ListingAsset.asset_id)
        .join(ListingAsset, ListingAsset.listing_id == Listing.id)
        .where(ListingAsset.asset_id.in_(asset_ids), Listing.status.in_(OPEN_STATUSES))
    )
    if exclude_listing_id is not None:
        holding = holding.where(Listing.id != exclude_listing_id)
    for number, asset_id in (await session.execute(holding)).all():
        raise Conflict(
            f"资产“{assets[asset_id].name}”已在交易项目 {number} 中",
            f"asset {asset_id} is already in listing {number}",
            field="asset_ids",
        )
    return [assets[i] for i in asset_ids]


def _apply(listing: Listing, changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        if name in ("asset_ids", "term_years", "term_months"):
            continue
        if isinstance(value, (TradeType, PriceBasis)):
            value = value.value
        setattr(listing, f"{name}_fen" if name in _MONEY_FIELDS else name, value)


async def _set_assets(
    session: AsyncSession, listing: Listing, assets: Sequence[Asset], explicit_area: bool
) -> None:
    existing = list(await session.scalars(select(ListingAsset).where(ListingAsset.listing_id == listing.id)))
    for row in existing:
        await session.delete(row)
    await session.flush()
    for asset in assets:
        session.add(ListingAsset(listing_id=listing.id, asset_id=asset.id))
    if not explicit_area:
        listing.area = _mu_of(assets)


async def _listing_assets(session: AsyncSession, listing_id: int) -> list[Asset]:
    return list(
        await session.scalars(
            select(Asset)
            .join(ListingAsset, ListingAsset.asset_id == Asset.id)
            .where(ListingAsset.listing_id == listing_id)
            .order_by(ListingAsset.id)
        )
    )


async def _next_number(session: AsyncSession, village_code: str, now: datetime) -> str:
    """"<village code>-<year>-<nnnn>": unique city-wide; the caller holds the collective's row."""
    prefix = f"{village_code}-{now.astimezone(get_settings().zone).year}-"
    last = await session.scalar(select(func.max(Listing.number)).where(Listing.number.like(prefix + "%")))
    return f"{prefix}{int(last.rsplit('-', 1)[1]) + 1 if last else 1:04d}"


async def _lock_collective(session: AsyncSession, village_code: str) -> Collective:
    """Take the village's collective row first (a no-op write), then read it."""
    table = Collective.__table__
    result = await session.execute(
        update(table).where(table.c.village_code == village_code).values(chain_length=table.c.chain_length)
    )
    collective = await session.scalar(select(Collective).where(Collective.village_code == village_code))
    if result.rowcount == 0 or collective is None:  # type: ignore[attr-defined]
        raise NotFound("集体经济组织", "collective")
    return collective


async def _district_of(session: AsyncSession, village_code: str) -> str:
    district = await session.scalar(select(Village.district_code).where(Village.code == village_code))
    if district is None:
        raise NotFound("村", "village")
    return district


# ---- writes ---------------------------------------------------------------------------------------------


async def create_listing(
    session: AsyncSession, village_code: str, data: schemas.ListingCreate, actor: User, now: datetime
) -> Listing:
    """A draft listing of the village's assets, numbered "<village>-<year>-<nnnn>"."""
    code = normalise_code(village_code, "village_code")
    collective = await _lock_collective(session, code)
    if not actor.may_write_village(code):
        raise Forbidden("只有本村村委会可以创建交易项目", "only the village's committee may create a listing")
    changes = data.model_dump()
    listing = Listing(
        collective_id=collective.id,
        village_code=code,
        number=await _next_number(session, code, now),
        status=S.DRAFT.value,
        term_months=_term_months(data.term_years, data.term_months, None),
    )
    _apply(listing, changes)
    assets = await _assets_for(session, listing, data.asset_ids, None)
    if listing.area is None:
        listing.area = _mu_of(assets)
    await _check_terms(session, listing, await _district_of(session, code), now)
    session.add(listing)
    await session.flush()
    await _set_assets(session, listing, assets, explicit_area=True)
    session.add(ListingEvent(listing_id=listing.id, to_status=S.DRAFT.value, actor_id=actor.id, at=now))
    await session.flush()
    return listing


def _require_status(listing: Listing, *allowed: S, field: str = "status") -> None:
    if listing.status not in {s.value for s in allowed}:
        current = S(listing.status)
        names = "、".join(STATUS_NAMES_ZH[s] for s in allowed)
        raise DomainError(
            f"交易项目当前为“{STATUS_NAMES_ZH[current]}”，此操作只适用于“{names}”状态",
            f"the listing is {current.value}; this applies only to {', '.join(s.value for s in allowed)}",
            field=field,
            status_code=409,
            code="invalid_status",
        )


async def update_listing(
    session: AsyncSession, listing_id: int, data: schemas.ListingUpdate, actor: User, now: datetime
) -> Listing:
    """Change a draft's terms; the whole set is checked again."""
    listing = await lock_listing(session, listing_id)
    require_committee(actor, listing)
    _require_status(listing, S.DRAFT)
    changes = data.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None and name not in {"description", "reserve_price", "qualification_conditions", "area"}:
            raise _refuse(name, f"字段 {name} 不能为空", f"{name} cannot be null")
    district = await _district_of(session, listing.village_code)
    with session.no_autoflush:  # the changed row must not reach the database before the checks pass
        if "term_years" in changes or "term_months" in changes:
            listing.term_months = _term_months(changes.get("term_years"), changes.get("term_months"), None)
        _apply(listing, changes)
        assets = None
        if "asset_ids" in changes:
            assets = await _assets_for(session, listing, changes["asset_ids"], listing.id)
        elif "area" in changes and changes["area"] is None:
            listing.area = _mu_of(await _listing_assets(session, listing.id))
        if assets is not None and changes.get("area") is None:
            listing.area = _mu_of(assets)
        await _check_terms(session, listing, district, now)
    if assets is not None:
        await _set_assets(session, listing, assets, explicit_area=True)
    await session.flush()
    return listing


async def submit_listing(
    session: AsyncSession, listing_id: int, data: schemas.ResolutionIn, actor: User, now: datetime
) -> Listing:
    """Submit a draft with the villagers' resolution; at least two thirds of those present must vote for."""
    listing = await lock_listing(session, listing_id)
    require_committee(actor, listing)
    _require_status(listing, S.DRAFT)
    if data.meeting_date > now.astimezone(get_settings().zone).date():
        raise _refuse("meeting_date", "会议日期不能晚于今天", "the meeting date cannot be in the future")
    if data.votes_for + data.votes_against > data.members_present:
        raise _refuse(
            "votes_against", "赞成票与反对票之和不能超过到会人数", "votes for and against exceed the members present"
        )
    if data.votes_for * 3 < data.members_present * 2:
        raise _refuse(
            "votes_for",
            f"赞成票须达到到会人数的三分之二：{data.members_present} 人到会，至少需 "
            f"{math.ceil(data.members_present * 2 / 3)} 票赞成",
            f"at least two thirds of the {data.members_present} members present must vote for "
            f"({math.ceil(data.members_present * 2 / 3)})",
        )
    await _check_terms(session, listing, await _district_of(session, listing.village_code), now)
    listing.resolution_meeting_date = data.meeting_date
    listing.resolution_present = data.members_present
    listing.resolution_votes_for = data.votes_for
    listing.resolution_votes_against = data.votes_against
    listing.resolution_note = data.note
    listing.status_reason = None
    transition(session, listing, S.SUBMITTED, actor, data.note, now)
    await session.flush()
    return listing


async def approve_listing(session: AsyncSession, listing_id: int, actor: User, now: datetime) -> Listing:
    listing = await lock_listing(session, listing_id)
    require_supervisor(actor, listing)
    transition(session, listing, S.APPROVED, actor, None, now)
    await session.flush()
    return listing


async def send_back_listing(
    session: AsyncSession, listing_id: int, reason: str, actor: User, now: datetime
) -> Listing:
    """Back to draft with the township's reason, for the committee to correct and submit again."""
    listing = await lock_listing(session, listing_id)
    require_supervisor(actor, listing)
    transition(session, listing, S.DRAFT, actor, reason, now)
    listing.status_reason = reason
    await session.flush()
    return listing


async def announce_listing(session: AsyncSession, listing_id: int, actor: User, now: datetime) -> Listing:
    """Publish an approved listing: registration opens now and stays open through the announcement period."""
    listing = await lock_listing(session, listing_id)
    require_supervisor(actor, listing)
    transition(session, listing, S.ANNOUNCED, actor, None, now)
    if now + timedelta(days=listing.announcement_days) > listing.registration_deadline:
        raise _refuse(
            "registration_deadline",
            f"报名截止时间早于公告期（{listing.announcement_days} 天）届满，请退回村委会更新交易时间",
            f"the registration deadline falls inside the announcement period "
            f"({listing.announcement_days} days from now): send the listing back for its dates to be updated",
        )
    assets = await _listing_assets(session, listing.id)
    service = AssetService(session)
    for asset in assets:
        if asset.status != AssetStatus.IDLE.value:
            raise _refuse(
                "asset_ids",
                f"资产“{asset.name}”当前不是闲置状态，不能挂牌",
                f"asset {asset.id} is {asset.status}, not idle, and cannot be listed",
            )
        await service.change_status(asset, AssetStatus.LISTED, f"挂牌交易 {listing.number}", actor)
    listing.announced_at = now
    listing.current_end_at = listing.bidding_ends_at
    await session.flush()
    return listing


async def suspend_listing(
    session: AsyncSession, listing_id: int, reason: str, actor: User, now: datetime
) -> Listing:
    listing = await lock_listing(session, listing_id)
    require_supervisor(actor, listing)
    transition(session, listing, S.SUSPENDED, actor, reason, now)
    listing.status_reason = reason
    await session.flush()
    return listing


async def resume_listing(
    session: AsyncSession, listing_id: int, data: schemas.ResumeIn, actor: User, now: datetime
) -> Listing:
    """Back to announced; when the bidding window has run out meanwhile, a new one must be given."""
    listing = await lock_listing(session, listing_id)
    require_supervisor(actor, listing)
    transition(session, listing, S.ANNOUNCED, actor, data.note, now)
    if (data.bidding_starts_at is None) != (data.bidding_ends_at is None):
        raise _refuse("bidding_ends_at", "请同时填写新的竞价开始和结束时间", "give both ends of the new bidding window")
    if data.bidding_starts_at is not None and data.bidding_ends_at is not None:
        if data.bidding_starts_at <= max(now, listing.registration_deadline):
            raise _refuse(
                "bidding_starts_at",
                "新的竞价开始时间须晚于现在和报名截止时间",
                "the new bidding start must be after now and after the registration deadline",
            )
        if data.bidding_ends_at <= data.bidding_starts_at:
            raise _refuse("bidding_ends_at", "竞价结束时间须晚于开始时间", "bidding must end after it starts")
        listing.bidding_starts_at = data.bidding_starts_at
        listing.bidding_ends_at = data.bidding_ends_at
        listing.current_end_at = data.bidding_ends_at
    elif (listing.current_end_at or listing.bidding_ends_at) <= now:
        raise _refuse(
            "bidding_ends_at",
            "原竞价时间已过，恢复时须给出新的竞价时间",
            "the bidding window has passed: give a new one to resume",
        )
    listing.status_reason = None
    await session.flush()
    return listing


async def terminate_listing(
    session: AsyncSession, listing_id: int, reason: str, actor: User, now: datetime
) -> Listing:
    """End a listing for good (supervisor before close; the committee only its own draft): its assets go back
    to idle and every deposit held is refunded."""
    from sanzi.auction.services.registrations import refund_deposit

    listing = await lock_listing(session, listing_id)
    if listing.status == S.DRAFT.value and actor.may_write_village(listing.village_code):
        pass
    else:
        require_supervisor(actor, listing)
    transition(session, listing, S.TERMINATED, actor, reason, now)
    listing.status_reason = reason
    if listing.announced_at is not None:
        service = AssetService(session)
        for asset in await _listing_assets(session, listing.id):
            if asset.status == AssetStatus.LISTED.value:
                await service.change_status(asset, AssetStatus.IDLE, f"交易项目 {listing.number} 终止", actor)
    held = await session.scalars(
        select(Registration).where(
            Registration.listing_id == listing.id, Registration.deposit_state == DepositState.HELD.value
        )
    )
    for registration in list(held):
        await refund_deposit(session, registration, actor, now)
    await session.flush()
    return listing


async def relist_listing(
    session: AsyncSession, listing_id: int, data: schemas.RelistIn, actor: User, now: datetime
) -> Listing:
    """A new draft from a failed listing: terms copied, new dates, and a starting price (and reserve) at most
    ``auction.relist_max_cut`` below the last one."""
    old = await lock_listing(session, listing_id)
    collective = await _lock_collective(session, old.village_code)
    require_committee(actor, old)
    _require_status(old, S.FAILED)
    district = await _district_of(session, old.village_code)
    cut = Decimal(str(await get_parameter(session, RELIST_MAX_CUT.key, district)))
    floor = math.ceil(Decimal(old.starting_price_fen) * (1 - cut))
    if data.starting_price < floor:
        raise _refuse(
            "starting_price",
            f"重新挂牌的起始价不得低于上次起始价的 {1 - cut:.0%}，即不低于 {_yuan(floor)} 元",
            f"the new starting price may fall at most {cut:.0%} below the last one: at least {_yuan(floor)}",
        )
    if data.reserve_price is not None and old.reserve_price_fen is not None:
        reserve_floor = math.ceil(Decimal(old.reserve_price_fen) * (1 - cut))
        if data.reserve_price < reserve_floor:
            raise _refuse(
                "reserve_price",
                f"重新挂牌的保留价不得低于 {_yuan(reserve_floor)} 元",
                f"the new reserve may fall at most {cut:.0%} below the last one: "
                f"at least {_yuan(reserve_floor)}",
            )
    listing = Listing(
        collective_id=collective.id,
        village_code=old.village_code,
        number=await _next_number(session, old.village_code, now),
        status=S.DRAFT.value,
        relisted_from_id=old.id,
    )
    for name in _TERM_FIELDS:
        setattr(listing, name, getattr(old, name))
    _apply(listing, data.model_dump(exclude_none=True))
    old_assets = await _listing_assets(session, old.id)
    assets = await _assets_for(session, listing, [a.id for a in old_assets], None)
    await _check_terms(session, listing, district, now)
    session.add(listing)
    await session.flush()
    await _set_assets(session, listing, assets, explicit_area=True)
    session.add(
        ListingEvent(
            listing_id=listing.id,
            from_status=None,
            to_status=S.DRAFT.value,
            actor_id=actor.id,
            at=now,
            note=f"由 {old.number} 重新挂牌",
        )
    )
    await session.flush()
    return listing


# ---- reads ----------------------------------------------------------------------------------------------


async def get_listing(session: AsyncSession, listing_id: int, user: User | None) -> Listing:
    """The listing if the caller may see it: the public once it is announced, its officials always."""
    listing = await session.get(Listing, listing_id) if 0 < listing_id < 2**63 else None  # a BIGINT id
    if listing is None or not (is_published(listing) or is_official_of(user, listing.village_code)):
        raise NotFound("交易项目", "listing")
    return listing


def _assets_of(match: Any) -> Any:
    """The assets of the listings ``match`` picks, with their listing's id."""
    return (
        select(ListingAsset.listing_id, Asset)
        .join(Asset, Asset.id == ListingAsset.asset_id)
        .where(match)
        .order_by(ListingAsset.id)
    )


def _village_names(match: Any) -> Any:
    """The names of a village, its township and district (not a Village, which would also load those and its
    collective)."""
    return (
        select(
            Village.code,
            Village.name.label("village_name"),
            Township.name.label("township_name"),
            District.name.label("district_name"),
        )
        .join(Township, Township.code == Village.township_code)
        .join(District, District.code == Township.district_code)
        .where(match)
    )


# built once with bound parameters: building a statement and its cache key on every call cost about as
# much CPU as running it. One listing (its own page) by equality: an IN list is rendered into the SQL again
# on every execution, an equality keeps the statement in SQLAlchemy's compiled cache.
_ONE_LISTING_ASSETS = _assets_of(ListingAsset.listing_id == bindparam("id"))
_LISTINGS_ASSETS = _assets_of(ListingAsset.listing_id.in_(bindparam("ids", expanding=True)))
_ONE_VILLAGE_NAMES = _village_names(Village.code == bindparam("code"))
_VILLAGES_NAMES = _village_names(Village.code.in_(bindparam("codes", expanding=True)))
_EVENTS = (
    select(
        ListingEvent.at,
        ListingEvent.from_status,
        ListingEvent.to_status,
        ListingEvent.note,
        User.display_name,
    )
    .outerjoin(User, User.id == ListingEvent.actor_id)
    .where(ListingEvent.listing_id == bindparam("id"))
    .order_by(ListingEvent.at, ListingEvent.id)
)


async def listings_out(
    session: AsyncSession, listings: Sequence[Listing], user: User | None
) -> list[schemas.Listing | schemas.ListingDetail]:
    """Listings as this caller may see them: the officials' view (with the reserve) for their villages."""
    if not listings:
        return []
    ids = [listing.id for listing in listings]
    assets: dict[int, list[schemas.ListingAsset]] = {i: [] for i in ids}
    if len(ids) == 1:
        rows = await session.execute(_ONE_LISTING_ASSETS, {"id": ids[0]})
    else:
        rows = await session.execute(_LISTINGS_ASSETS, {"ids": ids})
    for listing_id, asset in rows:
        assets[listing_id].append(schemas.ListingAsset.model_validate(asset))
    codes = sorted({listing.village_code for listing in listings})
    if len(codes) == 1:
        names = await session.execute(_ONE_VILLAGE_NAMES, {"code": codes[0]})
    else:
        names = await session.execute(_VILLAGES_NAMES, {"codes": codes})
    villages = {row.code: row for row in names}
    out: list[schemas.Listing | schemas.ListingDetail] = []
    for listing in listings:
        village = villages[listing.village_code]
        values: dict[str, Any] = {
            name: getattr(listing, name)
            for name in schemas.ListingDetail.model_fields
            if hasattr(listing, name)
        }
        for name in _MONEY_FIELDS | {"current_price", "final_price"}:
            values[name] = getattr(listing, f"{name}_fen")
        values.update(
            village_name=village.village_name,
            township_name=village.township_name,
            district_name=village.district_name,
            status_name=STATUS_NAMES_ZH[S(listing.status)],
            assets=assets[listing.id],
        )
        model = schemas.ListingDetail if is_official_of(user, listing.village_code) else schemas.Listing
        out.append(model.model_validate({k: v for k, v in values.items() if k in model.model_fields}))
    return out


async def listing_out(session: AsyncSession, listing: Listing, user: User | None) -> Any:
    await session.refresh(listing)
    return (await listings_out(session, [listing], user))[0]


def like_pattern(q: str) -> str:
    """The LIKE pattern of "contains ``q``" (its wildcards escaped), for :func:`listing_text_match`."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def listing_text_match(pattern: Any) -> Any:
    """A listing whose title, number, village name or one of whose assets' names matches ``pattern`` (from
    :func:`like_pattern`, or a bound parameter taking one)."""
    village = aliased(Village)  # its own name, so that a query already joining Village still correlates
    return (
        Listing.title.ilike(pattern, escape="\\")
        | Listing.number.ilike(pattern, escape="\\")
        | exists().where(village.code == Listing.village_code, village.name.like(pattern, escape="\\"))
        | exists().where(
            ListingAsset.listing_id == Listing.id,
            ListingAsset.asset_id == Asset.id,
            Asset.name.ilike(pattern, escape="\\"),
        )
    )


async def search_listings(
    session: AsyncSession,
    user: User | None,
    *,
    district: str | None = None,
    township: str | None = None,
    village: str | None = None,
    status: S | None = None,
    trade_type: TradeType | None = None,
    asset_kind: AssetKind | None = None,
    q: str | None = None,
    published_only: bool = True,
    page: int = 1,
    page_size: int = 20,
) -> Page[Any]:
    conditions: list[Any] = []
    if published_only:
        conditions.append(Listing.announced_at.is_not(None))
    if district:
        conditions.append(Listing.village_code.like(normalise_code(district, "district")[:6] + "%"))
    if township:
        conditions.append(Listing.village_code.like(normalise_code(township, "township")[:9] + "%"))
    if village:
        conditions.append(Listing.village_code == normalise_code(village, "village"))
    if status:
        conditions.append(Listing.status == status.value)
    if trade_type:
        conditions.append(Listing.trade_type == trade_type.value)
    if asset_kind:
        conditions.append(
            exists()
            .where(ListingAsset.listing_id == Listing.id, ListingAsset.asset_id == Asset.id)
            .where(Asset.kind == asset_kind.value)
        )
    if q:
        conditions.append(listing_text_match(like_pattern(q)))
    total = await session.scalar(select(func.count()).select_from(Listing).where(*conditions)) or 0
    order = (Listing.announced_at.desc(), Listing.id.desc()) if published_only else (Listing.id.desc(),)
    rows = await session.scalars(
        select(Listing).where(*conditions).order_by(*order).offset((page - 1) * page_size).limit(page_size)
    )
    items = await listings_out(session, list(rows), user)
    return Page(items=items, total=total, page=page, page_size=page_size)


async def village_listings(
    session: AsyncSession,
    village_code: str,
    user: User,
    status: S | None,
    page: int,
    page_size: int,
) -> Page[Any]:
    """All listings of one village, drafts included, for its officials."""
    return await search_listings(
        session,
        user,
        village=village_code,
        status=status,
        published_only=False,
        page=page,
        page_size=page_size,
    )


async def listing_events(
    session: AsyncSession, listing_id: int, user: User | None
) -> list[schemas.ListingEvent]:
    """The lifecycle history; actor names and internal notes only for the listing's officials."""
    listing = await get_listing(session, listing_id, user)
    official = is_official_of(user, listing.village_code)
    rows = await session.execute(_EVENTS, {"id": listing.id})
    return [
        schemas.ListingEvent(
            at=event.at,
            from_status=event.from_status,
            to_status=event.to_status,
            step=STATUS_NAMES_ZH[S(event.to_status)],
            note=event.note if official or event.to_status in PUBLIC_NOTES else None,
            actor=event.display_name if official else None,
        )
        for event in rows
    ]

