"""Platform services: reads of the geography; users, tokens and bidders."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform import identity, schemas
from sanzi.platform.auth import (
    LoginThrottle,
    Passwords,
    SignupThrottle,
    authenticate,
    check_password_policy,
    end_sessions,
    issue_token,
    revoke_tokens,
    token_cache,
)
from sanzi.platform.geography import normalise_code
from sanzi.platform.models import ApiToken, Bidder, District, Role, Township, User, Village
from sanzi.platform.problems import Conflict, DomainError, NotFound


def _village_out(village: Village) -> schemas.Village:
    return schemas.Village(
        code=village.code,
        name=village.name,
        township_code=village.township_code,
        township_name=village.township.name,
        district_code=village.district_code,
        district_name=village.township.district.name,
        collective_name=village.collective.name if village.collective else None,
    )


class GeographyService:
    """Districts, townships and villages as the public sees them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def districts(self) -> list[District]:
        return list(await self.session.scalars(select(District).order_by(District.code)))

    async def townships(self, district: str | None) -> list[Township]:
        query = select(Township).order_by(Township.code)
        if district:
            query = query.where(Township.district_code == normalise_code(district, "district"))
        return list(await self.session.scalars(query))

    async def villages(
        self, district: str | None, township: str | None, q: str | None, page: int, page_size: int
    ) -> schemas.Page[schemas.Village]:
        conditions: list[Any] = []
        if district:
            conditions.append(Village.district_code == normalise_code(district, "district"))
        if township:
            conditions.append(Village.township_code == normalise_code(township, "township"))
        if q and q.isdigit():  # a division code, or its beginning
            conditions.append(Village.code.startswith(q))
        elif q:
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(Village.name.like(pattern, escape="\\"))
        total = await self.session.scalar(select(func.count()).select_from(Village).where(*conditions)) or 0
        rows = await self.session.scalars(
            select(Village).where(*conditions).order_by(Village.code).offset((page - 1) * page_size).limit(page_size)
        )
        return schemas.Page(
            items=[_village_out(v) for v in rows.unique()], total=total, page=page, page_size=page_size
        )

    async def village(self, code: str) -> schemas.Village:
        village = await self.session.scalar(select(Village).where(Village.code == normalise_code(code, "code")))
        if village is None:
            raise NotFound("村", "village")
        return _village_out(village)


# ---- tokens, users and bidders --------------------------------------------------------------------------


async def token_for(session: AsyncSession, user: User, days: int) -> schemas.Token:
    """Issue a bearer token and describe it (the only time the token itself is shown)."""
    token = await issue_token(session, user, days)
    expires_at = await session.scalar(
        select(ApiToken.expires_at).where(ApiToken.user_id == user.id).order_by(ApiToken.id.desc()).limit(1)
    )
    return schemas.Token(token=token, expires_at=expires_at, user=schemas.User.model_validate(user))


async def _username_free(session: AsyncSession, username: str) -> None:
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict("用户名已被使用", "this username is already taken", field="username")


