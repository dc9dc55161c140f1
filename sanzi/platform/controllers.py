"""Platform HTTP API: health, geography, authentication, users and bidder self-registration."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get
from litestar.datastructures import State
from litestar.params import Parameter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform import schemas
from sanzi.platform.auth import PUBLIC
from sanzi.platform.services import GeographyService


class HealthController(Controller):
    path = "/api/health"
    tags = ["platform"]

    @get(operation_id="GetHealth", opt=PUBLIC, summary="Database and Redis state")
    async def health(self, db_session: AsyncSession, state: State, request: Request[Any, Any, Any]) -> Any:
        body: dict[str, Any] = {"status": "ok"}
        try:
            await db_session.execute(text("SELECT 1"))
            body["database"] = {"status": "ok", "dialect": db_session.bind.dialect.name}
        except Exception as exc:  # a health check reports, it does not raise
            body["status"] = "degraded"
            body["database"] = {"status": "error", "error": type(exc).__name__}
            request.logger.warning("health: database check failed: %r", exc)
        redis = state.get("redis")
        if redis is None:
            body["redis"] = {"status": "not_configured"}
        else:
            try:
                await redis.ping()
                body["redis"] = {"status": "ok"}
            except Exception as exc:
                body["status"] = "degraded"
                body["redis"] = {"status": "error", "error": type(exc).__name__}
        return Response(body, status_code=200 if body["status"] == "ok" else 503)


class GeographyController(Controller):
    """The 1,145 villages of Guangzhou with their townships and districts (public)."""

    path = "/api"
    tags = ["geography"]

    @get("/districts", operation_id="ListDistricts", opt=PUBLIC)
    async def districts(self, db_session: AsyncSession) -> list[schemas.District]:
        return [schemas.District.model_validate(d) for d in await GeographyService(db_session).districts()]

    @get("/townships", operation_id="ListTownships", opt=PUBLIC)
    async def townships(
        self, db_session: AsyncSession, district: str | None = Parameter(default=None, max_length=12)
    ) -> list[schemas.Township]:
        rows = await GeographyService(db_session).townships(district)
        return [schemas.Township.model_validate(t) for t in rows]

    @get("/villages", operation_id="ListVillages", opt=PUBLIC)
    async def villages(
        self,
        db_session: AsyncSession,
        district: str | None = Parameter(default=None, max_length=12, description="district code (6 or 12 digits)"),
        township: str | None = Parameter(default=None, max_length=12, description="township code (9 or 12 digits)"),
        q: str | None = Parameter(default=None, max_length=32, description="part of the village name"),
        page: int = Parameter(default=1, ge=1, le=100_000),
        page_size: int = Parameter(default=50, ge=1, le=500),
    ) -> schemas.Page[schemas.Village]:
        return await GeographyService(db_session).villages(district, township, q, page, page_size)

    @get("/villages/{code:str}", operation_id="GetVillage", opt=PUBLIC)
    async def village(self, db_session: AsyncSession, code: str) -> schemas.Village:
        return await GeographyService(db_session).village(code)


controllers: list[Any] = [HealthController, GeographyController]
