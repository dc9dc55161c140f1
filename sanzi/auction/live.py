"""Live auction streams: one hub per listing per worker process fans each event out to every local watcher.

Before, every watcher had its own channel subscription (with its own task and queue), parsed every event
itself, encoded its own SSE bytes and re-read the database every 5 s as a safety net. Now a worker keeps one
:class:`ListingHub` per watched listing:

- one Litestar ``ChannelsPlugin`` subscription per listing per worker (Redis pub/sub between workers, the
  in-memory backend when embedded); each event is parsed and its SSE bytes encoded ONCE, then the same
  :class:`Frame` is appended to every local watcher's bounded buffer;
- the safety net (a sequence gap, a failed channel backend, the close) reads the database once per listing
  per worker, not once per watcher: every 5 s when healthy, every second when the backend is down;
- the hub keeps the listing's recent bids in memory, so a new or reconnecting watcher (``after`` /
  ``Last-Event-ID``) is replayed from memory when its position is recent, else from the database;
- a watcher that falls behind (its buffer full) is caught up from the hub's memory if it can be, else its
  stream ends with a retry hint (the browser reconnects with ``Last-Event-ID`` and resumes exactly);
- the stream still subscribes before it replays (the hub is subscribed before it reads), skips what it sent,
  ends after ``closed`` and carries a heartbeat comment.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Request
from litestar.channels import ChannelsPlugin
from litestar.response.sse import ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sanzi.auction.services import bidding as engine
from sanzi.auction.services import results
from sanzi.platform.problems import DomainError

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
#: how often a hub re-reads the database: every second when the channel backend has failed, else as a safety
#: net against a lost event (once per listing per worker, whatever the number of watchers)
POLL_DEGRADED_SECONDS = 1.0
POLL_HEALTHY_SECONDS = 5.0
#: recent bids a hub keeps in memory for replays (a watcher further behind is replayed from the database); a
#: frame is a few kB, so a worker watching 100 live auctions keeps well under 100 MB
HISTORY = 256
#: frames a watcher may have waiting; beyond that it is caught up from the hub's memory or disconnected
WATCHER_BACKLOG = 256
#: a hub without watchers stays this long (a reconnecting watcher finds it still subscribed and in memory)
LINGER_SECONDS = 10.0
#: what a disconnected slow watcher is told to wait before reconnecting (milliseconds)
RETRY_MS = 1000


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def session_maker(request: Request[Any, Any, Any]) -> Callable[[], AsyncSession]:
    """Short sessions for a long stream (one per read, so no snapshot or connection is held while idle)."""
    plugin = request.app.plugins.get(SQLAlchemyPlugin)
    if plugin is not None and plugin.config:
        return plugin.config[0].create_session_maker()  # type: ignore[return-value]
    return async_sessionmaker(request.app.state.engine, expire_on_commit=False)


class EncodedMessage(ServerSentEventMessage):
    """An SSE message whose bytes are made once and then sent as they are to every watcher."""

    def encode(self) -> bytes:
        encoded = self.__dict__.get("_encoded")
        if encoded is None:
            encoded = self.__dict__["_encoded"] = super().encode()
        return encoded


@dataclass(frozen=True)
class Frame:
    """One step of a listing's stream, shared (read-only) by every watcher: a ``bid`` (with its sequence
    number, the bid and live summary as plain data, and its SSE messages), ``closed`` (the result) or a
    ``heartbeat``."""

    kind: str
    seq: int = 0
    bid: dict[str, Any] = field(default_factory=dict)
    live: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    messages: tuple[ServerSentEventMessage, ...] = ()


HEARTBEAT = Frame("heartbeat", messages=(EncodedMessage(comment="heartbeat", data=None),))
#: the hub stopped (its listing is no longer public, or the worker is shutting down): the stream ends and the
#: client reconnects after the retry hint
END = Frame("end", messages=(EncodedMessage(comment="stream ended; reconnect", data=None, retry=RETRY_MS),))
#: the watcher fell further behind than the hub remembers: the stream ends and the client reconnects with
#: Last-Event-ID (replayed from the database)
LAGGED = Frame("lagged", messages=(EncodedMessage(comment="behind; reconnect", data=None, retry=RETRY_MS),))


def bid_frame(bid: dict[str, Any], extended: bool, live: dict[str, Any]) -> Frame:
    """A bid's frame; its SSE bytes (``bid`` and, if it extended the end, ``extended``) encoded once."""
    seq = int(bid["seq"])
    messages = [EncodedMessage(event="bid", id=seq, data=_json({"bid": bid, "live": live}))]
    if extended:
        body = {"seq": seq, "extended_end_at": bid["extended_end_at"], "live": live}
        messages.append(EncodedMessage(event="extended", data=_json(body)))
    return Frame("bid", seq, bid, live, messages=tuple(messages))


