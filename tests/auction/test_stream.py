"""The live stream: a reconnecting watcher catches up from the database by sequence number and misses nothing;
live events are forwarded without duplicates; a lost event or a failed channel backend is made good from the
database."""

from __future__ import annotations

import asyncio
import contextvars
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.response.sse import ServerSentEventMessage
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sanzi.auction import live as live_streams
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


# ---- one hub per listing per worker ----------------------------------------------------------------------


@asynccontextmanager
async def http_server(app: Litestar) -> AsyncIterator[str]:
    """The app served by uvicorn over a real socket on the test's event loop (the database connection lives
    there too); yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=1))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not serving.done(), serving.exception()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()


class SseWatcher:
    """A watcher over HTTP: the bid sequence numbers in the order they arrived, and whether ``closed`` came."""

    def __init__(self, http: httpx.AsyncClient, path: str, headers: dict[str, str] | None = None) -> None:
        self.bids: list[int] = []
        self.closed = False
        self.task = asyncio.create_task(self._run(http, path, headers or {}))

    async def _run(self, http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> None:
        async with http.stream("GET", path, headers=headers) as response:
            assert response.status_code == 200
            event: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(": ")
                    event[name] = value
                    continue
                if event.get("event") == "bid":
                    self.bids.append(int(event["id"]))
                elif event.get("event") == "closed":
                    self.closed = True
                event = {}


class Deferred:
    """Publishes a service's events once the service has returned: the tests' sessions share one database
    connection, so a hub's read must not overlap the statements the service runs after its commit."""

    def __init__(self, plugin: ChannelsPlugin) -> None:
        self.publish = channels_publisher(plugin)
        self.pending: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, channel: str, event: dict[str, Any]) -> None:
        self.pending.append((channel, event))

    async def flush(self) -> None:
        pending, self.pending = self.pending, []
        for channel, event in pending:
            await self.publish(channel, event)


