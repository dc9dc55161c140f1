"""The listing lifecycle: which status may follow which, who may move it, and the lock every change takes."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Listing, ListingEvent
from sanzi.auction.models import ListingStatus as S
from sanzi.platform.models import User
from sanzi.platform.problems import DomainError, NotFound

#: allowed transitions; "system" moves are made by the scheduler (start of bidding, close)
TRANSITIONS: dict[S, set[S]] = {
    S.DRAFT: {S.SUBMITTED, S.TERMINATED},
    S.SUBMITTED: {S.APPROVED, S.DRAFT, S.TERMINATED},  # approved, or sent back to draft with a reason
    S.APPROVED: {S.ANNOUNCED, S.DRAFT, S.TERMINATED},  # sent back when its dates went stale
    S.ANNOUNCED: {S.BIDDING, S.SUSPENDED, S.TERMINATED},
    S.BIDDING: {S.CLOSED, S.SUSPENDED, S.TERMINATED},
    S.CLOSED: {S.SOLD, S.FAILED},
    S.SUSPENDED: {S.ANNOUNCED, S.TERMINATED},
    S.SOLD: set(),
    S.FAILED: set(),
    S.TERMINATED: set(),
}

STATUS_NAMES_ZH = {
    S.DRAFT: "草稿",
    S.SUBMITTED: "待审核",
    S.APPROVED: "已审核",
    S.ANNOUNCED: "公告中",
    S.BIDDING: "竞价中",
    S.CLOSED: "竞价结束",
    S.SOLD: "成交",
    S.FAILED: "流拍",
    S.SUSPENDED: "中止",
    S.TERMINATED: "终止",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


async def lock_listing(session: AsyncSession, listing_id: int) -> Listing:
    """Take the listing's lock and return its fresh row.

    The first statement is a write to the row (row lock on PostgreSQL, the write lock on SQLite), so bids,
    closing and lifecycle changes of one listing run one after another on every backend and worker.
    """
    result = await session.execute(
        update(Listing).where(Listing.id == listing_id).values(lock_version=Listing.lock_version + 1)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound("交易项目", "listing")
    listing = await session.scalar(
        select(Listing).where(Listing.id == listing_id).execution_options(populate_existing=True)
    )
    assert listing is not None
    return listing


def transition(
    session: AsyncSession, listing: Listing, to: S, actor: User | None, note: str | None = None, at: datetime | None = None
) -> ListingEvent:
    """Move the (locked) listing to ``to`` and record who did it, or refuse an invalid move clearly."""
    current = S(listing.status)
    if to not in TRANSITIONS[current]:
        raise DomainError(
            f"交易项目当前为“{STATUS_NAMES_ZH[current]}”，不能变为“{STATUS_NAMES_ZH[to]}”",
            f"a listing that is {current.value} cannot become {to.value}",
            field="status",
            status_code=409,
            code="invalid_transition",
        )
    event = ListingEvent(
        listing_id=listing.id,
        from_status=current.value,
        to_status=to.value,
        actor_id=actor.id if actor else None,
        at=at or utcnow(),
        note=note,
    )
    listing.status = to.value
    session.add(event)
    return event
