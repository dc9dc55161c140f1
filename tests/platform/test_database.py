"""The PostgreSQL connection pool: idle connections are checked before use, busy ones are not; no JIT; public
reads outside a transaction block."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import async_sessionmaker

from sanzi.platform.database import create_engine, outside_transaction_block
from tests.conftest import make_settings


async def _backend_pid(engine: Any) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(text("SELECT pg_backend_pid()"))


async def _terminate(url: str, pid: int) -> None:
    killer = create_engine(make_settings(url))
    try:
        async with killer.connect() as connection:
            assert await connection.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await killer.dispose()


@pytest.fixture
def postgres_url(empty_database_url: str, backend: str) -> str:
    if backend != "postgres":
        pytest.skip("SQLite has no connection pool of server connections")
    return empty_database_url


async def test_a_connection_killed_while_idle_is_replaced_before_use(postgres_url: str) -> None:
    engine = create_engine(make_settings(postgres_url, SANZI_DB_PING_AFTER_IDLE=0.05), pool_size=1)
    try:
        first = await _backend_pid(engine)
        await _terminate(postgres_url, first)  # as a database restart or failover would
        await asyncio.sleep(0.1)
        # the pooled connection is pinged, found dead and replaced: the caller never sees it
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_a_connection_in_steady_use_is_not_pinged(postgres_url: str) -> None:
    engine = create_engine(make_settings(postgres_url, SANZI_DB_PING_AFTER_IDLE=3600), pool_size=1)
    try:
        first = await _backend_pid(engine)
        assert await _backend_pid(engine) == first
        # no ping within the idle time: a connection that died meanwhile fails its next use, once, and the pool
        # then replaces it
        await _terminate(postgres_url, first)
        with pytest.raises(DBAPIError):
            await _backend_pid(engine)
        assert await _backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_the_app_connections_never_jit_compile_statements(postgres_url: str) -> None:
    engine = create_engine(make_settings(postgres_url), pool_size=1)
    try:
        async with engine.connect() as connection:
            assert await connection.scalar(text("SHOW jit")) == "off"
            # a statement costed past jit_above_cost is run without compiling it
            await connection.execute(text("SET jit_above_cost = 0"))
            plan = "\n".join(
                await connection.scalars(text("EXPLAIN (ANALYZE) SELECT sum(g) FROM generate_series(1, 1000) g"))
            )
            assert "JIT" not in plan
    finally:
        await engine.dispose()


async def test_a_read_outside_a_transaction_runs_each_statement_on_its_own_and_leaves_the_pool_clean(
    postgres_url: str,
) -> None:
    engine = create_engine(make_settings(postgres_url), pool_size=1)
    maker = async_sessionmaker(engine)
    txid = text("SELECT txid_current()")
    try:
        async with maker() as session:
            assert await outside_transaction_block(session)
            assert await session.scalar(txid) != await session.scalar(txid)  # no transaction block
        async with maker() as session:  # the same pooled connection, transactional again
            assert await session.scalar(txid) == await session.scalar(txid)
        async with maker() as session:
            await session.scalar(txid)  # already in a transaction: left as it is
            assert not await outside_transaction_block(session)
            assert await session.scalar(txid) == await session.scalar(txid)
    finally:
        await engine.dispose()
