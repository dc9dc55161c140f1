"""The committee's asset register: list with filters, an asset's page with its status history, registering and
editing an asset, and status changes, all through the asset service."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get, post
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import AssetKind, AssetStatus
from sanzi.ledger.pages.chooser import choose_village
from sanzi.ledger.pages.common import (
    AREA_UNITS,
    ASSET_KINDS,
    ASSET_STATUSES,
    READ,
    STATUS_COLOURS,
    WRITE,
    AnyRequest,
    blank_to_none,
    field_errors,
    is_form_error,
    known_id,
    money,
    options,
    page_number,
    page_village,
    saved,
    village_context,
)
from sanzi.ledger.schemas.assets import AssetCreate, AssetStatusIn, AssetUpdate, format_area
from sanzi.ledger.services.assets import TRANSITIONS, AssetService
from sanzi.platform.access import collective_for, village_for
from sanzi.platform.pages import flash, form_data, page, paginate
from sanzi.platform.problems import DomainError

PER_PAGE = 20
ASSET_FIELDS = (
    "code",
    "name",
    "kind",
    "area",
    "area_unit",
    "location",
    "book_value",
    "appraisal",
    "appraised_on",
    "description",
)
MONEY_FIELDS = ("book_value", "appraisal")


def _no_village() -> DomainError:
    return DomainError("请先选择村", "choose a village first", field="village", status_code=400)


def _asset_input(form: dict[str, str]) -> dict[str, Any]:
    values = {name: form.get(name, "") for name in ASSET_FIELDS}
    for name in MONEY_FIELDS:
        values[name] = money(values[name])
    return values


def _form_of(asset: Any) -> dict[str, str]:
    """An asset's current values as the edit form shows them (amounts in yuan)."""

    def yuan(fen: int | None) -> str:
        return "" if fen is None else f"{fen // 100}.{fen % 100:02d}"

    return {
        "code": asset.code,
        "name": asset.name,
        "kind": asset.kind,
        "area": format_area(asset.area),
        "area_unit": asset.area_unit,
        "location": asset.location,
        "book_value": yuan(asset.book_value_fen),
        "appraisal": yuan(asset.appraisal_fen),
        "appraised_on": asset.appraised_on.isoformat() if asset.appraised_on else "",
        "description": asset.description or "",
    }


