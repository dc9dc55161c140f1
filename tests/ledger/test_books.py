"""The books through HTTP: chart, posting, idempotency, bad input, reversals, reports, database protection,
tamper detection and published roots."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sanzi.ledger import chain
from sanzi.ledger.chart import STANDARD_CHART, open_books
from sanzi.ledger.models import Account, JournalEntry, JournalLine
from sanzi.ledger.schemas.books import EntryCreate, LineIn
from sanzi.ledger.services.books import BooksIntegrityError, BooksService
from sanzi.platform.database import create_engine
from sanzi.platform import events
from sanzi.platform.geography import import_divisions, parse_divisions
from sanzi.platform.models import Collective
from sanzi.platform.problems import DomainError
from tests.conftest import VILLAGE_A, VILLAGE_B, Actor, make_settings

CASH, BANK, CONTRACT_INCOME, HOSPITALITY, DEPOSITS = "101", "102", "50101", "53101", "21101"


def entry_body(amount: str = "1000.00", debit: str = BANK, credit: str = CONTRACT_INCOME, **extra: Any) -> dict:
    body = {
        "entry_date": "2024-03-01",
        "memo": "收鱼塘承包款",
        "counterparty": "张三",
        "lines": [
            {"account_code": debit, "debit": amount},
            {"account_code": credit, "credit": amount},
        ],
    }
    body.update(extra)
    return body


async def post(client: httpx.AsyncClient, actor: Actor, body: dict, village: str = VILLAGE_A, **kw: Any) -> Any:
    return await client.post(f"/api/villages/{village}/entries", json=body, headers=actor.headers | kw.pop("headers", {}))


async def row_counts(db: AsyncSession) -> tuple[int, int]:
    entries = await db.scalar(select(func.count()).select_from(JournalEntry))
    lines = await db.scalar(select(func.count()).select_from(JournalLine))
    return entries or 0, lines or 0


async def collective(db: AsyncSession, village: str = VILLAGE_A) -> Collective:
    return await db.scalar(
        select(Collective).where(Collective.village_code == village).execution_options(populate_existing=True)
    )


# ---- chart and posting -----------------------------------------------------------------------------------


async def test_every_collective_has_the_chart_and_readers_see_it(
    client: httpx.AsyncClient, committee_a: Actor, supervisor_a: Actor, supervisor_b: Actor, committee_b: Actor
) -> None:
    response = await client.get(f"/api/villages/{VILLAGE_A}/accounts", headers=committee_a.headers)
    assert response.status_code == 200
    accounts = {a["code"]: a for a in response.json()}
    assert len(accounts) == len(STANDARD_CHART)
    assert accounts[DEPOSITS]["category"] == "deposit_held" and accounts[HOSPITALITY]["parent_code"] == "531"
    assert (await client.get(f"/api/villages/{VILLAGE_A}/accounts", headers=supervisor_a.headers)).status_code == 200
    assert (await client.get(f"/api/villages/{VILLAGE_A}/accounts", headers=supervisor_b.headers)).status_code == 403
    assert (await client.get(f"/api/villages/{VILLAGE_A}/accounts", headers=committee_b.headers)).status_code == 403
    assert (await client.get(f"/api/villages/{VILLAGE_A}/accounts")).status_code == 401


async def test_posting_chains_entries_and_shows_yuan(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor
) -> None:
    first = await post(client, committee_a, entry_body("1234.50"))
    assert first.status_code == 201, first.text
    one = first.json()
    assert one["seq"] == 1 and one["prev_hash"] == chain.GENESIS_HASH and len(one["hash"]) == 64
    assert one["total"] == "1234.50"
    assert [(l["account_code"], l["debit"], l["credit"]) for l in one["lines"]] == [
        (BANK, "1234.50", "0.00"),
        (CONTRACT_INCOME, "0.00", "1234.50"),
    ]
    assert one["posted_by_id"] == committee_a.id
    second = (await post(client, committee_a, entry_body("1.00", debit=HOSPITALITY, credit=CASH))).json()
    assert second["seq"] == 2 and second["prev_hash"] == one["hash"]
    books = await collective(db)
    assert (books.chain_length, books.chain_head) == (2, second["hash"])
    assert await BooksService(db).verify_collective(books) is None
    fetched = await client.get(f"/api/entries/{one['id']}", headers=committee_a.headers)
    assert fetched.json()["hash"] == one["hash"]


async def test_only_the_village_committee_or_admin_posts(
    client: httpx.AsyncClient, db: AsyncSession, committee_b: Actor, supervisor_a: Actor, admin: Actor
) -> None:
    before = await row_counts(db)
    assert (await post(client, committee_b, entry_body())).status_code == 403
    assert (await post(client, supervisor_a, entry_body())).status_code == 403
    assert (await client.post(f"/api/villages/{VILLAGE_A}/entries", json=entry_body())).status_code == 401
    assert await row_counts(db) == before
    assert (await post(client, admin, entry_body())).status_code == 201


async def test_readers_of_an_entry(
    client: httpx.AsyncClient,
    committee_a: Actor,
    committee_b: Actor,
    supervisor_a: Actor,
    supervisor_b: Actor,
    admin: Actor,
) -> None:
    entry_id = (await post(client, committee_a, entry_body())).json()["id"]
    for actor, status in ((committee_a, 200), (supervisor_a, 200), (admin, 200), (committee_b, 404), (supervisor_b, 404)):
        assert (await client.get(f"/api/entries/{entry_id}", headers=actor.headers)).status_code == status
    assert (await client.get(f"/api/entries/{entry_id}")).status_code == 401
    listing = await client.get(f"/api/villages/{VILLAGE_A}/entries", headers=supervisor_b.headers)
    assert listing.status_code == 403


# ---- idempotency -----------------------------------------------------------------------------------------


async def test_client_key_makes_posting_idempotent(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor
) -> None:
    body = entry_body(client_key="receipt-2024-0001")
    first = await post(client, committee_a, body)
    assert first.status_code == 201
    before = await row_counts(db)
    again = await post(client, committee_a, {**body, "lines": [
        {"account_code": BANK, "debit": "1000"}, {"account_code": CONTRACT_INCOME, "credit": "1000.0"}]})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]  # same amounts, other spelling
    other = await post(client, committee_a, entry_body("999.00", client_key="receipt-2024-0001"))
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "client_key"
    assert await row_counts(db) == before
    stored = await db.scalar(select(JournalEntry).where(JournalEntry.id == first.json()["id"]))
    assert stored.request_hash is not None and len(stored.request_hash) == 64
    assert (await collective(db)).chain_length == 1  # a replay does not advance the chain


async def test_idempotency_key_header(client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor) -> None:
    headers = {"Idempotency-Key": "hdr-1"}
    first = await post(client, committee_a, entry_body(), headers=headers)
    assert first.status_code == 201 and first.json()["client_key"] == "hdr-1"
    again = await post(client, committee_a, entry_body(client_key="hdr-1"), headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    before = await row_counts(db)
    mismatch = await post(client, committee_a, entry_body(client_key="body-key"), headers=headers)
    assert mismatch.status_code == 422 and mismatch.json()["errors"][0]["field"] == "client_key"
    assert await row_counts(db) == before


async def test_the_same_client_key_in_two_villages_is_two_entries(
    client: httpx.AsyncClient, committee_a: Actor, committee_b: Actor
) -> None:
    a = await post(client, committee_a, entry_body(client_key="k"))
    b = await post(client, committee_b, entry_body(client_key="k"), village=VILLAGE_B)
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]


# ---- bad input -------------------------------------------------------------------------------------------


def _lines(*lines: dict) -> dict:
    return entry_body(lines=list(lines))


BAD_BODIES = [
    ("unbalanced", _lines({"account_code": BANK, "debit": "100"}, {"account_code": CASH, "credit": "99.99"}), "lines"),
    ("both sides", _lines({"account_code": BANK, "debit": "1", "credit": "1"}, {"account_code": CASH, "credit": "0"}),
     "lines[0].credit"),
    ("neither side", _lines({"account_code": BANK}, {"account_code": CASH}), "lines[0].credit"),
    ("negative", _lines({"account_code": BANK, "debit": "-5"}, {"account_code": CASH, "credit": "-5"}), "lines[0].debit"),
    ("fractional fen", _lines({"account_code": BANK, "debit": "1.001"}, {"account_code": CASH, "credit": "1.001"}),
     "lines[0].debit"),
    ("float", _lines({"account_code": BANK, "debit": 10.5}, {"account_code": CASH, "credit": 10.5}), "lines[0].debit"),
    ("one line", _lines({"account_code": BANK, "debit": "1"}), "lines"),
    ("no lines", _lines(), "lines"),
    ("memo too long", entry_body(memo="账" * 501), "memo"),
    ("line memo too long", _lines({"account_code": BANK, "debit": "1", "memo": "x" * 201},
                                  {"account_code": CASH, "credit": "1"}), "lines[0].memo"),
    ("no date", {k: v for k, v in entry_body().items() if k != "entry_date"}, "entry_date"),
]


@pytest.mark.parametrize(("name", "body", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_bad_entries_are_refused_naming_the_field(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, name: str, body: dict, field: str
) -> None:
    before = await row_counts(db)
    response = await post(client, committee_a, body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in problem["errors"]], problem
    assert problem["detail"] and problem["detail_en"]
    assert await row_counts(db) == before
    assert (await collective(db)).chain_length == 0


async def test_unknown_and_foreign_accounts_are_refused(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor
) -> None:
    village_b = await collective(db, VILLAGE_B)
    db.add(Account(collective_id=village_b.id, code="50199", name="经营收入—B村专用", type="income", normal_side="credit"))
    await db.commit()
    before = await row_counts(db)
    for code in ("999", "50199"):  # 50199 exists, but only in village B's chart
        response = await post(client, committee_a, entry_body(credit=code))
        assert response.status_code == 422, response.text
        error = response.json()["errors"][0]
        assert error["field"] == "lines[1].account_code" and code in error["message"] and code in error["message_en"]
    assert await row_counts(db) == before
    assert (await collective(db)).chain_length == 0


async def test_service_refusal_leaves_the_chain_untouched_for_a_caller_that_goes_on(
    db: AsyncSession, committee_a: Actor
) -> None:
    """A caller (e.g. contracts) catching the refusal and committing its own work must not leave a gap."""
    books = await collective(db)
    service = BooksService(db)
    bad = EntryCreate(entry_date="2024-01-01", memo="x", lines=[LineIn(account_code="999", debit="1"),
                                                                LineIn(account_code=CASH, credit="1")])
    with pytest.raises(Exception, match="999"):
        await service.post_entry(books, bad, committee_a.user)
    await db.commit()
    good = EntryCreate(entry_date="2024-01-01", memo="x", lines=[LineIn(account_code=BANK, debit="1"),
                                                                 LineIn(account_code=CASH, credit="1")])
    entry, created = await service.post_entry(books, good, committee_a.user, source="contract_receipt")
    assert created and entry.seq == 1 and entry.source == "contract_receipt"
    assert await service.verify_collective(await collective(db)) is None


async def test_an_account_deactivated_meanwhile_is_refused_though_the_session_remembers_it_active(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor
) -> None:
    """The posting checks ``is_active`` as read under the chain lock, not the session's copy of it."""
    books = await collective(db)
    remembered = await db.scalar(
        select(Account).where(Account.collective_id == books.id, Account.code == BANK)
    )
    await db.execute(text("UPDATE account SET is_active = false WHERE id = :id"), {"id": remembered.id})
    assert remembered.is_active  # the session's copy does not know
    before = await row_counts(db)
    data = EntryCreate(entry_date="2024-01-01", memo="x", lines=[LineIn(account_code=CASH, debit="1"),
                                                                 LineIn(account_code=BANK, credit="1")])
    with pytest.raises(DomainError) as refused:
        await BooksService(db).post_entry(books, data, committee_a.user)
    assert refused.value.field == "lines[1].account_code" and "已停用" in refused.value.message
    await db.commit()
    response = await post(client, committee_a, entry_body(debit=BANK))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "lines[0].account_code"
    assert await row_counts(db) == before
    assert (await collective(db)).chain_length == 0


