"""Writes the platform's records back in the interchange format, so an import of an export reproduces them.

A row that came from an import is exported under its source id; any other row under ``db-<its id>``. Rows are
written in the order they were made (book entries by village, date and chain position), so exporting an
import of an export gives the same files byte for byte. Only finished trades are exported: listings still
announced or bidding live on the platform.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Bid, Listing, ListingAsset, Registration
from sanzi.interchange import format as fmt
from sanzi.interchange.models import ImportKey
from sanzi.interchange.validation import ZONE, parse_step_ups
from sanzi.ledger.models import Account, Asset, Contract, ContractReceipt, JournalEntry, JournalLine
from sanzi.platform.models import Bidder, Cadre, CadreRelative, Candidate, Collective, Election

FINISHED = ("sold", "failed", "terminated")


@dataclass(frozen=True)
class ExportFilter:
    village: str | None = None
    since: date | None = None

    @property
    def since_moment(self) -> datetime | None:
        return datetime.combine(self.since, time(), ZONE).astimezone(UTC) if self.since else None


def text(value: Any) -> str:
    """A value as the format writes it."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(ZONE).isoformat()
    if isinstance(value, Decimal):
        return f"{value.quantize(Decimal('0.01'))}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Exporter:
    def __init__(self, session: AsyncSession, scope: ExportFilter) -> None:
        self.session = session
        self.scope = scope
        self.ids: dict[tuple[str, int], str] = {}

    async def load_ids(self) -> None:
        for kind, source_id, target_id in await self.session.execute(
            select(ImportKey.kind, ImportKey.source_id, ImportKey.target_id).order_by(ImportKey.id)
        ):
            self.ids.setdefault((kind, target_id), source_id)

    def ref(self, kind: str, row_id: int | None) -> str:
        if row_id is None:
            return ""
        return self.ids.get((kind, row_id)) or f"db-{row_id}"

    def village(self, statement: Select[Any], column: Any) -> Select[Any]:
        return statement.where(column == self.scope.village) if self.scope.village else statement

    async def rows(self, statement: Select[Any]) -> list[Any]:
        return list((await self.session.execute(statement)).all())

    async def export(self) -> dict[str, list[dict[str, str]]]:
        """Every kind's records, as column -> text."""
        await self.load_ids()
        out: dict[str, list[dict[str, str]]] = {}
        since, since_moment = self.scope.since, self.scope.since_moment

        cadres = select(Cadre.__table__).order_by(Cadre.id)
        if since:
            cadres = cadres.where(or_(Cadre.term_end.is_(None), Cadre.term_end >= since))
        cadre_rows = [row for row in await self.rows(self.village(cadres, Cadre.village_code))]
        out["cadres"] = [
            self.record(
                "cadres",
                c.id,
                c,
                ("village_code", "name", "id_number", "phone", "body", "position", "term_start", "term_end"),
            )
            for c in cadre_rows
        ]
        cadre_ids = {c.id for c in cadre_rows}
        relatives = await self.rows(select(CadreRelative.__table__).order_by(CadreRelative.id))
        out["cadre_relatives"] = [
            {
                **self.record("cadre_relatives", r.id, r, ("name", "id_number", "relation")),
                "cadre_id": self.ref("cadres", r.cadre_id),
            }
            for r in relatives
            if r.cadre_id in cadre_ids
        ]
        elections = select(Election.__table__).order_by(Election.id)
        if since:
            elections = elections.where(Election.election_date >= since)
        election_rows = [row for row in await self.rows(self.village(elections, Election.village_code))]
        out["elections"] = [
            self.record("elections", e.id, e, ("village_code", "election_date", "note"))
            for e in election_rows
        ]
        election_ids = {e.id for e in election_rows}
        out["candidates"] = [
            {
                **self.record("candidates", c.id, c, ("name", "id_number", "position")),
                "election_id": self.ref("elections", c.election_id),
            }
            for c in await self.rows(select(Candidate.__table__).order_by(Candidate.id))
            if c.election_id in election_ids
        ]
        assets = [
            row
            for row in await self.rows(
                self.village(select(Asset.__table__).order_by(Asset.id), Asset.village_code)
            )
        ]
        out["assets"] = [
            self.record(
                "assets",
                a.id,
                a,
                (
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
                ),
            )
            for a in assets
        ]

        listings = select(Listing.__table__).where(Listing.status.in_(FINISHED)).order_by(Listing.id)
        if since_moment:
            listings = listings.where(Listing.announced_at >= since_moment)
        listing_rows = [row for row in await self.rows(self.village(listings, Listing.village_code))]
        listing_ids = [item.id for item in listing_rows]
        assets_of: dict[int, list[str]] = {}
        for listing_id, asset_id in await self.rows(
            select(ListingAsset.listing_id, ListingAsset.asset_id).order_by(ListingAsset.id)
        ):
            assets_of.setdefault(listing_id, []).append(self.ref("assets", asset_id))
        out["listings"] = [
            {
                **self.record(
                    "listings",
                    item.id,
                    item,
                    (
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
                        "status",
                        "status_reason",
                        "final_price_fen",
                        "resolution_meeting_date",
                        "resolution_present",
                        "resolution_votes_for",
                        "resolution_votes_against",
                    ),
                ),
                "asset_ids": ";".join(assets_of.get(item.id, [])),
                "winner_applicant_id": self.ref("applicants", item.winner_registration_id),
            }
            for item in listing_rows
        ]
        wanted = set(listing_ids)
        registrations = [
            r
            for r in await self.rows(select(Registration.__table__).order_by(Registration.id))
            if r.listing_id in wanted
        ]
        out["applicants"] = [
            {
                **self.record(
                    "applicants",
                    r.id,
                    r,
                    (
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
                    ),
                ),
                "listing_id": self.ref("listings", r.listing_id),
                "bidder_id": self.ref("bidders", r.bidder_id),
            }
            for r in registrations
        ]
        bids = [
            b
            for b in await self.rows(select(Bid.__table__).order_by(Bid.listing_id, Bid.seq))
            if b.listing_id in wanted
        ]
        out["bids"] = [
            {
                **self.record(
                    "bids", b.id, b, ("seq", "amount_fen", "placed_at", "ip_address", "device_fingerprint")
                ),
                "listing_id": self.ref("listings", b.listing_id),
                "applicant_id": self.ref("applicants", b.registration_id),
            }
            for b in bids
        ]

        contracts = select(Contract.__table__).order_by(Contract.id)
        if since:
            contracts = contracts.where(Contract.signed_on >= since)
        contract_rows = [row for row in await self.rows(self.village(contracts, Contract.village_code))]
        out["contracts"] = [
            {
                **self.record(
                    "contracts",
                    c.id,
                    c,
                    (
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
                        "payment_frequency",
                        "origin",
                        "origin_reason",
                        "signed_on",
                        "status",
                    ),
                ),
                "asset_id": self.ref("assets", c.asset_id),
                "counterparty_bidder_id": self.ref("bidders", c.counterparty_bidder_id),
                "listing_id": self.ref("listings", c.listing_id),
                "step_ups": json.dumps(
                    parse_step_ups(json.dumps(c.step_ups or [])), ensure_ascii=False, separators=(",", ":")
                ),
            }
            for c in contract_rows
        ]

        referenced = {r.bidder_id for r in registrations} | {
            c.counterparty_bidder_id for c in contract_rows if c.counterparty_bidder_id
        }
        bidders = [
            b
            for b in await self.rows(select(Bidder.__table__).order_by(Bidder.id))
            if (not self.scope.village and not since) or b.id in referenced
        ]
        out["bidders"] = [
            self.record(
                "bidders",
                b.id,
                b,
                (
                    "kind",
                    "name",
                    "id_number",
                    "legal_representative",
                    "phone",
                    "address",
                    "bank_name",
                    "bank_account",
                ),
            )
            for b in bidders
        ]
        out["book_entries"] = await self.book_entries()
        return out

    def record(self, kind: str, row_id: int, row: Any, columns: tuple[str, ...]) -> dict[str, str]:
        return {"id": self.ref(kind, row_id), **{name: text(getattr(row, name)) for name in columns}}

    async def book_entries(self) -> list[dict[str, str]]:
        receipts = dict(
            (await self.session.execute(select(ContractReceipt.entry_id, ContractReceipt.contract_id))).all()
        )
        statement = (
            select(
                JournalEntry.id,
                JournalEntry.entry_date,
                JournalEntry.memo,
                JournalEntry.counterparty,
                JournalEntry.source,
                JournalEntry.reverses_entry_id,
                Collective.village_code,
                JournalLine.line_no,
                JournalLine.debit_fen,
                JournalLine.credit_fen,
                JournalLine.memo.label("line_memo"),
                Account.code,
                Account.category,
            )
            .join(Collective, Collective.id == JournalEntry.collective_id)
            .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
            .join(Account, Account.id == JournalLine.account_id)
            .order_by(Collective.village_code, JournalEntry.entry_date, JournalEntry.seq, JournalLine.line_no)
        )
        if self.scope.village:
            statement = statement.where(Collective.village_code == self.scope.village)
        if self.scope.since:
            statement = statement.where(JournalEntry.entry_date >= self.scope.since)
        out = []
        for row in await self.rows(statement):
            out.append(
                {
                    "id": self.ref("book_entries", row.id),
                    "village_code": row.village_code,
                    "entry_date": text(row.entry_date),
                    "memo": row.memo,
                    "counterparty": text(row.counterparty),
                    "source": row.source,
                    "contract_id": self.ref("contracts", receipts.get(row.id)),
                    "reverses_id": self.ref("book_entries", row.reverses_entry_id),
                    "line_no": text(row.line_no),
                    "account_code": row.code,
                    "category": text(row.category),
                    "debit_fen": text(row.debit_fen),
                    "credit_fen": text(row.credit_fen),
                    "line_memo": text(row.line_memo),
                }
            )
        return out


def write_files(
    directory: Path, records: dict[str, list[dict[str, str]]], scope: ExportFilter, as_jsonl: bool = False
) -> dict[str, int]:
    """Write the manifest and one file per kind (every kind, even when empty); rows written per file."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "village": scope.village,
        "since": scope.since.isoformat() if scope.since else None,
    }
    (directory / fmt.MANIFEST).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    counts = {}
    for spec in fmt.SPECS:
        rows = records.get(spec.kind, [])
        if as_jsonl:
            body = "".join(
                json.dumps(
                    {name: row.get(name, "") or None for name in spec.column_names}, ensure_ascii=False
                )
                + "\n"
                for row in rows
            )
            (directory / f"{spec.kind}.jsonl").write_text(body, encoding="utf-8")
        else:
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(spec.column_names)
            writer.writerows([row.get(name, "") for name in spec.column_names] for row in rows)
            (directory / f"{spec.kind}.csv").write_text(buffer.getvalue(), encoding="utf-8")
        counts[spec.kind] = len(rows)
    return counts


async def export_records(session: AsyncSession, scope: ExportFilter) -> dict[str, list[dict[str, str]]]:
    return await Exporter(session, scope).export()
