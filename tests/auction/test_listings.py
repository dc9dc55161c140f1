"""Listings over HTTP: draft, resolution, review, announcement, suspension, termination, relisting, reads;
every refusal names its field and writes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Listing, ListingAsset, ListingEvent, Registration
from sanzi.ledger.models import Asset, AssetStatusChange, JournalEntry
from sanzi.platform.models import Role
from sanzi.platform.parameters import set_parameter
from tests.conftest import VILLAGE_A, VILLAGE_B, Actor

_asset_counter = {"n": 0}


async def counts(db: AsyncSession) -> tuple[int, ...]:
    """Rows of every table a listing or registration step may write."""
    tables = (Listing, ListingAsset, ListingEvent, Registration, JournalEntry, AssetStatusChange)
    return tuple([await db.scalar(select(func.count()).select_from(t)) or 0 for t in tables])


async def make_asset(
    client: httpx.AsyncClient,
    committee: Actor,
    village: str = VILLAGE_A,
    unit: str = "mu",
    area: str = "12.50",
) -> dict[str, Any]:
    _asset_counter["n"] += 1
    body = {
        "code": f"T-{_asset_counter['n']}",
        "name": f"鱼塘{_asset_counter['n']}号",
        "kind": "fish_pond" if unit == "mu" else "building",
        "area": area,
        "area_unit": unit,
        "location": "村东",
    }
    response = await client.post(f"/api/villages/{village}/assets", json=body, headers=committee.headers)
    assert response.status_code == 201, response.text
    return response.json()


def terms(ids: list[int], **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "asset_ids": ids,
        "title": "永兴村鱼塘五年租赁",
        "description": "鱼塘一口，水电齐全",
        "trade_type": "lease",
        "term_years": 5,
        "price_basis": "per_mu_year",
        "starting_price": "1500.00",
        "reserve_price": "1800.00",
        "min_increment": "50.00",
        "max_increment": "500.00",
        "deposit": "1000.00",
        "performance_bond": "3000.00",
        "qualification_conditions": "具有养殖经验的个人或企业",
        "announcement_days": 7,
        "registration_deadline": (now + timedelta(days=10)).isoformat(),
        "bidding_starts_at": (now + timedelta(days=11)).isoformat(),
        "bidding_ends_at": (now + timedelta(days=11, hours=2)).isoformat(),
        "extension_minutes": 5,
        "max_extensions": 20,
    }
    body.update(overrides)
    return body


LISTINGS_A = f"/api/villages/{VILLAGE_A}/listings"
RESOLUTION = {"meeting_date": "2026-01-10", "members_present": 30, "votes_for": 20, "votes_against": 5}


async def create_listing(
    client: httpx.AsyncClient, committee: Actor, village: str = VILLAGE_A, **overrides: Any
) -> dict[str, Any]:
    asset = await make_asset(client, committee, village)
    response = await client.post(
        f"/api/villages/{village}/listings", json=terms([asset["id"]], **overrides), headers=committee.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def announced_listing(
    client: httpx.AsyncClient, committee: Actor, supervisor: Actor, village: str = VILLAGE_A, **overrides: Any
) -> dict[str, Any]:
    """A listing taken through submit, approve and announce."""
    listing = await create_listing(client, committee, village, **overrides)
    base = f"/api/listings/{listing['id']}"
    for path, actor, body in (
        ("submit", committee, RESOLUTION),
        ("approve", supervisor, None),
        ("announce", supervisor, None),
    ):
        response = await client.post(f"{base}/{path}", json=body, headers=actor.headers)
        assert response.status_code == 200, (path, response.text)
    return response.json()


async def submit(client: httpx.AsyncClient, base: str, actor: Actor) -> httpx.Response:
    return await client.post(f"{base}/submit", json=RESOLUTION, headers=actor.headers)


def field_of(response: httpx.Response) -> str:
    return response.json()["errors"][0]["field"]


# ---- the path -------------------------------------------------------------------------------------------


async def test_listing_lifecycle_from_draft_to_announcement(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, supervisor_a: Actor
) -> None:
    asset = await make_asset(client, committee_a)
    response = await client.post(
        LISTINGS_A, json=terms([asset["id"]]), headers=committee_a.headers
    )
    assert response.status_code == 201, response.text
    listing = response.json()
    assert listing["status"] == "draft"
    assert listing["number"].startswith(f"{VILLAGE_A}-{datetime.now(UTC).year}-")
    assert listing["term_months"] == 60
    assert listing["area"] == "12.50"  # the asset's area in mu, for the per-mu price
    assert listing["reserve_price"] == "1800.00"
    assert listing["starting_price"] == "1500.00"
    assert [a["id"] for a in listing["assets"]] == [asset["id"]]
    base = f"/api/listings/{listing['id']}"

    # a draft is the village's own: the public does not see it
    assert (await client.get(base)).status_code == 404
    assert (await client.get("/api/listings", params={"village": VILLAGE_A})).json()["total"] == 0

    response = await client.patch(base, json={"title": "永兴村鱼塘租赁（修订）"}, headers=committee_a.headers)
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "永兴村鱼塘租赁（修订）"

    response = await client.post(f"{base}/submit", json=RESOLUTION, headers=committee_a.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "submitted"
    assert response.json()["resolution_votes_for"] == 20

    # a submitted listing is no longer editable
    response = await client.patch(base, json={"title": "再改"}, headers=committee_a.headers)
    assert response.status_code == 409
    response = await client.post(f"{base}/approve", headers=supervisor_a.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "approved"
    response = await client.post(f"{base}/announce", headers=supervisor_a.headers)
    assert response.status_code == 200, response.text
    announced = response.json()
    assert announced["status"] == "announced"
    assert announced["announced_at"] is not None
    assert announced["current_end_at"] == announced["bidding_ends_at"]

    # the asset is listed, through the registry (so the change is in its history)
    history = (await client.get(f"/api/assets/{asset['id']}/history", headers=committee_a.headers)).json()
    assert history[-1]["to_status"] == "listed"
    assert listing["number"] in history[-1]["reason"]

    # now it is public, without the reserve
    public = (await client.get(base)).json()
    assert public["status"] == "announced" and "reserve_price" not in public
    assert "resolution_votes_for" not in public
    page = (await client.get("/api/listings", params={"village": VILLAGE_A})).json()
    assert page["total"] == 1 and "reserve_price" not in page["items"][0]
    # the officials see the reserve in the listing itself
    assert (await client.get(base, headers=supervisor_a.headers)).json()["reserve_price"] == "1800.00"

    events = (await client.get(f"{base}/events")).json()
    assert [e["to_status"] for e in events] == ["draft", "submitted", "approved", "announced"]
    assert all(e["actor"] is None for e in events)  # the public sees the steps, not who took them
    official_events = (await client.get(f"{base}/events", headers=committee_a.headers)).json()
    assert official_events[-1]["actor"] == supervisor_a.user.display_name
    assert official_events[0]["actor"] == committee_a.user.display_name


async def test_listing_numbers_are_sequential_per_village(
    client: httpx.AsyncClient, committee_a: Actor
) -> None:
    first = await create_listing(client, committee_a)
    second = await create_listing(client, committee_a)
    assert int(second["number"].rsplit("-", 1)[1]) == int(first["number"].rsplit("-", 1)[1]) + 1


async def test_term_in_months_and_area_in_m2(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor
) -> None:
    shop = await make_asset(client, committee_a, unit="m2", area="300")
    body = terms([shop["id"]], price_basis="per_year", term_years=None, term_months=18)
    del body["term_years"]
    response = await client.post(LISTINGS_A, json=body, headers=committee_a.headers)
    assert response.status_code == 201, response.text
    assert response.json()["term_months"] == 18 and response.json()["area"] is None

    # a per-mu price over an asset measured in m² needs the area in mu
    other = await make_asset(client, committee_a, unit="m2", area="100")
    before = await counts(db)
    response = await client.post(
        LISTINGS_A, json=terms([other["id"]]), headers=committee_a.headers
    )
    assert response.status_code == 422 and field_of(response) == "area"
    assert await counts(db) == before


# ---- refusals of the terms ------------------------------------------------------------------------------

_NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        ({"reserve_price": "1400.00"}, 422, "reserve_price"),
        ({"max_increment": "120.00"}, 422, "max_increment"),
        ({"max_increment": "40.00"}, 422, "max_increment"),
        ({"deposit": "1500.01"}, 422, "deposit"),
        ({"deposit": "0"}, 400, "deposit"),
        ({"starting_price": "0"}, 400, "starting_price"),
        ({"starting_price": 1500.0}, 400, "starting_price"),
        ({"min_increment": "0.001"}, 400, "min_increment"),
        ({"term_months": 12}, 422, "term_months"),
        ({"term_years": None}, 422, "term_months"),
        ({"announcement_days": 3}, 422, "announcement_days"),
        ({"registration_deadline": (_NOW + timedelta(days=5)).isoformat()}, 422, "registration_deadline"),
        ({"bidding_starts_at": (_NOW + timedelta(days=9)).isoformat()}, 422, "bidding_starts_at"),
        ({"bidding_ends_at": (_NOW + timedelta(days=11)).isoformat()}, 422, "bidding_ends_at"),
        ({"bidding_ends_at": "2026-05-01T10:00:00"}, 400, "bidding_ends_at"),  # no time zone
        ({"extension_minutes": 0}, 400, "extension_minutes"),
        ({"extension_minutes": 61}, 400, "extension_minutes"),
        ({"max_extensions": 101}, 400, "max_extensions"),
        ({"trade_type": "gift"}, 400, "trade_type"),
        ({"asset_ids": []}, 400, "asset_ids"),
        ({"unknown": 1}, 400, "unknown"),
    ],
)
async def test_terms_refused_with_their_field_and_nothing_written(
    client: httpx.AsyncClient,
    db: AsyncSession,
    committee_a: Actor,
    overrides: dict[str, Any],
    status: int,
    field: str,
) -> None:
    asset = await make_asset(client, committee_a)
    body = terms([asset["id"]], **overrides)
    before = await counts(db)
    response = await client.post(LISTINGS_A, json=body, headers=committee_a.headers)
    assert response.status_code == status, response.text
    assert field in field_of(response)
    assert response.json()["detail"] and response.json()["detail_en"]
    assert await counts(db) == before


async def test_min_announcement_days_is_set_per_district(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, committee_b: Actor
) -> None:
    district_a = f"{VILLAGE_A[:6]}000000"
    await set_parameter(db, "auction.min_announcement_days", 9, district_a, None)
    await db.commit()
    asset = await make_asset(client, committee_a)
    before = await counts(db)
    response = await client.post(
        LISTINGS_A, json=terms([asset["id"]]), headers=committee_a.headers
    )
    assert response.status_code == 422 and field_of(response) == "announcement_days"
    assert "9" in response.json()["detail"]
    assert await counts(db) == before
    # another district keeps the city's default of 5 days
    await create_listing(client, committee_b, VILLAGE_B)


async def test_assets_must_be_the_villages_available_and_not_in_an_open_listing(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, committee_b: Actor
) -> None:
    asset_b = await make_asset(client, committee_b, VILLAGE_B)
    asset = await make_asset(client, committee_a)
    url = LISTINGS_A
    before = await counts(db)
    for ids, status in (([asset_b["id"]], 422), ([999_999_999], 422), ([asset["id"], asset["id"]], 422)):
        response = await client.post(url, json=terms(ids), headers=committee_a.headers)
        assert response.status_code == status and field_of(response) == "asset_ids", response.text
    assert await counts(db) == before

    response = await client.post(url, json=terms([asset["id"]]), headers=committee_a.headers)
    assert response.status_code == 201
    before = await counts(db)
    response = await client.post(url, json=terms([asset["id"]]), headers=committee_a.headers)
    assert response.status_code == 409 and field_of(response) == "asset_ids"
    assert await counts(db) == before

    disposed = await make_asset(client, committee_a)
    response = await client.post(
        f"/api/assets/{disposed['id']}/status",
        json={"status": "disposed", "reason": "报废"},
        headers=committee_a.headers,
    )
    assert response.status_code == 200
    before = await counts(db)
    response = await client.post(url, json=terms([disposed["id"]]), headers=committee_a.headers)
    assert response.status_code == 422 and field_of(response) == "asset_ids"
    assert await counts(db) == before


async def test_patch_checks_the_whole_terms_and_only_while_draft(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor
) -> None:
    listing = await create_listing(client, committee_a)
    base = f"/api/listings/{listing['id']}"
    before = await counts(db)
    for body, field in (
        ({"starting_price": "2000.00"}, "reserve_price"),  # now above the reserve of 1800
        ({"deposit": "1600.00"}, "deposit"),
        ({"title": None}, "title"),
        ({"term_years": 2, "term_months": 24}, "term_months"),
    ):
        response = await client.patch(base, json=body, headers=committee_a.headers)
        assert response.status_code == 422 and field_of(response) == field, response.text
    assert await counts(db) == before
    assert (await client.get(base, headers=committee_a.headers)).json()["starting_price"] == "1500.00"

    response = await client.patch(
        base, json={"starting_price": "2000.00", "reserve_price": None}, headers=committee_a.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["reserve_price"] is None and response.json()["starting_price"] == "2000.00"


# ---- the resolution -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resolution", "status", "field"),
    [
        ({"votes_for": 19}, 422, "votes_for"),  # 19 of 30 is under two thirds
        ({"votes_for": 20, "votes_against": 11}, 422, "votes_against"),
        ({"members_present": 0}, 400, "members_present"),
        ({"votes_for": -1}, 400, "votes_for"),
        ({"meeting_date": (date.today() + timedelta(days=2)).isoformat()}, 422, "meeting_date"),
    ],
)
async def test_resolution_refused(
    client: httpx.AsyncClient,
    db: AsyncSession,
    committee_a: Actor,
    resolution: dict[str, Any],
    status: int,
    field: str,
) -> None:
    listing = await create_listing(client, committee_a)
    before = await counts(db)
    response = await client.post(
        f"/api/listings/{listing['id']}/submit",
        json={**RESOLUTION, **resolution},
        headers=committee_a.headers,
    )
    assert response.status_code == status, response.text
    assert field_of(response) == field
    assert await counts(db) == before
    detail = (await client.get(f"/api/listings/{listing['id']}", headers=committee_a.headers)).json()
    assert detail["status"] == "draft"


async def test_exactly_two_thirds_is_enough(client: httpx.AsyncClient, committee_a: Actor) -> None:
    listing = await create_listing(client, committee_a)
    response = await client.post(
        f"/api/listings/{listing['id']}/submit",
        json={**RESOLUTION, "members_present": 9, "votes_for": 6, "votes_against": 3},
        headers=committee_a.headers,
    )
    assert response.status_code == 200, response.text


# ---- review, roles and scope ----------------------------------------------------------------------------


async def test_send_back_needs_a_reason_and_returns_to_draft(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, supervisor_a: Actor
) -> None:
    listing = await create_listing(client, committee_a)
    base = f"/api/listings/{listing['id']}"
    assert (await submit(client, base, committee_a)).status_code == 200
    before = await counts(db)
    for body in ({}, {"reason": ""}):
        response = await client.post(f"{base}/send-back", json=body, headers=supervisor_a.headers)
        assert response.status_code == 400 and field_of(response) == "reason"
    assert await counts(db) == before
    reason = {"reason": "起始价偏低，请重新评估"}
    response = await client.post(f"{base}/send-back", json=reason, headers=supervisor_a.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "draft" and response.json()["status_reason"] == "起始价偏低，请重新评估"
    # corrected and submitted again
    response = await client.patch(base, json={"starting_price": "1600.00"}, headers=committee_a.headers)
    assert response.status_code == 200
    response = await client.post(f"{base}/submit", json=RESOLUTION, headers=committee_a.headers)
    assert response.status_code == 200 and response.json()["status_reason"] is None


async def test_roles_and_scope(
    client: httpx.AsyncClient,
    db: AsyncSession,
    make_user: Callable[..., Awaitable[Actor]],
    committee_a: Actor,
    committee_b: Actor,
    supervisor_a: Actor,
    supervisor_b: Actor,
) -> None:
    asset = await make_asset(client, committee_a)
    before = await counts(db)
    # another village's committee cannot create listings here; a supervisor cannot create at all
    response = await client.post(
        LISTINGS_A, json=terms([asset["id"]]), headers=committee_b.headers
    )
    assert response.status_code == 403
    response = await client.post(
        LISTINGS_A, json=terms([asset["id"]]), headers=supervisor_a.headers
    )
    assert response.status_code == 403
    assert await counts(db) == before

    listing = await create_listing(client, committee_a)
    base = f"/api/listings/{listing['id']}"
    before = await counts(db)
    # outsiders do not even see the draft
    assert (await client.patch(base, json={"title": "x"}, headers=committee_b.headers)).status_code == 404
    assert (await client.get(base, headers=committee_b.headers)).status_code == 404
    assert (await client.get(base, headers=supervisor_b.headers)).status_code == 404
    # the supervisor of the township reads the draft but may not edit or submit it
    assert (await client.get(base, headers=supervisor_a.headers)).status_code == 200
    assert (await client.patch(base, json={"title": "x"}, headers=supervisor_a.headers)).status_code == 403
    assert (await submit(client, base, supervisor_a)).status_code == 403
    assert await counts(db) == before

    assert (await submit(client, base, committee_a)).status_code == 200
    before = await counts(db)
    # the committee cannot approve its own listing; another township's supervisor cannot either
    assert (await client.post(f"{base}/approve", headers=committee_a.headers)).status_code == 403
    assert (await client.post(f"{base}/approve", headers=supervisor_b.headers)).status_code == 404
    bidder = await make_user(Role.BIDDER)
    assert (await client.post(f"{base}/approve", headers=bidder.headers)).status_code == 403
    assert (await client.post(f"{base}/approve")).status_code == 401
    assert await counts(db) == before

    # a district supervisor covers every township of the district
    district_supervisor = await make_user(Role.SUPERVISOR, area_code=VILLAGE_A[:6] + "000000")
    assert (await client.post(f"{base}/approve", headers=district_supervisor.headers)).status_code == 200
    before = await counts(db)
    assert (await client.post(f"{base}/announce", headers=supervisor_b.headers)).status_code == 404
    assert (await client.post(f"{base}/announce", headers=committee_a.headers)).status_code == 403
    assert await counts(db) == before
    assert (await client.post(f"{base}/announce", headers=supervisor_a.headers)).status_code == 200
    # once published, outsiders see it but are refused the steps plainly
    before = await counts(db)
    response = await client.post(f"{base}/suspend", json={"reason": "x"}, headers=supervisor_b.headers)
    assert response.status_code == 403
    response = await client.post(f"{base}/terminate", json={"reason": "x"}, headers=committee_a.headers)
    assert response.status_code == 403  # the committee may end only its own draft
    assert await counts(db) == before

    # the village's list: officials only, all statuses
    assert (await client.get(LISTINGS_A, headers=committee_b.headers)).status_code == 403
    assert (await client.get(LISTINGS_A, headers=bidder.headers)).status_code == 403
    page = (await client.get(LISTINGS_A, headers=supervisor_a.headers)).json()
    assert page["total"] >= 1 and "reserve_price" in page["items"][0]


async def test_invalid_transitions_are_409(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, supervisor_a: Actor
) -> None:
    listing = await create_listing(client, committee_a)
    base = f"/api/listings/{listing['id']}"
    before = await counts(db)
    for path, body in (("approve", None), ("announce", None), ("resume", {}), ("send-back", {"reason": "x"})):
        response = await client.post(f"{base}/{path}", json=body, headers=supervisor_a.headers)
        assert response.status_code == 409, (path, response.text)
        assert response.json()["errors"][0]["field"] == "status"
    response = await client.post(f"{base}/relist", json={}, headers=committee_a.headers)
    assert response.status_code == 400  # the body is checked first
    assert await counts(db) == before


async def test_announce_refused_when_registration_would_close_inside_the_announcement(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, supervisor_a: Actor
) -> None:
    listing = await create_listing(client, committee_a)
    base = f"/api/listings/{listing['id']}"
    assert (await submit(client, base, committee_a)).status_code == 200
    assert (await client.post(f"{base}/approve", headers=supervisor_a.headers)).status_code == 200
    # time passed while it waited: the deadline is now fewer than 7 days away
    await db.execute(
        update(Listing)
        .where(Listing.id == listing["id"])
        .values(registration_deadline=datetime.now(UTC) + timedelta(days=6))
    )
    await db.commit()
    before = await counts(db)
    response = await client.post(f"{base}/announce", headers=supervisor_a.headers)
    assert response.status_code == 422 and field_of(response) == "registration_deadline"
    assert await counts(db) == before
    detail = (await client.get(base, headers=committee_a.headers)).json()
    assert detail["status"] == "approved" and detail["assets"][0]["id"]
    asset = (await client.get(f"/api/assets/{detail['assets'][0]['id']}", headers=committee_a.headers)).json()
    assert asset["status"] == "idle"


async def test_suspend_resume_terminate(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, supervisor_a: Actor
) -> None:
    listing = await announced_listing(client, committee_a, supervisor_a)
    base = f"/api/listings/{listing['id']}"
    before = await counts(db)
    response = await client.post(f"{base}/suspend", json={}, headers=supervisor_a.headers)
    assert response.status_code == 400 and field_of(response) == "reason"
    assert await counts(db) == before
    reason = {"reason": "收到权属异议，暂停交易"}
    response = await client.post(f"{base}/suspend", json=reason, headers=supervisor_a.headers)
    assert response.status_code == 200 and response.json()["status"] == "suspended"
    public = (await client.get(base)).json()
    assert public["status"] == "suspended" and public["status_reason"] == "收到权属异议，暂停交易"
    response = await client.post(f"{base}/resume", json={}, headers=supervisor_a.headers)
    assert response.status_code == 200 and response.json()["status"] == "announced"
    assert response.json()["status_reason"] is None

    asset_id = listing["assets"][0]["id"]
    reason = {"reason": "村集体收回自用"}
    response = await client.post(f"{base}/terminate", json=reason, headers=supervisor_a.headers)
    assert response.status_code == 200 and response.json()["status"] == "terminated"
    asset = (await client.get(f"/api/assets/{asset_id}", headers=committee_a.headers)).json()
    assert asset["status"] == "idle"
    events = (await client.get(f"{base}/events")).json()
    assert [e["to_status"] for e in events][-4:] == ["announced", "suspended", "announced", "terminated"]
    assert events[-1]["note"] == "村集体收回自用"  # the public reason
    before = await counts(db)
    response = await client.post(f"{base}/suspend", json={"reason": "x"}, headers=supervisor_a.headers)
    assert response.status_code == 409
    assert await counts(db) == before
    # the asset can be listed again
    response = await client.post(
        LISTINGS_A, json=terms([asset_id]), headers=committee_a.headers
    )
    assert response.status_code == 201, response.text


async def test_resume_after_the_window_passed_needs_a_new_window(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, supervisor_a: Actor
) -> None:
    listing = await announced_listing(client, committee_a, supervisor_a)
    base = f"/api/listings/{listing['id']}"
    response = await client.post(f"{base}/suspend", json={"reason": "异议"}, headers=supervisor_a.headers)
    assert response.status_code == 200
    past = datetime.now(UTC) - timedelta(days=1)
    await db.execute(
        update(Listing)
        .where(Listing.id == listing["id"])
        .values(
            registration_deadline=past - timedelta(days=2),
            bidding_starts_at=past - timedelta(hours=3),
            bidding_ends_at=past,
            current_end_at=past,
        )
    )
    await db.commit()
    before = await counts(db)
    response = await client.post(f"{base}/resume", json={}, headers=supervisor_a.headers)
    assert response.status_code == 422 and field_of(response) == "bidding_ends_at"
    assert await counts(db) == before
    start = datetime.now(UTC) + timedelta(days=3)
    end = start + timedelta(hours=1)
    body = {"bidding_starts_at": start.isoformat(), "bidding_ends_at": end.isoformat()}
    response = await client.post(f"{base}/resume", json=body, headers=supervisor_a.headers)
    assert response.status_code == 200, response.text
    assert response.json()["current_end_at"] == response.json()["bidding_ends_at"]


async def test_committee_terminates_its_own_draft(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, committee_b: Actor
) -> None:
    listing = await create_listing(client, committee_a)
    base = f"/api/listings/{listing['id']}"
    before = await counts(db)
    response = await client.post(f"{base}/terminate", json={"reason": "x"}, headers=committee_b.headers)
    assert response.status_code == 404
    assert await counts(db) == before
    response = await client.post(f"{base}/terminate", json={"reason": "决定不再出租"}, headers=committee_a.headers)
    assert response.status_code == 200 and response.json()["status"] == "terminated"
    assert (await client.get(base)).status_code == 404  # never published


# ---- relisting ------------------------------------------------------------------------------------------


async def relist(client: httpx.AsyncClient, base: str, body: dict[str, Any], actor: Actor) -> httpx.Response:
    return await client.post(f"{base}/relist", json=body, headers=actor.headers)


async def _failed(db: AsyncSession, listing: dict[str, Any]) -> None:
    """Stand in for the close (the bidding module's): the listing failed and its assets are idle again."""
    await db.execute(update(Listing).where(Listing.id == listing["id"]).values(status="failed"))
    await db.execute(
        update(Asset).where(Asset.id.in_([a["id"] for a in listing["assets"]])).values(status="idle")
    )
    await db.commit()


async def test_relist_a_failed_listing_within_the_allowed_cut(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, committee_b: Actor, supervisor_a: Actor
) -> None:
    listing = await announced_listing(client, committee_a, supervisor_a)
    base = f"/api/listings/{listing['id']}"
    now = datetime.now(UTC)
    dates = {
        "registration_deadline": (now + timedelta(days=12)).isoformat(),
        "bidding_starts_at": (now + timedelta(days=13)).isoformat(),
        "bidding_ends_at": (now + timedelta(days=13, hours=1)).isoformat(),
    }
    before = await counts(db)
    response = await relist(client, base, {"starting_price": "1300.00", **dates}, committee_a)
    assert response.status_code == 409  # not failed yet
    await _failed(db, listing)
    before = await counts(db)
    # 20 % below 1500 is 1200: 1199.99 is too low
    response = await relist(client, base, {"starting_price": "1199.99", **dates}, committee_a)
    assert response.status_code == 422 and field_of(response) == "starting_price"
    assert "1200.00" in response.json()["detail"]
    response = await client.post(
        f"{base}/relist", json={"starting_price": "1300.00", "reserve_price": "1400.00", **dates},
        headers=committee_a.headers,
    )
    assert response.status_code == 422 and field_of(response) == "reserve_price"  # 1800 less 20 % is 1440
    response = await relist(client, base, {"starting_price": "1200.00", **dates}, committee_b)
    assert response.status_code == 403
    assert await counts(db) == before

    response = await client.post(
        f"{base}/relist",
        json={"starting_price": "1200.00", "reserve_price": "1440.00", **dates},
        headers=committee_a.headers,
    )
    assert response.status_code == 201, response.text
    relisted = response.json()
    assert relisted["status"] == "draft" and relisted["relisted_from_id"] == listing["id"]
    assert relisted["starting_price"] == "1200.00" and relisted["reserve_price"] == "1440.00"
    assert relisted["number"] != listing["number"]
    assert relisted["title"] == listing["title"] and relisted["term_months"] == listing["term_months"]
    assert [a["id"] for a in relisted["assets"]] == [a["id"] for a in listing["assets"]]
    # only one new draft of the same assets
    before = await counts(db)
    response = await relist(client, base, {"starting_price": "1200.00", **dates}, committee_a)
    assert response.status_code == 409 and field_of(response) == "asset_ids"
    assert await counts(db) == before


async def test_relist_cut_is_a_parameter(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor, supervisor_a: Actor
) -> None:
    listing = await announced_listing(client, committee_a, supervisor_a, reserve_price=None)
    await _failed(db, listing)
    await set_parameter(db, "auction.relist_max_cut", 0.5, None, None)
    await db.commit()
    now = datetime.now(UTC)
    response = await client.post(
        f"/api/listings/{listing['id']}/relist",
        json={
            "starting_price": "750.00",
            "deposit": "700.00",
            "registration_deadline": (now + timedelta(days=12)).isoformat(),
            "bidding_starts_at": (now + timedelta(days=13)).isoformat(),
            "bidding_ends_at": (now + timedelta(days=13, hours=1)).isoformat(),
        },
        headers=committee_a.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["deposit"] == "700.00"


# ---- public reads ---------------------------------------------------------------------------------------


async def test_public_list_filters_and_pages(
    client: httpx.AsyncClient,
    committee_a: Actor,
    committee_b: Actor,
    supervisor_a: Actor,
    supervisor_b: Actor,
) -> None:
    a = await announced_listing(client, committee_a, supervisor_a, title="白云鱼塘招租")
    b = await announced_listing(
        client, committee_b, supervisor_b, VILLAGE_B, title="增城鱼塘发包", trade_type="contracting"
    )
    await create_listing(client, committee_a)  # a draft: never in the public list

    async def ids(**params: Any) -> list[int]:
        response = await client.get("/api/listings", params=params)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert set(await ids()) >= {a["id"], b["id"]}
    assert a["id"] in await ids(district=VILLAGE_A[:6]) and b["id"] not in await ids(district=VILLAGE_A[:6])
    assert a["id"] in await ids(township=VILLAGE_A[:9]) and b["id"] not in await ids(township=VILLAGE_A[:9])
    assert await ids(village=VILLAGE_B) == [b["id"]]
    contracting = await ids(trade_type="contracting")
    assert b["id"] in contracting and a["id"] not in contracting
    assert a["id"] in await ids(q="白云鱼塘") and b["id"] not in await ids(q="白云鱼塘")
    assert a["id"] in await ids(asset_kind="fish_pond") and a["id"] not in await ids(asset_kind="shop")
    assert a["id"] in await ids(status="announced") and a["id"] not in await ids(status="draft")
    page = (await client.get("/api/listings", params={"page_size": 1})).json()
    assert len(page["items"]) == 1 and page["total"] >= 2
    # even an official asking the public list gets no reserve
    page = (await client.get("/api/listings", headers=supervisor_a.headers)).json()
    assert all("reserve_price" not in item for item in page["items"])
    assert (await client.get("/api/listings", params={"status": "nonsense"})).status_code == 400
    assert (await client.get("/api/listings", params={"district": "12"})).status_code == 400
    assert (await client.get("/api/listings/999999999")).status_code == 404
