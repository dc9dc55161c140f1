"""Authentication: bearer tokens, cookie sessions with CSRF, login throttling (in process and in Redis)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from sanzi.platform.app import create_app
from sanzi.platform.auth import SESSION_EPOCH_KEY, SESSION_USER_KEY, Passwords, check_password_policy
from sanzi.platform.models import ApiToken, Role, User
from sanzi.platform.problems import DomainError
from tests.conftest import PASSWORD, make_settings, serve


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/auth/token", json={"username": username, "password": password})


def csrf_of(client: httpx.AsyncClient) -> str:
    return client.cookies["csrftoken"]


async def page_login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    await client.get("/login")
    form = {"username": username, "password": password, "_csrf_token": csrf_of(client), **extra}
    return await client.post("/login", data=form)


# ---- bearer tokens --------------------------------------------------------------------------------------


async def test_token_login_me_and_logout(client: httpx.AsyncClient, make_user, db) -> None:
    actor = await make_user(Role.COMMITTEE, village_code="440111020200")
    response = await login(client, actor.user.username)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["user"]["username"] == actor.user.username
    headers = {"Authorization": f"Bearer {body['token']}"}

    me = await client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.json()["role"] == "committee" and me.json()["village_code"] == "440111020200"
    assert (await db.get(User, actor.id, populate_existing=True)).last_login_at is not None

    assert (await client.delete("/api/auth/token", headers=headers)).status_code == 204
    assert (await client.get("/api/auth/me", headers=headers)).status_code == 401
    # only the token used was revoked; the fixture's other token still works
    assert (await client.get("/api/auth/me", headers=actor.headers)).status_code == 200


async def test_token_expires_after_configured_days(client: httpx.AsyncClient, make_user, db, settings) -> None:
    actor = await make_user(Role.ADMIN)
    body = (await login(client, actor.user.username)).json()
    token_hash = hashlib.sha256(body["token"].encode()).hexdigest()
    row = await db.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    assert (row.expires_at - row.created_at).days == settings.api_token_days


async def test_bad_credentials_answer_the_same_whether_or_not_the_user_exists(
    client: httpx.AsyncClient, make_user, db
) -> None:
    actor = await make_user(Role.ADMIN)
    tokens_before = await db.scalar(select(func.count()).select_from(ApiToken))
    wrong_password = await login(client, actor.user.username, "not-the-password")
    no_such_user = await login(client, f"nobody-{uuid.uuid4().hex[:6]}", "not-the-password")
    for response in (wrong_password, no_such_user):
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
    strip = lambda r: {k: v for k, v in r.json().items() if k != "instance"}  # noqa: E731
    assert strip(wrong_password) == strip(no_such_user)
    assert wrong_password.json()["detail"] == "用户名或密码错误"
    assert await db.scalar(select(func.count()).select_from(ApiToken)) == tokens_before


async def test_token_request_is_validated(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/token", json={"username": "x" * 65, "password": "whatever1"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "username"


async def test_tokens_and_passwords_are_stored_only_as_hashes(client: httpx.AsyncClient, make_user, db) -> None:
    actor = await make_user(Role.ADMIN)
    token = (await login(client, actor.user.username)).json()["token"]
    rows = list(await db.scalars(select(ApiToken).where(ApiToken.user_id == actor.id)))
    assert hashlib.sha256(token.encode()).hexdigest() in {r.token_hash for r in rows}
    assert all(token not in (r.token_hash or "") for r in rows)
    user = await db.get(User, actor.id)
    assert user.password_hash.startswith("$argon2id$") and PASSWORD not in user.password_hash
    assert Passwords().verify(user.password_hash, PASSWORD)


async def test_malformed_or_unknown_bearer_is_refused(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/auth/me")).status_code == 401
    assert (await client.get("/api/auth/me", headers={"Authorization": "Basic abc"})).status_code == 401
    assert (await client.get("/api/auth/me", headers={"Authorization": "Bearer sz_nope"})).status_code == 401


async def test_changing_ones_password_revokes_other_tokens(client: httpx.AsyncClient, make_user) -> None:
    actor = await make_user(Role.COMMITTEE, village_code="440111020200")
    other = {"Authorization": f"Bearer {(await login(client, actor.user.username)).json()['token']}"}
    weak = await client.post(
        "/api/auth/password", headers=actor.headers, json={"current_password": PASSWORD, "new_password": "12345678"}
    )
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "new_password"
    assert (await client.get("/api/auth/me", headers=other)).status_code == 200  # nothing changed
    changed = await client.post(
        "/api/auth/password",
        headers=actor.headers,
        json={"current_password": PASSWORD, "new_password": "a-new-passphrase"},
    )
    assert changed.status_code == 204, changed.text
    assert (await client.get("/api/auth/me", headers=other)).status_code == 401
    assert (await client.get("/api/auth/me", headers=actor.headers)).status_code == 200
    assert (await login(client, actor.user.username)).status_code == 401
    assert (await login(client, actor.user.username, "a-new-passphrase")).status_code == 201


@pytest.mark.parametrize(
    ("password", "fragment"), [("short1", "8"), ("1234567890", "数字"), ("Alice-2024", "用户名")]
)
def test_password_policy(password: str, fragment: str) -> None:
    with pytest.raises(DomainError) as refused:
        check_password_policy(password, username="alice-2024")
    assert fragment in refused.value.message and refused.value.message_en and refused.value.field == "password"
    check_password_policy("correct horse", username="alice")


# ---- cookie sessions and CSRF ---------------------------------------------------------------------------


async def test_login_page_is_a_labelled_chinese_form_with_a_csrf_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/login")
    assert response.status_code == 200
    html = response.text
    assert 'lang="zh-CN"' in html and "viewport" in html
    assert '<label for="username">' in html and '<label for="password">' in html
    token = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert token and client.cookies.get("csrftoken")


async def test_login_without_csrf_token_is_refused(client: httpx.AsyncClient, make_user) -> None:
    actor = await make_user(Role.ADMIN)
    await client.get("/login")
    response = await client.post("/login", data={"username": actor.user.username, "password": PASSWORD})
    assert response.status_code == 403
    assert (await client.get("/account")).status_code == 303  # still anonymous


async def test_login_with_csrf_token_starts_a_session_that_identifies_the_user(
    client: httpx.AsyncClient, make_user
) -> None:
    actor = await make_user(Role.SUPERVISOR, area_code="440111020000", display_name="龙归监管员")
    anonymous = await client.get("/account")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")

    client.cookies.set("session", "planted-by-an-attacker", domain="testserver.local")
    response = await page_login(client, actor.user.username)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    assert client.cookies["session"] != "planted-by-an-attacker"  # a fresh session id at login

    page = await client.get("/account")
    assert page.status_code == 200
    assert "龙归监管员" in page.text and actor.user.username in page.text and "监管人员" in page.text

    logout = await client.post("/logout", data={"_csrf_token": csrf_of(client)})
    assert logout.status_code == 303 and logout.headers["location"] == "/login"
    assert (await client.get("/account")).status_code == 303


async def test_session_cookie_does_not_authenticate_the_api(client: httpx.AsyncClient, make_user) -> None:
    actor = await make_user(Role.ADMIN)
    assert (await page_login(client, actor.user.username)).status_code == 303
    assert (await client.get("/api/auth/me")).status_code == 401  # /api takes bearer tokens only (no CSRF there)


async def test_login_page_shows_errors_beside_the_fields(client: httpx.AsyncClient, make_user) -> None:
    actor = await make_user(Role.ADMIN)
    empty = await page_login(client, "", "")
    assert empty.status_code == 400
    assert 'id="username-error"' in empty.text and 'id="password-error"' in empty.text
    wrong = await page_login(client, actor.user.username, "wrong-password")
    assert wrong.status_code == 401
    assert 'id="password-error"' in wrong.text and "用户名或密码错误" in wrong.text
    assert f'value="{actor.user.username}"' in wrong.text  # the username is kept, the password is not
    assert (await client.get("/account")).status_code == 303


async def test_login_follows_only_local_next(client: httpx.AsyncClient, make_user) -> None:
    actor = await make_user(Role.ADMIN)
    local = await page_login(client, actor.user.username, next="/account")
    assert local.headers["location"] == "/account"
    foreign = await page_login(client, actor.user.username, next="//evil.example/")
    assert foreign.headers["location"] == "/"


async def test_deactivated_user_loses_session_and_tokens(client: httpx.AsyncClient, make_user, admin) -> None:
    actor = await make_user(Role.COMMITTEE, village_code="440111020200")
    assert (await page_login(client, actor.user.username)).status_code == 303
    response = await client.patch(f"/api/users/{actor.id}", headers=admin.headers, json={"is_active": False})
    assert response.status_code == 200, response.text
    assert (await client.get("/account")).status_code == 303
    assert (await client.get("/api/auth/me", headers=actor.headers)).status_code == 401
    assert (await login(client, actor.user.username)).status_code == 401
    assert (await page_login(client, actor.user.username)).status_code == 401


async def test_changing_ones_password_ends_every_page_session(client: httpx.AsyncClient, make_user) -> None:
    actor = await make_user(Role.COMMITTEE, village_code="440111020200", display_name="永兴出纳")
    assert (await page_login(client, actor.user.username)).status_code == 303
    assert (await client.get("/account")).status_code == 200
    changed = await client.post(
        "/api/auth/password",
        headers=actor.headers,
        json={"current_password": PASSWORD, "new_password": "a-new-passphrase"},
    )
    assert changed.status_code == 204, changed.text
    stale = await client.get("/account")
    assert stale.status_code == 303 and stale.headers["location"].startswith("/login")
    assert (await page_login(client, actor.user.username, "a-new-passphrase")).status_code == 303
    fresh = await client.get("/account")
    assert fresh.status_code == 200 and "永兴出纳" in fresh.text


async def test_an_admin_password_reset_ends_every_page_session(
    client: httpx.AsyncClient, make_user, admin
) -> None:
    actor = await make_user(Role.SUPERVISOR, area_code="440111020000", display_name="龙归监管员")
    assert (await page_login(client, actor.user.username)).status_code == 303
    url = f"/api/users/{actor.id}"
    renamed = await client.patch(url, headers=admin.headers, json={"display_name": "龙归督导"})
    assert renamed.status_code == 200
    assert (await client.get("/account")).status_code == 200  # other changes leave the session alone
    reset = await client.patch(url, headers=admin.headers, json={"password": "a-fresh-password"})
    assert reset.status_code == 200, reset.text
    assert (await client.get("/account")).status_code == 303
    assert (await page_login(client, actor.user.username)).status_code == 401  # the old password is gone
    assert (await page_login(client, actor.user.username, "a-fresh-password")).status_code == 303
    assert "龙归督导" in (await client.get("/account")).text


async def test_a_reactivated_account_does_not_get_its_old_session_back(
    client: httpx.AsyncClient, make_user, admin
) -> None:
    actor = await make_user(Role.ADMIN)
    url = f"/api/users/{actor.id}"
    assert (await page_login(client, actor.user.username)).status_code == 303
    for active in (False, True):
        response = await client.patch(url, headers=admin.headers, json={"is_active": active})
        assert response.status_code == 200, response.text
    assert (await client.get("/account")).status_code == 303
    assert (await page_login(client, actor.user.username)).status_code == 303
    assert (await client.get("/account")).status_code == 200


async def test_a_session_without_the_current_epoch_is_anonymous(
    app, client: httpx.AsyncClient, make_user
) -> None:
    actor = await make_user(Role.ADMIN)
    await page_login(client, actor.user.username)
    store = app.stores.get("sessions")
    cookie = client.cookies["session"]
    # as a session written before epochs existed would look: only the user id
    await store.set(cookie, json.dumps({SESSION_USER_KEY: actor.id}).encode())
    assert (await client.get("/account")).status_code == 303


async def test_session_key_is_the_user_id(app, client: httpx.AsyncClient, make_user) -> None:
    actor = await make_user(Role.ADMIN)
    await page_login(client, actor.user.username)
    store = app.stores.get("sessions")
    data = await store.get(client.cookies["session"])
    assert data is not None and str(actor.id).encode() in data and SESSION_USER_KEY.encode() in data
    assert json.loads(data)[SESSION_EPOCH_KEY] == 0


async def test_anonymous_page_views_store_no_session_and_log_out_deletes_it(
    app, client: httpx.AsyncClient, make_user
) -> None:
    store = app.stores.get("sessions")
    for path in ("/", "/results", "/login"):
        response = await client.get(path)
        assert response.status_code == 200
        assert not any(c.startswith("session=") for c in response.headers.get_list("set-cookie")), path
    assert "session" not in client.cookies

    actor = await make_user(Role.ADMIN)
    await page_login(client, actor.user.username)
    session_id = client.cookies["session"]
    assert await store.get(session_id) is not None

    logout = await client.post("/logout", data={"_csrf_token": csrf_of(client)})
    assert logout.status_code == 303
    assert await store.get(session_id) is None  # deleted from the store, not left behind empty
    assert client.cookies.get("session") in (None, "null")  # and the browser told to forget the cookie
    assert (await client.get("/results")).status_code == 200
    assert await store.get(session_id) is None and await store.get("null") is None


# ---- throttling -----------------------------------------------------------------------------------------


@pytest.fixture
def strict_settings(database_url: str, tmp_path):
    return make_settings(
        database_url,
        SANZI_VAR_DIR=str(tmp_path),
        SANZI_LOGIN_FAILURES_PER_ACCOUNT=3,
        SANZI_LOGIN_FAILURES_PER_ADDRESS=5,
    )


async def test_too_many_failures_for_one_account_are_throttled(
    strict_settings, engine, session_maker, make_user
) -> None:
    victim = await make_user(Role.ADMIN)
    bystander = await make_user(Role.ADMIN)
    async with serve(create_app(strict_settings, engine, session_maker)) as client:
        for _ in range(3):
            assert (await login(client, victim.user.username, "guess-guess")).status_code == 401
        refused = await login(client, victim.user.username)  # even the right password now waits
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0
        body = refused.json()
        assert body["retry_after"] > 0 and "登录失败次数过多" in body["detail"] and body["detail_en"]
        # the page refuses the same account, in Chinese, with Retry-After
        page = await page_login(client, victim.user.username)
        assert page.status_code == 429 and "retry-after" in page.headers
        assert "登录失败次数过多" in page.text
        # the limit is per account: another account from the same address still logs in
        assert (await login(client, bystander.user.username)).status_code == 201


async def test_too_many_failures_from_one_address_are_throttled(
    strict_settings, engine, session_maker, make_user
) -> None:
    actor = await make_user(Role.ADMIN)
    async with serve(create_app(strict_settings, engine, session_maker)) as client:
        for n in range(5):  # five different accounts, one failure each: no account reaches its limit
            assert (await login(client, f"nobody-{n}-{uuid.uuid4().hex[:6]}", "guess-guess")).status_code == 401
        refused = await login(client, actor.user.username)
        assert refused.status_code == 429 and "retry-after" in refused.headers
        page = await page_login(client, actor.user.username)
        assert page.status_code == 429 and "登录失败次数过多" in page.text


async def test_a_successful_login_resets_the_account_counter(
    strict_settings, engine, session_maker, make_user
) -> None:
    actor = await make_user(Role.ADMIN)
    async with serve(create_app(strict_settings, engine, session_maker)) as client:
        for _ in range(2):
            assert (await login(client, actor.user.username, "guess-guess")).status_code == 401
        assert (await login(client, actor.user.username)).status_code == 201
        for _ in range(2):
            assert (await login(client, actor.user.username, "guess-guess")).status_code == 401
        assert (await login(client, actor.user.username)).status_code == 201


async def test_two_app_instances_share_the_throttle_in_redis(
    database_url: str, redis_available: str, engine, session_maker, make_user, tmp_path
) -> None:
    from redis.asyncio import Redis

    actor = await make_user(Role.ADMIN)
    settings = make_settings(
        database_url,
        REDIS_URL=redis_available,
        SANZI_VAR_DIR=str(tmp_path),
        SANZI_LOGIN_FAILURES_PER_ACCOUNT=4,
        SANZI_LOGIN_FAILURES_PER_ADDRESS=1000,
    )
    redis = Redis.from_url(redis_available)
    account_key = f"sanzi:login:acct:{actor.user.username}"
    try:
        async with serve(create_app(settings, engine, session_maker)) as first, serve(
            create_app(settings, engine, session_maker)
        ) as second:
            for client in (first, second, first, second):
                assert (await login(client, actor.user.username, "guess-guess")).status_code == 401
            assert int(await redis.get(account_key)) == 4
            assert (await login(first, actor.user.username)).status_code == 429
            assert (await login(second, actor.user.username)).status_code == 429
    finally:
        await redis.delete(account_key, "sanzi:login:addr:127.0.0.1")
        await redis.aclose()


# ---- the bearer-token cache -----------------------------------------------------------------------------


async def test_a_token_is_trusted_for_its_cache_seconds_then_looked_up_again(
    client: httpx.AsyncClient, make_user, db
) -> None:
    """A revocation written by another worker (here: straight into the table) takes effect once this
    worker's cache entry runs out; until then the token is served without a database lookup."""
    from sanzi.platform.auth import hash_token, token_cache

    clock = {"now": 1000.0}
    token_cache.clear()
    token_cache.clock = lambda: clock["now"]
    try:
        actor = await make_user(Role.COMMITTEE, village_code="440111020200")
        assert (await client.get("/api/auth/me", headers=actor.headers)).status_code == 200
        assert token_cache.get(hash_token(actor.token)) is not None

        row = await db.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(actor.token)))
        row.revoked_at = row.created_at
        await db.commit()
        assert (await client.get("/api/auth/me", headers=actor.headers)).status_code == 200  # cached

        clock["now"] += 5.01
        assert (await client.get("/api/auth/me", headers=actor.headers)).status_code == 401
        assert token_cache.get(hash_token(actor.token)) is None
    finally:
        token_cache.clock = __import__("time").monotonic
        token_cache.clear()


