"""A hypothesis state machine over the bidding engine with an injected clock: bid (a random bidder, an amount
around the valid range), advance time (also to the end and one microsecond before it), close. After every step
the stored auction must satisfy the invariants and agree with a small independent model of the rules."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sanzi.auction.models import Bid, Listing, ListingStatus
from sanzi.auction.services.bidding import place_bid
from sanzi.auction.services.results import close_listing
from sanzi.platform.database import create_engine
from sanzi.platform.problems import DomainError
from tests.auction.factories import make_live_listing
from tests.conftest import load_villages, make_settings, run_sync

T = TypeVar("T")
START = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
STARTING, MIN_INC, MAX_INC, RESERVE = 100_000_00, 1_000_00, 5_000_00, 103_000_00
EXTENSION, MAX_EXTENSIONS = timedelta(minutes=5), 3
#: amounts relative to the lowest acceptable bid: below, at and just above both edges, and far off
OFFSETS = [-100_000, -1, 0, 1, 50_000, 250_000, MAX_INC - MIN_INC, MAX_INC - MIN_INC + 1, 1_000_000]


def test_bidding_state_machine(empty_database_url: str) -> None:
    run_sync(lambda: load_villages(empty_database_url))
    loop = asyncio.new_event_loop()
    engine = create_engine(make_settings(empty_database_url))
    maker = async_sessionmaker(engine, expire_on_commit=False)

    def run(coroutine: Coroutine[Any, Any, T]) -> T:
        return loop.run_until_complete(coroutine)

    class Auction(RuleBasedStateMachine):
        session: AsyncSession

        @initialize()
        def open_listing(self) -> None:
            self.session = maker()
            live = run(
                make_live_listing(
                    self.session,
                    bidders=3,
                    now=START,
                    ends_in=timedelta(minutes=30),
                    starting_price_fen=STARTING,
                    min_increment_fen=MIN_INC,
                    max_increment_fen=MAX_INC,
                    reserve_price_fen=RESERVE,
                    extension_minutes=5,
                    max_extensions=MAX_EXTENSIONS,
                )
            )
            self.listing_id = live.id
            self.bidders = [(b.bidder.id, b.registration.id) for b in live.bidders]
            # the model
            self.now = START
            self.end = START + timedelta(minutes=30)
            self.price: int | None = None
            self.leader: int | None = None
            self.count = 0
            self.extensions = 0
            self.closed = False
            self.keys = 0

        def teardown(self) -> None:
            if hasattr(self, "session"):
                run(self.session.close())

        @rule(who=st.integers(0, 2), offset=st.sampled_from(OFFSETS))
        def bid(self, who: int, offset: int) -> None:
            bidder_id, registration_id = self.bidders[who]
            low = STARTING if self.price is None else self.price + MIN_INC
            high = STARTING + MAX_INC if self.price is None else self.price + MAX_INC
            amount = low + offset
            expected = (
                not self.closed
                and self.now < self.end
                and registration_id != self.leader
                and low <= amount <= high
            )
            self.keys += 1
            try:
                placed, created = run(
                    place_bid(self.session, self.listing_id, bidder_id, amount, f"m{self.keys}", self.now)
                )
            except DomainError as refused:
                assert not expected, f"refused a valid bid: {refused}"
                return
            assert expected and created, f"accepted an invalid bid of {amount} (range {low}-{high})"
            self.count += 1
            assert placed.seq == self.count
            if self.end - self.now < EXTENSION and self.extensions < MAX_EXTENSIONS:
                self.end = self.now + EXTENSION
                self.extensions += 1
                assert placed.extended_end_at == self.end
            else:
                assert placed.extended_end_at is None
            self.price, self.leader = amount, registration_id

        @rule(step=st.sampled_from([timedelta(seconds=1), timedelta(minutes=1), timedelta(minutes=4, seconds=59),
                                    timedelta(minutes=5), timedelta(minutes=12)]))
        def advance(self, step: timedelta) -> None:
            self.now += step

        @rule(before=st.sampled_from([timedelta(0), timedelta(microseconds=1), timedelta(seconds=30)]))
        def advance_to_the_end(self, before: timedelta) -> None:
            self.now = max(self.now, self.end - before)

        @rule()
        def close(self) -> None:
            expected = not self.closed and self.now >= self.end
            try:
                run(close_listing(self.session, self.listing_id, self.now))
            except DomainError:
                assert not expected
                return
            assert expected
            self.closed = True

        @invariant()
        def stored_auction_is_consistent(self) -> None:
            if not hasattr(self, "listing_id"):
                return
            listing, bids = run(self._read())
            assert [b.seq for b in bids] == list(range(1, len(bids) + 1))
            assert all(a.amount_fen < b.amount_fen for a, b in zip(bids, bids[1:]))
            assert listing.bid_count == len(bids) == self.count
            assert listing.extensions_used <= listing.max_extensions and listing.extensions_used == self.extensions
            assert all(b.extended_end_at in (None, b.placed_at + EXTENSION) for b in bids)
            assert sum(b.extended_end_at is not None for b in bids) == listing.extensions_used
            assert listing.current_end_at == self.end and listing.current_price_fen == self.price
            if not self.closed:
                assert listing.status == ListingStatus.BIDDING.value and listing.winner_registration_id is None
                return
            top = bids[-1] if bids else None
            if top is not None and top.amount_fen >= RESERVE:
                assert listing.status == ListingStatus.SOLD.value
                assert listing.winner_registration_id == top.registration_id
                assert listing.final_price_fen == top.amount_fen
            else:
                assert listing.status == ListingStatus.FAILED.value and listing.winner_registration_id is None

        async def _read(self) -> tuple[Listing, list[Bid]]:
            async with maker() as session:
                listing = await session.get_one(Listing, self.listing_id)
                bids = list(await session.scalars(select(Bid).where(Bid.listing_id == self.listing_id).order_by(Bid.seq)))
                return listing, bids

    try:
        run_state_machine_as_test(
            Auction,
            settings=settings(
                max_examples=20,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        run(engine.dispose())
        loop.close()
