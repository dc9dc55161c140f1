"""The live stream: a reconnecting watcher catches up from the database by sequence number and misses nothing;
live events are forwarded without duplicates; a lost event or a failed channel backend is made good from the
database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.response.sse import ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sanzi.auction.live import watch_listing
from sanzi.auction.services.bidding import channels_publisher, listing_channel, place_bid
from sanzi.auction.services.results import close_listing
from tests.auction.factories import LiveListing, make_live_listing

NOW = datetime.now(UTC).replace(microsecond=0)


def parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            if name in ("event", "id", "data"):
                event[name] = value
        if event:
            events.append(event)
    return events


async def bidding_on(db: AsyncSession, count: int, **kwargs: Any) -> LiveListing:
    live = await make_live_listing(db, bidders=2, now=NOW, **kwargs)
    for seq in range(1, count + 1):
        await place_bid(db, live.id, live.bidders[seq % 2].bidder, 100_000_00 + (seq - 1) * 1_000_00, f"s{seq}",
                        NOW + timedelta(seconds=seq))
    return live


async def test_reconnect_catches_up_after_the_last_seen_bid(client: httpx.AsyncClient, db: AsyncSession) -> None:
    live = await bidding_on(db, 4, ends_in=timedelta(minutes=30))
    await close_listing(db, live.id, NOW + timedelta(minutes=30))
    async with client.stream("GET", f"/api/listings/{live.id}/stream", params={"after": 2}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = parse_sse((await response.aread()).decode())
    assert [(e["event"], e.get("id")) for e in events] == [("bid", "3"), ("bid", "4"), ("closed", None)]
    third = json.loads(events[0]["data"])
    assert third["bid"]["amount"] == "102000.00" and third["bid"]["bidder_number"] == live.bidders[1].number
    assert third["live"]["bid_count"] == 4 and "reserve" not in events[0]["data"]
    assert json.loads(events[2]["data"])["final_price"] == "103000.00"

    async with client.stream("GET", f"/api/listings/{live.id}/stream", headers={"Last-Event-ID": "3"}) as response:
        resumed = parse_sse((await response.aread()).decode())
    assert [e.get("id") for e in resumed] == ["4", None]
    assert (await client.get(f"/api/listings/{10**9}/stream")).status_code == 404


async def test_live_events_are_forwarded_once_and_a_gap_is_filled_from_the_database(
    db: AsyncSession, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    live = await bidding_on(db, 2, ends_in=timedelta(hours=2), extension_minutes=200, max_extensions=3)
    async with ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True) as plugin:
        stream: AsyncIterator[ServerSentEventMessage] = watch_listing(live.id, 1, plugin, session_maker)
        replayed = await anext(stream)
        assert (replayed.event, replayed.id) == ("bid", 2)
        assert (await anext(stream)).event == "extended"  # bids 1-3 each extend the end (cap 3)
        waiting = asyncio.create_task(anext(stream))
        await asyncio.sleep(0.05)  # the watcher is now waiting on the channel
        publish = channels_publisher(plugin)
        await place_bid(db, live.id, live.bidders[1].bidder, 102_000_00, "live-3", NOW + timedelta(minutes=1),
                        publish=publish)
        third = await asyncio.wait_for(waiting, 5)
        assert (third.event, third.id) == ("bid", 3)
        assert (await asyncio.wait_for(anext(stream), 5)).event == "extended"  # the bid extended the end
        # a repeat of an event already sent is skipped; a lost one (4) is read from the database with 5
        await publish(listing_channel(live.id), {"type": "bid", "bid": {"seq": 2}})
        await place_bid(db, live.id, live.bidders[0].bidder, 103_000_00, "lost-4", NOW + timedelta(minutes=2))
        await place_bid(db, live.id, live.bidders[1].bidder, 104_000_00, "live-5", NOW + timedelta(minutes=3),
                        publish=publish)
        got = [await asyncio.wait_for(anext(stream), 5), await asyncio.wait_for(anext(stream), 5)]
        assert [(m.event, m.id) for m in got] == [("bid", 4), ("bid", 5)]
        await close_listing(db, live.id, NOW + timedelta(hours=10), publish=publish)
        closed = await asyncio.wait_for(anext(stream), 5)
        assert closed.event == "closed" and json.loads(str(closed.data))["outcome"] == "sold"
        assert [m async for m in stream] == []  # the stream ends after the result


class BrokenChannels:
    """A channel backend that is down (as with Redis stopped)."""

    async def subscribe(self, channels: Any) -> Any:
        raise ConnectionError("redis is down")

    async def unsubscribe(self, subscriber: Any) -> None:
        raise AssertionError("never subscribed")


async def test_without_a_channel_backend_the_watcher_polls_the_database(
    db: AsyncSession, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    live = await bidding_on(db, 1, ends_in=timedelta(hours=2))
    stream = watch_listing(live.id, 0, BrokenChannels(), session_maker)  # type: ignore[arg-type]
    assert (await anext(stream)).id == 1
    waiting = asyncio.create_task(anext(stream))
    await asyncio.sleep(0.05)
    await place_bid(db, live.id, live.bidders[0].bidder, 101_000_00, "unpublished", NOW + timedelta(minutes=1))
    polled = await asyncio.wait_for(waiting, 5)  # found by the one-second poll
    assert (polled.event, polled.id) == ("bid", 2)
    await stream.aclose()
