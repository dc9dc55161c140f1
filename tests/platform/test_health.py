"""The health endpoint reports the database (and Redis when configured)."""

from __future__ import annotations

import httpx

from sanzi.platform.app import create_app
from tests.conftest import make_settings, serve


async def test_health_reports_database(client: httpx.AsyncClient, backend: str) -> None:
    response = await client.get("/api/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["database"] == {"status": "ok", "dialect": "sqlite" if backend == "sqlite" else "postgresql"}
    assert body["redis"] == {"status": "not_configured"}


async def test_health_reports_redis_when_configured(
    database_url: str, redis_available: str, engine, session_maker, tmp_path
) -> None:
    settings = make_settings(database_url, REDIS_URL=redis_available, SANZI_VAR_DIR=str(tmp_path))
    async with serve(create_app(settings, engine, session_maker)) as client:
        response = await client.get("/api/health")
    assert response.status_code == 200
    assert response.json()["redis"] == {"status": "ok"}


async def test_health_reports_unreachable_redis_as_degraded(database_url, engine, session_maker, tmp_path) -> None:
    settings = make_settings(database_url, REDIS_URL="redis://127.0.0.1:1/0", SANZI_VAR_DIR=str(tmp_path))
    async with serve(create_app(settings, engine, session_maker)) as client:
        response = await client.get("/api/health")
    assert response.status_code == 503
    assert response.json()["redis"]["status"] == "error"


async def test_openapi_schema_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "/api/health" in response.json()["paths"]
