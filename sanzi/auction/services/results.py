"""Closing a listing, its result, and the books of the result: deposits refunded, applied or forfeited, and the
contract created from the result.

Close takes the same lock as bidding, so a bid at the deadline is either in (placed before the end) or refused.
Winner: the leader (the highest bid), if there is no reserve or the highest bid meets it; otherwise failed (流拍).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Integer, bindparam, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.lifecycle import lock_listing, transition
from sanzi.auction.models import (
    Bid,
    DepositState,
    Listing,
    ListingAsset,
    ListingStatus,
    Registration,
    RegistrationStatus,
)
from sanzi.auction.schemas import bidding as schemas
from sanzi.auction.services.bidding import (
    FINISHED_STATUSES,
    Publish,
    _refuse,
    bids_after,
    end_of,
    publish_safely,
    release,
)
from sanzi.ledger.models import Asset, AssetStatus, ContractReceipt, PriceBasis, TradeType
from sanzi.ledger.schemas.books import EntryCreate, LineIn
from sanzi.ledger.schemas.contracts import ContractCreate
from sanzi.ledger.services.assets import AssetService
from sanzi.ledger.services.books import BooksService
from sanzi.ledger.services.contracts import ContractService
from sanzi.platform import events
from sanzi.platform.access import check_village
from sanzi.platform.models import Bidder, Collective, User, Village
from sanzi.platform.money import fen_to_yuan
from sanzi.platform.parameters import Parameter, get_parameter, register
from sanzi.platform.problems import DomainError, NotFound
from sanzi.platform.schemas import Page
from sanzi.platform.settings import get_settings

register(Parameter("auction.publicity_days", 5, int, 1, 60, "成交结果公示天数 / days a result is publicised"))
register(Parameter("auction.sign_days", 10, int, 1, 90, "成交后签约期限（天） / days the winner has to sign"))

DEPOSITS_HELD = "21101"
BANK = "102"
CONTRACT_INCOME = "50101"
OTHER_INCOME = "522"


def local_date(moment: datetime) -> date:
    return moment.astimezone(get_settings().zone).date()


# ---- deposits in the books -------------------------------------------------------------------------------


async def _settle_deposit(
    session: AsyncSession,
    listing: Listing,
    registration: Registration,
    credit_account: str,
    state: DepositState,
    memo: str,
    actor: User | None,
    now: datetime,
    debit_account: str = DEPOSITS_HELD,
) -> int:
    """Move a held deposit out of 21101 (to the bank on refund, to income when applied or forfeited)."""
    collective = await session.get_one(Collective, listing.collective_id)
    amount = fen_to_yuan(listing.deposit_fen)
    entry, _ = await BooksService(session).post_entry(
        collective,
        EntryCreate(
            entry_date=local_date(now),
            memo=memo,
            counterparty=registration.deposit_payer_name,
            client_key=f"deposit-{state.value}-{registration.id}",
            lines=[
                LineIn(account_code=debit_account, debit=amount, memo=f"竞买号 {registration.bidder_number or '-'}"),
                LineIn(account_code=credit_account, credit=amount, memo=f"项目 {listing.number}"),
            ],
        ),
        actor,
        source="auction_deposit",
    )
    registration.deposit_state = state.value
    registration.deposit_settlement_entry_id = entry.id
    return entry.id


async def refund_deposit_locally(
    session: AsyncSession, registration: Registration, actor: User | None, now: datetime
) -> None:
    """Refund a held deposit: Dr 21101 / Cr 102 (used until the registrations service offers its own)."""
    if registration.deposit_state != DepositState.HELD.value:
        return
    listing = await session.get_one(Listing, registration.listing_id)
    if listing.deposit_fen == 0:
        registration.deposit_state = DepositState.REFUNDED.value
        return
    await _settle_deposit(
        session, listing, registration, BANK, DepositState.REFUNDED, f"退还竞买保证金：{listing.number}", actor, now
    )


async def _refund(session: AsyncSession, registration: Registration, actor: User | None, now: datetime) -> None:
    try:  # the registrations helper's refund, once it exists
        from sanzi.auction.services.registrations import refund_deposit  # type: ignore[attr-defined]
    except ImportError:
        refund_deposit = refund_deposit_locally
    await refund_deposit(session, registration, actor, now)


# ---- closing ---------------------------------------------------------------------------------------------


async def _release_assets(session: AsyncSession, listing: Listing, reason: str, actor: User | None, now: datetime) -> None:
    """Assets offered in a listing that will not lead to a contract go back from listed to idle."""
    assets = await session.scalars(
        select(Asset)
        .join(ListingAsset, ListingAsset.asset_id == Asset.id)
        .where(ListingAsset.listing_id == listing.id)
        .with_for_update()
    )
    service = AssetService(session)
    for asset in assets:
        if asset.status == AssetStatus.LISTED.value:
            await service.change_status(asset, AssetStatus.IDLE, reason, actor, now)


async def close_listing(
    session: AsyncSession, listing_id: int, now: datetime, publish: Publish | None = None
) -> Listing:
    """Close a listing whose (extended) end has come: sold to the leader if the reserve is met, else failed.

    Records the result, refunds every other held deposit (all of them when failed), frees the assets of a
    failed listing, commits, then publishes ``closed``. Refuses (changing nothing) if it is not yet due or not
    bidding; an announced listing whose window passed without a bid closes as failed.
    """
    try:
        async with session.begin_nested():
            listing = await _close_locked(session, listing_id, now)
    except DomainError:
        await release(session)
        raise
    await session.commit()
    result = await result_of(session, listing)
    await session.commit()  # end the read (on SQLite every transaction holds the write lock)
    await publish_safely(publish, listing.id, {"type": "closed", "result": result.model_dump(mode="json")})
    return listing


async def _close_locked(session: AsyncSession, listing_id: int, now: datetime) -> Listing:
    listing = await lock_listing(session, listing_id)
    end = end_of(listing)
    if listing.status not in (ListingStatus.BIDDING.value, ListingStatus.ANNOUNCED.value):
        raise _refuse(
            "该交易项目不在竞价中，不能结束", "the listing is not open for bidding", status=409, code="not_bidding"
        )
    if now < end:
        raise _refuse(
            "竞价尚未结束", "bidding has not reached its end", status=409, code="not_due", current_end_at=end.isoformat()
        )
    if listing.status == ListingStatus.ANNOUNCED.value:
        transition(session, listing, ListingStatus.BIDDING, None, "竞价期届满（无人出价）", end)
        listing.current_end_at = end
    transition(session, listing, ListingStatus.CLOSED, None, "竞价结束", now)
    price = listing.current_price_fen
    sold = bool(listing.bid_count) and price is not None and (
        listing.reserve_price_fen is None or price >= listing.reserve_price_fen
    )
    district = listing.village_code[:6] + "000000"
    publicity_days = await get_parameter(session, "auction.publicity_days", district)
    listing.closed_at = now
    listing.publicity_ends_at = now + timedelta(days=publicity_days)
    if sold:
        listing.final_price_fen = price
        listing.winner_registration_id = listing.leading_registration_id
        sign_days = await get_parameter(session, "auction.sign_days", district)
        listing.sign_deadline = local_date(now) + timedelta(days=sign_days)
        note = f"成交，成交价 {fen_to_yuan(price or 0)} 元"
    else:
        note = "流拍：无人出价" if not listing.bid_count else "流拍：最高出价未达保留价"
    transition(session, listing, ListingStatus.SOLD if sold else ListingStatus.FAILED, None, note, now)
    held = await session.scalars(
        select(Registration)
        .where(
            Registration.listing_id == listing.id,
            Registration.deposit_state == DepositState.HELD.value,
        )
        .order_by(Registration.id)
    )
    for registration in list(held):
        if sold and registration.id == listing.winner_registration_id:
            continue
        await _refund(session, registration, None, now)
    if not sold:
        await _release_assets(session, listing, f"交易项目 {listing.number} 流拍", None, now)
    await session.flush()
    events.record(session, "listing_closed", listing.village_code, listing_id=listing.id)
    return listing


# ---- results ---------------------------------------------------------------------------------------------


def premium_percent(starting_fen: int, final_fen: int | None) -> str | None:
    if final_fen is None:
        return None
    percent = Decimal(final_fen - starting_fen) * 100 / Decimal(starting_fen)
    return format(percent.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), "f")


async def finished_listing(session: AsyncSession, listing_id: int) -> Listing:
    listing = await session.get(Listing, listing_id, populate_existing=True)
    if listing is None or listing.status not in FINISHED_STATUSES or listing.closed_at is None:
        raise NotFound("交易结果", "result")
    return listing


def _result_figures(with_winner: bool) -> Any:
    """The counts of a result and its winner in one statement (scalar subqueries): one round trip instead of
    three."""
    figures: list[Any] = [
        select(func.count())
        .select_from(Registration)
        .where(
            Registration.listing_id == bindparam("id"),
            Registration.status == RegistrationStatus.QUALIFIED.value,
        )
        .scalar_subquery(),
        select(func.count(func.distinct(Bid.registration_id)))
        .where(Bid.listing_id == bindparam("id"))
        .scalar_subquery(),
    ]
    if with_winner:
        winner = Registration.id == bindparam("winner")
        figures += [
            select(Registration.bidder_number).where(winner).scalar_subquery(),
            select(Bidder.name)
            .join(Registration, Registration.bidder_id == Bidder.id)
            .where(winner)
            .scalar_subquery(),
        ]
    return select(*figures)


# built once: building the statement and its cache key on every call cost about as much CPU as running it
_FIGURES = _result_figures(with_winner=False)
_FIGURES_WITH_WINNER = _result_figures(with_winner=True)


async def result_of(session: AsyncSession, listing: Listing) -> schemas.Result:
    if listing.winner_registration_id is None:
        row = (await session.execute(_FIGURES, {"id": listing.id})).one()
    else:
        winner = {"id": listing.id, "winner": listing.winner_registration_id}
        row = (await session.execute(_FIGURES_WITH_WINNER, winner)).one()
    qualified, bidders_who_bid = row[0], row[1]
    winner_number, winner_name = (row[2], row[3]) if len(row) > 2 else (None, None)
    sold = listing.status == ListingStatus.SOLD.value
    assert listing.closed_at is not None
    return schemas.Result(
        listing_id=listing.id,
        number=listing.number,
        title=listing.title,
        village_code=listing.village_code,
        outcome="sold" if sold else "failed",
        starting_price=listing.starting_price_fen,
        final_price=listing.final_price_fen,
        premium_percent=premium_percent(listing.starting_price_fen, listing.final_price_fen),
        highest_bid=listing.current_price_fen,
        reserve_met=None if listing.reserve_price_fen is None else sold,
        qualified_bidders=qualified or 0,
        bidders_who_bid=bidders_who_bid or 0,
        bid_count=listing.bid_count,
        extensions_used=listing.extensions_used,
        closed_at=listing.closed_at,
        publicity_ends_at=listing.publicity_ends_at,
        sign_deadline=listing.sign_deadline,
        winner_number=winner_number,
        winner_name=winner_name,
        contract_id=listing.contract_id,
        bids=await bids_after(session, listing.id),
    )


async def result(session: AsyncSession, listing_id: int) -> schemas.Result:
    return await result_of(session, await finished_listing(session, listing_id))


async def list_results(
    session: AsyncSession,
    district: str | None,
    township: str | None,
    village: str | None,
    page: int,
    page_size: int,
) -> Page[schemas.ResultSummary]:
    """Closed listings, newest first, optionally within a district, township or village (by code)."""
    # the statuses, offset and limit written into the SQL when it runs, as the results page does: as parameters,
    # PostgreSQL planned the prepared statement again on every request
    conditions: list[Any] = [
        or_(*(Listing.status == literal(status, literal_execute=True) for status in sorted(FINISHED_STATUSES))),
        Listing.closed_at.is_not(None),
    ]
    if district:
        conditions.append(Listing.village_code.startswith(district[:6]))
    if township:
        conditions.append(Listing.village_code.startswith(township[:9]))
    if village:
        conditions.append(Listing.village_code == village)
    total = await session.scalar(select(func.count()).select_from(Listing).where(*conditions)) or 0
    winner = select(Bidder.name).join(Registration, Registration.bidder_id == Bidder.id).where(
        Registration.id == Listing.winner_registration_id
    ).scalar_subquery()
    rows = await session.execute(
        select(Listing, Village.name, winner)
        .join(Village, Village.code == Listing.village_code)
        .where(*conditions)
        .order_by(Listing.closed_at.desc(), Listing.id.desc())
        .offset(bindparam("offset", (page - 1) * page_size, type_=Integer(), literal_execute=True))
        .limit(bindparam("limit", page_size, type_=Integer(), literal_execute=True))
    )
    items = [
        schemas.ResultSummary(
            listing_id=listing.id,
            number=listing.number,
            title=listing.title,
            village_code=listing.village_code,
            village_name=village_name,
            outcome="sold" if listing.status == ListingStatus.SOLD.value else "failed",
            starting_price=listing.starting_price_fen,
            final_price=listing.final_price_fen,
            bid_count=listing.bid_count,
            closed_at=listing.closed_at,
            publicity_ends_at=listing.publicity_ends_at,
            winner_name=winner_name,
        )
        for listing, village_name, winner_name in rows
    ]
    return Page(items=items, total=total, page=page, page_size=page_size)


async def bidder_identities(session: AsyncSession, listing_id: int, user: User) -> list[schemas.BidderIdentity]:
    """Bidder numbers with identities and contact traits: for the area's officials, only after the close."""
    listing = await session.get(Listing, listing_id)
    if listing is None:
        raise NotFound("交易项目", "listing")
    check_village(user, listing.village_code)
    if listing.status not in FINISHED_STATUSES:
        raise _refuse(
            "竞价结束前不公开竞买人身份", "bidder identities are revealed only after the close", status=409,
            code="not_closed",
        )
    stats = (
        select(
            Bid.registration_id,
            func.count().label("bids"),
            func.max(Bid.amount_fen).label("highest"),
        )
        .where(Bid.listing_id == listing.id)
        .group_by(Bid.registration_id)
        .subquery()
    )
    rows = await session.execute(
        select(Registration, Bidder, stats.c.bids, stats.c.highest)
        .join(Bidder, Bidder.id == Registration.bidder_id)
        .outerjoin(stats, stats.c.registration_id == Registration.id)
        .where(Registration.listing_id == listing.id)
        .order_by(Registration.bidder_number, Registration.id)
    )
    traces: dict[int, tuple[set[str], set[str]]] = {}
    for registration_id, ip, device in await session.execute(
        select(Bid.registration_id, Bid.ip_address, Bid.device_fingerprint).where(Bid.listing_id == listing.id)
    ):
        ips, devices = traces.setdefault(registration_id, (set(), set()))
        if ip:
            ips.add(ip)
        if device:
            devices.add(device)
    out = []
    for registration, bidder, bid_count, highest in rows:
        ips, devices = traces.get(registration.id, (set(), set()))
        out.append(
            schemas.BidderIdentity(
                bidder_number=registration.bidder_number,
                registration_id=registration.id,
                registration_status=registration.status,
                bidder_id=bidder.id,
                kind=bidder.kind,
                name=bidder.name,
                id_number=bidder.id_number,
                legal_representative=bidder.legal_representative,
                phone=bidder.phone,
                contact_phone=registration.contact_phone,
                contact_address=registration.contact_address,
                deposit_state=registration.deposit_state,
                deposit_payer_name=registration.deposit_payer_name,
                deposit_payer_account=registration.deposit_payer_account,
                applied_ip=registration.applied_ip,
                applied_device=registration.applied_device,
                bid_count=bid_count or 0,
                highest_bid=highest,
                bid_ips=sorted(ips),
                bid_devices=sorted(devices),
                is_winner=registration.id == listing.winner_registration_id,
            )
        )
    return out


