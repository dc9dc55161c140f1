"""Registrations: a bidder applies, the village confirms the deposit (posted to its books as a deposit held),
the township qualifies (a bidder number, 竞买号) or rejects (the deposit goes back at once).

Every write takes the listing's lock first, so registrations, bidder numbers and deposits of one listing
change one at a time and never race its bidding or close. Deposits are posted in the collective's books:
Dr 102 银行存款 / Cr 21101 应付款—竞买保证金 when they arrive, the mirror when they are refunded.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.lifecycle import lock_listing
from sanzi.auction.models import DepositState, Listing, Registration, RegistrationStatus
from sanzi.auction.models import ListingStatus as S
from sanzi.auction.schemas import registrations as schemas
from sanzi.auction.services.listings import (
    get_listing,
    is_official_of,
    is_published,
    require_committee,
    require_supervisor,
)
from sanzi.ledger.schemas.books import EntryCreate, LineIn
from sanzi.ledger.services.books import BooksService
from sanzi.platform import events
from sanzi.platform.models import Bidder, Collective, Role, User
from sanzi.platform.money import fen_to_yuan
from sanzi.platform.problems import Conflict, DomainError, Forbidden, NotFound
from sanzi.platform.settings import get_settings

CASH_AT_BANK = "102"  # 银行存款
DEPOSITS_HELD = "21101"  # 应付款—竞买保证金

#: one wording for the bidder's and the committee's pages
REGISTRATION_STATUS_NAMES = {
    RegistrationStatus.APPLIED.value: "已报名，待缴保证金",
    RegistrationStatus.DEPOSIT_PAID.value: "保证金已到账，待资格审核",
    RegistrationStatus.QUALIFIED.value: "已取得竞买资格",
    RegistrationStatus.REJECTED.value: "资格审核未通过",
}
DEPOSIT_STATE_NAMES = {
    DepositState.NONE.value: "待缴纳",
    DepositState.HELD.value: "已到账（代管）",
    DepositState.REFUNDED.value: "已退还",
    DepositState.APPLIED.value: "已转作成交价款",
    DepositState.FORFEITED.value: "已没收",
}
#: statuses after which the village's committee may see who the bidders are
CLOSED_STATUSES = {S.CLOSED.value, S.SOLD.value, S.FAILED.value}


def _conflict(zh: str, en: str, field: str | None = None) -> DomainError:
    return Conflict(zh, en, field=field)


async def _bidder_of(session: AsyncSession, user: User) -> Bidder:
    bidder = await session.scalar(select(Bidder).where(Bidder.user_id == user.id))
    if bidder is None:
        raise Forbidden("请先完善竞买人资料", "this account has no bidder profile")
    return bidder


async def _registration_locked(
    session: AsyncSession, registration_id: int, user: User
) -> tuple[Registration, Listing]:
    """The registration and its listing, the listing locked first; outsiders get 404."""
    query = select(Registration.listing_id).where(Registration.id == registration_id)
    listing_id = await session.scalar(query)
    if listing_id is None:
        raise NotFound("报名记录", "registration")
    # end the read so the lock below is this transaction's first statement (SQLite cannot upgrade a read
    # snapshot another writer has overtaken; a fresh transaction simply waits for the write lock)
    await session.commit()
    listing = await lock_listing(session, listing_id)
    registration = await session.scalar(
        select(Registration)
        .where(Registration.id == registration_id)
        .execution_options(populate_existing=True)
    )
    assert registration is not None
    if not is_official_of(user, listing.village_code):
        raise NotFound("报名记录", "registration")
    return registration, listing


def _local_date(moment: datetime) -> Any:
    return moment.astimezone(get_settings().zone).date()


async def _collective(session: AsyncSession, listing: Listing) -> Collective:
    collective = await session.get(Collective, listing.collective_id)
    assert collective is not None
    return collective


# ---- writes ---------------------------------------------------------------------------------------------


async def register(
    session: AsyncSession,
    listing_id: int,
    data: schemas.RegistrationCreate,
    user: User,
    ip_address: str | None,
    device_fingerprint: str | None,
    now: datetime,
) -> Registration:
    """A bidder's application: only while the listing is announced and before its registration deadline."""
    listing = await lock_listing(session, listing_id)
    if not is_published(listing):
        raise NotFound("交易项目", "listing")
    if listing.status != S.ANNOUNCED.value:
        raise _conflict("该交易项目当前不接受报名", f"the listing is {listing.status}, not open for registration")
    if now >= listing.registration_deadline:
        raise _conflict("报名已截止", "the registration deadline has passed", field="registration_deadline")
    bidder = await _bidder_of(session, user)
    existing = await session.scalar(
        select(Registration.id).where(
            Registration.listing_id == listing.id, Registration.bidder_id == bidder.id
        )
    )
    if existing is not None:
        raise _conflict("您已报名该交易项目", "you have already registered for this listing", field="listing_id")
    registration = Registration(
        listing_id=listing.id,
        bidder_id=bidder.id,
        status=RegistrationStatus.APPLIED.value,
        contact_phone=data.contact_phone or bidder.phone,
        contact_address=data.contact_address if data.contact_address is not None else bidder.address,
        applied_ip=(ip_address or None) and ip_address[:64],
        applied_device=(device_fingerprint or "").strip()[:128] or None,
        deposit_state=DepositState.NONE.value,
    )
    session.add(registration)
    await session.flush()
    return registration


