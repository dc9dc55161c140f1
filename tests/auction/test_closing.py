"""Closing: sold, failed below the reserve, failed without bids, a single bidder; deposits and the books; the
result and the officials' view; the contract from a result; the forfeit; the deadline interleavings; the
scheduler really running."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sanzi.auction.models import Bid, DepositState, Listing, ListingStatus, Registration
from sanzi.auction.services.bidding import close_due, open_due, place_bid
from sanzi.auction.services.results import close_listing
from sanzi.ledger.models import Asset, Contract, ContractReceipt
from sanzi.ledger.services.books import BooksService
from sanzi.platform.app import create_app
from sanzi.platform.database import create_engine
from sanzi.platform.problems import DomainError
from tests.auction.factories import LiveListing, make_live_listing
from tests.conftest import VILLAGE_A, Actor, load_villages, make_settings, run_sync, serve

NOW = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
END = NOW + timedelta(hours=1)


async def listing_row(db: AsyncSession, listing_id: int) -> Listing:
    listing = await db.get(Listing, listing_id, populate_existing=True)
    assert listing is not None
    return listing


async def deposit_states(db: AsyncSession, listing_id: int) -> list[str]:
    rows = await db.scalars(select(Registration.deposit_state).where(Registration.listing_id == listing_id).order_by(Registration.id))
    return list(rows)


async def balance_of(db: AsyncSession, live: LiveListing, code: str) -> int:
    trial = await BooksService(db).trial_balance(live.collective, None)
    assert trial.balanced and trial.total_debit == trial.total_credit
    return next((row.balance for row in trial.accounts if row.code == code), 0)


async def bids(db: AsyncSession, live: LiveListing, *amounts: tuple[int, int], at: datetime = NOW) -> None:
    for index, (who, amount) in enumerate(amounts):
        await place_bid(db, live.id, live.bidders[who].bidder, amount, f"k{index}", at + timedelta(seconds=index))


async def test_sold_refunds_the_losers_and_publishes_the_result(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, committee_b: Actor, supervisor_a: Actor
) -> None:
    live = await make_live_listing(db, bidders=3, now=NOW, ends_in=END - NOW, reserve_price_fen=101_000_00)
    held_before = await balance_of(db, live, "21101")
    await bids(db, live, (0, 100_000_00), (1, 102_000_00))
    # identities stay hidden until the close
    assert (await client.get(f"/api/listings/{live.id}/bidders", headers=committee_a.headers)).status_code == 409
    assert (await client.get(f"/api/listings/{live.id}/result")).status_code == 404

    with pytest.raises(DomainError) as early:
        await close_listing(db, live.id, END - timedelta(microseconds=1))
    assert early.value.code == "not_due"
    await close_listing(db, live.id, END)
    listing = await listing_row(db, live.id)
    assert listing.status == ListingStatus.SOLD.value and listing.final_price_fen == 102_000_00
    assert listing.winner_registration_id == live.bidders[1].registration.id
    assert listing.publicity_ends_at == END + timedelta(days=5) and listing.sign_deadline == date(2026, 3, 12)
    assert await deposit_states(db, live.id) == ["refunded", "held", "refunded"]
    assert await balance_of(db, live, "21101") == held_before - 2 * 10_000_00
    with pytest.raises(DomainError):
        await close_listing(db, live.id, END)  # closed once

    result = (await client.get(f"/api/listings/{live.id}/result")).json()
    assert result["outcome"] == "sold" and result["final_price"] == "102000.00"
    assert result["premium_percent"] == "2.00" and result["reserve_met"] is True
    assert result["qualified_bidders"] == 3 and result["bidders_who_bid"] == 2
    assert result["winner_name"] == live.bidders[1].bidder.name and result["winner_number"] == live.bidders[1].number
    assert [(b["seq"], b["bidder_number"], b["amount"]) for b in result["bids"]] == [
        (1, live.bidders[0].number, "100000.00"),
        (2, live.bidders[1].number, "102000.00"),
    ]
    page = (await client.get("/api/results", params={"village": VILLAGE_A})).json()
    assert live.id in [item["listing_id"] for item in page["items"]]
    elsewhere = (await client.get("/api/results", params={"district": "440118000000"})).json()["items"]
    assert all(item["village_code"].startswith("440118") for item in elsewhere)

    identities = await client.get(f"/api/listings/{live.id}/bidders", headers=supervisor_a.headers)
    assert identities.status_code == 200
    by_number = {row["bidder_number"]: row for row in identities.json()}
    assert by_number[live.bidders[1].number]["is_winner"] and by_number[live.bidders[1].number]["id_number"]
    assert by_number[live.bidders[0].number]["bid_count"] == 1
    assert (await client.get(f"/api/listings/{live.id}/bidders", headers=committee_a.headers)).status_code == 200
    assert (await client.get(f"/api/listings/{live.id}/bidders", headers=committee_b.headers)).status_code == 404


async def test_failed_below_reserve_refunds_everyone_and_frees_the_asset(db: AsyncSession, client: httpx.AsyncClient) -> None:
    live = await make_live_listing(db, bidders=2, now=NOW, ends_in=END - NOW, reserve_price_fen=150_000_00)
    held_before = await balance_of(db, live, "21101")
    await bids(db, live, (0, 100_000_00), (1, 101_000_00))
    await close_listing(db, live.id, END)
    listing = await listing_row(db, live.id)
    assert listing.status == ListingStatus.FAILED.value
    assert listing.winner_registration_id is None and listing.final_price_fen is None and listing.sign_deadline is None
    assert await deposit_states(db, live.id) == ["refunded", "refunded"]
    assert await balance_of(db, live, "21101") == held_before - 2 * 10_000_00
    assert (await db.get(Asset, live.asset.id, populate_existing=True)).status == "idle"  # type: ignore[union-attr]
    result = (await client.get(f"/api/listings/{live.id}/result")).json()
    assert result["outcome"] == "failed" and result["reserve_met"] is False and result["winner_name"] is None
    assert result["highest_bid"] == "101000.00" and result["final_price"] is None


async def test_no_bids_fails_and_a_single_bidder_at_the_reserve_wins(db: AsyncSession) -> None:
    quiet = await make_live_listing(
        db, bidders=2, now=NOW, status=ListingStatus.ANNOUNCED, starts_in=timedelta(minutes=10), ends_in=END - NOW
    )
    single = await make_live_listing(db, bidders=2, now=NOW, ends_in=END - NOW, reserve_price_fen=100_000_00)
    await bids(db, single, (0, 100_000_00))
    assert await open_due(db, NOW) == []  # not yet
    assert await close_due(db, END) == sorted([quiet.id, single.id])  # the announced one closes without opening
    assert await close_due(db, END) == []
    assert (await listing_row(db, quiet.id)).status == ListingStatus.FAILED.value
    assert await deposit_states(db, quiet.id) == ["refunded", "refunded"]
    winner = await listing_row(db, single.id)
    assert winner.status == ListingStatus.SOLD.value and winner.final_price_fen == 100_000_00
    assert await deposit_states(db, single.id) == ["held", "refunded"]


async def test_open_due_moves_announced_listings_to_bidding(db: AsyncSession) -> None:
    live = await make_live_listing(db, now=NOW, status=ListingStatus.ANNOUNCED, starts_in=timedelta(minutes=10))
    assert await open_due(db, NOW) == []
    assert await open_due(db, NOW + timedelta(minutes=10)) == [live.id]
    assert (await listing_row(db, live.id)).status == ListingStatus.BIDDING.value


async def test_a_bid_at_the_deadline_is_refused_and_just_before_it_extends(db: AsyncSession) -> None:
    on_time = await make_live_listing(db, bidders=2, now=NOW, ends_in=END - NOW, extension_minutes=5)
    late = await make_live_listing(db, bidders=2, now=NOW, ends_in=END - NOW, extension_minutes=5)
    await bids(db, late, (0, 100_000_00))
    with pytest.raises(DomainError) as refused:
        await place_bid(db, late.id, late.bidders[1].bidder, 101_000_00, "at-end", END)
    assert refused.value.code == "outside_window"
    await close_listing(db, late.id, END)
    assert (await listing_row(db, late.id)).final_price_fen == 100_000_00

    placed, _ = await place_bid(db, on_time.id, on_time.bidders[0].bidder, 100_000_00, "x", END - timedelta(microseconds=1))
    assert placed.extended_end_at == END - timedelta(microseconds=1) + timedelta(minutes=5)
    with pytest.raises(DomainError) as not_due:
        await close_listing(db, on_time.id, END)
    assert not_due.value.code == "not_due"
    assert (await listing_row(db, on_time.id)).status == ListingStatus.BIDDING.value


async def test_two_bids_at_the_same_price_the_second_is_refused(db: AsyncSession) -> None:
    live = await make_live_listing(db, bidders=3, now=NOW, ends_in=END - NOW)
    await bids(db, live, (0, 100_000_00))
    await place_bid(db, live.id, live.bidders[1].bidder, 102_000_00, "same-1", NOW + timedelta(minutes=1))
    with pytest.raises(DomainError) as refused:
        await place_bid(db, live.id, live.bidders[2].bidder, 102_000_00, "same-2", NOW + timedelta(minutes=1))
    assert refused.value.code == "amount_too_low"
    assert await db.scalar(select(func.count()).select_from(Bid).where(Bid.listing_id == live.id)) == 2


async def sold_listing(db: AsyncSession, now: datetime) -> LiveListing:
    live = await make_live_listing(
        db, bidders=2, now=now - timedelta(hours=2), ends_in=timedelta(hours=1), price_basis="per_year", term_months=36
    )
    await bids(db, live, (0, 100_000_00), (1, 104_000_00), at=now - timedelta(hours=2) + timedelta(minutes=1))
    await close_listing(db, live.id, now - timedelta(minutes=30))
    return live


async def test_contract_from_the_result_applies_the_deposit(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, committee_b: Actor
) -> None:
    live = await sold_listing(db, datetime.now(UTC))
    held_before = await balance_of(db, live, "21101")
    income_before = await balance_of(db, live, "50101")
    today = datetime.now(UTC).date()
    body = {"number": f"HT-{live.id}", "signed_on": today.isoformat(), "start_date": today.isoformat(),
            "payment_frequency": "annual"}
    contracts = await db.scalar(select(func.count()).select_from(Contract))
    assert (await client.post(f"/api/listings/{live.id}/contract", json=body, headers=committee_b.headers)).status_code == 404
    assert (await client.post(f"/api/listings/{live.id}/contract", json={**body, "number": ""}, headers=committee_a.headers)).status_code == 400
    assert await db.scalar(select(func.count()).select_from(Contract)) == contracts

    during = await client.post(f"/api/listings/{live.id}/contract", json=body, headers=committee_a.headers)
    assert during.status_code == 409 and during.json()["type"].endswith("publicity_not_over")
    assert await db.scalar(select(func.count()).select_from(Contract)) == contracts
    listing = await listing_row(db, live.id)
    listing.publicity_ends_at = datetime.now(UTC) - timedelta(days=1)
    await db.commit()

    response = await client.post(f"/api/listings/{live.id}/contract", json=body, headers=committee_a.headers)
    assert response.status_code == 201, response.text
    contract = response.json()
    assert contract["origin"] == "auction" and contract["listing_id"] == live.id
    assert contract["counterparty_name"] == live.bidders[1].bidder.name and contract["unit_price"] == "104000.00"
    assert contract["total_value"] == "312000.00" and len(contract["installments"]) == 3
    row = await db.get(Contract, contract["id"], populate_existing=True)
    assert row is not None and row.counterparty_bidder_id == live.bidders[1].bidder.id
    receipt = await db.scalar(select(ContractReceipt).where(ContractReceipt.contract_id == contract["id"]))
    assert receipt is not None and receipt.amount_fen == 10_000_00
    assert await deposit_states(db, live.id) == ["refunded", "applied"]
    assert await balance_of(db, live, "21101") == held_before - 10_000_00
    assert await balance_of(db, live, "50101") == income_before + 10_000_00
    assert (await listing_row(db, live.id)).contract_id == contract["id"]
    again = await client.post(f"/api/listings/{live.id}/contract", json={**body, "number": "X"}, headers=committee_a.headers)
    assert again.status_code == 409


async def test_forfeit_after_the_sign_deadline(
    client: httpx.AsyncClient, db: AsyncSession, supervisor_a: Actor, committee_a: Actor
) -> None:
    live = await sold_listing(db, datetime.now(UTC))
    premature = await client.post(f"/api/listings/{live.id}/forfeit", headers=supervisor_a.headers)
    assert premature.status_code == 409 and await deposit_states(db, live.id) == ["refunded", "held"]
    assert (await client.post(f"/api/listings/{live.id}/forfeit", headers=committee_a.headers)).status_code == 403
    listing = await listing_row(db, live.id)
    listing.sign_deadline = datetime.now(UTC).date() - timedelta(days=2)
    await db.commit()
    other_before = await balance_of(db, live, "522")
    response = await client.post(f"/api/listings/{live.id}/forfeit", headers=supervisor_a.headers)
    assert response.status_code == 200, response.text
    assert response.json()["deposit_state"] == "forfeited"
    assert await balance_of(db, live, "522") == other_before + 10_000_00
    assert await deposit_states(db, live.id) == ["refunded", "forfeited"]
    assert (await client.post(f"/api/listings/{live.id}/forfeit", headers=supervisor_a.headers)).status_code == 409


async def test_the_scheduler_closes_listings_that_came_due_while_it_was_down(empty_database_url: str, tmp_path: Any) -> None:
    run_sync(lambda: load_villages(empty_database_url))
    engine = create_engine(make_settings(empty_database_url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            now = datetime.now(UTC)
            overdue = await make_live_listing(session, bidders=2, now=now - timedelta(hours=2), ends_in=timedelta(hours=1))
            await place_bid(session, overdue.id, overdue.bidders[0].bidder, 100_000_00, "k", now - timedelta(hours=1, minutes=30))
            opening = await make_live_listing(
                session, bidders=1, now=now, status=ListingStatus.ANNOUNCED, starts_in=timedelta(seconds=-1)
            )
        settings = make_settings(
            empty_database_url, SANZI_SCHEDULER=True, SANZI_SCHEDULER_INTERVAL=0.2, SANZI_VAR_DIR=str(tmp_path)
        )
        async with serve(create_app(settings)):
            statuses: tuple[str, str] = ("", "")
            for _ in range(100):  # the first pass runs at start; give it up to 10 s on a slow machine
                async with async_sessionmaker(engine)() as session:
                    statuses = (
                        (await session.get_one(Listing, overdue.id)).status,
                        (await session.get_one(Listing, opening.id)).status,
                    )
                if statuses == ("sold", "bidding"):
                    break
                await asyncio.sleep(0.1)
            assert statuses == ("sold", "bidding")
        async with async_sessionmaker(engine)() as session:
            states = list(await session.scalars(
                select(Registration.deposit_state).where(Registration.listing_id == overdue.id).order_by(Registration.id)
            ))
            assert states == [DepositState.HELD.value, DepositState.REFUNDED.value]
    finally:
        await engine.dispose()
