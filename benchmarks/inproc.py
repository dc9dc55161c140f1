"""Figures measured inside the runner with the project's own services: the warning scan against one
sequential read of the tables it reads, incremental evaluation per event, chained postings against plain
inserts of the same rows, chain verification, and the query plans of the heaviest rules."""

from __future__ import annotations

import hashlib
import random
import re
import time
from dataclasses import dataclass, field
from datetime import date
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from sanzi.auction.models import Bid, Listing
from sanzi.ledger.models import Contract, JournalEntry, JournalLine
from sanzi.ledger.schemas.books import EntryCreate, LineIn
from sanzi.ledger.services.books import BooksService
from sanzi.platform.events import DomainEvent
from sanzi.platform.models import Collective

_FROM = re.compile(r"\b(?:FROM|JOIN)\s+\"?([a-z_][a-z0-9_]*)\"?", re.IGNORECASE)


@dataclass
class StatementLog:
    """Every statement the engine ran while recording, with its duration (for the plans of the heaviest)."""

    recording: bool = False
    statements: list[list[Any]] = field(default_factory=list)  # [seconds, statement, parameters, rule id]
    labelled: int = 0

    def label(self, rule_id: str) -> None:
        """Name the rule that ran the statements recorded since the last label."""
        for item in self.statements[self.labelled :]:
            item[3] = rule_id
        self.labelled = len(self.statements)

    def attach(self, engine: AsyncEngine) -> None:
        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _before(
            conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
        ) -> None:
            conn.info["bench_started"] = time.perf_counter()

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            if self.recording and not many:
                self.statements.append(
                    [time.perf_counter() - conn.info.pop("bench_started"), statement, parameters, None]
                )


async def full_scan(
    engine: AsyncEngine,
    log: StatementLog | None = None,
    on_rule: Callable[[str, float], None] | None = None,
    jobs: int = 1,
) -> dict[str, Any]:
    """One full scan of every rule (as ``sanzi warnings scan --jobs N`` runs it), rolled back so every
    repetition does the same work; seconds in all and per rule, and the alerts it raised. Per rule is the
    time from one rule's findings being written to the next's: with more than one job the rules are read at
    once, so only a serial scan (``jobs=1``) gives each rule's own time."""
    from sanzi.warnings.engine import scan

    maker = async_sessionmaker(engine, expire_on_commit=False)
    per_rule: dict[str, float] = {}
    started = time.perf_counter()
    mark = [started]

    def progress(rule: Any, counts: Any) -> None:
        now = time.perf_counter()
        per_rule[rule.id] = per_rule.get(rule.id, 0.0) + now - mark[0]
        mark[0] = now
        if on_rule is not None:
            on_rule(rule.id, per_rule[rule.id])
        if log is not None:
            log.label(rule.id)

    if log is not None:
        log.statements.clear()
        log.labelled = 0
        log.recording = True
    async with maker() as session:
        try:
            summary = await scan(session, progress=progress, jobs=jobs)
            await session.flush()
            seconds = time.perf_counter() - started
        finally:
            if log is not None:
                log.recording = False
            await session.rollback()
    return {"seconds": seconds, "per_rule": per_rule, "raised": summary.raised}


def tables_read(log: StatementLog, known: set[str]) -> list[str]:
    """The tables named after FROM or JOIN in the recorded SELECTs."""
    found: set[str] = set()
    for _, statement, _, _ in log.statements:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            found |= {name.lower() for name in _FROM.findall(statement)}
    return sorted(found & known)


async def sequential_read(engine: AsyncEngine, tables: list[str]) -> float:
    """Seconds to read every row of the tables once, deforming every column (what a scan must at least do)."""
    started = time.perf_counter()
    async with engine.connect() as conn:
        for table in tables:
            await conn.execute(text(f'SELECT sum(pg_column_size(t.*)) FROM "{table}" AS t'))
    return time.perf_counter() - started


