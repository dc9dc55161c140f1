"""Administration pages (admin only): users and roles, election calendars and candidates, cadres and their
declared relatives. Handlers are thin: they read the form, call UserService or GovernanceService (which keep
every rule: the password policy, ending sessions, scopes, who may edit what) and show refusals by the field.
The rule parameters page belongs to the rule catalogue and lives with the warnings pages."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, TypeVar

from litestar import Controller, Request, get, post
from litestar.datastructures import State
from litestar.response import Redirect, Template
from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform import schemas
from sanzi.platform.access import village_for
from sanzi.platform.auth import roles
from sanzi.platform.geography import normalise_code
from sanzi.platform.governance import (
    CadreCreate,
    CadreUpdate,
    CandidateCreate,
    ElectionBulk,
    ElectionCreate,
    GovernanceService,
    RelativeCreate,
)
from sanzi.platform.models import Cadre, CadreRelative, District, Election, Role, Township, Village
from sanzi.platform.pages import flash, form_data, form_errors, page, paginate, register_labels, see_other
from sanzi.platform.problems import DomainError, NotFound
from sanzi.platform.services import GeographyService, UserService

ADMIN = roles(Role.ADMIN)
USERS_PER_PAGE = 25
VILLAGES_PER_PAGE = 20
OFFICIAL_ROLES = [
    (Role.ADMIN.value, "管理员"),
    (Role.COMMITTEE.value, "村委会"),
    (Role.SUPERVISOR.value, "监管人员"),
]
register_labels("cadre_body", {"committee": "村民委员会", "party_branch": "党支部"})
RELATIONS = ["配偶", "父母", "子女", "兄弟姐妹", "祖父母", "孙子女", "配偶父母", "子女配偶", "其他"]

SchemaT = TypeVar("SchemaT", bound=BaseModel)


# ---- form helpers -----------------------------------------------------------------------------------------


def checked(schema: type[SchemaT], values: dict[str, Any], errors: dict[str, str]) -> SchemaT | None:
    """The schema from the form's values, or None with Chinese messages by field added to ``errors``."""
    if errors:
        return None
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        errors.update(form_errors(exc))
        return None


def refusal(exc: DomainError) -> dict[str, str]:
    """A service's refusal beside its field; access refusals go on to the error page."""
    if exc.status_code in (403, 404) and exc.field is None:
        raise exc
    return form_errors(exc)


def date_field(
    form: dict[str, str], name: str, errors: dict[str, str], required: str | None = None
) -> date | None:
    value = form.get(name, "")
    if not value:
        if required:
            errors[name] = required
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[name] = "日期格式应为 YYYY-MM-DD"
        return None


def division_code(value: str) -> str:
    """A 6-, 9- or 12-digit division code in its 12-digit form; anything else is for the service to refuse."""
    try:
        return normalise_code(value)
    except DomainError:
        return value


def need(form: dict[str, str], name: str, errors: dict[str, str], message: str) -> str:
    value = form.get(name, "")
    if not value:
        errors[name] = message
    return value


def optional(form: dict[str, str], *names: str) -> dict[str, str]:
    return {name: form[name] for name in names if form.get(name)}


def local_today(request: Request[Any, Any, Any]) -> date:
    """Today in the villages' calendar (Asia/Shanghai): terms and elections are local dates."""
    return datetime.now(request.app.state.settings.zone).date()


def _page_number(request: Request[Any, Any, Any]) -> int:
    text = (request.query_params.get("page") or "1").strip()
    return min(int(text), 100_000) if text.isdigit() and int(text) > 0 else 1


async def scope_names(session: AsyncSession, codes: set[str]) -> dict[str, str]:
    """Names of the villages, townships and districts behind a set of codes (for showing users' scopes)."""
    names: dict[str, str] = {}
    if not codes:
        return names
    for model in (Village, Township, District):
        for row in await session.execute(select(model.code, model.name).where(model.code.in_(codes))):
            names[row.code] = row.name
    return names