class UserService:
    """Officials' accounts, managed by admins: creation with a checked scope, changes, deactivation."""

    def __init__(self, session: AsyncSession, passwords: Passwords) -> None:
        self.session = session
        self.passwords = passwords

    async def list(
        self, role: Role | None, q: str | None, page: int, page_size: int
    ) -> schemas.Page[schemas.User]:
        conditions: list[Any] = []
        if role is not None:
            conditions.append(User.role == role.value)
        if q:
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(
                User.username.like(pattern, escape="\\") | User.display_name.like(pattern, escape="\\")
            )
        total = await self.session.scalar(select(func.count()).select_from(User).where(*conditions)) or 0
        rows = await self.session.scalars(
            select(User).where(*conditions).order_by(User.id).offset((page - 1) * page_size).limit(page_size)
        )
        items = [schemas.User.model_validate(u) for u in rows]
        return schemas.Page(items=items, total=total, page=page, page_size=page_size)

    async def get(self, user_id: int) -> User:
        user = await self.session.get(User, user_id)
        if user is None:
            raise NotFound("用户", "user")
        return user

    async def create(self, data: schemas.UserCreate) -> User:
        username = data.username.lower()
        if data.role == Role.BIDDER:
            raise DomainError(
                "竞买人须通过自助注册开户", "bidders register themselves (POST /api/bidders)", field="role"
            )
        village_code, area_code = await self._scope(data.role, data.village_code, data.area_code)
        check_password_policy(data.password, username)
        await _username_free(self.session, username)
        user = User(
            username=username,
            password_hash=self.passwords.hash(data.password),
            display_name=data.display_name,
            role=data.role.value,
            village_code=village_code,
            area_code=area_code,
            phone=identity.mainland_mobile(data.phone) if data.phone else None,
            is_active=True,
        )
        self.session.add(user)
        await self.session.flush()
        return user

    async def update(self, user_id: int, data: schemas.UserUpdate, by: User | None = None) -> User:
        """Apply an admin's changes; ``by`` is the admin (None for the operator's command line)."""
        user = await self.get(user_id)
        given = data.model_fields_set
        if "village_code" in given or "area_code" in given:
            village_code = data.village_code if "village_code" in given else user.village_code
            area_code = data.area_code if "area_code" in given else user.area_code
            user.village_code, user.area_code = await self._scope(Role(user.role), village_code, area_code)
        if data.display_name is not None:
            user.display_name = data.display_name
        if "phone" in given:
            user.phone = identity.mainland_mobile(data.phone) if data.phone else None
        if data.password is not None:
            check_password_policy(data.password, user.username)
            user.password_hash = self.passwords.hash(data.password)
            # a reset password ends every existing login, API and page alike
            await revoke_tokens(self.session, user.id)
            end_sessions(user)
        if data.is_active is not None and data.is_active != user.is_active:
            if not data.is_active and by is not None and user.id == by.id:
                raise DomainError("不能停用自己的账户", "you cannot deactivate your own account", field="is_active")
            user.is_active = data.is_active
            if not user.is_active:
                await revoke_tokens(self.session, user.id)
                end_sessions(user)
        await self.session.flush()
        token_cache.forget_user(user.id)  # a changed scope or name is seen by the next request
        return user

    async def change_own_password(
        self,
        caller: User,
        data: schemas.PasswordChange,
        throttle: LoginThrottle,
        address: str,
        keep_token: str | None,
    ) -> None:
        """A new password after proving the current one (throttled like a login); other tokens are revoked
        and every page session ends."""
        user = await authenticate(
            self.session, self.passwords, throttle, caller.username, data.current_password, address
        )
        check_password_policy(data.new_password, user.username, field="new_password")
        user.password_hash = self.passwords.hash(data.new_password)
        await revoke_tokens(self.session, user.id, keep=keep_token)
        end_sessions(user)
        await self.session.flush()

    async def _scope(
        self, role: Role, village_code: str | None, area_code: str | None
    ) -> tuple[str | None, str | None]:
        """The checked (village_code, area_code) of a role: committee a village, supervisor a township or
        district, nobody else a scope."""

        def refuse(field: str, message: str, message_en: str) -> DomainError:
            return DomainError(message, message_en, field=field)

        if role == Role.COMMITTEE:
            if area_code:
                raise refuse("area_code", "村委会成员不设监管区域", "a committee member has no area_code")
            if not village_code:
                raise refuse("village_code", "村委会成员须指定所属村", "a committee member needs a village_code")
            if await self.session.get(Village, village_code) is None:
                raise refuse("village_code", f"村代码不存在：{village_code}", f"no village with code {village_code}")
            return village_code, None
        if role == Role.SUPERVISOR:
            if village_code:
                raise refuse("village_code", "监管人员不设所属村", "a supervisor has no village_code")
            if not area_code:
                raise refuse("area_code", "监管人员须指定所辖镇街或区", "a supervisor needs a township or district")
            township = await self.session.get(Township, area_code)
            if township is None and await self.session.get(District, area_code) is None:
                raise refuse(
                    "area_code", f"镇街或区代码不存在：{area_code}", f"no township or district with code {area_code}"
                )
            return None, area_code
        for field, value in (("village_code", village_code), ("area_code", area_code)):
            if value:
                raise refuse(field, "该角色不设管辖范围", f"role {role.value} has no {field}")
        return None, None