# ---- after a sale: the contract, or the forfeit ----------------------------------------------------------


async def _sold_listing_for(session: AsyncSession, listing_id: int, user: User, *, write: bool) -> Listing:
    listing = await lock_listing(session, listing_id)
    check_village(user, listing.village_code, write=write)
    if listing.status != ListingStatus.SOLD.value or listing.winner_registration_id is None:
        raise _refuse("该交易项目未成交", "the listing was not sold", status=409, code="not_sold")
    if listing.contract_id is not None:
        raise _refuse("该成交结果已签订合同", "a contract was already made from this result", status=409,
                      code="contract_exists")
    return listing


def _contract_terms(
    listing: Listing, data: schemas.ContractFromResult, asset_id: int, bidder: Bidder
) -> ContractCreate:
    assert listing.final_price_fen is not None
    return ContractCreate(
        number=data.number,
        asset_id=asset_id,
        trade_type=TradeType(listing.trade_type),
        counterparty_name=bidder.name,
        counterparty_id_number=bidder.id_number,
        start_date=data.start_date,
        term_months=listing.term_months,
        price_basis=PriceBasis(listing.price_basis),
        unit_price=fen_to_yuan(listing.final_price_fen),
        area=format(listing.area, "f") if listing.area is not None else None,
        payment_frequency=data.payment_frequency,
        signed_on=data.signed_on,
    )


