"""Ledger HTTP API: the asset registry of a village's collective."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, patch, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import AssetKind, AssetStatus
from sanzi.ledger.schemas import assets as schemas
from sanzi.ledger.services.assets import AssetService
from sanzi.platform.access import collective_for
from sanzi.platform.auth import roles
from sanzi.platform.models import Role
from sanzi.platform.schemas import Page

READ = roles(Role.ADMIN, Role.COMMITTEE, Role.SUPERVISOR)
WRITE = roles(Role.ADMIN, Role.COMMITTEE)


class AssetController(Controller):
    """Assets (资产/资源): the village's committee and admin write; supervisors of its area read."""

    path = "/api"
    tags = ["assets"]

    @get("/villages/{code:str}/assets", operation_id="ListAssets", opt=READ)
    async def list_assets(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        code: str,
        kind: AssetKind | None = None,
        status: AssetStatus | None = None,
        q: str | None = Parameter(default=None, max_length=50, description="part of the name or code"),
        page: int = Parameter(default=1, ge=1, le=100_000),
        page_size: int = Parameter(default=50, ge=1, le=500),
    ) -> Page[schemas.Asset]:
        collective = await collective_for(db_session, code, request.user)
        return await AssetService(db_session).list(collective, kind, status, q, page, page_size)

    @post("/villages/{code:str}/assets", operation_id="CreateAsset", opt=WRITE)
    async def create_asset(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str, data: schemas.AssetCreate
    ) -> schemas.Asset:
        collective = await collective_for(db_session, code, request.user, write=True)
        asset = await AssetService(db_session).create(collective, data, request.user)
        return schemas.Asset.model_validate(asset)

    @get("/assets/{asset_id:int}", operation_id="GetAsset", opt=READ)
    async def get_asset(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], asset_id: int
    ) -> schemas.Asset:
        return schemas.Asset.model_validate(await AssetService(db_session).get(asset_id, request.user))

    @patch("/assets/{asset_id:int}", operation_id="UpdateAsset", opt=WRITE)
    async def update_asset(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        asset_id: int,
        data: schemas.AssetUpdate,
    ) -> schemas.Asset:
        asset = await AssetService(db_session).update(asset_id, data, request.user)
        return schemas.Asset.model_validate(asset)

    @post("/assets/{asset_id:int}/status", operation_id="ChangeAssetStatus", opt=WRITE, status_code=200)
    async def change_status(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        asset_id: int,
        data: schemas.AssetStatusIn,
    ) -> schemas.Asset:
        asset = await AssetService(db_session).set_status(asset_id, data, request.user)
        return schemas.Asset.model_validate(asset)

    @get("/assets/{asset_id:int}/history", operation_id="GetAssetHistory", opt=READ)
    async def history(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], asset_id: int
    ) -> list[schemas.AssetStatusChange]:
        return await AssetService(db_session).history(asset_id, request.user)


controllers: list[Any] = [AssetController]
