"""The committee's listing pages: drafting a listing of idle assets from the form, submitting it with the
villagers' resolution (the two-thirds rule explained when it fails), confirming a bidder's deposit while
seeing bidder numbers only, signing the contract from a result; and a village's public list of trades."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import DepositState, Listing, ListingStatus, Registration
from sanzi.auction.services.bidding import place_bid
from sanzi.auction.services.results import close_listing
from sanzi.ledger.models import Contract, JournalEntry
from sanzi.platform.pages import SCREEN_ZONE
from tests.auction.factories import add_bidder, make_live_listing
from tests.conftest import VILLAGE_A, Actor


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return await db.scalar(select(func.count()).select_from(model).where(*where)) or 0


def local(moment: datetime) -> str:
    """A datetime-local form value in Beijing time, as the browser sends it."""
    return moment.astimezone(SCREEN_ZONE).strftime("%Y-%m-%dT%H:%M")


def error_beside(html: str, field: str) -> str:
    match = re.search(rf'id="f-{re.escape(field)}-error">([^<]+)<', html)
    assert match, f"no error shown beside {field}"
    return match.group(1)


async def idle_asset(client: httpx.AsyncClient, committee: Actor, code: str = "YT-1") -> int:
    response = await client.post(
        f"/api/villages/{VILLAGE_A}/assets",
        headers=committee.headers,
        json={
            "code": code,
            "name": "北围鱼塘",
            "kind": "fish_pond",
            "area": "48.6",
            "area_unit": "mu",
            "location": "村北",
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def terms(asset_id: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "asset_ids": [str(asset_id)],
        "title": "北围鱼塘三年出租",
        "description": "",
        "trade_type": "lease",
        "term_years": "3",
        "term_months": "",
        "price_basis": "per_year",
        "area": "",
        "starting_price": "20,000",
        "reserve_price": "",
        "min_increment": "500",
        "max_increment": "2000",
        "deposit": "2000",
        "performance_bond": "0",
        "qualification_conditions": "有养殖经验",
        "announcement_days": "20",
        "registration_deadline": local(now + timedelta(days=22)),
        "bidding_starts_at": local(now + timedelta(days=23)),
        "bidding_ends_at": local(now + timedelta(days=23, hours=2)),
        "extension_minutes": "5",
        "max_extensions": "10",
    }


async def test_committee_drafts_edits_and_submits_a_listing_with_the_resolution(
    browser: Any,
    client: httpx.AsyncClient,
    committee_a: Actor,
    committee_b: Actor,
    supervisor_a: Actor,
    db: AsyncSession,
) -> None:
    asset_id = await idle_asset(client, committee_a)
    visitor = await browser(committee_a)
    form = await visitor.get("/committee/listings/new")
    assert form.status_code == 200 and f'name="asset_ids" value="{asset_id}"' in form.text

    no_asset = await visitor.post("/committee/listings/new", {**terms(asset_id), "asset_ids": []})
    assert (
        no_asset.status_code == 400
        and "asset_ids" in no_asset.text
        and 'aria-invalid="true"' in no_asset.text
    )
    deposit_too_high = await visitor.post("/committee/listings/new", {**terms(asset_id), "deposit": "30000"})
    assert deposit_too_high.status_code == 400
    assert error_beside(deposit_too_high.text, "deposit") == "竞买保证金不得高于起始价"
    assert 'value="北围鱼塘三年出租"' in deposit_too_high.text
    assert await count(db, Listing, Listing.village_code == VILLAGE_A) == 0

    created = await visitor.post("/committee/listings/new", terms(asset_id))
    assert created.status_code == 303, created.text
    listing_path = created.headers["location"]
    listing_id = int(listing_path.split("/")[3].split("?")[0])
    row = await db.get(Listing, listing_id)
    assert row is not None and row.starting_price_fen == 2_000_000 and row.term_months == 36
    assert row.status == "draft" and row.deposit_fen == 200_000
    # the times were typed in Beijing time and stored as UTC
    assert local(row.registration_deadline.replace(tzinfo=UTC)) == terms(asset_id)["registration_deadline"]
    page = await visitor.get(listing_path)
    assert "草稿" in page.text and "附村民代表会议决议提交审核" in page.text

    edit = await visitor.get(f"/committee/listings/{listing_id}/edit")
    assert edit.status_code == 200 and 'value="20000.00"' in edit.text and "checked" in edit.text
    edited = await visitor.post(
        f"/committee/listings/{listing_id}/edit", {**terms(asset_id), "title": "北围鱼塘出租（三年）"}
    )
    assert edited.status_code == 303
    await db.refresh(row)
    assert row.title == "北围鱼塘出租（三年）"

    assert (await (await browser(committee_b)).get(listing_path)).status_code == 404
    reader = await browser(supervisor_a)
    read_only = await reader.get(listing_path)
    assert (
        read_only.status_code == 200 and "提交镇街审核" not in read_only.text and "保留价" in read_only.text
    )
    assert (await reader.post(f"/committee/listings/{listing_id}/submit", {})).status_code == 403

    resolution = {
        "meeting_date": datetime.now(SCREEN_ZONE).date().isoformat(),
        "members_present": "30",
        "votes_for": "19",
        "votes_against": "5",
        "note": "",
    }
    short = await visitor.post(f"/committee/listings/{listing_id}/submit", resolution)
    assert short.status_code == 400
    assert "三分之二" in error_beside(short.text, "votes_for") and "至少需 20 票赞成" in short.text
    await db.refresh(row)
    assert row.status == "draft"
    submitted = await visitor.post(
        f"/committee/listings/{listing_id}/submit", {**resolution, "votes_for": "20"}
    )
    assert submitted.status_code == 303
    await db.refresh(row)
    assert row.status == "submitted" and row.resolution_votes_for == 20
    listed = await visitor.get("/committee/listings")
    assert "待审核" in listed.text and "北围鱼塘出租（三年）" in listed.text
    sent_back = await visitor.get(f"/committee/listings/{listing_id}/edit")
    assert sent_back.status_code == 303 and sent_back.headers["location"].startswith(
        f"/committee/listings/{listing_id}"
    )
    refused = await visitor.post(f"/committee/listings/{listing_id}/edit", terms(asset_id))
    assert refused.status_code == 400 and "此操作只适用于“草稿”状态" in refused.text


async def test_committee_confirms_a_deposit_seeing_bidder_numbers_only(
    browser: Any, client: httpx.AsyncClient, committee_a: Actor, supervisor_a: Actor, db: AsyncSession
) -> None:
    live = await make_live_listing(
        db,
        bidders=0,
        status=ListingStatus.ANNOUNCED,
        starts_in=timedelta(days=5),
        ends_in=timedelta(days=5, hours=1),
    )
    live.listing.registration_deadline = datetime.now(UTC) + timedelta(days=4)
    live.listing.announced_at = datetime.now(UTC) - timedelta(days=1)
    bidder = await add_bidder(db, live.listing, qualified=False, deposit=False, name="陈志明")
    await db.commit()
    visitor = await browser(committee_a)
    page = await visitor.get(f"/committee/listings/{live.id}")
    assert page.status_code == 200 and "竞价结束前，村委会只能看到竞买号" in page.text
    assert "陈志明" not in page.text and bidder.bidder.id_number not in page.text
    entries = await count(db, JournalEntry)
    path = f"/committee/registrations/{bidder.registration.id}/deposit"
    late = await visitor.post(
        path,
        {
            "payer_name": "陈志明",
            "payer_account": "6222 0200 0000 0001",
            "paid_at": local(datetime.now(UTC) + timedelta(days=1)),
        },
    )
    assert late.status_code == 400 and "不能晚于现在" in error_beside(late.text, "paid_at")
    assert await count(db, JournalEntry) == entries
    confirmed = await visitor.post(
        path,
        {
            "payer_name": "陈志明",
            "payer_account": "6222 0200 0000 0001",
            "paid_at": local(datetime.now(UTC) - timedelta(hours=1)),
        },
    )
    assert confirmed.status_code == 303
    registration = await db.get(Registration, bidder.registration.id, populate_existing=True)
    assert registration is not None and registration.deposit_state == DepositState.HELD.value
    assert await count(db, JournalEntry) == entries + 1
    assert (await (await browser(supervisor_a)).post(path, {})).status_code == 403

    trades = await (await browser()).get(f"/villages/{VILLAGE_A}/trades", headers={"HX-Request": "true"})
    assert trades.status_code == 200 and "测试鱼塘出租" in trades.text and "<html" not in trades.text
    full = await (await browser()).get(f"/villages/{VILLAGE_A}/trades")
    assert "<html" in full.text and "测试鱼塘出租" in full.text


async def test_committee_signs_the_contract_from_a_result_after_its_publicity(
    browser: Any, committee_a: Actor, db: AsyncSession
) -> None:
    now = datetime.now(UTC)
    live = await make_live_listing(
        db, bidders=2, now=now - timedelta(hours=2), ends_in=timedelta(hours=1), term_months=36
    )
    await place_bid(
        db, live.id, live.bidders[0].bidder, 100_000_00, "p-0", now - timedelta(hours=2, minutes=-1)
    )
    await place_bid(
        db, live.id, live.bidders[1].bidder, 104_000_00, "p-1", now - timedelta(hours=2, minutes=-2)
    )
    await close_listing(db, live.id, now - timedelta(minutes=30))
    await db.commit()
    visitor = await browser(committee_a)
    page = await visitor.get(f"/committee/listings/{live.id}")
    assert "成交结果公示期满后方可签订合同" in page.text and "¥104,000.00" in page.text
    assert live.bidders[1].bidder.name in page.text  # identities are shown after the close
    today = datetime.now(SCREEN_ZONE).date().isoformat()
    body = {"number": "HT-R-1", "signed_on": today, "start_date": today, "payment_frequency": "annual"}
    during = await visitor.post(f"/committee/listings/{live.id}/contract", body)
    assert during.status_code == 400 and "公示期满后方可签约" in during.text
    assert await count(db, Contract) == 0

    listing = await db.get(Listing, live.id, populate_existing=True)
    assert listing is not None
    listing.publicity_ends_at = now - timedelta(days=1)
    await db.commit()
    assert "依成交结果签订合同" in (await visitor.get(f"/committee/listings/{live.id}")).text
    missing = await visitor.post(f"/committee/listings/{live.id}/contract", {**body, "number": ""})
    assert missing.status_code == 400 and error_beside(missing.text, "number") == "请填写此项"
    signed = await visitor.post(f"/committee/listings/{live.id}/contract", body)
    assert signed.status_code == 303 and signed.headers["location"].startswith("/committee/contracts/")
    contract = await db.scalar(select(Contract).where(Contract.listing_id == live.id))
    assert contract is not None and contract.unit_price_fen == 104_000_00 and contract.origin == "auction"
    shown = await visitor.get(signed.headers["location"])
    assert "HT-R-1" in shown.text and "平台交易" in shown.text


async def test_committee_withdraws_its_own_draft_with_a_reason(
    browser: Any, client: httpx.AsyncClient, committee_a: Actor, committee_b: Actor, db: AsyncSession
) -> None:
    asset_id = await idle_asset(client, committee_a, "YT-9")
    visitor = await browser(committee_a)
    created = await visitor.post(f"/committee/listings/new?village={VILLAGE_A}", terms(asset_id))
    listing_id = int(created.headers["location"].split("/")[3].split("?")[0])
    path = f"/committee/listings/{listing_id}/withdraw"
    assert (await (await browser(committee_b)).post(path, {"reason": "撤销"})).status_code == 404
    blank = await visitor.post(path, {"reason": ""})
    assert blank.status_code == 400 and error_beside(blank.text, "reason") == "请填写此项"
    withdrawn = await visitor.post(path, {"reason": "村民代表会议未通过"})
    assert withdrawn.status_code == 303
    row = await db.get(Listing, listing_id, populate_existing=True)
    assert row is not None and row.status == "terminated" and row.status_reason == "村民代表会议未通过"
    again = await visitor.post(path, {"reason": "再次撤销"})
    assert again.status_code == 400 and "只有草稿可以由村委会撤销" in again.text


async def test_committee_offers_a_failed_listing_again_within_the_price_cut(
    browser: Any, committee_a: Actor, db: AsyncSession
) -> None:
    now = datetime.now(UTC)
    live = await make_live_listing(
        db, bidders=1, now=now - timedelta(hours=2), ends_in=timedelta(hours=1), reserve_price_fen=150_000_00
    )
    await place_bid(
        db, live.id, live.bidders[0].bidder, 100_000_00, "f-0", now - timedelta(hours=2, minutes=-1)
    )
    await close_listing(db, live.id, now - timedelta(minutes=30))
    await db.commit()
    visitor = await browser(committee_a)
    page = await visitor.get(f"/committee/listings/{live.id}")
    assert "流拍" in page.text and "生成重新挂牌草稿" in page.text
    timetable = {
        "registration_deadline": local(now + timedelta(days=25)),
        "bidding_starts_at": local(now + timedelta(days=26)),
        "bidding_ends_at": local(now + timedelta(days=26, hours=2)),
    }
    drafts = await count(db, Listing, Listing.relisted_from_id == live.id)
    too_cheap = await visitor.post(
        f"/committee/listings/{live.id}/relist", {**timetable, "starting_price": "1000"}
    )
    assert too_cheap.status_code == 400 and "不得低于上次起始价" in error_beside(
        too_cheap.text, "starting_price"
    )
    assert await count(db, Listing, Listing.relisted_from_id == live.id) == drafts
    relisted = await visitor.post(
        f"/committee/listings/{live.id}/relist", {**timetable, "starting_price": "95,000"}
    )
    assert relisted.status_code == 303
    draft = await db.scalar(select(Listing).where(Listing.relisted_from_id == live.id))
    assert draft is not None and draft.status == "draft" and draft.starting_price_fen == 95_000_00