async def confirm_deposit(
    session: AsyncSession, registration_id: int, data: schemas.DepositIn, actor: User, now: datetime
) -> Registration:
    """The village confirms the deposit arrived: Dr 102 / Cr 21101 for the listing's deposit, once."""
    registration, listing = await _registration_locked(session, registration_id, actor)
    require_committee(actor, listing)
    if registration.deposit_state != DepositState.NONE.value:
        raise _conflict("该报名的保证金已确认", "the deposit of this registration was already confirmed")
    if registration.status != RegistrationStatus.APPLIED.value:
        raise _conflict("该报名已不能缴纳保证金", f"a registration that is {registration.status} takes no deposit")
    if listing.status != S.ANNOUNCED.value:
        raise _conflict("交易项目不在公告期，不能确认保证金", f"the listing is {listing.status}, not announced")
    if data.paid_at > now:
        raise DomainError("到账时间不能晚于现在", "paid_at cannot be in the future", field="paid_at")
    if data.paid_at > listing.registration_deadline:
        raise DomainError(
            "保证金须在报名截止时间前到账", "the deposit must arrive before the registration deadline", field="paid_at"
        )
    amount = fen_to_yuan(listing.deposit_fen)
    entry_data = EntryCreate(
        entry_date=_local_date(data.paid_at),
        memo=f"收到交易项目 {listing.number} 竞买保证金",
        counterparty=data.payer_name,
        client_key=f"deposit:{registration.id}",
        lines=[
            LineIn(account_code=CASH_AT_BANK, debit=amount),
            LineIn(account_code=DEPOSITS_HELD, credit=amount),
        ],
    )
    collective = await _collective(session, listing)
    entry, _ = await BooksService(session).post_entry(collective, entry_data, actor, source="deposit")
    registration.status = RegistrationStatus.DEPOSIT_PAID.value
    registration.deposit_state = DepositState.HELD.value
    registration.deposit_payer_name = data.payer_name
    registration.deposit_payer_account = data.payer_account.replace(" ", "")
    registration.deposit_paid_at = data.paid_at
    registration.deposit_entry_id = entry.id
    await session.flush()
    return registration


async def _free_bidder_number(session: AsyncSession, listing_id: int) -> str:
    """A random 4-digit number not yet used in the listing: numbers say nothing about order or count."""
    taken = set(
        await session.scalars(
            select(Registration.bidder_number).where(
                Registration.listing_id == listing_id, Registration.bidder_number.is_not(None)
            )
        )
    )
    while True:
        number = f"{secrets.randbelow(9000) + 1000}"
        if number not in taken:
            return number


async def qualify(session: AsyncSession, registration_id: int, actor: User, now: datetime) -> Registration:
    """The township qualifies a bidder whose deposit is held: a bidder number (竞买号) unique in the listing."""
    registration, listing = await _registration_locked(session, registration_id, actor)
    require_supervisor(actor, listing)
    if listing.status != S.ANNOUNCED.value:
        raise _conflict("交易项目不在公告期，不能审核竞买资格", f"the listing is {listing.status}, not announced")
    if registration.status == RegistrationStatus.QUALIFIED.value:
        raise _conflict("该竞买人已通过资格审核", "this bidder is already qualified")
    if registration.status == RegistrationStatus.REJECTED.value:
        raise _conflict("该报名已被驳回", "this registration was rejected")
    if registration.deposit_state != DepositState.HELD.value:
        raise _conflict("保证金尚未到账，不能通过资格审核", "the deposit has not been confirmed", field="deposit")
    registration.bidder_number = await _free_bidder_number(session, listing.id)
    registration.status = RegistrationStatus.QUALIFIED.value
    registration.decided_by_id = actor.id
    registration.decided_at = now
    await session.flush()
    events.record(session, "bidder_qualified", listing.village_code, listing_id=listing.id, registration_id=registration.id)
    return registration


