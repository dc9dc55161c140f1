"""Writes a validated plan in bulk, inside the caller's transaction.

Rows go in with Core ``INSERT ... RETURNING`` over many parameter sets (SQLAlchemy's insertmanyvalues: batched
multi-row statements on PostgreSQL and SQLite), as the scenario generator writes. Historical trades are
written as recorded, straight into the auction tables: no live bidding path, no scheduler, no events. Book
entries are hashed onto each village's chain with the ledger's canonical encoding (:mod:`sanzi.ledger.chain`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Bid, Listing, ListingAsset, ListingEvent, Registration
from sanzi.interchange.models import ImportKey
from sanzi.interchange.validation import Plan, Record
from sanzi.ledger import chain
from sanzi.ledger.models import (
    Asset,
    AssetStatusChange,
    Contract,
    ContractInstallment,
    ContractReceipt,
    JournalEntry,
    JournalLine,
    PriceBasis,
)
from sanzi.ledger.schemas.contracts import PaymentFrequency
from sanzi.ledger.services.contracts import StepUpTerm, build_schedule, contract_end
from sanzi.platform.models import Bidder, Cadre, CadreRelative, Candidate, Collective, Election, User

CHUNK = 5000
IMPORT_NOTE = "历史数据导入"


class Loader:
    """One load of one plan; ``kinds`` are the kinds that may be written (all of them unless per file)."""

    def __init__(
        self,
        session: AsyncSession,
        plan: Plan,
        kinds: set[str],
        actor_id: int | None = None,
        progress: Callable[[str, int], None] | None = None,
    ) -> None:
        self.session = session
        self.plan = plan
        self.kinds = kinds
        self.actor_id = actor_id
        self.progress = progress or (lambda kind, n: None)
        self.now = datetime.now(UTC)
        self.written: dict[str, int] = {}

    def pending(self, kind: str) -> list[Record]:
        if kind not in self.kinds:
            return []
        return [r for r in self.plan.records.get(kind, {}).values() if r.state == "new"]

    def linked(self, kind: str) -> list[Record]:
        if kind not in self.kinds:
            return []
        return [r for r in self.plan.records.get(kind, {}).values() if r.state == "link"]

    def target(self, kind: str, source_id: str | None) -> int | None:
        return None if source_id is None else self.plan.target(kind, source_id)

    async def insert(self, table: Table, rows: list[dict[str, Any]], kind: str | None = None) -> list[int]:
        """Insert rows in chunks and return their ids in order (advancing ``kind``'s progress per chunk)."""
        ids: list[int] = []
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            ids.extend((await self.session.execute(statement, chunk)).scalars())
            if kind:
                self.progress(kind, len(chunk))
        return ids

    async def insert_plain(self, table: Table, rows: list[dict[str, Any]]) -> None:
        for start in range(0, len(rows), CHUNK):
            await self.session.execute(insert(table), rows[start : start + CHUNK])

    async def put(
        self, kind: str, table: Table, records: list[Record], row: Callable[[Record], dict[str, Any]]
    ) -> None:
        """Insert one row per record and remember the ids they got."""
        ids = await self.insert(table, [row(record) for record in records], kind)
        for record, new_id in zip(records, ids, strict=True):
            record.target_id = new_id
        self.written[kind] = len(records)

    async def run(self) -> dict[str, int]:
        await self.cadres()
        await self.elections()
        await self.assets()
        await self.bidders()
        await self.listings()
        await self.contracts()
        await self.book_entries()
        await self.keys()
        return self.written

    # ---- people --------------------------------------------------------------------------------------------

    async def cadres(self) -> None:
        await self.put(
            "cadres",
            Cadre.__table__,
            self.pending("cadres"),
            lambda r: {
                key: r.values[key]
                for key in (
                    "village_code",
                    "name",
                    "id_number",
                    "phone",
                    "body",
                    "position",
                    "term_start",
                    "term_end",
                )
            },
        )
        await self.put(
            "cadre_relatives",
            CadreRelative.__table__,
            self.pending("cadre_relatives"),
            lambda r: {
                "cadre_id": self.target("cadres", r.values["cadre_id"]),
                "name": r.values["name"],
                "id_number": r.values["id_number"],
                "relation": r.values["relation"],
            },
        )

    async def elections(self) -> None:
        await self.put(
            "elections",
            Election.__table__,
            self.pending("elections"),
            lambda r: {
                "village_code": r.values["village_code"],
                "election_date": r.values["election_date"],
                "note": r.values["note"],
            },
        )
        await self.put(
            "candidates",
            Candidate.__table__,
            self.pending("candidates"),
            lambda r: {
                "election_id": self.target("elections", r.values["election_id"]),
                "name": r.values["name"],
                "id_number": r.values["id_number"],
                "position": r.values["position"],
            },
        )

    async def bidders(self) -> None:
        records = self.pending("bidders")
        # each imported bidder gets an account that cannot log in until an admin sets a password
        user_ids = await self.insert(
            User.__table__,
            [
                {
                    "username": f"bidder-{r.values['id_number'].lower()}",
                    "password_hash": "!",
                    "display_name": r.values["name"][:64],
                    "role": "bidder",
                    "phone": r.values["phone"],
                    "is_active": True,
                    "session_epoch": 0,
                }
                for r in records
            ],
        )
        users = dict(zip((r.id for r in records), user_ids, strict=True))
        await self.put(
            "bidders",
            Bidder.__table__,
            records,
            lambda r: {
                "user_id": users[r.id],
                **{
                    key: r.values[key]
                    for key in (
                        "kind",
                        "name",
                        "id_number",
                        "legal_representative",
                        "phone",
                        "address",
                        "bank_name",
                        "bank_account",
                    )
                },
            },
        )

    # ---- assets and trades ---------------------------------------------------------------------------------

    async def assets(self) -> None:
        records = self.pending("assets")
        await self.put(
            "assets",
            Asset.__table__,
            records,
            lambda r: {
                "collective_id": self.plan.collectives[r.values["village_code"]],
                **{
                    key: r.values[key]
                    for key in (
                        "village_code",
                        "code",
                        "name",
                        "kind",
                        "area",
                        "area_unit",
                        "location",
                        "book_value_fen",
                        "appraisal_fen",
                        "appraised_on",
                        "status",
                        "description",
                    )
                },
            },
        )
        await self.insert_plain(
            AssetStatusChange.__table__,
            [
                {
                    "asset_id": r.target_id,
                    "from_status": None,
                    "to_status": r.values["status"],
                    "reason": IMPORT_NOTE,
                    "changed_by_id": self.actor_id,
                    "changed_at": self.now,
                }
                for r in records
            ],
        )

    async def listings(self) -> None:
        listings = self.pending("listings")
        bids = self.pending("bids")
        bid_stats: dict[str, tuple[int, int]] = {}
        for bid in bids:
            count, top = bid_stats.get(bid.values["listing_id"], (0, 0))
            bid_stats[bid.values["listing_id"]] = (count + 1, max(top, bid.values["amount_fen"]))

        def listing_row(r: Record) -> dict[str, Any]:
            v = r.values
            count, top = bid_stats.get(r.id, (0, 0))
            return {
                "collective_id": self.plan.collectives[v["village_code"]],
                "status": v["status"],
                "lock_version": 0,
                "extensions_used": 0,
                "extension_minutes": 5,
                "max_extensions": 0,
                "bid_count": count,
                "current_price_fen": v["final_price_fen"] or top or None,
                "current_end_at": v["closed_at"],
                **{
                    key: v[key]
                    for key in (
                        "village_code",
                        "number",
                        "title",
                        "trade_type",
                        "term_months",
                        "price_basis",
                        "area",
                        "starting_price_fen",
                        "reserve_price_fen",
                        "min_increment_fen",
                        "max_increment_fen",
                        "deposit_fen",
                        "performance_bond_fen",
                        "announcement_days",
                        "announced_at",
                        "registration_deadline",
                        "bidding_starts_at",
                        "bidding_ends_at",
                        "closed_at",
                        "status_reason",
                        "final_price_fen",
                        "resolution_meeting_date",
                        "resolution_present",
                        "resolution_votes_for",
                        "resolution_votes_against",
                    )
                },
            }

        await self.put("listings", Listing.__table__, listings, listing_row)
        await self.insert_plain(
            ListingAsset.__table__,
            [
                {"listing_id": r.target_id, "asset_id": self.target("assets", asset_id)}
                for r in listings
                for asset_id in dict.fromkeys(r.values["asset_ids"])
            ],
        )
        await self.insert_plain(
            ListingEvent.__table__,
            [
                {
                    "listing_id": r.target_id,
                    "from_status": None,
                    "to_status": r.values["status"],
                    "actor_id": self.actor_id,
                    "at": r.values["closed_at"] or r.values["announced_at"],
                    "note": f"{IMPORT_NOTE}（原系统编号 {r.id}）"[:1000],
                }
                for r in listings
            ],
        )
        await self.put(
            "applicants",
            Registration.__table__,
            self.pending("applicants"),
            lambda r: {
                "listing_id": self.target("listings", r.values["listing_id"]),
                "bidder_id": self.target("bidders", r.values["bidder_id"]),
                **{
                    key: r.values[key]
                    for key in (
                        "bidder_number",
                        "status",
                        "contact_phone",
                        "contact_address",
                        "applied_ip",
                        "applied_device",
                        "deposit_state",
                        "deposit_payer_name",
                        "deposit_payer_account",
                        "deposit_paid_at",
                    )
                },
            },
        )
        await self.put(
            "bids",
            Bid.__table__,
            bids,
            lambda r: {
                "listing_id": self.target("listings", r.values["listing_id"]),
                "registration_id": self.target("applicants", r.values["applicant_id"]),
                "seq": r.values["seq"],
                "amount_fen": r.values["amount_fen"],
                "placed_at": r.values["placed_at"],
                "client_key": "import:" + hashlib.sha256(r.id.encode()).hexdigest()[:40],
                "ip_address": r.values["ip_address"],
                "device_fingerprint": r.values["device_fingerprint"],
            },
        )
        winners = [
            {"lid": r.target_id, "winner": self.target("applicants", r.values["winner_applicant_id"])}
            for r in listings
            if r.values["winner_applicant_id"]
        ]
        if winners:
            table = Listing.__table__
            await self.session.execute(
                update(table)
                .where(table.c.id == bindparam("lid"))
                .values(
                    winner_registration_id=bindparam("winner"), leading_registration_id=bindparam("winner")
                ),
                winners,
            )

    async def contracts(self) -> None:
        records = self.pending("contracts")
        schedules: dict[str, list[Any]] = {}
        for r in records:
            v = r.values
            steps = [StepUpTerm(step["from_year"], Decimal(step["percent"])) for step in v["step_ups"]]
            schedules[r.id] = build_schedule(
                v["start_date"],
                v["term_months"],
                PriceBasis(v["price_basis"]),
                v["unit_price_fen"],
                PaymentFrequency(v["payment_frequency"]),
                v["area"],
                steps,
            )

        def contract_row(r: Record) -> dict[str, Any]:
            v = r.values
            return {
                "collective_id": self.plan.collectives[v["village_code"]],
                "asset_id": self.target("assets", v["asset_id"]),
                "counterparty_bidder_id": self.target("bidders", v["counterparty_bidder_id"]),
                "listing_id": self.target("listings", v["listing_id"]),
                "end_date": contract_end(v["start_date"], v["term_months"]),
                "total_value_fen": sum(item.amount_fen for item in schedules[r.id]),
                "created_by_id": self.actor_id,
                **{
                    key: v[key]
                    for key in (
                        "village_code",
                        "number",
                        "trade_type",
                        "counterparty_name",
                        "counterparty_id_number",
                        "start_date",
                        "term_months",
                        "price_basis",
                        "unit_price_fen",
                        "area",
                        "step_ups",
                        "payment_frequency",
                        "origin",
                        "origin_reason",
                        "signed_on",
                        "status",
                    )
                },
            }

        await self.put("contracts", Contract.__table__, records, contract_row)
        await self.insert_plain(
            ContractInstallment.__table__,
            [
                {
                    "contract_id": r.target_id,
                    "seq": item.seq,
                    "period_start": item.period_start,
                    "period_end": item.period_end,
                    "due_date": item.due_date,
                    "amount_fen": item.amount_fen,
                }
                for r in records
                for item in schedules[r.id]
            ],
        )
        links = [
            {"lid": self.target("listings", r.values["listing_id"]), "cid": r.target_id}
            for r in records
            if r.values["listing_id"]
        ]
        if links:
            table = Listing.__table__
            await self.session.execute(
                update(table).where(table.c.id == bindparam("lid")).values(contract_id=bindparam("cid")),
                links,
            )

    # ---- books ---------------------------------------------------------------------------------------------

    async def book_entries(self) -> None:
        records = self.pending("book_entries")
        by_village: dict[str, list[Record]] = {}
        for record in records:
            by_village.setdefault(record.values["village_code"], []).append(record)
        earlier_reversed = [
            self.target("book_entries", r.values["reverses_id"])
            for r in records
            if r.values["reverses_id"] and r.values["reverses_id"] not in self.plan.records["book_entries"]
        ]
        seq_of_id: dict[int, int] = {}
        if earlier_reversed:
            seq_of_id = dict(
                (
                    await self.session.execute(
                        select(JournalEntry.id, JournalEntry.seq).where(JournalEntry.id.in_(earlier_reversed))
                    )
                ).all()
            )
        entry_table, collective_table = JournalEntry.__table__, Collective.__table__
        for village, entries in sorted(by_village.items()):
            collective_id = self.plan.collectives[village]
            accounts = self.plan.accounts[collective_id]
            entries.sort(key=lambda r: (r.values["entry_date"], r.line))
            # claim the next len(entries) seqs of the chain under the collective's row (or write) lock,
            # as BooksService claims one
            length, head = (
                await self.session.execute(
                    update(collective_table)
                    .where(collective_table.c.id == collective_id)
                    .values(chain_length=collective_table.c.chain_length + len(entries))
                    .returning(collective_table.c.chain_length, collective_table.c.chain_head)
                )
            ).one()
            seq = length - len(entries)
            seq_of: dict[str, int] = {}
            rows = []
            for record in entries:
                seq += 1
                seq_of[record.id] = seq
                v = record.values
                reverses = v["reverses_id"]
                reverses_seq = None
                if reverses:
                    reverses_seq = seq_of.get(reverses) or seq_of_id.get(
                        self.target("book_entries", reverses) or 0
                    )
                total = sum(item["debit_fen"] for item in record.lines)
                canonical = chain.CanonicalEntry(
                    village_code=village,
                    seq=seq,
                    entry_date=v["entry_date"],
                    memo=v["memo"],
                    counterparty=v["counterparty"],
                    source=v["source"],
                    reverses_seq=reverses_seq,
                    posted_at=self.now,
                    total_fen=total,
                    lines=tuple(
                        chain.CanonicalLine(
                            item["line_no"],
                            item["account_code"],
                            item["debit_fen"],
                            item["credit_fen"],
                            item["line_memo"],
                        )
                        for item in record.lines
                    ),
                )
                new_head = chain.entry_hash(head, chain.canonical_bytes(canonical))
                rows.append(
                    {
                        "collective_id": collective_id,
                        "seq": seq,
                        "entry_date": v["entry_date"],
                        "memo": v["memo"],
                        "counterparty": v["counterparty"],
                        "source": v["source"],
                        "client_key": None,
                        "request_hash": None,
                        "reverses_entry_id": None,
                        "total_fen": total,
                        "posted_by_id": self.actor_id,
                        "posted_at": self.now,
                        "prev_hash": head,
                        "hash": new_head,
                    }
                )
                head = new_head
            ids = await self.insert(entry_table, rows)
            for record, new_id in zip(entries, ids, strict=True):
                record.target_id = new_id
            await self.insert_plain(
                JournalLine.__table__,
                [
                    {
                        "entry_id": record.target_id,
                        "line_no": item["line_no"],
                        "account_id": accounts[item["account_code"]][0],
                        "debit_fen": item["debit_fen"],
                        "credit_fen": item["credit_fen"],
                        "memo": item["line_memo"],
                    }
                    for record in entries
                    for item in record.lines
                ],
            )
            await self.insert_plain(
                ContractReceipt.__table__,
                [
                    {
                        "contract_id": self.target("contracts", record.values["contract_id"]),
                        "entry_id": record.target_id,
                        "amount_fen": sum(item["debit_fen"] for item in record.lines),
                        "received_on": record.values["entry_date"],
                        "created_at": self.now,
                    }
                    for record in entries
                    if record.values["contract_id"]
                ],
            )
            reversals = [
                {"eid": r.target_id, "rev": self.target("book_entries", r.values["reverses_id"])}
                for r in entries
                if r.values["reverses_id"]
            ]
            if reversals:
                await self.session.execute(
                    update(entry_table)
                    .where(entry_table.c.id == bindparam("eid"))
                    .values(reverses_entry_id=bindparam("rev")),
                    reversals,
                )
            await self.session.execute(
                update(collective_table).where(collective_table.c.id == collective_id).values(chain_head=head)
            )
            self.progress("book_entries", len(entries))
        self.written["book_entries"] = len(records)

    async def keys(self) -> None:
        rows = [
            {
                "kind": record.kind,
                "source_id": record.id,
                "target_id": record.target_id,
                "content_hash": record.content_hash,
                "imported_at": self.now,
            }
            for kind in self.kinds
            for record in self.plan.records.get(kind, {}).values()
            if record.state in ("new", "link")
        ]
        await self.insert_plain(ImportKey.__table__, rows)


async def import_sources(
    session: AsyncSession,
    sources: list[Any],
    *,
    today: Any,
    dry_run: bool = False,
    per_file: bool = False,
    actor_id: int | None = None,
    progress: Callable[[str, int], None] | None = None,
    stage: Callable[..., None] | None = None,
) -> tuple[Plan, dict[str, int]]:
    """Validate everything, then (unless a dry run) write it: all of it when nothing is wrong, or with
    ``per_file`` the files without problems whose references do not lead into a file with problems."""
    from sanzi.interchange.validation import resolve_per_file, validate

    plan = await validate(session, sources, today, stage)
    if dry_run:
        return plan, {}
    if plan.valid:
        kinds = set(plan.records)
    elif per_file:
        kinds = resolve_per_file(plan)
    else:
        return plan, {}
    if stage:
        stage("loading", sum(1 for kind in kinds for r in plan.records[kind].values() if r.state == "new"))
    written = await Loader(session, plan, kinds, actor_id, progress).run()
    for report in plan.files.values():
        report.loaded = report.kind in kinds
    return plan, written
