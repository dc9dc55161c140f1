"""`sanzi ledger verify` and `sanzi ledger publish-root` against a real, committed database."""

from __future__ import annotations

import io
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from sanzi.ledger import chain
from sanzi.ledger.chart import open_books
from sanzi.ledger.cli import ledger_group
from sanzi.ledger.models import JournalEntry, LedgerRoot, LedgerRootLeaf
from sanzi.ledger.schemas.books import EntryCreate, LineIn
from sanzi.ledger.services.books import BooksService
from sanzi.platform.database import create_engine
from sanzi.platform.geography import import_divisions, parse_divisions
from sanzi.platform.models import Collective
from tests.conftest import VILLAGE_A, VILLAGE_B, make_settings, run_sync

TWO_VILLAGES = (
    "level,code,name,parent_code,district_code,district_name,township_code,township_name,unit_type,seq3\n"
    "5,440111020200,永兴村委会,440111020,440111,白云区,440111020,龙归街道,village_committee(村委会),200\n"
    "5,440118001200,城丰村委会,440118001,440118,增城区,440118001,荔城街道,village_committee(村委会),200\n"
)


async def _in_session(url: str, work: Any) -> Any:
    engine = create_engine(make_settings(url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            result = await work(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


def books_with_entries(url: str) -> list[int]:
    """Two villages; three entries in A's books and one in B's. Returns A's entry ids in seq order."""

    async def work(session: Any) -> list[int]:
        summary = await import_divisions(session, parse_divisions(io.StringIO(TWO_VILLAGES)))
        await open_books(session, summary.new_collective_ids)
        service = BooksService(session)
        ids = []
        for village, count in ((VILLAGE_A, 3), (VILLAGE_B, 1)):
            books = await session.scalar(select(Collective).where(Collective.village_code == village))
            for n in range(1, count + 1):
                data = EntryCreate(entry_date="2024-05-01", memo=f"第{n}笔", lines=[
                    LineIn(account_code="102", debit=f"{n}00"), LineIn(account_code="50101", credit=f"{n}00")])
                entry, _ = await service.post_entry(books, data, None)
                ids.append(entry.id)
        return ids[:3]

    return run_sync(lambda: _in_session(url, work))


def tamper(url: str, statements: list[str], params: dict) -> None:
    """Change committed rows behind the application's back, past the immutability triggers."""

    async def work(session: Any) -> None:
        if session.bind.dialect.name == "postgresql":
            await session.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            for table in ("journal_entry", "journal_line"):
                for action in ("update", "delete"):
                    await session.execute(text(f"DROP TRIGGER {table}_no_{action}"))
        for statement in statements:
            await session.execute(text(statement), params)

    run_sync(lambda: _in_session(url, work))


def ledger(url: str, *args: str) -> Any:
    return CliRunner().invoke(ledger_group, list(args), env={"DATABASE_URL": url, "SANZI_ENV": "test"})


def test_verify_passes_intact_books(empty_database_url: str) -> None:
    books_with_entries(empty_database_url)
    result = ledger(empty_database_url, "verify")
    assert result.exit_code == 0, result.output
    assert "OK: 2 chains verified" in result.output
    one = ledger(empty_database_url, "verify", "--village", VILLAGE_B)
    assert one.exit_code == 0 and "OK: 1 chains verified" in one.output


TAMPERING = {
    "edit an amount": (["UPDATE journal_line SET debit_fen = 777 WHERE entry_id = :e2 AND line_no = 1"], 2,
                       chain.HASH_MISMATCH),
    "delete a row": (["DELETE FROM journal_line WHERE entry_id = :e2", "DELETE FROM journal_entry WHERE id = :e2"], 2,
                     chain.MISSING_SEQ),
    "reorder rows": (["UPDATE journal_entry SET seq = 99 WHERE id = :e2", "UPDATE journal_entry SET seq = 2 WHERE id = :e3",
                      "UPDATE journal_entry SET seq = 3 WHERE id = :e2"], 2, chain.PREV_HASH_MISMATCH),
}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_verify_names_the_first_broken_entry(empty_database_url: str, case: str) -> None:
    e1, e2, e3 = books_with_entries(empty_database_url)
    statements, seq, reason = TAMPERING[case]
    tamper(empty_database_url, statements, {"e1": e1, "e2": e2, "e3": e3})
    result = ledger(empty_database_url, "verify")
    assert result.exit_code == 1, result.output
    entry_id = e3 if case == "delete a row" else e2 if case == "edit an amount" else e3
    assert f"village {VILLAGE_A} seq {seq} entry id {entry_id}: {reason}" in result.output
    assert "1 of 2 chains broken" in result.output
    assert ledger(empty_database_url, "verify", "--village", VILLAGE_B).exit_code == 0  # B is untouched


def test_verify_refuses_a_bad_village_code(empty_database_url: str) -> None:
    books_with_entries(empty_database_url)
    assert ledger(empty_database_url, "verify", "--village", "4401").exit_code != 0
    missing = ledger(empty_database_url, "verify", "--village", "440111020299")
    assert missing.exit_code != 0 and "not found" in missing.output


def test_publish_root_stores_the_root_and_its_leaves(empty_database_url: str) -> None:
    books_with_entries(empty_database_url)
    result = ledger(empty_database_url, "publish-root")
    assert result.exit_code == 0, result.output

    async def check(session: Any) -> None:
        root = await session.scalar(select(LedgerRoot))
        assert root.root_hash in result.output and root.tree_size == 2
        leaves = (await session.execute(
            select(LedgerRootLeaf.village_code, LedgerRootLeaf.chain_length, LedgerRootLeaf.chain_head)
            .where(LedgerRootLeaf.root_id == root.id).order_by(LedgerRootLeaf.leaf_index))).all()
        assert [(code, length) for code, length, _ in leaves] == [(VILLAGE_A, 3), (VILLAGE_B, 1)]
        assert chain.merkle_root([chain.leaf_bytes(*leaf) for leaf in leaves]).hex() == root.root_hash
        last = await session.scalar(select(JournalEntry.hash).where(JournalEntry.seq == 3))
        assert leaves[0].chain_head == last
        assert await session.scalar(select(func.count()).select_from(LedgerRoot)) == 1

    run_sync(lambda: _in_session(empty_database_url, check))