async def test_columns_a_migration_adds_get_their_defaults_without_an_edit_of_the_posting(
    db: AsyncSession, committee_a: Actor
) -> None:
    """The posting names only the columns it sets: a column added to the tables later (one with a server
    default, one nullable) is filled by the database, not overwritten with NULL or left for an edit."""
    for statement in (
        "ALTER TABLE journal_entry ADD COLUMN reviewed VARCHAR(8) DEFAULT 'no' NOT NULL",
        "ALTER TABLE journal_entry ADD COLUMN remark VARCHAR(50)",
        "ALTER TABLE journal_line ADD COLUMN tag VARCHAR(8) DEFAULT 'plain' NOT NULL",
    ):
        await db.execute(text(statement))  # DDL is transactional on both backends: rolled back with the test
    entry = await _entry_with_lines(db, committee_a)
    assert (await db.execute(text("SELECT reviewed, remark FROM journal_entry WHERE id = :id"),
                             {"id": entry.id})).one() == ("no", None)
    assert list(await db.scalars(text("SELECT tag FROM journal_line WHERE entry_id = :id"),
                                 {"id": entry.id})) == ["plain", "plain"]
    assert await BooksService(db).verify_collective(await collective(db)) is None


async def break_the_head(db: AsyncSession, backend: str, books: Collective) -> None:
    """Set the head back to the genesis behind an entry already posted: the next posting's seq is taken."""
    await db.execute(text("UPDATE collective SET chain_length = 0, chain_head = :genesis WHERE id = :id"),
                     {"genesis": chain.GENESIS_HASH, "id": books.id})