async def until(condition: Callable[[], bool], what: str, seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_fifty_watchers_over_http_get_every_bid_once_in_order_from_one_hub(
    app: Litestar, db: AsyncSession, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_streams, "POLL_HEALTHY_SECONDS", 3600.0)  # no safety-net read during the test
    live = await bidding_on(db, 2, ends_in=timedelta(hours=2))
    publish = Deferred(app.plugins.get(ChannelsPlugin))
    placing: contextvars.ContextVar[bool] = contextvars.ContextVar("placing", default=False)
    reads: list[str] = []  # the statements of the streams (not those of placing the bids)

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not placing.get():
            reads.append(statement)

    async def bid(seq: int, **kwargs: Any) -> None:
        token = placing.set(True)
        try:
            await place_bid(db, live.id, live.bidders[seq % 2].bidder, 100_000_00 + (seq - 1) * 1_000_00,
                            f"h{seq}", NOW + timedelta(minutes=seq), publish=publish, **kwargs)
        finally:
            placing.reset(token)
        await publish.flush()

    path = f"/api/listings/{live.id}/stream"
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with http_server(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
            first = SseWatcher(http, path)
            await until(lambda: first.bids == [1, 2], "the first watcher's replay")
            opened = len(reads)  # the listing's check and the hub's first read
            watchers = [first, *(SseWatcher(http, path) for _ in range(49))]
            await until(lambda: all(w.bids == [1, 2] for w in watchers), "every replay")
            assert len(reads) == opened, reads[opened:]  # 49 more watchers: replayed from memory, no read
            for seq in range(3, 8):
                await bid(seq)
                await until(lambda: all(w.bids[-1:] == [seq] for w in watchers), f"bid {seq} everywhere")
            assert len(reads) == opened, reads[opened:]  # live bids: no read at all
            assert all(w.bids == [1, 2, 3, 4, 5, 6, 7] for w in watchers)

            # a watcher that reconnects with Last-Event-ID resumes exactly where it stopped
            gone = watchers.pop()
            gone.task.cancel()
            await bid(8)
            await bid(9)
            back = SseWatcher(http, path, {"Last-Event-ID": str(gone.bids[-1])})
            await until(lambda: back.bids == [8, 9] and all(w.bids[-1] == 9 for w in watchers), "the resume")

            token = placing.set(True)
            try:
                await close_listing(db, live.id, NOW + timedelta(hours=10), publish=publish)
            finally:
                placing.reset(token)
            await publish.flush()
            watchers.append(back)
            await asyncio.wait_for(asyncio.gather(*(w.task for w in watchers)), 15)  # each stream ends
            assert all(w.closed for w in watchers)
            assert all(w.bids == list(range(1, 10)) for w in watchers[:-1]) and back.bids == [8, 9]
            # the close: one read of the result for all the watchers (not one each)
            assert len(reads) - opened <= opened, reads[opened:]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)


async def test_a_slow_watcher_holds_up_no_one_and_is_caught_up_from_memory_or_let_go(
    db: AsyncSession, session_maker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_streams, "POLL_HEALTHY_SECONDS", 3600.0)
    monkeypatch.setattr(live_streams, "WATCHER_BACKLOG", 4)
    live = await bidding_on(db, 1, ends_in=timedelta(hours=2))
    seq = 1

    async def ten_bids(plugin: ChannelsPlugin, fast: AsyncIterator[live_streams.Frame]) -> None:
        nonlocal seq
        for _ in range(10):
            seq += 1
            await place_bid(db, live.id, live.bidders[seq % 2].bidder, 100_000_00 + (seq - 1) * 1_000_00,
                            f"slow{seq}", NOW + timedelta(seconds=seq), publish=channels_publisher(plugin))
            assert (await asyncio.wait_for(anext(fast), 5)).seq == seq  # the others are not held up

    async with ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True) as plugin:
        fast = live_streams.follow(live.id, 0, plugin, session_maker)
        slow = live_streams.follow(live.id, 0, plugin, session_maker)
        assert (await anext(fast)).seq == 1 and (await anext(slow)).seq == 1
        await ten_bids(plugin, fast)  # the slow watcher reads nothing meanwhile
        hub = live_streams.hubs_of(plugin).get(live.id)
        assert hub is not None and all(len(tap.frames) <= 4 for tap in hub.taps)  # its memory stays bounded
        assert any(tap.lagged for tap in hub.taps)
        # reading again, it is caught up from the hub's memory: every bid once, in order
        assert [(await asyncio.wait_for(anext(slow), 5)).seq for _ in range(10)] == list(range(2, 12))
        await slow.aclose()
        await fast.aclose()

    monkeypatch.setattr(live_streams, "HISTORY", 4)  # a hub that remembers only the last four bids
    async with ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True) as plugin:
        fast = live_streams.follow(live.id, 11, plugin, session_maker)
        slow = live_streams.watch_listing(live.id, 11, plugin, session_maker)
        waiting = asyncio.create_task(anext(fast))
        await asyncio.sleep(0.05)
        seq_before = seq
        await place_bid(db, live.id, live.bidders[0].bidder, 100_000_00 + seq * 1_000_00, "slow-first",
                        NOW + timedelta(minutes=1), publish=channels_publisher(plugin))
        seq += 1
        assert (await asyncio.wait_for(waiting, 5)).seq == seq
        assert (await asyncio.wait_for(anext(slow), 5)).id == seq
        await ten_bids(plugin, fast)
        # too far behind for the hub's memory: let go with a retry hint, its stream ends
        hint = await asyncio.wait_for(anext(slow), 5)
        assert hint.retry == live_streams.RETRY_MS and hint.event is None
        assert [m async for m in slow] == []
        # and its reconnect (Last-Event-ID) is replayed from the database, exactly
        again = live_streams.follow(live.id, seq_before + 1, plugin, session_maker)
        replayed = [(await asyncio.wait_for(anext(again), 5)).seq for _ in range(10)]
        assert replayed == list(range(seq_before + 2, seq + 1))
        await again.aclose()
        await fast.aclose()
