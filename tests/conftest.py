"""Test harness: migrate a real database per backend, load the villages once, roll back a savepoint per test.

Every database test runs twice, on SQLite and on PostgreSQL. PostgreSQL comes from SANZI_TEST_POSTGRES_URL
(default: the local server) and Redis from SANZI_TEST_REDIS_URL; when one cannot be reached its tests are
skipped with the reason, unless SANZI_REQUIRE_SERVICES=1 (as CI sets), which turns the skip into a failure.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
import threading
import uuid
from contextlib import asynccontextmanager, closing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from sanzi.ledger.chart import open_books
from sanzi.platform.app import create_app
from sanzi.platform.auth import Passwords, issue_token
from sanzi.platform.database import create_engine, upgrade
from sanzi.platform.geography import import_divisions, read_divisions_file, shipped_divisions_path
from sanzi.platform.models import Role, User
from sanzi.platform.settings import Settings

T = TypeVar("T")
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"
REQUIRE_SERVICES = os.environ.get("SANZI_REQUIRE_SERVICES") == "1"
PASSWORD = "Sanzi-test-2026"


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on its own thread (the test event loop may be in use)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, factory()).result()  # type: ignore[arg-type]


def unavailable(what: str, reason: str) -> None:
    message = f"{what} unavailable ({reason}); start it or set its URL to run these tests"
    if REQUIRE_SERVICES:
        pytest.fail(f"SANZI_REQUIRE_SERVICES=1 but {message}")
    pytest.skip(message)


def postgres_url() -> str:
    url = os.environ.get("SANZI_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    return url.replace("postgresql://", "postgresql+asyncpg://", 1) if url.startswith("postgresql://") else url


def redis_url() -> str:
    return os.environ.get("SANZI_TEST_REDIS_URL", DEFAULT_REDIS_URL)


async def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    parsed = make_url(url)
    conn = await asyncpg.connect(
        host=parsed.host,
        port=parsed.port or 5432,
        user=parsed.username,
        password=parsed.password,
        database=parsed.database,
        timeout=5,
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


_templates: dict[str, str] = {}
_template_lock = threading.Lock()
# Dropping a PostgreSQL database waits for a checkpoint (most of a second): done off the tests' critical path.
_drops = ThreadPoolExecutor(1, thread_name_prefix="drop-database")


def _migrated_template(backend: str) -> str:
    """The URL of this process's migrated, empty template database of the backend (migrated once, then copied)."""
    with _template_lock:
        if backend not in _templates:
            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp(prefix='sanzi-template-')) / 'template.db'}"
            else:
                base = postgres_url()
                name = f"sanzi_test_tpl_{uuid.uuid4().hex[:10]}"
                try:
                    run_sync(lambda: _pg_admin(base, f'CREATE DATABASE "{name}"'))
                except Exception as exc:  # noqa: BLE001 - any failure to reach the server means "unavailable"
                    unavailable("PostgreSQL", f"{type(exc).__name__}: {exc}")
                url = make_url(base).set(database=name).render_as_string(hide_password=False)
            upgrade(url)
            _templates[backend] = url
        return _templates[backend]


