"""Bidder self-registration (a person or a company), and a bidder's own profile."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from sanzi.platform.app import create_app
from sanzi.platform.auth import SIGNUP_WINDOW_SECONDS, SIGNUPS_PER_ADDRESS, Passwords, SignupThrottle
from sanzi.platform.models import ApiToken, Bidder, User
from tests.conftest import make_settings, serve

PERSON_ID = "11010519491231002X"
COMPANY_ID = "91350100M000100Y43"
OTHER_COMPANY_ID = "91440101MA59ABCD0A"


def person(**fields: Any) -> dict[str, Any]:
    body = {
        "kind": "person",
        "name": "王五",
        "id_number": PERSON_ID.lower(),
        "phone": "138 1234 5678",
        "address": "广州市白云区龙归街道永兴村 1 号",
        "bank_name": "中国农业银行广州白云支行",
        "bank_account": "6228 4800 1234 5678 901",
        "username": f"p-{uuid.uuid4().hex[:8]}",
        "password": "wang-wu-2026",
    }
    body.update(fields)
    return body


def company(**fields: Any) -> dict[str, Any]:
    body = {
        "kind": "company",
        "name": "广州市永兴农业发展有限公司",
        "id_number": COMPANY_ID,
        "legal_representative": "赵六",
        "phone": "13912345678",
        "username": f"c-{uuid.uuid4().hex[:8]}",
        "password": "zhao-liu-2026",
    }
    body.update(fields)
    return body


async def counts(db) -> tuple[int, int, int]:
    return (
        await db.scalar(select(func.count()).select_from(User)),
        await db.scalar(select(func.count()).select_from(Bidder)),
        await db.scalar(select(func.count()).select_from(ApiToken)),
    )


async def test_person_registers_and_is_logged_in_at_once(client: httpx.AsyncClient, db) -> None:
    body = person()
    response = await client.post("/api/bidders", json=body)
    assert response.status_code == 201, response.text
    registered = response.json()
    bidder = registered["bidder"]
    assert bidder["kind"] == "person" and bidder["id_number"] == PERSON_ID  # normalised to upper case
    assert bidder["phone"] == "13812345678" and bidder["bank_account"] == "6228480012345678901"
    assert bidder["legal_representative"] is None
    headers = {"Authorization": f"Bearer {registered['token']['token']}"}
    me = await client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200 and me.json()["role"] == "bidder"
    profile = await client.get("/api/bidders/me", headers=headers)
    assert profile.status_code == 200 and profile.json() == bidder

    user = await db.scalar(select(User).where(User.username == body["username"]))
    assert user.role == "bidder" and user.village_code is None and user.area_code is None
    assert user.password_hash.startswith("$argon2id$") and Passwords().verify(user.password_hash, "wang-wu-2026")
    # and the password logs in later
    login = await client.post("/api/auth/token", json={"username": body["username"], "password": "wang-wu-2026"})
    assert login.status_code == 201


async def test_company_registers(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/bidders", json=company(id_number="9135 0100 m000 100y43"))
    assert response.status_code == 201, response.text
    bidder = response.json()["bidder"]
    assert bidder["kind"] == "company" and bidder["id_number"] == COMPANY_ID
    assert bidder["legal_representative"] == "赵六"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (person(id_number="110105194912310021"), 422, "id_number"),  # wrong check digit
        (person(id_number="11010519491231002"), 422, "id_number"),  # too short
        (person(id_number="x" * 25), 400, "id_number"),  # oversized
        (person(id_number=COMPANY_ID), 422, "id_number"),  # a company's code for a person
        (company(id_number=PERSON_ID), 422, "id_number"),  # a resident ID for a company
        (company(id_number="91350100M000100Y44"), 422, "id_number"),
        (company(legal_representative=None), 422, "legal_representative"),
        (person(phone="12812345678"), 422, "phone"),
        (person(phone="1381234567"), 422, "phone"),
        (person(phone="1" * 21), 400, "phone"),
        (person(password="short1"), 422, "password"),
        (person(password="1234567890"), 422, "password"),
        (person(bank_account="not-a-number"), 422, "bank_account"),
        (person(name="名" * 101), 400, "name"),
        (person(address="址" * 201), 400, "address"),
        (person(username="a b"), 400, "username"),
        (person(kind="robot"), 400, "kind"),
        (person(role="admin"), 400, "role"),  # a bidder cannot choose another role
        ({k: v for k, v in person().items() if k != "phone"}, 400, "phone"),
    ],
)
async def test_bad_registration_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient, db, body, status, field
) -> None:
    before = await counts(db)
    response = await client.post("/api/bidders", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    errors = response.json()["errors"]
    assert field in [e["field"] for e in errors]
    error = next(e for e in errors if e["field"] == field)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message"]) and error["message_en"]
    assert await counts(db) == before


async def test_duplicates_are_conflicts_naming_the_field(client: httpx.AsyncClient, db, committee_a) -> None:
    first = person()
    assert (await client.post("/api/bidders", json=first)).status_code == 201
    before = await counts(db)
    same_id = await client.post("/api/bidders", json=person(id_number=PERSON_ID))
    assert same_id.status_code == 409 and same_id.json()["errors"][0]["field"] == "id_number"
    same_name = await client.post(
        "/api/bidders", json=company(username=first["username"].upper(), id_number=OTHER_COMPANY_ID)
    )
    assert same_name.status_code == 409 and same_name.json()["errors"][0]["field"] == "username"
    official = await client.post("/api/bidders", json=company(username=committee_a.user.username))
    assert official.status_code == 409 and official.json()["errors"][0]["field"] == "username"
    assert await counts(db) == before


async def test_bidder_updates_contact_details_only(client: httpx.AsyncClient, db) -> None:
    token = (await client.post("/api/bidders", json=person())).json()["token"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    changed = await client.patch(
        "/api/bidders/me",
        headers=headers,
        json={"phone": "13700001111", "address": "广州市增城区荔城街道", "bank_account": "6222021234567890"},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["phone"], body["address"], body["bank_account"]) == (
        "13700001111",
        "广州市增城区荔城街道",
        "6222021234567890",
    )
    assert body["bank_name"] == "中国农业银行广州白云支行"  # untouched
    assert (await client.get("/api/auth/me", headers=headers)).json()["phone"] == "13700001111"

    for attempt, field in [
        ({"id_number": "110105194912310021"}, "id_number"),
        ({"name": "别人"}, "name"),
        ({"kind": "company"}, "kind"),
        ({"phone": "12345"}, "phone"),
        ({"phone": None}, "phone"),
        ({"bank_account": "x"}, "bank_account"),
        ({"address": "址" * 201}, "address"),
    ]:
        refused = await client.patch("/api/bidders/me", headers=headers, json=attempt)
        assert refused.status_code in (400, 422), refused.text
        assert field in [e["field"] for e in refused.json()["errors"]]
    after = (await client.get("/api/bidders/me", headers=headers)).json()
    assert after == body


async def test_bidder_routes_are_for_bidders(client: httpx.AsyncClient, committee_a, admin) -> None:
    assert (await client.get("/api/bidders/me")).status_code == 401
    assert (await client.patch("/api/bidders/me", json={"phone": "13700001111"})).status_code == 401
    for actor in (committee_a, admin):
        assert (await client.get("/api/bidders/me", headers=actor.headers)).status_code == 403
        patched = await client.patch("/api/bidders/me", headers=actor.headers, json={"phone": "13700001111"})
        assert patched.status_code == 403


async def test_bidder_cannot_reach_the_users_api(client: httpx.AsyncClient) -> None:
    token = (await client.post("/api/bidders", json=person())).json()["token"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/users", headers=headers)).status_code == 403


# ---- throttling per client address ------------------------------------------------------------------------


def from_address(app, address: str) -> httpx.AsyncClient:
    """A client whose requests come from this peer address (the app's lifespan must be running)."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver.local")


async def test_sign_ups_are_throttled_per_address_and_a_refusal_writes_nothing(
    app, client: httpx.AsyncClient, db
) -> None:
    assert (await client.post("/api/bidders", json=person())).status_code == 201
    # every attempt counts, refused ones too, so duplicates cannot be probed at speed
    for _ in range(SIGNUPS_PER_ADDRESS - 1):
        assert (await client.post("/api/bidders", json=person())).status_code == 409
    before = await counts(db)
    refused = await client.post("/api/bidders", json=company())
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert 0 < int(refused.headers["retry-after"]) <= SIGNUP_WINDOW_SECONDS
    body = refused.json()
    assert "注册次数过多" in body["detail"] and "sign-ups" in body["detail_en"]
    assert body["retry_after"] == int(refused.headers["retry-after"])
    assert await counts(db) == before
    # another address is not held back
    async with from_address(app, "203.0.113.7") as elsewhere:
        assert (await elsewhere.post("/api/bidders", json=company())).status_code == 201


async def test_two_app_instances_share_the_sign_up_throttle_in_redis(
    database_url: str, redis_available: str, engine, session_maker, db, tmp_path
) -> None:
    from redis.asyncio import Redis

    settings = make_settings(database_url, REDIS_URL=redis_available, SANZI_VAR_DIR=str(tmp_path))
    address = f"198.51.100.{uuid.uuid4().int % 250 + 1}"
    redis = Redis.from_url(redis_available)
    key = SignupThrottle.key(address)
    await redis.delete(key)
    first_app = create_app(settings, engine, session_maker)
    second_app = create_app(settings, engine, session_maker)
    try:
        async with serve(first_app), serve(second_app):
            async with from_address(first_app, address) as first, from_address(second_app, address) as second:
                for n in range(SIGNUPS_PER_ADDRESS):  # wrong check digits: refused, but counted
                    response = await (first, second)[n % 2].post(
                        "/api/bidders", json=person(id_number="110105194912310021")
                    )
                    assert response.status_code == 422
                assert int(await redis.get(key)) == SIGNUPS_PER_ADDRESS
                before = await counts(db)
                for client in (first, second):
                    refused = await client.post("/api/bidders", json=person())
                    assert refused.status_code == 429 and "retry-after" in refused.headers
                assert await counts(db) == before
    finally:
        await redis.delete(key)
        await redis.aclose()
