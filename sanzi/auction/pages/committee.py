"""The village committee's listing pages: its listings, drafting and editing a listing of idle assets,
submitting it with the villagers' resolution, confirming bidders' deposits (numbers only until the close),
signing the contract from a result; and the public list of a village's trades shown on its disclosure page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Controller, get, post
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.lifecycle import STATUS_NAMES_ZH
from sanzi.auction.models import Listing, ListingStatus, Registration
from sanzi.auction.schemas.bidding import ContractFromResult
from sanzi.auction.schemas.listings import ListingCreate, ListingUpdate, ReasonIn, RelistIn, ResolutionIn
from sanzi.auction.schemas.registrations import DepositIn
from sanzi.auction.services import listings as service
from sanzi.auction.services import registrations, results
from sanzi.auction.services.registrations import DEPOSIT_STATE_NAMES, REGISTRATION_STATUS_NAMES
from sanzi.ledger.models import AssetStatus
from sanzi.ledger.pages.chooser import choose_village
from sanzi.ledger.pages.common import (
    FREQUENCIES,
    PRICE_BASES,
    READ,
    TRADE_TYPES,
    WRITE,
    AnyRequest,
    beijing_datetime,
    blank_to_none,
    datetime_local,
    field_errors,
    is_form_error,
    known_id,
    money,
    options,
    page_number,
    page_village,
    saved,
    today_beijing,
    village_context,
)
from sanzi.ledger.schemas.assets import Asset as AssetSchema
from sanzi.ledger.schemas.assets import format_area
from sanzi.ledger.services.assets import AssetService
from sanzi.platform.access import check_village, collective_for, village_for
from sanzi.platform.auth import PUBLIC
from sanzi.platform.models import Village
from sanzi.platform.pages import flash, form_data, page, paginate, register_labels, see_other
from sanzi.platform.problems import DomainError

PER_PAGE = 20
register_labels("listing_status", {status.value: name for status, name in STATUS_NAMES_ZH.items()})
register_labels("registration_status", REGISTRATION_STATUS_NAMES)
register_labels("deposit_state", DEPOSIT_STATE_NAMES)
LISTING_COLOURS = {
    "draft": "",
    "submitted": "yellow",
    "approved": "blue",
    "announced": "blue",
    "bidding": "orange",
    "closed": "orange",
    "sold": "green",
    "failed": "red",
    "suspended": "red",
    "terminated": "",
}

TEXT_FIELDS = (
    "title",
    "description",
    "trade_type",
    "term_years",
    "term_months",
    "price_basis",
    "area",
    "qualification_conditions",
    "announcement_days",
    "extension_minutes",
    "max_extensions",
)
MONEY_FIELDS = (
    "starting_price",
    "reserve_price",
    "min_increment",
    "max_increment",
    "deposit",
    "performance_bond",
)
TIME_FIELDS = ("registration_deadline", "bidding_starts_at", "bidding_ends_at")
OPTIONAL = ("description", "reserve_price", "qualification_conditions", "area")


def _now() -> datetime:
    return datetime.now(UTC)


def _no_village() -> DomainError:
    return DomainError("请先选择村", "choose a village first", field="village", status_code=400)


def _yuan(fen: int | None) -> str:
    return "" if fen is None else f"{fen // 100}.{fen % 100:02d}"


def _terms_input(form: dict[str, str], asset_ids: list[str]) -> dict[str, Any]:
    """The listing's terms from the form: amounts in yuan as typed, times in Beijing time."""
    values: dict[str, Any] = {name: form.get(name, "") for name in TEXT_FIELDS}
    for name in MONEY_FIELDS:
        values[name] = money(form.get(name, ""))
    for name in TIME_FIELDS:
        values[name] = beijing_datetime(form.get(name, "")) if form.get(name) else ""
    values["asset_ids"] = [value for value in asset_ids if value]
    return values


