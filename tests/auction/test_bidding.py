"""Live bidding: acceptance, every refusal with nothing written, idempotency, extensions and the rate limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Bid, Listing, ListingStatus
from sanzi.auction.ratelimit import STATE_KEY, BidRateLimiter
from sanzi.auction.services.bidding import place_bid
from sanzi.platform.models import Role
from sanzi.platform.problems import DomainError
from tests.auction.factories import LiveListing, add_bidder, make_live_listing
from tests.conftest import serve

URL = "/api/listings/{}/bids"


async def snapshot(db: AsyncSession, listing_id: int) -> tuple[Any, ...]:
    """Everything a bid may change: the stored bids and the listing's live state."""
    bids = await db.scalar(select(func.count()).select_from(Bid).where(Bid.listing_id == listing_id))
    row = (
        await db.execute(
            select(
                Listing.status,
                Listing.current_price_fen,
                Listing.leading_registration_id,
                Listing.bid_count,
                Listing.current_end_at,
                Listing.extensions_used,
            ).where(Listing.id == listing_id)
        )
    ).one()
    return (bids, *row)


async def bid(client: httpx.AsyncClient, live: LiveListing, who: int, amount: Any, key: str, **headers: str) -> httpx.Response:
    return await client.post(
        URL.format(live.id), json={"amount": amount, "client_key": key}, headers={**live.bidders[who].headers, **headers}
    )


