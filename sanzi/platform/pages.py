"""Server-rendered pages: the render helper, template filters and labels, the language switch, flash messages,
form errors, and HTML error pages (the API keeps its problem details).

Every page handler returns ``page(request, "area/name.html", **context)``; templates extend ``base.html`` and use
``_("中文")`` for every user-facing string (English comes from ``sanzi/platform/locale/en/*.json``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, pass_context
from litestar import Controller, Request, Response, get
from litestar.datastructures import Cookie
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.status_codes import HTTP_303_SEE_OTHER
from markupsafe import Markup
from pydantic import ValidationError

from sanzi.platform import problems
from sanzi.platform.auth import API_PREFIX, PUBLIC
from sanzi.platform.models import Role, User

STATIC_DIR = Path(__file__).parent / "static"
LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = ("zh", "en")
LANG_COOKIE = "sanzi_lang"
FLASH_KEY = "flashes"
SCREEN_ZONE = ZoneInfo("Asia/Shanghai")


# ---- language ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def english_catalog() -> dict[str, str]:
    """Chinese source text → English, merged from every ``locale/en/*.json`` (one file per area of the site)."""
    catalog: dict[str, str] = {}
    for path in sorted((LOCALE_DIR / "en").glob("*.json")):
        catalog.update(json.loads(path.read_text(encoding="utf-8")))
    return catalog


def request_language(request: Request[Any, Any, Any]) -> str:
    lang = request.cookies.get(LANG_COOKIE)
    return lang if lang in LANGUAGES else "zh"


def translate(message: str, lang: str, **values: Any) -> str:
    """The message in the language (Chinese is the source; a missing English text falls back to it)."""
    text = english_catalog().get(message, message) if lang == "en" else message
    return text.format(**values) if values else text


#: the language of the page being rendered, for macros imported without the template's context
_page_language: ContextVar[str] = ContextVar("page_language", default="zh")


@pass_context
def _template_gettext(context: Mapping[str, Any], message: str, **values: Any) -> str:
    # page() puts the request's language in the context: read once per page, not once per string
    lang = context.get("lang")
    if lang not in LANGUAGES:
        request = context.get("request")
        lang = request_language(request) if request is not None else _page_language.get()
    return translate(message, lang, **values)


# ---- labels for stored codes ------------------------------------------------------------------------------

_LABELS: dict[str, dict[str, str]] = {}


def register_labels(group: str, labels: Mapping[str, str]) -> None:
    """Chinese labels for a group of stored codes (e.g. ``listing_status``), shown by the ``label`` filter.

    The registry is shared by every page, so one code reads the same everywhere: a module that registers a
    different word for a code already registered is refused at import.
    """
    known = _LABELS.setdefault(group, {})
    clashes = {code: (known[code], text) for code, text in labels.items() if known.get(code, text) != text}
    if clashes:
        raise ValueError(f"label group {group!r} registered twice with different words: {clashes}")
    known.update(labels)


register_labels(
    "role",
    {
        Role.ADMIN.value: "管理员",
        Role.COMMITTEE.value: "村委会",
        Role.SUPERVISOR.value: "监管人员",
        Role.BIDDER.value: "竞买人",
    },
)
register_labels("severity", {"red": "红色", "orange": "橙色", "yellow": "黄色", "green": "绿色"})


@pass_context
def _label(context: Mapping[str, Any], value: Any, group: str) -> str:
    if value is None:
        return ""
    text = _LABELS.get(group, {}).get(str(value), str(value))
    return _template_gettext(context, text)


# ---- filters ----------------------------------------------------------------------------------------------


def yuan(fen: int | None, symbol: bool = True) -> str:
    """Integer fen as yuan with thousands separators: 123456789 → ¥1,234,567.89."""
    if fen is None:
        return "—"
    fen = int(fen)
    whole, cents = divmod(abs(fen), 100)
    return f"{'-' if fen < 0 else ''}{'¥' if symbol else ''}{whole:,}.{cents:02d}"


def wan_yuan(fen: int | None) -> str:
    """Large sums in 万元 with two decimals (integer arithmetic, rounded half up)."""
    if fen is None:
        return "—"
    hundredths_of_wan = (abs(int(fen)) + 5_000) // 10_000  # 1 万元 = 1,000,000 fen; rounded half up
    sign = "-" if int(fen) < 0 else ""
    return f"{sign}{hundredths_of_wan // 100:,}.{hundredths_of_wan % 100:02d} 万元"


MINUTES = "%Y-%m-%d %H:%M"


def local_time(value: datetime | None, fmt: str = MINUTES) -> str:
    """An aware UTC time shown in Asia/Shanghai (naive values are taken as UTC, as stored by SQLite)."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(SCREEN_ZONE)
    if fmt == MINUTES:  # every row of a list shows one: formatted directly, at half strftime's cost
        return f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}"
    return local.strftime(fmt)


def local_date(value: datetime | date | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return local_time(value, "%Y-%m-%d")
    return value.isoformat()


def percent(value: float | int | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def with_query(request: Request[Any, Any, Any], **changes: Any) -> str:
    """The current path with some query parameters changed (``None`` removes one); for filters and pages."""
    params = {k: v for k, v in request.query_params.items()}
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    return request.url.path + (f"?{query}" if query else "")


def configure_templates(env: Environment, reload: bool = True) -> None:
    """Install the project's filters and globals on the Jinja environment (TemplateConfig's engine callback).

    ``reload=False`` (production) keeps compiled templates without checking their files on every render.
    """
    env.auto_reload = reload
    env.globals["_"] = _template_gettext
    env.globals["nav_for"] = nav_for
    env.filters.update(
        yuan=yuan,
        wan_yuan=wan_yuan,
        local_time=local_time,
        local_date=local_date,
        percent=percent,
        label=_label,
    )
    env.trim_blocks = True
    env.lstrip_blocks = True


# ---- navigation -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NavLink:
    href: str
    text: str


PUBLIC_NAV = [
    NavLink("/", "首页"),
    NavLink("/announcements", "交易公告"),
    NavLink("/results", "成交结果"),
    NavLink("/villages", "村务公开"),
    NavLink("/search", "搜索"),
]
ROLE_NAV: dict[str, list[NavLink]] = {
    Role.BIDDER.value: [NavLink("/bidder/applications", "我的报名"), NavLink("/bidder/profile", "我的资料")],
    Role.COMMITTEE.value: [
        NavLink("/committee/assets", "资产"),
        NavLink("/committee/books", "账簿"),
        NavLink("/committee/contracts", "合同"),
        NavLink("/committee/listings", "挂牌交易"),
        NavLink("/committee/alerts", "预警"),
    ],
    Role.SUPERVISOR.value: [
        NavLink("/supervisor/approvals", "审批"),
        NavLink("/supervisor/warnings", "预警看板"),
        NavLink("/supervisor/alerts", "预警处置"),
    ],
    Role.ADMIN.value: [
        NavLink("/admin/users", "用户"),
        NavLink("/admin/parameters", "规则参数"),
        NavLink("/admin/elections", "选举"),
        NavLink("/admin/cadres", "干部"),
        NavLink("/supervisor/approvals", "审批"),
        NavLink("/supervisor/warnings", "预警看板"),
    ],
}


def nav_for(user: User | None) -> list[NavLink]:
    """The links of the caller's own work area (the public links are always shown)."""
    return ROLE_NAV.get(user.role, []) if user is not None else []


# ---- rendering, flash messages, forms ---------------------------------------------------------------------


def flash(request: Request[Any, Any, Any], message: str, kind: str = "success") -> None:
    """A message shown once on the next page (after a POST-redirect-GET)."""
    session = dict(request.session or {})
    session[FLASH_KEY] = [*session.get(FLASH_KEY, []), {"kind": kind, "message": message}]
    request.set_session(session)


def _pop_flashes(request: Request[Any, Any, Any]) -> list[dict[str, str]]:
    session = request.scope.get("session")
    if not isinstance(session, dict) or not session.get(FLASH_KEY):
        return []
    flashes = list(session[FLASH_KEY])
    request.set_session({k: v for k, v in session.items() if k != FLASH_KEY})
    return flashes


def page(
    request: Request[Any, Any, Any],
    template_name: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Template:
    """Render a page with what every template needs: the caller, the language, messages and field errors."""
    context.setdefault("errors", {})
    context.setdefault("form", {})
    _page_language.set(request_language(request))
    return Template(
        template_name=template_name,
        context={
            # unmatched paths never reach the authentication middleware, so the scope may have no user
            "user": request.scope.get("user"),
            "lang": request_language(request),
            "flashes": _pop_flashes(request),
            "with_query": lambda **changes: with_query(request, **changes),
            **context,
        },
        status_code=status_code,
        headers=headers,
    )


def see_other(path: str) -> Redirect:
    """POST-redirect-GET."""
    return Redirect(path, status_code=HTTP_303_SEE_OTHER)


def form_errors(exc: ValidationError | problems.DomainError) -> dict[str, str]:
    """Chinese messages by field name, for showing beside each field (pydantic's or a domain rule's)."""
    if isinstance(exc, problems.DomainError):
        return {exc.field or "__all__": exc.message}
    errors: dict[str, str] = {}
    for item in exc.errors():
        name = ".".join(str(part) for part in item.get("loc", ())) or "__all__"
        errors.setdefault(name, _field_message(name, item))
    return errors


#: pydantic's error types in plain Chinese, for the person filling in the form
_PYDANTIC_MESSAGES = {
    "missing": "请填写此项",
    "string_too_short": "至少需要 {min_length} 个字符",
    "string_too_long": "不能超过 {max_length} 个字符",
    "string_pattern_mismatch": "格式不正确",
    "int_parsing": "请输入整数",
    "int_type": "请输入整数",
    "int_from_float": "请输入整数",
    "decimal_parsing": "请输入数字",
    "float_parsing": "请输入数字",
    "greater_than": "须大于 {gt}",
    "greater_than_equal": "不能小于 {ge}",
    "less_than": "须小于 {lt}",
    "less_than_equal": "不能大于 {le}",
    "date_parsing": "请输入有效日期（如 2026-03-01）",
    "date_from_datetime_parsing": "请输入有效日期（如 2026-03-01）",
    "date_type": "请输入有效日期（如 2026-03-01）",
    "datetime_parsing": "请输入有效的日期和时间",
    "datetime_from_date_parsing": "请输入有效的日期和时间",
    "datetime_type": "请输入有效的日期和时间",
    "enum": "请从列表中选择",
    "literal_error": "请从列表中选择",
    "bool_parsing": "请选择是或否",
    "too_short": "至少需要 {min_length} 项",
    "too_long": "不能超过 {max_length} 项",
}


def _field_message(name: str, item: Mapping[str, Any]) -> str:
    template = _PYDANTIC_MESSAGES.get(str(item.get("type")))
    if template is not None:
        try:
            return template.format(**(item.get("ctx") or {}))
        except (KeyError, IndexError):
            return template.split("{")[0].strip() or "填写有误"
    zh, _ = problems._bilingual(name, str(item.get("msg", "")))  # noqa: SLF001 - one translation rule
    return zh


async def form_data(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The submitted form as plain strings (trimmed), without the CSRF token."""
    form = await request.form()
    return {key: str(value).strip() for key, value in form.items() if key != "_csrf_token"}


# ---- HTML error pages -------------------------------------------------------------------------------------

_PAGE_MESSAGES = {
    400: "提交的内容有误，请检查后重试。",
    403: "您的账户无权查看此页面。",
    404: "页面或对象不存在，或您无权查看。",
    405: "不支持该操作。",
    409: "操作与当前状态冲突，请刷新页面后重试。",
    413: "上传的内容过大。",
    422: "提交的内容未通过校验。",
    429: "操作过于频繁，请稍后再试。",
    500: "服务器出现错误，我们已记录，请稍后再试。",
}


def wants_html(request: Request[Any, Any, Any]) -> bool:
    path = request.url.path
    return not (path == API_PREFIX or path.startswith(API_PREFIX + "/") or path.startswith("/schema"))


def error_page(request: Request[Any, Any, Any], status: int, message: str | None = None) -> Response[Any]:
    """A readable Chinese refusal; an anonymous caller is sent to log in instead of a 401."""
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = "/login?next=" + quote(target, safe="/")
        if request.headers.get("hx-request"):
            return Response(b"", status_code=401, headers={"HX-Redirect": location})
        return Redirect(location, status_code=HTTP_303_SEE_OTHER)
    return page(
        request,
        "error.html",
        status_code=status,
        status=status,
        message=message or _PAGE_MESSAGES.get(status, "请求失败。"),
    )  # type: ignore[return-value]


def _html_first(api_handler: Callable[..., Response[Any]]) -> Callable[..., Response[Any]]:
    def handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        if not wants_html(request):
            return api_handler(request, exc)
        if isinstance(exc, problems.DomainError):
            return error_page(request, exc.status_code, exc.message)
        if isinstance(exc, ValidationException):
            return error_page(request, 400)
        if isinstance(exc, NotAuthorizedException):
            return error_page(request, 401)
        if isinstance(exc, PermissionDeniedException):
            return error_page(request, 403)
        if isinstance(exc, HTTPException):
            return error_page(request, exc.status_code)
        if api_handler is problems.not_found_handler:
            return error_page(request, 404)
        request.logger.exception("unhandled error on a page", exc_info=exc)
        return error_page(request, 500)

    return handler


exception_handlers = {key: _html_first(handler) for key, handler in problems.exception_handlers.items()}


# ---- routes: static files and the language switch ---------------------------------------------------------


static_files = create_static_files_router(
    path="/static", directories=[STATIC_DIR], opt=PUBLIC, name="static", include_in_schema=False
)


class LanguageController(Controller):
    """Switch the interface language (a cookie; Chinese is the default)."""

    include_in_schema = False

    @get("/lang/{lang:str}", operation_id="SwitchLanguage", opt=PUBLIC)
    async def switch(self, request: Request[Any, Any, Any], lang: str) -> Redirect:
        target = request.query_params.get("next") or "/"
        if not target.startswith("/") or target.startswith("//") or "\\" in target:
            target = "/"
        chosen = lang if lang in LANGUAGES else "zh"
        return Redirect(
            target,
            status_code=HTTP_303_SEE_OTHER,
            cookies=[Cookie(key=LANG_COOKIE, value=chosen, max_age=365 * 86400, samesite="lax", httponly=True)],
        )


def paginate(total: int, page_number: int, per_page: int) -> dict[str, int]:
    """Page numbers for the ``pagination`` macro."""
    pages = max(1, -(-total // per_page))
    current = min(max(1, page_number), pages)
    return {"total": total, "page": current, "pages": pages, "per_page": per_page, "offset": (current - 1) * per_page}


controllers: list[Any] = [static_files, LanguageController]