def _bidder_out(bidder: Bidder, user: User) -> schemas.Bidder:
    return schemas.Bidder(
        id=bidder.id,
        user_id=user.id,
        username=user.username,
        kind=bidder.kind,  # type: ignore[arg-type]
        name=bidder.name,
        id_number=bidder.id_number,
        legal_representative=bidder.legal_representative,
        phone=bidder.phone,
        address=bidder.address,
        bank_name=bidder.bank_name,
        bank_account=bidder.bank_account,
        created_at=bidder.created_at,
    )


class BidderService:
    """Bidder self-registration and a bidder's own contact details."""

    def __init__(self, session: AsyncSession, passwords: Passwords) -> None:
        self.session = session
        self.passwords = passwords

    async def register(
        self, data: schemas.BidderCreate, token_days: int, throttle: SignupThrottle, address: str
    ) -> schemas.BidderRegistered:
        """A new bidder account, logged in at once; every attempt counts against the address's limit."""
        await throttle.admit(address)
        username = data.username.lower()
        id_number = identity.identity_number(data.kind, data.id_number)
        phone = identity.mainland_mobile(data.phone)
        bank_account = identity.bank_account(data.bank_account) if data.bank_account else None
        if data.kind == "company" and not data.legal_representative:
            raise DomainError(
                "企业竞买人须填写法定代表人", "a company needs its legal_representative", field="legal_representative"
            )
        check_password_policy(data.password, username)
        await _username_free(self.session, username)
        if await self.session.scalar(select(Bidder.id).where(Bidder.id_number == id_number)) is not None:
            raise Conflict("该证件号码已注册", "this identity number is already registered", field="id_number")
        user = User(
            username=username,
            password_hash=self.passwords.hash(data.password),
            display_name=data.name[:64],
            role=Role.BIDDER.value,
            phone=phone,
            is_active=True,
        )
        bidder = Bidder(
            user=user,
            kind=data.kind,
            name=data.name,
            id_number=id_number,
            legal_representative=data.legal_representative if data.kind == "company" else None,
            phone=phone,
            address=data.address or None,
            bank_name=data.bank_name or None,
            bank_account=bank_account,
        )
        try:
            async with self.session.begin_nested():  # a concurrent duplicate loses cleanly
                self.session.add_all([user, bidder])
                await self.session.flush()
        except IntegrityError:
            raise Conflict("用户名或证件号码已注册", "username or identity number already registered") from None
        token = await token_for(self.session, user, token_days)
        return schemas.BidderRegistered(bidder=_bidder_out(bidder, user), token=token)

    async def of(self, user: User) -> Bidder:
        bidder = await self.session.scalar(select(Bidder).where(Bidder.user_id == user.id))
        if bidder is None:
            raise NotFound("竞买人资料", "bidder profile")
        return bidder

    async def me(self, user: User) -> schemas.Bidder:
        bidder = await self.of(user)
        return _bidder_out(bidder, bidder.user)

    async def update_me(self, user: User, data: schemas.BidderUpdate) -> schemas.Bidder:
        bidder = await self.of(user)
        given = data.model_fields_set
        if "phone" in given:
            if not data.phone:
                raise DomainError("手机号码不能为空", "phone cannot be empty", field="phone")
            bidder.phone = identity.mainland_mobile(data.phone)
            bidder.user.phone = bidder.phone
            token_cache.forget_user(user.id)  # the account's phone is part of the cached caller
        if "address" in given:
            bidder.address = data.address or None
        if "bank_name" in given:
            bidder.bank_name = data.bank_name or None
        if "bank_account" in given:
            bidder.bank_account = identity.bank_account(data.bank_account) if data.bank_account else None
        await self.session.flush()
        return _bidder_out(bidder, bidder.user)
