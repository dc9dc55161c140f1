"""Every route × every role against a declared matrix, and no object of another village reachable by id.

The matrix below is written independently of the code: a route added without a line here fails
`test_every_route_is_declared`, and a route whose declared access differs from the line fails too.
The walk then calls every route as the anonymous public, an admin, a committee member and a supervisor of
village A, a committee member of village B, a supervisor of B's township and a bidder, and checks:
- a role the matrix does not allow gets 401 (anonymous) or 403, before its body is even read;
- an allowed role never gets 401/403 on its own village's objects (404 only for objects the route hides);
- a committee member or supervisor of *another* village gets 403 or 404 on village A's objects, reads and
  writes alike (writes carry valid bodies, so the refusal is the access check's, not the validator's);
- nothing answers 5xx.
Pages are called through each actor's own browser session (logged in through the login form): an anonymous
visitor sent to the login form counts as 401, and a role refused with the Chinese error page as 403.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from litestar import Litestar

from sanzi.platform.models import Bidder, Role
from sanzi.warnings.models import Alert
from tests.conftest import VILLAGE_A, Actor, Browser

PUBLIC = "public"
AUTH = "authenticated"
ADMIN = frozenset({"admin"})
BOOKS_READ = frozenset({"admin", "committee", "supervisor"})
VILLAGE_WRITE = frozenset({"admin", "committee"})
SUPERVISE = frozenset({"admin", "supervisor"})
BIDDER = frozenset({"bidder"})
OFFICIALS = frozenset({"admin", "committee", "supervisor"})

# (method, path) -> who may call it
MATRIX: dict[tuple[str, str], Any] = {
    # platform
    ("GET", "/api/health"): PUBLIC,
    ("GET", "/api/districts"): PUBLIC,
    ("GET", "/api/townships"): PUBLIC,
    ("GET", "/api/villages"): PUBLIC,
    ("GET", "/api/villages/{code:str}"): PUBLIC,
    ("POST", "/api/auth/token"): PUBLIC,
    ("DELETE", "/api/auth/token"): AUTH,
    ("GET", "/api/auth/me"): AUTH,
    ("POST", "/api/auth/password"): AUTH,
    ("GET", "/api/users"): ADMIN,
    ("POST", "/api/users"): ADMIN,
    ("GET", "/api/users/{user_id:int}"): ADMIN,
    ("PATCH", "/api/users/{user_id:int}"): ADMIN,
    ("POST", "/api/bidders"): PUBLIC,
    ("GET", "/api/bidders/me"): BIDDER,
    ("PATCH", "/api/bidders/me"): BIDDER,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("POST", "/logout"): PUBLIC,
    ("GET", "/account"): AUTH,
    # pages: shared infrastructure
    ("GET", "/static/{file_path:path}"): PUBLIC,
    ("GET", "/lang/{lang:str}"): PUBLIC,
    # pages: the public portal
    ("GET", "/"): PUBLIC,
    ("GET", "/announcements"): PUBLIC,
    ("GET", "/listings/{listing_id:int}"): PUBLIC,
    ("GET", "/results"): PUBLIC,
    ("GET", "/search"): PUBLIC,
    # pages: live bidding, bidders, approval queues
    ("GET", "/listings/{listing_id:int}/live"): PUBLIC,
    ("GET", "/listings/{listing_id:int}/live/fragment"): PUBLIC,
    ("GET", "/listings/{listing_id:int}/live/events"): PUBLIC,
    ("GET", "/listings/{listing_id:int}/bid"): BIDDER,
    ("POST", "/listings/{listing_id:int}/bid"): BIDDER,
    ("POST", "/listings/{listing_id:int}/register"): BIDDER,
    ("GET", "/bidder/signup"): PUBLIC,
    ("POST", "/bidder/signup"): PUBLIC,
    ("GET", "/bidder/profile"): BIDDER,
    ("POST", "/bidder/profile"): BIDDER,
    ("GET", "/bidder/applications"): BIDDER,
    ("GET", "/supervisor/approvals"): SUPERVISE,
    ("POST", "/supervisor/approvals/listings/{listing_id:int}/approve"): SUPERVISE,
    ("POST", "/supervisor/approvals/listings/{listing_id:int}/send-back"): SUPERVISE,
    ("POST", "/supervisor/approvals/listings/{listing_id:int}/announce"): SUPERVISE,
    ("POST", "/supervisor/approvals/registrations/{registration_id:int}/qualify"): SUPERVISE,
    ("POST", "/supervisor/approvals/registrations/{registration_id:int}/reject"): SUPERVISE,
    # books
    ("GET", "/api/villages/{code:str}/accounts"): BOOKS_READ,
    ("GET", "/api/villages/{code:str}/entries"): BOOKS_READ,
    ("POST", "/api/villages/{code:str}/entries"): VILLAGE_WRITE,
    ("GET", "/api/entries/{entry_id:int}"): BOOKS_READ,
    ("POST", "/api/entries/{entry_id:int}/reverse"): VILLAGE_WRITE,
    ("GET", "/api/villages/{code:str}/trial-balance"): BOOKS_READ,
    ("GET", "/api/villages/{code:str}/accounts/{account_code:str}/statement"): BOOKS_READ,
    ("GET", "/api/villages/{code:str}/income-expenditure"): BOOKS_READ,
    ("GET", "/api/villages/{code:str}/ledger/verify"): PUBLIC,
    ("GET", "/api/villages/{code:str}/ledger/proof"): PUBLIC,
    ("GET", "/api/ledger/roots"): PUBLIC,
    ("GET", "/api/ledger/roots/latest"): PUBLIC,
    ("POST", "/api/ledger/roots"): ADMIN,
    # assets and contracts
    ("GET", "/api/villages/{code:str}/assets"): BOOKS_READ,
    ("POST", "/api/villages/{code:str}/assets"): VILLAGE_WRITE,
    ("GET", "/api/assets/{asset_id:int}"): BOOKS_READ,
    ("PATCH", "/api/assets/{asset_id:int}"): VILLAGE_WRITE,
    ("POST", "/api/assets/{asset_id:int}/status"): VILLAGE_WRITE,
    ("GET", "/api/assets/{asset_id:int}/history"): BOOKS_READ,
    ("GET", "/api/villages/{code:str}/contracts"): BOOKS_READ,
    ("POST", "/api/villages/{code:str}/contracts"): VILLAGE_WRITE,
    ("GET", "/api/contracts/{contract_id:int}"): BOOKS_READ,
    ("GET", "/api/contracts/{contract_id:int}/schedule"): BOOKS_READ,
    ("POST", "/api/contracts/{contract_id:int}/receipts"): VILLAGE_WRITE,
    ("GET", "/api/villages/{code:str}/arrears"): BOOKS_READ,
    # listings
    ("GET", "/api/listings"): PUBLIC,
    ("GET", "/api/listings/{listing_id:int}"): PUBLIC,
    ("GET", "/api/listings/{listing_id:int}/events"): PUBLIC,
    ("GET", "/api/villages/{code:str}/listings"): BOOKS_READ,
    ("POST", "/api/villages/{code:str}/listings"): VILLAGE_WRITE,
    ("PATCH", "/api/listings/{listing_id:int}"): VILLAGE_WRITE,
    ("POST", "/api/listings/{listing_id:int}/submit"): VILLAGE_WRITE,
    ("POST", "/api/listings/{listing_id:int}/approve"): SUPERVISE,
    ("POST", "/api/listings/{listing_id:int}/send-back"): SUPERVISE,
    ("POST", "/api/listings/{listing_id:int}/announce"): SUPERVISE,
    ("POST", "/api/listings/{listing_id:int}/suspend"): SUPERVISE,
    ("POST", "/api/listings/{listing_id:int}/resume"): SUPERVISE,
    ("POST", "/api/listings/{listing_id:int}/terminate"): OFFICIALS,
    ("POST", "/api/listings/{listing_id:int}/relist"): VILLAGE_WRITE,
    # registrations and deposits
    ("POST", "/api/listings/{listing_id:int}/registrations"): BIDDER,
    ("GET", "/api/listings/{listing_id:int}/registrations"): OFFICIALS,
    ("GET", "/api/registrations/mine"): BIDDER,
    ("POST", "/api/registrations/{registration_id:int}/deposit"): VILLAGE_WRITE,
    ("POST", "/api/registrations/{registration_id:int}/qualify"): SUPERVISE,
    ("POST", "/api/registrations/{registration_id:int}/reject"): SUPERVISE,
    # bidding and results
    ("POST", "/api/listings/{listing_id:int}/bids"): BIDDER,
    ("GET", "/api/listings/{listing_id:int}/live"): PUBLIC,
    ("GET", "/api/listings/{listing_id:int}/stream"): PUBLIC,
    ("GET", "/api/listings/{listing_id:int}/result"): PUBLIC,
    ("GET", "/api/results"): PUBLIC,
    ("GET", "/api/listings/{listing_id:int}/bidders"): OFFICIALS,
    ("POST", "/api/listings/{listing_id:int}/contract"): VILLAGE_WRITE,
    ("POST", "/api/listings/{listing_id:int}/forfeit"): SUPERVISE,
    # village governance: cadres, relatives, elections, candidates
    ("GET", "/api/villages/{code:str}/cadres"): OFFICIALS,
    ("POST", "/api/villages/{code:str}/cadres"): VILLAGE_WRITE,
    ("PATCH", "/api/cadres/{cadre_id:int}"): VILLAGE_WRITE,
    ("DELETE", "/api/cadres/{cadre_id:int}"): VILLAGE_WRITE,
    ("POST", "/api/cadres/{cadre_id:int}/relatives"): VILLAGE_WRITE,
    ("DELETE", "/api/relatives/{relative_id:int}"): VILLAGE_WRITE,
    ("GET", "/api/villages/{code:str}/elections"): PUBLIC,
    ("POST", "/api/villages/{code:str}/elections"): SUPERVISE,
    ("POST", "/api/elections/bulk"): ADMIN,
    ("GET", "/api/elections/{election_id:int}/candidates"): OFFICIALS,
    ("POST", "/api/elections/{election_id:int}/candidates"): SUPERVISE,
    # warnings
    ("GET", "/api/alerts"): OFFICIALS,
    ("GET", "/api/alerts/{alert_id:int}"): OFFICIALS,
    ("POST", "/api/alerts/{alert_id:int}/assign"): SUPERVISE,
    ("POST", "/api/alerts/{alert_id:int}/investigate"): SUPERVISE,
    ("POST", "/api/alerts/{alert_id:int}/confirm"): SUPERVISE,
    ("POST", "/api/alerts/{alert_id:int}/dismiss"): SUPERVISE,
    ("POST", "/api/alerts/{alert_id:int}/rectify"): SUPERVISE,
    ("POST", "/api/alerts/{alert_id:int}/responses"): frozenset({"committee"}),
    ("GET", "/api/rules"): PUBLIC,
    ("PUT", "/api/rules/{rule_id:str}/parameters/{name:str}"): ADMIN,
    ("POST", "/api/warnings/scan"): ADMIN,
    ("GET", "/api/integrity"): PUBLIC,
    ("GET", "/api/villages/{code:str}/integrity"): PUBLIC,
    # documents (PDF) and the public check of a transaction certificate
    ("GET", "/listings/{listing_id:int}/announcement.pdf"): PUBLIC,
    ("GET", "/listings/{listing_id:int}/result.pdf"): PUBLIC,
    ("GET", "/listings/{listing_id:int}/certificate.pdf"): frozenset({"admin", "committee", "supervisor", "bidder"}),
    ("GET", "/verify"): PUBLIC,
    ("GET", "/verify/{code:str}"): PUBLIC,
    ("GET", "/api/verify/{code:str}"): PUBLIC,
    ("GET", "/alerts/{alert_id:int}/case-file.pdf"): SUPERVISE,
    ("GET", "/reports/townships/{township_code:str}/{month:str}"): SUPERVISE,
    # pages: the committee's assets, books, contracts and listings; each village's public disclosure
    ("GET", "/committee/assets"): BOOKS_READ,
    ("GET", "/committee/assets/new"): VILLAGE_WRITE,
    ("POST", "/committee/assets/new"): VILLAGE_WRITE,
    ("GET", "/committee/assets/{asset_id:int}"): BOOKS_READ,
    ("GET", "/committee/assets/{asset_id:int}/edit"): VILLAGE_WRITE,
    ("POST", "/committee/assets/{asset_id:int}/edit"): VILLAGE_WRITE,
    ("POST", "/committee/assets/{asset_id:int}/status"): VILLAGE_WRITE,
    ("GET", "/committee/books"): BOOKS_READ,
    ("GET", "/committee/books/new"): VILLAGE_WRITE,
    ("POST", "/committee/books/new"): VILLAGE_WRITE,
    ("GET", "/committee/books/entries/{entry_id:int}"): BOOKS_READ,
    ("POST", "/committee/books/entries/{entry_id:int}/reverse"): VILLAGE_WRITE,
    ("GET", "/committee/books/trial-balance"): BOOKS_READ,
    ("GET", "/committee/books/statements"): BOOKS_READ,
    ("GET", "/committee/books/accounts/{account_code:str}"): BOOKS_READ,
    ("GET", "/committee/contracts"): BOOKS_READ,
    ("GET", "/committee/contracts/arrears"): BOOKS_READ,
    ("GET", "/committee/contracts/new"): VILLAGE_WRITE,
    ("POST", "/committee/contracts/new"): VILLAGE_WRITE,
    ("GET", "/committee/contracts/{contract_id:int}"): BOOKS_READ,
    ("POST", "/committee/contracts/{contract_id:int}/receipts"): VILLAGE_WRITE,
    ("GET", "/committee/listings"): BOOKS_READ,
    ("GET", "/committee/listings/new"): VILLAGE_WRITE,
    ("POST", "/committee/listings/new"): VILLAGE_WRITE,
    ("GET", "/committee/listings/{listing_id:int}"): BOOKS_READ,
    ("GET", "/committee/listings/{listing_id:int}/edit"): VILLAGE_WRITE,
    ("POST", "/committee/listings/{listing_id:int}/edit"): VILLAGE_WRITE,
    ("POST", "/committee/listings/{listing_id:int}/submit"): VILLAGE_WRITE,
    ("POST", "/committee/listings/{listing_id:int}/withdraw"): VILLAGE_WRITE,
    ("POST", "/committee/listings/{listing_id:int}/relist"): VILLAGE_WRITE,
    ("POST", "/committee/listings/{listing_id:int}/contract"): VILLAGE_WRITE,
    ("POST", "/committee/registrations/{registration_id:int}/deposit"): VILLAGE_WRITE,
    ("GET", "/villages"): PUBLIC,
    ("GET", "/villages/{code:str}"): PUBLIC,
    ("GET", "/villages/{code:str}/trades"): PUBLIC,
    # pages: oversight (warnings dashboard, alert review, the committee's alerts) and administration
    ("GET", "/supervisor/warnings"): SUPERVISE,
    ("GET", "/supervisor/alerts"): SUPERVISE,
    ("GET", "/supervisor/alerts/{alert_id:int}"): SUPERVISE,
    ("POST", "/supervisor/alerts/{alert_id:int}/assign"): SUPERVISE,
    ("POST", "/supervisor/alerts/{alert_id:int}/investigate"): SUPERVISE,
    ("POST", "/supervisor/alerts/{alert_id:int}/confirm"): SUPERVISE,
    ("POST", "/supervisor/alerts/{alert_id:int}/dismiss"): SUPERVISE,
    ("POST", "/supervisor/alerts/{alert_id:int}/rectify"): SUPERVISE,
    ("GET", "/committee/alerts"): VILLAGE_WRITE,
    ("GET", "/committee/alerts/{alert_id:int}"): VILLAGE_WRITE,
    ("POST", "/committee/alerts/{alert_id:int}/responses"): frozenset({"committee"}),
    ("GET", "/admin/parameters"): ADMIN,
    ("POST", "/admin/parameters"): ADMIN,
    ("GET", "/admin/users"): ADMIN,
    ("GET", "/admin/users/new"): ADMIN,
    ("POST", "/admin/users/new"): ADMIN,
    ("GET", "/admin/users/{user_id:int}"): ADMIN,
    ("POST", "/admin/users/{user_id:int}"): ADMIN,
    ("POST", "/admin/users/{user_id:int}/password"): ADMIN,
    ("POST", "/admin/users/{user_id:int}/active"): ADMIN,
    ("GET", "/admin/elections"): ADMIN,
    ("POST", "/admin/elections/bulk"): ADMIN,
    ("GET", "/admin/elections/villages/{code:str}"): ADMIN,
    ("POST", "/admin/elections/villages/{code:str}"): ADMIN,
    ("POST", "/admin/elections/villages/{code:str}/candidates"): ADMIN,
    ("GET", "/admin/cadres"): ADMIN,
    ("GET", "/admin/cadres/villages/{code:str}"): ADMIN,
    ("POST", "/admin/cadres/villages/{code:str}"): ADMIN,
    ("GET", "/admin/cadres/{cadre_id:int}"): ADMIN,
    ("POST", "/admin/cadres/{cadre_id:int}"): ADMIN,
    ("POST", "/admin/cadres/{cadre_id:int}/end"): ADMIN,
    ("POST", "/admin/cadres/{cadre_id:int}/relatives"): ADMIN,
    ("POST", "/admin/cadres/relatives/{relative_id:int}/delete"): ADMIN,
    # interchange
    ("POST", "/api/imports"): ADMIN,
}

# a live stream that only ends when its auction closes (the in-process client waits for whole answers);
# it is public, and tests/auction/test_stream.py reads it
STREAMING = {("GET", "/api/listings/{listing_id:int}/stream"), ("GET", "/listings/{listing_id:int}/live/events")}


def registered_routes(app: Litestar) -> dict[tuple[str, str], Any]:
    routes = {}
    for route in app.routes:
        if route.path.startswith("/schema"):
            continue  # Litestar's own OpenAPI pages
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if method in ("HEAD", "OPTIONS"):
                    continue
                access = handler.opt.get("access")
                routes[(method, route.path)] = frozenset(access) if isinstance(access, tuple) else access
    return routes


def test_every_route_is_declared(app: Litestar) -> None:
    routes = registered_routes(app)
    assert set(routes) - set(MATRIX) == set(), "routes missing from the access matrix"
    assert set(MATRIX) - set(routes) == set(), "matrix lines for routes that do not exist"
    wrong = {key: (routes[key], MATRIX[key]) for key in routes if routes[key] != MATRIX[key]}
    assert wrong == {}, "declared access differs from the matrix"


def test_every_route_declares_access(app: Litestar) -> None:
    undeclared = [key for key, access in registered_routes(app).items() if access is None]
    assert undeclared == []


async def _world(client: httpx.AsyncClient, db: Any, make_user: Any) -> dict[str, Any]:
    """Objects of village A for every kind of path parameter, and the actors who will call the routes."""
    actors: dict[str, Actor | None] = {
        "anonymous": None,
        "admin": await make_user(Role.ADMIN),
        "committee_a": await make_user(Role.COMMITTEE, village_code=VILLAGE_A),
        "supervisor_a": await make_user(Role.SUPERVISOR, area_code=VILLAGE_A[:9] + "000"),
        "committee_b": await make_user(Role.COMMITTEE, village_code="440118001200"),
        "supervisor_b": await make_user(Role.SUPERVISOR, area_code="440118001000"),
        "bidder": await make_user(Role.BIDDER),
    }
    bidder = actors["bidder"]
    assert bidder is not None
    db.add(
        Bidder(user_id=bidder.id, kind="person", name="竞买人甲", id_number="440111198001011231", phone="13800138000")
    )
    await db.commit()
    committee, supervisor = actors["committee_a"], actors["supervisor_a"]
    assert committee is not None and supervisor is not None

    async def ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code in (200, 201), response.text
        return response.json()

    village = f"/api/villages/{VILLAGE_A}"
    asset = await ok(await client.post(f"{village}/assets", json=ASSET, headers=committee.headers))
    pond = await ok(
        await client.post(f"{village}/assets", json={**ASSET, "code": "M-2"}, headers=committee.headers)
    )
    entry = await ok(await client.post(f"{village}/entries", json=ENTRY, headers=committee.headers))
    contract = await ok(
        await client.post(f"{village}/contracts", json=contract_body(asset["id"]), headers=committee.headers)
    )
    listing = await ok(await client.post(f"{village}/listings", json=terms(pond["id"]), headers=committee.headers))
    base = f"/api/listings/{listing['id']}"
    await ok(await client.post(f"{base}/submit", json=RESOLUTION, headers=committee.headers))
    await ok(await client.post(f"{base}/approve", json={}, headers=supervisor.headers))
    await ok(await client.post(f"{base}/announce", json={}, headers=supervisor.headers))
    registration = await ok(await client.post(f"{base}/registrations", json={}, headers=bidder.headers))
    cadre = await ok(await client.post(f"{village}/cadres", json=CADRE, headers=committee.headers))
    relative = await ok(
        await client.post(f"/api/cadres/{cadre['id']}/relatives", json=RELATIVE, headers=committee.headers)
    )
    election = await ok(
        await client.post(f"{village}/elections", json={"election_date": "2026-12-20"}, headers=supervisor.headers)
    )
    now = datetime.now(UTC)
    alert = Alert(
        rule_id="BID-SINGLE-BIDDER", family="bid", subject_type="listing", subject_id=str(listing["id"]),
        village_code=VILLAGE_A, township_code=VILLAGE_A[:9] + "000", district_code=VILLAGE_A[:6] + "000000",
        severity="orange", score=60.0, explanation="矩阵测试", evidence={"listings": [listing["id"]]},
        occurred_at=now, first_raised_at=now, last_updated_at=now,
    )
    db.add(alert)
    await db.commit()
    return {
        "actors": actors,
        "params": {
            "code": VILLAGE_A,
            "user_id": committee.id,
            "entry_id": entry["id"],
            "account_code": "102",
            "asset_id": asset["id"],
            "contract_id": contract["id"],
            "listing_id": listing["id"],
            "registration_id": registration["id"],
            "cadre_id": cadre["id"],
            "relative_id": relative["id"],
            "election_id": election["id"],
            "alert_id": alert.id,
            "rule_id": "BID-SINGLE-BIDDER",
            "name": "max_bidders",
            "township_code": VILLAGE_A[:9] + "000",
            "month": f"{now.year}-{now.month:02d}.pdf",
            "file_path": "sanzi.css",
            "lang": "en",
        },
        "supervisor_b_id": actors["supervisor_b"].id if actors["supervisor_b"] else None,
        "asset_id": asset["id"],
    }


ASSET = {"code": "M-1", "name": "矩阵测试鱼塘", "kind": "fish_pond", "area": "10", "area_unit": "mu", "location": "村东"}
ENTRY = {
    "entry_date": "2025-03-01",
    "memo": "收承包款",
    "lines": [{"account_code": "102", "debit": "100.00"}, {"account_code": "50101", "credit": "100.00"}],
}
RESOLUTION = {"meeting_date": "2026-01-10", "members_present": 30, "votes_for": 25, "votes_against": 2}
CADRE = {"name": "李四", "body": "committee", "position": "委员", "term_start": "2021-03-01"}
RELATIVE = {"name": "李小四", "relation": "子女"}


def contract_body(asset_id: int, number: str = "M-HT-1") -> dict[str, Any]:
    return {
        "number": number,
        "asset_id": asset_id,
        "trade_type": "contracting",
        "counterparty_name": "张三",
        "start_date": "2025-01-01",
        "term_years": 3,
        "price_basis": "per_year",
        "unit_price": "1000",
        "payment_frequency": "annual",
        "signed_on": "2024-12-20",
        "origin": "direct",
        "origin_reason": "续包",
    }


def terms(asset_id: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "asset_ids": [asset_id],
        "title": "矩阵测试鱼塘出租",
        "trade_type": "lease",
        "term_years": 3,
        "price_basis": "per_year",
        "starting_price": "1500.00",
        "min_increment": "50.00",
        "max_increment": "500.00",
        "deposit": "100.00",
        "announcement_days": 7,
        "registration_deadline": (now + timedelta(days=10)).isoformat(),
        "bidding_starts_at": (now + timedelta(days=11)).isoformat(),
        "bidding_ends_at": (now + timedelta(days=11, hours=2)).isoformat(),
        "extension_minutes": 5,
        "max_extensions": 10,
    }


def valid_body(method: str, path: str, world: dict[str, Any]) -> Any:
    """A body the route's validator accepts, so that an out-of-scope caller meets the access check."""
    now = datetime.now(UTC)
    bodies: dict[str, Any] = {
        "/api/villages/{code:str}/entries": ENTRY,
        "/api/entries/{entry_id:int}/reverse": {},
        "/api/villages/{code:str}/assets": {**ASSET, "code": "M-3"},
        "/api/assets/{asset_id:int}": {"name": "改名"},
        "/api/assets/{asset_id:int}/status": {"status": "disposed", "reason": "报废"},
        "/api/villages/{code:str}/contracts": contract_body(world["asset_id"], "M-HT-2"),
        "/api/contracts/{contract_id:int}/receipts": {"amount": "10.00", "received_on": "2025-01-05"},
        "/api/villages/{code:str}/listings": terms(world["asset_id"]),
        "/api/listings/{listing_id:int}": {"title": "改名"},
        "/api/listings/{listing_id:int}/submit": RESOLUTION,
        "/api/listings/{listing_id:int}/approve": {},
        "/api/listings/{listing_id:int}/send-back": {"reason": "材料不全"},
        "/api/listings/{listing_id:int}/announce": {},
        "/api/listings/{listing_id:int}/suspend": {"reason": "有异议"},
        "/api/listings/{listing_id:int}/resume": {},
        "/api/listings/{listing_id:int}/terminate": {"reason": "终止"},
        "/api/listings/{listing_id:int}/relist": {
            "starting_price": "1400.00",
            "registration_deadline": (now + timedelta(days=10)).isoformat(),
            "bidding_starts_at": (now + timedelta(days=11)).isoformat(),
            "bidding_ends_at": (now + timedelta(days=11, hours=1)).isoformat(),
        },
        "/api/registrations/{registration_id:int}/deposit": {
            "payer_name": "竞买人甲",
            "payer_account": "6222020000000001",
            "paid_at": now.isoformat(),
        },
        "/api/registrations/{registration_id:int}/qualify": {},
        "/api/registrations/{registration_id:int}/reject": {"reason": "不符合条件"},
        "/api/listings/{listing_id:int}/contract": {
            "number": "M-HT-3",
            "signed_on": "2026-01-01",
            "start_date": "2026-01-01",
            "payment_frequency": "annual",
        },
        "/api/listings/{listing_id:int}/forfeit": {},
        "/api/villages/{code:str}/cadres": CADRE,
        "/api/cadres/{cadre_id:int}": {"position": "主任"},
        "/api/cadres/{cadre_id:int}/relatives": RELATIVE,
        "/api/villages/{code:str}/elections": {"election_date": "2026-12-27"},
        "/api/elections/{election_id:int}/candidates": {"name": "王五", "position": "主任"},
        "/api/alerts/{alert_id:int}/assign": {
            "assignee_id": world["supervisor_b_id"], "due_on": (now + timedelta(days=30)).date().isoformat(),
            "note": "请核查",
        },
        "/api/alerts/{alert_id:int}/investigate": {"note": "开始核查"},
        "/api/alerts/{alert_id:int}/confirm": {
            "rectification_due_on": (now + timedelta(days=60)).date().isoformat(), "note": "属实",
        },
        "/api/alerts/{alert_id:int}/dismiss": {"reason": "不属实"},
        "/api/alerts/{alert_id:int}/rectify": {"note": "已整改"},
        "/api/alerts/{alert_id:int}/responses": {"note": "村委会说明"},
        # committee pages (form fields)
        "/committee/assets/new": {**ASSET, "code": "M-4"},
        "/committee/assets/{asset_id:int}/edit": {"name": "改名"},
        "/committee/assets/{asset_id:int}/status": {"status": "disposed", "reason": "报废"},
        "/committee/books/new": {
            "entry_date": "2025-03-01", "memo": "收承包款", "lines.0.account_code": "102", "lines.0.debit": "100.00",
            "lines.1.account_code": "50101", "lines.1.credit": "100.00",
        },
        "/committee/books/entries/{entry_id:int}/reverse": {},
        "/committee/contracts/new": {**contract_body(world["asset_id"], "M-HT-4"), "term_years": "3"},
        "/committee/contracts/{contract_id:int}/receipts": {"amount": "10.00", "received_on": "2025-01-05"},
        "/committee/listings/{listing_id:int}/edit": {"title": "改名"},
        "/committee/listings/{listing_id:int}/submit": RESOLUTION,
        "/committee/listings/{listing_id:int}/withdraw": {"reason": "撤销"},
        "/committee/listings/{listing_id:int}/relist": {
            "starting_price": "1400.00", "registration_deadline": "2030-01-10T09:00",
            "bidding_starts_at": "2030-01-11T09:00", "bidding_ends_at": "2030-01-11T11:00",
        },
        "/committee/listings/{listing_id:int}/contract": {
            "number": "M-HT-5", "signed_on": "2026-01-01", "start_date": "2026-01-01", "payment_frequency": "annual",
        },
        "/committee/registrations/{registration_id:int}/deposit": {
            "payer_name": "竞买人甲", "payer_account": "6222020000000001", "paid_at": "2026-01-01T09:00",
        },
        "/supervisor/approvals/listings/{listing_id:int}/send-back": {"reason": "材料不全"},
        "/supervisor/approvals/registrations/{registration_id:int}/reject": {"reason": "不符合条件"},
        "/supervisor/alerts/{alert_id:int}/assign": {
            "assignee_id": world["supervisor_b_id"], "due_on": (now + timedelta(days=30)).date().isoformat(),
            "assign_note": "请核查",
        },
        "/supervisor/alerts/{alert_id:int}/investigate": {"investigate_note": "开始核查"},
        "/supervisor/alerts/{alert_id:int}/confirm": {
            "rectification_due_on": (now + timedelta(days=60)).date().isoformat(), "confirm_note": "属实",
        },
        "/supervisor/alerts/{alert_id:int}/dismiss": {"reason": "不属实"},
        "/supervisor/alerts/{alert_id:int}/rectify": {"rectify_note": "已整改"},
        "/committee/alerts/{alert_id:int}/responses": {"note": "村委会说明"},
    }
    return bodies.get(path, {})


