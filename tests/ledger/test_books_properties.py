"""Properties of the books (hypothesis): valid postings and reversals keep every trial balance equal and the
chain verifiable; any single-row tampering is detected.

Hypothesis runs many examples inside one test, and function-scoped fixtures are not reset between them, so
each example runs in a savepoint of its own that is rolled back at its end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.chart import STANDARD_CHART
from sanzi.ledger.models import Account, JournalEntry, JournalLine
from sanzi.ledger.schemas.books import EntryCreate, LineIn, ReversalCreate
from sanzi.ledger.services.books import BooksService
from sanzi.platform.models import Collective
from sanzi.platform.problems import Conflict
from tests.conftest import VILLAGE_A

CODES = [row[0] for row in STANDARD_CHART]
TEXT = st.characters(blacklist_categories=("Cs", "Cc"))  # PostgreSQL text cannot hold NUL
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@st.composite
def entries(draw: st.DrawFn) -> EntryCreate:
    """A balanced entry: 1-3 debit lines and 1-3 credit lines over random accounts, random positive fen."""
    debits = draw(st.lists(st.integers(1, 10**9), min_size=1, max_size=3))
    total = sum(debits)
    credit_count = min(draw(st.integers(1, 3)), total)
    cuts = sorted(draw(st.lists(st.integers(1, total - 1), min_size=credit_count - 1, max_size=credit_count - 1,
                                unique=True))) if total > 1 else []
    credits = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
    lines = [LineIn(account_code=draw(st.sampled_from(CODES)), debit=_yuan(fen))
             for fen in debits]
    lines += [LineIn(account_code=draw(st.sampled_from(CODES)), credit=_yuan(fen)) for fen in credits]
    return EntryCreate(
        entry_date=date(2024, 1, 1) + timedelta(days=draw(st.integers(0, 365))),
        memo=draw(st.text(TEXT, min_size=1, max_size=20).filter(str.strip)),
        counterparty=draw(st.none() | st.text(TEXT, min_size=1, max_size=10).filter(str.strip)),
        lines=draw(st.permutations(lines)),
    )


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


# an operation: post an entry, or reverse the entry at some index of those posted so far
operations = st.lists(st.one_of(entries(), st.integers(0, 30)), min_size=1, max_size=8)


@asynccontextmanager
async def rolled_back(db: AsyncSession) -> AsyncIterator[Collective]:
    """One example's world: a savepoint rolled back at the end, and village A's collective as it is now."""
    savepoint = await db.begin_nested()
    try:
        yield await db.scalar(
            select(Collective).where(Collective.village_code == VILLAGE_A).execution_options(populate_existing=True)
        )
    finally:
        await savepoint.rollback()
        db.expunge_all()


@SETTINGS
@given(ops=operations)
async def test_valid_postings_keep_the_books_balanced_and_the_chain_verifiable(db: AsyncSession, ops: list) -> None:
    async with rolled_back(db) as books:
        service = BooksService(db)
        posted: list[JournalEntry] = []
        reversed_ids: set[int] = set()
        for op in ops:
            if isinstance(op, EntryCreate):
                entry, created = await service.post_entry(books, op, None)
                assert created
                posted.append(entry)
            elif posted:
                target = posted[op % len(posted)]
                try:
                    reversal = await service.reverse_entry(books, target, None, ReversalCreate())
                except Conflict:
                    assert target.id in reversed_ids
                else:
                    assert target.id not in reversed_ids
                    reversed_ids.add(target.id)
                    posted.append(reversal)
        assert books.chain_length == len(posted)
        balance = await service.trial_balance(books, None)
        assert balance.balanced and balance.total_debit == balance.total_credit
        assert balance.total_debit == sum(entry.total_fen for entry in posted)
        midyear = await service.trial_balance(books, date(2024, 7, 1))
        assert midyear.balanced
        assert await service.verify_collective(books) is None


async def _disable_immutability(db: AsyncSession) -> None:
    if db.bind.dialect.name == "postgresql":
        await db.execute(text("SET LOCAL session_replication_role = replica"))  # undone with the savepoint
    else:
        for table in ("journal_entry", "journal_line"):
            for action in ("update", "delete"):
                await db.execute(text(f"DROP TRIGGER {table}_no_{action}"))


TAMPERINGS = ["line amount", "entry memo", "line memo", "line account", "delete line", "entry date", "entry total"]


@SETTINGS
@given(
    posts=st.lists(entries(), min_size=1, max_size=4),
    tampering=st.sampled_from(TAMPERINGS),
    pick=st.integers(0, 1000),
    delta=st.integers(1, 10**6),
)
async def test_any_single_row_tampering_is_detected(
    db: AsyncSession, posts: list[EntryCreate], tampering: str, pick: int, delta: int
) -> None:
    async with rolled_back(db) as books:
        service = BooksService(db)
        for data in posts:
            await service.post_entry(books, data, None)
        assert await service.verify_collective(books) is None
        lines = (await db.execute(
            select(JournalLine.id, JournalLine.entry_id, JournalLine.debit_fen, JournalLine.account_id)
            .join(JournalEntry).where(JournalEntry.collective_id == books.id).order_by(JournalLine.id)
        )).all()
        line = lines[pick % len(lines)]
        await _disable_immutability(db)
        params = {"line": line.id, "entry": line.entry_id, "delta": delta}
        if tampering == "line amount":
            column = "debit_fen" if line.debit_fen else "credit_fen"
            await db.execute(text(f"UPDATE journal_line SET {column} = {column} + :delta WHERE id = :line"), params)
        elif tampering == "entry memo":
            await db.execute(text("UPDATE journal_entry SET memo = memo || 'x' WHERE id = :entry"), params)
        elif tampering == "line memo":
            await db.execute(text("UPDATE journal_line SET memo = coalesce(memo, '') || 'x' WHERE id = :line"), params)
        elif tampering == "line account":
            other = await db.scalar(select(Account.id).where(
                Account.collective_id == books.id, Account.id != line.account_id).order_by(Account.code).limit(1))
            params["account"] = other
            await db.execute(text("UPDATE journal_line SET account_id = :account WHERE id = :line"), params)
        elif tampering == "delete line":
            await db.execute(text("DELETE FROM journal_line WHERE id = :line"), params)
        elif tampering == "entry date":
            entry_date = await db.scalar(select(JournalEntry.entry_date).where(JournalEntry.id == line.entry_id))
            params["day"] = entry_date + timedelta(days=1 + delta % 30)
            await db.execute(text("UPDATE journal_entry SET entry_date = :day WHERE id = :entry"), params)
        else:
            await db.execute(text("UPDATE journal_entry SET total_fen = total_fen + :delta WHERE id = :entry"), params)
        failure = await service.verify_collective(books)
        assert failure is not None
        tampered_seq = await db.scalar(select(JournalEntry.seq).where(JournalEntry.id == line.entry_id))
        assert failure.seq == tampered_seq
