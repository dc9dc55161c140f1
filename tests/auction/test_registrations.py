"""Registrations over HTTP: applying, deposits in the village's books, qualification with bidder numbers,
rejection with an immediate refund, and who may see which registrations."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Listing, Registration
from sanzi.auction.services.registrations import qualified_registration, refund_deposit
from sanzi.ledger.models import JournalEntry
from sanzi.platform.models import Bidder, Role
from tests.auction.test_listings import announced_listing, counts, create_listing, field_of
from tests.conftest import VILLAGE_A, VILLAGE_B, Actor

MakeUser = Callable[..., Awaitable[Actor]]


async def make_bidder(make_user: MakeUser, db: AsyncSession, name: str = "张三") -> tuple[Actor, Bidder]:
    actor = await make_user(Role.BIDDER)
    bidder = Bidder(
        user_id=actor.id,
        kind="person",
        name=name,
        id_number=uuid.uuid4().hex[:18].upper(),
        phone="13800138000",
        address="白云区某路1号",
        bank_account="6222000011112222",
    )
    db.add(bidder)
    await db.commit()
    return actor, bidder


def deposit_body(**overrides: Any) -> dict[str, Any]:
    return {
        "payer_name": "张三",
        "payer_account": "6222000011112222",
        "paid_at": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
        **overrides,
    }


async def apply(
    client: httpx.AsyncClient, listing: dict[str, Any], bidder: Actor, **headers: str
) -> httpx.Response:
    return await client.post(
        f"/api/listings/{listing['id']}/registrations", json={}, headers={**bidder.headers, **headers}
    )


async def balance(client: httpx.AsyncClient, actor: Actor, code: str) -> int:
    """The account's balance in village A's trial balance, in fen."""
    response = await client.get(f"/api/villages/{VILLAGE_A}/trial-balance", headers=actor.headers)
    assert response.status_code == 200, response.text
    rows = {row["code"]: row for row in response.json()["accounts"]}
    return round(Decimal(rows[code]["balance"]) * 100) if code in rows else 0


async def test_the_whole_path_to_qualified_bidders_with_deposits_held(
    client: httpx.AsyncClient,
    db: AsyncSession,
    make_user: MakeUser,
    committee_a: Actor,
    supervisor_a: Actor,
) -> None:
    listing = await announced_listing(client, committee_a, supervisor_a)
    held_before = await balance(client, committee_a, "21101")
    zhang, zhang_row = await make_bidder(make_user, db, "张三")
    li, li_row = await make_bidder(make_user, db, "李四")

    response = await apply(client, listing, zhang, **{"X-Device-Fingerprint": "fp-zhang"})
    assert response.status_code == 201, response.text
    mine = response.json()
    assert mine["status"] == "applied" and mine["deposit_state"] == "none" and mine["bidder_number"] is None
    assert mine["contact_phone"] == "13800138000" and mine["contact_address"] == "白云区某路1号"
    assert mine["deposit"] == "1000.00" and mine["listing_number"] == listing["number"]
    response = await client.post(
        f"/api/listings/{listing['id']}/registrations",
        json={"contact_phone": "13900139000"},
        headers=li.headers,
    )
    assert response.status_code == 201, response.text
    registrations = {zhang.id: mine["id"], li.id: response.json()["id"]}
    stored = await db.scalar(
        select(Registration)
        .where(Registration.id == mine["id"])
        .execution_options(populate_existing=True)
    )
    assert stored is not None
    assert stored.applied_device == "fp-zhang" and stored.applied_ip  # the client's address is kept
    assert stored.contact_phone == "13800138000"

    for actor, payer in ((zhang, "张三"), (li, "李四")):
        response = await client.post(
            f"/api/registrations/{registrations[actor.id]}/deposit",
            json=deposit_body(payer_name=payer),
            headers=committee_a.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "deposit_paid" and response.json()["deposit_state"] == "held"

    # the books show both deposits held in 21101 (and the money at the bank)
    assert await balance(client, committee_a, "21101") - held_before == 2 * 100_000
    entry = await db.scalar(
        select(JournalEntry).where(JournalEntry.client_key == f"deposit:{registrations[zhang.id]}")
    )
    assert entry is not None and entry.source == "deposit" and entry.counterparty == "张三"
    assert {(line.account.code, line.debit_fen, line.credit_fen) for line in entry.lines} == {
        ("102", 100_000, 0),
        ("21101", 0, 100_000),
    }

    numbers = set()
    for actor in (zhang, li):
        response = await client.post(
            f"/api/registrations/{registrations[actor.id]}/qualify", headers=supervisor_a.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "qualified"
        numbers.add(response.json()["bidder_number"])
    assert len(numbers) == 2 and all(n and n.isdigit() for n in numbers)

    # the bidding module's question: may this bidder bid?
    found = await qualified_registration(db, listing["id"], zhang_row.id)
    assert found is not None and found.id == registrations[zhang.id]

    # each bidder sees their own application
    own = (await client.get("/api/registrations/mine", headers=zhang.headers)).json()
    assert [r["id"] for r in own] == [registrations[zhang.id]]
    assert own[0]["bidder_number"] in numbers and own[0]["deposit_state"] == "held"

    # the supervisor sees identities and traits; the committee numbers and counts only
    registrations_url = f"/api/listings/{listing['id']}/registrations"
    full = (await client.get(registrations_url, headers=supervisor_a.headers)).json()
    assert full["identities"] is True and full["counts"]["qualified"] == 2 and full["counts"]["total"] == 2
    assert {item["bidder_name"] for item in full["items"]} == {"张三", "李四"}
    assert {item["applied_device"] for item in full["items"]} == {"fp-zhang", None}
    assert {item["deposit_payer_account"] for item in full["items"]} == {"6222000011112222"}
    brief = (await client.get(registrations_url, headers=committee_a.headers)).json()
    assert brief["identities"] is False and brief["counts"]["qualified"] == 2
    assert {item["bidder_number"] for item in brief["items"]} == numbers
    assert all(set(item) == {"id", "bidder_number", "status", "deposit_state"} for item in brief["items"])
    assert "张三" not in str(brief)

    # once closed, the committee sees who the bidders were
    await db.execute(update(Listing).where(Listing.id == listing["id"]).values(status="closed"))
    await db.commit()
    brief = (await client.get(registrations_url, headers=committee_a.headers)).json()
    assert brief["identities"] is True and {item["bidder_name"] for item in brief["items"]} == {"张三", "李四"}


async def test_application_refusals(
    client: httpx.AsyncClient,
    db: AsyncSession,
    make_user: MakeUser,
    committee_a: Actor,
    supervisor_a: Actor,
) -> None:
    bidder, _ = await make_bidder(make_user, db)
    draft = await create_listing(client, committee_a)
    listing = await announced_listing(client, committee_a, supervisor_a)
    before = await counts(db)
    # an unpublished listing does not exist for a bidder; an unknown one neither
    assert (await apply(client, draft, bidder)).status_code == 404
    assert (await apply(client, {"id": 999_999_999}, bidder)).status_code == 404
    # only bidders apply, and only with a bidder profile
    assert (await apply(client, listing, committee_a)).status_code == 403
    assert (await client.post(f"/api/listings/{listing['id']}/registrations", json={})).status_code == 401
    no_profile = await make_user(Role.BIDDER)
    assert (await apply(client, listing, no_profile)).status_code == 403
    response = await client.post(
        f"/api/listings/{listing['id']}/registrations", json={"contact_phone": ""}, headers=bidder.headers
    )
    assert response.status_code == 400 and field_of(response) == "contact_phone"
    assert await counts(db) == before

    assert (await apply(client, listing, bidder)).status_code == 201
    before = await counts(db)
    response = await apply(client, listing, bidder)
    assert response.status_code == 409  # one application per bidder per listing
    assert await counts(db) == before

    # after the registration deadline, nobody else applies
    late, _ = await make_bidder(make_user, db, "王五")
    await db.execute(
        update(Listing)
        .where(Listing.id == listing["id"])
        .values(registration_deadline=datetime.now(UTC) - timedelta(seconds=1))
    )
    await db.commit()
    before = await counts(db)
    response = await apply(client, listing, late)
    assert response.status_code == 409 and field_of(response) == "registration_deadline"
    # nor while the listing is suspended
    await db.execute(
        update(Listing)
        .where(Listing.id == listing["id"])
        .values(registration_deadline=datetime.now(UTC) + timedelta(days=1), status="suspended")
    )
    await db.commit()
    assert (await apply(client, listing, late)).status_code == 409
    assert await counts(db) == before


async def _applied(
    client: httpx.AsyncClient, db: AsyncSession, make_user: MakeUser, committee: Actor, supervisor: Actor
) -> tuple[dict[str, Any], int, Actor]:
    listing = await announced_listing(client, committee, supervisor)
    bidder, _ = await make_bidder(make_user, db)
    response = await apply(client, listing, bidder)
    assert response.status_code == 201, response.text
    return listing, response.json()["id"], bidder


async def test_deposit_refusals(
    client: httpx.AsyncClient,
    db: AsyncSession,
    make_user: MakeUser,
    committee_a: Actor,
    committee_b: Actor,
    supervisor_a: Actor,
) -> None:
    listing, registration_id, bidder = await _applied(client, db, make_user, committee_a, supervisor_a)
    url = f"/api/registrations/{registration_id}/deposit"
    before = await counts(db)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    for body, status, field in (
        (deposit_body(paid_at=future), 422, "paid_at"),
        (deposit_body(payer_name=""), 400, "payer_name"),
        (deposit_body(payer_account="账号"), 400, "payer_account"),
        (deposit_body(paid_at="2026-01-01T10:00:00"), 400, "paid_at"),
        (deposit_body(amount="5.00"), 400, "amount"),
    ):
        response = await client.post(url, json=body, headers=committee_a.headers)
        assert response.status_code == status, response.text
        assert field_of(response) == field
    # only the village's committee confirms (the supervisor reads; other villages and bidders do not see it)
    assert (await client.post(url, json=deposit_body(), headers=supervisor_a.headers)).status_code == 403
    assert (await client.post(url, json=deposit_body(), headers=committee_b.headers)).status_code == 404
    assert (await client.post(url, json=deposit_body(), headers=bidder.headers)).status_code == 403
    assert (
        await client.post(
            "/api/registrations/999999999/deposit",
            json=deposit_body(),
            headers=committee_a.headers,
        )
    ).status_code == 404
    assert await counts(db) == before

    # a deposit must have arrived by the registration deadline
    await db.execute(
        update(Listing)
        .where(Listing.id == listing["id"])
        .values(registration_deadline=datetime.now(UTC) - timedelta(hours=1))
    )
    await db.commit()
    response = await client.post(url, json=deposit_body(), headers=committee_a.headers)
    assert response.status_code == 422 and field_of(response) == "paid_at"
    assert await counts(db) == before

    early = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    response = await client.post(url, json=deposit_body(paid_at=early), headers=committee_a.headers)
    assert response.status_code == 200
    before = await counts(db)
    response = await client.post(url, json=deposit_body(paid_at=early), headers=committee_a.headers)
    assert response.status_code == 409  # twice
    assert await counts(db) == before


async def test_qualify_and_reject(
    client: httpx.AsyncClient,
    db: AsyncSession,
    make_user: MakeUser,
    committee_a: Actor,
    supervisor_a: Actor,
    supervisor_b: Actor,
) -> None:
    listing, registration_id, bidder = await _applied(client, db, make_user, committee_a, supervisor_a)
    qualify = f"/api/registrations/{registration_id}/qualify"
    before = await counts(db)
    # no deposit yet
    response = await client.post(qualify, headers=supervisor_a.headers)
    assert response.status_code == 409 and field_of(response) == "deposit"
    # roles and scope
    assert (await client.post(qualify, headers=committee_a.headers)).status_code == 403
    assert (await client.post(qualify, headers=supervisor_b.headers)).status_code == 404
    assert (await client.post(qualify, headers=bidder.headers)).status_code == 403
    reject = f"/api/registrations/{registration_id}/reject"
    response = await client.post(reject, json={}, headers=supervisor_a.headers)
    assert response.status_code == 400 and field_of(response) == "reason"
    assert await counts(db) == before

    url = f"/api/registrations/{registration_id}/deposit"
    assert (await client.post(url, json=deposit_body(), headers=committee_a.headers)).status_code == 200
    held = await balance(client, committee_a, "21101")

    # rejection refunds the held deposit at once
    response = await client.post(
        reject, json={"reason": "不具备养殖经验"}, headers=supervisor_a.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "rejected" and response.json()["deposit_state"] == "refunded"
    assert response.json()["reject_reason"] == "不具备养殖经验"
    assert await balance(client, committee_a, "21101") == held - 100_000
    refund = await db.scalar(
        select(JournalEntry).where(JournalEntry.client_key == f"refund:{registration_id}")
    )
    assert refund is not None
    assert {(line.account.code, line.debit_fen, line.credit_fen) for line in refund.lines} == {
        ("21101", 100_000, 0),
        ("102", 0, 100_000),
    }
    stored = await db.scalar(
        select(Registration)
        .where(Registration.id == registration_id)
        .execution_options(populate_existing=True)
    )
    assert stored is not None and stored.deposit_settlement_entry_id == refund.id

    before = await counts(db)
    assert (await client.post(qualify, headers=supervisor_a.headers)).status_code == 409
    response = await client.post(
        f"/api/registrations/{registration_id}/reject", json={"reason": "再次"}, headers=supervisor_a.headers
    )
    assert response.status_code == 409
    assert await counts(db) == before

    # refunding again changes nothing (the close refunds losers with the same function)
    await refund_deposit(db, stored, None, datetime.now(UTC))
    await db.commit()
    assert await counts(db) == before


async def test_qualify_after_the_deadline_but_not_once_bidding(
    client: httpx.AsyncClient, db: AsyncSession, make_user: MakeUser, committee_a: Actor, supervisor_a: Actor
) -> None:
    listing, registration_id, _ = await _applied(client, db, make_user, committee_a, supervisor_a)
    url = f"/api/registrations/{registration_id}/deposit"
    assert (await client.post(url, json=deposit_body(), headers=committee_a.headers)).status_code == 200
    await db.execute(
        update(Listing)
        .where(Listing.id == listing["id"])
        .values(registration_deadline=datetime.now(UTC) - timedelta(minutes=1), status="bidding")
    )
    await db.commit()
    before = await counts(db)
    qualify = f"/api/registrations/{registration_id}/qualify"
    assert (await client.post(qualify, headers=supervisor_a.headers)).status_code == 409
    assert await counts(db) == before
    await db.execute(update(Listing).where(Listing.id == listing["id"]).values(status="announced"))
    await db.commit()
    response = await client.post(qualify, headers=supervisor_a.headers)
    assert response.status_code == 200 and response.json()["status"] == "qualified"


async def test_termination_refunds_every_held_deposit(
    client: httpx.AsyncClient, db: AsyncSession, make_user: MakeUser, committee_a: Actor, supervisor_a: Actor
) -> None:
    listing, registration_id, _ = await _applied(client, db, make_user, committee_a, supervisor_a)
    url = f"/api/registrations/{registration_id}/deposit"
    assert (await client.post(url, json=deposit_body(), headers=committee_a.headers)).status_code == 200
    held = await balance(client, committee_a, "21101")
    response = await client.post(
        f"/api/listings/{listing['id']}/terminate", json={"reason": "权属争议"}, headers=supervisor_a.headers
    )
    assert response.status_code == 200, response.text
    assert await balance(client, committee_a, "21101") == held - 100_000
    url = f"/api/listings/{listing['id']}/registrations"
    seen = (await client.get(url, headers=supervisor_a.headers)).json()
    assert seen["items"][0]["deposit_state"] == "refunded"


async def test_who_reads_registrations(
    client: httpx.AsyncClient,
    db: AsyncSession,
    make_user: MakeUser,
    committee_a: Actor,
    committee_b: Actor,
    supervisor_a: Actor,
    supervisor_b: Actor,
) -> None:
    listing, registration_id, bidder = await _applied(client, db, make_user, committee_a, supervisor_a)
    url = f"/api/listings/{listing['id']}/registrations"
    assert (await client.get(url, headers=bidder.headers)).status_code == 403  # a bidder never reads others'
    assert (await client.get(url)).status_code == 401
    assert (await client.get(url, headers=committee_b.headers)).status_code == 403
    assert (await client.get(url, headers=supervisor_b.headers)).status_code == 403
    admin = await make_user(Role.ADMIN)
    assert (await client.get(url, headers=admin.headers)).json()["identities"] is True
    other, _ = await make_bidder(make_user, db, "赵六")
    assert (await client.get("/api/registrations/mine", headers=other.headers)).json() == []
    assert (await client.get("/api/registrations/mine", headers=committee_a.headers)).status_code == 403
    # another village's listing: its committee sees it, ours does not
    listing_b = await announced_listing(client, committee_b, supervisor_b, VILLAGE_B)
    url_b = f"/api/listings/{listing_b['id']}/registrations"
    assert (await client.get(url_b, headers=committee_a.headers)).status_code == 403
    assert (await client.get(url_b, headers=committee_b.headers)).status_code == 200