def closed_frame(result: dict[str, Any]) -> Frame:
    return Frame("closed", result=result, messages=(EncodedMessage(event="closed", data=_json(result)),))


async def read_after(
    maker: Callable[[], AsyncSession], listing_id: int, after: int
) -> tuple[list[Frame], Frame | None, int]:
    """Every stored bid after ``after`` as frames (each with the live state now), the ``closed`` frame once
    the listing has closed, and the listing's bid count. Raises NotFound for a listing that is not public."""
    async with maker() as session:
        listing = await engine.public_listing(session, listing_id)
        live = engine.live_summary(listing, utcnow()).model_dump(mode="json")
        bids = await engine.bids_after(session, listing_id, after)
        closed = None
        if listing.status in engine.FINISHED_STATUSES and listing.closed_at is not None:
            closed = closed_frame((await results.result_of(session, listing)).model_dump(mode="json"))
        count = listing.bid_count
    frames = [bid_frame(b.model_dump(mode="json"), b.extended_end_at is not None, live) for b in bids]
    return frames, closed, count


class Tap:
    """One watcher's place at a hub: a bounded buffer of frames the hub appends to and the watcher drains."""

    __slots__ = ("frames", "wake", "lagged")

    def __init__(self) -> None:
        self.frames: deque[Frame] = deque()
        self.wake = asyncio.Event()
        self.lagged = False

    def push(self, frame: Frame) -> None:
        if self.lagged:
            return
        if len(self.frames) >= WATCHER_BACKLOG:
            self.lagged = True  # the watcher is caught up (or let go) when it next reads
            self.frames.clear()
        else:
            self.frames.append(frame)
        self.wake.set()