async def reject(
    session: AsyncSession, registration_id: int, reason: str, actor: User, now: datetime
) -> Registration:
    """The township rejects an application (before bidding starts); a deposit held is refunded at once."""
    registration, listing = await _registration_locked(session, registration_id, actor)
    require_supervisor(actor, listing)
    if registration.status == RegistrationStatus.REJECTED.value:
        raise _conflict("该报名已被驳回", "this registration was already rejected")
    if listing.status not in (S.ANNOUNCED.value, S.SUSPENDED.value):
        raise _conflict("竞价已开始或项目已结束，不能驳回报名", f"the listing is {listing.status}")
    registration.status = RegistrationStatus.REJECTED.value
    registration.reject_reason = reason
    registration.decided_by_id = actor.id
    registration.decided_at = now
    await refund_deposit(session, registration, actor, now)
    await session.flush()
    return registration


async def refund_deposit(
    session: AsyncSession, registration: Registration, actor: User | None, now: datetime
) -> None:
    """Give a held deposit back (Dr 21101 / Cr 102); nothing happens when it is not held. The caller holds the
    listing's lock."""
    if registration.deposit_state != DepositState.HELD.value:
        return
    listing = await session.get(Listing, registration.listing_id)
    assert listing is not None
    if listing.deposit_fen == 0:  # nothing was paid in, nothing to post
        registration.deposit_state = DepositState.REFUNDED.value
        return
    amount = fen_to_yuan(listing.deposit_fen)
    entry_data = EntryCreate(
        entry_date=_local_date(now),
        memo=f"退还交易项目 {listing.number} 竞买保证金",
        counterparty=registration.deposit_payer_name,
        client_key=f"refund:{registration.id}",
        lines=[
            LineIn(account_code=DEPOSITS_HELD, debit=amount),
            LineIn(account_code=CASH_AT_BANK, credit=amount),
        ],
    )
    entry, _ = await BooksService(session).post_entry(
        await _collective(session, listing), entry_data, actor, source="deposit_refund"
    )
    registration.deposit_state = DepositState.REFUNDED.value
    registration.deposit_settlement_entry_id = entry.id
    await session.flush()


async def qualified_registration(
    session: AsyncSession, listing_id: int, bidder_id: int
) -> Registration | None:
    """The bidder's registration for the listing if it is qualified with its deposit held (may bid)."""
    return await session.scalar(
        select(Registration).where(
            Registration.listing_id == listing_id,
            Registration.bidder_id == bidder_id,
            Registration.status == RegistrationStatus.QUALIFIED.value,
            Registration.deposit_state == DepositState.HELD.value,
        )
    )


# ---- reads ----------------------------------------------------------------------------------------------


async def listing_registrations(
    session: AsyncSession, listing_id: int, user: User
) -> schemas.ListingRegistrations:
    """Supervisors of the area and admins see identities; the committee numbers and counts until the close."""
    listing = await get_listing(session, listing_id, user)
    if not is_official_of(user, listing.village_code):
        raise Forbidden("无权查看该交易项目的报名情况", "you may not see the registrations of this listing")
    identities = user.role in (Role.SUPERVISOR.value, Role.ADMIN.value) or listing.status in CLOSED_STATUSES
    rows = (
        await session.execute(
            select(Registration, Bidder)
            .join(Bidder, Bidder.id == Registration.bidder_id)
            .where(Registration.listing_id == listing.id)
            .order_by(Registration.id)
        )
    ).all()
    counts = {s.value: 0 for s in RegistrationStatus}
    for registration, _ in rows:
        counts[registration.status] += 1
    items: list[Any]
    if identities:
        items = [
            schemas.RegistrationFull.model_validate(
                {
                    **_fields(r, schemas.RegistrationFull),
                    "bidder_kind": b.kind,
                    "bidder_name": b.name,
                    "bidder_id_number": b.id_number,
                }
            )
            for r, b in rows
        ]
    else:
        items = [schemas.RegistrationBrief.model_validate(r) for r, _ in rows]
    return schemas.ListingRegistrations(
        listing_id=listing.id,
        identities=identities,
        counts=schemas.RegistrationCounts(total=len(rows), **counts),
        items=items,
    )


async def my_registrations(session: AsyncSession, user: User) -> list[schemas.Registration]:
    bidder = await _bidder_of(session, user)
    rows = await session.execute(
        select(Registration, Listing)
        .join(Listing, Listing.id == Registration.listing_id)
        .where(Registration.bidder_id == bidder.id)
        .order_by(Registration.id.desc())
    )
    return [registration_out(registration, listing) for registration, listing in rows]


def _fields(row: Any, model: type[Any]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in model.model_fields if hasattr(row, name)}


def registration_out(registration: Registration, listing: Listing) -> schemas.Registration:
    """A registration as its bidder sees it, with the listing it is for."""
    return schemas.Registration.model_validate(
        {
            **_fields(registration, schemas.Registration),
            "listing_number": listing.number,
            "listing_title": listing.title,
            "listing_status": listing.status,
            "deposit": listing.deposit_fen,
        }
    )