async def refuse_lines(db: AsyncSession, backend: str, books: Collective) -> None:
    """A trigger refusing every new line: the entry is inserted before its lines fail."""
    if backend == "postgres":
        await db.execute(text(
            "CREATE FUNCTION refuse_line() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'line refused' USING ERRCODE = 'check_violation'; END $$"))
        await db.execute(text("CREATE TRIGGER refuse_line BEFORE INSERT ON journal_line FOR EACH ROW"
                              " EXECUTE FUNCTION refuse_line()"))
    else:
        await db.execute(text("CREATE TRIGGER refuse_line BEFORE INSERT ON journal_line"
                              " BEGIN SELECT RAISE(ABORT, 'line refused'); END"))


@pytest.mark.parametrize("breakage", [break_the_head, refuse_lines], ids=["seq taken", "line refused"])
async def test_a_failed_write_leaves_the_callers_transaction_to_the_caller(
    db: AsyncSession, backend: str, committee_a: Actor, breakage: Callable[..., Awaitable[None]]
) -> None:
    """When the database refuses a posting that passed every check, the service raises and writes nothing, and
    neither ends the caller's transaction nor leaves objects in the session for a later flush."""
    await _entry_with_lines(db, committee_a)
    books = await collective(db)
    await breakage(db, backend, books)
    before = await row_counts(db)
    books = await collective(db)
    length = books.chain_length
    caller_work = Account(collective_id=books.id, code="59901", name="调用方自己的科目", type="income",
                          normal_side="credit")
    db.add(caller_work)
    await db.flush()
    transaction = db.get_transaction()

    def journal_objects() -> set[Any]:
        return {key for key in db.identity_map.keys() if key[0] in (JournalEntry, JournalLine)}

    known = journal_objects()
    data = EntryCreate(entry_date="2024-01-01", memo="x", lines=[LineIn(account_code=BANK, debit="7"),
                                                                 LineIn(account_code=CASH, credit="7")])
    with pytest.raises(BooksIntegrityError) as failed:
        await BooksService(db).post_entry(books, data, committee_a.user)
    assert isinstance(failed.value.__cause__, IntegrityError)
    assert db.get_transaction() is transaction and inspect(caller_work).persistent  # not rolled back
    assert not db.new and not db.dirty and journal_objects() == known
    assert books.chain_length == length
    if backend == "postgres":
        # the statement failed whole; the transaction is the caller's to roll back
        with pytest.raises(DBAPIError, match="current transaction is aborted"):
            await db.execute(select(1))
        await db.rollback()
        assert await db.scalar(select(Account.id).where(Account.code == "59901")) is None
    else:
        # the savepoint undid the entry already inserted; the caller's transaction goes on and can commit
        assert await row_counts(db) == before
        assert (await collective(db)).chain_length == length
        await db.commit()
        assert await db.scalar(select(Account.id).where(Account.code == "59901")) == caller_work.id


