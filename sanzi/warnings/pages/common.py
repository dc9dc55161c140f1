"""What the warning pages share: labels for stored codes, today in the villages' calendar, evidence links to
the pages that show each row, and reading a page form into a checked schema with Chinese messages by field."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, TypeVar

from litestar import Request
from pydantic import BaseModel, ValidationError

from sanzi.platform.pages import form_errors, register_labels
from sanzi.platform.problems import DomainError

SchemaT = TypeVar("SchemaT", bound=BaseModel)

STATUSES = ("new", "assigned", "investigating", "confirmed", "dismissed")
#: what the list filters accept: a status, or "open" for every status not yet concluded
STATUS_FILTERS = ("open", *STATUSES)
SEVERITIES = ("red", "orange", "yellow")
FAMILIES = ("bid", "undisclosed", "election")
LEVELS = ("red", "orange", "yellow", "green")

register_labels(
    "alert_status",
    {
        "new": "新预警",
        "assigned": "已分派",
        "investigating": "核查中",
        "confirmed": "属实待整改",
        "dismissed": "已排除",
    },
)
register_labels(
    "alert_action",
    {
        "raised": "系统预警",
        "updated": "证据更新",
        "assigned": "分派承办",
        "investigating": "开始核查",
        "confirmed": "核实属实",
        "dismissed": "排除",
        "rectified": "整改完成",
        "response": "村委会回应",
    },
)
register_labels("rule_family", {"bid": "围标串标", "undisclosed": "应进场未进场", "election": "换届选举"})
register_labels(
    "evidence_kind",
    {
        "listings": "挂牌项目",
        "contracts": "合同",
        "entries": "记账凭证",
        "assets": "资产",
        "villages": "村",
        "bids": "出价",
        "registrations": "报名",
        "bidders": "竞买人",
        "elections": "选举",
        "cadres": "村干部",
        "candidates": "候选人",
        "receipts": "收款",
        "relatives": "干部亲属",
        "counterparty": "交易对象",
        "traits": "相同的身份特征",
    },
)
register_labels(
    "identity_trait",
    {
        "phone": "电话",
        "address": "地址",
        "bank_account": "银行账户",
        "deposit_payer": "保证金付款账户",
        "network": "网络地址",
        "device": "上网设备",
    },
)

#: the page that shows each kind of evidence row (officials' pages for the books, the public one for listings)
EVIDENCE_PAGES = {
    "listings": "/listings/{}",
    "contracts": "/committee/contracts/{}",
    "entries": "/committee/books/entries/{}",
    "assets": "/committee/assets/{}",
    "villages": "/villages/{}",
}
#: what a village committee may see of the evidence: its own village's rows, never other bidders' details
COMMITTEE_EVIDENCE = frozenset({"listings", "contracts", "entries", "assets", "villages"})
#: history steps whose notes are the supervisors' working notes; the village sees only that the step happened
INTERNAL_NOTES = frozenset({"assigned", "investigating"})


def local_today(request: Request[Any, Any, Any]) -> date:
    """Today in the platform's time zone: review and rectification deadlines are local dates."""
    return datetime.now(request.app.state.settings.zone).date()


def evidence_rows(evidence: dict[str, Any], kinds: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """The rows behind an alert, each with the page that shows it (None where no page shows that kind)."""
    rows = []
    for kind, items in sorted(evidence.items()):
        if kinds is not None and kind not in kinds or not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, (int, str)):
                href = EVIDENCE_PAGES[kind].format(item) if kind in EVIDENCE_PAGES else None
                # a trait is a word (phone, device ...), every other kind an id
                rows.append({"kind": kind, "id": str(item), "href": href, "trait": kind == "traits"})
    return rows


def parse_date(form: dict[str, str], field: str, errors: dict[str, str], missing: str) -> date | None:
    """A date from a form field (YYYY-MM-DD, as a date input sends it), or a Chinese message by the field."""
    value = form.get(field, "")
    if not value:
        errors[field] = missing
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[field] = "日期格式应为 YYYY-MM-DD"
        return None


def require_text(
    form: dict[str, str], field: str, errors: dict[str, str], missing: str, limit: int = 2000
) -> str:
    value = form.get(field, "")
    if not value:
        errors[field] = missing
    elif len(value) > limit:
        errors[field] = f"不能超过 {limit} 个字符"
    return value


def build(
    schema: type[SchemaT],
    values: dict[str, Any],
    errors: dict[str, str],
    rename: dict[str, str] | None = None,
) -> SchemaT | None:
    """The schema from checked values, or None with pydantic's complaints added to ``errors`` under the names
    of the form's fields (``rename`` maps a schema field to its form field where they differ)."""
    if errors:
        return None
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        for name, message in form_errors(exc).items():
            errors[(rename or {}).get(name, name)] = message
        return None


def domain_errors(exc: DomainError, rename: dict[str, str] | None = None) -> dict[str, str]:
    """A service's refusal beside its field on the form; refusals of access are not form errors: raised."""
    if exc.status_code in (403, 404):
        raise exc
    return {(rename or {}).get(name, name): message for name, message in form_errors(exc).items()}