class ListingHub:
    """The one subscription, safety net and recent history of a listing in this worker process."""

    def __init__(
        self, listing_id: int, channels: ChannelsPlugin, maker: Callable[[], AsyncSession], registry: Hubs
    ) -> None:
        self.listing_id = listing_id
        self.channels = channels
        self.maker = maker
        self.registry = registry
        self.taps: set[Tap] = set()
        self.history: deque[Frame] = deque(maxlen=HISTORY)
        #: the highest sequence number every tap has been given (bids up to it are contiguous from ``floor``)
        self.last = 0
        #: the history holds every bid after ``floor`` (it grows as old bids fall out of the history)
        self.floor = 0
        self.closed: Frame | None = None
        self.ready = asyncio.Event()
        self.error: BaseException | None = None
        self.stopped = False
        self.reads = 0  # database reads (for the logs and the tests)
        self._events: asyncio.Queue[bytes] = asyncio.Queue()
        self._subscriber: Any = None
        self._idle_since = asyncio.get_running_loop().time()
        #: set once this hub has unsubscribed; a hub that follows it on the same listing subscribes only then,
        #: else the backend's unsubscribe (Redis UNSUBSCRIBE) could land after the new subscribe and silence it
        self.gone = asyncio.Event()
        self._previous = registry.leaving.get(listing_id)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"listing-hub-{listing_id}")

    # ---- watchers ----------------------------------------------------------------------------------------

    def attach(self, after: int) -> tuple[list[Frame], Tap | None]:
        """What a watcher after ``after`` is owed from memory, and its tap for what follows (None once the
        listing has closed). Synchronous, so nothing can fall between the replay and the tap. Raises
        LookupError when the memory does not reach back to ``after`` (the caller replays from the database)."""
        if after < self.floor:
            raise LookupError(after)
        owed = [frame for frame in self.history if frame.seq > after] if after < self.last else []
        if self.closed is not None:
            return [*owed, self.closed], None
        return owed, self.tap()

    def tap(self) -> Tap:
        tap = Tap()
        if self.stopped:
            tap.frames.append(END)
        self.taps.add(tap)
        return tap

    def detach(self, tap: Tap) -> None:
        self.taps.discard(tap)
        if not self.taps:
            self._idle_since = asyncio.get_running_loop().time()

    def _fan_out(self, frame: Frame) -> None:
        for tap in self.taps:
            tap.push(frame)

    def _add_bid(self, frame: Frame) -> None:
        if len(self.history) == self.history.maxlen:
            self.floor = self.history[0].seq
        self.history.append(frame)
        self.last = frame.seq
        self._fan_out(frame)

    # ---- the hub's task ----------------------------------------------------------------------------------

    def plugin_stopped(self) -> bool:
        """True once the channels plugin has shut down (the app's lifespan ended)."""
        return getattr(self.channels, "_sub_task", True) is None

    def degraded(self) -> bool:
        """True when events cannot arrive: no subscription, or the plugin's reader stopped (Redis went away)."""
        task = getattr(self.channels, "_sub_task", None)
        return self._subscriber is None or task is None or task.done()

    async def _subscribe(self) -> None:
        try:
            self._subscriber = await self.channels.subscribe([engine.listing_channel(self.listing_id)])
            self._subscriber._start_in_background(self._events.put)  # noqa: SLF001 - a queue we wait on
        except Exception as exc:  # noqa: BLE001 - Redis down: poll the database instead
            log.warning("listing %s: channel subscription failed (%s); polling", self.listing_id, exc)
            self._subscriber = None

    async def _sync(self, first: bool = False) -> None:
        """Read the bids after the last one given (and the result once closed) and hand them on."""
        self.reads += 1
        after = self.last
        if first:
            async with self.maker() as session:
                listing = await engine.public_listing(session, self.listing_id)
                after = self.floor = self.last = max(0, listing.bid_count - HISTORY)
        frames, closed, _ = await read_after(self.maker, self.listing_id, after)
        if not first and closed is None and frames and frames[-1].seq > self.last:
            log.warning("listing %s: bids %s-%s came from the database, not the channel", self.listing_id,
                        max(self.last + 1, frames[0].seq), frames[-1].seq)
        for frame in frames:
            if frame.seq > self.last:
                self._add_bid(frame)
        if closed is not None and self.closed is None:
            self.closed = closed
            self._fan_out(closed)

    async def _on_event(self, payload: bytes) -> None:
        event = json.loads(payload)
        kind = event.get("type")
        if kind == "bid":
            seq = int(event["bid"]["seq"])
            if seq <= self.last:
                return  # already given (by a read of the database)
            if seq > self.last + 1:
                await self._sync()  # an event was lost: the database has it (and this one)
                return
            self._add_bid(bid_frame(event["bid"], bool(event.get("extended")), event["live"]))
        elif kind == "closed":
            await self._sync()  # any bid not yet given, then the result as stored

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._idle_since = loop.time()
        try:
            if self._previous is not None:  # (not for ever: an unsubscribe from a Redis that is down may hang)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._previous.gone.wait(), 5.0)
                self._previous = None
            await self._subscribe()  # FIRST, so nothing published after the read below is missed
            await self._sync(first=True)
        except BaseException as exc:  # noqa: BLE001 - the waiting watchers see it (e.g. NotFound)
            self.error = exc
            self.ready.set()
            await self._stop()
            if not isinstance(exc, Exception):
                raise
            return
        self.ready.set()
        self._idle_since = loop.time()  # the first sync may have been slow: the first watcher is yet to attach
        next_heartbeat = loop.time() + HEARTBEAT_SECONDS
        last_poll = loop.time()
        try:
            while True:
                now = loop.time()
                if not self.taps and (now - self._idle_since >= LINGER_SECONDS or self.plugin_stopped()):
                    break
                wait = min(1.0, next_heartbeat - now)  # at least once a second: is anyone still watching?
                if self.closed is None:
                    poll = POLL_DEGRADED_SECONDS if self.degraded() else POLL_HEALTHY_SECONDS
                    wait = min(wait, last_poll + poll - now)
                try:
                    payload = await asyncio.wait_for(self._events.get(), max(0.0, wait))
                except asyncio.TimeoutError:
                    payload = None
                try:
                    while payload is not None and self.closed is None:
                        await self._on_event(payload)
                        payload = self._events.get_nowait() if not self._events.empty() else None
                    now = loop.time()
                    if self.closed is None:
                        poll = POLL_DEGRADED_SECONDS if self.degraded() else POLL_HEALTHY_SECONDS
                        if now >= last_poll + poll:
                            last_poll = now
                            await self._sync()
                except DomainError as exc:  # the listing stopped being public: its watchers are let go
                    log.info("listing %s: %s; its streams end", self.listing_id, exc)
                    break
                except Exception:  # noqa: BLE001 - the database is down: try again at the next poll
                    log.exception("listing %s: catching up from the database failed", self.listing_id)
                    last_poll = loop.time()
                if loop.time() >= next_heartbeat:
                    self._fan_out(HEARTBEAT)
                    next_heartbeat = loop.time() + HEARTBEAT_SECONDS
        finally:
            await self._stop()

    async def _stop(self) -> None:
        """Leave the registry at once (a new watcher gets a new hub), let the watchers go, unsubscribe."""
        self.stopped = True
        self.registry.forget(self)
        for tap in self.taps:
            tap.frames.append(END)
            tap.wake.set()
        try:
            if self._subscriber is not None:
                subscriber, self._subscriber = self._subscriber, None
                await self.channels.unsubscribe(subscriber)
        except Exception as exc:  # noqa: BLE001
            log.info("listing %s: unsubscribe failed: %s", self.listing_id, exc)
        finally:
            self.gone.set()
            self.registry.gone(self)


