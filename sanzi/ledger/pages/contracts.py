"""The committee's contracts: list with filters, a contract's page with its schedule and receipts, recording a
receipt, registering a direct contract (with its reason), and arrears — through the contract service."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, get, post
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import Asset, AssetStatus, ContractReceipt, JournalEntry
from sanzi.ledger.pages.chooser import choose_village
from sanzi.ledger.pages.common import (
    CONTRACT_STATUSES,
    FREQUENCIES,
    PRICE_BASES,
    READ,
    TRADE_TYPES,
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
    parse_date,
    saved,
    today_beijing,
    village_context,
)
from sanzi.ledger.schemas.contracts import ContractCreate, ContractStatus, ReceiptCreate
from sanzi.ledger.services.assets import AssetService
from sanzi.ledger.services.contracts import ContractService
from sanzi.platform.access import collective_for, village_for
from sanzi.platform.pages import flash, form_data, page, paginate
from sanzi.platform.problems import DomainError

PER_PAGE = 20
CONTRACT_FIELDS = (
    "number",
    "asset_id",
    "trade_type",
    "counterparty_name",
    "counterparty_id_number",
    "start_date",
    "term_years",
    "term_months",
    "price_basis",
    "unit_price",
    "area",
    "payment_frequency",
    "signed_on",
    "origin_reason",
)
RECEIPT_ACCOUNTS = [("bank", "银行存款"), ("cash", "库存现金")]


def _no_village() -> DomainError:
    return DomainError("请先选择村", "choose a village first", field="village", status_code=400)


class ContractPages(Controller):
    """合同：合同台账、收款登记、直接签订的合同登记、欠款。"""

    path = "/committee/contracts"
    include_in_schema = False

    @get("/", opt=READ)
    async def contracts(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        village = await page_village(db_session, request)
        if village is None:
            return await choose_village(db_session, request, "/committee/contracts", "合同")
        collective = await collective_for(db_session, village.code, request.user)
        query = request.query_params
        status = query.get("status") if query.get("status") in CONTRACT_STATUSES else None
        counterparty = (query.get("counterparty") or "").strip()[:100] or None
        try:
            asset_id = int(query["asset"]) if query.get("asset") else None
        except ValueError:
            asset_id = None
        number = page_number(request)
        result = await ContractService(db_session).list(
            collective, ContractStatus(status) if status else None, asset_id, counterparty, number, PER_PAGE
        )
        return page(
            request,
            "committee/contracts.html",
            **village_context(request, village),
            section="contracts",
            contracts=result.items,
            pager=paginate(result.total, number, PER_PAGE),
            filters={
                "status": status or "",
                "counterparty": counterparty or "",
                "asset": query.get("asset", ""),
            },
            statuses=options(CONTRACT_STATUSES),
        )

    @get("/arrears", opt=READ)
    async def arrears(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        village = await page_village(db_session, request)
        if village is None:
            return await choose_village(db_session, request, "/committee/contracts/arrears", "欠款")
        collective = await collective_for(db_session, village.code, request.user)
        as_of = parse_date(request.query_params.get("as_of")) or today_beijing()
        report = await ContractService(db_session).arrears(collective, as_of)
        return page(
            request,
            "committee/arrears.html",
            **village_context(request, village),
            section="arrears",
            report=report,
            as_of=as_of,
        )

    # ---- registering a direct contract ---------------------------------------------------------------------

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
        collective = await collective_for(db_session, village.code, request.user, write=True)
        assets = (await AssetService(db_session).list(collective, None, None, None, 1, 500)).items
        usable = [a for a in assets if a.status not in (AssetStatus.SOLD.value, AssetStatus.DISPOSED.value)]
        return page(
            request,
            "committee/contract_form.html",
            status_code=status_code,
            **village_context(request, village),
            section="contracts",
            form=form,
            errors=errors,
            assets=[(str(a.id), f"{a.code} {a.name}") for a in usable],
            trade_types=[(k, v) for k, v in TRADE_TYPES.items() if k != "transfer"],
            price_bases=options(PRICE_BASES),
            frequencies=options(FREQUENCIES),
        )

    @get("/new", opt=WRITE)
    async def new_form(self, db_session: AsyncSession, request: AnyRequest) -> Template:
        today = today_beijing().isoformat()
        form = {
            "signed_on": today,
            "start_date": today,
            "payment_frequency": "annual",
            "price_basis": "per_year",
        }
        if request.query_params.get("asset"):
            form["asset_id"] = request.query_params["asset"]
        return await self._new_form(db_session, request, form, {})

    @post("/new", opt=WRITE)
    async def create(self, db_session: AsyncSession, request: AnyRequest) -> Template | Redirect:
        form = await form_data(request)
        village = await page_village(db_session, request, write=True)
        if village is None:
            raise _no_village()
        collective = await collective_for(db_session, village.code, request.user, write=True)
        values = blank_to_none({name: form.get(name, "") for name in CONTRACT_FIELDS})
        if "unit_price" in values:
            values["unit_price"] = money(values["unit_price"])
        values["origin"] = "direct"
        try:
            data = ContractCreate.model_validate(values)
            contract = await ContractService(db_session).create(collective, data, request.user)
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await self._new_form(db_session, request, form, field_errors(exc), 400)
        flash(request, f"已登记合同 {contract.number}，共 {len(contract.installments)} 期")
        return await saved(db_session, f"/committee/contracts/{contract.id}?village={village.code}")

    # ---- one contract --------------------------------------------------------------------------------------

    async def _contract_page(
        self,
        db_session: AsyncSession,
        request: AnyRequest,
        contract_id: int,
        form: dict[str, str] | None = None,
        errors: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Template:
        known_id(contract_id)
        service = ContractService(db_session)
        contract = await service.get(contract_id, request.user)
        village = await village_for(db_session, contract.village_code, request.user)
        schedule = await service.schedule(contract_id, request.user, today_beijing())
        asset = await db_session.get(Asset, contract.asset_id) if contract.asset_id else None
        # the receipts of this contract with the entries that booked them (a read of the service's rows)
        receipts = (
            await db_session.execute(
                select(ContractReceipt, JournalEntry.seq)
                .join(JournalEntry, JournalEntry.id == ContractReceipt.entry_id)
                .where(ContractReceipt.contract_id == contract.id)
                .order_by(ContractReceipt.received_on, ContractReceipt.id)
            )
        ).all()
        return page(
            request,
            "committee/contract.html",
            status_code=status_code,
            **village_context(request, village),
            section="contracts",
            contract=contract,
            asset=asset,
            schedule=schedule,
            receipts=receipts,
            form=form
            or {
                "received_on": today_beijing().isoformat(),
                "account": "bank",
                "client_key": uuid.uuid4().hex,
            },
            errors=errors or {},
            receipt_accounts=RECEIPT_ACCOUNTS,
        )

    @get("/{contract_id:int}", opt=READ)
    async def contract(self, db_session: AsyncSession, request: AnyRequest, contract_id: int) -> Template:
        known_id(contract_id)
        return await self._contract_page(db_session, request, contract_id)

    @post("/{contract_id:int}/receipts", opt=WRITE)
    async def receive(
        self, db_session: AsyncSession, request: AnyRequest, contract_id: int
    ) -> Template | Redirect:
        known_id(contract_id)
        form = await form_data(request)
        service = ContractService(db_session)
        contract = await service.get(contract_id, request.user, write=True)
        values = blank_to_none(form, "amount", "received_on", "account", "client_key")
        if "amount" in values:
            values["amount"] = money(values["amount"])
        try:
            data = ReceiptCreate.model_validate(values)
            receipt, created = await service.receive(contract_id, data, request.user, today_beijing())
        except Exception as exc:
            if not is_form_error(exc):
                raise
            await db_session.rollback()
            return await self._contract_page(db_session, request, contract_id, form, field_errors(exc), 400)
        if created:
            flash(
                request, f"已登记收款 {receipt.amount_fen // 100}.{receipt.amount_fen % 100:02d} 元，并已入账"
            )
        else:
            flash(request, "该笔收款已登记，重复提交未再入账", "info")
        return await saved(db_session, f"/committee/contracts/{contract_id}?village={contract.village_code}")


controllers: list[Any] = [ContractPages]