# ---- reversals -------------------------------------------------------------------------------------------


async def test_reversal_mirrors_once_and_can_itself_be_reversed(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, committee_b: Actor, supervisor_a: Actor
) -> None:
    original = (await post(client, committee_a, entry_body("300.00"))).json()
    url = f"/api/entries/{original['id']}/reverse"
    assert (await client.post(url, headers=committee_b.headers)).status_code == 404
    assert (await client.post(url, headers=supervisor_a.headers)).status_code == 403
    response = await client.post(url, json={"memo": "冲销错账", "entry_date": "2024-03-02"}, headers=committee_a.headers)
    assert response.status_code == 201, response.text
    reversal = response.json()
    assert reversal["reverses_entry_id"] == original["id"] and reversal["source"] == "reversal"
    assert [(l["account_code"], l["debit"], l["credit"]) for l in reversal["lines"]] == [
        (BANK, "0.00", "300.00"),
        (CONTRACT_INCOME, "300.00", "0.00"),
    ]
    before = await row_counts(db)
    again = await client.post(url, headers=committee_a.headers)
    assert again.status_code == 409
    assert await row_counts(db) == before
    shown = (await client.get(f"/api/entries/{original['id']}", headers=committee_a.headers)).json()
    assert shown["reversed_by_entry_id"] == reversal["id"]
    undo = await client.post(f"/api/entries/{reversal['id']}/reverse", headers=committee_a.headers)
    assert undo.status_code == 201 and undo.json()["reverses_entry_id"] == reversal["id"]
    balance = (await client.get(f"/api/villages/{VILLAGE_A}/trial-balance", headers=committee_a.headers)).json()
    bank = next(a for a in balance["accounts"] if a["code"] == BANK)
    assert (bank["debit"], bank["credit"], bank["balance"]) == ("600.00", "300.00", "300.00")
    assert await BooksService(db).verify_collective(await collective(db)) is None


async def test_a_committed_reversal_is_an_entry_posted_event(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor
) -> None:
    original = (await post(client, committee_a, entry_body("120.00"))).json()
    received: list[events.DomainEvent] = []
    unsubscribe = events.subscribe(received.extend)
    try:
        response = await client.post(f"/api/entries/{original['id']}/reverse", headers=committee_a.headers)
        refused = await client.post(f"/api/entries/{original['id']}/reverse", headers=committee_a.headers)
    finally:
        unsubscribe()
    assert response.status_code == 201 and refused.status_code == 409
    posted = [e for e in received if e.kind == "entry_posted"]
    assert [(e.village_code, e.ids) for e in posted] == [(VILLAGE_A, {"entry_id": response.json()["id"]})]


# ---- listing and reports ---------------------------------------------------------------------------------


async def _post_year(client: httpx.AsyncClient, actor: Actor) -> None:
    postings = [
        ("2024-01-10", "10000.00", BANK, CONTRACT_INCOME),  # contracting income
        ("2024-02-01", "500.00", HOSPITALITY, CASH),  # hospitality (sub-account of 531)
        ("2024-02-15", "2000.00", CASH, BANK),  # cash withdrawal
        ("2024-03-01", "300.00", "53102", CASH),  # office costs (531)
        ("2024-04-01", "800.00", BANK, "522"),  # other income
        ("2024-05-01", "50000.00", BANK, DEPOSITS),  # a bidder's deposit held (not income)
    ]
    for day, amount, debit, credit in postings:
        response = await post(client, actor, entry_body(amount, debit=debit, credit=credit, entry_date=day))
        assert response.status_code == 201, response.text