def create_database(backend: str, directory: Any) -> tuple[str, Callable[[], None]]:
    """An empty database of the backend, migrated to head (a copy of a template migrated once by Alembic);
    returns its URL and a function that drops it."""
    template = _migrated_template(backend)
    if backend == "sqlite":
        path = Path(directory) / f"sanzi-{uuid.uuid4().hex[:8]}.db"
        with closing(sqlite3.connect(make_url(template).database)) as source, closing(sqlite3.connect(path)) as target:
            source.backup(target)
        return f"sqlite+aiosqlite:///{path}", lambda: None
    base = postgres_url()
    name = f"sanzi_test_{uuid.uuid4().hex[:10]}"
    template_name = make_url(template).database
    run_sync(lambda: _pg_admin(base, f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        _drops.submit(run_sync, lambda: _pg_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return url, drop


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Wait for the dropped test databases, then drop the templates."""
    _drops.shutdown(wait=True)
    template = _templates.pop("postgres", None)
    if template is not None:
        name = make_url(template).database
        run_sync(lambda: _pg_admin(postgres_url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def load_villages(url: str) -> None:
    engine = create_engine(make_settings(url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            summary = await import_divisions(session, read_divisions_file(shipped_divisions_path()))
            await open_books(session, summary.new_collective_ids)
            await session.commit()
    finally:
        await engine.dispose()


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "SANZI_ENV": "test",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "REDIS_URL": None,
        "SANZI_SCHEDULER": False,
    }
    values.update(overrides)
    return Settings(**values)


#: modules whose tests start servers with their own Redis and many database connections (tests/auction/harness.py)
_SERVER_MODULES = {"tests.auction.test_resilience", "tests.auction.test_concurrency"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`make test` runs two workers with --dist loadgroup), the tests that share the
    machine's Redis (its pub/sub channels and streams are not per database) or start whole servers run on one
    worker, one after another, as they would without xdist; every other test may run beside them."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "redis_available" in fixtures or getattr(item.module, "__name__", "") in _SERVER_MODULES:
            item.add_marker(pytest.mark.xdist_group("shared-services"))


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database of the backend holding the 1,145 shipped villages, shared by the session."""
    url, drop = create_database(backend, tmp_path_factory.mktemp("db"))
    run_sync(lambda: load_villages(url))
    yield url
    drop()


@pytest.fixture
def empty_database_url(backend: str, tmp_path: Any) -> Iterator[str]:
    """A migrated, empty database of its own, for tests that must commit (CLI, concurrency)."""
    url, drop = create_database(backend, tmp_path)
    yield url
    drop()


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(database_url))
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One connection inside a transaction that is rolled back after the test (warehouse's pattern)."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
def session_maker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions whose commits only release a savepoint of the test's transaction."""
    return async_sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
async def db(session_maker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with session_maker() as session:
        yield session


@pytest.fixture
def settings(database_url: str, tmp_path: Any) -> Settings:
    return make_settings(database_url, SANZI_VAR_DIR=str(tmp_path))


@pytest.fixture
def app(settings: Settings, engine: AsyncEngine, session_maker: async_sessionmaker[AsyncSession]) -> Litestar:
    return create_app(settings, engine, session_maker)


@asynccontextmanager
async def serve(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the app on the test's own event loop (the database connection lives there too)."""
    started, stopping = asyncio.Event(), asyncio.Event()

    async def run_lifespan() -> None:
        # entered and left in this one task: anyio's cancel scopes inside the lifespan require it
        async with app.lifespan():
            started.set()
            await stopping.wait()

    lifespan = asyncio.create_task(run_lifespan())
    await asyncio.wait({lifespan, asyncio.ensure_future(started.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if lifespan.done():
        lifespan.result()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as http:
            yield http
    finally:
        stopping.set()
        await lifespan


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as http:
        yield http


@pytest.fixture(scope="session")
def redis_available() -> str:
    """The Redis URL for tests, or a skip (a failure in CI) naming why it cannot be used."""
    import redis

    url = redis_url()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        unavailable("Redis", f"{type(exc).__name__}: {exc}")
    return url


@dataclass
class Actor:
    """A user of the platform with a bearer token for the API."""

    user: User
    token: str
    password: str = PASSWORD

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def id(self) -> int:
        return self.user.id


# two real villages in two different townships (and districts), used across the suite
VILLAGE_A = "440111020200"  # 永兴村, 龙归街道, 白云区
VILLAGE_B = "440118001200"  # 城丰村, 荔城街道, 增城区

_cheap = Passwords(cheap=True)


@pytest.fixture
def make_user(db: AsyncSession) -> Callable[..., Awaitable[Actor]]:
    """Create a user with a token: ``await make_user(Role.COMMITTEE, village_code=...)``."""
    counter = {"n": 0}

    async def _make(
        role: Role,
        village_code: str | None = None,
        area_code: str | None = None,
        username: str | None = None,
        display_name: str | None = None,
    ) -> Actor:
        counter["n"] += 1
        name = username or f"{role.value}-{counter['n']}-{uuid.uuid4().hex[:6]}"
        user = User(
            username=name,
            password_hash=_cheap.hash(PASSWORD),
            display_name=display_name or name,
            role=role.value,
            village_code=village_code,
            area_code=area_code,
        )
        db.add(user)
        await db.flush()
        token = await issue_token(db, user, days=1)
        await db.commit()
        return Actor(user=user, token=token)

    return _make


@pytest.fixture
async def admin(make_user: Callable[..., Awaitable[Actor]]) -> Actor:
    return await make_user(Role.ADMIN)


@pytest.fixture
async def committee_a(make_user: Callable[..., Awaitable[Actor]]) -> Actor:
    return await make_user(Role.COMMITTEE, village_code=VILLAGE_A)


@pytest.fixture
async def committee_b(make_user: Callable[..., Awaitable[Actor]]) -> Actor:
    return await make_user(Role.COMMITTEE, village_code=VILLAGE_B)


@pytest.fixture
async def supervisor_a(make_user: Callable[..., Awaitable[Actor]]) -> Actor:
    """A supervisor of village A's township."""
    return await make_user(Role.SUPERVISOR, area_code=VILLAGE_A[:9] + "000")


@pytest.fixture
async def supervisor_b(make_user: Callable[..., Awaitable[Actor]]) -> Actor:
    return await make_user(Role.SUPERVISOR, area_code=VILLAGE_B[:9] + "000")


class Browser:
    """A page visitor with its own cookies (session and CSRF), as a person with a browser would be."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @property
    def csrf(self) -> str:
        return self.http.cookies["csrftoken"]

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, **kwargs)

    async def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        """Submit a form with the CSRF token, as the page's own form would."""
        if "csrftoken" not in self.http.cookies:
            await self.http.get("/login")
        return await self.http.post(path, data={**(data or {}), "_csrf_token": self.csrf}, **kwargs)


@pytest.fixture
async def browser(app: Litestar, client: httpx.AsyncClient) -> AsyncIterator[Callable[..., Awaitable[Browser]]]:
    """``await browser(actor)``: a visitor logged in through the login form (``browser()`` stays anonymous)."""
    opened: list[httpx.AsyncClient] = []

    async def _open(actor: Actor | None = None) -> Browser:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver.local")
        opened.append(http)
        visitor = Browser(http)
        if actor is not None:
            response = await visitor.post("/login", {"username": actor.user.username, "password": actor.password})
            assert response.status_code == 303, response.text
        return visitor

    yield _open
    for http in opened:
        await http.aclose()
