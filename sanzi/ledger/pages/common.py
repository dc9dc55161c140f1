"""What every committee page shares: which village it is about, whether the caller may change it, and
forgiving parsing of the accountant's form input (yuan with commas, Beijing dates and times, blank
meaning "not given")."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from litestar import Request
from litestar.response import Redirect
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import AreaUnit, AssetKind, AssetStatus, ContractOrigin, PriceBasis, TradeType
from sanzi.platform.access import village_for
from sanzi.platform.auth import roles
from sanzi.platform.models import Role, User, Village
from sanzi.platform.pages import form_errors, register_labels, see_other
from sanzi.platform.problems import DomainError
from sanzi.platform.services import GeographyService

AnyRequest = Request[Any, Any, Any]
#: committee pages: the village's committee and admins change; supervisors of the area read
READ = roles(Role.ADMIN, Role.COMMITTEE, Role.SUPERVISOR)
WRITE = roles(Role.ADMIN, Role.COMMITTEE)
SCREEN_ZONE = ZoneInfo("Asia/Shanghai")

ASSET_KINDS = {
    AssetKind.FARMLAND.value: "耕地",
    AssetKind.FISH_POND.value: "鱼塘",
    AssetKind.FOREST.value: "林地",
    AssetKind.CONSTRUCTION_LAND.value: "集体建设用地",
    AssetKind.BUILDING.value: "厂房/楼宇",
    AssetKind.SHOP.value: "商铺",
    AssetKind.EQUIPMENT.value: "设备",
    AssetKind.OTHER.value: "其他",
}
ASSET_STATUSES = {
    AssetStatus.IDLE.value: "闲置",
    AssetStatus.LISTED.value: "挂牌中",
    AssetStatus.LEASED.value: "出租/发包中",
    AssetStatus.SOLD.value: "已转让",
    AssetStatus.DISPOSED.value: "已处置",
}
AREA_UNITS = {AreaUnit.MU.value: "亩", AreaUnit.SQUARE_METRE.value: "平方米", AreaUnit.ITEM.value: "台/套"}
TRADE_TYPES = {
    TradeType.LEASE.value: "出租",
    TradeType.CONTRACTING.value: "发包",
    TradeType.TRANSFER.value: "转让",
    TradeType.JOINT_VENTURE.value: "合作",
}
PRICE_BASES = {
    PriceBasis.TOTAL.value: "总价",
    PriceBasis.PER_YEAR.value: "按年计价",
    PriceBasis.PER_MU_YEAR.value: "按亩按年计价",
}
#: the unit a price is quoted in, shown after an amount
PRICE_UNITS = {
    PriceBasis.TOTAL.value: "元（总价）",
    PriceBasis.PER_YEAR.value: "元/年",
    PriceBasis.PER_MU_YEAR.value: "元/亩/年",
}
ORIGINS = {ContractOrigin.AUCTION.value: "平台交易", ContractOrigin.DIRECT.value: "直接签订"}
CONTRACT_STATUSES = {"active": "履行中", "terminated": "已解除", "expired": "已到期"}
FREQUENCIES = {
    "once": "一次性",
    "annual": "按年",
    "semiannual": "按半年",
    "quarterly": "按季",
    "monthly": "按月",
}
ACCOUNT_TYPES = {
    "asset": "资产类",
    "liability": "负债类",
    "equity": "所有者权益类",
    "cost": "成本类",
    "income": "收入类",
    "expense": "费用类",
}
ENTRY_SOURCES = {
    "manual": "手工录入",
    "contract_receipt": "合同收款",
    "deposit": "保证金",
    "reversal": "冲销",
    "import": "导入",
}

for _group, _labels in {
    "asset_kind": ASSET_KINDS,
    "asset_status": ASSET_STATUSES,
    "area_unit": AREA_UNITS,
    "trade_type": TRADE_TYPES,
    "price_basis": PRICE_BASES,
    "price_unit": PRICE_UNITS,
    "contract_origin": ORIGINS,
    "contract_status": CONTRACT_STATUSES,
    "payment_frequency": FREQUENCIES,
    "account_type": ACCOUNT_TYPES,
    "entry_source": ENTRY_SOURCES,
}.items():
    register_labels(_group, _labels)

STATUS_COLOURS = {"idle": "yellow", "listed": "blue", "leased": "green", "sold": "", "disposed": ""}


def options(labels: dict[str, str]) -> list[tuple[str, str]]:
    return list(labels.items())


def village_query(village: Village) -> str:
    """The query string that keeps an admin's or supervisor's chosen village on every link."""
    return f"village={village.code}"


async def page_village(session: AsyncSession, request: AnyRequest, *, write: bool = False) -> Village | None:
    """The village a committee page is about: the committee member's own, or the one an admin or supervisor
    chose with ``?village=`` (None: not chosen yet). Another village's code is refused with 403."""
    user: User = request.user
    code = request.query_params.get("village") or (
        user.village_code if user.role == Role.COMMITTEE.value else None
    )
    if not code:
        return None
    return await village_for(session, code, user, write=write)