def _form_of(listing: Listing, asset_ids: list[int]) -> dict[str, Any]:
    years, months = divmod(listing.term_months, 12)
    return {
        "title": listing.title,
        "description": listing.description or "",
        "trade_type": listing.trade_type,
        "term_years": str(years) if not months else "",
        "term_months": str(listing.term_months) if months else "",
        "price_basis": listing.price_basis,
        "area": format_area(listing.area) if listing.area is not None else "",
        "starting_price": _yuan(listing.starting_price_fen),
        "reserve_price": _yuan(listing.reserve_price_fen),
        "min_increment": _yuan(listing.min_increment_fen),
        "max_increment": _yuan(listing.max_increment_fen),
        "deposit": _yuan(listing.deposit_fen),
        "performance_bond": _yuan(listing.performance_bond_fen),
        "qualification_conditions": listing.qualification_conditions or "",
        "announcement_days": str(listing.announcement_days),
        "registration_deadline": datetime_local(listing.registration_deadline),
        "bidding_starts_at": datetime_local(listing.bidding_starts_at),
        "bidding_ends_at": datetime_local(listing.bidding_ends_at),
        "extension_minutes": str(listing.extension_minutes),
        "max_extensions": str(listing.max_extensions),
        "asset_ids": [str(i) for i in asset_ids],
    }


def _default_terms() -> dict[str, Any]:
    """Sensible first values: a 3-year lease priced per year, 20 days' announcement, bidding on a weekday
    morning after registration closes (all editable)."""
    start = (
        (datetime.now(UTC) + timedelta(days=25))
        .astimezone(UTC)
        .replace(hour=1, minute=0, second=0, microsecond=0)
    )
    return {
        "trade_type": "lease",
        "term_years": "3",
        "price_basis": "per_year",
        "performance_bond": "0.00",
        "announcement_days": "20",
        "registration_deadline": datetime_local(start - timedelta(days=2)),
        "bidding_starts_at": datetime_local(start),
        "bidding_ends_at": datetime_local(start + timedelta(hours=2)),
        "extension_minutes": "5",
        "max_extensions": "20",
        "asset_ids": [],
    }


def _relist_defaults(listing: Listing) -> dict[str, str]:
    """A failed listing offered again: the same price, a new timetable starting from today."""
    defaults = _default_terms()
    return {
        "starting_price": _yuan(listing.starting_price_fen),
        "reserve_price": _yuan(listing.reserve_price_fen),
        **{name: defaults[name] for name in TIME_FIELDS},
    }


async def _asset_ids_of(session: AsyncSession, listing: Listing, user: Any) -> list[int]:
    """The assets a listing offers, as the listing service shows them to its officials."""
    (detail,) = await service.listings_out(session, [listing], user)
    return [asset.id for asset in detail.assets]


async def _offerable_assets(
    session: AsyncSession, request: AnyRequest, village: Village, include: list[int]
) -> list[Any]:
    """The village's idle assets (and those already in this draft), to tick in the listing form."""
    collective = await collective_for(session, village.code, request.user)
    assets = AssetService(session)
    idle = (await assets.list(collective, None, AssetStatus.IDLE, None, 1, 500)).items
    shown = {asset.id for asset in idle}
    extra = []
    for asset_id in {i for i in include if i not in shown and 0 < i < 2**63}:
        try:
            extra.append(await assets.get(asset_id, request.user))
        except DomainError:  # a made-up or another village's id in the submitted form: not offered
            continue
    return sorted([*idle, *[AssetSchema.model_validate(a) for a in extra]], key=lambda asset: asset.code)


async def own_listing(db_session: AsyncSession, request: AnyRequest, listing_id: int, write: bool) -> Listing:
    """The listing if it is of a village the caller may read (write): another village's is hidden (404)."""
    listing = await db_session.get(Listing, listing_id)
    if listing is None:
        raise DomainError("交易项目不存在", "listing not found", status_code=404, code="not_found")
    check_village(request.user, listing.village_code, write=write)
    return listing


