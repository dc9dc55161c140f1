"""The books: posting chained journal entries, reversals, reports, chain verification and published roots.

Every posting of a collective is serialised by the database itself: its first statement reads the chain head
``FOR NO KEY UPDATE`` (with the accounts it names), which holds the collective's row lock on PostgreSQL until
the transaction ends; on SQLite every transaction of the app holds the write lock from ``BEGIN IMMEDIATE``. Then
one statement on PostgreSQL (three under a savepoint on SQLite) inserts the entry (nothing when its client key
is taken), its lines, and moves the head. Every refusal (unknown or inactive account, reused key, already
reversed) comes before anything is written, so a refused posting leaves nothing behind even when the caller
goes on to commit. A posting is two statements (plus BEGIN and COMMIT) on PostgreSQL, as many round trips as
inserting the same entry and lines plainly. Should the database still refuse the write (only a broken
invariant can make it), BooksIntegrityError is raised with nothing of the posting written, and the
transaction is left to the caller.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    and_,
    any_,
    bindparam,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from sanzi.ledger import chain
from sanzi.ledger.models import Account, JournalEntry, JournalLine, LedgerRoot, LedgerRootLeaf
from sanzi.ledger.schemas import books as schemas
from sanzi.platform import events
from sanzi.platform.models import Collective, User
from sanzi.platform.problems import Conflict, DomainError, NotFound
from sanzi.platform.settings import get_settings


def request_hash(data: schemas.EntryCreate) -> str:
    """SHA-256 of the validated request body (amounts in fen, keys sorted, the client key left out)."""
    body = data.model_dump(mode="json", exclude={"client_key"})
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _total(expression: Any) -> Any:
    """SUM as an integer on every backend (PostgreSQL's SUM(bigint) is numeric)."""
    return cast(func.coalesce(func.sum(expression), 0), BigInteger)


@dataclass(frozen=True)
class _PostingLine:
    account: Account
    debit_fen: int
    credit_fen: int
    memo: str | None

    @property
    def account_id(self) -> int:
        return self.account.id

    @property
    def account_code(self) -> str:
        return self.account.code


# The statements of a posting, built once: their compiled forms and cache keys are then reused as they are.
_collective, _entry, _line = Collective.__table__, JournalEntry.__table__, JournalLine.__table__
_LOCK = (
    select(Collective.chain_length, Collective.chain_head)
    .where(Collective.id == bindparam("collective_id"))
    .with_for_update(key_share=True)
)
_LOCK_WITH_ACCOUNTS = (
    select(Collective.chain_length, Collective.chain_head, Account.is_active, Account)
    .outerjoin(
        Account,
        and_(Account.collective_id == Collective.id, Account.code.in_(bindparam("codes", expanding=True))),
    )
    .where(Collective.id == bindparam("collective_id"))
    .with_for_update(of=Collective, key_share=True)
)
# a repeated client key inserts nothing (and returns no id) instead of failing, so no savepoint is needed to
# go on in the same transaction; any other unique violation (seq, hash) still fails
_INSERT_ENTRY_SQLITE = (
    sqlite.insert(_entry)
    .on_conflict_do_nothing(index_elements=[_entry.c.collective_id, _entry.c.client_key])
    .returning(_entry.c.id)
)
_INSERT_LINES = insert(_line).returning(_line.c.id, _line.c.line_no)
_MOVE_HEAD = (
    update(_collective)
    .where(_collective.c.id == bindparam("collective_id"))
    .values(chain_length=bindparam("new_length"), chain_head=bindparam("new_head"))
)


#: The columns a posting writes (the keys of its values); every other column gets its default or NULL, so a
#: column added with a default needs no edit here.
_ENTRY_COLUMNS = (
    "collective_id", "seq", "entry_date", "memo", "counterparty", "source", "client_key", "request_hash",
    "reverses_entry_id", "total_fen", "posted_by_id", "posted_at", "prev_hash", "hash",
)
_LINE_COLUMNS = ("line_no", "account_id", "debit_fen", "credit_fen", "memo")


def _write_postgresql_statement() -> Any:
    """PostgreSQL: the entry (unless its client key is taken), its lines and the new head in one statement,
    answering (entry id, line id, line no) per line; the lines and the head follow the entry only if it was
    inserted, so a taken client key answers no rows and writes nothing. The entry's fields are bound under
    their column names, the lines' as one array per column (``lines_<column>``), unnested."""
    new_entry = (
        postgresql.insert(_entry)
        .values({_entry.c[name]: bindparam(name) for name in _ENTRY_COLUMNS})
        .on_conflict_do_nothing(index_elements=[_entry.c.collective_id, _entry.c.client_key])
        .returning(_entry.c.id)
        .cte("new_entry")
    )
    line = (
        func.unnest(*(bindparam(f"lines_{name}", type_=ARRAY(_line.c[name].type)) for name in _LINE_COLUMNS))
        .table_valued(*_LINE_COLUMNS)
        .render_derived("line")
    )
    new_lines = (
        insert(_line)
        .from_select(
            [_line.c.entry_id, *(_line.c[name] for name in _LINE_COLUMNS)],
            select(new_entry.c.id, *(line.c[name] for name in _LINE_COLUMNS)).select_from(
                new_entry.join(line, true())
            ),
        )
        .returning(_line.c.entry_id, _line.c.id, _line.c.line_no)
        .cte("new_lines")
    )
    new_head = (
        update(_collective)
        .where(_collective.c.id == bindparam("collective_id"), exists(new_entry.select()))
        .values(
            chain_length=bindparam("seq"), chain_head=bindparam("hash"), updated_at=bindparam("posted_at")
        )
        .cte("new_head")
    )
    return select(new_lines.c.entry_id, new_lines.c.id, new_lines.c.line_no).add_cte(new_head)


_WRITE_POSTGRESQL = _write_postgresql_statement()


class BooksIntegrityError(Exception):
    """The database refused a posting that passed every check of the service: a broken invariant of the books
    (its seq or hash already taken, a line refused). Nothing of the posting was written."""


@dataclass(frozen=True)
class _Found:
    """An account named by a posting, with ``is_active`` as read under the chain lock."""

    account: Account
    is_active: bool


class BooksService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ---- chart of accounts -------------------------------------------------------------------------------

    async def accounts(self, collective: Collective) -> list[Account]:
        return list(
            await self.session.scalars(
                select(Account).where(Account.collective_id == collective.id).order_by(Account.code)
            )
        )

    async def account(self, collective: Collective, code: str) -> Account:
        account = await self.session.scalar(
            select(Account).where(Account.collective_id == collective.id, Account.code == code)
        )
        if account is None:
            raise NotFound("科目", "account")
        return account

    # ---- posting -----------------------------------------------------------------------------------------

    async def post_entry(
        self, collective: Collective, data: schemas.EntryCreate, actor: User | None, *, source: str = "manual"
    ) -> tuple[JournalEntry, bool]:
        """Post a balanced entry to the collective's chain; (entry, created). A known client key with the same
        body answers the first entry (created False); with another body it is a conflict."""
        body_hash = request_hash(data)
        codes = {line.account_code for line in data.lines}
        seq, prev_hash, accounts = await self._lock_chain(collective, codes)
        lines = self._resolve_lines(accounts, data.lines)
        entry = await self._append(
            collective,
            seq,
            prev_hash,
            entry_date=data.entry_date,
            memo=data.memo,
            counterparty=data.counterparty,
            source=source,
            client_key=data.client_key,
            request_hash=body_hash,
            reverses=None,
            lines=lines,
            actor=actor,
        )
        if entry is None:
            return await self._replay(collective, data.client_key, body_hash), False
        events.record(self.session, "entry_posted", collective.village_code, entry_id=entry.id)
        return entry, True

    async def _replay(self, collective: Collective, client_key: str | None, body_hash: str) -> JournalEntry:
        """The entry first posted under this client key (its insert was skipped as a conflict on the key)."""
        first = await self.session.scalar(
            select(JournalEntry)
            .where(JournalEntry.collective_id == collective.id, JournalEntry.client_key == client_key)
            .execution_options(populate_existing=True)
        )
        assert first is not None, "the insert conflicted on a client key that is not there"
        if first.request_hash != body_hash:
            raise Conflict(
                "该幂等键已用于另一张内容不同的凭证",
                "this client key was already used for an entry with a different body",
                field="client_key",
            )
        return first

    async def reverse_entry(
        self, collective: Collective, entry: JournalEntry, actor: User | None, data: schemas.ReversalCreate
    ) -> JournalEntry:
        """Post the mirror of an entry (debits and credits swapped); an entry can be reversed only once."""
        if entry.collective_id != collective.id:
            raise NotFound("凭证", "entry")
        seq, prev_hash, _ = await self._lock_chain(collective, set())
        # under the chain lock: a concurrent reversal of the same entry has committed or not started
        already = await self.session.scalar(
            select(JournalEntry.seq).where(JournalEntry.reverses_entry_id == entry.id)
        )
        if already is not None:
            raise Conflict(
                f"该凭证已由第 {already} 号凭证冲销", f"this entry was already reversed by entry seq {already}"
            )
        lines = [
            _PostingLine(line.account, line.credit_fen, line.debit_fen, line.memo) for line in entry.lines
        ]
        memo = data.memo or f"冲销第 {entry.seq} 号凭证：{entry.memo}"[:500]
        reversal = await self._append(
            collective,
            seq,
            prev_hash,
            entry_date=data.entry_date or datetime.now(get_settings().zone).date(),
            memo=memo,
            counterparty=entry.counterparty,
            source="reversal",
            client_key=None,
            request_hash=None,
            reverses=entry,
            lines=lines,
            actor=actor,
        )
        assert reversal is not None  # no client key, nothing to conflict on
        # a reversal is a posting like any other for the warning rules (income, payouts, arrears)
        events.record(self.session, "entry_posted", collective.village_code, entry_id=reversal.id)
        return reversal

    async def _lock_chain(
        self, collective: Collective, codes: set[str]
    ) -> tuple[int, str, dict[str, _Found]]:
        """Lock the collective's chain and read its head, with the accounts of these codes, in one statement;
        (next seq, previous head, {code: account}).

        ``FOR NO KEY UPDATE`` holds the collective's row lock until the transaction ends (READ COMMITTED hands
        back the head as the previous holder committed it), so postings to one collective queue here. It is the
        lock an UPDATE of the row takes: unlike ``FOR UPDATE`` it lets other transactions insert rows that refer
        to the collective meanwhile (their foreign key checks take ``FOR KEY SHARE``) and cannot deadlock with
        one that did so before posting. SQLite has
        no row locks: the app's engine opens every transaction with ``BEGIN IMMEDIATE`` (platform.database),
        which holds the database's write lock from the start. Only a lock is taken, nothing is written, so a
        refusal after it (unknown account, already reversed) leaves the caller's transaction as it was."""
        if codes:
            query, params = _LOCK_WITH_ACCOUNTS, {"collective_id": collective.id, "codes": sorted(codes)}
        else:
            query, params = _LOCK, {"collective_id": collective.id}
        rows = (await self.session.execute(query, params)).all()
        length, head = rows[0][0], rows[0][1]
        # every row carries the same locked collective row
        assert all(row[0] == length and row[1] == head for row in rows)
        found = {row[3].code: _Found(row[3], row[2]) for row in rows if codes and row[3] is not None}
        return length + 1, head, found

    @staticmethod
    def _resolve_lines(found: dict[str, _Found], lines: Sequence[schemas.LineIn]) -> list[_PostingLine]:
        resolved = []
        for index, line in enumerate(lines):
            field = f"lines[{index}].account_code"
            account = found.get(line.account_code)
            if account is None:
                raise DomainError(
                    f"科目 {line.account_code} 不在本集体经济组织的账套中",
                    f"account {line.account_code} is not in this collective's chart of accounts",
                    field=field,
                )
            if not account.is_active:  # as read under the lock, not as the session may remember it
                raise DomainError(
                    f"科目 {line.account_code} 已停用", f"account {line.account_code} is inactive", field=field
                )
            resolved.append(_PostingLine(account.account, line.debit, line.credit, line.memo))
        return resolved

    async def _append(
        self,
        collective: Collective,
        seq: int,
        prev_hash: str,
        *,
        entry_date: date,
        memo: str,
        counterparty: str | None,
        source: str,
        client_key: str | None,
        request_hash: str | None,
        reverses: JournalEntry | None,
        lines: list[_PostingLine],
        actor: User | None,
    ) -> JournalEntry | None:
        """Hash the entry onto the chain, insert it and its lines, move the collective's head; None, with
        nothing written, when the client key is already taken in this collective.

        The write is all or nothing; only then are the entry and its lines put into the session as the
        persistent objects they are (nothing is read back), so a failed write leaves nothing in the session
        for a later flush. A refusal by the database (which validation and the chain lock leave to broken
        invariants only) raises BooksIntegrityError and leaves the caller's transaction to the caller: on
        PostgreSQL it can only be rolled back, on SQLite it goes on as it was."""
        posted_at = datetime.now(UTC)
        total_fen = sum(line.debit_fen for line in lines)
        canonical = chain.CanonicalEntry(
            village_code=collective.village_code,
            seq=seq,
            entry_date=entry_date,
            memo=memo,
            counterparty=counterparty,
            source=source,
            reverses_seq=reverses.seq if reverses else None,
            posted_at=posted_at,
            total_fen=total_fen,
            lines=tuple(
                chain.CanonicalLine(no, line.account_code, line.debit_fen, line.credit_fen, line.memo)
                for no, line in enumerate(lines, start=1)
            ),
        )
        entry_hash = chain.entry_hash(prev_hash, chain.canonical_bytes(canonical))
        values = {
            "collective_id": collective.id,
            "seq": seq,
            "entry_date": entry_date,
            "memo": memo,
            "counterparty": counterparty,
            "source": source,
            "client_key": client_key,
            "request_hash": request_hash,
            "reverses_entry_id": reverses.id if reverses else None,
            "total_fen": total_fen,
            "posted_by_id": actor.id if actor else None,
            "posted_at": posted_at,
            "prev_hash": prev_hash,
            "hash": entry_hash,
        }
        line_rows = [
            {
                "line_no": no,
                "account_id": line.account_id,
                "debit_fen": line.debit_fen,
                "credit_fen": line.credit_fen,
                "memo": line.memo,
            }
            for no, line in enumerate(lines, start=1)
        ]
        try:
            if self.session.get_bind().dialect.name == "postgresql":
                written = await self._write_postgresql(values, line_rows)
            else:
                written = await self._write_sqlite(values, line_rows)
        except IntegrityError as error:
            raise BooksIntegrityError(
                f"the database refused entry {seq} of {collective.village_code}'s chain after every check "
                f"passed: {error.orig}"
            ) from error
        if written is None:
            return None
        entry_id, line_ids = written
        entry = JournalEntry(id=entry_id, **values)
        rows = []
        for row, line in zip(line_rows, lines, strict=True):
            line_row = JournalLine(id=line_ids[row["line_no"]], entry_id=entry_id, **row)
            make_transient_to_detached(line_row)
            set_committed_value(line_row, "account", line.account)  # known already: no joined load
            rows.append(line_row)
        make_transient_to_detached(entry)
        set_committed_value(entry, "lines", rows)
        self.session.add(entry)  # persistent, with its lines: they are in the database already
        set_committed_value(collective, "chain_length", seq)
        set_committed_value(collective, "chain_head", entry_hash)
        return entry

    async def _write_postgresql(
        self, values: dict[str, Any], line_rows: list[dict[str, Any]]
    ) -> tuple[int, dict[int, int]] | None:
        """Insert the entry and its lines and move the head in one statement (one round trip, all or
        nothing); (entry id, {line no: line id}), or None when the client key is taken (nothing written)."""
        # the statement binds only the columns it names: a value it does not name would be dropped silently
        assert values.keys() == set(_ENTRY_COLUMNS)
        rows = (
            await self.session.execute(
                _WRITE_POSTGRESQL,
                {**values, **{f"lines_{name}": [row[name] for row in line_rows] for name in _LINE_COLUMNS}},
            )
        ).all()
        if not rows:
            return None
        return rows[0][0], {line_no: line_id for _, line_id, line_no in rows}

    async def _write_sqlite(
        self, values: dict[str, Any], line_rows: list[dict[str, Any]]
    ) -> tuple[int, dict[int, int]] | None:
        """The same in three statements under a savepoint, which makes them all or nothing without ending the
        caller's transaction: SQLite has no data-modifying WITH, and a statement costs it no round trip."""
        async with self.session.begin_nested():
            entry_id = await self.session.scalar(_INSERT_ENTRY_SQLITE, values)
            if entry_id is None:
                return None
            rows = [{**row, "entry_id": entry_id} for row in line_rows]
            line_ids = {no: line_id for line_id, no in await self.session.execute(_INSERT_LINES, rows)}
            await self.session.execute(
                _MOVE_HEAD,
                {
                    "collective_id": values["collective_id"],
                    "new_length": values["seq"],
                    "new_head": values["hash"],
                },
            )
        return entry_id, line_ids

    # ---- reading entries ---------------------------------------------------------------------------------

    async def get_entry(self, entry_id: int) -> JournalEntry:
        entry = await self.session.scalar(
            select(JournalEntry).where(JournalEntry.id == entry_id).execution_options(populate_existing=True)
        )
        if entry is None:
            raise NotFound("凭证", "entry")
        return entry

    async def village_code_of(self, entry: JournalEntry) -> str:
        return (await self.collective_of(entry)).village_code

    async def collective_of(self, entry: JournalEntry) -> Collective:
        return (await self.session.scalars(select(Collective).where(Collective.id == entry.collective_id))).one()

    async def entries(
        self,
        collective: Collective,
        *,
        date_from: date | None,
        date_to: date | None,
        account_code: str | None,
        page: int,
        page_size: int,
    ) -> tuple[list[JournalEntry], int]:
        """A page of the collective's entries, newest first, optionally within dates and touching one account."""
        conditions: list[Any] = [JournalEntry.collective_id == collective.id]
        if date_from:
            conditions.append(JournalEntry.entry_date >= date_from)
        if date_to:
            conditions.append(JournalEntry.entry_date <= date_to)
        if account_code:
            conditions.append(
                exists()
                .where(JournalLine.entry_id == JournalEntry.id, Account.id == JournalLine.account_id)
                .where(Account.code == account_code)
            )
        total = await self.session.scalar(select(func.count()).select_from(JournalEntry).where(*conditions)) or 0
        rows = await self.session.scalars(
            select(JournalEntry)
            .where(*conditions)
            .order_by(JournalEntry.seq.desc())
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
        return list(rows), total

    async def entries_out(self, entries: Sequence[JournalEntry], village_code: str) -> list[schemas.Entry]:
        ids = [entry.id for entry in entries]
        reversed_by: dict[int, int] = {}
        if ids:
            result = await self.session.execute(
                select(JournalEntry.reverses_entry_id, JournalEntry.id).where(JournalEntry.reverses_entry_id.in_(ids))
            )
            reversed_by = {reversed_id: reversal_id for reversed_id, reversal_id in result}
        return [
            schemas.Entry(
                id=entry.id,
                village_code=village_code,
                seq=entry.seq,
                entry_date=entry.entry_date,
                memo=entry.memo,
                counterparty=entry.counterparty,
                source=entry.source,
                client_key=entry.client_key,
                reverses_entry_id=entry.reverses_entry_id,
                reversed_by_entry_id=reversed_by.get(entry.id),
                total=entry.total_fen,
                posted_by_id=entry.posted_by_id,
                posted_at=entry.posted_at,
                prev_hash=entry.prev_hash,
                hash=entry.hash,
                lines=[
                    schemas.Line(
                        line_no=line.line_no,
                        account_code=line.account.code,
                        account_name=line.account.name,
                        debit=line.debit_fen,
                        credit=line.credit_fen,
                        memo=line.memo,
                    )
                    for line in entry.lines
                ],
            )
            for entry in entries
        ]

    # ---- reports (SQL aggregates) ------------------------------------------------------------------------

    def _line_totals(self, collective: Collective, *conditions: Any) -> Any:
        """Debit and credit totals per account of the collective's lines whose entries meet the conditions."""
        return (
            select(
                JournalLine.account_id,
                _total(JournalLine.debit_fen).label("debit"),
                _total(JournalLine.credit_fen).label("credit"),
            )
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(JournalEntry.collective_id == collective.id, *conditions)
            .group_by(JournalLine.account_id)
            .subquery()
        )

    async def trial_balance(self, collective: Collective, as_of: date | None) -> schemas.TrialBalance:
        totals = self._line_totals(collective, *([JournalEntry.entry_date <= as_of] if as_of else []))
        debit, credit = func.coalesce(totals.c.debit, 0), func.coalesce(totals.c.credit, 0)
        balance = case((Account.normal_side == "debit", debit - credit), else_=credit - debit)
        rows = (
            await self.session.execute(
                select(
                    Account.code,
                    Account.name,
                    Account.type,
                    Account.normal_side,
                    cast(debit, BigInteger).label("debit"),
                    cast(credit, BigInteger).label("credit"),
                    cast(balance, BigInteger).label("balance"),
                    cast(debit - credit, BigInteger).label("net_debit"),
                )
                .outerjoin(totals, totals.c.account_id == Account.id)
                .where(Account.collective_id == collective.id)
                .order_by(Account.code)
            )
        ).all()
        total_debit = sum(row.debit for row in rows)
        total_credit = sum(row.credit for row in rows)
        debit_balances = sum(row.net_debit for row in rows if row.net_debit > 0)
        credit_balances = -sum(row.net_debit for row in rows if row.net_debit < 0)
        return schemas.TrialBalance(
            village_code=collective.village_code,
            as_of=as_of,
            accounts=[schemas.TrialBalanceRow.model_validate(row, from_attributes=True) for row in rows],
            total_debit=total_debit,
            total_credit=total_credit,
            total_debit_balance=debit_balances,
            total_credit_balance=credit_balances,
            balanced=total_debit == total_credit and debit_balances == credit_balances,
        )

    async def statement(
        self, collective: Collective, account_code: str, date_from: date | None, date_to: date | None
    ) -> schemas.AccountStatement:
        account = await self.account(collective, account_code)
        sign = 1 if account.normal_side == "debit" else -1
        signed = (JournalLine.debit_fen - JournalLine.credit_fen) * literal(sign)
        base = (
            select()
            .select_from(JournalLine)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(JournalLine.account_id == account.id)
        )
        opening = 0
        if date_from:
            opening = await self.session.scalar(
                base.add_columns(_total(signed)).where(JournalEntry.entry_date < date_from)
            ) or 0
        period: list[Any] = []
        if date_from:
            period.append(JournalEntry.entry_date >= date_from)
        if date_to:
            period.append(JournalEntry.entry_date <= date_to)
        order = (JournalEntry.entry_date, JournalEntry.seq, JournalLine.line_no)
        running = cast(func.sum(signed).over(order_by=order, rows=(None, 0)), BigInteger)
        rows = (
            await self.session.execute(
                base.add_columns(
                    JournalEntry.id.label("entry_id"),
                    JournalEntry.seq,
                    JournalEntry.entry_date,
                    JournalEntry.memo,
                    JournalLine.memo.label("line_memo"),
                    JournalLine.debit_fen.label("debit"),
                    JournalLine.credit_fen.label("credit"),
                    running.label("running"),
                )
                .where(*period)
                .order_by(*order)
            )
        ).all()
        lines = [
            schemas.StatementLine(
                entry_id=row.entry_id,
                seq=row.seq,
                entry_date=row.entry_date,
                memo=row.memo,
                line_memo=row.line_memo,
                debit=row.debit,
                credit=row.credit,
                balance=opening + row.running,
            )
            for row in rows
        ]
        total_debit, total_credit = (
            await self.session.execute(
                base.add_columns(_total(JournalLine.debit_fen), _total(JournalLine.credit_fen)).where(*period)
            )
        ).one()
        return schemas.AccountStatement(
            village_code=collective.village_code,
            account=schemas.Account.model_validate(account),
            date_from=date_from,
            date_to=date_to,
            opening_balance=opening,
            lines=lines,
            total_debit=total_debit,
            total_credit=total_credit,
            closing_balance=opening + (total_debit - total_credit) * sign,
        )

    async def income_expenditure(
        self, collective: Collective, date_from: date | None, date_to: date | None
    ) -> schemas.IncomeExpenditure:
        """Income and expense totals of the period grouped by top-level account (sub-accounts roll up)."""
        period: list[Any] = []
        if date_from:
            period.append(JournalEntry.entry_date >= date_from)
        if date_to:
            period.append(JournalEntry.entry_date <= date_to)
        totals = self._line_totals(collective, *period)
        top = aliased(Account)
        debit, credit = func.coalesce(totals.c.debit, 0), func.coalesce(totals.c.credit, 0)
        amount = _total(case((top.type == "income", credit - debit), else_=debit - credit))
        rows = (
            await self.session.execute(
                select(top.code, top.name, top.type, amount.label("amount"))
                .select_from(Account)
                .join(
                    top,
                    and_(
                        top.collective_id == Account.collective_id,
                        top.code == func.coalesce(Account.parent_code, Account.code),
                    ),
                )
                .outerjoin(totals, totals.c.account_id == Account.id)
                .where(Account.collective_id == collective.id, top.type.in_(("income", "expense")))
                .group_by(top.code, top.name, top.type)
                .order_by(top.code)
            )
        ).all()
        out = {kind: [schemas.IncomeExpenditureRow(code=r.code, name=r.name, amount=r.amount)
                      for r in rows if r.type == kind] for kind in ("income", "expense")}
        income, spent = out["income"], out["expense"]
        total_income, total_spent = sum(r.amount for r in income), sum(r.amount for r in spent)
        return schemas.IncomeExpenditure(
            village_code=collective.village_code,
            date_from=date_from,
            date_to=date_to,
            income=income,
            expenditure=spent,
            total_income=total_income,
            total_expenditure=total_spent,
            net=total_income - total_spent,
        )

    async def income_expenditure_by_period(
        self, collective: Collective, periods: Sequence[tuple[date, date]]
    ) -> list[tuple[int, int]]:
        """(total income, total expenditure) of each (first day, last day) period, as ``income_expenditure``
        totals them, in one statement for all the periods (which must not overlap: each line counts once)."""
        if not periods:
            return []
        ordered = sorted(periods)
        if any(later[0] <= earlier[1] for earlier, later in zip(ordered, ordered[1:])):
            raise ValueError(f"periods overlap: {periods}")
        top = aliased(Account)
        period = case(
            *[(JournalEntry.entry_date.between(first, last), index) for index, (first, last) in enumerate(periods)]
        ).label("period")
        amount = JournalLine.credit_fen - JournalLine.debit_fen
        rows = await self.session.execute(
            select(
                period,
                _total(case((top.type == "income", amount), else_=0)).label("income"),
                _total(case((top.type == "expense", -amount), else_=0)).label("expenditure"),
            )
            .select_from(JournalLine)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .join(Account, Account.id == JournalLine.account_id)
            .join(
                top,
                and_(
                    top.collective_id == Account.collective_id,
                    top.code == func.coalesce(Account.parent_code, Account.code),
                ),
            )
            .where(
                JournalEntry.collective_id == collective.id,
                Account.collective_id == collective.id,
                top.type.in_(("income", "expense")),
                JournalEntry.entry_date.between(min(p[0] for p in periods), max(p[1] for p in periods)),
            )
            .group_by(period)
        )
        totals = {row.period: (row.income, row.expenditure) for row in rows if row.period is not None}
        return [totals.get(index, (0, 0)) for index in range(len(periods))]

    # ---- verifying chains --------------------------------------------------------------------------------

    async def chain_links(self, collective_id: int, village_code: str) -> list[chain.ChainLink]:
        """The stored chain of a collective, read back in seq order with everything its hashes cover."""
        reversed_entry = aliased(JournalEntry)
        entries = (
            await self.session.execute(
                select(
                    JournalEntry.id,
                    JournalEntry.seq,
                    JournalEntry.entry_date,
                    JournalEntry.memo,
                    JournalEntry.counterparty,
                    JournalEntry.source,
                    reversed_entry.seq.label("reverses_seq"),
                    JournalEntry.reverses_entry_id,
                    JournalEntry.posted_at,
                    JournalEntry.total_fen,
                    JournalEntry.prev_hash,
                    JournalEntry.hash,
                )
                .outerjoin(
                    reversed_entry,
                    and_(
                        reversed_entry.id == JournalEntry.reverses_entry_id,
                        reversed_entry.collective_id == JournalEntry.collective_id,
                    ),
                )
                .where(JournalEntry.collective_id == collective_id)
                .order_by(JournalEntry.seq)
            )
        ).all()
        lines_query = select(
            JournalLine.entry_id,
            JournalLine.line_no,
            Account.code,
            Account.collective_id,
            JournalLine.debit_fen,
            JournalLine.credit_fen,
            JournalLine.memo,
        ).join(Account, Account.id == JournalLine.account_id)
        if self.session.get_bind().dialect.name == "postgresql":
            # the entries' ids as one array: the planner probes the (entry_id, line_no) index once per entry,
            # where for a join on the collective it estimated reading every village's lines as cheaper (60 ms
            # instead of 10 on ten years of sixty villages)
            ids = bindparam("entry_ids", [row.id for row in entries], type_=ARRAY(BigInteger))
            lines_query = lines_query.where(JournalLine.entry_id == any_(ids))
        else:
            lines_query = lines_query.join(JournalEntry, JournalEntry.id == JournalLine.entry_id).where(
                JournalEntry.collective_id == collective_id
            )
        lines: dict[int, list[chain.CanonicalLine]] = {}
        for row in await self.session.execute(lines_query.order_by(JournalLine.entry_id, JournalLine.line_no)):
            # a line pointing into another collective's chart must not verify, even if the code is the same
            code = row.code if row.collective_id == collective_id else f"?{row.code}"
            lines.setdefault(row.entry_id, []).append(
                chain.CanonicalLine(row.line_no, code, row.debit_fen, row.credit_fen, row.memo)
            )
        return [
            chain.ChainLink(
                entry_id=row.id,
                prev_hash=row.prev_hash,
                hash=row.hash,
                entry=chain.CanonicalEntry(
                    village_code=village_code,
                    seq=row.seq,
                    entry_date=row.entry_date,
                    memo=row.memo,
                    counterparty=row.counterparty,
                    source=row.source,
                    # a reversal pointing at an entry outside the chain cannot verify either
                    reverses_seq=row.reverses_seq if row.reverses_entry_id is None or row.reverses_seq else -1,
                    posted_at=row.posted_at,
                    total_fen=row.total_fen,
                    lines=tuple(lines.get(row.id, ())),
                ),
            )
            for row in entries
        ]

    async def published_heads(self, village_code: str | None = None) -> dict[str, tuple[int, str]]:
        """Each village's (chain length, chain head) in the latest published root (empty before the first)."""
        latest = select(func.max(LedgerRoot.id)).scalar_subquery()
        query = select(LedgerRootLeaf.village_code, LedgerRootLeaf.chain_length, LedgerRootLeaf.chain_head).where(
            LedgerRootLeaf.root_id == latest
        )
        if village_code:
            query = query.where(LedgerRootLeaf.village_code == village_code)
        return {code: (length, head) for code, length, head in await self.session.execute(query)}

    async def verify_collective(self, collective: Collective) -> chain.ChainBreak | None:
        """Re-compute the collective's chain, also against its head in the latest published root."""
        links = await self.chain_links(collective.id, collective.village_code)
        published = (await self.published_heads(collective.village_code)).get(collective.village_code)
        return chain.verify_chain(links, collective.chain_length, collective.chain_head, published)

    async def verify_all(
        self, village_code: str | None = None, progress: Callable[[int], None] | None = None
    ) -> tuple[int, list[tuple[str, chain.ChainBreak]]]:
        """Verify every collective's chain (or one village's); (chains checked, [(village code, first break)])."""
        query = select(Collective.id, Collective.village_code, Collective.chain_length, Collective.chain_head)
        if village_code:
            query = query.where(Collective.village_code == village_code)
        collectives = (await self.session.execute(query.order_by(Collective.village_code))).all()
        with_entries = set(await self.session.scalars(select(JournalEntry.collective_id).distinct()))
        published = await self.published_heads(village_code)
        broken = []
        for row in collectives:
            links = await self.chain_links(row.id, row.village_code) if row.id in with_entries else []
            failure = chain.verify_chain(links, row.chain_length, row.chain_head, published.get(row.village_code))
            if failure is not None:
                broken.append((row.village_code, failure))
            if progress:
                progress(1)
        return len(collectives), broken

    # ---- published roots ---------------------------------------------------------------------------------

    async def current_heads(self) -> list[tuple[str, int, str]]:
        """(village code, chain length, chain head) of every collective, in village-code order."""
        rows = await self.session.execute(
            select(Collective.village_code, Collective.chain_length, Collective.chain_head).order_by(
                Collective.village_code
            )
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]

    @staticmethod
    def root_of(heads: Sequence[tuple[str, int, str]]) -> str:
        return chain.merkle_root([chain.leaf_bytes(*head) for head in heads]).hex()

    async def publish_root(self) -> LedgerRoot:
        """Roll every chain head into an RFC 6962 root and keep it with its leaves (one set-based insert), all
        from the same read of the heads."""
        heads = await self.current_heads()
        root = LedgerRoot(published_at=datetime.now(UTC), tree_size=len(heads), root_hash=self.root_of(heads))
        self.session.add(root)
        await self.session.flush()
        if heads:
            await self.session.execute(
                insert(LedgerRootLeaf.__table__),
                [
                    {"root_id": root.id, "leaf_index": index, "village_code": code, "chain_length": length,
                     "chain_head": head}
                    for index, (code, length, head) in enumerate(heads)
                ],
            )
        return root

    async def latest_root(self) -> LedgerRoot:
        root = await self.session.scalar(select(LedgerRoot).order_by(LedgerRoot.id.desc()).limit(1))
        if root is None:
            raise NotFound("已发布的根哈希", "published root")
        return root

    async def roots(self, page: int, page_size: int) -> tuple[list[LedgerRoot], int]:
        total = await self.session.scalar(select(func.count()).select_from(LedgerRoot)) or 0
        rows = await self.session.scalars(
            select(LedgerRoot).order_by(LedgerRoot.id.desc()).offset((page - 1) * page_size).limit(page_size)
        )
        return list(rows), total

    async def proof(self, village_code: str) -> schemas.InclusionProof:
        """The village's leaf in the latest published root, with its audit path."""
        root = await self.latest_root()
        leaves = (
            await self.session.execute(
                select(LedgerRootLeaf.village_code, LedgerRootLeaf.chain_length, LedgerRootLeaf.chain_head)
                .where(LedgerRootLeaf.root_id == root.id)
                .order_by(LedgerRootLeaf.leaf_index)
            )
        ).all()
        encoded = [chain.leaf_bytes(*leaf) for leaf in leaves]
        index = next((i for i, leaf in enumerate(leaves) if leaf.village_code == village_code), None)
        if index is None:
            raise NotFound("该村在已发布根中的叶子", "this village's leaf in the published root")
        return schemas.InclusionProof(
            root=schemas.LedgerRoot.model_validate(root),
            village_code=village_code,
            leaf_index=index,
            chain_length=leaves[index].chain_length,
            chain_head=leaves[index].chain_head,
            leaf=encoded[index].hex(),
            leaf_hash=chain.leaf_hash(encoded[index]).hex(),
            audit_path=[node.hex() for node in chain.inclusion_proof(index, encoded)],
        )
