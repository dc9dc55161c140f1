"""Ledger HTTP API: contracts of a village's collective, their payment schedules, receipts and arrears."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.schemas import contracts as schemas
from sanzi.ledger.schemas.contracts import ContractStatus
from sanzi.ledger.services.contracts import ContractService
from sanzi.platform.access import collective_for
from sanzi.platform.auth import roles
from sanzi.platform.models import Role
from sanzi.platform.schemas import Page

READ = roles(Role.ADMIN, Role.COMMITTEE, Role.SUPERVISOR)
WRITE = roles(Role.ADMIN, Role.COMMITTEE)


def local_today(request: Request[Any, Any, Any]) -> date:
    """Today in the platform's time zone (Asia/Shanghai unless configured otherwise)."""
    return datetime.now(request.app.state.settings.zone).date()


class ContractController(Controller):
    """Contracts (合同): the village's committee and admin write; supervisors of its area read."""

    path = "/api"
    tags = ["contracts"]

    @post("/villages/{code:str}/contracts", operation_id="CreateContract", opt=WRITE)
    async def create_contract(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        code: str,
        data: schemas.ContractCreate,
    ) -> schemas.Contract:
        collective = await collective_for(db_session, code, request.user, write=True)
        contract = await ContractService(db_session).create(collective, data, request.user)
        return schemas.Contract.model_validate(contract)

    @get("/villages/{code:str}/contracts", operation_id="ListContracts", opt=READ)
    async def list_contracts(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        code: str,
        status: ContractStatus | None = None,
        asset_id: int | None = Parameter(default=None, query="asset"),
        counterparty: str | None = Parameter(
            default=None, max_length=100, description="name part or ID number"
        ),
        page: int = Parameter(default=1, ge=1, le=100_000),
        page_size: int = Parameter(default=50, ge=1, le=500),
    ) -> Page[schemas.ContractSummary]:
        collective = await collective_for(db_session, code, request.user)
        return await ContractService(db_session).list(
            collective, status, asset_id, counterparty, page, page_size
        )

    @get("/villages/{code:str}/arrears", operation_id="GetVillageArrears", opt=READ)
    async def arrears(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        code: str,
        as_of: date | None = Parameter(default=None, description="default: today (Asia/Shanghai)"),
    ) -> schemas.Arrears:
        collective = await collective_for(db_session, code, request.user)
        return await ContractService(db_session).arrears(collective, as_of or local_today(request))

    @get("/contracts/{contract_id:int}", operation_id="GetContract", opt=READ)
    async def get_contract(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], contract_id: int
    ) -> schemas.Contract:
        return schemas.Contract.model_validate(
            await ContractService(db_session).get(contract_id, request.user)
        )

    @get("/contracts/{contract_id:int}/schedule", operation_id="GetContractSchedule", opt=READ)
    async def schedule(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        contract_id: int,
        as_of: date | None = Parameter(default=None, description="default: today (Asia/Shanghai)"),
    ) -> schemas.Schedule:
        return await ContractService(db_session).schedule(
            contract_id, request.user, as_of or local_today(request)
        )

    @post("/contracts/{contract_id:int}/receipts", operation_id="CreateContractReceipt", opt=WRITE)
    async def receive(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        contract_id: int,
        data: schemas.ReceiptCreate,
    ) -> Response[schemas.Receipt]:
        receipt, created = await ContractService(db_session).receive(
            contract_id, data, request.user, local_today(request)
        )
        return Response(schemas.Receipt.model_validate(receipt), status_code=201 if created else 200)


controllers: list[Any] = [ContractController]
