"""The live auction page (public), its HTML stream and fragment, the bidder's console with the bid form, and
applying to bid from the console.

The live panel is re-rendered whole on every change (price, countdown, extensions, history): a reconnecting
watcher, whatever it missed or saw twice, always ends up showing exactly the stored bids. The stream follows
the bidding API's watcher (replay by sequence number, then the channel, then the close)."""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

from litestar import Controller, Request, get, post
from litestar.channels import ChannelsPlugin
from litestar.response import Redirect, ServerSentEvent, Template
from litestar.response.sse import ServerSentEventMessage
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction import live as live_streams
from sanzi.auction.lifecycle import STATUS_NAMES_ZH
from sanzi.auction.models import DepositState, ListingStatus, RegistrationStatus
from sanzi.auction.pages.bidding import views
from sanzi.auction.services.registrations import DEPOSIT_STATE_NAMES, REGISTRATION_STATUS_NAMES
from sanzi.auction.ratelimit import limiter_for
from sanzi.auction.schemas.bidding import BidCreate
from sanzi.auction.schemas.registrations import RegistrationCreate
from sanzi.auction.services import bidding as engine
from sanzi.auction.services import registrations
from sanzi.auction.services.listings import get_listing
from sanzi.platform.auth import PUBLIC, client_address, roles
from sanzi.platform.models import Role
from sanzi.platform.money import parse_yuan
from sanzi.platform.pages import (
    flash,
    form_data,
    form_errors,
    page,
    register_labels,
    request_language,
    see_other,
    yuan,
)
from sanzi.platform.problems import DomainError

log = logging.getLogger(__name__)

AnyRequest = Request[Any, Any, Any]
BIDDER = roles(Role.BIDDER)
PANEL = "bidding/_live_panel.html"

register_labels("listing_status", {status.value: name for status, name in STATUS_NAMES_ZH.items()})
register_labels("registration_status", REGISTRATION_STATUS_NAMES)
register_labels("deposit_state", DEPOSIT_STATE_NAMES)

#: why a bid was refused, in words a bidder acts on (the service's message, with the allowed range for amounts)
AMOUNT_CODES = {"amount_too_low", "amount_too_high"}
APPLY_FIELDS = ("contact_phone", "contact_address")


def _refusal(exc: DomainError) -> dict[str, str]:
    """Field errors for a refused bid: amounts beside the amount field with the allowed range."""
    extra = exc.extra or {}
    if exc.code in AMOUNT_CODES and extra.get("next_min_bid"):
        low, high = yuan(parse_yuan(extra["next_min_bid"])), yuan(parse_yuan(extra["next_max_bid"]))
        message = f"{exc.message}（当前可出价范围：{low} 至 {high}）"
        return {"amount": message}
    if exc.code == "conflict" and exc.field == "client_key":
        return {"__all__": "这张出价单已经提交过。请核对当前价格后重新填写出价。"}
    return {exc.field if exc.field == "amount" else "__all__": exc.message}


#: the panel messages last sent, shared by every watcher of the same moment of an auction: after a bid each
#: stream shows the same panel (same event, language and view), so a crowd of watchers costs one render and
#: one SSE encoding per event and language
_PANELS: OrderedDict[tuple[Any, ...], ServerSentEventMessage] = OrderedDict()
PANEL_CACHE_SIZE = 256
#: the finished auctions' views (with their results), read once per worker for all their watchers (by app)
_CLOSED_VIEWS: weakref.WeakKeyDictionary[Any, OrderedDict[int, asyncio.Future[views.LiveView]]] = (
    weakref.WeakKeyDictionary()
)
CLOSED_CACHE_SIZE = 64


def _shared_panel(key: tuple[Any, ...], render: Callable[[], str], event: str, seq: int) -> ServerSentEventMessage:
    """The panel message for this moment, event and audience: rendered and encoded once for every watcher."""
    message = _PANELS.get((*key, event))
    if message is None:
        message = _PANELS[(*key, event)] = live_streams.EncodedMessage(event=event, data=render(), id=str(seq))
        if len(_PANELS) > PANEL_CACHE_SIZE:
            _PANELS.popitem(last=False)
    return message


async def _closed_view(
    listing_id: int, channels: ChannelsPlugin, maker: Callable[[], AsyncSession]
) -> views.LiveView:
    """The view of a closed auction with its result: one read of the database for every watcher at the close
    (a closed auction's result no longer changes)."""
    cache = _CLOSED_VIEWS.get(channels)
    if cache is None:
        cache = _CLOSED_VIEWS[channels] = OrderedDict()
    future = cache.get(listing_id)
    if future is None or (future.done() and (future.cancelled() or future.exception() is not None)):

        async def read() -> views.LiveView:
            async with maker() as session:
                return await views.live_view(session, listing_id)

        future = cache[listing_id] = asyncio.ensure_future(read())
        if len(cache) > CLOSED_CACHE_SIZE:
            cache.popitem(last=False)
    view = await asyncio.shield(future)
    if not view.finished:  # read before the result was stored: not worth remembering
        cache.pop(listing_id, None)
    return view


