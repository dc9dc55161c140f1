"""The bidding fast path: an acceptable bid is one statement on PostgreSQL (two under the lock on SQLite);
under contention on one listing (separate connections, both databases) no bid is lost, doubled, reordered or
stamped backwards."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sanzi.auction.models import Bid, Listing
from sanzi.auction.services.bidding import place_bid
from sanzi.platform.database import create_engine
from sanzi.platform.problems import DomainError
from tests.auction.factories import LiveListing, make_live_listing
from tests.conftest import load_villages, make_settings

MIN_INC, MAX_INC = 1_000_00, 5_000_00


@pytest.fixture
async def own_engine(empty_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine of a database of its own, so that sessions really run on separate connections."""
    await load_villages(empty_database_url)
    engine = create_engine(make_settings(empty_database_url))
    try:
        yield engine
    finally:
        await engine.dispose()


class Statements:
    """The SQL statements an engine sends while recording (BEGIN and COMMIT are not statements here)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.seen: list[str] = []
        self.recording = False
        event.listen(engine.sync_engine, "before_cursor_execute", self._record)

        self.isolation: list[str | None] = []

    def _record(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.recording and not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "SELECT 1")):
            self.seen.append(" ".join(statement.split())[:60])
            self.isolation.append(conn.get_execution_options().get("isolation_level"))


async def test_an_acceptable_bid_is_one_statement_or_an_update_and_an_insert(own_engine: AsyncEngine) -> None:
    maker = async_sessionmaker(own_engine, expire_on_commit=False)
    now = datetime.now(UTC)
    async with maker() as session:
        live = await make_live_listing(session, bidders=2, now=now)
    statements = Statements(own_engine)
    async with maker() as session:
        await place_bid(session, live.id, live.bidders[0].bidder, 100_000_00, "first", now)
    async with maker() as session:
        statements.recording = True
        bid, created = await place_bid(session, live.id, live.bidders[1].bidder, 101_000_00, "second", now)
        statements.recording = False
    assert created and bid.seq == 2
    if own_engine.dialect.name == "postgresql":  # one writable CTE, outside a transaction block
        assert [s.split()[0].upper() for s in statements.seen] == ["WITH"], statements.seen
        assert "UPDATE" in statements.seen[0].upper() and statements.isolation == ["AUTOCOMMIT"]
    else:
        assert [s.split()[0].upper() for s in statements.seen] == ["UPDATE", "INSERT"], statements.seen
    async with maker() as session:
        stored = (await session.execute(select(Listing.bid_count, Listing.current_price_fen,
                                               Listing.leading_registration_id).where(Listing.id == live.id))).one()
        assert tuple(stored) == (2, 101_000_00, live.bidders[1].registration.id)
        row = await session.scalar(select(Bid).where(Bid.listing_id == live.id, Bid.seq == 2))
        assert row is not None and row.id == bid.id and row.client_key == "second" and row.placed_at == now

    # a refusal (the leader raising alone): the fast statement missed, one plain read gave the exact reason (on
    # PostgreSQL on the same connection, still outside a transaction block), and nothing changed
    statements.seen.clear()
    statements.isolation.clear()
    async with maker() as session:
        statements.recording = True
        with pytest.raises(DomainError) as refused:
            await place_bid(session, live.id, live.bidders[1].bidder, 102_000_00, "third", now)
        statements.recording = False
    assert refused.value.code == "already_leading"
    fast = "WITH" if own_engine.dialect.name == "postgresql" else "UPDATE"
    assert [s.split()[0].upper() for s in statements.seen] == [fast, "SELECT"], statements.seen
    if own_engine.dialect.name == "postgresql":
        assert statements.isolation == ["AUTOCOMMIT", "AUTOCOMMIT"]
    async with maker() as session:
        again = (await session.execute(select(Listing.bid_count, Listing.current_price_fen,
                                              Listing.leading_registration_id).where(Listing.id == live.id))).one()
        assert tuple(again) == tuple(stored)


async def test_the_connection_of_a_bid_outside_a_transaction_is_transactional_again(
    empty_database_url: str,
) -> None:
    """On PostgreSQL the fast path runs its statement in autocommit; the pool must hand that connection back
    as it was, so the next request's statements share one transaction (and a rollback undoes them)."""
    if not empty_database_url.startswith("postgresql"):
        pytest.skip("SQLite runs the fast path in a transaction")
    await load_villages(empty_database_url)
    engine = create_engine(make_settings(empty_database_url), pool_size=1)
    try:
        maker = async_sessionmaker(engine, expire_on_commit=False)
        now = datetime.now(UTC)
        async with maker() as session:
            live = await make_live_listing(session, bidders=2, now=now)
        async with maker() as session:
            bid, created = await place_bid(session, live.id, live.bidders[0].bidder, 100_000_00, "first", now)
            assert created and bid.seq == 1
            first = await session.scalar(text("select txid_current()"))
            second = await session.scalar(text("select txid_current()"))
            assert first == second  # one transaction, not a statement each
            await session.execute(update(Listing).where(Listing.id == live.id).values(bid_count=99))
            await session.rollback()
        async with maker() as session:
            assert await session.scalar(select(Listing.bid_count).where(Listing.id == live.id)) == 1
    finally:
        await engine.dispose()