async def test_listing_entries_filters_and_pages(client: httpx.AsyncClient, committee_a: Actor) -> None:
    await _post_year(client, committee_a)
    url = f"/api/villages/{VILLAGE_A}/entries"
    everything = (await client.get(url, headers=committee_a.headers, params={"page_size": 4})).json()
    assert everything["total"] == 6 and [e["seq"] for e in everything["items"]] == [6, 5, 4, 3]
    page2 = (await client.get(url, headers=committee_a.headers, params={"page_size": 4, "page": 2})).json()
    assert [e["seq"] for e in page2["items"]] == [2, 1]
    cash = (await client.get(url, headers=committee_a.headers, params={"account_code": CASH})).json()
    assert [e["seq"] for e in cash["items"]] == [4, 3, 2]
    q1 = (await client.get(url, headers=committee_a.headers,
                           params={"date_from": "2024-02-01", "date_to": "2024-03-31"})).json()
    assert [e["seq"] for e in q1["items"]] == [4, 3, 2]
    bad = await client.get(url, headers=committee_a.headers, params={"date_from": "2024-13-01"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "date_from"


async def test_trial_balance(client: httpx.AsyncClient, committee_a: Actor, supervisor_a: Actor) -> None:
    await _post_year(client, committee_a)
    url = f"/api/villages/{VILLAGE_A}/trial-balance"
    body = (await client.get(url, headers=supervisor_a.headers)).json()
    assert body["balanced"] and body["total_debit"] == body["total_credit"] == "63600.00"
    assert body["total_debit_balance"] == body["total_credit_balance"]
    rows = {a["code"]: a for a in body["accounts"]}
    assert len(rows) == len(STANDARD_CHART)
    assert (rows[BANK]["debit"], rows[BANK]["credit"], rows[BANK]["balance"]) == ("60800.00", "2000.00", "58800.00")
    assert rows[CASH]["balance"] == "1200.00"
    assert rows[CONTRACT_INCOME]["balance"] == "10000.00" and rows[DEPOSITS]["balance"] == "50000.00"
    assert rows["201"]["balance"] == "0.00"
    early = (await client.get(url, headers=supervisor_a.headers, params={"as_of": "2024-02-01"})).json()
    assert early["total_debit"] == "10500.00" and early["balanced"]
    assert {a["code"]: a["balance"] for a in early["accounts"]}[CASH] == "-500.00"


async def test_account_statement(client: httpx.AsyncClient, committee_a: Actor) -> None:
    await _post_year(client, committee_a)
    url = f"/api/villages/{VILLAGE_A}/accounts/{CASH}/statement"
    body = (await client.get(url, headers=committee_a.headers,
                             params={"date_from": "2024-02-10", "date_to": "2024-12-31"})).json()
    assert body["opening_balance"] == "-500.00"
    assert [(l["debit"], l["credit"], l["balance"]) for l in body["lines"]] == [
        ("2000.00", "0.00", "1500.00"),
        ("0.00", "300.00", "1200.00"),
    ]
    assert body["closing_balance"] == "1200.00" and body["total_debit"] == "2000.00"
    income = (await client.get(f"/api/villages/{VILLAGE_A}/accounts/{CONTRACT_INCOME}/statement",
                               headers=committee_a.headers)).json()
    assert income["opening_balance"] == "0.00" and income["closing_balance"] == "10000.00"
    assert income["lines"][0]["balance"] == "10000.00"  # credit-normal: credits increase it
    missing = await client.get(f"/api/villages/{VILLAGE_A}/accounts/999/statement", headers=committee_a.headers)
    assert missing.status_code == 404


async def test_income_expenditure_summary(client: httpx.AsyncClient, committee_a: Actor) -> None:
    await _post_year(client, committee_a)
    url = f"/api/villages/{VILLAGE_A}/income-expenditure"
    body = (await client.get(url, headers=committee_a.headers,
                             params={"date_from": "2024-01-01", "date_to": "2024-12-31"})).json()
    income = {r["code"]: r["amount"] for r in body["income"]}
    spent = {r["code"]: r["amount"] for r in body["expenditure"]}
    assert income["501"] == "10000.00" and income["522"] == "800.00" and "50101" not in income
    assert spent["531"] == "800.00" and "53101" not in spent  # hospitality and office roll up into 531
    assert (body["total_income"], body["total_expenditure"], body["net"]) == ("10800.00", "800.00", "10000.00")
    q1 = (await client.get(url, headers=committee_a.headers,
                           params={"date_from": "2024-02-01", "date_to": "2024-03-31"})).json()
    assert (q1["total_income"], q1["total_expenditure"], q1["net"]) == ("0.00", "800.00", "-800.00")


async def test_income_and_expenditure_of_many_periods_in_one_statement_agree_with_each_period_alone(
    client: httpx.AsyncClient, committee_a: Actor, committee_b: Actor, db: AsyncSession
) -> None:
    await _post_year(client, committee_a)
    # another village's books in the same months must not count
    response = await post(client, committee_b, entry_body("999.00", debit=BANK, credit=CONTRACT_INCOME,
                                                          entry_date="2024-02-03"), village=VILLAGE_B)
    assert response.status_code == 201, response.text
    books, service = await collective(db), BooksService(db)
    months = [(date(2024, m, 1), date(2024, m + 1, 1) - timedelta(days=1)) for m in range(1, 6)]
    periods = [(date(2023, 1, 1), date(2023, 12, 31)), *months, (date(2024, 6, 1), date(2024, 12, 31))]
    totals = await service.income_expenditure_by_period(books, periods)
    alone = [await service.income_expenditure(books, first, last) for first, last in periods]
    assert totals == [(r.total_income, r.total_expenditure) for r in alone]
    assert totals[1] == (1_000_000, 0) and totals[2] == (0, 50_000) and totals[4] == (80_000, 0)
    assert totals[0] == totals[-1] == (0, 0) and await service.income_expenditure_by_period(books, []) == []
    with pytest.raises(ValueError, match="overlap"):
        await service.income_expenditure_by_period(books, [*months, (date(2024, 5, 31), date(2024, 6, 30))])


# ---- database protection ---------------------------------------------------------------------------------


async def _entry_with_lines(db: AsyncSession, committee_a: Actor) -> JournalEntry:
    books = await collective(db)
    data = EntryCreate(entry_date="2024-01-01", memo="x", lines=[LineIn(account_code=BANK, debit="5"),
                                                                 LineIn(account_code=CASH, credit="5")])
    entry, _ = await BooksService(db).post_entry(books, data, committee_a.user)
    return entry


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE journal_entry SET memo = 'changed' WHERE id = :id",
        "DELETE FROM journal_entry WHERE id = :id",
        "UPDATE journal_line SET debit_fen = debit_fen + 1 WHERE entry_id = :id AND line_no = 1",
        "DELETE FROM journal_line WHERE entry_id = :id AND line_no = 2",
    ],
)
async def test_posted_rows_cannot_be_changed_in_the_database(
    db: AsyncSession, committee_a: Actor, statement: str
) -> None:
    entry = await _entry_with_lines(db, committee_a)
    with pytest.raises((IntegrityError, DBAPIError), match="immutable"):
        async with db.begin_nested():
            await db.execute(text(statement), {"id": entry.id})
    assert await db.scalar(select(JournalEntry.memo).where(JournalEntry.id == entry.id)) == "x"