def _render(request: AnyRequest, name: str, **context: Any) -> str:
    """A fragment rendered outside a response (for the stream), with the page's language."""
    template = request.app.template_engine.get_template(name)  # type: ignore[union-attr]
    return template.render(request=request, lang=request_language(request), **context)


async def _console_context(db_session: AsyncSession, request: AnyRequest, listing_id: int) -> dict[str, Any]:
    """The console's view: the live state, the listing's terms, the caller's registration and bidder profile."""
    view = await views.live_view(db_session, listing_id)
    listing = await get_listing(db_session, listing_id, request.user)
    registration = await views.my_registration(db_session, listing_id, request.user)
    bidder = await views.bidder_of(db_session, request.user)
    may_bid = (
        registration is not None
        and registration.status == RegistrationStatus.QUALIFIED.value
        and registration.deposit_state == DepositState.HELD.value
        and view.open
    )
    may_apply = (
        registration is None
        and bidder is not None
        and listing.status == ListingStatus.ANNOUNCED.value
        and views.as_utc(listing.registration_deadline) > view.server_time
    )
    return {
        "view": view,
        "listing": listing,
        "registration": registration,
        "bidder": bidder,
        "me": registration.bidder_number if registration is not None else None,
        "may_bid": may_bid,
        "may_apply": may_apply,
        "client_key": uuid.uuid4().hex,
        "console": True,
    }


async def panel_stream(
    view: views.LiveView,
    panel: Callable[[views.LiveView, str], ServerSentEventMessage],
    channels: ChannelsPlugin,
    maker: Callable[[], AsyncSession],
) -> AsyncIterator[ServerSentEventMessage]:
    """The whole live panel as HTML: now (``update``, or ``closed`` for a finished auction), again after each
    bid the listing's hub hands on (it replays after the last bid shown, so none is lost or repeated), and once
    more with the result (``closed``), after which the stream ends. The hub's frames carry the bid and the
    live state already parsed, and ``panel`` shares each rendered, encoded panel among the watchers."""
    yield panel(view, "closed" if view.finished else "update")
    if view.finished:
        return
    async for frame in live_streams.follow(view.listing_id, view.last_seq, channels, maker):
        if frame.kind == "bid":
            view.add_bid(frame.bid)
            view.update(frame.live)
            yield panel(view, "update")
        elif frame.kind == "closed":
            view = await _closed_view(view.listing_id, channels, maker)  # the result as published, with every bid
            yield panel(view, "closed")
        else:
            for message in frame.messages:
                yield message  # the heartbeat comment keeps proxies from closing an idle stream


