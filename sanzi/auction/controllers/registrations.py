"""Auction HTTP API: registrations — a bidder applies, the village confirms the deposit, the township
qualifies or rejects; the lists of registrations as each role may see them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Listing
from sanzi.auction.schemas import registrations as schemas
from sanzi.auction.services import registrations as service
from sanzi.platform.auth import client_address, roles
from sanzi.platform.models import Role

DEVICE_HEADER = "X-Device-Fingerprint"

AnyRequest = Request[Any, Any, Any]


def _now() -> datetime:
    return datetime.now(UTC)


async def _out(db_session: AsyncSession, registration: Any) -> schemas.Registration:
    listing = await db_session.get(Listing, registration.listing_id)
    return service.registration_out(registration, listing)  # type: ignore[arg-type]


class RegistrationController(Controller):
    path = "/api"
    tags = ["auction"]

    @post(
        "/listings/{listing_id:int}/registrations", operation_id="RegisterForListing", opt=roles(Role.BIDDER)
    )
    async def register(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        listing_id: int,
        data: schemas.RegistrationCreate,
    ) -> schemas.Registration:
        registration = await service.register(
            db_session,
            listing_id,
            data,
            request.user,
            client_address(request),
            request.headers.get(DEVICE_HEADER),
            _now(),
        )
        return await _out(db_session, registration)

    @post(
        "/registrations/{registration_id:int}/deposit",
        operation_id="ConfirmDeposit",
        opt=roles(Role.ADMIN, Role.COMMITTEE),
        status_code=200,
    )
    async def confirm_deposit(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        registration_id: int,
        data: schemas.DepositIn,
    ) -> schemas.Registration:
        registration = await service.confirm_deposit(db_session, registration_id, data, request.user, _now())
        return await _out(db_session, registration)

    @post(
        "/registrations/{registration_id:int}/qualify",
        operation_id="QualifyRegistration",
        opt=roles(Role.ADMIN, Role.SUPERVISOR),
        status_code=200,
    )
    async def qualify(
        self, db_session: AsyncSession, request: AnyRequest, registration_id: int
    ) -> schemas.Registration:
        registration = await service.qualify(db_session, registration_id, request.user, _now())
        return await _out(db_session, registration)

    @post(
        "/registrations/{registration_id:int}/reject",
        operation_id="RejectRegistration",
        opt=roles(Role.ADMIN, Role.SUPERVISOR),
        status_code=200,
    )
    async def reject(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        registration_id: int,
        data: schemas.RejectIn,
    ) -> schemas.Registration:
        registration = await service.reject(db_session, registration_id, data.reason, request.user, _now())
        return await _out(db_session, registration)

    @get(
        "/listings/{listing_id:int}/registrations",
        operation_id="ListListingRegistrations",
        opt=roles(Role.ADMIN, Role.COMMITTEE, Role.SUPERVISOR),
    )
    async def list_for_listing(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> schemas.ListingRegistrations:
        return await service.listing_registrations(db_session, listing_id, request.user)

    @get("/registrations/mine", operation_id="ListMyRegistrations", opt=roles(Role.BIDDER))
    async def mine(
        self, db_session: AsyncSession, request: AnyRequest
    ) -> list[schemas.Registration]:
        return await service.my_registrations(db_session, request.user)


controllers: list[Any] = [RegistrationController]
