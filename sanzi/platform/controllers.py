"""Platform HTTP API: health, geography, authentication, users and bidder self-registration."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_204_NO_CONTENT, HTTP_303_SEE_OTHER
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform import schemas
from sanzi.platform.auth import (
    AUTHENTICATED,
    PUBLIC,
    LoginThrottled,
    SignupThrottle,
    SignupThrottled,
    Throttled,
    authenticate,
    client_address,
    current_token_hash,
    revoke_tokens,
    roles,
    start_session,
)
from sanzi.platform.models import Role
from sanzi.platform.problems import DomainError, problem
from sanzi.platform.services import BidderService, GeographyService, UserService, token_for


class HealthController(Controller):
    path = "/api/health"
    tags = ["platform"]

    @get(operation_id="GetHealth", opt=PUBLIC, summary="Database and Redis state")
    async def health(self, db_session: AsyncSession, state: State, request: Request[Any, Any, Any]) -> Any:
        body: dict[str, Any] = {"status": "ok"}
        try:
            await db_session.execute(text("SELECT 1"))
            body["database"] = {"status": "ok", "dialect": db_session.bind.dialect.name}
        except Exception as exc:  # a health check reports, it does not raise
            body["status"] = "degraded"
            body["database"] = {"status": "error", "error": type(exc).__name__}
            request.logger.warning("health: database check failed: %r", exc)
        redis = state.get("redis")
        if redis is None:
            body["redis"] = {"status": "not_configured"}
        else:
            try:
                await redis.ping()
                body["redis"] = {"status": "ok"}
            except Exception as exc:
                body["status"] = "degraded"
                body["redis"] = {"status": "error", "error": type(exc).__name__}
        return Response(body, status_code=200 if body["status"] == "ok" else 503)


class GeographyController(Controller):
    """The 1,145 villages of Guangzhou with their townships and districts (public)."""

    path = "/api"
    tags = ["geography"]

    @get("/districts", operation_id="ListDistricts", opt=PUBLIC)
    async def districts(self, db_session: AsyncSession) -> list[schemas.District]:
        return [schemas.District.model_validate(d) for d in await GeographyService(db_session).districts()]

    @get("/townships", operation_id="ListTownships", opt=PUBLIC)
    async def townships(
        self, db_session: AsyncSession, district: str | None = Parameter(default=None, max_length=12)
    ) -> list[schemas.Township]:
        rows = await GeographyService(db_session).townships(district)
        return [schemas.Township.model_validate(t) for t in rows]

    @get("/villages", operation_id="ListVillages", opt=PUBLIC)
    async def villages(
        self,
        db_session: AsyncSession,
        district: str | None = Parameter(default=None, max_length=12, description="district code (6 or 12 digits)"),
        township: str | None = Parameter(default=None, max_length=12, description="township code (9 or 12 digits)"),
        q: str | None = Parameter(default=None, max_length=32, description="part of the village name"),
        page: int = Parameter(default=1, ge=1, le=100_000),
        page_size: int = Parameter(default=50, ge=1, le=500),
    ) -> schemas.Page[schemas.Village]:
        return await GeographyService(db_session).villages(district, township, q, page, page_size)

    @get("/villages/{code:str}", operation_id="GetVillage", opt=PUBLIC)
    async def village(self, db_session: AsyncSession, code: str) -> schemas.Village:
        return await GeographyService(db_session).village(code)


# ---- authentication, users and bidders ------------------------------------------------------------------


def _throttled(request: Request[Any, Any, Any], exc: Throttled) -> Response[Any]:
    """429 with Retry-After: as problem details on /api, as the login form with a Chinese message on pages."""
    headers = {"Retry-After": str(exc.retry_after)}
    if request.url.path.startswith("/api/"):
        return problem(request, 429, exc.message, exc.message_en, code=exc.code, headers=headers, **exc.extra)
    return _login_page(request, status_code=429, headers=headers, error=exc.message)


class AuthController(Controller):
    """Bearer tokens for the API: log in with username and password, log out, who am I."""

    path = "/api/auth"
    tags = ["auth"]
    exception_handlers = {LoginThrottled: _throttled}

    @post("/token", operation_id="CreateToken", opt=PUBLIC, summary="Log in: username and password → token")
    async def create_token(
        self,
        db_session: AsyncSession,
        state: State,
        request: Request[Any, Any, Any],
        data: schemas.TokenRequest,
    ) -> schemas.Token:
        user = await authenticate(
            db_session,
            state.passwords,
            state.login_throttle,
            data.username,
            data.password,
            client_address(request),
        )
        return await token_for(db_session, user, state.settings.api_token_days)

    @delete("/token", operation_id="RevokeToken", opt=AUTHENTICATED, summary="Log out: revoke this token")
    async def revoke_token(self, db_session: AsyncSession, request: Request[Any, Any, Any]) -> None:
        await revoke_tokens(db_session, request.user.id, current_token_hash(request))

    @get("/me", operation_id="GetMe", opt=AUTHENTICATED, summary="The caller's account")
    async def me(self, request: Request[Any, Any, Any]) -> schemas.User:
        return schemas.User.model_validate(request.user)

    @post(
        "/password",
        operation_id="ChangePassword",
        opt=AUTHENTICATED,
        status_code=HTTP_204_NO_CONTENT,
        summary="Change one's own password; every other token of the account is revoked",
    )
    async def change_password(
        self,
        db_session: AsyncSession,
        state: State,
        request: Request[Any, Any, Any],
        data: schemas.PasswordChange,
    ) -> None:
        await UserService(db_session, state.passwords).change_own_password(
            request.user,
            data,
            state.login_throttle,
            client_address(request),
            keep_token=current_token_hash(request),
        )


class UserController(Controller):
    """Officials' accounts (admin only): committee members, supervisors and admins."""

    path = "/api/users"
    tags = ["users"]
    opt = roles(Role.ADMIN)

    @get(operation_id="ListUsers", opt=roles(Role.ADMIN))
    async def list_users(
        self,
        db_session: AsyncSession,
        state: State,
        role: Role | None = Parameter(default=None),
        q: str | None = Parameter(default=None, max_length=64, description="part of the username or name"),
        page: int = Parameter(default=1, ge=1, le=100_000),
        page_size: int = Parameter(default=50, ge=1, le=500),
    ) -> schemas.Page[schemas.User]:
        return await UserService(db_session, state.passwords).list(role, q, page, page_size)

    @post(operation_id="CreateUser", opt=roles(Role.ADMIN))
    async def create_user(
        self, db_session: AsyncSession, state: State, data: schemas.UserCreate
    ) -> schemas.User:
        user = await UserService(db_session, state.passwords).create(data)
        return schemas.User.model_validate(user)

    @get("/{user_id:int}", operation_id="GetUser", opt=roles(Role.ADMIN))
    async def get_user(self, db_session: AsyncSession, state: State, user_id: int) -> schemas.User:
        return schemas.User.model_validate(await UserService(db_session, state.passwords).get(user_id))

    @patch("/{user_id:int}", operation_id="UpdateUser", opt=roles(Role.ADMIN))
    async def update_user(
        self,
        db_session: AsyncSession,
        state: State,
        request: Request[Any, Any, Any],
        user_id: int,
        data: schemas.UserUpdate,
    ) -> schemas.User:
        user = await UserService(db_session, state.passwords).update(user_id, data, by=request.user)
        return schemas.User.model_validate(user)