async def test_postgres_refuses_an_unbalanced_entry_at_commit(
    db: AsyncSession, backend: str, committee_a: Actor
) -> None:
    if backend != "postgres":
        pytest.skip("the balance constraint trigger is PostgreSQL's (SQLite relies on the service)")
    books = await collective(db)
    bank, cash = (await db.scalars(select(Account.id).where(
        Account.collective_id == books.id, Account.code.in_([BANK, CASH])).order_by(Account.code))).all()
    cases = [
        [(bank, 500, 0), (cash, 0, 499)],  # debits != credits
        [(bank, 500, 0), (cash, 0, 400)],  # and not the total either
        [(bank, 500, 0)],  # a single line
        [(bank, 400, 0), (cash, 0, 400)],  # balanced, but not the entry's total
    ]
    for seq, lines in enumerate(cases, start=900):
        with pytest.raises(DBAPIError, match="not balanced"):
            async with db.begin_nested():
                entry_id = await db.scalar(text(
                    "INSERT INTO journal_entry (collective_id, seq, entry_date, memo, source, total_fen, posted_at,"
                    " prev_hash, hash) VALUES (:c, :s, '2024-01-01', 'raw', 'manual', 500, now(), :p, :h) RETURNING id"
                ), {"c": books.id, "s": seq, "p": "0" * 64, "h": f"{seq:064d}"})
                for no, (account, debit, credit) in enumerate(lines, start=1):
                    await db.execute(text(
                        "INSERT INTO journal_line (entry_id, line_no, account_id, debit_fen, credit_fen)"
                        " VALUES (:e, :n, :a, :d, :c)"), {"e": entry_id, "n": no, "a": account, "d": debit, "c": credit})
                await db.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))  # what COMMIT would check
    # a balanced posting passes the same check
    await _entry_with_lines(db, committee_a)
    await db.execute(text("SET CONSTRAINTS ALL IMMEDIATE"))


# ---- tampering is detected -------------------------------------------------------------------------------


async def disable_immutability(db: AsyncSession, backend: str) -> None:
    """Get past the immutability triggers inside this test's transaction (it is all rolled back)."""
    if backend == "postgres":
        await db.execute(text("SET LOCAL session_replication_role = replica"))
    else:
        for table in ("journal_entry", "journal_line"):
            for action in ("update", "delete"):
                await db.execute(text(f"DROP TRIGGER {table}_no_{action}"))