def fill(path: str, params: dict[str, Any]) -> str:
    return re.sub(r"\{(\w+):\w+\}", lambda m: str(params[m.group(1)]), path)


async def call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    actor: Actor | None,
    body: Any = None,
    visitor: Browser | None = None,
) -> int:
    """The status a caller meets: bearer token on the API; on pages, the actor's own logged-in browser, where
    being sent to the login form counts as 401."""
    if not path.startswith("/api/") and visitor is not None:
        if method == "GET":
            response = await visitor.get(path)
        else:
            response = await visitor.post(path, {k: str(v) for k, v in (body or {}).items()})
        if response.status_code == 303 and response.headers.get("location", "").startswith("/login?"):
            return 401
        return response.status_code
    headers = actor.headers if actor else {}
    if method == "GET":
        return (await client.get(path, headers=headers)).status_code
    return (await client.request(method, path, headers=headers, json=body if body is not None else {})).status_code


def _scoped(path: str) -> bool:
    """Routes that reach an object of village A (by its code, its township's code or an id)."""
    return (
        any(p in path for p in ("{code:str}", "_id:int}", "{township_code:str}"))
        and "{user_id" not in path
        and "{rule_id" not in path
    )


async def test_every_route_for_every_role(
    app: Litestar, client: httpx.AsyncClient, db: Any, make_user: Any, browser: Any
) -> None:
    world = await _world(client, db, make_user)
    actors: dict[str, Actor | None] = world["actors"]
    visitors = {name: await browser(actor) for name, actor in actors.items()}
    role_of = {name: (actor.user.role if actor else None) for name, actor in actors.items()}
    failures: list[str] = []

    routes = sorted(MATRIX)
    for method, template in routes:
        access = MATRIX[(method, template)]
        path = fill(template, world["params"])
        if template in ("/login", "/logout") and method == "POST" or (method, template) in STREAMING:
            continue  # pages with CSRF are tested in tests/platform/test_auth.py
        for name, actor in actors.items():
            role = role_of[name]
            allowed = access == PUBLIC or (access == AUTH and role is not None) or (
                isinstance(access, frozenset) and role in access
            )
            if allowed:
                continue
            status = await call(client, method, path, actor, visitor=visitors[name])
            expected = 401 if role is None else 403
            if status != expected:
                failures.append(f"{method} {template} as {name}: {status}, expected {expected}")

        # out-of-scope officials: refused on village A's objects, with a valid body on writes
        if _scoped(template) and access not in (PUBLIC, AUTH):
            for name in ("committee_b", "supervisor_b"):
                if role_of[name] not in access:
                    continue
                body = valid_body(method, template, world) if method != "GET" else None
                status = await call(client, method, path, actors[name], body, visitors[name])
                if status not in (403, 404):
                    failures.append(f"{method} {template} as {name} (other village): {status}, expected 403/404")

        # in-scope callers are let through (GET routes; writes get an empty body and must fail validation,
        # not access)
        for name in ("admin", "committee_a", "supervisor_a", "bidder", "anonymous"):
            role = role_of[name]
            allowed = access == PUBLIC or (access == AUTH and role is not None) or (
                isinstance(access, frozenset) and role in access
            )
            if not allowed or template.startswith("/api/registrations/mine") and name != "bidder":
                continue
            if method != "GET" and access == PUBLIC or (method, template) == ("DELETE", "/api/auth/token"):
                continue  # public writes (login, sign-up) and logging out have their own tests
            status = await call(
                client, method, path, actors[name], {} if method != "GET" else None, visitors[name]
            )
            if status in (401, 403) or status >= 500:
                failures.append(f"{method} {template} as {name} (in scope): {status}")

    assert failures == [], "\n".join(failures)
