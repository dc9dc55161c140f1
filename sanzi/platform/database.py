"""Database engine, sessions and schema migrations (Alembic is the only way the schema is made)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from advanced_alchemy.base import orm_registry
from advanced_alchemy.extensions.litestar import (
    AlembicAsyncConfig,
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
)
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from sanzi.platform.settings import PROJECT_ROOT, Settings, get_settings

metadata = orm_registry.metadata
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def import_all_models() -> None:
    """Import every domain's models so the metadata is complete (for Alembic and mappers)."""
    import sanzi.auction.models  # noqa: F401
    import sanzi.interchange.models  # noqa: F401
    import sanzi.ledger.models  # noqa: F401
    import sanzi.platform.models  # noqa: F401
    import sanzi.warnings.models  # noqa: F401


def _prepare_sqlite(engine: AsyncEngine) -> None:
    """Make SQLite behave: foreign keys on, WAL, a busy timeout, and real (savepoint-capable) transactions.

    pysqlite/aiosqlite issue BEGIN lazily and break SAVEPOINT; the SQLAlchemy-documented recipe is to turn
    the driver's own transaction handling off and emit BEGIN ourselves. We emit BEGIN IMMEDIATE: a deferred
    transaction that reads and then writes fails at once with "database is locked" when another writer got in
    between (SQLITE_BUSY_SNAPSHOT cannot be waited out), while an immediate one waits its turn (busy_timeout).
    On a laptop that serialises transactions, which is the point: SQLite is the single-process set-up.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(settings: Settings | None = None, **kwargs: Any) -> AsyncEngine:
    settings = settings or get_settings()
    url = settings.database_url
    if settings.is_sqlite:
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=settings.echo_sql, **kwargs)
        _prepare_sqlite(engine)
        return engine
    # a fixed pool: under load (100-200 concurrent requests a worker) requests wait their turn for one of the
    # pooled connections, where an overflow would open and close a connection per request (each one a new
    # PostgreSQL backend and asyncpg's type set-up) and run the server out of connection slots
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 0)
    # no JIT compilation: once a statement's estimated cost passes jit_above_cost (a search or a count over the
    # city's listings does), PostgreSQL spends about 100 ms compiling it, more than the short statements of a
    # request take to run
    connect_args = kwargs.setdefault("connect_args", {})
    connect_args.setdefault("server_settings", {}).setdefault("jit", "off")
    engine = create_async_engine(url, echo=settings.echo_sql, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_after_idle(engine, settings.database_ping_after_idle_seconds)
    return engine


def _ping_after_idle(engine: AsyncEngine, idle_seconds: float) -> None:
    """Ping a pooled connection before use only when it has lain idle for ``idle_seconds``; a failed ping makes the
    pool replace it. After a database restart or failover the idle connections are dead, and this keeps their first
    requests from failing; a connection in steady use is not pinged (SQLAlchemy's ``pool_pre_ping`` pings on every
    checkout: a round trip and about a third of a short transaction's CPU). A connection that dies between two
    uses within that time fails its one request, and the pool then replaces every connection of that age."""
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as failed:
            # the pool discards this connection and checks out another (a new one if need be)
            raise DisconnectionError(f"an idle pooled connection failed its ping: {failed}") from failed


def sqlalchemy_config(
    settings: Settings, engine: AsyncEngine | None = None, session_maker: Any | None = None
) -> SQLAlchemyAsyncConfig:
    """The advanced-alchemy plugin config: one session per request, committed when the response is 2xx/3xx."""
    return SQLAlchemyAsyncConfig(
        engine_instance=engine or create_engine(settings),
        session_maker=session_maker,
        session_config=AsyncSessionConfig(expire_on_commit=False),
        engine_config=EngineConfig(),
        # pages answer a successful form with 303 (POST-redirect-GET): that must commit as a 2xx does
        before_send_handler="autocommit_include_redirects",
        session_dependency_key="db_session",
        create_all=False,
        alembic_config=AlembicAsyncConfig(
            script_config=str(ALEMBIC_INI),
            script_location=str(MIGRATIONS_DIR),
            version_table_name="alembic_version",
            render_as_batch=True,
        ),
    )


async def outside_transaction_block(session: AsyncSession) -> bool:
    """Run a fresh session's statements each on its own, outside a transaction block (PostgreSQL); whether it
    did. The pool resets the connection when the session hands it back.

    It saves the BEGIN and the COMMIT around them (two of the four round trips of a results page), and lets a
    single writing statement (a bid) hold its row locks only while it runs. Each statement still reads one
    consistent snapshot; a page's few reads may see different moments, which a public page tolerates. A
    session already in a transaction, or bound to a connection (a caller's transaction), is left as it is; so
    is SQLite, whose transactions cost no round trip.
    """
    bind = session.get_bind()
    if bind.dialect.name != "postgresql" or session.in_transaction() or not isinstance(bind, Engine):
        return False
    await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    return True


@asynccontextmanager
async def session_scope(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session for commands: committed on success, rolled back on error."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


def alembic_config(database_url: str | None = None) -> Any:
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str | None = None, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)
