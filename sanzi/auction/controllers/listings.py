"""Auction HTTP API: listings — the village's draft, the township's review, announcement, suspension,
termination, relisting, and the public and official reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import ListingStatus
from sanzi.auction.schemas import listings as schemas
from sanzi.auction.services import listings as service
from sanzi.ledger.models import AssetKind, TradeType
from sanzi.platform.access import village_for
from sanzi.platform.auth import PUBLIC, roles
from sanzi.platform.models import Role
from sanzi.platform.schemas import Page

COMMITTEE = roles(Role.ADMIN, Role.COMMITTEE)
SUPERVISOR = roles(Role.ADMIN, Role.SUPERVISOR)
OFFICIALS = roles(Role.ADMIN, Role.COMMITTEE, Role.SUPERVISOR)
LISTING_OUT = schemas.ListingDetail | schemas.Listing

AnyRequest = Request[Any, Any, Any]


def _now() -> datetime:
    return datetime.now(UTC)


class ListingController(Controller):
    """Listings (交易项目): the committee drafts and submits; the township approves, announces, suspends,
    terminates."""

    path = "/api"
    tags = ["auction"]

    @post("/villages/{code:str}/listings", operation_id="CreateListing", opt=COMMITTEE)
    async def create(
        self, db_session: AsyncSession, request: AnyRequest, code: str, data: schemas.ListingCreate
    ) -> schemas.ListingDetail:
        listing = await service.create_listing(db_session, code, data, request.user, _now())
        return await service.listing_out(db_session, listing, request.user)

    @patch("/listings/{listing_id:int}", operation_id="UpdateListing", opt=COMMITTEE)
    async def update(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        listing_id: int,
        data: schemas.ListingUpdate,
    ) -> schemas.ListingDetail:
        listing = await service.update_listing(db_session, listing_id, data, request.user, _now())
        return await service.listing_out(db_session, listing, request.user)

    @post(
        "/listings/{listing_id:int}/submit", operation_id="SubmitListing", opt=COMMITTEE, status_code=200
    )
    async def submit(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        listing_id: int,
        data: schemas.ResolutionIn,
    ) -> schemas.ListingDetail:
        listing = await service.submit_listing(db_session, listing_id, data, request.user, _now())
        return await service.listing_out(db_session, listing, request.user)

    @post(
        "/listings/{listing_id:int}/approve", operation_id="ApproveListing", opt=SUPERVISOR, status_code=200
    )
    async def approve(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> schemas.ListingDetail:
        listing = await service.approve_listing(db_session, listing_id, request.user, _now())
        return await service.listing_out(db_session, listing, request.user)

    @post(
        "/listings/{listing_id:int}/send-back",
        operation_id="SendBackListing",
        opt=SUPERVISOR,
        status_code=200,
    )
    async def send_back(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int, data: schemas.ReasonIn
    ) -> schemas.ListingDetail:
        listing = await service.send_back_listing(db_session, listing_id, data.reason, request.user, _now())
        return await service.listing_out(db_session, listing, request.user)

    @post(
        "/listings/{listing_id:int}/announce",
        operation_id="AnnounceListing",
        opt=SUPERVISOR,
        status_code=200,
    )
    async def announce(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> schemas.ListingDetail:
        listing = await service.announce_listing(db_session, listing_id, request.user, _now())
        return await service.listing_out(db_session, listing, request.user)

    @post(
        "/listings/{listing_id:int}/suspend", operation_id="SuspendListing", opt=SUPERVISOR, status_code=200
    )
    async def suspend(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int, data: schemas.ReasonIn
    ) -> schemas.ListingDetail:
        listing = await service.suspend_listing(db_session, listing_id, data.reason, request.user, _now())
        return await service.listing_out(db_session, listing, request.user)

    @post(
        "/listings/{listing_id:int}/resume", operation_id="ResumeListing", opt=SUPERVISOR, status_code=200
    )
    async def resume(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int, data: schemas.ResumeIn
    ) -> schemas.ListingDetail:
        listing = await service.resume_listing(db_session, listing_id, data, request.user, _now())
        return await service.listing_out(db_session, listing, request.user)

    @post(
        "/listings/{listing_id:int}/terminate",
        operation_id="TerminateListing",
        opt=OFFICIALS,
        status_code=200,
    )
    async def terminate(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int, data: schemas.ReasonIn
    ) -> schemas.ListingDetail:
        listing = await service.terminate_listing(db_session, listing_id, data.reason, request.user, _now())
        return await service.listing_out(db_session, listing, request.user)

    @post("/listings/{listing_id:int}/relist", operation_id="RelistListing", opt=COMMITTEE)
    async def relist(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int, data: schemas.RelistIn
    ) -> schemas.ListingDetail:
        listing = await service.relist_listing(db_session, listing_id, data, request.user, _now())
        return await service.listing_out(db_session, listing, request.user)

    # ---- reads ------------------------------------------------------------------------------------------

    @get("/listings", operation_id="ListListings", opt=PUBLIC, summary="Published listings (announced on)")
    async def list_public(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        district: str | None = Parameter(default=None, max_length=12),
        township: str | None = Parameter(default=None, max_length=12),
        village: str | None = Parameter(default=None, max_length=12),
        status: ListingStatus | None = None,
        trade_type: TradeType | None = None,
        asset_kind: AssetKind | None = None,
        q: str | None = Parameter(default=None, max_length=50, description="part of the title or number"),
        page: int = Parameter(default=1, ge=1, le=100_000),
        page_size: int = Parameter(default=20, ge=1, le=200),
    ) -> Page[schemas.Listing]:
        # the public list never carries the reserve, whoever asks
        return await service.search_listings(
            db_session,
            None,
            district=district,
            township=township,
            village=village,
            status=status,
            trade_type=trade_type,
            asset_kind=asset_kind,
            q=q,
            page=page,
            page_size=page_size,
        )

    @get("/listings/{listing_id:int}", operation_id="GetListing", opt=PUBLIC)
    async def get_one(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> LISTING_OUT:  # type: ignore[valid-type]
        listing = await service.get_listing(db_session, listing_id, request.user)
        return (await service.listings_out(db_session, [listing], request.user))[0]

    @get("/villages/{code:str}/listings", operation_id="ListVillageListings", opt=OFFICIALS)
    async def list_village(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        code: str,
        status: ListingStatus | None = None,
        page: int = Parameter(default=1, ge=1, le=100_000),
        page_size: int = Parameter(default=50, ge=1, le=200),
    ) -> Page[schemas.ListingDetail]:
        village = await village_for(db_session, code, request.user)
        return await service.village_listings(db_session, village.code, request.user, status, page, page_size)

    @get("/listings/{listing_id:int}/events", operation_id="GetListingEvents", opt=PUBLIC)
    async def events(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> list[schemas.ListingEvent]:
        return await service.listing_events(db_session, listing_id, request.user)


controllers: list[Any] = [ListingController]