async def village_search(request: Request[Any, Any, Any], session: AsyncSession) -> dict[str, Any]:
    """The village picker: a district, a township and part of a name narrow the 1,145 villages."""
    district = (request.query_params.get("district") or "").strip()[:12]
    township = (request.query_params.get("township") or "").strip()[:12]
    q = (request.query_params.get("q") or "").strip()[:32]
    geography = GeographyService(session)
    errors: dict[str, str] = {}
    try:
        result = await geography.villages(
            district or None, township or None, q or None, _page_number(request), VILLAGES_PER_PAGE
        )
    except DomainError as exc:
        errors[exc.field or "q"] = exc.message
        result = schemas.Page(items=[], total=0, page=1, page_size=VILLAGES_PER_PAGE)
    districts = [(d.code, d.name) for d in await geography.districts()]
    townships = (
        [(t.code, t.name) for t in await geography.townships(district)] if district and not errors else []
    )
    return {
        "districts": districts,
        "townships": townships,
        "villages": result.items,
        "pager": paginate(result.total, result.page, VILLAGES_PER_PAGE),
        "errors": errors,
        "form": {"district": district, "township": township, "q": q},
        "searched": bool(district or township or q),
    }


# ---- users and roles ---------------------------------------------------------------------------------------


class UserPages(Controller):
    """用户与角色: officials' accounts, created and changed through UserService."""

    path = "/admin/users"
    include_in_schema = False

    @get(operation_id="AdminUsersPage", opt=ADMIN)
    async def list_users(
        self, db_session: AsyncSession, state: State, request: Request[Any, Any, Any]
    ) -> Template:
        role_text = (request.query_params.get("role") or "").strip()
        q = (request.query_params.get("q") or "").strip()[:64]
        errors: dict[str, str] = {}
        role = None
        if role_text:
            try:
                role = Role(role_text)
            except ValueError:
                errors["role"] = "无效的筛选条件"
        number = _page_number(request)
        result = await UserService(db_session, state.passwords).list(role, q or None, number, USERS_PER_PAGE)
        codes = {code for u in result.items for code in (u.village_code, u.area_code) if code}
        return page(
            request,
            "admin/users.html",
            status_code=400 if errors else 200,
            users=result.items,
            pager=paginate(result.total, number, USERS_PER_PAGE),
            names=await scope_names(db_session, codes),
            roles=[*OFFICIAL_ROLES, (Role.BIDDER.value, "竞买人")],
            errors=errors,
            form={"role": role_text, "q": q},
        )

    @get("/new", operation_id="AdminNewUserPage", opt=ADMIN)
    async def new_user(self, request: Request[Any, Any, Any]) -> Template:
        return page(request, "admin/user_new.html", roles=OFFICIAL_ROLES, form={"role": Role.COMMITTEE.value})

    @post("/new", operation_id="AdminCreateUserPage", opt=ADMIN)
    async def create_user(
        self, db_session: AsyncSession, state: State, request: Request[Any, Any, Any]
    ) -> Template | Redirect:
        form = await form_data(request)
        errors: dict[str, str] = {}
        status = 400
        for name, message in (
            ("username", "请填写用户名"),
            ("display_name", "请填写姓名"),
            ("role", "请选择角色"),
            ("password", "请设置初始密码"),
        ):
            need(form, name, errors, message)
        if form.get("password") and form.get("password") != form.get("password_confirm"):
            errors["password_confirm"] = "两次输入的密码不一致"
        role = form.get("role", "")
        values: dict[str, Any] = {
            "username": form.get("username", ""),
            "password": form.get("password", ""),
            "display_name": form.get("display_name", ""),
            "role": role,
            **optional(form, "phone"),
        }
        if role == Role.COMMITTEE.value:
            values["village_code"] = division_code(
                need(form, "village_code", errors, "村委会成员须填写所属村代码")
            )
        elif role == Role.SUPERVISOR.value:
            values["area_code"] = division_code(
                need(form, "area_code", errors, "监管人员须填写所辖镇街或区代码")
            )
        data = checked(schemas.UserCreate, values, errors)
        if data is not None:
            try:
                user = await UserService(db_session, state.passwords).create(data)
            except DomainError as exc:
                errors, status = refusal(exc), exc.status_code
            else:
                flash(request, f"已开设账户：{user.username}")
                return see_other(f"/admin/users/{user.id}")
        form.pop("password", None), form.pop("password_confirm", None)
        return page(
            request, "admin/user_new.html", status_code=status, roles=OFFICIAL_ROLES, errors=errors, form=form
        )

    @get("/{user_id:int}", operation_id="AdminUserPage", opt=ADMIN)
    async def user_page(
        self, db_session: AsyncSession, state: State, request: Request[Any, Any, Any], user_id: int
    ) -> Template:
        return await self._render(db_session, state, request, user_id)

    async def _render(
        self,
        session: AsyncSession,
        state: State,
        request: Request[Any, Any, Any],
        user_id: int,
        status_code: int = 200,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> Template:
        account = await UserService(session, state.passwords).get(user_id)
        codes = {code for code in (account.village_code, account.area_code) if code}
        values = {
            "display_name": account.display_name,
            "phone": account.phone or "",
            "village_code": account.village_code or "",
            "area_code": account.area_code or "",
        }
        return page(
            request,
            "admin/user.html",
            status_code=status_code,
            account=account,
            names=await scope_names(session, codes),
            errors=errors or {},
            form={**values, **(form or {})},
        )

    @post("/{user_id:int}", operation_id="AdminUpdateUserPage", opt=ADMIN)
    async def update_user(
        self, db_session: AsyncSession, state: State, request: Request[Any, Any, Any], user_id: int
    ) -> Template | Redirect:
        service = UserService(db_session, state.passwords)
        account = await service.get(user_id)
        form = await form_data(request)
        errors: dict[str, str] = {}
        status = 400
        values: dict[str, Any] = {
            "display_name": need(form, "display_name", errors, "请填写姓名"),
            "phone": form.get("phone") or None,
        }
        if account.role == Role.COMMITTEE.value:
            values["village_code"] = division_code(
                need(form, "village_code", errors, "村委会成员须填写所属村代码")
            )
        elif account.role == Role.SUPERVISOR.value:
            values["area_code"] = division_code(
                need(form, "area_code", errors, "监管人员须填写所辖镇街或区代码")
            )
        data = checked(schemas.UserUpdate, values, errors)
        if data is not None:
            try:
                await service.update(user_id, data, by=request.user)
            except DomainError as exc:
                errors, status = refusal(exc), exc.status_code
            else:
                flash(request, "已保存用户资料")
                return see_other(f"/admin/users/{user_id}")
        return await self._render(db_session, state, request, user_id, status, errors, form)

    @post("/{user_id:int}/password", operation_id="AdminResetPasswordPage", opt=ADMIN)
    async def reset_password(
        self, db_session: AsyncSession, state: State, request: Request[Any, Any, Any], user_id: int
    ) -> Template | Redirect:
        form = await form_data(request)
        errors: dict[str, str] = {}
        status = 400
        password = need(form, "password", errors, "请输入新密码")
        if password and password != form.get("password_confirm"):
            errors["password_confirm"] = "两次输入的密码不一致"
        data = checked(schemas.UserUpdate, {"password": password}, errors)
        if data is not None:
            try:
                await UserService(db_session, state.passwords).update(user_id, data, by=request.user)
            except DomainError as exc:
                errors, status = refusal(exc), exc.status_code
            else:
                flash(request, "已重置密码；该用户原有的登录和接口令牌均已失效")
                return see_other(f"/admin/users/{user_id}")
        return await self._render(db_session, state, request, user_id, status, errors)

    @post("/{user_id:int}/active", operation_id="AdminSetUserActivePage", opt=ADMIN)
    async def set_active(
        self, db_session: AsyncSession, state: State, request: Request[Any, Any, Any], user_id: int
    ) -> Template | Redirect:
        form = await form_data(request)
        choice = form.get("is_active", "")
        if choice not in ("true", "false"):
            return await self._render(
                db_session, state, request, user_id, 400, {"is_active": "请选择启用或停用"}
            )
        try:
            await UserService(db_session, state.passwords).update(
                user_id, schemas.UserUpdate(is_active=choice == "true"), by=request.user
            )
        except DomainError as exc:
            return await self._render(db_session, state, request, user_id, exc.status_code, refusal(exc))
        flash(request, "账户已启用" if choice == "true" else "账户已停用；该用户的所有登录已失效")
        return see_other(f"/admin/users/{user_id}")


# ---- elections and candidates ------------------------------------------------------------------------------


class ElectionPages(Controller):
    """选举: each village's election calendar and candidates; one date for a whole district or the city."""

    path = "/admin/elections"
    include_in_schema = False

    @get(operation_id="AdminElectionsPage", opt=ADMIN)
    async def index(self, db_session: AsyncSession, request: Request[Any, Any, Any]) -> Template:
        return await self._index(db_session, request)

    async def _index(
        self,
        session: AsyncSession,
        request: Request[Any, Any, Any],
        status_code: int = 200,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> Template:
        today = local_today(request)
        upcoming = await session.execute(
            select(Election.election_date, func.count().label("villages"))
            .where(Election.election_date >= today)
            .group_by(Election.election_date)
            .order_by(Election.election_date)
            .limit(20)
        )
        return page(
            request,
            "admin/elections.html",
            status_code=status_code,
            search=await village_search(request, session),
            upcoming=list(upcoming),
            errors=errors or {},
            form=form or {},
        )

    @post("/bulk", operation_id="AdminBulkElectionsPage", opt=ADMIN)
    async def bulk(self, db_session: AsyncSession, request: Request[Any, Any, Any]) -> Template | Redirect:
        form = await form_data(request)
        errors: dict[str, str] = {}
        status = 400
        election_date = date_field(form, "election_date", errors, "请选择选举日期")
        values = {"election_date": election_date, **optional(form, "note", "district_code")}
        data = checked(ElectionBulk, values, errors)
        if data is not None:
            try:
                result = await GovernanceService(db_session).add_elections_everywhere(data)
            except DomainError as exc:
                errors, status = refusal(exc), exc.status_code
            else:
                flash(
                    request,
                    f"已为 {result.created} 个村登记 {result.election_date} 的选举"
                    f"（{result.skipped} 个村已登记该日期）",
                )
                return see_other("/admin/elections")
        return await self._index(db_session, request, status, errors, form)

    @get("/villages/{code:str}", operation_id="AdminVillageElectionsPage", opt=ADMIN)
    async def village(self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str) -> Template:
        return await self._village(db_session, request, code)

    async def _village(
        self,
        session: AsyncSession,
        request: Request[Any, Any, Any],
        code: str,
        status_code: int = 200,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        failed: str | None = None,
    ) -> Template:
        village = await village_for(session, code, request.user)
        service = GovernanceService(session)
        elections = await service.elections(village.code)
        candidates = {e.id: await service.candidates(e.id, request.user) for e in elections}
        return page(
            request,
            "admin/village_elections.html",
            status_code=status_code,
            village=village,
            elections=elections,
            candidates=candidates,
            today=local_today(request),
            errors=errors or {},
            form=form or {},
            failed=failed,
        )

    @post("/villages/{code:str}", operation_id="AdminAddElectionPage", opt=ADMIN)
    async def add_election(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str
    ) -> Template | Redirect:
        village = await village_for(db_session, code, request.user)
        form = await form_data(request)
        errors: dict[str, str] = {}
        status = 400
        election_date = date_field(form, "election_date", errors, "请选择选举日期")
        data = checked(ElectionCreate, {"election_date": election_date, **optional(form, "note")}, errors)
        if data is not None:
            try:
                await GovernanceService(db_session).add_election(village.code, data, request.user)
            except DomainError as exc:
                errors, status = refusal(exc), exc.status_code
            else:
                flash(request, f"已登记 {data.election_date} 的换届选举")
                return see_other(f"/admin/elections/villages/{village.code}")
        return await self._village(db_session, request, village.code, status, errors, form, "election")

    @post("/villages/{code:str}/candidates", operation_id="AdminAddCandidatePage", opt=ADMIN)
    async def add_candidate(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str
    ) -> Template | Redirect:
        village = await village_for(db_session, code, request.user)
        form = await form_data(request)
        errors: dict[str, str] = {}
        status = 400
        election_text = need(form, "election_id", errors, "请选择选举")
        election = await db_session.get(Election, int(election_text)) if election_text.isdigit() else None
        if election_text and (election is None or election.village_code != village.code):
            errors["election_id"] = "请选择本村的选举"
        need(form, "name", errors, "请填写候选人姓名")
        need(form, "position", errors, "请填写竞选职务")
        data = checked(
            CandidateCreate,
            {
                "name": form.get("name", ""),
                "position": form.get("position", ""),
                **optional(form, "id_number"),
            },
            errors,
        )
        if data is not None and election is not None:
            try:
                await GovernanceService(db_session).add_candidate(election.id, data, request.user)
            except DomainError as exc:
                errors, status = refusal(exc), exc.status_code
            else:
                flash(request, f"已登记候选人：{data.name}")
                return see_other(f"/admin/elections/villages/{village.code}")
        return await self._village(db_session, request, village.code, status, errors, form, "candidate")


# ---- cadres and relatives ---------------------------------------------------------------------------------


class CadrePages(Controller):
    """干部: each village's committee and Party branch members, their terms and declared relatives."""

    path = "/admin/cadres"
    include_in_schema = False

    @get(operation_id="AdminCadresPage", opt=ADMIN)
    async def index(self, db_session: AsyncSession, request: Request[Any, Any, Any]) -> Template:
        return page(request, "admin/cadres.html", search=await village_search(request, db_session))

    @get("/villages/{code:str}", operation_id="AdminVillageCadresPage", opt=ADMIN)
    async def village(self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str) -> Template:
        return await self._village(db_session, request, code)

    async def _village(
        self,
        session: AsyncSession,
        request: Request[Any, Any, Any],
        code: str,
        status_code: int = 200,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> Template:
        village = await village_for(session, code, request.user)
        cadres = await GovernanceService(session).cadres(village.code, request.user)
        today = local_today(request)
        return page(
            request,
            "admin/village_cadres.html",
            status_code=status_code,
            village=village,
            current=[c for c in cadres if c.term_end is None or c.term_end >= today],
            former=[c for c in cadres if c.term_end is not None and c.term_end < today],
            errors=errors or {},
            form=form or {"body": "committee"},
        )

    @post("/villages/{code:str}", operation_id="AdminAddCadrePage", opt=ADMIN)
    async def add_cadre(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], code: str
    ) -> Template | Redirect:
        village = await village_for(db_session, code, request.user)
        form = await form_data(request)
        errors: dict[str, str] = {}
        status = 400
        need(form, "name", errors, "请填写姓名")
        need(form, "position", errors, "请填写职务")
        need(form, "body", errors, "请选择所属组织")
        term_start = date_field(form, "term_start", errors, "请选择任期开始日")
        term_end = date_field(form, "term_end", errors)
        values = {
            "name": form.get("name", ""),
            "position": form.get("position", ""),
            "body": form.get("body", ""),
            "term_start": term_start,
            "term_end": term_end,
            **optional(form, "id_number", "phone"),
        }
        data = checked(CadreCreate, values, errors)
        if data is not None:
            try:
                cadre = await GovernanceService(db_session).add_cadre(village.code, data, request.user)
            except DomainError as exc:
                errors, status = refusal(exc), exc.status_code
            else:
                flash(request, f"已登记村干部：{cadre.name}")
                return see_other(f"/admin/cadres/{cadre.id}")
        return await self._village(db_session, request, village.code, status, errors, form)

    @get("/{cadre_id:int}", operation_id="AdminCadrePage", opt=ADMIN)
    async def cadre(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], cadre_id: int
    ) -> Template:
        return await self._cadre(db_session, request, cadre_id)

    async def _cadre(
        self,
        session: AsyncSession,
        request: Request[Any, Any, Any],
        cadre_id: int,
        status_code: int = 200,
        errors: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
    ) -> Template:
        row = await session.get(Cadre, cadre_id)
        if row is None:
            raise NotFound("村干部", "cadre")
        village = await village_for(session, row.village_code, request.user)
        cadre = next(
            c for c in await GovernanceService(session).cadres(village.code, request.user) if c.id == cadre_id
        )
        values = {
            "phone": cadre.phone or "",
            "position": cadre.position,
            "term_end": cadre.term_end.isoformat() if cadre.term_end else "",
        }
        return page(
            request,
            "admin/cadre.html",
            status_code=status_code,
            village=village,
            cadre=cadre,
            relations=[(r, r) for r in RELATIONS],
            today=local_today(request),
            errors=errors or {},
            form={**values, **(form or {})},
        )

    @post("/{cadre_id:int}", operation_id="AdminUpdateCadrePage", opt=ADMIN)
    async def update_cadre(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], cadre_id: int
    ) -> Template | Redirect:
        form = await form_data(request)
        errors: dict[str, str] = {}
        status = 400
        need(form, "position", errors, "请填写职务")
        term_end = date_field(form, "term_end", errors)
        values = {
            "position": form.get("position", ""),
            "phone": form.get("phone") or None,
            "term_end": term_end,
        }
        data = checked(CadreUpdate, values, errors)
        if data is not None:
            try:
                await GovernanceService(db_session).update_cadre(cadre_id, data, request.user)
            except DomainError as exc:
                errors, status = refusal(exc), exc.status_code
            else:
                flash(request, "已保存干部信息")
                return see_other(f"/admin/cadres/{cadre_id}")
        return await self._cadre(db_session, request, cadre_id, status, errors, form)

    @post("/{cadre_id:int}/end", operation_id="AdminEndCadreTermPage", opt=ADMIN)
    async def end_term(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], cadre_id: int
    ) -> Template | Redirect:
        form = await form_data(request)
        if form.get("confirm") != "yes":
            return await self._cadre(db_session, request, cadre_id, 400, {"confirm": "请勾选确认"})
        row = await db_session.get(Cadre, cadre_id)
        village_code = row.village_code if row is not None else ""
        await GovernanceService(db_session).remove_cadre(cadre_id, request.user, local_today(request))
        flash(request, "已结束该干部的任期（尚未开始任期的登记已删除）")
        return see_other(f"/admin/cadres/villages/{village_code}")

    @post("/{cadre_id:int}/relatives", operation_id="AdminAddRelativePage", opt=ADMIN)
    async def add_relative(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], cadre_id: int
    ) -> Template | Redirect:
        form = await form_data(request)
        errors: dict[str, str] = {}
        status = 400
        need(form, "relative_name", errors, "请填写亲属姓名")
        need(form, "relation", errors, "请选择关系")
        values = {
            "name": form.get("relative_name", ""),
            "relation": form.get("relation", ""),
            **({"id_number": form["relative_id_number"]} if form.get("relative_id_number") else {}),
        }
        data = checked(RelativeCreate, values, errors)
        if data is not None:
            try:
                await GovernanceService(db_session).add_relative(cadre_id, data, request.user)
            except DomainError as exc:
                errors, status = refusal(exc), exc.status_code
            else:
                flash(request, f"已登记亲属：{data.name}")
                return see_other(f"/admin/cadres/{cadre_id}")
        renamed = {
            {"name": "relative_name", "id_number": "relative_id_number"}.get(k, k): v
            for k, v in errors.items()
        }
        return await self._cadre(db_session, request, cadre_id, status, renamed, form)

    @post("/relatives/{relative_id:int}/delete", operation_id="AdminDeleteRelativePage", opt=ADMIN)
    async def delete_relative(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], relative_id: int
    ) -> Template | Redirect:
        relative = await db_session.get(CadreRelative, relative_id)
        if relative is None:
            raise NotFound("亲属", "relative")
        form = await form_data(request)
        if form.get("confirm") != "yes":
            return await self._cadre(
                db_session, request, relative.cadre_id, 400, {f"relative-{relative_id}": "请勾选确认后再删除"}
            )
        cadre_id = relative.cadre_id
        await GovernanceService(db_session).remove_relative(relative_id, request.user)
        flash(request, "已删除亲属登记")
        return see_other(f"/admin/cadres/{cadre_id}")


controllers: list[Any] = [UserPages, ElectionPages, CadrePages]