def may_write(user: User, village: Village) -> bool:
    return user.may_write_village(village.code)


async def villages_to_choose(session: AsyncSession, user: User, q: str | None, page: int) -> Any:
    """The villages an admin or supervisor may open (a supervisor's own area; an admin all, by name)."""
    district = township = None
    if user.role == Role.SUPERVISOR.value and user.area_code:
        if user.area_code.endswith("000000"):
            district = user.area_code
        else:
            township = user.area_code
    return await GeographyService(session).villages(district, township, q or None, max(1, page), 50)


def village_context(request: AnyRequest, village: Village) -> dict[str, Any]:
    return {"village": village, "vq": village_query(village), "can_write": may_write(request.user, village)}


# ---- forgiving form input --------------------------------------------------------------------------------


def blank_to_none(form: dict[str, str], *names: str) -> dict[str, Any]:
    """The form with blank fields left out (so optional fields mean "not given")."""
    return {key: value for key, value in form.items() if value != "" and (not names or key in names)}


def money(value: str) -> str:
    """A yuan amount as typed on a phone: "1,234.50", "¥1234.5", "1234.50元" → "1234.50"; other text is kept
    for the validator to refuse beside the field."""
    cleaned = (
        value.replace(",", "").replace("，", "").replace("¥", "").replace("￥", "").replace("元", "").strip()
    )
    return cleaned


def beijing_datetime(value: str) -> Any:
    """A ``datetime-local`` value (Beijing time, no zone) as an aware UTC time; other text is kept as is."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SCREEN_ZONE)
    return moment.astimezone(UTC)


def datetime_local(value: datetime | None) -> str:
    """An aware time as a ``datetime-local`` input value in Beijing time."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(SCREEN_ZONE).strftime("%Y-%m-%dT%H:%M")


def today_beijing() -> date:
    return datetime.now(SCREEN_ZONE).date()


def page_number(request: AnyRequest) -> int:
    try:
        return max(1, min(100_000, int(request.query_params.get("page", "1"))))
    except ValueError:
        return 1


def parse_date(value: str | None) -> date | None:
    """A date filter from the query string (an invalid one is ignored rather than failing the page)."""
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


# ---- errors beside the fields, in plain Chinese ----------------------------------------------------------

_PYDANTIC_ZH = {
    "missing": "请填写此项",
    "date_parsing": "请填写有效日期，如 2025-03-01",
    "date_from_datetime_parsing": "请填写有效日期，如 2025-03-01",
    "datetime_parsing": "请填写有效的日期和时间",
    "datetime_from_date_parsing": "请填写有效的日期和时间",
    "timezone_aware": "请填写有效的日期和时间",
    "int_parsing": "请填写整数",
    "int_from_float": "请填写整数",
    "enum": "请从列表中选择",
    "literal_error": "请从列表中选择",
    "string_pattern_mismatch": "格式不正确（只能用字母、数字和 - _ . /）",
    "list_type": "请至少选择一项",
    "too_short": "请至少选择一项",
}


