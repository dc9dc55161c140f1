"""The township's approval queues: listings submitted with the villagers' resolution (approve, send back,
announce) and bidders whose deposit is held (qualify, reject). Supervisors see their own area, admins all;
every action goes through the lifecycle and registration services, which refuse anyone else."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import ListingStatus
from sanzi.auction.pages.bidding import views
from sanzi.auction.services import listings as lifecycle
from sanzi.auction.services import registrations
from sanzi.platform.auth import roles
from sanzi.platform.models import Role, User
from sanzi.platform.pages import flash, form_data, page, see_other
from sanzi.platform.problems import DomainError

AnyRequest = Request[Any, Any, Any]
SUPERVISE = roles(Role.ADMIN, Role.SUPERVISOR)
QUEUE = "/supervisor/approvals"
REASON_MAX = 1000


def two_thirds_met(listing: Any) -> bool | None:
    """Whether at least two thirds of the members present voted for (None without a resolution)."""
    if not listing.resolution_present or listing.resolution_votes_for is None:
        return None
    return listing.resolution_votes_for * 3 >= listing.resolution_present * 2


def votes_needed(listing: Any) -> int | None:
    return math.ceil(listing.resolution_present * 2 / 3) if listing.resolution_present else None


async def _area_listings(session: AsyncSession, user: User, status: ListingStatus) -> list[Any]:
    """The listings in this status in the caller's area, oldest first, with their resolution (officials' view)."""
    area: dict[str, str] = {}
    if user.role == Role.SUPERVISOR.value and user.area_code:
        area = {"district" if user.area_code.endswith("000000") else "township": user.area_code}
    found = await lifecycle.search_listings(
        session, user, status=status, published_only=False, page=1, page_size=200, **area
    )
    return sorted(found.items, key=lambda item: item.id)


def _reason(form: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    reason = form.get("reason", "")
    if not reason:
        return None, {"reason": "请填写理由，村委会或竞买人将看到它"}
    if len(reason) > REASON_MAX:
        return None, {"reason": f"理由不能超过 {REASON_MAX} 个字"}
    return reason, {}


class ApprovalPages(Controller):
    """``/supervisor/approvals``: the queue and its actions (POST, then back to the queue)."""

    include_in_schema = False

    async def _queue(
        self,
        request: AnyRequest,
        db_session: AsyncSession,
        status_code: int = 200,
        failed: dict[str, Any] | None = None,
    ) -> Template:
        user = request.user
        return page(
            request,
            "bidding/approvals.html",
            status_code=status_code,
            submitted=await _area_listings(db_session, user, ListingStatus.SUBMITTED),
            approved=await _area_listings(db_session, user, ListingStatus.APPROVED),
            pending=await views.pending_qualifications(db_session, user),
            area=await views.area_name(db_session, user) if user.role == Role.SUPERVISOR.value else None,
            failed=failed or {},
            two_thirds_met=two_thirds_met,
            votes_needed=votes_needed,
        )

    @get(QUEUE, operation_id="ApprovalQueuePage", opt=SUPERVISE)
    async def queue(self, request: AnyRequest, db_session: AsyncSession) -> Template:
        return await self._queue(request, db_session)

    async def _act(
        self,
        request: AnyRequest,
        db_session: AsyncSession,
        kind: str,
        object_id: int,
        action: Callable[[dict[str, str]], Awaitable[Any]],
        done: str,
        needs_reason: bool = False,
    ) -> Template | Redirect:
        """Run one action; a refusal the caller can act on re-renders the queue with it beside the row.

        Refusals of access (403/404) are not softened: they become the refusal page."""
        form = await form_data(request)
        errors: dict[str, str] = {}
        status = 400
        if needs_reason:
            reason, errors = _reason(form)
            form["reason"] = reason or form.get("reason", "")
        if not errors:
            try:
                await action(form)
            except DomainError as exc:
                if exc.status_code in (403, 404):
                    raise
                errors, status = (
                    {exc.field if exc.field == "reason" else "__all__": exc.message},
                    exc.status_code,
                )
        if errors:
            await db_session.rollback()
            failed = {"kind": kind, "id": object_id, "errors": errors, "form": form}
            return await self._queue(request, db_session, status, failed)
        flash(request, done)
        return see_other(QUEUE)

    @post(f"{QUEUE}/listings/{{listing_id:int}}/approve", operation_id="ApproveListingPage", opt=SUPERVISE)
    async def approve(
        self, request: AnyRequest, db_session: AsyncSession, listing_id: int
    ) -> Template | Redirect:
        async def act(form: dict[str, str]) -> Any:
            return await lifecycle.approve_listing(db_session, listing_id, request.user, views.utcnow())

        return await self._act(request, db_session, "listing", listing_id, act, "已审核通过，可发布交易公告")

    @post(f"{QUEUE}/listings/{{listing_id:int}}/send-back", operation_id="SendBackListingPage", opt=SUPERVISE)
    async def send_back(
        self, request: AnyRequest, db_session: AsyncSession, listing_id: int
    ) -> Template | Redirect:
        async def act(form: dict[str, str]) -> Any:
            return await lifecycle.send_back_listing(
                db_session, listing_id, form["reason"], request.user, views.utcnow()
            )

        return await self._act(
            request, db_session, "listing", listing_id, act, "已退回村委会修改", needs_reason=True
        )

    @post(f"{QUEUE}/listings/{{listing_id:int}}/announce", operation_id="AnnounceListingPage", opt=SUPERVISE)
    async def announce(
        self, request: AnyRequest, db_session: AsyncSession, listing_id: int
    ) -> Template | Redirect:
        async def act(form: dict[str, str]) -> Any:
            return await lifecycle.announce_listing(db_session, listing_id, request.user, views.utcnow())

        return await self._act(request, db_session, "listing", listing_id, act, "交易公告已发布，报名开始")

    @post(
        f"{QUEUE}/registrations/{{registration_id:int}}/qualify",
        operation_id="QualifyRegistrationPage",
        opt=SUPERVISE,
    )
    async def qualify(
        self, request: AnyRequest, db_session: AsyncSession, registration_id: int
    ) -> Template | Redirect:
        async def act(form: dict[str, str]) -> Any:
            return await registrations.qualify(db_session, registration_id, request.user, views.utcnow())

        return await self._act(
            request, db_session, "registration", registration_id, act, "资格审核通过，已分配竞买号"
        )

    @post(
        f"{QUEUE}/registrations/{{registration_id:int}}/reject",
        operation_id="RejectRegistrationPage",
        opt=SUPERVISE,
    )
    async def reject(
        self, request: AnyRequest, db_session: AsyncSession, registration_id: int
    ) -> Template | Redirect:
        async def act(form: dict[str, str]) -> Any:
            if len(form["reason"]) > 500:
                raise DomainError("理由不能超过 500 个字", "the reason is too long", field="reason")
            return await registrations.reject(
                db_session, registration_id, form["reason"], request.user, views.utcnow()
            )

        return await self._act(
            request,
            db_session,
            "registration",
            registration_id,
            act,
            "已驳回该报名，保证金将退还",
            needs_reason=True,
        )


controllers: list[Any] = [ApprovalPages]