async def listing_page(
    db_session: AsyncSession,
    request: AnyRequest,
    listing_id: int,
    errors: dict[str, str] | None = None,
    forms: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    listing = await own_listing(db_session, request, listing_id, False)
    village = await village_for(db_session, listing.village_code, request.user)
    user = request.user
    (detail,) = await service.listings_out(db_session, [listing], user)
    events = await service.listing_events(db_session, listing.id, user)
    regs = None
    if listing.status not in (
        ListingStatus.DRAFT.value,
        ListingStatus.SUBMITTED.value,
        ListingStatus.APPROVED.value,
    ):
        regs = await registrations.listing_registrations(db_session, listing.id, user)
    result = None
    if listing.status in (ListingStatus.SOLD.value, ListingStatus.FAILED.value):
        result = await results.result_of(db_session, listing)
    forms = forms or {}
    today = today_beijing().isoformat()
    return page(
        request,
        "committee/listing.html",
        status_code=status_code,
        **village_context(request, village),
        section="listings",
        listing=detail,
        events=events,
        regs=regs,
        result=result,
        contract_id=listing.contract_id,
        errors=errors or {},
        resolution=forms.get("resolution", {"meeting_date": today}),
        deposit=forms.get("deposit", {"paid_at": datetime_local(_now())}),
        withdraw=forms.get("withdraw", {}),
        relist=forms.get("relist", _relist_defaults(listing)),
        deposit_for=forms.get("deposit_for"),
        contract_form=forms.get(
            "contract", {"signed_on": today, "start_date": today, "payment_frequency": "annual"}
        ),
        frequencies=options(FREQUENCIES),
        colours=LISTING_COLOURS,
        now=_now(),
    )


class ListingPages(Controller):
    """挂牌交易：村委会起草交易项目、附村民代表会议决议提交审核、确认保证金、依成交结果签订合同。"""

    path = "/committee/listings"
    include_in_schema = False

    @get("/", opt=READ)
    async def listings(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        village = await page_village(db_session, request)
        if village is None:
            return await choose_village(db_session, request, "/committee/listings", "挂牌交易")
        raw = request.query_params.get("status")
        status = ListingStatus(raw) if raw in {s.value for s in ListingStatus} else None
        number = page_number(request)
        result = await service.village_listings(
            db_session, village.code, request.user, status, number, PER_PAGE
        )
        return page(
            request,
            "committee/listings.html",
            **village_context(request, village),
            section="listings",
            listings=result.items,
            pager=paginate(result.total, number, PER_PAGE),
            filters={"status": raw if status else ""},
            statuses=[(s.value, name) for s, name in STATUS_NAMES_ZH.items()],
            colours=LISTING_COLOURS,
        )

    # ---- drafting ------------------------------------------------------------------------------------------

    async def _terms_form(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        village: Village,
        form: dict[str, Any],
        errors: dict[str, str],
        listing: Any = None,
        status_code: int = 200,
    ) -> Template:
        include = [int(i) for i in form.get("asset_ids", []) if str(i).isdigit()]
        if listing is not None:
            include += await _asset_ids_of(db_session, listing, request.user)
        return page(
            request,
            "committee/listing_form.html",
            status_code=status_code,
            **village_context(request, village),
            section="listings",
            listing=listing,
            form=form,
            errors=errors,
            assets=await _offerable_assets(db_session, request, village, include),
            trade_types=options(TRADE_TYPES),
            price_bases=options(PRICE_BASES),
        )

    @get("/new", opt=WRITE)
    async def new_form(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        village = await page_village(db_session, request, write=True)
        if village is None:
            raise _no_village()
        form = _default_terms()
        if request.query_params.get("asset"):
            form["asset_ids"] = [request.query_params["asset"]]
        return await self._terms_form(db_session, request, village, form, {})

    @post("/new", opt=WRITE)
    async def create(self, db_session: AsyncSession, request: AnyRequest) -> Template | Redirect:
        raw = await request.form()
        asset_ids = [str(v).strip() for v in raw.getall("asset_ids")] if "asset_ids" in raw else []
        form: dict[str, Any] = {**(await form_data(request)), "asset_ids": asset_ids}
        village = await page_village(db_session, request, write=True)
        if village is None:
            raise _no_village()
        code = village.code  # the rollback below expires the row
        try:
            data = ListingCreate.model_validate(blank_to_none(_terms_input(form, asset_ids)))
            listing = await service.create_listing(db_session, village.code, data, request.user, _now())
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            village = await village_for(db_session, code, request.user, write=True)
            return await self._terms_form(
                db_session, request, village, form, field_errors(exc), status_code=400
            )
        flash(request, f"已保存交易项目草稿 {listing.number}；请附村民代表会议决议后提交审核")
        return await saved(db_session, f"/committee/listings/{listing.id}?village={code}")

    @get("/{listing_id:int}/edit", opt=WRITE)
    async def edit_form(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> Template | Redirect:
        known_id(listing_id)
        listing = await own_listing(db_session, request, listing_id, True)
        if listing.status != ListingStatus.DRAFT.value:
            flash(request, "只有草稿可以修改；镇街退回后可再修改", "warning")
            return see_other(f"/committee/listings/{listing.id}?village={listing.village_code}")
        village = await village_for(db_session, listing.village_code, request.user, write=True)
        form = _form_of(listing, await _asset_ids_of(db_session, listing, request.user))
        return await self._terms_form(db_session, request, village, form, {}, listing)

    @post("/{listing_id:int}/edit", opt=WRITE)
    async def update(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> Template | Redirect:
        known_id(listing_id)
        listing = await own_listing(db_session, request, listing_id, True)
        code = listing.village_code
        raw = await request.form()
        asset_ids = [str(v).strip() for v in raw.getall("asset_ids")] if "asset_ids" in raw else []
        form: dict[str, Any] = {**(await form_data(request)), "asset_ids": asset_ids}
        values = _terms_input(form, asset_ids)
        changes = {k: (v if v not in ("", []) else None) for k, v in values.items()}
        # one of the two term fields is left blank on purpose; blank optional terms clear them
        if changes.get("term_years") is None and changes.get("term_months") is None:
            changes.pop("term_years")
        else:
            changes.pop("term_years" if changes.get("term_years") is None else "term_months")
        changes = {
            k: v for k, v in changes.items() if v is not None or k in OPTIONAL or k in ("term_months",)
        }
        try:
            listing = await service.update_listing(
                db_session, listing_id, ListingUpdate.model_validate(changes), request.user, _now()
            )
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            village = await village_for(db_session, code, request.user, write=True)
            again = await db_session.get(Listing, listing_id)
            return await self._terms_form(db_session, request, village, form, field_errors(exc), again, 400)
        flash(request, "草稿已保存")
        return await saved(db_session, f"/committee/listings/{listing.id}?village={code}")

    # ---- one listing ---------------------------------------------------------------------------------------

    @get("/{listing_id:int}", opt=READ)
    async def listing(self, db_session: AsyncSession, request: AnyRequest, listing_id: int) -> Template:
        known_id(listing_id)
        return await listing_page(db_session, request, listing_id)

    @post("/{listing_id:int}/submit", opt=WRITE)
    async def submit(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> Template | Redirect:
        known_id(listing_id)
        listing = await own_listing(db_session, request, listing_id, True)
        code = listing.village_code
        form = await form_data(request)
        try:
            data = ResolutionIn.model_validate(
                blank_to_none(form, "meeting_date", "members_present", "votes_for", "votes_against", "note")
            )
            await service.submit_listing(db_session, listing_id, data, request.user, _now())
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await listing_page(
                db_session, request, listing_id, field_errors(exc), {"resolution": form}, 400
            )
        flash(request, "已提交镇街审核")
        return await saved(db_session, f"/committee/listings/{listing_id}?village={code}")

    @post("/{listing_id:int}/withdraw", opt=WRITE)
    async def withdraw(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> Template | Redirect:
        """Withdraw the village's own draft for good (later steps are the township's to end)."""
        known_id(listing_id)
        listing = await own_listing(db_session, request, listing_id, True)
        code = listing.village_code
        form = await form_data(request)
        try:
            data = ReasonIn.model_validate(blank_to_none(form, "reason"))
            if listing.status != ListingStatus.DRAFT.value:
                raise DomainError(
                    "只有草稿可以由村委会撤销", "only a draft can be withdrawn by the committee"
                )
            await service.terminate_listing(db_session, listing_id, data.reason, request.user, _now())
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await listing_page(
                db_session, request, listing_id, field_errors(exc), {"withdraw": form}, 400
            )
        flash(request, "草稿已撤销")
        return await saved(db_session, f"/committee/listings/{listing_id}?village={code}")

    @post("/{listing_id:int}/relist", opt=WRITE)
    async def relist(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> Template | Redirect:
        """Offer a failed listing again as a new draft: new dates and a starting price (terms copied)."""
        known_id(listing_id)
        listing = await own_listing(db_session, request, listing_id, True)
        code = listing.village_code
        form = await form_data(request)
        values: dict[str, Any] = blank_to_none(form, "starting_price", "reserve_price", *TIME_FIELDS)
        for name in ("starting_price", "reserve_price"):
            if name in values:
                values[name] = money(values[name])
        for name in TIME_FIELDS:
            if name in values:
                values[name] = beijing_datetime(values[name])
        try:
            relisted = await service.relist_listing(
                db_session, listing_id, RelistIn.model_validate(values), request.user, _now()
            )
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await listing_page(
                db_session, request, listing_id, field_errors(exc), {"relist": form}, 400
            )
        flash(request, f"已生成重新挂牌的草稿 {relisted.number}；请附村民代表会议决议后提交审核")
        return await saved(db_session, f"/committee/listings/{relisted.id}?village={code}")

    @post("/{listing_id:int}/contract", opt=WRITE)
    async def sign(
        self, db_session: AsyncSession, request: AnyRequest, listing_id: int
    ) -> Template | Redirect:
        known_id(listing_id)
        listing = await own_listing(db_session, request, listing_id, True)
        code = listing.village_code
        form = await form_data(request)
        try:
            data = ContractFromResult.model_validate(
                blank_to_none(form, "number", "signed_on", "start_date", "payment_frequency")
            )
            _, contract_id = await results.contract_from_result(
                db_session, listing_id, data, request.user, _now()
            )
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await listing_page(
                db_session, request, listing_id, field_errors(exc), {"contract": form}, 400
            )
        flash(request, "已依成交结果签订合同；中标人的保证金已转作首期价款")
        return await saved(db_session, f"/committee/contracts/{contract_id}?village={code}")


class DepositPages(Controller):
    """确认竞买保证金到账（村集体收取保证金并入账）。"""

    path = "/committee/registrations"
    include_in_schema = False

    @post("/{registration_id:int}/deposit", opt=WRITE)
    async def confirm(
        self, db_session: AsyncSession, request: AnyRequest, registration_id: int
    ) -> Template | Redirect:
        known_id(registration_id)
        registration = await db_session.get(Registration, registration_id)
        listing = await db_session.get(Listing, registration.listing_id) if registration else None
        if registration is None or listing is None:
            raise DomainError("报名记录不存在", "registration not found", status_code=404, code="not_found")
        check_village(request.user, listing.village_code, write=True)
        listing_id, code = listing.id, listing.village_code
        form = await form_data(request)
        values = blank_to_none(form, "payer_name", "payer_account", "paid_at")
        if "paid_at" in values:
            values["paid_at"] = beijing_datetime(values["paid_at"])
        try:
            data = DepositIn.model_validate(values)
            await registrations.confirm_deposit(db_session, registration_id, data, request.user, _now())
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await listing_page(
                db_session,
                request,
                listing_id,
                field_errors(exc),
                {"deposit": form, "deposit_for": registration_id},
                400,
            )
        flash(request, "保证金已确认到账，并已入账（应付款—竞买保证金）")
        return await saved(db_session, f"/committee/listings/{listing_id}?village={code}")


class VillageTradesPage(Controller):
    """A village's published listings and results, for its public disclosure page (a fragment under htmx)."""

    path = "/villages"
    include_in_schema = False

    @get("/{code:str}/trades", opt=PUBLIC)
    async def trades(self, db_session: AsyncSession, request: AnyRequest, code: str) -> Template:
        village = await village_for(db_session, code, None, public=True)
        found = await service.search_listings(
            db_session, None, village=village.code, published_only=True, page=1, page_size=50
        )
        fragment = bool(request.headers.get("hx-request"))
        return page(
            request,
            "disclosure/trades.html" if fragment else "disclosure/trades_page.html",
            village=village,
            listings=found.items,
            total=found.total,
            fragment=fragment,
            colours=LISTING_COLOURS,
        )


controllers: list[Any] = [ListingPages, DepositPages, VillageTradesPage]