class AssetPages(Controller):
    """资产登记：村委会登记和修改本村资产、变更状态；监管人员查看辖区各村。"""

    path = "/committee/assets"
    include_in_schema = False

    @get("/", opt=READ)
    async def register(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        village = await page_village(db_session, request)
        if village is None:
            return await choose_village(db_session, request, "/committee/assets", "资产登记")
        collective = await collective_for(db_session, village.code, request.user)
        query = request.query_params
        kind = query.get("kind") if query.get("kind") in ASSET_KINDS else None
        status = query.get("status") if query.get("status") in ASSET_STATUSES else None
        q = (query.get("q") or "").strip()[:50] or None
        number = page_number(request)
        result = await AssetService(db_session).list(
            collective,
            AssetKind(kind) if kind else None,
            AssetStatus(status) if status else None,
            q,
            number,
            PER_PAGE,
        )
        return page(
            request,
            "committee/assets.html",
            **village_context(request, village),
            section="assets",
            assets=result.items,
            pager=paginate(result.total, number, PER_PAGE),
            filters={"kind": kind or "", "status": status or "", "q": q or ""},
            kinds=options(ASSET_KINDS),
            statuses=options(ASSET_STATUSES),
            colours=STATUS_COLOURS,
        )

    # ---- registering ---------------------------------------------------------------------------------------

    async def _new_form(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        form: dict[str, str],
        errors: dict[str, str],
        status_code: int = 200,
    ) -> Template:
        village = await page_village(db_session, request, write=True)
        if village is None:
            raise _no_village()
        return page(
            request,
            "committee/asset_form.html",
            status_code=status_code,
            **village_context(request, village),
            section="assets",
            asset=None,
            form=form,
            errors=errors,
            kinds=options(ASSET_KINDS),
            units=options(AREA_UNITS),
        )

    @get("/new", opt=WRITE)
    async def new_form(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        return await self._new_form(db_session, request, {"book_value": "0.00"}, {})

    @post("/new", opt=WRITE)
    async def create(self, db_session: AsyncSession, request: AnyRequest) -> Template | Redirect:
        form = await form_data(request)
        village = await page_village(db_session, request, write=True)
        if village is None:
            raise _no_village()
        collective = await collective_for(db_session, village.code, request.user, write=True)
        try:
            data = AssetCreate.model_validate(blank_to_none(_asset_input(form)))
            asset = await AssetService(db_session).create(collective, data, request.user)
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await self._new_form(db_session, request, form, field_errors(exc), 400)
        flash(request, f"已登记资产“{asset.name}”")
        return await saved(db_session, f"/committee/assets/{asset.id}?village={village.code}")

    # ---- one asset -----------------------------------------------------------------------------------------

    async def _asset_page(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        asset_id: int,
        template: str,
        form: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        status_code: int = 200,
        write: bool = False,
    ) -> Template:
        known_id(asset_id)
        service = AssetService(db_session)
        asset = await service.get(asset_id, request.user, write=write)
        village = await village_for(db_session, asset.village_code, request.user)
        history = await service.history(asset_id, request.user)
        return page(
            request,
            template,
            status_code=status_code,
            **village_context(request, village),
            section="assets",
            asset=asset,
            area=format_area(asset.area),
            history=history,
            # listing and selling go through a listing and its result, not this form
            next_statuses=[
                (s.value, ASSET_STATUSES[s.value])
                for s in sorted(TRANSITIONS[AssetStatus(asset.status)], key=lambda s: s.value)
                if s not in (AssetStatus.LISTED, AssetStatus.SOLD)
            ],
            form=form if form is not None else _form_of(asset),
            errors=errors or {},
            kinds=options(ASSET_KINDS),
            units=options(AREA_UNITS),
            colours=STATUS_COLOURS,
        )

    @get("/{asset_id:int}", opt=READ)
    async def detail(self, db_session: AsyncSession, request: AnyRequest, asset_id: int) -> Template:
        known_id(asset_id)
        return await self._asset_page(db_session, request, asset_id, "committee/asset.html", form={})

    @get("/{asset_id:int}/edit", opt=WRITE)
    async def edit_form(self, db_session: AsyncSession, request: AnyRequest, asset_id: int) -> Template:
        known_id(asset_id)
        return await self._asset_page(db_session, request, asset_id, "committee/asset_form.html", write=True)

    @post("/{asset_id:int}/edit", opt=WRITE)
    async def update(
        self, db_session: AsyncSession, request: AnyRequest, asset_id: int
    ) -> Template | Redirect:
        known_id(asset_id)
        form = await form_data(request)
        service = AssetService(db_session)
        await service.get(asset_id, request.user, write=True)  # 404 / 403 before the form is read
        values = _asset_input(form)
        # blank optional fields clear them; blank required fields are left for the service to refuse by name
        data_in = {k: (v if v != "" else None) for k, v in values.items() if k in form or k in MONEY_FIELDS}
        try:
            asset = await service.update(asset_id, AssetUpdate.model_validate(data_in), request.user)
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await self._asset_page(
                db_session, request, asset_id, "committee/asset_form.html", form, field_errors(exc), 400, True
            )
        flash(request, "资产信息已保存")
        return await saved(db_session, f"/committee/assets/{asset.id}?village={asset.village_code}")

    @post("/{asset_id:int}/status", opt=WRITE)
    async def change_status(
        self, db_session: AsyncSession, request: AnyRequest, asset_id: int
    ) -> Template | Redirect:
        known_id(asset_id)
        form = await form_data(request)
        service = AssetService(db_session)
        await service.get(asset_id, request.user, write=True)
        try:
            data = AssetStatusIn.model_validate(blank_to_none(form, "status", "reason"))
            asset = await service.set_status(asset_id, data, request.user)
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await self._asset_page(
                db_session, request, asset_id, "committee/asset.html", form, field_errors(exc), 400
            )
        flash(request, f"资产状态已变更为“{ASSET_STATUSES[asset.status]}”")
        return await saved(db_session, f"/committee/assets/{asset.id}?village={asset.village_code}")


controllers: list[Any] = [AssetPages]