async def user_tables(engine: AsyncEngine) -> dict[str, int]:
    """Every table of the schema with its exact row count (the statistics' live-row counts start at zero in a
    database copied from a template)."""
    async with engine.connect() as conn:
        names = list(
            await conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"))
        )
        return {name: await conn.scalar(text(f'SELECT count(*) FROM "{name}"')) for name in names}


async def sample_events(engine: AsyncEngine, per_kind: int, seed: int) -> list[DomainEvent]:
    """Events like the ones the platform emits, for rows that exist: bids, closes, contracts, postings."""
    rng = random.Random(seed)
    out: list[DomainEvent] = []
    async with engine.connect() as conn:
        bids = (
            await conn.execute(
                select(Bid.id, Bid.listing_id, Listing.village_code)
                .join(Listing, Listing.id == Bid.listing_id)
                .order_by(Bid.id.desc())
                .limit(per_kind * 20)
            )
        ).all()
        closes = (
            await conn.execute(
                select(Listing.id, Listing.village_code)
                .where(Listing.closed_at.is_not(None))
                .order_by(Listing.id.desc())
                .limit(per_kind * 20)
            )
        ).all()
        contracts = (
            await conn.execute(
                select(Contract.id, Collective.village_code)
                .join(Collective, Collective.id == Contract.collective_id)
                .order_by(Contract.id.desc())
                .limit(per_kind * 20)
            )
        ).all()
        entries = (
            await conn.execute(
                select(JournalEntry.id, Collective.village_code)
                .join(Collective, Collective.id == JournalEntry.collective_id)
                .order_by(JournalEntry.id.desc())
                .limit(per_kind * 20)
            )
        ).all()
    for row in rng.sample(bids, min(per_kind, len(bids))):
        out.append(
            DomainEvent("bid_placed", row.village_code, {"listing_id": row.listing_id, "bid_id": row.id})
        )
    for row in rng.sample(closes, min(per_kind, len(closes))):
        out.append(DomainEvent("listing_closed", row.village_code, {"listing_id": row.id}))
    for row in rng.sample(contracts, min(per_kind, len(contracts))):
        out.append(DomainEvent("contract_recorded", row.village_code, {"contract_id": row.id}))
    for row in rng.sample(entries, min(per_kind, len(entries))):
        out.append(DomainEvent("entry_posted", row.village_code, {"entry_id": row.id}))
    return out


async def incremental(engine: AsyncEngine, events: list[DomainEvent]) -> list[float]:
    """Seconds of the engine's incremental evaluation for each event (each rolled back)."""
    from sanzi.warnings.engine import evaluate_event

    maker = async_sessionmaker(engine, expire_on_commit=False)
    times = []
    for domain_event in events:
        async with maker() as session:
            started = time.perf_counter()
            await evaluate_event(session, domain_event)
            await session.flush()
            times.append(time.perf_counter() - started)
            await session.rollback()
    return times


# ---- books -----------------------------------------------------------------------------------------------


def _entry(n: int, day: date) -> EntryCreate:
    amount = 1_000 + (n * 7919) % 500_000
    return EntryCreate(
        entry_date=day,
        memo=f"基准测试：收取第 {n} 笔租金",
        counterparty="基准承租人",
        client_key=f"bench-{n}-{time.time_ns()}",
        lines=[
            LineIn(account_code="102", debit=amount),
            LineIn(account_code="50101", credit=amount),
        ],
    )