async def contract_from_result(
    session: AsyncSession, listing_id: int, data: schemas.ContractFromResult, actor: User, now: datetime
) -> tuple[Listing, int]:
    """Create the contract from a sold listing's result (before its sign deadline) and apply the winner's
    deposit to the first payment (Dr 21101 / Cr 50101, a receipt of the contract). Returns (listing, contract id)."""
    listing = await _sold_listing_for(session, listing_id, actor, write=True)
    today = local_date(now)
    if listing.sign_deadline is not None and today > listing.sign_deadline:
        raise _refuse(
            f"已超过签约期限（{listing.sign_deadline.isoformat()}），保证金应予没收",
            f"the sign deadline {listing.sign_deadline.isoformat()} has passed",
            status=409,
            code="sign_deadline_passed",
        )
    if listing.publicity_ends_at is not None and now < listing.publicity_ends_at:
        # the result is publicised first, so that objections can be raised before anything is signed
        raise _refuse(
            f"成交结果公示期至 {listing.publicity_ends_at.astimezone(get_settings().zone):%Y-%m-%d %H:%M} 结束，公示期满后方可签约",
            f"the result is under publicity until {listing.publicity_ends_at.isoformat()}; sign after it ends",
            status=409,
            code="publicity_not_over",
        )
    if data.signed_on > today or data.signed_on < local_date(listing.publicity_ends_at or now):
        raise _refuse(
            "签订日期须在公示期满之后、且不晚于今天",
            "signed_on must be after the publicity period and not in the future",
            field="signed_on",
            code="invalid",
        )
    winner = await session.get_one(Registration, listing.winner_registration_id)
    bidder = await session.get_one(Bidder, winner.bidder_id)
    asset_id = await session.scalar(
        select(ListingAsset.asset_id).where(ListingAsset.listing_id == listing.id).order_by(ListingAsset.id)
    )
    if asset_id is None:
        raise _refuse("该交易项目没有关联资产", "the listing has no asset", status=409, code="no_asset")
    collective = await session.get_one(Collective, listing.collective_id)
    try:
        terms = _contract_terms(listing, data, asset_id, bidder)
    except ValidationError as invalid:
        error = invalid.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "body"
        raise _refuse(
            f"成交结果无法生成合同：{field} 无效（{error['msg']}）",
            f"the result cannot make a contract: {field} is invalid ({error['msg']})",
            field=field,
            code="invalid_contract_terms",
        ) from None
    contract = await ContractService(session).create(collective, terms, actor, listing_id=listing.id)
    contract.counterparty_bidder_id = bidder.id
    listing.contract_id = contract.id
    if winner.deposit_state == DepositState.HELD.value and listing.deposit_fen > 0:
        applied = min(listing.deposit_fen, contract.total_value_fen)
        entry, _ = await BooksService(session).post_entry(
            collective,
            EntryCreate(
                entry_date=today,
                memo=f"竞买保证金转作合同 {contract.number} 首期价款",
                counterparty=bidder.name,
                client_key=f"deposit-applied-{winner.id}",
                lines=[
                    LineIn(account_code=DEPOSITS_HELD, debit=fen_to_yuan(applied), memo=f"竞买号 {winner.bidder_number}"),
                    LineIn(account_code=CONTRACT_INCOME, credit=fen_to_yuan(applied), memo=f"合同 {contract.number}"),
                ],
            ),
            actor,
            source="contract_receipt",
        )
        session.add(
            ContractReceipt(
                contract_id=contract.id, entry_id=entry.id, amount_fen=applied, received_on=today, created_at=now
            )
        )
        winner.deposit_state = DepositState.APPLIED.value
        winner.deposit_settlement_entry_id = entry.id
    await session.flush()
    return listing, contract.id


