"""规则参数 (admin): every rule of the catalogue with its basis and parameters, the documented default, the
city's value and a district's override, edited with the same validation as the rules API. The integrity
index's and the trading rules' parameters are edited here too (they live in the same parameter registry)."""

from __future__ import annotations

import inspect
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.auth import roles
from sanzi.platform.geography import normalise_code
from sanzi.platform.models import District, Role, Setting
from sanzi.platform.pages import flash, form_data, page, see_other
from sanzi.platform.parameters import REGISTRY, Parameter, set_parameter
from sanzi.platform.problems import DomainError
from sanzi.warnings import schemas
from sanzi.warnings.engine import all_rules
from sanzi.warnings.services import RuleService

ADMIN = roles(Role.ADMIN)


def parse_value(parameter: Parameter, text: str) -> Any:
    """The typed value of a form's text (the range is checked by the parameter itself)."""
    if text == "":
        raise DomainError("请填写参数值", "a value is required", field="value")
    try:
        if parameter.kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "是", "否"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "是")
        if parameter.kind is int:
            return int(text)
        if parameter.kind is float:
            return float(text)
    except ValueError:
        kind = {int: "整数", float: "数字", bool: "是或否"}.get(parameter.kind, parameter.kind.__name__)
        raise DomainError(f"请输入{kind}", f"enter a {parameter.kind.__name__}", field="value") from None
    return text


def _input_id(key: str) -> str:
    return "p-" + key.replace(".", "-").replace("_", "-")


async def _district(session: AsyncSession, code: str | None) -> District | None:
    if not code:
        return None
    district = await session.get(District, normalise_code(code, "district_code"))
    if district is None or not district.code.endswith("000000"):
        raise DomainError("区不存在", "no such district", field="district_code", status_code=404)
    return district


def _row(parameter: Parameter, settings: dict[tuple[str, str], Any], district: str | None) -> dict[str, Any]:
    city = settings.get((parameter.key, ""), parameter.default)
    override = settings.get((parameter.key, district)) if district else None
    return {
        "key": parameter.key,
        "name": parameter.key.rsplit(".", 1)[1],
        "input_id": _input_id(parameter.key),
        "kind": parameter.kind.__name__,
        "default": parameter.default,
        "city": city,
        "city_set": (parameter.key, "") in settings,
        "district_value": override,
        "district_set": district is not None and (parameter.key, district) in settings,
        "in_force": override if district and (parameter.key, district) in settings else city,
        "minimum": parameter.minimum,
        "maximum": parameter.maximum,
        "description": parameter.description,
        "overrides": sorted(scope for (key, scope) in settings if key == parameter.key and scope),
    }


async def parameters_page(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    district_code: str | None,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Template:
    district = await _district(session, district_code)
    scope = district.code if district else None
    settings = {(row.key, row.scope): row.value for row in await session.scalars(select(Setting))}
    rule_keys: set[str] = set()
    families: dict[str, list[dict[str, Any]]] = {"bid": [], "undisclosed": [], "election": []}
    for rule in all_rules():
        rule_keys.update(p.key for p in rule.parameters)
        families.setdefault(rule.family.value, []).append(
            {
                "id": rule.id,
                "title": rule.title,
                "severity": rule.severity.value,
                "ocds_code": rule.ocds_code,
                "basis": inspect.getdoc(type(rule)) or "",
                "parameters": [_row(p, settings, scope) for p in rule.parameters],
            }
        )
    others = [_row(p, settings, scope) for key, p in sorted(REGISTRY.items()) if key not in rule_keys]
    districts = [(d.code, d.name) for d in await session.scalars(select(District).order_by(District.code))]
    names = dict(districts)
    return page(
        request,
        "admin/parameters.html",
        status_code=status_code,
        district=district,
        districts=districts,
        district_names=names,
        families=families,
        others=others,
        errors=errors or {},
        form=form or {},
    )


class RuleParameterPages(Controller):
    """The rules' parameters, city-wide or per district (admin)."""

    path = "/admin/parameters"
    include_in_schema = False

    @get(operation_id="RuleParametersPage", opt=ADMIN)
    async def show(self, db_session: AsyncSession, request: Request[Any, Any, Any]) -> Template:
        code = (request.query_params.get("district") or "").strip()[:12] or None
        return await parameters_page(request, db_session, code)

    @post(operation_id="SetParameterPage", opt=ADMIN)
    async def set_value(
        self, db_session: AsyncSession, request: Request[Any, Any, Any]
    ) -> Template | Redirect:
        form = await form_data(request)
        key, district_code = form.get("key", ""), form.get("district_code") or None
        parameter = REGISTRY.get(key)
        if parameter is None:
            return await parameters_page(
                request,
                db_session,
                district_code,
                status_code=400,
                errors={"__all__": "请选择要修改的参数"},
                form=form,
            )
        try:
            district = await _district(db_session, district_code)
            value = parse_value(parameter, form.get("value", ""))
            rule_id, _, name = key.removeprefix("warnings.").rpartition(".")
            if key.startswith("warnings.") and any(r.id == rule_id for r in all_rules()):
                await RuleService(db_session).set(
                    rule_id,
                    name,
                    schemas.ParameterIn(value=value, district_code=district.code if district else None),
                    request.user,
                )
            else:
                await set_parameter(db_session, key, value, district.code if district else None, request.user)
        except DomainError as exc:
            field = key if exc.field in ("value", None) else "__all__"
            return await parameters_page(
                request,
                db_session,
                district_code if exc.field != "district_code" else None,
                status_code=exc.status_code if exc.status_code != 404 else 400,
                errors={field: exc.message},
                form=form,
            )
        scope = district.name if district else "全市"
        flash(request, f"已保存：{key} = {value}（{scope}）")
        return see_other(
            "/admin/parameters" + (f"?district={district.code}" if district else "") + f"#{_input_id(key)}"
        )
