"""The bidder's own pages: sign-up (person or company), profile with contact details, and applications with
deposit, qualification, bidder number and result."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.response import Redirect, Template
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import ListingStatus
from sanzi.auction.pages.bidding import views
from sanzi.auction.services import registrations
from sanzi.platform import identity
from sanzi.platform.auth import (
    PUBLIC,
    SignupThrottled,
    check_password_policy,
    client_address,
    revoke_tokens,
    roles,
    start_session,
)
from sanzi.platform.models import Role, User
from sanzi.platform.pages import flash, form_data, form_errors, page, register_labels, see_other
from sanzi.platform.problems import DomainError
from sanzi.platform.schemas import BidderCreate, BidderUpdate
from sanzi.platform.services import BidderService

AnyRequest = Request[Any, Any, Any]
BIDDER = roles(Role.BIDDER)

register_labels("bidder_kind", {"person": "个人", "company": "企业"})

SIGNUP_FIELDS = (
    "kind",
    "name",
    "id_number",
    "legal_representative",
    "phone",
    "address",
    "bank_name",
    "bank_account",
    "username",
    "password",
)
PROFILE_FIELDS = ("phone", "address", "bank_name", "bank_account")


#: field names as the forms label them, for messages a person understands
FIELD_NAMES = {
    "kind": "竞买人类型",
    "name": "姓名或企业名称",
    "id_number": "证件号码",
    "legal_representative": "法定代表人",
    "phone": "手机号码",
    "address": "联系地址",
    "bank_name": "开户银行",
    "bank_account": "银行账号",
    "username": "用户名",
    "password": "密码",
}


def _optional(value: str | None) -> str | None:
    return value or None


def _form_errors(exc: ValidationError) -> dict[str, str]:
    """Pydantic's refusals in the words of the form (the generic translation for anything else)."""
    errors = form_errors(exc)
    for item in exc.errors():
        name = str(item["loc"][0]) if item.get("loc") else "__all__"
        label = FIELD_NAMES.get(name, name)
        kind, ctx = item.get("type"), item.get("ctx") or {}
        if kind in ("missing", "string_too_short") and not item.get("input"):
            errors[name] = f"请填写{label}"
        elif kind == "string_too_short":
            errors[name] = f"{label}至少需要 {ctx.get('min_length')} 个字符"
        elif kind == "string_too_long":
            errors[name] = f"{label}不能超过 {ctx.get('max_length')} 个字符"
        elif kind == "literal_error":
            errors[name] = f"请选择{label}"
        elif kind == "string_pattern_mismatch" and name == "username":
            errors[name] = "用户名只能使用字母、数字或 . _ @ - 符号（3 至 64 位）"
    return errors


def _identity_errors(values: dict[str, Any]) -> dict[str, str]:
    """The identity checks the sign-up service makes, run on every field at once so that a person sees all
    that is wrong in one go (the service runs them again)."""
    errors: dict[str, str] = {}
    checks = [
        ("id_number", lambda: identity.identity_number(values["kind"], values["id_number"])),
        ("phone", lambda: identity.mainland_mobile(values["phone"])),
    ]
    if values.get("bank_account"):
        checks.append(("bank_account", lambda: identity.bank_account(values["bank_account"])))
    if values.get("password"):
        checks.append(("password", lambda: check_password_policy(values["password"], values.get("username"))))
    for name, check in checks:
        if values.get(name) and values.get("kind") in ("person", "company"):
            try:
                check()
            except DomainError as exc:
                errors[exc.field or name] = exc.message
    return errors


