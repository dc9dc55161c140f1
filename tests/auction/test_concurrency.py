"""Many bidders at once on two app workers sharing PostgreSQL and Redis: no bid lost, doubled or reordered.

Each listing gets a window of a few seconds, a one-minute extension cycle and a cap on extensions. The first
bids extend it to a minute past them; rather than wait that minute, the test moves the listing's stored times
back (``advance_clock``) so the end comes a couple of seconds later while bidders are still bidding, and the
workers' own schedulers close it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.auction.harness import (
    AppServer,
    Attempt,
    BidLog,
    RedisServer,
    SeededBidder,
    SeededListing,
    Watcher,
    advance_clock,
    assert_watched_every_bid,
    auction_database,  # noqa: F401 - fixture
    check_invariants,
    module_redis,  # noqa: F401 - fixture
    post_bid,
    run_bidders,
    seconds_to_end,
    seed_listing,
    start_servers,
    stored_bids,
    summary,
    time_inversions,
    wait_closed,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

#: seconds of bidding before the clock is moved on to a couple of seconds before the (extended) end
BIDDING_SECONDS = 4.0
MAX_BIDDING_SECONDS = 25.0
ENOUGH_BIDS = 20
END_AFTER_ADVANCE = 2.0


@pytest.fixture(scope="module")
def servers(
    auction_database: str,  # noqa: F811
    module_redis: RedisServer,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[AppServer]]:
    workers = start_servers(2, auction_database, module_redis.url, tmp_path_factory.mktemp("workers"))
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()


async def end_soon(
    database_url: str, listings: list[SeededListing], log: BidLog, min_acknowledged: int = ENOUGH_BIDS
) -> None:
    """Once each listing has had a real burst of bidding (enough acknowledged bids, or the time is up), bring
    its end to a couple of seconds away. Waiting on the count rather than the clock keeps the proof as strong
    on a slow, busy machine as on a quiet one: the extensions keep the auction open meanwhile."""
    deadline = time.monotonic() + MAX_BIDDING_SECONDS
    await asyncio.sleep(BIDDING_SECONDS)
    while time.monotonic() < deadline and any(
        len(log.acknowledged(listing.id)) < min_acknowledged for listing in listings
    ):
        await asyncio.sleep(0.2)
    for listing in listings:
        remaining = await seconds_to_end(database_url, listing.id)
        if remaining > END_AFTER_ADVANCE:
            await advance_clock(database_url, listing.id, remaining - END_AFTER_ADVANCE)


async def test_many_bidders_on_one_listing_lose_no_bid(
    auction_database: str, servers: list[AppServer]  # noqa: F811
) -> None:
    urls = [server.base_url for server in servers]
    listing = await seed_listing(
        auction_database, bidders=30, window_seconds=15, max_extensions=3, reserve_price_fen=105_000_00
    )
    log = BidLog()
    watchers = [
        Watcher(listing.id, [urls[0]]),
        Watcher(listing.id, [urls[1]]),
        # drops its connection after a few events and comes back to the other worker with Last-Event-ID
        Watcher(listing.id, [urls[0], urls[1]], disconnect_after=5),
    ]
    watching = [asyncio.create_task(w.run(seconds=40)) for w in watchers]
    await asyncio.sleep(0.3)  # let the watchers subscribe

    await asyncio.gather(
        run_bidders(urls, [listing], log, max_attempts=60, seconds=30),
        end_soon(auction_database, [listing], log),
    )
    await wait_closed(urls[1], listing.id)
    await asyncio.wait_for(asyncio.gather(*watching), 15)

    acknowledged = log.acknowledged(listing.id)
    print(f"one listing: {summary(log)}; watcher reconnects {[w.reconnects for w in watchers]}")
    assert len(acknowledged) >= 20, f"too few bids got through to prove anything: {summary(log)}"
    assert any(a.server == urls[0] for a in acknowledged) and any(a.server == urls[1] for a in acknowledged)
    bids = await check_invariants(auction_database, urls[0], listing, log)
    assert sum(1 for b in bids if b.extended_end_at) == listing.max_extensions  # the cap was reached
    for watcher in watchers:
        assert_watched_every_bid(watcher, len(bids))
    assert watchers[2].reconnects >= 1

    # after the close: a late retry of an acknowledged bid still answers that bid, and nothing new is written
    first = acknowledged[0]
    bidder = next(b for b in listing.bidders if b.number == first.bidder_number)
    repeat = await post_with_client(urls[1], listing, bidder, first.client_key, first.amount_fen)
    assert repeat.status == 200 and repeat.body["seq"] == first.body["seq"], repeat
    late = await post_with_client(urls[0], listing, bidder, "after-the-close", bids[-1].amount_fen * 2)
    assert late.status in (403, 409), late  # refused (the reason may be the refunded deposit)
    # a watcher arriving after the close catches up from any sequence number
    replay = Watcher(listing.id, [urls[1]], after=len(bids) - 3)
    await replay.run(seconds=10)
    assert replay.closed and replay.seqs == list(range(len(bids) - 2, len(bids) + 1))
    assert len(await check_invariants(auction_database, urls[1], listing, log)) == len(bids)


async def test_several_listings_at_once(
    auction_database: str, servers: list[AppServer]  # noqa: F811
) -> None:
    urls = [server.base_url for server in servers]
    listings = [
        # no reserve; a reserve met at the start; a reserve nobody reaches (流拍)
        await seed_listing(auction_database, bidders=8, window_seconds=15, max_extensions=2),
        await seed_listing(auction_database, bidders=8, window_seconds=15, max_extensions=4,
                           reserve_price_fen=100_000_00),
        await seed_listing(auction_database, bidders=8, window_seconds=15, max_extensions=1,
                           reserve_price_fen=10_000_000_00),
    ]
    log = BidLog()
    watchers = [Watcher(listing.id, [urls[n % 2]]) for n, listing in enumerate(listings)]
    watching = [asyncio.create_task(w.run(seconds=40)) for w in watchers]
    await asyncio.sleep(0.3)

    await asyncio.gather(
        run_bidders(urls, listings, log, max_attempts=50, seconds=30, seed=11),
        end_soon(auction_database, listings, log, min_acknowledged=8),
    )
    for listing in listings:
        await wait_closed(urls[0], listing.id)
    await asyncio.wait_for(asyncio.gather(*watching), 15)

    for listing, watcher in zip(listings, watchers):
        assert len(log.acknowledged(listing.id)) >= 5, summary(log, listing.id)
        bids = await check_invariants(auction_database, urls[1], listing, log)
        assert_watched_every_bid(watcher, len(bids))
    async with httpx.AsyncClient(timeout=10) as http:
        results = [(await http.get(f"{urls[0]}/api/listings/{x.id}/result")).json() for x in listings]
    outcomes = [result["outcome"] for result in results]
    assert outcomes == ["sold", "sold", "failed"]


async def test_bid_history_times_follow_the_sequence(
    auction_database: str, servers: list[AppServer]  # noqa: F811
) -> None:
    """The bid history is a public record read in sequence order: bid n+1 is not stamped earlier than bid n.

    (The extension rule is computed from these stamps, so they must be the order in which bids took the lock.)
    """
    urls = [server.base_url for server in servers]
    listing = await seed_listing(auction_database, bidders=25, window_seconds=600, max_extensions=0)
    log = BidLog()
    await run_bidders(
        urls, [listing], log, max_attempts=120, seconds=30, seed=13,
        stop=lambda: len(log.acknowledged(listing.id)) >= 30,
    )
    bids = await stored_bids(auction_database, listing.id)
    print(f"history: {len(bids)} bids, {summary(log)}, stamped out of order: {time_inversions(bids)}")
    assert len(bids) >= 20, summary(log)
    assert time_inversions(bids) == [], "(seq, ms earlier than the bid before it)"


async def post_with_client(
    server: str, listing: SeededListing, bidder: SeededBidder, key: str, amount_fen: int
) -> Attempt:
    async with httpx.AsyncClient(timeout=10) as http:
        return await post_bid(http, server, listing.id, bidder, key, amount_fen)
