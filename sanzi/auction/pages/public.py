"""Public portal pages: home with the platform's figures, announcements, a listing, results and search.

Anyone may read them without logging in. What is public follows the API: a listing from its announcement on
(never a draft, never the secret reserve, bidder identities only with the result); a listing's officials may
also open their own unpublished listing's page.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, get
from litestar.response import Template
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.lifecycle import STATUS_NAMES_ZH
from sanzi.auction.models import ListingStatus
from sanzi.auction.services import listings as listing_service
from sanzi.auction.services import public as public_service
from sanzi.auction.services import results as result_service
from sanzi.ledger.models import AssetKind, TradeType
from sanzi.platform import charts
from sanzi.platform.auth import PUBLIC
from sanzi.platform.database import outside_transaction_block
from sanzi.platform.models import Role
from sanzi.platform.pages import page, paginate, register_labels, request_language, translate
from sanzi.platform.problems import NotFound
from sanzi.platform.schemas import Page
from sanzi.platform.services import GeographyService

AnyRequest = Request[Any, Any, Any]
PER_PAGE = 20
SEARCH_CAP = 10
MAX_QUERY = 50

TRADE_TYPE_NAMES = {
    TradeType.LEASE.value: "出租",
    TradeType.CONTRACTING.value: "发包",
    TradeType.TRANSFER.value: "转让",
    TradeType.JOINT_VENTURE.value: "合作",
}
ASSET_KIND_NAMES = {
    AssetKind.FARMLAND.value: "耕地",
    AssetKind.FISH_POND.value: "鱼塘",
    AssetKind.FOREST.value: "林地",
    AssetKind.CONSTRUCTION_LAND.value: "集体建设用地",
    AssetKind.BUILDING.value: "厂房/楼宇",
    AssetKind.SHOP.value: "商铺",
    AssetKind.EQUIPMENT.value: "设备",
    AssetKind.OTHER.value: "其他",
}
register_labels("listing_status", {status.value: name for status, name in STATUS_NAMES_ZH.items()})
register_labels("trade_type", TRADE_TYPE_NAMES)
register_labels("asset_kind", ASSET_KIND_NAMES)
register_labels("price_basis", {"total": "总价", "per_year": "按年计价", "per_mu_year": "按亩按年计价"})
register_labels("price_unit", {"total": "元（总价）", "per_year": "元/年", "per_mu_year": "元/亩/年"})
register_labels("area_unit", {"mu": "亩", "m2": "平方米", "item": "台/套"})
register_labels("result_outcome", {"sold": "成交", "failed": "流拍"})

#: the colour of each status badge
STATUS_COLOURS = {
    ListingStatus.ANNOUNCED.value: "blue",
    ListingStatus.BIDDING.value: "orange",
    ListingStatus.CLOSED.value: "yellow",
    ListingStatus.SOLD.value: "green",
    ListingStatus.FAILED.value: "",
    ListingStatus.SUSPENDED.value: "yellow",
    ListingStatus.TERMINATED.value: "red",
}
PUBLIC_STATUS_CODES = [s.value for s in public_service.PUBLIC_STATUSES]
FILTER_OPTIONS = {
    "kind_options": list(ASSET_KIND_NAMES.items()),
    "trade_type_options": list(TRADE_TYPE_NAMES.items()),
}


def _now() -> datetime:
    return datetime.now(UTC)


# ---- filters from the query string ----------------------------------------------------------------------


@dataclass
class Filters:
    """The list filters as given (for re-filling the form) and as parsed, with a Chinese error per field."""

    form: dict[str, str]
    district: str | None = None
    township: str | None = None
    kind: AssetKind | None = None
    trade_type: TradeType | None = None
    status: str | None = None
    q: str | None = None
    page: int = 1
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Area:
    """A district or township as the filter forms need it (plain values, safe to keep between requests)."""

    code: str
    name: str
    district_code: str = ""


@dataclass
class Areas:
    """The districts and townships of the filter forms, with the township options already written as HTML
    (about 175 options: escaping them on every list page cost a quarter of its rendering)."""

    districts: list[Area]
    townships: list[Area]
    _options: dict[str | None, Markup] = field(default_factory=dict)

    def township_options(self, district: str | None, chosen: str | None) -> Markup:
        """The township select's option groups (the chosen district's only, when one is chosen), with
        ``chosen`` selected."""
        options = self._options.get(district)
        if options is None:
            names = {d.code: d.name for d in self.districts}
            groups: dict[str, list[Area]] = {}
            for township in self.townships:
                if not district or township.district_code == district:
                    groups.setdefault(township.district_code, []).append(township)
            option = Markup('<option value="{}">{}</option>')
            options = Markup("").join(
                Markup('<optgroup label="{}">{}</optgroup>').format(
                    names.get(code, code), Markup("").join(option.format(t.code, t.name) for t in rows)
                )
                for code, rows in groups.items()
            )
            self._options[district] = options
        if chosen:
            unselected = Markup('<option value="{}">').format(chosen)
            selected = Markup('<option value="{}" selected>').format(chosen)
            options = Markup(options.replace(unselected, selected, 1))
        return options


#: the districts and townships change only when the divisions are imported again: each worker keeps them
#: for a minute instead of reading ~200 rows on every list page
AREAS_SECONDS = 60.0
_areas_cache: dict[str, tuple[float, Areas]] = {}


async def _areas(session: AsyncSession) -> Areas:
    database = str(session.get_bind().engine.url)  # one entry per database the worker talks to
    now = time.monotonic()
    cached = _areas_cache.get(database)
    if cached is not None and now - cached[0] < AREAS_SECONDS:
        return cached[1]
    geography = GeographyService(session)
    districts = [Area(d.code, d.name) for d in await geography.districts()]
    townships = [Area(t.code, t.name, t.district_code) for t in await geography.townships(None)]
    areas = Areas(districts, townships)
    _areas_cache[database] = (now, areas)
    return areas


def _parse_filters(request: AnyRequest, areas: Areas, statuses: list[str]) -> Filters:
    """The filters of the announcements and results lists; an unknown value is an error beside its field."""
    form = {k: str(v).strip() for k, v in request.query_params.items() if k != "page"}
    filters = Filters(form=form)
    errors = filters.errors
    district = form.get("district") or None
    if district:
        if district not in {d.code for d in areas.districts}:
            errors["district"] = "请从列表中选择区"
        else:
            filters.district = district
    township = form.get("township") or None
    if township:
        chosen = next((t for t in areas.townships if t.code == township), None)
        if chosen is None:
            errors["township"] = "请从列表中选择镇街"
        elif filters.district and chosen.district_code != filters.district:
            form.pop("township")  # left over from another district: the district chosen last wins
        else:
            filters.township = township
    kind = form.get("kind") or None
    if kind:
        try:
            filters.kind = AssetKind(kind)
        except ValueError:
            errors["kind"] = "请从列表中选择资产类别"
    trade_type = form.get("trade_type") or None
    if trade_type:
        try:
            filters.trade_type = TradeType(trade_type)
        except ValueError:
            errors["trade_type"] = "请从列表中选择交易方式"
    status = form.get("status") or None
    if status:
        if status not in statuses:
            errors["status"] = "请从列表中选择状态"
        else:
            filters.status = status
    q = form.get("q") or None
    if q:
        if len(q) > MAX_QUERY:
            errors["q"] = f"关键词不能超过 {MAX_QUERY} 个字"
        else:
            filters.q = q
    raw_page = request.query_params.get("page", "1")
    filters.page = int(raw_page) if raw_page.isdigit() and 0 < int(raw_page) <= 100_000 else 1
    return filters


def _area_options(areas: Areas, filters: Filters) -> dict[str, Any]:
    """The district options, and the township options (only the chosen district's when one is chosen)."""
    return {
        "district_options": [(d.code, d.name) for d in areas.districts],
        "township_options": areas.township_options(filters.district, filters.township),
    }


async def _paged(fetch: Callable[[int], Awaitable[Page[Any]]], number: int) -> tuple[list[Any], int, int]:
    """A page of a list; a page past the end (an old link, fewer rows now) shows the last page instead."""
    found = await fetch(number)
    last = max(1, -(-found.total // PER_PAGE))
    if number > last:
        number = last
        found = await fetch(number)
    return list(found.items), found.total, number


# ---- charts for the home page ---------------------------------------------------------------------------


def _wan(fen: int) -> float:
    """Fen as 万元 for a chart's bar length (display only; tables beside the charts show exact amounts)."""
    return round(fen / 1_000_000, 2)


def _home_charts(figures: public_service.PlatformFigures, lang: str) -> dict[str, Markup]:
    if not figures.total.sold:
        return {}
    # a horizontal bar chart draws its first label at the bottom: reversed, it reads in the table's order
    districts = [f for f in reversed(figures.by_district) if f.closed]
    years = figures.by_year
    value = translate("成交金额（万元）", lang)
    premium = translate("平均溢价率（%）", lang)
    return {
        "district_value": charts.bar_chart(
            [f.name for f in districts],
            {value: [_wan(f.value_fen) for f in districts]},
            title=translate("各区成交金额（万元）", lang),
            horizontal=True,
            height=max(220, 40 * len(districts) + 90),
            formatter=lambda v: f"{v:,.2f}",
        ),
        "year_value": charts.bar_chart(
            [f.name for f in years],
            {value: [_wan(f.value_fen) for f in years]},
            title=translate("历年成交金额（万元）", lang),
            height=280,
            formatter=lambda v: f"{v:,.2f}",
        ),
        "year_premium": charts.line_chart(
            [f.name for f in years],
            {
                premium: [
                    float(f.average_premium * 100) if f.average_premium is not None else None for f in years
                ]
            },
            title=translate("历年平均溢价率（%）", lang),
            height=280,
            formatter=lambda v: f"{v:.2f}%",
        ),
    }


#: the home page's figures sum every closed trade of all years (tens of milliseconds of SQL that grow with the
#: history, and about 25 ms drawing its charts): each worker's app keeps them, with their charts, for a minute
HOME_FIGURES_SECONDS = 60.0


async def _home_figures(
    request: AnyRequest, session: AsyncSession
) -> tuple[public_service.PlatformFigures, dict[str, Markup]]:
    """The platform's figures and the home page's charts of them in the reader's language, at most a minute
    old (kept in the app's state: one copy per worker and app)."""
    lang = request_language(request)
    kept: dict[str, tuple[float, public_service.PlatformFigures, dict[str, Markup]]]
    kept = request.app.state.setdefault("home_figures", {})
    now = time.monotonic()
    cached = kept.get(lang)
    if cached is not None and now - cached[0] < HOME_FIGURES_SECONDS:
        return cached[1], cached[2]
    figures = await public_service.platform_figures(session)
    home_charts = _home_charts(figures, lang)
    kept[lang] = (now, figures, home_charts)
    return figures, home_charts


# ---- pages ----------------------------------------------------------------------------------------------


class PublicPortalController(Controller):
    """The pages anyone can read."""

    include_in_schema = False

    @get("/", operation_id="PortalHome", opt=PUBLIC)
    async def home(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        await outside_transaction_block(db_session)
        figures, home_charts = await _home_figures(request, db_session)
        latest = await public_service.open_listings(db_session, 5)
        results = await public_service.public_results(db_session, page=1, page_size=5)
        return page(
            request,
            "portal/home.html",
            figures=figures,
            charts=home_charts,
            latest=latest,
            results=results.items,
            status_colours=STATUS_COLOURS,
        )

    @get("/announcements", operation_id="PortalAnnouncements", opt=PUBLIC)
    async def announcements(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        await outside_transaction_block(db_session)
        areas = await _areas(db_session)
        filters = _parse_filters(request, areas, PUBLIC_STATUS_CODES)
        items: list[Any] = []
        total = 0
        if not filters.errors:

            def fetch(number: int) -> Awaitable[Page[Any]]:
                return listing_service.search_listings(
                    db_session,
                    None,  # the public view, whoever asks: never the reserve
                    district=filters.district,
                    township=filters.township,
                    status=ListingStatus(filters.status) if filters.status else None,
                    trade_type=filters.trade_type,
                    asset_kind=filters.kind,
                    q=filters.q,
                    page=number,
                    page_size=PER_PAGE,
                )

            items, total, filters.page = await _paged(fetch, filters.page)
        return page(
            request,
            "portal/announcements.html",
            status_code=400 if filters.errors else 200,
            errors=filters.errors,
            form=filters.form,
            items=items,
            pager=paginate(total, filters.page, PER_PAGE),
            status_options=[(s, STATUS_NAMES_ZH[ListingStatus(s)]) for s in PUBLIC_STATUS_CODES],
            status_colours=STATUS_COLOURS,
            **FILTER_OPTIONS,
            **_area_options(areas, filters),
        )

    @get("/listings/{listing_id:int}", operation_id="PortalListing", opt=PUBLIC)
    async def listing(self, db_session: AsyncSession, request: AnyRequest, listing_id: int) -> Template:
        await outside_transaction_block(db_session)
        user = request.scope.get("user")
        row = await listing_service.get_listing(db_session, listing_id, user)  # 404 unless public or theirs
        published = listing_service.is_published(row)
        events = await listing_service.listing_events(db_session, listing_id, user)
        listing = (await listing_service.listings_out(db_session, [row], None))[0]  # the public view
        result = None
        if row.status in (ListingStatus.SOLD.value, ListingStatus.FAILED.value) and row.closed_at is not None:
            result = await result_service.result_of(db_session, row)
        relisted_from = None
        if row.relisted_from_id is not None:
            try:
                relisted_from = (
                    await listing_service.get_listing(db_session, row.relisted_from_id, None)
                ).number
            except NotFound:
                pass  # an earlier listing that never was public stays unnamed
        now = _now()
        registration_open = row.status == ListingStatus.ANNOUNCED.value and now < _aware(
            row.registration_deadline
        )
        return page(
            request,
            "portal/listing.html",
            listing=listing,
            published=published,
            events=events,
            result=result,
            premium=public_service.premium_rate(row.starting_price_fen, row.final_price_fen),
            relisted_from=relisted_from,
            registration_open=registration_open,
            is_bidder=user is not None and user.role == Role.BIDDER.value,
            live=row.status == ListingStatus.BIDDING.value,
            status_colours=STATUS_COLOURS,
        )

    @get("/results", operation_id="PortalResults", opt=PUBLIC)
    async def results(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        await outside_transaction_block(db_session)
        areas = await _areas(db_session)
        filters = _parse_filters(request, areas, ["sold", "failed"])
        items: list[Any] = []
        total = 0
        if not filters.errors:

            def fetch(number: int) -> Awaitable[Page[Any]]:
                return public_service.public_results(
                    db_session,
                    district=filters.district,
                    township=filters.township,
                    outcome=filters.status,
                    trade_type=filters.trade_type,
                    asset_kind=filters.kind,
                    q=filters.q,
                    page=number,
                    page_size=PER_PAGE,
                )

            items, total, filters.page = await _paged(fetch, filters.page)
        return page(
            request,
            "portal/results.html",
            status_code=400 if filters.errors else 200,
            errors=filters.errors,
            form=filters.form,
            items=items,
            pager=paginate(total, filters.page, PER_PAGE),
            status_options=[("sold", "成交"), ("failed", "流拍")],
            **FILTER_OPTIONS,
            **_area_options(areas, filters),
        )

    @get("/search", operation_id="PortalSearch", opt=PUBLIC)
    async def search(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        await outside_transaction_block(db_session)
        q = (request.query_params.get("q") or "").strip()
        errors: dict[str, str] = {}
        groups: dict[str, Any] = {}
        if len(q) > MAX_QUERY:
            errors["q"] = f"关键词不能超过 {MAX_QUERY} 个字"
        elif q:
            groups = {
                "villages": await GeographyService(db_session).villages(None, None, q, 1, SEARCH_CAP),
                "listings": await listing_service.search_listings(
                    db_session, None, q=q, page_size=SEARCH_CAP
                ),
                "results": await public_service.public_results(db_session, q=q, page_size=SEARCH_CAP),
            }
        found = sum(group.total for group in groups.values())
        return page(
            request,
            "portal/search.html",
            status_code=400 if errors else 200,
            errors=errors,
            form={"q": q},
            q=q,
            groups=groups,
            found=found,
            status_colours=STATUS_COLOURS,
        )


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive UTC times."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


controllers: list[Any] = [PublicPortalController]
