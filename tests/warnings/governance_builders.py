"""ORM builders for the undisclosed-transaction and election rules: journal entries (not chained: the rules
read amounts, accounts and counterparties), contract schedules and receipts, elections and candidates."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import Account, Contract, ContractInstallment, ContractReceipt, JournalEntry, JournalLine
from sanzi.platform.models import Candidate, Election
from tests.warnings.builders import collective_of

BANK = "102"


async def make_entry(
    session: AsyncSession,
    village_code: str,
    entry_date: date,
    lines: Sequence[tuple[str, int, int]],
    *,
    counterparty: str | None = None,
    source: str = "manual",
) -> JournalEntry:
    """A posted entry of [(account code, debit fen, credit fen), ...] (balanced by the caller)."""
    collective = await collective_of(session, village_code)
    accounts = {
        a.code: a.id
        for a in await session.scalars(select(Account).where(Account.collective_id == collective.id))
    }
    seq = (await session.scalar(
        select(func.max(JournalEntry.seq)).where(JournalEntry.collective_id == collective.id)
    ) or 0) + 1
    entry = JournalEntry(
        collective_id=collective.id,
        seq=seq,
        entry_date=entry_date,
        memo="测试分录",
        counterparty=counterparty,
        source=source,
        total_fen=sum(debit for _, debit, _ in lines),
        posted_at=datetime.now(UTC),
        prev_hash="0" * 64,
        hash=uuid.uuid4().hex * 2,
    )
    session.add(entry)
    await session.flush()
    for n, (code, debit, credit) in enumerate(lines, 1):
        session.add(JournalLine(entry_id=entry.id, line_no=n, account_id=accounts[code], debit_fen=debit,
                                credit_fen=credit))
    await session.flush()
    return entry


async def income(session: AsyncSession, village_code: str, on: date, amount_fen: int, counterparty: str,
                 account: str = "50101", source: str = "manual") -> JournalEntry:
    return await make_entry(session, village_code, on, [(BANK, amount_fen, 0), (account, 0, amount_fen)],
                            counterparty=counterparty, source=source)


async def expense(session: AsyncSession, village_code: str, on: date, amount_fen: int, account: str,
                  counterparty: str | None = None) -> JournalEntry:
    return await make_entry(session, village_code, on, [(account, amount_fen, 0), (BANK, 0, amount_fen)],
                            counterparty=counterparty)


async def add_installment(session: AsyncSession, contract: Contract, seq: int, due: date, amount_fen: int,
                          ) -> ContractInstallment:
    item = ContractInstallment(contract_id=contract.id, seq=seq, period_start=due, period_end=due, due_date=due,
                               amount_fen=amount_fen)
    session.add(item)
    await session.flush()
    return item


async def add_receipt(session: AsyncSession, contract: Contract, on: date, amount_fen: int) -> ContractReceipt:
    entry = await income(session, contract.village_code, on, amount_fen, contract.counterparty_name,
                         source="contract_receipt")
    receipt = ContractReceipt(contract_id=contract.id, entry_id=entry.id, amount_fen=amount_fen, received_on=on,
                              created_at=datetime.now(UTC))
    session.add(receipt)
    await session.flush()
    return receipt


async def make_election(session: AsyncSession, village_code: str, on: date,
                        candidates: Sequence[tuple[str, str | None]] = ()) -> Election:
    election = Election(village_code=village_code, election_date=on)
    session.add(election)
    await session.flush()
    for name, id_number in candidates:
        session.add(Candidate(election_id=election.id, name=name, id_number=id_number, position="主任"))
    await session.flush()
    return election
