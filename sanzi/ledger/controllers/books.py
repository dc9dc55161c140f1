"""Ledger HTTP API: the books (chart, journal, reports) and the public integrity checks (chains, roots)."""

from __future__ import annotations

from datetime import date
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.schemas import books as schemas
from sanzi.ledger.services.books import BooksService
from sanzi.platform.access import check_village, collective_for
from sanzi.platform.auth import PUBLIC, roles
from sanzi.platform.models import Role
from sanzi.platform.problems import DomainError
from sanzi.platform.schemas import Page

READ = roles(Role.ADMIN, Role.COMMITTEE, Role.SUPERVISOR)
WRITE = roles(Role.ADMIN, Role.COMMITTEE)


async def _end_read_transaction(db_session: AsyncSession) -> None:
    """Finish the (read-only) access check's transaction so the posting's first statement takes the write lock.

    SQLite cannot upgrade a read snapshot that another writer has overtaken (SQLITE_BUSY_SNAPSHOT); starting
    the posting in a fresh transaction lets it simply wait for the lock instead.
    """
    await db_session.commit()


class BooksController(Controller):
    """Books of a village's collective: its committee and admin post; supervisors of its area read."""

    path = "/api"
    tags = ["books"]

    @get("/villages/{code:str}/accounts", operation_id="ListAccounts", opt=READ)
    async def accounts(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str
    ) -> list[schemas.Account]:
        collective = await collective_for(db_session, code, request.user)
        return [schemas.Account.model_validate(a) for a in await BooksService(db_session).accounts(collective)]

    @post("/villages/{code:str}/entries", operation_id="PostEntry", opt=WRITE)
    async def post_entry(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str, data: schemas.EntryCreate
    ) -> Response[schemas.Entry]:
        """Post an entry (201); a replay with the same client key and body answers the first entry (200)."""
        header_key = request.headers.get("idempotency-key")
        if header_key is not None:
            header_key = header_key.strip()
            if data.client_key is not None and data.client_key != header_key:
                raise DomainError(
                    "请求体中的 client_key 与 Idempotency-Key 请求头不一致",
                    "client_key in the body differs from the Idempotency-Key header",
                    field="client_key",
                )
            if not 1 <= len(header_key) <= 100:
                raise DomainError(
                    "Idempotency-Key 长度须为 1–100", "Idempotency-Key must be 1-100 characters", field="client_key"
                )
            data = data.model_copy(update={"client_key": header_key})
        collective = await collective_for(db_session, code, request.user, write=True)
        await _end_read_transaction(db_session)
        service = BooksService(db_session)
        entry, created = await service.post_entry(collective, data, request.user)
        (out,) = await service.entries_out([entry], collective.village_code)
        return Response(out, status_code=201 if created else 200)

    @get("/villages/{code:str}/entries", operation_id="ListEntries", opt=READ)
    async def list_entries(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        code: str,
        date_from: date | None = None,
        date_to: date | None = None,
        account_code: str | None = Parameter(default=None, max_length=16),
        page: int = Parameter(default=1, ge=1, le=100_000),
        page_size: int = Parameter(default=50, ge=1, le=500),
    ) -> Page[schemas.Entry]:
        collective = await collective_for(db_session, code, request.user)
        service = BooksService(db_session)
        rows, total = await service.entries(
            collective,
            date_from=date_from,
            date_to=date_to,
            account_code=account_code,
            page=page,
            page_size=page_size,
        )
        items = await service.entries_out(rows, collective.village_code)
        return Page(items=items, total=total, page=page, page_size=page_size)

    @get("/entries/{entry_id:int}", operation_id="GetEntry", opt=READ)
    async def get_entry(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], entry_id: int
    ) -> schemas.Entry:
        service = BooksService(db_session)
        entry = await service.get_entry(entry_id)
        village_code = await service.village_code_of(entry)
        check_village(request.user, village_code)
        (out,) = await service.entries_out([entry], village_code)
        return out

    @post("/entries/{entry_id:int}/reverse", operation_id="ReverseEntry", opt=WRITE)
    async def reverse_entry(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        entry_id: int,
        data: schemas.ReversalCreate | None = None,
    ) -> schemas.Entry:
        """Correct an entry by posting its mirror (201); a second reversal of the same entry is a conflict."""
        service = BooksService(db_session)
        entry = await service.get_entry(entry_id)
        collective = await service.collective_of(entry)
        check_village(request.user, collective.village_code, write=True)
        await _end_read_transaction(db_session)
        reversal = await service.reverse_entry(collective, entry, request.user, data or schemas.ReversalCreate())
        (out,) = await service.entries_out([reversal], collective.village_code)
        return out

    # ---- reports -----------------------------------------------------------------------------------------

    @get("/villages/{code:str}/trial-balance", operation_id="GetTrialBalance", opt=READ)
    async def trial_balance(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str, as_of: date | None = None
    ) -> schemas.TrialBalance:
        collective = await collective_for(db_session, code, request.user)
        return await BooksService(db_session).trial_balance(collective, as_of)

    @get(
        "/villages/{code:str}/accounts/{account_code:str}/statement", operation_id="GetAccountStatement", opt=READ
    )
    async def statement(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        code: str,
        account_code: str,
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> schemas.AccountStatement:
        collective = await collective_for(db_session, code, request.user)
        return await BooksService(db_session).statement(collective, account_code, date_from, date_to)

    @get("/villages/{code:str}/income-expenditure", operation_id="GetIncomeExpenditure", opt=READ)
    async def income_expenditure(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        code: str,
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> schemas.IncomeExpenditure:
        collective = await collective_for(db_session, code, request.user)
        return await BooksService(db_session).income_expenditure(collective, date_from, date_to)


class LedgerIntegrityController(Controller):
    """Anyone can check that a village's books still verify and that they are in the published root."""

    path = "/api"
    tags = ["ledger integrity"]

    @get("/villages/{code:str}/ledger/verify", operation_id="VerifyVillageChain", opt=PUBLIC)
    async def verify(self, db_session: AsyncSession, code: str) -> schemas.ChainStatus:
        collective = await collective_for(db_session, code, None, public=True)
        failure = await BooksService(db_session).verify_collective(collective)
        return schemas.ChainStatus(
            village_code=collective.village_code,
            ok=failure is None,
            chain_length=collective.chain_length,
            first_broken_seq=failure.seq if failure else None,
            reason=failure.reason if failure else None,
        )

    @get("/villages/{code:str}/ledger/proof", operation_id="GetVillageInclusionProof", opt=PUBLIC)
    async def proof(self, db_session: AsyncSession, code: str) -> schemas.InclusionProof:
        collective = await collective_for(db_session, code, None, public=True)
        return await BooksService(db_session).proof(collective.village_code)

    @post("/ledger/roots", operation_id="PublishLedgerRoot", opt=roles(Role.ADMIN))
    async def publish(self, db_session: AsyncSession) -> schemas.LedgerRoot:
        return schemas.LedgerRoot.model_validate(await BooksService(db_session).publish_root())

    @get("/ledger/roots/latest", operation_id="GetLatestLedgerRoot", opt=PUBLIC)
    async def latest(self, db_session: AsyncSession) -> schemas.LedgerRoot:
        return schemas.LedgerRoot.model_validate(await BooksService(db_session).latest_root())

    @get("/ledger/roots", operation_id="ListLedgerRoots", opt=PUBLIC)
    async def roots(
        self,
        db_session: AsyncSession,
        page: int = Parameter(default=1, ge=1, le=100_000),
        page_size: int = Parameter(default=50, ge=1, le=500),
    ) -> Page[schemas.LedgerRoot]:
        rows, total = await BooksService(db_session).roots(page, page_size)
        return Page(
            items=[schemas.LedgerRoot.model_validate(r) for r in rows], total=total, page=page, page_size=page_size
        )


controllers: list[Any] = [BooksController, LedgerIntegrityController]
