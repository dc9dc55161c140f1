"""Auction HTTP API: live bidding, the live view and its event stream, results, bidder identities after the
close, the contract from a result and the forfeit of a defaulting winner's deposit."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin
from litestar import Controller, Request, Response, get, post
from litestar.channels import ChannelsPlugin
from litestar.params import Parameter
from litestar.response import ServerSentEvent
from litestar.response.sse import ServerSentEventMessage
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sanzi.auction.ratelimit import limiter_for
from sanzi.auction.schemas import bidding as schemas
from sanzi.auction.services import bidding as engine
from sanzi.auction.services import results
from sanzi.ledger.schemas.contracts import Contract
from sanzi.ledger.services.contracts import ContractService
from sanzi.platform.auth import PUBLIC, client_address, roles
from sanzi.platform.models import Role
from sanzi.platform.problems import problem
from sanzi.platform.schemas import Page

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
#: how often a watcher re-reads the database: every second when the channel backend has failed, else as a
#: safety net against a lost event
POLL_DEGRADED_SECONDS = 1.0
POLL_HEALTHY_SECONDS = 5.0


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _session_maker(request: Request[Any, Any, Any]) -> Callable[[], AsyncSession]:
    """Short sessions for a long stream (one per read, so no snapshot or connection is held while idle)."""
    plugin = request.app.plugins.get(SQLAlchemyPlugin)
    if plugin is not None and plugin.config:
        return plugin.config[0].create_session_maker()  # type: ignore[return-value]
    return async_sessionmaker(request.app.state.engine, expire_on_commit=False)


class _Watcher:
    """Replays a listing's bids after a sequence number from the database, then follows the channel."""

    def __init__(self, listing_id: int, after: int, maker: Callable[[], AsyncSession]) -> None:
        self.listing_id = listing_id
        self.last = after
        self.maker = maker
        self.finished = False

    async def catch_up(self) -> list[ServerSentEventMessage]:
        """Every stored bid after the last one sent (with its extension), and ``closed`` once it closed."""
        async with self.maker() as session:
            listing = await engine.public_listing(session, self.listing_id)
            live = engine.live_summary(listing, utcnow()).model_dump(mode="json")
            bids = await engine.bids_after(session, self.listing_id, self.last)
            closed = None
            if listing.status in engine.FINISHED_STATUSES and listing.closed_at is not None:
                closed = (await results.result_of(session, listing)).model_dump(mode="json")
        messages = []
        for bid in bids:
            data = bid.model_dump(mode="json")
            messages.extend(self._bid_messages(data, bid.extended_end_at is not None, live))
        if closed is not None:
            messages.append(ServerSentEventMessage(event="closed", data=_json(closed)))
            self.finished = True
        return messages

    def _bid_messages(self, bid: dict[str, Any], extended: bool, live: dict[str, Any]) -> list[ServerSentEventMessage]:
        self.last = bid["seq"]
        messages = [ServerSentEventMessage(event="bid", id=bid["seq"], data=_json({"bid": bid, "live": live}))]
        if extended:
            body = {"seq": bid["seq"], "extended_end_at": bid["extended_end_at"], "live": live}
            messages.append(ServerSentEventMessage(event="extended", data=_json(body)))
        return messages

    async def on_event(self, payload: bytes) -> list[ServerSentEventMessage]:
        event = json.loads(payload)
        if event.get("type") == "bid":
            seq = event["bid"]["seq"]
            if seq <= self.last:
                return []  # already sent by the replay
            if seq > self.last + 1:
                return await self.catch_up()  # an event was lost: the database has it
            return self._bid_messages(event["bid"], bool(event.get("extended")), event["live"])
        if event.get("type") == "closed":
            return await self.catch_up()  # any bid not yet sent, then the result from the database
        return []


async def watch_listing(
    listing_id: int, after: int, channels: ChannelsPlugin, maker: Callable[[], AsyncSession]
) -> AsyncIterator[ServerSentEventMessage]:
    """Subscribe FIRST, then replay from the database, then forward channel events skipping what was sent;
    fall back to polling the database when the channel backend fails. Ends after ``closed``."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    subscriber = None
    try:
        subscriber = await channels.subscribe([engine.listing_channel(listing_id)])
    except Exception as exc:  # noqa: BLE001 - Redis down: poll the database instead
        log.warning("stream %s: channel subscription failed (%s); polling", listing_id, exc)
    watcher = _Watcher(listing_id, after, maker)
    loop = asyncio.get_running_loop()
    try:
        if subscriber is not None:
            subscriber._start_in_background(queue.put)  # noqa: SLF001 - a queue we can wait on with a timeout
        for message in await watcher.catch_up():
            yield message
        next_heartbeat = loop.time() + HEARTBEAT_SECONDS
        next_poll = loop.time() + POLL_HEALTHY_SECONDS
        while not watcher.finished:
            degraded = subscriber is None or _backend_failed(channels)
            poll = POLL_DEGRADED_SECONDS if degraded else POLL_HEALTHY_SECONDS
            next_poll = min(next_poll, loop.time() + poll)
            timeout = max(0.0, min(next_heartbeat, next_poll) - loop.time())
            try:
                payload = await asyncio.wait_for(queue.get(), timeout)
                messages = await watcher.on_event(payload)
            except asyncio.TimeoutError:
                messages = []
            if loop.time() >= next_poll:
                messages.extend(await watcher.catch_up())
                next_poll = loop.time() + poll
            for message in messages:
                yield message
            if loop.time() >= next_heartbeat:
                yield ServerSentEventMessage(comment="heartbeat", data=None)
                next_heartbeat = loop.time() + HEARTBEAT_SECONDS
    finally:
        if subscriber is not None:
            try:
                await channels.unsubscribe(subscriber)
            except Exception as exc:  # noqa: BLE001
                log.info("stream %s: unsubscribe failed: %s", listing_id, exc)


def _backend_failed(channels: ChannelsPlugin) -> bool:
    """True when the plugin's event reader has stopped (its backend raised, e.g. Redis went away)."""
    task = getattr(channels, "_sub_task", None)
    return task is None or task.done()