async def bid_until_done(
    maker: async_sessionmaker[AsyncSession],
    live: LiveListing,
    who: int,
    outcomes: list[tuple[int, str, int, int, bool] | tuple[int, str, int, str]],
    rng: random.Random,
    tries: int,
) -> None:
    """One bidder on its own sessions: bid the lowest allowed or a little more, again and again; every third
    acknowledged bid is sent again with the same key (a replay)."""
    bidder = live.bidders[who].bidder
    price: int | None = None
    for n in range(tries):
        low = 100_000_00 if price is None else price + MIN_INC
        amount = low + MIN_INC * rng.choice([0, 0, 1, 2])
        key = f"{who}-{n}"
        async with maker() as session:
            try:
                bid, created = await place_bid(
                    session, live.id, bidder, amount, key, lambda: datetime.now(UTC)
                )
            except DomainError as refused:
                outcomes.append((who, key, amount, refused.code or ""))
                current = await session.scalar(select(Listing.current_price_fen).where(Listing.id == live.id))
                price = current
                await asyncio.sleep(rng.uniform(0, 0.005))
                continue
        outcomes.append((who, key, amount, bid.seq, created))
        price = amount
        if n % 3 == 0:
            async with maker() as session:
                repeat, again = await place_bid(session, live.id, bidder, amount, key, lambda: datetime.now(UTC))
            outcomes.append((who, key, amount, repeat.seq, again))
            assert not again and repeat.seq == bid.seq and repeat.id == bid.id


async def test_contended_bids_on_one_listing_are_gapless_increasing_and_stamped_in_order(
    own_engine: AsyncEngine,
) -> None:
    maker = async_sessionmaker(own_engine, expire_on_commit=False)
    async with maker() as session:
        live = await make_live_listing(session, bidders=8, ends_in=timedelta(hours=2), max_extensions=0)
    outcomes: list[Any] = []
    await asyncio.gather(
        *(bid_until_done(maker, live, who, outcomes, random.Random(who), tries=12) for who in range(8))
    )

    async with maker() as session:
        bids = list(await session.scalars(select(Bid).where(Bid.listing_id == live.id).order_by(Bid.seq)))
        listing = await session.get_one(Listing, live.id)
    assert len(bids) >= 10, outcomes
    assert [b.seq for b in bids] == list(range(1, len(bids) + 1))  # gapless, one bid per seq
    assert bids[0].amount_fen >= 100_000_00
    for before, after in zip(bids, bids[1:]):
        assert before.amount_fen + MIN_INC <= after.amount_fen <= before.amount_fen + MAX_INC
        assert after.placed_at >= before.placed_at, (before.seq, before.placed_at, after.placed_at)
        assert after.registration_id != before.registration_id  # nobody outbid themselves
    assert listing.bid_count == len(bids) and listing.current_price_fen == bids[-1].amount_fen
    assert listing.leading_registration_id == bids[-1].registration_id

    # every acknowledged bid is stored once under its key with the seq it was told; nothing refused is stored
    by_key = {b.client_key: b for b in bids}
    acknowledged = [o for o in outcomes if len(o) == 5]
    created = [o for o in acknowledged if o[4]]
    assert len(created) == len(bids)
    for who, key, amount, seq, _ in acknowledged:
        stored = by_key[key]
        assert (stored.seq, stored.amount_fen, stored.registration_id) == (
            seq, amount, live.bidders[who].registration.id
        )
    refused = [o for o in outcomes if len(o) == 4]
    assert refused, "no contention: nothing proves the locked path's refusals"
    assert all(o[1] not in by_key for o in refused)
    assert {o[3] for o in refused} <= {"amount_too_low", "already_leading"}, refused
