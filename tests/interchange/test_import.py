"""Importing a city's records: all checked first, written as recorded, idempotent, nothing half-written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Bid, Listing, Registration
from sanzi.interchange.loader import import_sources
from sanzi.interchange.validation import ZONE, Plan, Source
from sanzi.ledger.models import Contract, ContractInstallment, ContractReceipt, JournalEntry
from sanzi.ledger.services.books import BooksService
from sanzi.platform.models import Bidder, Collective
from tests.conftest import VILLAGE_A
from tests.interchange.dataset import csv_text, person_id, records, sources, table_counts


def today() -> date:
    return datetime.now(ZONE).date()


async def run(db: AsyncSession, items: list[Source], **options: Any) -> tuple[Plan, dict[str, int]]:
    return await import_sources(db, items, today=today(), **options)


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {table: after[table] - before[table] for table in before if after[table] != before[table]}


async def test_a_valid_import_is_written_as_recorded_and_a_second_run_changes_nothing(
    db: AsyncSession,
) -> None:
    before = await table_counts(db)
    plan, written = await run(db, sources(records(), jsonl=("bidders", "bids")))
    assert plan.valid, [str(p) for p in plan.problems]
    after = await table_counts(db)
    assert delta(before, after) == {
        "cadre": 2,
        "cadre_relative": 1,
        "election": 1,
        "candidate": 1,
        "asset": 2,
        "asset_status_change": 2,
        "user_account": 2,
        "bidder": 2,
        "listing": 1,
        "listing_asset": 1,
        "listing_event": 1,
        "registration": 2,
        "bid": 3,
        "contract": 2,
        "contract_installment": 5 + 12,
        "contract_receipt": 2,
        "journal_entry": 3,
        "journal_line": 6,
        "import_key": 20,
    }
    assert written["bids"] == 3 and written["book_entries"] == 3

    # the historical trade as it happened: its times, bids and result, outside the live bidding path
    listing = await db.scalar(select(Listing).where(Listing.number == "OLD-JY-2019-01"))
    assert listing is not None and listing.status == "sold" and listing.final_price_fen == 215_000
    assert listing.bid_count == 3 and listing.current_price_fen == 215_000
    assert listing.closed_at == datetime(2019, 3, 13, 3, 0, tzinfo=UTC)
    winner = await db.get(Registration, listing.winner_registration_id)
    bidder = await db.get(Bidder, winner.bidder_id) if winner else None
    assert bidder is not None and bidder.name == "广州禾丰水产有限公司"
    bids = (
        await db.execute(
            select(Bid.seq, Bid.amount_fen, Bid.placed_at)
            .where(Bid.listing_id == listing.id)
            .order_by(Bid.seq)
        )
    ).all()
    assert [(s, a) for s, a, _ in bids] == [(1, 200_000), (2, 210_000), (3, 215_000)]
    assert bids[0][2] == datetime(2019, 3, 13, 1, 5, tzinfo=UTC)
    contract = await db.scalar(select(Contract).where(Contract.number == "OLD-HT-01"))
    assert contract is not None and contract.listing_id == listing.id and listing.contract_id == contract.id

    # the direct contract's schedule is the platform's: 5 years at 100,000 yuan, then 7 at +5 %
    direct = await db.scalar(select(Contract).where(Contract.number == "OLD-HT-02"))
    assert (
        direct is not None
        and direct.origin == "direct"
        and direct.total_value_fen == 5 * 10_000_000 + 7 * 10_500_000
    )
    amounts = list(
        await db.scalars(
            select(ContractInstallment.amount_fen)
            .where(ContractInstallment.contract_id == direct.id)
            .order_by(ContractInstallment.seq)
        )
    )
    assert amounts[4:6] == [10_000_000, 10_500_000]
    receipts = await db.scalar(
        select(ContractReceipt.amount_fen).where(ContractReceipt.contract_id == direct.id)
    )
    assert receipts == 10_000_000

    # the entries joined the village's chain in date order, and the chain verifies
    collective = await db.scalar(select(Collective).where(Collective.village_code == VILLAGE_A))
    assert collective is not None
    await db.refresh(collective)
    memos = list(
        await db.scalars(
            select(JournalEntry.memo)
            .where(JournalEntry.collective_id == collective.id, JournalEntry.source == "import")
            .order_by(JournalEntry.seq)
        )
    )
    assert memos == ["收取鱼塘承包款", "接待费", "收取商铺租金"]
    assert await BooksService(db).verify_collective(collective) is None

    again, written_again = await run(db, sources(records()))
    assert again.valid and sum(written_again.values()) == 0
    assert {report.file: (report.new, report.unchanged) for report in again.files.values()}["bids.csv"] == (
        0,
        3,
    )
    assert await table_counts(db) == after


async def test_a_dry_run_checks_everything_and_writes_nothing(db: AsyncSession) -> None:
    before = await table_counts(db)
    plan, written = await run(db, sources(records()), dry_run=True)
    assert plan.valid and written == {}
    assert sum(report.new for report in plan.files.values()) == 20
    assert await table_counts(db) == before


def _replace(kind: str, index: int, **values: Any) -> Callable[[dict[str, list[dict[str, Any]]]], None]:
    def change(data: dict[str, list[dict[str, Any]]]) -> None:
        data[kind][index].update(values)

    return change


def _duplicate_asset(data: dict[str, list[dict[str, Any]]]) -> None:
    data["assets"].append({**data["assets"][0], "name": "另一个鱼塘"})


# (what is wrong, how to break the input, file bytes used instead, (file, line, field), words of the message)
BAD_INPUTS: list[tuple[str, Any, Callable[[], dict[str, bytes]] | None, tuple[str, int, str], str]] = [
    (
        "wrong encoding",
        None,
        lambda: {"cadres.csv": csv_text("cadres", records()["cadres"]).encode("gbk")},
        ("cadres.csv", 2, "(encoding)"),
        "not UTF-8 encoded (it looks like GBK",
    ),
    (
        "missing column",
        None,
        lambda: {
            "assets.csv": csv_text(
                "assets", records()["assets"], tuple(c for c in records()["assets"][0] if c != "location")
            ).encode()
        },
        ("assets.csv", 1, "location"),
        "required column 'location' is missing",
    ),
    (
        "unknown village code",
        _replace("contracts", 1, village_code="440111999999"),
        None,
        ("contracts.csv", 3, "village_code"),
        "440111999999 is not a known village",
    ),
    (
        "reference to an id that does not exist",
        _replace("bids", 1, applicant_id="OLD-P9"),
        None,
        ("bids.csv", 3, "applicant_id"),
        "refers to applicants id 'OLD-P9', which does not exist",
    ),
    (
        "unbalanced entry",
        lambda data: data["book_entries"][5].update(credit_fen="87000"),
        None,
        ("book_entries.csv", 6, "debit_fen"),
        "unbalanced entry: debits 88000 fen, credits 87000 fen",
    ),
    (
        "impossible date",
        _replace("cadres", 0, term_start="2019-02-30"),
        None,
        ("cadres.csv", 2, "term_start"),
        "'2019-02-30' is not a real date",
    ),
    (
        "duplicated id with different content",
        _duplicate_asset,
        None,
        ("assets.csv", 4, "id"),
        "id 'OLD-A1' is duplicated with content different from line 2",
    ),
    (
        "amount not in whole fen",
        _replace("contracts", 1, unit_price_fen="10000000.5"),
        None,
        ("contracts.csv", 3, "unit_price_fen"),
        "amounts are whole fen; '10000000.5' is not a whole number",
    ),
    (
        "time that does not exist",
        _replace("listings", 0, closed_at="2019-03-13T25:00:00+08:00"),
        None,
        ("listings.csv", 2, "closed_at"),
        "is not a real time",
    ),
    (
        "unknown account",
        lambda data: data["book_entries"][0].update(account_code="999"),
        None,
        ("book_entries.csv", 2, "account_code"),
        "account 999 is not in this collective's chart",
    ),
    (
        "winner who did not apply",
        _replace("listings", 0, winner_applicant_id="OLD-X1"),
        None,
        ("listings.csv", 2, "winner_applicant_id"),
        "refers to applicants id 'OLD-X1'",
    ),
    (
        "bidder ID number with a wrong check digit",
        _replace("bidders", 0, id_number=person_id(11)[:-1] + ("1" if person_id(11)[-1] == "0" else "0")),
        None,
        ("bidders.csv", 2, "id_number"),
        "check",
    ),
]


@pytest.mark.parametrize(
    ("what", "breaks", "files", "where", "words"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
async def test_bad_input_is_named_and_nothing_is_written(
    db: AsyncSession,
    what: str,
    breaks: Any,
    files: Callable[[], dict[str, bytes]] | None,
    where: tuple[str, int, str],
    words: str,
) -> None:
    data = records()
    if breaks is not None:
        breaks(data)
    items = sources(data)
    if files is not None:
        replacements = files()
        items = [Source(item.name, replacements.get(item.name, item.data)) for item in items]
    before = await table_counts(db)
    plan, written = await run(db, items)
    assert not plan.valid and written == {}
    found = [p for p in plan.problems if (p.file, p.line, p.field) == where]
    assert found, f"{what}: expected a problem at {where}, got {[str(p) for p in plan.problems]}"
    assert words.lower() in found[0].message_en.lower(), str(found[0])
    assert any("\u4e00" <= ch <= "\u9fff" for ch in found[0].message), "the Chinese message is missing"
    assert await table_counts(db) == before


async def test_json_lines_are_checked_like_csv(db: AsyncSession) -> None:
    data = records()
    data["bids"][0]["amount_fen"] = 2000.5  # a JSON number with a fraction of a fen
    data["cadres"][0].pop("body")
    before = await table_counts(db)
    plan, _ = await run(db, sources(data, jsonl=("bids", "cadres")))
    located = {(p.file, p.line, p.field) for p in plan.problems}
    assert ("bids.jsonl", 1, "amount_fen") in located and ("cadres.jsonl", 1, "body") in located
    assert await table_counts(db) == before


async def test_an_id_imported_before_with_other_content_is_refused(db: AsyncSession) -> None:
    plan, _ = await run(db, sources(records()))
    assert plan.valid
    after = await table_counts(db)
    changed = records()
    changed["assets"][1]["book_value_fen"] = "50000001"
    again, written = await run(db, sources(changed))
    assert [(p.file, p.line, p.field) for p in again.problems] == [("assets.csv", 3, "id")]
    assert "imported before with different content" in again.problems[0].message_en
    assert written == {} and await table_counts(db) == after


async def test_per_file_loads_the_files_without_problems_and_what_does_not_depend_on_others(
    db: AsyncSession,
) -> None:
    data = records()
    data["assets"][0]["kind"] = "castle"
    before = await table_counts(db)
    plan, written = await run(db, sources(data), per_file=True)
    loaded = {report.kind for report in plan.files.values() if report.loaded}
    assert loaded == {"cadres", "cadre_relatives", "elections", "candidates", "bidders"}
    skipped = {report.kind: report.skipped_because for report in plan.files.values() if not report.loaded}
    assert skipped["assets"] is None and skipped["listings"] == "assets.csv"
    assert skipped["contracts"] == "assets.csv" and skipped["bids"] in ("listings.csv", "applicants.csv")
    changes = delta(before, await table_counts(db))
    assert (
        changes["cadre"] == 2
        and changes["bidder"] == 2
        and "asset" not in changes
        and "listing" not in changes
    )
    assert written.get("assets", 0) == 0


async def test_an_existing_bidder_and_election_are_linked_not_duplicated(db: AsyncSession) -> None:
    plan, _ = await run(db, sources(records()))
    assert plan.valid
    counts = await table_counts(db)
    # the same people and election day from another source system (other ids)
    again = records("NEW")
    for kind in (
        "cadres",
        "cadre_relatives",
        "candidates",
        "assets",
        "listings",
        "applicants",
        "bids",
        "contracts",
        "book_entries",
    ):
        again.pop(kind)
    plan2, written = await run(db, sources(again))
    assert plan2.valid, [str(p) for p in plan2.problems]
    assert delta(counts, await table_counts(db)) == {"import_key": 3}
    assert sum(written.values()) == 0
    assert {r.kind: r.new for r in plan2.files.values()} == {"elections": 1, "bidders": 2}
