"""Auction HTTP API: live bidding, the live view and its event stream, results, bidder identities after the
close, the contract from a result and the forfeit of a defaulting winner's deposit."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.channels import ChannelsPlugin
from litestar.params import Parameter
from litestar.response import ServerSentEvent
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction import live as live_streams
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


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        placed, created = await engine.place(
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
        return Response(engine.receipt(placed), status_code=201 if created else 200)

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
        maker = live_streams.session_maker(request)
        # an unknown or unpublished listing answers 404, not an empty stream
        await live_streams.ensure_public(listing_id, channels, maker)
        return ServerSentEvent(live_streams.watch_listing(listing_id, after, channels, maker))

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