class Hubs:
    """The hubs of one channels plugin (one app in one worker process), by listing."""

    def __init__(self) -> None:
        self.hubs: dict[int, ListingHub] = {}
        #: hubs that stopped and are still unsubscribing
        self.leaving: dict[int, ListingHub] = {}

    def get(self, listing_id: int) -> ListingHub | None:
        return self.hubs.get(listing_id)

    def hub(self, listing_id: int, channels: ChannelsPlugin, maker: Callable[[], AsyncSession]) -> ListingHub:
        hub = self.hubs.get(listing_id)
        if hub is None or hub.stopped:
            hub = self.hubs[listing_id] = ListingHub(listing_id, channels, maker, self)
        return hub

    def forget(self, hub: ListingHub) -> None:
        if self.hubs.get(hub.listing_id) is hub:
            del self.hubs[hub.listing_id]
            self.leaving[hub.listing_id] = hub

    def gone(self, hub: ListingHub) -> None:
        if self.leaving.get(hub.listing_id) is hub:
            del self.leaving[hub.listing_id]


_REGISTRIES: weakref.WeakKeyDictionary[Any, Hubs] = weakref.WeakKeyDictionary()


def hubs_of(channels: ChannelsPlugin) -> Hubs:
    registry = _REGISTRIES.get(channels)
    if registry is None:
        registry = _REGISTRIES[channels] = Hubs()
    return registry


async def ensure_public(listing_id: int, channels: ChannelsPlugin, maker: Callable[[], AsyncSession]) -> None:
    """Raise NotFound for a listing that is not public: answered by the listing's live hub when there is one
    (no read per connecting watcher), else by the database."""
    hub = hubs_of(channels).get(listing_id)
    if hub is not None and hub.ready.is_set() and hub.error is None and not hub.stopped:
        return
    async with maker() as session:
        await engine.public_listing(session, listing_id)


async def follow(
    listing_id: int, after: int, channels: ChannelsPlugin, maker: Callable[[], AsyncSession]
) -> AsyncIterator[Frame]:
    """The frames of a listing after sequence number ``after``: the replay (from the hub's memory, or the
    database when ``after`` is older than it), then each new bid once and in order, heartbeats, and
    ``closed`` as the last frame. A watcher that falls too far behind is caught up from memory, or its stream
    ends with a ``lagged`` frame (a retry hint)."""
    hub = hubs_of(channels).hub(listing_id, channels, maker)
    await hub.ready.wait()
    if hub.error is not None:
        raise hub.error
    last = after
    tap: Tap | None = None
    try:
        try:
            owed, tap = hub.attach(after)
        except LookupError:  # further back than the hub remembers: the tap first, then the database
            tap = hub.tap()
            owed, closed, _ = await read_after(maker, listing_id, after)
            if closed is not None:
                owed.append(closed)
        while True:
            for frame in owed:
                if frame.kind == "bid":
                    if frame.seq <= last:
                        continue  # given already (the replay and the tap overlap)
                    last = frame.seq
                yield frame
                if frame.kind in ("closed", "end", "lagged"):
                    return
            if tap is None:
                return
            if not tap.frames and not tap.lagged:
                tap.wake.clear()
                await tap.wake.wait()
            if tap.lagged:
                hub.detach(tap)
                try:
                    owed, tap = hub.attach(last)  # from memory, exactly after the last frame given
                except LookupError:
                    tap = None
                    owed = [LAGGED]
                continue
            owed = list(tap.frames)
            tap.frames.clear()
    finally:
        if tap is not None:
            hub.detach(tap)


async def watch_listing(
    listing_id: int, after: int, channels: ChannelsPlugin, maker: Callable[[], AsyncSession]
) -> AsyncIterator[ServerSentEventMessage]:
    """The API stream's messages: ``bid`` (id = sequence number), ``extended``, ``closed``, heartbeats."""
    async for frame in follow(listing_id, after, channels, maker):
        for message in frame.messages:
            yield message