def _signup_throttle(state: State) -> SignupThrottle:
    """The app's sign-up throttle (made by the app factory, sharing its Redis so every worker counts)."""
    throttle: SignupThrottle = state["signup_throttle"]
    return throttle


class BidderController(Controller):
    """Bidder self-registration (public, throttled per address) and a bidder's own profile."""

    path = "/api/bidders"
    tags = ["bidders"]
    exception_handlers = {SignupThrottled: _throttled}

    @post(operation_id="RegisterBidder", opt=PUBLIC, summary="Register as a bidder (person or company)")
    async def register(
        self,
        db_session: AsyncSession,
        state: State,
        request: Request[Any, Any, Any],
        data: schemas.BidderCreate,
    ) -> schemas.BidderRegistered:
        return await BidderService(db_session, state.passwords).register(
            data, state.settings.api_token_days, _signup_throttle(state), client_address(request)
        )

    @get("/me", operation_id="GetMyBidderProfile", opt=roles(Role.BIDDER))
    async def me(
        self, db_session: AsyncSession, state: State, request: Request[Any, Any, Any]
    ) -> schemas.Bidder:
        return await BidderService(db_session, state.passwords).me(request.user)

    @patch("/me", operation_id="UpdateMyBidderProfile", opt=roles(Role.BIDDER), summary="Contact details")
    async def update_me(
        self,
        db_session: AsyncSession,
        state: State,
        request: Request[Any, Any, Any],
        data: schemas.BidderUpdate,
    ) -> schemas.Bidder:
        return await BidderService(db_session, state.passwords).update_me(request.user, data)