TAMPERING = {
    "edit an amount": (
        ["UPDATE journal_line SET debit_fen = debit_fen + 100 WHERE entry_id = :e2 AND line_no = 1",
         "UPDATE journal_line SET credit_fen = credit_fen + 100 WHERE entry_id = :e2 AND line_no = 2",
         "UPDATE journal_entry SET total_fen = total_fen + 100 WHERE id = :e2"],
        2, chain.HASH_MISMATCH,
    ),
    "delete a line": (["DELETE FROM journal_line WHERE entry_id = :e2 AND line_no = 2"], 2, chain.HASH_MISMATCH),
    "delete an entry": (
        ["DELETE FROM journal_line WHERE entry_id = :e2", "DELETE FROM journal_entry WHERE id = :e2"],
        2, chain.MISSING_SEQ,
    ),
    "delete the last entry": (
        ["DELETE FROM journal_line WHERE entry_id = :e3", "DELETE FROM journal_entry WHERE id = :e3"],
        3, chain.HEAD_MISMATCH,
    ),
    "swap two entries' seq": (
        ["UPDATE journal_entry SET seq = 1000 WHERE id = :e1", "UPDATE journal_entry SET seq = 1 WHERE id = :e2",
         "UPDATE journal_entry SET seq = 2 WHERE id = :e1"],
        1, chain.PREV_HASH_MISMATCH,
    ),
    "rewrite the head": (["UPDATE collective SET chain_head = :fake WHERE village_code = :v"], 3, chain.HEAD_MISMATCH),
}


@pytest.mark.parametrize("case", list(TAMPERING), ids=list(TAMPERING))
async def test_tampering_is_caught(
    client: httpx.AsyncClient, db: AsyncSession, backend: str, committee_a: Actor, case: str
) -> None:
    ids = [(await post(client, committee_a, entry_body(f"{n}00.00"))).json()["id"] for n in (1, 2, 3)]
    url = f"/api/villages/{VILLAGE_A}/ledger/verify"
    assert (await client.get(url)).json() == {
        "village_code": VILLAGE_A, "ok": True, "chain_length": 3, "first_broken_seq": None, "reason": None}
    statements, seq, reason = TAMPERING[case]
    await disable_immutability(db, backend)
    for statement in statements:
        await db.execute(text(statement), {"e1": ids[0], "e2": ids[1], "e3": ids[2], "fake": "f" * 64, "v": VILLAGE_A})
    failure = await BooksService(db).verify_collective(await collective(db))
    assert failure is not None and (failure.seq, failure.reason) == (seq, reason), failure
    public = (await client.get(url)).json()
    assert public["ok"] is False and public["first_broken_seq"] == seq and public["reason"] == reason
    assert "lines" not in public and "memo" not in public


# ---- published roots -------------------------------------------------------------------------------------


async def test_published_root_proves_a_village_and_later_postings_move_the_root(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, committee_b: Actor, admin: Actor
) -> None:
    assert (await client.get("/api/ledger/roots/latest")).status_code in (200, 404)
    await post(client, committee_a, entry_body())
    await post(client, committee_b, entry_body(), village=VILLAGE_B)
    assert (await client.post("/api/ledger/roots", headers=committee_a.headers)).status_code == 403
    published = await client.post("/api/ledger/roots", headers=admin.headers)
    assert published.status_code == 201, published.text
    root = published.json()
    assert root["tree_size"] == 1145
    assert (await client.get("/api/ledger/roots/latest")).json() == root
    listing = (await client.get("/api/ledger/roots", params={"page_size": 1})).json()
    assert listing["items"] == [root] and listing["total"] >= 1

    proof = (await client.get(f"/api/villages/{VILLAGE_A}/ledger/proof")).json()
    books = await collective(db)
    leaf = chain.leaf_bytes(VILLAGE_A, books.chain_length, books.chain_head)
    assert proof["leaf"] == leaf.hex() and proof["root"] == root
    assert chain.verify_inclusion(leaf, proof["leaf_index"], root["tree_size"],
                                  [bytes.fromhex(h) for h in proof["audit_path"]], bytes.fromhex(root["root_hash"]))
    forged = chain.leaf_bytes(VILLAGE_A, books.chain_length, "ab" * 32)
    assert not chain.verify_inclusion(forged, proof["leaf_index"], root["tree_size"],
                                      [bytes.fromhex(h) for h in proof["audit_path"]], bytes.fromhex(root["root_hash"]))

    service = BooksService(db)
    assert service.root_of(await service.current_heads()) == root["root_hash"]
    await post(client, committee_a, entry_body("1.00"))
    assert service.root_of(await service.current_heads()) != root["root_hash"]
    # the proof still answers against the published root until a new one is published
    assert (await client.get(f"/api/villages/{VILLAGE_A}/ledger/proof")).json()["leaf"] == leaf.hex()


# ---- concurrency: postings to one collective queue on its row ---------------------------------------------

TWO_VILLAGES = (
    "level,code,name,parent_code,district_code,district_name,township_code,township_name,unit_type,seq3\n"
    "5,440111020200,永兴村委会,440111020,440111,白云区,440111020,龙归街道,village_committee(村委会),200\n"
    "5,440118001200,城丰村委会,440118001,440118,增城区,440118001,荔城街道,village_committee(村委会),200\n"
)


async def two_village_books(maker: async_sessionmaker[AsyncSession]) -> Collective:
    """Village A's books in an empty database holding two villages with their charts (committed)."""
    async with maker() as session:
        summary = await import_divisions(session, parse_divisions(io.StringIO(TWO_VILLAGES)))
        await open_books(session, summary.new_collective_ids)
        await session.commit()
        return await collective(session)