class LivePages(Controller):
    """Watching an auction (anyone) and bidding in it (qualified bidders)."""

    include_in_schema = False

    @get("/listings/{listing_id:int}/live", operation_id="LiveAuctionPage", opt=PUBLIC)
    async def live(self, request: AnyRequest, db_session: AsyncSession, listing_id: int) -> Template:
        view = await views.live_view(db_session, listing_id)
        return page(request, "bidding/live.html", view=view, console=False, me=None)

    @get("/listings/{listing_id:int}/live/fragment", operation_id="LiveAuctionFragment", opt=PUBLIC)
    async def fragment(
        self, request: AnyRequest, db_session: AsyncSession, listing_id: int, console: bool = False
    ) -> Template:
        """The live panel alone: for polling when the stream is unavailable, and at the start and the end."""
        view = await views.live_view(db_session, listing_id)
        me = await self._my_number(db_session, request, listing_id) if console else None
        return page(request, PANEL, view=view, console=console, me=me)

    @get("/listings/{listing_id:int}/live/events", operation_id="LiveAuctionEvents", opt=PUBLIC)
    async def events(
        self, request: AnyRequest, channels: ChannelsPlugin, listing_id: int, console: bool = False
    ) -> ServerSentEvent:
        """Server-sent events carrying the whole live panel as HTML: ``update`` on each bid, ``closed`` at the
        end (the stream then ends and the page stops listening)."""
        maker = live_streams.session_maker(request)
        async with maker() as session:  # a listing that is not public answers 404, not an empty stream
            view = await views.live_view(session, listing_id)
            me = await self._my_number(session, request, listing_id) if console else None

        lang = request_language(request)

        def panel(current: views.LiveView, event: str) -> ServerSentEventMessage:
            key = (
                current.listing_id,
                current.last_seq,
                current.status,
                current.server_time,
                current.finished,
                lang,
                console,
                me,
            )
            return _shared_panel(
                key, lambda: _render(request, PANEL, view=current, console=console, me=me), event, current.last_seq
            )

        return ServerSentEvent(panel_stream(view, panel, channels, maker))

    async def _my_number(self, session: AsyncSession, request: AnyRequest, listing_id: int) -> str | None:
        user = request.scope.get("user")
        if user is None or user.role != Role.BIDDER.value:
            return None
        registration = await views.my_registration(session, listing_id, user)
        return registration.bidder_number if registration is not None else None

    # ---- the console -------------------------------------------------------------------------------------

    @get("/listings/{listing_id:int}/bid", operation_id="BiddingConsole", opt=BIDDER)
    async def console(self, request: AnyRequest, db_session: AsyncSession, listing_id: int) -> Template:
        context = await _console_context(db_session, request, listing_id)
        return page(request, "bidding/console.html", **context)

    @post("/listings/{listing_id:int}/bid", operation_id="PlaceBidPage", opt=BIDDER)
    async def place_bid(
        self, request: AnyRequest, db_session: AsyncSession, channels: ChannelsPlugin, listing_id: int
    ) -> Template | Redirect:
        """Place a bid through the bidding engine; the client key of the form makes a double submit harmless."""
        form = await form_data(request)
        htmx = bool(request.headers.get("hx-request"))
        errors: dict[str, str] = {}
        status = 400
        placed = None
        try:
            data = BidCreate(amount=form.get("amount", ""), client_key=form.get("client_key", ""))
        except ValidationError as exc:
            errors = form_errors(exc)
            if "client_key" in errors:
                errors = {"__all__": "出价单已失效，请刷新页面后重新出价。"}
            if not form.get("amount"):
                errors["amount"] = "请填写出价金额（元）"
        else:
            wait = await limiter_for(request.app.state).hit(f"user:{request.user.id}")
            if wait:
                errors, status = {"__all__": f"出价过于频繁，请 {wait} 秒后再试。"}, 429
            else:
                try:
                    outcome, _ = await engine.place(
                        db_session,
                        listing_id,
                        request.user,
                        data.amount,
                        data.client_key,
                        views.utcnow,
                        ip=client_address(request)[:64],
                        publish=engine.channels_publisher(channels),
                    )
                    placed = engine.receipt(outcome)  # from what placing the bid read: no second read
                except DomainError as exc:
                    if exc.status_code == 404:
                        raise
                    errors, status = _refusal(exc), exc.status_code
        if placed is not None:
            message = f"出价成功：{yuan(placed.amount)}（第 {placed.seq} 次出价），您目前领先。"
            if placed.extended:
                message += " 本次出价使竞价时间延长。"
            if not htmx:
                flash(request, message)
                return see_other(f"/listings/{listing_id}/bid")  # the engine committed the bid
        context = await _console_context(db_session, request, listing_id)
        if htmx:  # htmx swaps only 2xx answers: the refusal is in the fragment
            return page(
                request,
                "bidding/_bid_form.html",
                errors=errors,
                form={} if placed else form,
                success=message if placed else None,
                **context,
            )
        return page(request, "bidding/console.html", status_code=status, errors=errors, form=form, **context)

    @post("/listings/{listing_id:int}/register", operation_id="ApplyToBidPage", opt=BIDDER)
    async def apply(
        self, request: AnyRequest, db_session: AsyncSession, listing_id: int
    ) -> Template | Redirect:
        """Apply to bid (报名): contact details for this application, defaulting to the profile."""
        form = await form_data(request)
        try:
            data = RegistrationCreate(
                contact_phone=form.get("contact_phone") or None,
                contact_address=form.get("contact_address") or None,
            )
            await registrations.register(
                db_session,
                listing_id,
                data,
                request.user,
                client_address(request),
                request.headers.get("x-device-fingerprint"),
                views.utcnow(),
            )
        except (ValidationError, DomainError) as exc:
            if isinstance(exc, DomainError) and exc.status_code in (403, 404) and exc.field is None:
                raise
            await db_session.rollback()
            context = await _console_context(db_session, request, listing_id)
            status = exc.status_code if isinstance(exc, DomainError) else 400
            errors = {(k if k in APPLY_FIELDS else "__all__"): v for k, v in form_errors(exc).items()}
            return page(
                request, "bidding/console.html", status_code=status, errors=errors, form=form, **context
            )
        flash(
            request,
            "报名成功。请按公告在报名截止前将竞买保证金转入村集体账户，到账确认并经镇街审核后取得竞买号。",
        )
        return see_other(f"/listings/{listing_id}/bid")


controllers: list[Any] = [LivePages]