class BiddingController(Controller):
    path = "/api"
    tags = ["auction: bidding"]

    @post(
        "/listings/{listing_id:int}/bids",
        operation_id="PlaceBid",
        opt=roles(Role.BIDDER),
        status_code=201,
        summary="Place a bid (idempotent by client_key)",
    )
    async def place_bid(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        channels: ChannelsPlugin,
        listing_id: int,
        data: schemas.BidCreate,
    ) -> Response[Any]:
        user = request.user
        wait = await limiter_for(request.app.state).hit(f"user:{user.id}")
        if wait:
            return problem(
                request,
                429,
                "出价过于频繁，请稍后再试",
                "too many bids; try again shortly",
                code="rate_limited",
                headers={"Retry-After": str(wait)},
            )
        device = (request.headers.get("x-device-fingerprint") or "").strip()[:128] or None
        receipt, created = await engine.place_bid_receipt(
            db_session,
            listing_id,
            user,
            data.amount,
            data.client_key,
            utcnow,  # read once the listing's lock is held
            ip=client_address(request)[:64],
            device=device,
            publish=engine.channels_publisher(channels),
        )
        return Response(receipt, status_code=201 if created else 200)

    @get("/listings/{listing_id:int}/live", operation_id="GetLiveState", opt=PUBLIC, summary="Live auction state")
    async def live(self, db_session: AsyncSession, listing_id: int) -> schemas.LiveState:
        return await engine.live_state(db_session, listing_id, utcnow())

    @get(
        "/listings/{listing_id:int}/stream",
        operation_id="StreamListing",
        opt=PUBLIC,
        summary="Server-sent events: bid, extended, closed; resumes after ?after= or Last-Event-ID",
    )
    async def stream(
        self,
        request: Request[Any, Any, Any],
        channels: ChannelsPlugin,
        listing_id: int,
        after: int | None = Parameter(default=None, ge=0),
    ) -> ServerSentEvent:
        if after is None:
            last_event_id = request.headers.get("last-event-id", "").strip()
            after = int(last_event_id) if last_event_id.isdigit() else 0
        maker = _session_maker(request)
        async with maker() as session:  # an unknown or unpublished listing answers 404, not an empty stream
            await engine.public_listing(session, listing_id)
        return ServerSentEvent(watch_listing(listing_id, after, channels, maker))

    @get("/listings/{listing_id:int}/result", operation_id="GetResult", opt=PUBLIC, summary="Published result")
    async def result(self, db_session: AsyncSession, listing_id: int) -> schemas.Result:
        return await results.result(db_session, listing_id)

    @get("/results", operation_id="ListResults", opt=PUBLIC, summary="Closed listings, newest first")
    async def list_results(
        self,
        db_session: AsyncSession,
        district: str | None = Parameter(default=None, max_length=12),
        township: str | None = Parameter(default=None, max_length=12),
        village: str | None = Parameter(default=None, max_length=12),
        page: int = Parameter(default=1, ge=1),
        page_size: int = Parameter(default=20, ge=1, le=100),
    ) -> Page[schemas.ResultSummary]:
        return await results.list_results(db_session, district, township, village, page, page_size)

    @get(
        "/listings/{listing_id:int}/bidders",
        operation_id="ListBidderIdentities",
        opt=roles(Role.ADMIN, Role.SUPERVISOR, Role.COMMITTEE),
        summary="Bidder numbers with identities, after the close",
    )
    async def bidders(
        self, request: Request[Any, Any, Any], db_session: AsyncSession, listing_id: int
    ) -> list[schemas.BidderIdentity]:
        return await results.bidder_identities(db_session, listing_id, request.user)

    @post(
        "/listings/{listing_id:int}/contract",
        operation_id="CreateContractFromResult",
        opt=roles(Role.COMMITTEE, Role.ADMIN),
        status_code=201,
        summary="Contract from a sold result; the winner's deposit applied to the first payment",
    )
    async def contract(
        self,
        request: Request[Any, Any, Any],
        db_session: AsyncSession,
        listing_id: int,
        data: schemas.ContractFromResult,
    ) -> Contract:
        _, contract_id = await results.contract_from_result(db_session, listing_id, data, request.user, utcnow())
        contract = await ContractService(db_session).get(contract_id, request.user)
        return Contract.model_validate(contract)

    @post(
        "/listings/{listing_id:int}/forfeit",
        operation_id="ForfeitWinnerDeposit",
        opt=roles(Role.SUPERVISOR, Role.ADMIN),
        status_code=200,
        summary="Forfeit the deposit of a winner who did not sign in time",
    )
    async def forfeit(
        self, request: Request[Any, Any, Any], db_session: AsyncSession, listing_id: int
    ) -> schemas.DepositSettlement:
        return await results.forfeit_deposit(db_session, listing_id, request.user, utcnow())


controllers: list[Any] = [BiddingController]
