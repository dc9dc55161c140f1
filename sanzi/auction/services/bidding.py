"""The live bidding engine: one bid at a time per listing, under the listing's lock, durable before it is told.

Rules (the issue and DESIGN.md "Trading"; where they were silent, decided here):
- the first bid is at least the starting price and at most the starting price plus the maximum increment;
  every later bid is at least the current price plus the minimum increment and at most the current price plus
  the maximum increment; amounts need not be multiples of the minimum increment;
- the leading bidder may not outbid themselves (a real auction room does not let the leader raise alone);
- a bid placed while the end is less than ``extension_minutes`` away moves the end to exactly
  ``placed_at + extension_minutes``, as long as fewer than ``max_extensions`` extensions were used;
- a bid at ``now == current_end_at`` is outside the window (the window is [bidding_starts_at, current_end_at)).

Every write follows lock, write, COMMIT, then publish: a failed publish is logged and never fails the bid.

An acceptable bid takes the fast path: one conditional ``UPDATE listing ... RETURNING`` that re-checks every
rule in SQL on the locked row (status, window, amount range, leader, the bidder's qualification and deposit)
and applies the bid, and the ``INSERT`` of the bid. On PostgreSQL the two are one statement (a writable CTE)
run outside a transaction block, so the row lock lasts only while that statement runs; on SQLite they are two
statements and COMMIT. Whenever it matches no row (a refusal, a replay, an announced listing due to open, on
SQLite a clock behind the previous bid), the fast path changes nothing and the slow path decides with the
exact refusal: its checks first run on a plain read (a refusal or a replay needs no lock), then, if they
found nothing to refuse, again under the listing's lock, where the bid is written. On SQLite every
transaction begins IMMEDIATE (database.py), so reading before writing never meets a stale snapshot.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Interval,
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Engine, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.lifecycle import lock_listing, transition
from sanzi.auction.models import Bid, DepositState, Listing, ListingStatus, Registration, RegistrationStatus
from sanzi.auction.schemas import bidding as schemas
from sanzi.platform import events
from sanzi.platform.database import outside_transaction_block
from sanzi.platform.models import Bidder, User
from sanzi.platform.money import fen_to_yuan
from sanzi.platform.problems import Conflict, DomainError, NotFound

log = logging.getLogger(__name__)

#: publish(channel, event): sends one JSON-able event to the watchers of a channel
Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
PUBLISH_TIMEOUT_SECONDS = 2.0

#: statuses in which a listing is public (announced and later)
PUBLIC_STATUSES = {
    ListingStatus.ANNOUNCED.value,
    ListingStatus.BIDDING.value,
    ListingStatus.CLOSED.value,
    ListingStatus.SOLD.value,
    ListingStatus.FAILED.value,
    ListingStatus.SUSPENDED.value,
    ListingStatus.TERMINATED.value,
}
FINISHED_STATUSES = {ListingStatus.SOLD.value, ListingStatus.FAILED.value}


def listing_channel(listing_id: int) -> str:
    return f"listing:{listing_id}"


def channels_publisher(plugin: Any) -> Publish:
    """A publisher through Litestar's ChannelsPlugin that awaits the backend, so a failure is seen and logged
    (the plugin's fire-and-forget queue would lose its worker on the first Redis error)."""

    async def publish(channel: str, event: dict[str, Any]) -> None:
        await plugin.wait_published(event, [channel])

    return publish


async def publish_safely(publish: Publish | None, listing_id: int, event: dict[str, Any]) -> None:
    """Publish after the commit; never raise: watchers resynchronise from the database by sequence number."""
    if publish is None:
        return
    try:
        await asyncio.wait_for(publish(listing_channel(listing_id), event), PUBLISH_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - the write is committed; the event is only a hint
        log.warning("publish to %s failed (%s: %s); watchers will catch up", listing_channel(listing_id),
                    type(exc).__name__, exc)


async def release(session: AsyncSession) -> None:
    """End the transaction after a refusal whose savepoint was rolled back, so the lock is not held on."""
    try:
        await session.commit()
    except Exception:  # noqa: BLE001 - the refusal is what the caller must see
        log.exception("could not end the transaction after a refusal")
        await session.rollback()


def _refuse(zh: str, en: str, *, status: int = 422, code: str, field: str | None = None, **extra: Any) -> DomainError:
    return DomainError(zh, en, field=field, status_code=status, code=code, extra=extra)


def end_of(listing: Listing) -> datetime:
    """The end of bidding as it stands: the extended end once bidding runs, else the announced end."""
    return listing.current_end_at or listing.bidding_ends_at


def bid_range(listing: Listing) -> tuple[int, int]:
    """The lowest and highest acceptable next bid, in fen."""
    if listing.bid_count == 0 or listing.current_price_fen is None:
        return listing.starting_price_fen, listing.starting_price_fen + listing.max_increment_fen
    return (
        listing.current_price_fen + listing.min_increment_fen,
        listing.current_price_fen + listing.max_increment_fen,
    )


# ---- registrations (switch to the registrations service when it offers the same helpers) ----------------


async def _bidder_id(session: AsyncSession, bidder: Bidder | User | int) -> int:
    if isinstance(bidder, int):
        return bidder
    if isinstance(bidder, Bidder):
        return bidder.id
    found = await session.scalar(select(Bidder.id).where(Bidder.user_id == bidder.id))
    if found is None:
        raise _not_a_bidder()
    return found


def _not_a_bidder() -> DomainError:
    return _refuse("只有已登记的竞买人才能出价", "only registered bidders may bid", status=403, code="not_a_bidder")


def check_qualified(registration: Registration | None) -> Registration:
    """Refuse a bidder who has not applied, is not qualified, or whose deposit is not held."""
    if registration is None:
        raise _refuse(
            "您未报名该交易项目，不能出价", "you have not registered for this listing", status=403, code="not_registered"
        )
    if registration.status != RegistrationStatus.QUALIFIED.value or not registration.bidder_number:
        raise _refuse(
            "您尚未取得该项目的竞买资格（资格审核未通过或未完成）",
            "you are not a qualified bidder for this listing",
            status=403,
            code="not_qualified",
        )
    if registration.deposit_state != DepositState.HELD.value:
        raise _refuse(
            "您的竞买保证金未到账或已退还，不能出价",
            "your bid deposit is not held",
            status=403,
            code="deposit_not_held",
        )
    return registration


# ---- placing a bid ---------------------------------------------------------------------------------------


class _Replay(Exception):
    """A repeat of an acknowledged bid: leaves the lock's savepoint without writing anything."""

    def __init__(self, bid: Bid, listing: Listing, bidder_number: str | None) -> None:
        self.bid = bid
        self.listing = listing
        self.bidder_number = bidder_number


@dataclass
class Placed:
    """A bid and the listing's live state right after it (or, for a replay, when it was answered)."""

    bid: Bid
    listing: Listing
    bidder_number: str | None


@dataclass(frozen=True)
class _Offer:
    """A bid as the bidder sent it, carried through the fast path, the plain read and the locked path. ``clock``
    is a time (tests inject it) or a clock read when the bid is judged (the API's)."""

    listing_id: int
    bidder: Bidder | User | int
    amount_fen: int
    client_key: str
    clock: datetime | Callable[[], datetime]
    ip: str | None
    device: str | None


#: listing id -> its extension minutes, as last read; the fast path's UPDATE re-checks the value it uses, so a
#: stale entry only sends a bid down the slow path
_extension_minutes: dict[int, int] = {}


async def place_bid(
    session: AsyncSession,
    listing_id: int,
    bidder: Bidder | User | int,
    amount_fen: int,
    client_key: str,
    now: datetime | Callable[[], datetime],
    ip: str | None = None,
    device: str | None = None,
    publish: Publish | None = None,
) -> tuple[Bid, bool]:
    """Place a bid; (bid, created). A repeat of an acknowledged client key answers that bid (created False).

    The fast path (see the module's docstring) places an acceptable bid in one statement (two on SQLite);
    anything else goes down the slow path. A refusal ends the transaction having written nothing, the lock
    released at once or never taken (a caller's pending changes in the session are committed with it).

    ``now`` is a time (tests inject the clock) or a clock (the API passes one): the fast path reads it just
    before its UPDATE and accepts only if no earlier bid is stamped later; the slow path reads it once the
    lock is held and keeps it from going back behind the previous bid, so that under contention bid n+1 is
    never stamped before bid n (nor when workers' clocks differ).
    """
    placed, created = await place(session, listing_id, bidder, amount_fen, client_key, now, ip, device, publish)
    return placed.bid, created


async def place(
    session: AsyncSession,
    listing_id: int,
    bidder: Bidder | User | int,
    amount_fen: int,
    client_key: str,
    now: datetime | Callable[[], datetime],
    ip: str | None = None,
    device: str | None = None,
    publish: Publish | None = None,
) -> tuple[Placed, bool]:
    """The engine behind ``place_bid``: (the bid with the listing's state after it, created); the API answers
    with ``receipt()`` of it, built from what the transaction already read."""
    offer = _Offer(listing_id, bidder, amount_fen, client_key, now, ip, device)
    placed, alone = await _place_fast(session, offer)
    if placed is None:
        try:
            try:  # a refusal or a replay is answered from a plain read: nothing to write, no lock to hold
                await _check_unlocked(session, offer)
            except _NeedsLock:
                pass
            if alone:
                # the locked path needs a transaction, not the connection in autocommit (the pool resets it)
                await session.rollback()
            async with session.begin_nested():
                placed = await _place_locked(session, offer)
        except _Replay as replay:
            await session.commit()
            return Placed(replay.bid, replay.listing, replay.bidder_number), False
        except DomainError:
            await release(session)
            raise
    await session.commit()  # durable before it is acknowledged or announced
    await publish_safely(publish, listing_id, bid_event(placed.listing, placed.bid, placed.bidder_number))
    return placed, True


class _NeedsLock(Exception):
    """The unlocked check found nothing to refuse: the bid (or the opening of the listing) needs the lock."""


class _FastPathMissed(Exception):
    """The fast path's INSERT matched nothing or hit a constraint: undo its UPDATE, take the slow path."""


async def _place_fast(
    session: AsyncSession,
    offer: _Offer,
) -> tuple[Placed | None, bool]:
    """Place an acceptable bid in one statement on PostgreSQL (a conditional UPDATE and a guarded INSERT on
    SQLite); None (nothing changed) when the slow path must decide. The second value says whether the session
    still holds a connection in autocommit (a miss on PostgreSQL), which the slow path's plain read reuses.

    A session already in a transaction or holding objects (a caller's) gets a savepoint, so undoing a missed
    INSERT never undoes the caller's work nor expires its objects. A fresh, empty one (the API's) needs none:
    on PostgreSQL its one statement runs on its own, without BEGIN and COMMIT around it, so the listing's row
    lock is held only while the statement runs (not across round trips to an app worker busy with other
    requests); on SQLite the whole transaction is rolled back after a miss.
    """
    bind = session.get_bind()
    fast = _fast_one_statement if bind.dialect.name == "postgresql" else _fast_statements
    # a session bound to a connection (a caller's transaction, the tests' savepoints) is treated as a busy one
    if session.in_transaction() or len(session.identity_map) > 0 or not isinstance(bind, Engine):
        try:
            async with session.begin_nested():
                return await fast(session, offer), False
        except _FastPathMissed:
            return None, False
    alone = await outside_transaction_block(session)  # PostgreSQL: the one statement on its own
    try:
        placed = await fast(session, offer)
    except _FastPathMissed:
        # SQLite: undo an UPDATE whose INSERT missed; PostgreSQL: a statement that failed (a used client key)
        await session.rollback()
        return None, False
    return placed, alone and placed is None


_RETURNED = (
    "village_code",
    "status",
    "starting_price_fen",
    "min_increment_fen",
    "max_increment_fen",
    "current_price_fen",
    "bid_count",
    "leading_registration_id",
    "bidding_starts_at",
    "bidding_ends_at",
    "current_end_at",
    "extensions_used",
    "max_extensions",
    "extension_minutes",
)


def _acceptance(by_user: bool, at: Any, new_end: Any) -> tuple[Any, Any]:
    """(the conditional UPDATE of the listing that applies an acceptable bid stamped ``at``, the bidder
    number of the new leader): every rule re-checked in SQL on the locked row. Both fast paths add their own
    conditions, the stamp of ``updated_at`` and what they return.

    Parameters: listing_id, bidder (a user id when ``by_user``, else a bidder id), amount.
    """
    listing, registration, bidder = Listing.__table__, Registration.__table__, Bidder.__table__
    c = listing.c
    moment = c.current_end_at.type
    amount = bindparam("amount", type_=c.current_price_fen.type)
    listing_id = bindparam("listing_id", type_=c.id.type)
    bidder_id: Any = (
        select(bidder.c.id).where(bidder.c.user_id == bindparam("bidder")).scalar_subquery()
        if by_user
        else bindparam("bidder", type_=registration.c.bidder_id.type)
    )
    # the bidder's registration, only while qualified with a bidder number and the deposit held
    registration_id = (
        select(registration.c.id)
        .where(
            registration.c.listing_id == listing_id,
            registration.c.bidder_id == bidder_id,
            registration.c.status == RegistrationStatus.QUALIFIED.value,
            registration.c.bidder_number.is_not(None),
            registration.c.bidder_number != "",
            registration.c.deposit_state == DepositState.HELD.value,
        )
        .scalar_subquery()
    )
    end = func.coalesce(c.current_end_at, c.bidding_ends_at, type_=moment)
    extend = and_(end < new_end, c.extensions_used < c.max_extensions)
    first = or_(c.bid_count == 0, c.current_price_fen.is_(None))
    in_range = or_(
        and_(first, c.starting_price_fen <= amount, c.starting_price_fen + c.max_increment_fen >= amount),
        and_(~first, c.current_price_fen + c.min_increment_fen <= amount,
             c.current_price_fen + c.max_increment_fen >= amount),
    )
    number = select(registration.c.bidder_number).where(registration.c.id == c.leading_registration_id)
    applied = (
        update(listing)
        .where(
            c.id == listing_id,
            c.status == ListingStatus.BIDDING.value,
            c.bidding_starts_at <= at,
            end > at,
            # an end already exactly at this bid's extension would leave the returned row ambiguous (extended
            # by this bid or not?): the slow path decides that instant
            end != new_end,
            in_range,
            registration_id.is_not(None),
            or_(c.bid_count == 0, c.leading_registration_id.is_(None), c.leading_registration_id != registration_id),
        )
        .values(
            current_price_fen=amount,
            bid_count=c.bid_count + 1,
            leading_registration_id=registration_id,
            current_end_at=case((extend, new_end), else_=end),
            extensions_used=case((extend, c.extensions_used + 1), else_=c.extensions_used),
            lock_version=c.lock_version + 1,
        )
    )
    return applied, number.scalar_subquery()


@functools.cache
def _fast_update(by_user: bool) -> Any:
    """The fast path's conditional UPDATE on SQLite, built once (Core, bound parameters: compiled once and
    cached). Parameters: those of ``_acceptance``, now, new_end (now plus the extension), p_extension_minutes
    (the value new_end assumed), p_updated_at.
    """
    c = Listing.__table__.c
    moment = c.current_end_at.type
    now, new_end = bindparam("now", type_=moment), bindparam("new_end", type_=moment)
    applied, number = _acceptance(by_user, now, new_end)
    return (
        applied.where(c.extension_minutes == bindparam("p_extension_minutes", type_=c.extension_minutes.type))
        .values(updated_at=bindparam("p_updated_at", type_=c.updated_at.type))
        .returning(*(c[name] for name in _RETURNED), number)
    )


#: how far ahead of the bidder's clock the listing's last change may be for the one-statement path to stamp
#: the bid at that change (clocks of different app servers); beyond it the slow path decides
_CLOCK_TOLERANCE = timedelta(seconds=1)


@functools.cache
def _one_statement(by_user: bool, follow_clock: bool) -> Any:
    """PostgreSQL: an acceptable bid in one statement, built once: the fast path's conditional UPDATE of the
    listing feeds, through a writable CTE, the INSERT of the bid; the new leader's bidder number comes back.

    With the API's clock (``follow_clock``) the bid is stamped at the later of the clock and the listing's
    last change, read on the locked row: every bid moves ``updated_at`` to its own stamp, so bid n+1 is never
    stamped before bid n even when its clock was read first, and the statement never misses for it. An
    injected time (tests, the demo) is used as it is, as on the slow path. Parameters: listing_id, bidder (a
    user id when ``by_user``), amount, now, latest (now plus the tolerance), client_key, ip, device.
    """
    listing, bid = Listing.__table__, Bid.__table__
    c = listing.c
    moment = c.current_end_at.type
    now = bindparam("now", type_=moment)
    at = func.greatest(now, c.updated_at, type_=moment) if follow_clock else now
    minute = literal_column("interval '1 minute'", type_=Interval())
    applied, number = _acceptance(by_user, at, at + c.extension_minutes * minute)
    if follow_clock:
        applied = applied.where(c.updated_at <= bindparam("latest", type_=moment))
    placed = (
        applied.values(updated_at=at)  # the bid's stamp (see above)
        .returning(
            *(c[name] for name in _RETURNED),
            number.label("bidder_number"),
            c.updated_at.label("placed_at"),
        )
        .cte("placed")
    )
    # the same parameters as in the UPDATE, by name
    listing_id = bindparam("listing_id", type_=c.id.type)
    amount = bindparam("amount", type_=c.current_price_fen.type)
    # the end moved to exactly the stamp plus the extension only if this bid extended it (the WHERE above)
    moved_to = placed.c.placed_at + placed.c.extension_minutes * minute
    extended = case((placed.c.current_end_at == moved_to, placed.c.current_end_at), else_=None)
    values = select(
        listing_id,
        placed.c.bid_count,
        placed.c.leading_registration_id,
        amount,
        bindparam("client_key", type_=bid.c.client_key.type),
        placed.c.placed_at,
        extended,
        bindparam("ip", type_=bid.c.ip_address.type),
        bindparam("device", type_=bid.c.device_fingerprint.type),
    )
    written = insert(bid).from_select(list(_BID_COLUMNS), values).returning(bid.c.id, bid.c.extended_end_at)
    inserted = written.cte("inserted")
    both = placed.join(inserted, true())
    return select(placed, inserted.c.id, inserted.c.extended_end_at).select_from(both)


async def _fast_one_statement(
    session: AsyncSession,
    offer: _Offer,
) -> Placed | None:
    by_user, bidder_key = _bidder_key(offer.bidder)
    now = offer.clock() if callable(offer.clock) else offer.clock
    try:
        row = (
            await session.execute(
                _one_statement(by_user, callable(offer.clock)),
                {
                    "listing_id": offer.listing_id,
                    "bidder": bidder_key,
                    "amount": offer.amount_fen,
                    "now": now,
                    "latest": now + _CLOCK_TOLERANCE,
                    "client_key": offer.client_key,
                    "ip": offer.ip,
                    "device": offer.device,
                },
            )
        ).one_or_none()
    except IntegrityError as exc:  # the client key was used before: the slow path answers the replay
        raise _FastPathMissed from exc
    if row is None:
        return None  # nothing written: the slow path refuses exactly, opens the listing, or answers a replay
    listing = _returned_listing(offer.listing_id, row)
    seq, leader = listing.bid_count, listing.leading_registration_id
    bidder_number, placed_at, bid_id, extended_end_at = row[len(_RETURNED):]
    bid = Bid(
        id=bid_id,
        listing_id=offer.listing_id,
        seq=seq,
        registration_id=leader,
        amount_fen=offer.amount_fen,
        client_key=offer.client_key,
        placed_at=placed_at,
        extended_end_at=extended_end_at,
        ip_address=offer.ip,
        device_fingerprint=offer.device,
    )
    return _placed(session, bid, listing, bidder_number)


def _returned_listing(listing_id: int, row: Row[Any]) -> Listing:
    """The listing's state after the bid, from the ``_RETURNED`` columns a fast path's UPDATE returned."""
    return Listing(id=listing_id, **dict(zip(_RETURNED, row[: len(_RETURNED)], strict=True)))


def _bidder_key(bidder: Bidder | User | int) -> tuple[bool, int]:
    """(by user, the id): the fast paths find the bidder from a user id or take a bidder id."""
    if isinstance(bidder, int):
        return False, bidder
    if isinstance(bidder, Bidder):
        return False, bidder.id
    return True, bidder.id


def _placed(session: AsyncSession, bid: Bid, listing: Listing, bidder_number: str | None) -> Placed:
    """The fast paths' answer, from what their statements returned; the event is queued for the commit."""
    events.record(session, "bid_placed", listing.village_code, listing_id=listing.id, bid_id=bid.id)
    key = session.sync_session.identity_key(Listing, listing.id)  # type: ignore[arg-type]
    stale = session.identity_map.get(key)
    if stale is not None:
        session.expire(stale)  # the UPDATE bypassed the ORM: a later read must not see the old state
    return Placed(bid, listing, bidder_number)


_BID_COLUMNS = ("listing_id", "seq", "registration_id", "amount_fen", "client_key", "placed_at", "extended_end_at",
                "ip_address", "device_fingerprint")


@functools.cache
def _fast_insert() -> Any:
    """The fast path's INSERT of the bid, built once: it inserts nothing when the previous bid is stamped after
    this one's clock (a new statement: it sees the previous bid, committed before our UPDATE got the lock)."""
    bid = Bid.__table__
    later = exists().where(
        bid.c.listing_id == bindparam("p_listing_id"),
        bid.c.seq == bindparam("p_previous_seq", type_=bid.c.seq.type),
        bid.c.placed_at > bindparam("p_placed_at"),
    )
    values = select(*(bindparam(f"p_{name}", type_=bid.c[name].type) for name in _BID_COLUMNS)).where(~later)
    return insert(bid).from_select(list(_BID_COLUMNS), values).returning(bid.c.id)


async def _fast_statements(
    session: AsyncSession,
    offer: _Offer,
) -> Placed | None:
    extension_minutes = _extension_minutes.get(offer.listing_id)
    if extension_minutes is None:
        extension_minutes = await session.scalar(
            select(Listing.extension_minutes).where(Listing.id == offer.listing_id)
        )
        if extension_minutes is None:
            return None  # no such listing: the slow path says so
        _extension_minutes[offer.listing_id] = extension_minutes
    by_user, bidder_key = _bidder_key(offer.bidder)
    now = offer.clock() if callable(offer.clock) else offer.clock
    new_end = now + timedelta(minutes=extension_minutes)
    row = (
        await session.execute(
            _fast_update(by_user),
            {
                "listing_id": offer.listing_id,
                "bidder": bidder_key,
                "amount": offer.amount_fen,
                "now": now,
                "new_end": new_end,
                "p_extension_minutes": extension_minutes,
                "p_updated_at": datetime.now(UTC),
            },
        )
    ).one_or_none()
    if row is None:
        return None  # nothing written: the slow path refuses exactly, opens the listing, or answers a replay
    listing = _returned_listing(offer.listing_id, row)
    seq, leader, (bidder_number,) = listing.bid_count, listing.leading_registration_id, row[len(_RETURNED):]
    extended_end_at = new_end if listing.current_end_at == new_end else None
    values = {
        "p_listing_id": offer.listing_id,
        "p_seq": seq,
        "p_previous_seq": seq - 1,
        "p_registration_id": leader,
        "p_amount_fen": offer.amount_fen,
        "p_client_key": offer.client_key,
        "p_placed_at": now,
        "p_extended_end_at": extended_end_at,
        "p_ip_address": offer.ip,
        "p_device_fingerprint": offer.device,
    }
    try:
        bid_id = await session.scalar(_fast_insert(), values)
    except IntegrityError as exc:  # the client key was used before: the slow path answers the replay
        raise _FastPathMissed from exc
    if bid_id is None:
        raise _FastPathMissed  # the previous bid is stamped after our clock: the slow path stamps it
    bid = Bid(
        id=bid_id,
        listing_id=offer.listing_id,
        seq=seq,
        registration_id=leader,
        amount_fen=offer.amount_fen,
        client_key=offer.client_key,
        placed_at=now,
        extended_end_at=extended_end_at,
        ip_address=offer.ip,
        device_fingerprint=offer.device,
    )
    return _placed(session, bid, listing, bidder_number)


@functools.cache
def _unlocked_read(by_user: bool) -> Any:
    """One plain read of what judging a bid needs, built once: the listing's ``_RETURNED`` columns, the stamp
    of its latest bid, the bidder's id, their registration's standing and whether the client key was used.
    Parameters: listing_id, bidder (a user id when ``by_user``), client_key."""
    listing, registration, bid, bidder = Listing.__table__, Registration.__table__, Bid.__table__, Bidder.__table__
    c = listing.c
    bidder_id: Any = (
        select(bidder.c.id).where(bidder.c.user_id == bindparam("bidder")).scalar_subquery()
        if by_user
        else bindparam("bidder", type_=registration.c.bidder_id.type)
    )
    latest_at = select(bid.c.placed_at).where(bid.c.listing_id == c.id, bid.c.seq == c.bid_count).scalar_subquery()
    key_used = exists().where(bid.c.listing_id == c.id, bid.c.client_key == bindparam("client_key"))
    theirs = and_(registration.c.listing_id == c.id, registration.c.bidder_id == bidder_id)
    return (
        select(
            *(c[name] for name in _RETURNED),
            latest_at.label("latest_at"),
            bidder_id.label("bidder_id"),
            registration.c.id.label("registration_id"),
            registration.c.status.label("registration_status"),
            registration.c.bidder_number,
            registration.c.deposit_state,
            key_used.label("key_used"),
        )
        .select_from(listing.outerjoin(registration, theirs))
        .where(c.id == bindparam("listing_id", type_=c.id.type))
    )


async def _check_unlocked(
    session: AsyncSession,
    offer: _Offer,
) -> None:
    """Refuse a bid the fast path did not place, with its exact reason, from one plain read (committed state,
    no lock: a refusal is true of the state it read, since the price only rises and a closed window stays
    closed); raise ``_NeedsLock`` where the bid would write. A used client key (a replay) is answered by the
    full read of ``_place_locked``."""
    by_user, bidder_key = _bidder_key(offer.bidder)
    params = {"listing_id": offer.listing_id, "bidder": bidder_key, "client_key": offer.client_key}
    row = (await session.execute(_unlocked_read(by_user), params)).one_or_none()
    if row is None or row.status not in PUBLIC_STATUSES:
        raise NotFound("交易项目", "listing")
    if row.key_used:
        await _place_locked(session, offer, locked=False)
        raise _NeedsLock
    _extension_minutes[offer.listing_id] = row.extension_minutes
    now = offer.clock() if callable(offer.clock) else offer.clock
    if callable(offer.clock) and row.latest_at is not None:
        now = max(now, row.latest_at)
    if row.bidder_id is None:
        raise _not_a_bidder()
    registration = None
    if row.registration_id is not None:
        registration = Registration(
            id=row.registration_id,
            status=row.registration_status,
            bidder_number=row.bidder_number,
            deposit_state=row.deposit_state,
        )
    _judge(_returned_listing(offer.listing_id, row), registration, offer.amount_fen, now)
    raise _NeedsLock


def _judge(listing: Listing, registration: Registration | None, amount_fen: int, now: datetime) -> bool:
    """Refuse a bid the rules do not allow on this state of the listing, with the exact reason; whether the bid
    opens the listing (announced, its window begun), which only the locked path may do."""
    qualified = check_qualified(registration)
    end = end_of(listing)
    opens = listing.status == ListingStatus.ANNOUNCED.value and listing.bidding_starts_at <= now < end
    if not opens and (listing.status != ListingStatus.BIDDING.value or now < listing.bidding_starts_at or now >= end):
        raise _refuse(
            "不在竞价时间内",
            "outside the bidding window",
            status=409,
            code="outside_window",
            bidding_starts_at=listing.bidding_starts_at.isoformat(),
            current_end_at=end.isoformat(),
        )
    low, high = bid_range(listing)
    limits = {"next_min_bid": fen_to_yuan(low), "next_max_bid": fen_to_yuan(high)}
    if listing.bid_count and listing.leading_registration_id == qualified.id:
        raise _refuse(
            "您已是当前最高出价者，不能自行加价", "you already hold the highest bid", status=409, code="already_leading"
        )
    if amount_fen < low:
        first = "首次出价不得低于起拍价" if listing.bid_count == 0 else "出价须不低于当前价加最小加价幅度"
        raise _refuse(
            f"{first}：至少 {fen_to_yuan(low)} 元",
            f"the bid must be at least {fen_to_yuan(low)} yuan",
            field="amount",
            code="amount_too_low",
            **limits,
        )
    if amount_fen > high:
        raise _refuse(
            f"出价超过最大加价幅度：至多 {fen_to_yuan(high)} 元",
            f"the bid may be at most {fen_to_yuan(high)} yuan (maximum increment)",
            field="amount",
            code="amount_too_high",
            **limits,
        )
    return opens


async def _place_locked(
    session: AsyncSession,
    offer: _Offer,
    locked: bool = True,
) -> Placed:
    """Check the bid against the listing and place it, under the listing's lock.

    With ``locked=False`` the same checks run on a plain read of the listing (committed state) and, where it
    would write, it raises ``_NeedsLock`` instead; ``_check_unlocked`` uses it to answer a replay.
    """
    if locked:
        listing = await lock_listing(session, offer.listing_id)
    else:
        listing = await session.scalar(
            select(Listing).where(Listing.id == offer.listing_id).execution_options(populate_existing=True)
        )
        if listing is None:
            raise NotFound("交易项目", "listing")
    _extension_minutes[listing.id] = listing.extension_minutes
    if callable(offer.clock):
        now = offer.clock()
        if listing.bid_count:
            previous = await session.scalar(
                select(Bid.placed_at).where(Bid.listing_id == listing.id, Bid.seq == listing.bid_count)
            )
            now = max(now, previous or now)
    else:
        now = offer.clock
    if listing.status not in PUBLIC_STATUSES:
        raise NotFound("交易项目", "listing")
    bidder_id = await _bidder_id(session, offer.bidder)
    registration = await session.scalar(
        select(Registration).where(Registration.listing_id == listing.id, Registration.bidder_id == bidder_id)
    )
    existing = await session.scalar(
        select(Bid).where(Bid.listing_id == listing.id, Bid.client_key == offer.client_key)
    )
    if existing is not None:
        same_bid = existing.amount_fen == offer.amount_fen
        if registration is not None and existing.registration_id == registration.id and same_bid:
            raise _Replay(existing, listing, registration.bidder_number)
        raise Conflict(
            "该幂等键（client_key）已用于另一笔出价", "this client_key was already used for another bid", "client_key"
        )
    end = end_of(listing)
    opens = _judge(listing, registration, offer.amount_fen, now)
    if not locked:
        raise _NeedsLock
    assert registration is not None  # _judge refused otherwise
    if opens:
        transition(session, listing, ListingStatus.BIDDING, None, "竞价开始", now)
        listing.current_end_at = end

    seq = listing.bid_count + 1
    bid = Bid(
        listing_id=listing.id,
        seq=seq,
        registration_id=registration.id,
        amount_fen=offer.amount_fen,
        client_key=offer.client_key,
        placed_at=now,
        ip_address=offer.ip,
        device_fingerprint=offer.device,
    )
    extension = timedelta(minutes=listing.extension_minutes)
    if end - now < extension and listing.extensions_used < listing.max_extensions:
        listing.current_end_at = now + extension
        listing.extensions_used += 1
        bid.extended_end_at = listing.current_end_at
    listing.current_price_fen = offer.amount_fen
    listing.leading_registration_id = registration.id
    listing.bid_count = seq
    # never behind the bid's stamp: the one-statement path stamps the next bid no earlier than this
    listing.updated_at = max(datetime.now(UTC), now)
    session.add(bid)
    await session.flush()
    events.record(session, "bid_placed", listing.village_code, listing_id=listing.id, bid_id=bid.id)
    return Placed(bid, listing, registration.bidder_number)


# ---- views -----------------------------------------------------------------------------------------------


def live_bid(bid: Bid | Row[Any], bidder_number: str | None) -> schemas.LiveBid:
    """A bid as watchers see it, from a Bid or from a row of its columns (seq, amount_fen, placed_at,
    extended_end_at)."""
    return schemas.LiveBid(
        seq=bid.seq,
        bidder_number=bidder_number or "",
        amount=bid.amount_fen,
        placed_at=bid.placed_at,
        extended_end_at=bid.extended_end_at,
    )


def live_summary(listing: Listing, now: datetime) -> schemas.LiveState:
    """The live state of a listing without its bids (numbers only: no identities, no reserve)."""
    open_ = listing.status in (ListingStatus.ANNOUNCED.value, ListingStatus.BIDDING.value)
    low, high = bid_range(listing)
    return schemas.LiveState(
        listing_id=listing.id,
        status=listing.status,
        current_price=listing.current_price_fen,
        starting_price=listing.starting_price_fen,
        next_min_bid=low if open_ else None,
        next_max_bid=high if open_ else None,
        min_increment=listing.min_increment_fen,
        max_increment=listing.max_increment_fen,
        bid_count=listing.bid_count,
        bidding_starts_at=listing.bidding_starts_at,
        current_end_at=end_of(listing),
        server_time=now,
        extensions_used=listing.extensions_used,
        max_extensions=listing.max_extensions,
        extension_minutes=listing.extension_minutes,
        bids=[],
    )


def bid_event(listing: Listing, bid: Bid, bidder_number: str | None) -> dict[str, Any]:
    """What the watchers are sent: the bid and the live state right after it (server time: the bid's)."""
    return {
        "type": "bid",
        "bid": live_bid(bid, bidder_number).model_dump(mode="json"),
        "extended": bid.extended_end_at is not None,
        "live": live_summary(listing, bid.placed_at).model_dump(mode="json"),
    }


async def public_listing(session: AsyncSession, listing_id: int) -> Listing:
    listing = await session.get(Listing, listing_id, populate_existing=True)
    if listing is None or listing.status not in PUBLIC_STATUSES:
        raise NotFound("交易项目", "listing")
    return listing


async def bids_after(session: AsyncSession, listing_id: int, after: int = 0) -> list[schemas.LiveBid]:
    # the shown columns only: no Bid objects (with their addresses and fingerprints) to build and track
    rows = await session.execute(
        select(Bid.seq, Bid.amount_fen, Bid.placed_at, Bid.extended_end_at, Registration.bidder_number)
        .join(Registration, Registration.id == Bid.registration_id)
        .where(Bid.listing_id == listing_id, Bid.seq > after)
        .order_by(Bid.seq)
    )
    return [live_bid(row, row.bidder_number) for row in rows]


async def live_state(session: AsyncSession, listing_id: int, now: datetime) -> schemas.LiveState:
    listing = await public_listing(session, listing_id)
    state = live_summary(listing, now)
    state.bids = await bids_after(session, listing_id)
    return state


def receipt(placed: Placed) -> schemas.BidPlaced:
    """What the bidder is told: their bid and the live state after it, from what placing it already read."""
    bid, listing = placed.bid, placed.listing
    return schemas.BidPlaced(
        seq=bid.seq,
        amount=bid.amount_fen,
        bidder_number=placed.bidder_number or "",
        placed_at=bid.placed_at,
        current_price=listing.current_price_fen or bid.amount_fen,
        bid_count=listing.bid_count,
        current_end_at=end_of(listing),
        extensions_used=listing.extensions_used,
        extended=bid.extended_end_at is not None,
    )


# ---- opening on time -------------------------------------------------------------------------------------


def _due_to_open(now: datetime) -> Any:
    return and_(
        Listing.status == ListingStatus.ANNOUNCED.value,
        Listing.bidding_starts_at <= now,
        func.coalesce(Listing.current_end_at, Listing.bidding_ends_at) > now,
    )


def _due_to_close(now: datetime) -> Any:
    return and_(
        or_(Listing.status == ListingStatus.BIDDING.value, Listing.status == ListingStatus.ANNOUNCED.value),
        func.coalesce(Listing.current_end_at, Listing.bidding_ends_at) <= now,
    )


async def open_listing(session: AsyncSession, listing_id: int, now: datetime) -> bool:
    """Move an announced listing whose window has begun to bidding; False if it was not (or no longer) due."""
    async with session.begin_nested():
        listing = await lock_listing(session, listing_id)
        end = end_of(listing)
        due = listing.status == ListingStatus.ANNOUNCED.value and listing.bidding_starts_at <= now < end
        if due:
            transition(session, listing, ListingStatus.BIDDING, None, "竞价开始", now)
            listing.current_end_at = end
    await session.commit()
    return due


async def open_due(session: AsyncSession, now: datetime) -> list[int]:
    """Open every listing whose bidding window has begun: a set-based query, then each under its lock."""
    ids = list(await session.scalars(select(Listing.id).where(_due_to_open(now)).order_by(Listing.id)))
    await session.commit()  # end the read before taking locks
    return [listing_id for listing_id in ids if await open_listing(session, listing_id, now)]


async def close_due(session: AsyncSession, now: datetime, publish: Publish | None = None) -> list[int]:
    """Close every listing whose (extended) end has passed, each under its lock with a re-check, so several
    workers may run this at once; returns the ids this call closed."""
    from sanzi.auction.services.results import close_listing

    ids = list(await session.scalars(select(Listing.id).where(_due_to_close(now)).order_by(Listing.id)))
    await session.commit()
    closed = []
    for listing_id in ids:
        try:
            await close_listing(session, listing_id, now, publish)
        except DomainError as refused:  # closed by another worker meanwhile, or no longer due
            await session.commit()
            log.info("listing %s not closed: %s", listing_id, refused)
            continue
        closed.append(listing_id)
    return closed