class BidderPages(Controller):
    """Sign-up, profile and applications."""

    include_in_schema = False

    @get("/bidder/signup", operation_id="BidderSignupPage", opt=PUBLIC)
    async def signup_form(self, request: AnyRequest) -> Template | Redirect:
        user = request.scope.get("user")
        if user is not None and user.role == Role.BIDDER.value:
            return see_other("/bidder/profile")
        return page(request, "bidding/signup.html", form={"kind": "person"})

    @post("/bidder/signup", operation_id="BidderSignupSubmit", opt=PUBLIC)
    async def signup(
        self, request: AnyRequest, db_session: AsyncSession, state: State
    ) -> Template | Redirect:
        """The platform's bidder registration (same checks as the API); success logs the new bidder in."""
        form = await form_data(request)
        errors: dict[str, str] = {}
        if form.get("password") != form.get("password_again"):
            errors["password_again"] = "两次输入的密码不一致"
        values = {name: form.get(name, "") for name in SIGNUP_FIELDS}
        for name in ("legal_representative", "address", "bank_name", "bank_account"):
            values[name] = _optional(values[name])  # type: ignore[assignment]
        status = 400
        try:
            data = BidderCreate.model_validate(values)
        except ValidationError as exc:
            errors = {**_identity_errors(values), **_form_errors(exc), **errors}
        if not errors:
            try:
                registered = await BidderService(db_session, state.passwords).register(
                    data, state.settings.api_token_days, state["signup_throttle"], client_address(request)
                )
            except SignupThrottled as exc:
                errors, status = {"__all__": exc.message}, 429
            except DomainError as exc:
                errors, status = form_errors(exc), exc.status_code
            else:
                user = await db_session.get_one(User, registered.bidder.user_id)
                await revoke_tokens(db_session, user.id)  # pages use the session, not the API token
                await db_session.commit()  # the account is durable before its session starts
                start_session(request, user)
                flash(request, "注册成功，欢迎使用。报名竞买前请核对您的联系方式。")
                return see_other("/bidder/profile")
        form.pop("password", None)
        form.pop("password_again", None)
        return page(request, "bidding/signup.html", status_code=status, errors=errors, form=form)

    @get("/bidder/profile", operation_id="BidderProfilePage", opt=BIDDER)
    async def profile(self, request: AnyRequest, db_session: AsyncSession, state: State) -> Template:
        me = await BidderService(db_session, state.passwords).me(request.user)
        return page(request, "bidding/profile.html", bidder=me, form=me.model_dump())

    @post("/bidder/profile", operation_id="BidderProfileSubmit", opt=BIDDER)
    async def update_profile(
        self, request: AnyRequest, db_session: AsyncSession, state: State
    ) -> Template | Redirect:
        """Contact details (as ``PATCH /api/bidders/me``): name, kind and identity number cannot change."""
        form = await form_data(request)
        service = BidderService(db_session, state.passwords)
        try:
            data = BidderUpdate.model_validate({name: _optional(form.get(name)) for name in PROFILE_FIELDS})
            await service.update_me(request.user, data)
        except (ValidationError, DomainError) as exc:
            status = exc.status_code if isinstance(exc, DomainError) else 400
            await db_session.rollback()
            me = await service.me(request.user)
            return page(
                request,
                "bidding/profile.html",
                status_code=status,
                bidder=me,
                errors=_form_errors(exc) if isinstance(exc, ValidationError) else form_errors(exc),
                form=form,
            )
        flash(request, "联系方式已更新")
        return see_other("/bidder/profile")

    @get("/bidder/applications", operation_id="BidderApplicationsPage", opt=BIDDER)
    async def applications(self, request: AnyRequest, db_session: AsyncSession) -> Template:
        """Every application with its deposit, qualification, bidder number and, once closed, the outcome."""
        if await views.bidder_of(db_session, request.user) is None:
            return page(request, "bidding/applications.html", rows=[], no_profile=True)
        mine = await registrations.my_registrations(db_session, request.user)
        listings = await views.listings_by_id(db_session, [item.listing_id for item in mine])
        rows = []
        for item in mine:
            listing = listings[item.listing_id]
            outcome = None
            if listing.status in (ListingStatus.SOLD.value, ListingStatus.FAILED.value):
                won = listing.winner_registration_id == item.id
                outcome = {
                    "won": won,
                    "sold": listing.status == ListingStatus.SOLD.value,
                    "price_fen": listing.final_price_fen,
                }
            rows.append({"item": item, "listing": listing, "outcome": outcome})
        return page(request, "bidding/applications.html", rows=rows, no_profile=False)


controllers: list[Any] = [BidderPages]