async def test_changes_made_through_this_worker_forget_the_cached_token_at_once(
    client: httpx.AsyncClient, make_user, admin
) -> None:
    from sanzi.platform.auth import hash_token, token_cache

    actor = await make_user(Role.SUPERVISOR, area_code="440111020000", display_name="龙归监管员")
    me = await client.get("/api/auth/me", headers=actor.headers)
    assert me.status_code == 200 and me.json()["display_name"] == "龙归监管员"
    renamed = await client.patch(f"/api/users/{actor.id}", headers=admin.headers, json={"display_name": "龙归督导"})
    assert renamed.status_code == 200, renamed.text
    assert token_cache.get(hash_token(actor.token)) is None
    assert (await client.get("/api/auth/me", headers=actor.headers)).json()["display_name"] == "龙归督导"

    assert (await client.delete("/api/auth/token", headers=actor.headers)).status_code == 204
    assert (await client.get("/api/auth/me", headers=actor.headers)).status_code == 401


def test_the_cache_can_be_turned_off() -> None:
    """SANZI_TOKEN_CACHE_SECONDS=0 looks every token up; the setting refuses negative or long caches."""
    from pydantic import ValidationError

    from tests.conftest import make_settings

    assert make_settings("sqlite+aiosqlite://", SANZI_TOKEN_CACHE_SECONDS=0).token_cache_seconds == 0
    with pytest.raises(ValidationError):
        make_settings("sqlite+aiosqlite://", SANZI_TOKEN_CACHE_SECONDS=-1)
    with pytest.raises(ValidationError):
        make_settings("sqlite+aiosqlite://", SANZI_TOKEN_CACHE_SECONDS=3600)