async def chained_postings(
    engine: AsyncEngine, collective_ids: list[int], count: int
) -> tuple[float, list[int]]:
    """Post ``count`` entries through BooksService (chain lock, hash, head), one transaction each, round-robin
    over the collectives; (seconds, entry ids)."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    ids = []
    day = date.today()
    async with maker() as session:
        # loaded before the clock starts, as plain_inserts reads its rows before it starts
        collectives = [await session.get_one(Collective, cid) for cid in collective_ids]
        await session.commit()
        started = time.perf_counter()
        for n in range(count):
            entry, _ = await BooksService(session).post_entry(
                collectives[n % len(collectives)], _entry(n, day), None
            )
            ids.append(entry.id)
            await session.commit()
    return time.perf_counter() - started, ids


async def plain_inserts(engine: AsyncEngine, entry_ids: list[int]) -> float:
    """Insert the same entries and lines again as plain rows (no chain lock, no hashing, no head update), one
    transaction each, under seq numbers far from the chain's; seconds."""
    async with engine.connect() as conn:
        entries = [
            dict(row._mapping)
            for row in await conn.execute(
                select(JournalEntry.__table__).where(JournalEntry.id.in_(entry_ids)).order_by(JournalEntry.id)
            )
        ]
        lines: dict[int, list[dict[str, Any]]] = {}
        for row in await conn.execute(
            select(JournalLine.__table__).where(JournalLine.entry_id.in_(entry_ids))
        ):
            lines.setdefault(row.entry_id, []).append(dict(row._mapping))
    offset = 10_000_000 + time.time_ns() % 1_000_000 * 1_000
    prepared = []
    for entry in entries:
        old_id = entry.pop("id")
        entry["seq"] += offset
        entry["hash"] = hashlib.sha256((entry["hash"] + str(offset)).encode()).hexdigest()
        entry["client_key"] = f"p{offset}-{old_id}"
        prepared.append(
            (
                entry,
                [{k: v for k, v in line.items() if k not in ("id", "entry_id")} for line in lines[old_id]],
            )
        )
    table, line_table = JournalEntry.__table__, JournalLine.__table__
    started = time.perf_counter()
    async with engine.connect() as conn:
        for entry, entry_lines in prepared:
            async with conn.begin():
                new_id = await conn.scalar(insert(table).values(**entry).returning(table.c.id))
                await conn.execute(insert(line_table), [{**line, "entry_id": new_id} for line in entry_lines])
    return time.perf_counter() - started


async def verify_chains(engine: AsyncEngine, villages: int) -> tuple[float, int, int]:
    """Verify the chains of the first ``villages`` villages by code (every entry re-hashed, as
    ``sanzi ledger verify`` does); (seconds, entries checked, broken chains)."""
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        codes = list(
            await session.scalars(
                select(Collective.village_code).order_by(Collective.village_code).limit(villages)
            )
        )
        entries = await session.scalar(
            select(func.count())
            .select_from(JournalEntry)
            .join(Collective, Collective.id == JournalEntry.collective_id)
            .where(Collective.village_code.in_(codes))
        )
        books = BooksService(session)
        broken = 0
        started = time.perf_counter()
        for code in codes:
            broken += len((await books.verify_all(code))[1])
        seconds = time.perf_counter() - started
    return seconds, int(entries or 0), broken


# ---- plans -----------------------------------------------------------------------------------------------


async def heaviest_plans(engine: AsyncEngine, log: StatementLog, top: int = 3) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the slowest statements of the recorded scan, with their parameters, under
    the settings the scan runs them with (no JIT, the scan's ``work_mem``)."""
    from sanzi.warnings.engine import SCAN_WORK_MEM

    heaviest = sorted(
        (s for s in log.statements if s[1].lstrip().upper().startswith(("SELECT", "WITH"))),
        key=lambda s: s[0],
        reverse=True,
    )[:top]
    plans = []
    async with engine.connect() as conn:
        for seconds, statement, parameters, rule_id in heaviest:
            await conn.execute(
                text("SELECT set_config('jit', 'off', true), set_config('work_mem', :work_mem, true)"),
                {"work_mem": SCAN_WORK_MEM},
            )
            rows = await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plans.append(
                {
                    "rule": rule_id or "(index)",
                    "seconds": round(seconds, 4),
                    "statement": statement,
                    "plan": "\n".join(r[0] for r in rows),
                }
            )
            await conn.rollback()
    return plans
