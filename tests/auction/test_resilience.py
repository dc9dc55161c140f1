"""Failures mid-auction: a worker killed with SIGKILL, Redis stopped. No acknowledged bid is lost either way,
bidding goes on, watchers catch up, and the auction closes with every invariant of the concurrency proof."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auction.harness import (
    AppServer,
    BidLog,
    RedisServer,
    Watcher,
    advance_clock,
    assert_watched_every_bid,
    auction_database,  # noqa: F401 - fixture
    check_invariants,
    module_redis,  # noqa: F401 - fixture
    own_redis,  # noqa: F401 - fixture
    run_bidders,
    seconds_to_end,
    seed_listing,
    start_servers,
    summary,
    wait_closed,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def workers(database_url: str, redis: RedisServer, directory: Path) -> Iterator[list[AppServer]]:
    servers = start_servers(2, database_url, redis.url, directory)
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def servers_on_shared_redis(
    auction_database: str, module_redis: RedisServer, tmp_path: Path  # noqa: F811
) -> Iterator[list[AppServer]]:
    yield from workers(auction_database, module_redis, tmp_path)


@pytest.fixture
def servers_on_own_redis(
    auction_database: str, own_redis: RedisServer, tmp_path: Path  # noqa: F811
) -> Iterator[list[AppServer]]:
    yield from workers(auction_database, own_redis, tmp_path)


async def finish(database_url: str, listing_id: int) -> None:
    """Bring the end to a couple of seconds away (see test_concurrency: the extension cycle is a minute)."""
    remaining = await seconds_to_end(database_url, listing_id)
    if remaining > 2:
        await advance_clock(database_url, listing_id, remaining - 2)


async def all_healthy(urls: list[str], seconds: float = 10.0) -> bool:
    """Whether every worker answers its health check with 200 (database and Redis ok) within ``seconds``."""
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline:
            try:
                answers = [(await http.get(f"{url}/api/health")).status_code for url in urls]
                if answers == [200] * len(urls):
                    return True
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    return False


async def test_worker_killed_mid_auction_loses_no_acknowledged_bid(
    auction_database: str, servers_on_shared_redis: list[AppServer]  # noqa: F811
) -> None:
    victim, survivor = servers_on_shared_redis
    in_use = [victim.base_url, survivor.base_url]  # the bidders' workers; the dead one is dropped later
    listing = await seed_listing(auction_database, bidders=20, window_seconds=15, max_extensions=3)
    log = BidLog()
    on_victim = Watcher(listing.id, [victim.base_url, survivor.base_url])  # falls over to the survivor
    on_survivor = Watcher(listing.id, [survivor.base_url])
    watching = [asyncio.create_task(w.run(seconds=40)) for w in (on_victim, on_survivor)]
    await asyncio.sleep(0.3)
    killed_at: list[int] = []

    async def kill_then_finish() -> None:
        await asyncio.sleep(2.0)
        killed_at.append(len(log.attempts))
        await asyncio.to_thread(victim.kill)
        await asyncio.sleep(0.5)  # bidders keep picking the dead worker a moment, as a load balancer might
        in_use.remove(victim.base_url)
        await asyncio.sleep(1.5)
        await finish(auction_database, listing.id)

    await asyncio.gather(run_bidders(in_use, [listing], log, max_attempts=60, seconds=30), kill_then_finish())
    await wait_closed(survivor.base_url, listing.id)
    await asyncio.wait_for(asyncio.gather(*watching), 15)

    unanswered = [a for a in log.attempts if a.error]
    print(f"kill: {summary(log)}; unanswered {len(unanswered)}; watcher reconnects {on_victim.reconnects}")
    after_kill = [a for a in log.attempts[killed_at[0]:] if a.acknowledged and a.server == survivor.base_url]
    assert after_kill, f"no bid was acknowledged after the kill: {summary(log)}"
    assert victim.process is not None and victim.process.returncode is not None
    bids = await check_invariants(auction_database, survivor.base_url, listing, log)
    assert_watched_every_bid(on_victim, len(bids))
    assert_watched_every_bid(on_survivor, len(bids))
    assert on_victim.reconnects >= 1


async def test_bidding_goes_on_while_redis_is_down(
    auction_database: str, own_redis: RedisServer, servers_on_own_redis: list[AppServer]  # noqa: F811
) -> None:
    urls = [server.base_url for server in servers_on_own_redis]
    listing = await seed_listing(auction_database, bidders=20, window_seconds=15, max_extensions=3)
    log = BidLog()
    watchers = [Watcher(listing.id, [urls[0]]), Watcher(listing.id, [urls[1]])]
    watching = [asyncio.create_task(w.run(seconds=45)) for w in watchers]
    await asyncio.sleep(0.3)
    down: dict[str, int] = {}

    async def outage_then_finish() -> None:
        await asyncio.sleep(1.5)
        down["from"] = len(log.attempts)
        await asyncio.to_thread(own_redis.stop)
        await asyncio.sleep(3.0)
        down["to"] = len(log.attempts)
        # the bids acknowledged during the outage reach the watchers without Redis (they poll the database)
        during = [a.seq for a in log.attempts[down["from"]:down["to"]] if a.acknowledged]
        deadline = time.monotonic() + 10
        while during and time.monotonic() < deadline:
            if all(w.seqs and w.seqs[-1] >= max(during) for w in watchers):
                break
            await asyncio.sleep(0.2)
        down["seen"] = all(w.seqs and w.seqs[-1] >= max(during, default=0) for w in watchers)
        await asyncio.to_thread(own_redis.start)
        down["healthy"] = await all_healthy(urls)
        await finish(auction_database, listing.id)

    await asyncio.gather(run_bidders(urls, [listing], log, max_attempts=80, seconds=35), outage_then_finish())
    await wait_closed(urls[0], listing.id)
    await asyncio.wait_for(asyncio.gather(*watching), 15)

    during_outage = [a for a in log.attempts[down["from"]:down["to"]] if a.status == 201]
    print(f"redis outage: {summary(log)}; 201 during the outage {len(during_outage)}; "
          f"watcher reconnects {[w.reconnects for w in watchers]}")
    assert len(during_outage) >= 3, f"bids were not accepted while Redis was down: {summary(log)}"
    assert {a.server for a in during_outage} == set(urls), "both workers kept accepting bids"
    assert down["healthy"], "the workers did not report Redis healthy again after its restart"
    assert down["seen"], f"watchers did not get the outage's bids: {[w.seqs[-3:] for w in watchers]}"
    bids = await check_invariants(auction_database, urls[1], listing, log)
    for watcher in watchers:
        assert_watched_every_bid(watcher, len(bids))