async def test_bids_are_accepted_shown_by_number_and_idempotent(client: httpx.AsyncClient, db: AsyncSession) -> None:
    live = await make_live_listing(db, bidders=2)
    first = await bid(client, live, 0, "100000.00", "k1", **{"X-Device-Fingerprint": "dev-1"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["seq"] == 1 and body["amount"] == "100000.00" and body["current_price"] == "100000.00"
    assert body["bidder_number"] == live.bidders[0].number and body["bid_count"] == 1 and body["extended"] is False
    second = await bid(client, live, 1, "101500.00", "k2")
    assert second.status_code == 201 and second.json()["seq"] == 2
    again = await bid(client, live, 0, "100000.00", "k1")  # a retry of the first bid
    assert again.status_code == 200 and again.json()["seq"] == 1
    assert (await snapshot(db, live.id))[:5] == (
        2, "bidding", 101500_00, live.bidders[1].registration.id, 2
    )
    stored = await db.scalar(select(Bid).where(Bid.listing_id == live.id, Bid.seq == 1))
    assert stored is not None and stored.device_fingerprint == "dev-1" and stored.ip_address

    view = (await client.get(f"/api/listings/{live.id}/live")).json()
    assert view["current_price"] == "101500.00" and view["bid_count"] == 2
    assert view["next_min_bid"] == "102500.00" and view["next_max_bid"] == "106500.00"
    assert [(b["seq"], b["bidder_number"], b["amount"]) for b in view["bids"]] == [
        (1, live.bidders[0].number, "100000.00"),
        (2, live.bidders[1].number, "101500.00"),
    ]
    text = str(view)
    assert live.bidders[0].bidder.name not in text and "reserve" not in text


REFUSALS = [
    # (who, amount, client key, status, code)
    (0, "99999.99", "low", 422, "amount_too_low"),  # below the starting price
    (0, "105000.01", "high", 422, "amount_too_high"),  # above starting + maximum increment
    (0, "abc", "bad", 400, None),
    (0, 100000.5, "float", 400, None),
    (0, "-100000.00", "neg", 400, None),
    (0, "100000.001", "fen", 400, None),
    (0, "0", "zero", 400, None),
]


@pytest.mark.parametrize(("who", "amount", "key", "status", "code"), REFUSALS)
async def test_bad_first_bids_are_refused_and_change_nothing(
    client: httpx.AsyncClient, db: AsyncSession, who: int, amount: Any, key: str, status: int, code: str | None
) -> None:
    live = await make_live_listing(db, bidders=1)
    before = await snapshot(db, live.id)
    response = await bid(client, live, who, amount, key)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if code:
        assert response.json()["type"].endswith(code) and response.json()["errors"][0]["field"] == "amount"
    else:
        assert response.json()["errors"][0]["field"] == "amount"
    assert await snapshot(db, live.id) == before


async def test_later_bids_need_the_increment_and_the_leader_cannot_raise_alone(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    live = await make_live_listing(db, bidders=3)
    assert (await bid(client, live, 0, "100000.00", "a")).status_code == 201
    before = await snapshot(db, live.id)
    for who, amount, key, code in [
        (1, "100999.99", "b-low", "amount_too_low"),
        (1, "100000.00", "b-same", "amount_too_low"),  # the same price as the leader
        (1, "105000.01", "b-high", "amount_too_high"),
        (0, "101000.00", "a-again", "already_leading"),
    ]:
        response = await bid(client, live, who, amount, key)
        assert response.status_code in (409, 422) and response.json()["type"].endswith(code), response.text
        assert await snapshot(db, live.id) == before
    assert (await bid(client, live, 1, "105000.00", "b-max")).status_code == 201


async def test_who_may_bid(client: httpx.AsyncClient, db: AsyncSession, make_user: Any) -> None:
    live = await make_live_listing(db, bidders=1)
    unqualified = await add_bidder(db, live.listing, qualified=False)
    no_deposit = await add_bidder(db, live.listing, deposit=False)
    other = await make_live_listing(db, bidders=1)  # registered elsewhere only
    committee = await make_user(Role.COMMITTEE, village_code=live.listing.village_code)
    await db.commit()
    before = await snapshot(db, live.id)
    cases = [
        (unqualified.headers, 403, "not_qualified"),
        (no_deposit.headers, 403, "deposit_not_held"),
        (other.bidders[0].headers, 403, "not_registered"),
        (committee.headers, 403, None),
        ({}, 401, None),
    ]
    for index, (headers, status, code) in enumerate(cases):
        response = await client.post(
            URL.format(live.id), json={"amount": "100000.00", "client_key": f"w{index}"}, headers=headers
        )
        assert response.status_code == status, response.text
        if code:
            assert response.json()["type"].endswith(code)
        assert await snapshot(db, live.id) == before


async def test_qualified_bidder_whose_deposit_was_refunded_cannot_bid(db: AsyncSession) -> None:
    live = await make_live_listing(db, bidders=1)
    live.bidders[0].registration.deposit_state = "refunded"
    await db.commit()
    with pytest.raises(DomainError) as refused:
        await place_bid(db, live.id, live.bidders[0].bidder, 100000_00, "k", datetime.now(UTC))
    assert refused.value.code == "deposit_not_held"
    assert (await snapshot(db, live.id))[0] == 0


async def test_a_bidder_account_without_a_bidder_profile_is_refused_and_nothing_changes(
    client: httpx.AsyncClient, db: AsyncSession, make_user: Any
) -> None:
    """A bidder's login whose profile (实名信息) was never created is told so, over HTTP as through the
    service, after the listing's own checks (an unknown listing is still 404)."""
    live = await make_live_listing(db, bidders=1)
    account = await make_user(Role.BIDDER)
    before = await snapshot(db, live.id)
    response = await client.post(
        URL.format(live.id), json={"amount": "100000.00", "client_key": "np"}, headers=account.headers
    )
    assert response.status_code == 403 and response.json()["type"].endswith("not_a_bidder"), response.text
    with pytest.raises(DomainError) as refused:
        await place_bid(db, live.id, account.user, 100000_00, "np2", datetime.now(UTC))
    assert refused.value.code == "not_a_bidder"
    unknown = await client.post(
        URL.format(10**9), json={"amount": "100000.00", "client_key": "np3"}, headers=account.headers
    )
    assert unknown.status_code == 404
    assert await snapshot(db, live.id) == before


async def test_reused_client_key_and_unknown_listing(client: httpx.AsyncClient, db: AsyncSession) -> None:
    live = await make_live_listing(db, bidders=2)
    assert (await bid(client, live, 0, "100000.00", "same")).status_code == 201
    before = await snapshot(db, live.id)
    other_amount = await bid(client, live, 0, "101000.00", "same")
    assert other_amount.status_code == 409 and other_amount.json()["errors"][0]["field"] == "client_key"
    other_bidder = await bid(client, live, 1, "100000.00", "same")
    assert other_bidder.status_code == 409
    assert await snapshot(db, live.id) == before
    bids = await db.scalar(select(func.count()).select_from(Bid))
    unknown = await client.post(
        URL.format(10**9), json={"amount": "100000.00", "client_key": "x"}, headers=live.bidders[0].headers
    )
    assert unknown.status_code == 404
    assert await db.scalar(select(func.count()).select_from(Bid)) == bids


async def test_outside_the_window(client: httpx.AsyncClient, db: AsyncSession) -> None:
    not_yet = await make_live_listing(
        db, bidders=1, status=ListingStatus.ANNOUNCED, starts_in=timedelta(hours=1), ends_in=timedelta(hours=2)
    )
    over = await make_live_listing(db, bidders=1, starts_in=timedelta(hours=-2), ends_in=timedelta(seconds=-1))
    for live in (not_yet, over):
        before = await snapshot(db, live.id)
        response = await bid(client, live, 0, "100000.00", "k")
        assert response.status_code == 409 and response.json()["detail"] == "不在竞价时间内"
        assert await snapshot(db, live.id) == before


async def test_first_bid_opens_an_announced_listing_whose_window_began(db: AsyncSession) -> None:
    now = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    live = await make_live_listing(db, status=ListingStatus.ANNOUNCED, now=now, starts_in=timedelta(0))
    placed, created = await place_bid(db, live.id, live.bidders[0].bidder, 100000_00, "k", now)
    assert created and placed.seq == 1
    assert (await snapshot(db, live.id))[1] == "bidding"


async def test_extension_arithmetic_and_cap(db: AsyncSession) -> None:
    now = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    live = await make_live_listing(
        db, bidders=2, now=now, ends_in=timedelta(minutes=30), extension_minutes=5, max_extensions=2
    )
    end = now + timedelta(minutes=30)
    a, b = (x.bidder for x in live.bidders)
    step = timedelta(minutes=5)

    first, _ = await place_bid(db, live.id, a, 100000_00, "1", end - step)  # exactly N minutes left: no extension
    assert first.extended_end_at is None
    second, _ = await place_bid(db, live.id, b, 101000_00, "2", end - step + timedelta(microseconds=1))
    assert second.extended_end_at == second.placed_at + step
    end = second.extended_end_at
    third, _ = await place_bid(db, live.id, a, 102000_00, "3", end - timedelta(microseconds=1))
    assert third.extended_end_at == third.placed_at + step  # the second and last extension
    end = third.extended_end_at
    fourth, _ = await place_bid(db, live.id, b, 103000_00, "4", end - timedelta(seconds=1))
    assert fourth.extended_end_at is None  # the cap is reached
    state = await snapshot(db, live.id)
    assert state[0] == 4 and state[5] == end and state[6] == 2
    with pytest.raises(DomainError) as refused:
        await place_bid(db, live.id, a, 104000_00, "5", end)  # at the end itself: outside the window
    assert refused.value.code == "outside_window"
    assert await snapshot(db, live.id) == state


# ---- the rate limit --------------------------------------------------------------------------------------


async def test_rate_limit_refuses_with_retry_after_and_writes_nothing(
    app: Any, db: AsyncSession
) -> None:
    live = await make_live_listing(db, bidders=2)
    app.state[STATE_KEY] = BidRateLimiter(rate=2, clock=lambda: 1_000_000.0)  # one frozen window
    async with serve(app) as client:
        assert (await bid(client, live, 0, "100000.00", "r1")).status_code == 201
        assert (await bid(client, live, 0, "101000.00", "r2")).status_code == 409  # counted, refused as leader
        before = await snapshot(db, live.id)
        third = await bid(client, live, 0, "101000.00", "r3")
        assert third.status_code == 429 and third.headers["retry-after"] == "1"
        assert third.json()["type"].endswith("rate_limited")
        assert await snapshot(db, live.id) == before
        assert (await bid(client, live, 1, "101000.00", "other")).status_code == 201  # per bidder


async def test_rate_limit_in_redis_is_shared_and_falls_back_when_redis_fails(redis_available: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_available)
    try:
        clock = lambda: 2_000_000.0  # noqa: E731
        worker_a, worker_b = BidRateLimiter(2, redis, clock), BidRateLimiter(2, redis, clock)
        key = f"test-{datetime.now(UTC).timestamp()}"
        assert [await worker_a.hit(key), await worker_b.hit(key), await worker_a.hit(key)] == [0, 0, 1]
    finally:
        await redis.aclose()
    broken = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    limiter = BidRateLimiter(1, broken, lambda: 3_000_000.0)
    assert [await limiter.hit("k"), await limiter.hit("k")] == [0, 1]  # in process, still limiting
    await broken.aclose()
