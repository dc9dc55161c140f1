"""The users admin API: officials' accounts with a checked scope, changes, deactivation; admins only."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from sanzi.platform.auth import Passwords
from sanzi.platform.models import User
from tests.conftest import PASSWORD, VILLAGE_A, VILLAGE_B

TOWNSHIP_A = VILLAGE_A[:9] + "000"  # 龙归街道
DISTRICT_B = VILLAGE_B[:6] + "000000"  # 增城区


def new_user(**fields: Any) -> dict[str, Any]:
    body = {"username": f"u-{uuid.uuid4().hex[:8]}", "password": "long-enough-1", "display_name": "张三"}
    body.update(fields)
    return body


async def count_users(db) -> int:
    return await db.scalar(select(func.count()).select_from(User))


@pytest.mark.parametrize(
    "fields",
    [
        {"role": "committee", "village_code": VILLAGE_A},
        {"role": "supervisor", "area_code": TOWNSHIP_A},
        {"role": "supervisor", "area_code": DISTRICT_B},
        {"role": "admin"},
    ],
)
async def test_admin_creates_officials_who_can_log_in(client: httpx.AsyncClient, admin, db, fields) -> None:
    body = new_user(**fields, phone="13812345678")
    body["username"] = body["username"].upper()  # usernames are case-insensitive (kept in lower case)
    response = await client.post("/api/users", headers=admin.headers, json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["username"] == body["username"].lower() and created["is_active"] is True
    assert created["role"] == fields["role"]
    assert created.get("village_code") == fields.get("village_code")
    assert created.get("area_code") == fields.get("area_code")
    assert "password" not in created and "password_hash" not in created
    row = await db.get(User, created["id"])
    assert row.password_hash.startswith("$argon2id$") and Passwords().verify(row.password_hash, "long-enough-1")
    login = await client.post("/api/auth/token", json={"username": body["username"], "password": "long-enough-1"})
    assert login.status_code == 201


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"role": "committee"}, 422, "village_code"),
        ({"role": "committee", "village_code": "440111020999"}, 422, "village_code"),  # no such village
        ({"role": "committee", "village_code": VILLAGE_A, "area_code": TOWNSHIP_A}, 422, "area_code"),
        ({"role": "supervisor"}, 422, "area_code"),
        ({"role": "supervisor", "area_code": "440111999000"}, 422, "area_code"),  # no such township
        ({"role": "supervisor", "area_code": VILLAGE_A}, 422, "area_code"),  # a village is not an area
        ({"role": "supervisor", "area_code": TOWNSHIP_A, "village_code": VILLAGE_A}, 422, "village_code"),
        ({"role": "admin", "village_code": VILLAGE_A}, 422, "village_code"),
        ({"role": "bidder"}, 422, "role"),
        ({"role": "mayor"}, 400, "role"),
        ({"role": "admin", "password": "short1"}, 422, "password"),
        ({"role": "admin", "password": "1234567890"}, 422, "password"),
        ({"role": "admin", "password": "x" * 129}, 400, "password"),
        ({"role": "admin", "display_name": "名" * 65}, 400, "display_name"),
        ({"role": "admin", "username": "has space"}, 400, "username"),
        ({"role": "admin", "username": "u" * 65}, 400, "username"),
        ({"role": "admin", "phone": "12345"}, 422, "phone"),
        ({"role": "admin", "is_active": False}, 400, "is_active"),  # unknown field on create
    ],
)
async def test_bad_user_input_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient, admin, db, fields, status, field
) -> None:
    before = await count_users(db)
    response = await client.post("/api/users", headers=admin.headers, json=new_user(**fields))
    assert response.status_code == status, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in problem["errors"]]
    error = next(e for e in problem["errors"] if e["field"] == field)
    assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message"]) and error["message_en"]
    assert await count_users(db) == before


async def test_duplicate_username_is_a_conflict(client: httpx.AsyncClient, admin, committee_a, db) -> None:
    before = await count_users(db)
    response = await client.post(
        "/api/users", headers=admin.headers, json=new_user(role="admin", username=committee_a.user.username)
    )
    assert response.status_code == 409 and response.json()["errors"][0]["field"] == "username"
    assert await count_users(db) == before


async def test_only_admins_manage_users(
    client: httpx.AsyncClient, committee_a, supervisor_a, make_user, db
) -> None:
    from sanzi.platform.models import Role

    bidder = await make_user(Role.BIDDER)
    before = await count_users(db)
    for actor in (committee_a, supervisor_a, bidder):
        assert (await client.get("/api/users", headers=actor.headers)).status_code == 403
        assert (await client.get(f"/api/users/{actor.id}", headers=actor.headers)).status_code == 403
        created = await client.post("/api/users", headers=actor.headers, json=new_user(role="admin"))
        assert created.status_code == 403
        patched = await client.patch(f"/api/users/{actor.id}", headers=actor.headers, json={"display_name": "x"})
        assert patched.status_code == 403
    assert (await client.get("/api/users")).status_code == 401
    assert (await client.post("/api/users", json=new_user(role="admin"))).status_code == 401
    assert await count_users(db) == before


async def test_list_is_paginated_and_filtered_by_role(
    client: httpx.AsyncClient, admin, committee_a, committee_b, supervisor_a
) -> None:
    committees = (await client.get("/api/users", headers=admin.headers, params={"role": "committee"})).json()
    assert committees["total"] >= 2 and {u["role"] for u in committees["items"]} == {"committee"}
    ids = {u["id"] for u in committees["items"]}
    assert {committee_a.id, committee_b.id} <= ids and supervisor_a.id not in ids

    everyone = (await client.get("/api/users", headers=admin.headers, params={"page_size": 500})).json()
    first = (await client.get("/api/users", headers=admin.headers, params={"page_size": 2})).json()
    second = (await client.get("/api/users", headers=admin.headers, params={"page_size": 2, "page": 2})).json()
    assert first["total"] == everyone["total"] >= 4 and len(first["items"]) == 2
    assert [u["id"] for u in first["items"] + second["items"]] == [u["id"] for u in everyone["items"][:4]]

    found = (await client.get("/api/users", headers=admin.headers, params={"q": committee_a.user.username})).json()
    assert [u["id"] for u in found["items"]] == [committee_a.id]
    unknown = await client.get("/api/users", headers=admin.headers, params={"role": "mayor"})
    assert unknown.status_code == 400


async def test_get_one_user(client: httpx.AsyncClient, admin, committee_a) -> None:
    response = await client.get(f"/api/users/{committee_a.id}", headers=admin.headers)
    assert response.status_code == 200 and response.json()["village_code"] == VILLAGE_A
    assert (await client.get("/api/users/999999999", headers=admin.headers)).status_code == 404


async def test_patch_changes_name_scope_and_password(client: httpx.AsyncClient, admin, committee_a, db) -> None:
    url = f"/api/users/{committee_a.id}"
    response = await client.patch(url, headers=admin.headers, json={"display_name": "李四", "village_code": VILLAGE_B})
    assert response.status_code == 200, response.text
    assert response.json()["display_name"] == "李四" and response.json()["village_code"] == VILLAGE_B

    reset = await client.patch(url, headers=admin.headers, json={"password": "a-fresh-password"})
    assert reset.status_code == 200
    assert (await client.get("/api/auth/me", headers=committee_a.headers)).status_code == 401  # tokens revoked
    old = await client.post("/api/auth/token", json={"username": committee_a.user.username, "password": PASSWORD})
    assert old.status_code == 401
    new = await client.post(
        "/api/auth/token", json={"username": committee_a.user.username, "password": "a-fresh-password"}
    )
    assert new.status_code == 201


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"village_code": "440111020999"}, 422, "village_code"),
        ({"village_code": None}, 422, "village_code"),
        ({"area_code": VILLAGE_A[:9] + "000"}, 422, "area_code"),
        ({"password": "1234567890"}, 422, "password"),
        ({"display_name": "名" * 65}, 400, "display_name"),
        ({"role": "admin"}, 400, "role"),  # the role is not changed by PATCH
        ({"username": "someone-else"}, 400, "username"),
    ],
)
async def test_bad_patch_names_the_field_and_changes_nothing(
    client: httpx.AsyncClient, admin, committee_a, db, body, status, field
) -> None:
    response = await client.patch(f"/api/users/{committee_a.id}", headers=admin.headers, json=body)
    assert response.status_code == status, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    row = await db.get(User, committee_a.id, populate_existing=True)
    assert (row.role, row.village_code, row.area_code, row.display_name) == (
        "committee",
        VILLAGE_A,
        None,
        committee_a.user.display_name,
    )
    assert Passwords().verify(row.password_hash, PASSWORD)
    assert (await client.get("/api/auth/me", headers=committee_a.headers)).status_code == 200


async def test_supervisor_scope_can_move_from_township_to_district(
    client: httpx.AsyncClient, admin, supervisor_a
) -> None:
    response = await client.patch(
        f"/api/users/{supervisor_a.id}", headers=admin.headers, json={"area_code": DISTRICT_B}
    )
    assert response.status_code == 200 and response.json()["area_code"] == DISTRICT_B


async def test_admin_cannot_deactivate_themselves(client: httpx.AsyncClient, admin, db) -> None:
    response = await client.patch(f"/api/users/{admin.id}", headers=admin.headers, json={"is_active": False})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "is_active"
    assert (await db.get(User, admin.id, populate_existing=True)).is_active is True


async def test_reactivated_user_logs_in_again(client: httpx.AsyncClient, admin, committee_a) -> None:
    url = f"/api/users/{committee_a.id}"
    assert (await client.patch(url, headers=admin.headers, json={"is_active": False})).json()["is_active"] is False
    credentials = {"username": committee_a.user.username, "password": PASSWORD}
    assert (await client.post("/api/auth/token", json=credentials)).status_code == 401
    assert (await client.patch(url, headers=admin.headers, json={"is_active": True})).json()["is_active"] is True
    assert (await client.post("/api/auth/token", json=credentials)).status_code == 201
    # the old token stays revoked
    assert (await client.get("/api/auth/me", headers=committee_a.headers)).status_code == 401


# ---- the operator's command line ------------------------------------------------------------------------


def test_users_command_creates_lists_and_resets(empty_database_url: str, tmp_path) -> None:
    from tests.platform.test_cli import sanzi

    def run(*args: str, password: str | None = "cli-password-1"):
        import os

        os.environ.pop("SANZI_USER_PASSWORD", None)
        if password is not None:
            os.environ["SANZI_USER_PASSWORD"] = password
        try:
            return sanzi(empty_database_url, "users", *args, tmp_path=tmp_path)
        finally:
            os.environ.pop("SANZI_USER_PASSWORD", None)

    assert sanzi(empty_database_url, "geography", "import", tmp_path=tmp_path).returncode == 0
    created = run("create", "--role", "committee", "--username", "Yongxing-Clerk", "--village", VILLAGE_A)
    assert created.returncode == 0, created.stderr
    assert "yongxing-clerk" in created.stdout and VILLAGE_A in created.stdout

    for args, password, fragment in [
        (("--role", "committee", "--username", "nowhere", "--village", "440111020999"), "cli-pass-1", "village_code"),
        (("--role", "supervisor", "--username", "nowhere"), "cli-password-1", "area_code"),
        (("--role", "admin", "--username", "nowhere"), "12345678", "password"),
        (("--role", "admin", "--username", "yongxing-clerk"), "cli-password-1", "username"),
    ]:
        refused = run("create", *args, password=password)
        assert refused.returncode != 0 and fragment in refused.stderr, refused.stderr

    supervisor = run("create", "--role", "supervisor", "--username", "baiyun", "--area", VILLAGE_A[:6] + "000000")
    assert supervisor.returncode == 0, supervisor.stderr
    listed = run("list")
    assert listed.returncode == 0 and "2 users" in listed.stdout
    assert "yongxing-clerk\tcommittee" in listed.stdout and "baiyun\tsupervisor" in listed.stdout

    reset = run("set-password", "yongxing-clerk", password="another-password")
    assert reset.returncode == 0, reset.stderr
    assert run("set-password", "nobody-here").returncode != 0
    assert Passwords().verify(_stored_hash(empty_database_url, "yongxing-clerk"), "another-password")


def _stored_hash(database_url: str, username: str) -> str:
    from sanzi.platform.database import create_engine
    from tests.conftest import make_settings, run_sync

    async def read() -> str:
        engine = create_engine(make_settings(database_url))
        try:
            async with engine.connect() as conn:
                return await conn.scalar(select(User.password_hash).where(User.username == username))
        finally:
            await engine.dispose()

    return run_sync(read)