# ---- login pages (cookie session + CSRF) ----------------------------------------------------------------

ROLE_NAMES = {
    Role.ADMIN.value: "系统管理员",
    Role.COMMITTEE.value: "村委会成员",
    Role.SUPERVISOR.value: "监管人员",
    Role.BIDDER.value: "竞买人",
}


def _safe_next(target: str | None) -> str:
    """Only a local path is followed after login (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _login_page(
    request: Request[Any, Any, Any],
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Template:
    from sanzi.platform.pages import page

    context.setdefault("next", _safe_next(request.query_params.get("next")))
    return page(request, "login.html", status_code=status_code, headers=headers, role_names=ROLE_NAMES, **context)


class LoginPageController(Controller):
    """The login form, logout, and a small page showing who is logged in."""

    path = "/"
    include_in_schema = False
    exception_handlers = {LoginThrottled: _throttled}

    @get("/login", operation_id="LoginPage", opt=PUBLIC)
    async def login_form(self, request: Request[Any, Any, Any]) -> Template:
        return _login_page(request)

    @post("/login", operation_id="LoginSubmit", opt=PUBLIC)
    async def login_submit(
        self, db_session: AsyncSession, state: State, request: Request[Any, Any, Any]
    ) -> Template | Redirect:
        form = await request.form()
        username = str(form.get("username") or "").strip()
        password = str(form.get("password") or "")
        target = _safe_next(str(form.get("next") or ""))
        errors: dict[str, str] = {}
        if not username or len(username) > 64:
            errors["username"] = "请输入用户名（不超过 64 个字符）"
        if not password or len(password) > 128:
            errors["password"] = "请输入密码（不超过 128 个字符）"
        if errors:
            return _login_page(request, status_code=400, errors=errors, username=username[:64], next=target)
        try:
            user = await authenticate(
                db_session, state.passwords, state.login_throttle, username, password, client_address(request)
            )
        except DomainError as exc:
            if isinstance(exc, LoginThrottled):
                raise
            return _login_page(
                request,
                status_code=exc.status_code,
                errors={"password": exc.message},
                username=username,
                next=target,
            )
        start_session(request, user)
        return Redirect(target, status_code=HTTP_303_SEE_OTHER)

    @post("/logout", operation_id="Logout", opt=PUBLIC)
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        request.clear_session()
        return Redirect("/login", status_code=HTTP_303_SEE_OTHER)

    @get("/account", operation_id="AccountPage", opt=AUTHENTICATED)
    async def account(self, request: Request[Any, Any, Any]) -> Template:
        return _login_page(request)


controllers: list[Any] = [
    HealthController,
    GeographyController,
    AuthController,
    UserController,
    BidderController,
    LoginPageController,
]
from sanzi.platform.governance import controllers as _governance; controllers.extend(_governance)  # noqa: E402
from sanzi.platform.pages import controllers as _pages; controllers.extend(_pages)  # noqa: E402
from sanzi.platform.admin_pages import controllers as _admin; controllers.extend(_admin)  # noqa: E402