async def test_concurrent_postings_form_one_unbroken_chain(empty_database_url: str) -> None:
    engine = create_engine(make_settings(empty_database_url))
    maker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        books = await two_village_books(maker)

        async def one(n: int) -> int:
            async with maker() as session:
                data = EntryCreate(entry_date="2024-06-01", memo=f"并发 {n}", client_key=f"c{n}",
                                   lines=[LineIn(account_code=BANK, debit=str(n + 1)),
                                          LineIn(account_code=CASH, credit=str(n + 1))])
                entry, _ = await BooksService(session).post_entry(books, data, None)
                await session.commit()
                return entry.seq

        seqs = await asyncio.gather(*(one(n) for n in range(12)))
        assert sorted(seqs) == list(range(1, 13))
        async with maker() as session:
            checked, broken = await BooksService(session).verify_all()
            assert checked == 2 and broken == []
            assert (await collective(session)).chain_length == 12
    finally:
        await engine.dispose()


async def test_concurrent_postings_under_one_client_key_make_one_entry(empty_database_url: str) -> None:
    """Replays racing the first posting: one entry is created, all of them answer it, nothing else moves."""
    engine = create_engine(make_settings(empty_database_url))
    maker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        books = await two_village_books(maker)

        async def one() -> tuple[int, int, bool]:
            async with maker() as session:
                data = EntryCreate(entry_date="2024-06-01", memo="同一笔收款", client_key="same-receipt",
                                   lines=[LineIn(account_code=BANK, debit="10"),
                                          LineIn(account_code=CASH, credit="10")])
                entry, created = await BooksService(session).post_entry(books, data, None)
                await session.commit()
                return entry.id, entry.seq, created

        answers = await asyncio.gather(*(one() for _ in range(8)))
        assert len({entry_id for entry_id, _, _ in answers}) == 1 and {seq for _, seq, _ in answers} == {1}
        assert [created for _, _, created in answers].count(True) == 1
        async with maker() as session:
            assert await row_counts(session) == (1, 2)
            assert (await collective(session)).chain_length == 1
            assert await BooksService(session).verify_all() == (2, [])
    finally:
        await engine.dispose()


async def test_a_posting_locks_the_chain_but_not_rows_that_refer_to_the_collective(
    empty_database_url: str, backend: str
) -> None:
    """Until a posting commits, another posting to the books waits; inserting rows that refer to the collective
    (their foreign key check locks it FOR KEY SHARE) does not, so that cannot deadlock with a posting."""
    if backend != "postgres":
        pytest.skip("row locks are PostgreSQL's (every SQLite transaction holds the write lock)")
    engine = create_engine(make_settings(empty_database_url))
    maker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        books = await two_village_books(maker)
        async with maker() as posting, maker() as other:
            data = EntryCreate(entry_date="2024-06-01", memo="未提交", lines=[LineIn(account_code=BANK, debit="1"),
                                                                            LineIn(account_code=CASH, credit="1")])
            await BooksService(posting).post_entry(books, data, None)
            lock = "SELECT id FROM collective WHERE id = :id FOR {} NOWAIT"
            with pytest.raises(DBAPIError, match="could not obtain lock"):
                async with other.begin_nested():
                    await other.execute(text(lock.format("NO KEY UPDATE")), {"id": books.id})
            await other.execute(text(lock.format("KEY SHARE")), {"id": books.id})
            await other.rollback()
            await posting.commit()
    finally:
        await engine.dispose()


async def test_a_chain_rewritten_after_publication_no_longer_matches_the_root(
    client: httpx.AsyncClient, db: AsyncSession, backend: str, committee_a: Actor, admin: Actor
) -> None:
    """An insider who edits an entry and recomputes every later hash and the head passes the chain check,
    but not the published root."""
    for n in (1, 2, 3):
        await post(client, committee_a, entry_body(f"{n}00.00"))
    assert (await client.post("/api/ledger/roots", headers=admin.headers)).status_code == 201
    service = BooksService(db)
    books = await collective(db)
    links = await service.chain_links(books.id, VILLAGE_A)
    await disable_immutability(db, backend)
    head = chain.GENESIS_HASH
    for link in links:
        entry = replace(link.entry, memo="改过的摘要") if link.entry.seq == 2 else link.entry
        digest = chain.entry_hash(head, chain.canonical_bytes(entry))
        await db.execute(text("UPDATE journal_entry SET memo = :m, prev_hash = :p, hash = :h WHERE id = :id"),
                         {"m": entry.memo, "p": head, "h": digest, "id": link.entry_id})
        head = digest
    await db.execute(text("UPDATE collective SET chain_head = :h WHERE id = :id"), {"h": head, "id": books.id})
    books = await collective(db)
    links = await service.chain_links(books.id, VILLAGE_A)
    assert chain.verify_chain(links, books.chain_length, books.chain_head) is None  # internally consistent
    failure = await service.verify_collective(books)
    assert failure is not None and (failure.seq, failure.reason) == (3, chain.PUBLISHED_MISMATCH)
    public = (await client.get(f"/api/villages/{VILLAGE_A}/ledger/verify")).json()
    assert public["ok"] is False and public["reason"] == chain.PUBLISHED_MISMATCH