def field_errors(exc: ValidationError | DomainError) -> dict[str, str]:
    """``{field: 中文消息}`` for showing beside each field; pydantic's English messages in plain Chinese."""
    if isinstance(exc, DomainError):
        # the books name a line as "lines[2].account_code"; the form's fields are "lines.2.account_code"
        return {re.sub(r"\[(\d+)\]", r".\1", key): message for key, message in form_errors(exc).items()}
    errors: dict[str, str] = {}
    for item in exc.errors():
        name = ".".join(str(part) for part in item.get("loc", ())) or "__all__"
        kind, ctx = item.get("type", ""), item.get("ctx") or {}
        if kind in _PYDANTIC_ZH:
            message = _PYDANTIC_ZH[kind]
        elif kind == "string_too_long":
            message = f"内容过长（最多 {ctx.get('max_length')} 字）"
        elif kind == "string_too_short":
            message = "请填写此项"
        elif kind in ("greater_than_equal", "greater_than"):
            message = f"不能小于{'或等于' if kind == 'greater_than' else ''} {ctx.get('ge', ctx.get('gt'))}"
        elif kind in ("less_than_equal", "less_than"):
            message = f"不能大于{'或等于' if kind == 'less_than' else ''} {ctx.get('le', ctx.get('lt'))}"
        elif kind == "too_long":
            message = f"最多 {ctx.get('max_length')} 项"
        else:
            message = form_errors(_single(item))[name] if name else "值无效"
        errors.setdefault(name, message)
    return errors


def _single(item: Any) -> DomainError:
    from sanzi.platform.problems import _bilingual

    name = ".".join(str(part) for part in item.get("loc", ())) or "__all__"
    zh, en = _bilingual(name, str(item.get("msg", "")))
    return DomainError(zh, en, field=name)


def is_form_error(exc: Exception) -> bool:
    """Errors to show beside the form (bad input, a rule of the domain); refusals (403/404) are not."""
    if isinstance(exc, ValidationError):
        return True
    return isinstance(exc, DomainError) and exc.status_code not in (401, 403, 404)


# ---- reporting periods -----------------------------------------------------------------------------------

PERIOD_KINDS = {"month": "按月", "quarter": "按季", "year": "按年"}


def periods(by: str, year: int, lang: str = "zh") -> list[tuple[str, date, date]]:
    """The periods of an income and expenditure table: the months or quarters of ``year``, or the five
    years up to it; each as (label in the page's language, first day, last day)."""
    english = lang == "en"
    if by == "year":
        return [
            (f"{y}" if english else f"{y}年", date(y, 1, 1), date(y, 12, 31))
            for y in range(year - 4, year + 1)
        ]
    if by == "quarter":
        return [
            (
                f"Q{q} {year}" if english else f"{year}年第{q}季度",
                date(year, 3 * q - 2, 1),
                _month_end(year, 3 * q),
            )
            for q in range(1, 5)
        ]
    return [
        (
            date(year, m, 1).strftime("%b %Y") if english else f"{year}年{m}月",
            date(year, m, 1),
            _month_end(year, m),
        )
        for m in range(1, 13)
    ]


def _month_end(year: int, month: int) -> date:
    from calendar import monthrange

    return date(year, month, monthrange(year, month)[1])


def period_choice(request: AnyRequest, default_year: int) -> tuple[str, int]:
    """``?by=month|quarter|year`` and ``?year=`` from the query string, forgiving bad values."""
    by = request.query_params.get("by") or "month"
    if by not in PERIOD_KINDS:
        by = "month"
    try:
        year = int(request.query_params.get("year") or default_year)
    except ValueError:
        year = default_year
    return by, min(max(year, 2000), 2100)


async def saved(session: AsyncSession, path: str) -> Redirect:
    """Commit the form's writes before answering with POST-redirect-GET (so the next page surely sees them)."""
    await session.commit()
    return see_other(path)


def known_id(value: int) -> int:
    """An id from the path that can be a stored BIGINT; any other is an object that does not exist (404)."""
    if not 0 < value < 2**63:
        raise DomainError("对象不存在", "object not found", status_code=404, code="not_found")
    return value