async def forfeit_deposit(
    session: AsyncSession, listing_id: int, actor: User, now: datetime
) -> schemas.DepositSettlement:
    """The winner did not sign by the deadline: the deposit is forfeited (Dr 21101 / Cr 522) and the assets
    go back to idle. The listing stays sold (the result stands in history); it can be relisted."""
    listing = await _sold_listing_for(session, listing_id, actor, write=False)
    if listing.sign_deadline is None or local_date(now) <= listing.sign_deadline:
        raise _refuse(
            "签约期限未届满，不能没收保证金", "the sign deadline has not passed", status=409, code="sign_deadline_open"
        )
    winner = await session.get_one(Registration, listing.winner_registration_id)
    if winner.deposit_state != DepositState.HELD.value:
        raise _refuse("该竞买保证金已处理", "the deposit is no longer held", status=409, code="deposit_settled")
    entry_id = None
    if listing.deposit_fen > 0:
        entry_id = await _settle_deposit(
            session, listing, winner, OTHER_INCOME, DepositState.FORFEITED,
            f"竞得人逾期未签约，没收竞买保证金：{listing.number}", actor, now,
        )
    else:
        winner.deposit_state = DepositState.FORFEITED.value
    listing.status_reason = "竞得人逾期未签约，竞买保证金已没收"
    await _release_assets(session, listing, f"交易项目 {listing.number} 竞得人逾期未签约", actor, now)
    await session.flush()
    return schemas.DepositSettlement(
        listing_id=listing.id,
        registration_id=winner.id,
        bidder_number=winner.bidder_number,
        deposit_state=winner.deposit_state,
        amount=listing.deposit_fen,
        entry_id=entry_id,
    )

