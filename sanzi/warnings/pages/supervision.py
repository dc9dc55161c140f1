"""The supervisors' pages: the warnings dashboard (integrity index, open and overdue alerts), the alert list,
and an alert's page with its evidence, history, the village's responses and the review steps of its state."""

from __future__ import annotations

import inspect
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.auth import roles
from sanzi.platform.charts import SEVERITY_COLOURS, bar_chart, line_chart, pie_chart
from sanzi.platform.geography import normalise_code
from sanzi.platform.models import District, Role, Township, User, Village
from sanzi.platform.pages import flash, form_data, page, paginate, request_language, see_other, translate
from sanzi.platform.problems import DomainError, Forbidden, NotFound
from sanzi.warnings import schemas
from sanzi.warnings.engine import all_rules
from sanzi.warnings.models import Alert, AlertStatus, IntegrityIndex
from sanzi.warnings.pages.common import (
    LEVELS,
    SEVERITIES,
    STATUS_FILTERS,
    STATUSES,
    build,
    domain_errors,
    evidence_rows,
    local_today,
    parse_date,
    require_text,
)
from sanzi.warnings.services import (
    OPEN,
    AlertService,
    IntegrityService,
    covers,
    overdue_condition,
    parse_month,
    visible_to,
)

REVIEWERS = roles(Role.ADMIN, Role.SUPERVISOR)
ALERTS_PER_PAGE = 25
VILLAGES_PER_PAGE = 50
TREND_MONTHS = 12


# ---- the area a page covers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Area:
    """The part of the city a dashboard shows: the whole city (admin), a district or a township."""

    district: str | None
    township: str | None
    name: str

    @property
    def prefix(self) -> str:
        if self.township:
            return self.township[:9]
        return self.district[:6] if self.district else ""

    def conditions(self, model: Any) -> list[Any]:
        if self.township:
            return [model.township_code == self.township]
        if self.district:
            return [model.district_code == self.district]
        return []


async def _district(session: AsyncSession, code: str) -> District:
    district = await session.get(District, normalise_code(code, "district"))
    if district is None or not district.code.endswith("000000"):
        raise NotFound("区", "district")
    return district


async def _township(session: AsyncSession, code: str) -> Township:
    township = await session.get(Township, normalise_code(code, "township"))
    if township is None:
        raise NotFound("镇街", "township")
    return township


async def resolve_area(session: AsyncSession, user: User, district: str | None, township: str | None) -> Area:
    """The area asked for, within the caller's own: a supervisor sees their township or district (and a
    township of their district); an admin the city, any district or any township."""
    if user.role == Role.SUPERVISOR.value:
        own = user.area_code or ""
        if own.endswith("000000"):
            own_district = await _district(session, own)
            if district and normalise_code(district, "district") != own_district.code:
                raise Forbidden("只能查看本辖区的数据", "outside your area")
            if township:
                chosen = await _township(session, township)
                if chosen.district_code != own_district.code:
                    raise Forbidden("只能查看本辖区的数据", "outside your area")
                return Area(chosen.district_code, chosen.code, f"{own_district.name} {chosen.name}")
            return Area(own_district.code, None, own_district.name)
        own_township = await _township(session, own)
        if (
            township
            and normalise_code(township, "township") != own_township.code
            or (district and normalise_code(district, "district") != own_township.district_code)
        ):
            raise Forbidden("只能查看本辖区的数据", "outside your area")
        return Area(
            own_township.district_code, own_township.code, f"{own_township.district.name} {own_township.name}"
        )
    if township:
        chosen = await _township(session, township)
        return Area(chosen.district_code, chosen.code, f"{chosen.district.name} {chosen.name}")
    if district:
        chosen_district = await _district(session, district)
        return Area(chosen_district.code, None, chosen_district.name)
    return Area(None, None, "广州市")


async def area_pickers(session: AsyncSession, user: User, area: Area) -> dict[str, Any]:
    """The district and township choices the caller may switch between."""
    districts: list[tuple[str, str]] = []
    if user.role == Role.ADMIN.value:
        districts = [
            (d.code, d.name) for d in await session.scalars(select(District).order_by(District.code))
        ]
    townships: list[tuple[str, str]] = []
    may_pick_township = user.role == Role.ADMIN.value or (user.area_code or "").endswith("000000")
    if may_pick_township and area.district:
        rows = await session.scalars(
            select(Township).where(Township.district_code == area.district).order_by(Township.code)
        )
        townships = [(t.code, t.name) for t in rows]
    return {"districts": districts, "townships": townships}


def page_number(request: Request[Any, Any, Any]) -> int:
    text = _query_value(request, "page") or "1"
    return min(int(text), 100_000) if text.isdigit() and int(text) > 0 else 1


def _query_value(request: Request[Any, Any, Any], name: str, limit: int = 16) -> str | None:
    value = (request.query_params.get(name) or "").strip()
    return value[:limit] or None


# ---- dashboard ---------------------------------------------------------------------------------------------


async def _trend(session: AsyncSession, area: Area, until: date) -> list[dict[str, Any]]:
    """The area's monthly roll-up: the mean of its villages' scores and how many are at each level."""
    level_counts = [
        func.sum(case((IntegrityIndex.level == level, 1), else_=0)).label(level) for level in LEVELS
    ]
    rows = await session.execute(
        select(IntegrityIndex.month, func.avg(IntegrityIndex.score).label("score"), *level_counts)
        .where(IntegrityIndex.month <= until, *area.conditions(IntegrityIndex))
        .group_by(IntegrityIndex.month)
        .order_by(IntegrityIndex.month.desc())
        .limit(TREND_MONTHS)
    )
    months = [
        {
            "month": row.month.strftime("%Y-%m"),
            "score": round(float(row.score), 2),
            **{level: int(getattr(row, level) or 0) for level in LEVELS},
        }
        for row in rows
    ]
    return list(reversed(months))


async def _open_alert_counts(session: AsyncSession, user: User, area: Area) -> dict[str, Any]:
    """Open alerts (new, assigned, investigating) of the area by rule and by severity."""
    rows = await session.execute(
        select(Alert.rule_id, Alert.severity, func.count().label("n"))
        .where(visible_to(user), Alert.status.in_(OPEN), *area.conditions(Alert))
        .group_by(Alert.rule_id, Alert.severity)
    )
    titles = {rule.id: rule.title for rule in all_rules()}
    by_rule: dict[str, dict[str, int]] = defaultdict(lambda: {s: 0 for s in SEVERITIES})
    by_severity = {s: 0 for s in SEVERITIES}
    for row in rows:
        by_rule[row.rule_id][row.severity] += row.n
        by_severity[row.severity] += row.n
    rules = sorted(
        (
            {
                "rule_id": rule_id,
                "title": titles.get(rule_id, rule_id),
                **counts,
                "total": sum(counts.values()),
            }
            for rule_id, counts in by_rule.items()
        ),
        key=lambda r: (-r["total"], r["rule_id"]),
    )
    return {"by_rule": rules, "by_severity": by_severity, "total": sum(by_severity.values())}


def rules_chart(rows: list[dict[str, Any]], t: Any) -> Any:
    """Open alerts per rule as horizontal bars stacked by severity, in the severities' own colours."""
    rows = list(reversed(rows))  # pygal draws the first bar at the bottom: the most frequent goes on top
    labels = [r["title"] if len(r["title"]) <= 14 else r["title"][:13] + "…" for r in rows]
    most = max(r["total"] for r in rows)
    step = max(1, -(-most // 8))
    return bar_chart(
        labels,
        {
            t(name): [r[s] for r in rows]
            for s, name in (("red", "红色"), ("orange", "橙色"), ("yellow", "黄色"))
        },
        title=t("未办结预警（按规则）"),
        stacked=True,
        horizontal=True,
        height=max(240, 90 + 30 * len(rows)),
        colours=[SEVERITY_COLOURS[s] for s in SEVERITIES],
        # pygal measures labels as Latin text; Chinese characters are about twice as wide
        options={
            "margin_left": int(0.45 * 12 * max(len(label) for label in labels)),
            "y_labels": list(range(0, most + step, step)),
        },
    )


def _sorted_villages(villages: list[schemas.VillageIntegrity], order: str) -> list[schemas.VillageIntegrity]:
    if order == "code":
        return sorted(villages, key=lambda v: v.code)
    if order == "best":
        return sorted(villages, key=lambda v: (-v.score, v.code))
    return sorted(villages, key=lambda v: (v.score, v.code))  # worst first


class WarningsDashboardPage(Controller):
    """廉情预警看板: the village integrity index of the area, its trend, open and overdue alerts."""

    include_in_schema = False

    @get("/supervisor/warnings", operation_id="WarningsDashboardPage", opt=REVIEWERS)
    async def dashboard(self, db_session: AsyncSession, request: Request[Any, Any, Any]) -> Template:
        user: User = request.user
        lang = request_language(request)
        area = await resolve_area(
            db_session, user, _query_value(request, "district"), _query_value(request, "township")
        )
        index = IntegrityService(db_session)
        month_text = _query_value(request, "month", 7)
        months = [
            m.strftime("%Y-%m")
            for m in await db_session.scalars(
                select(IntegrityIndex.month).distinct().order_by(IntegrityIndex.month.desc()).limit(36)
            )
        ]
        month = parse_month(month_text) if month_text else None
        overview = await index.overview(month, area.district, area.township)
        level = _query_value(request, "level")
        order = _query_value(request, "order") or "worst"
        villages = [v for v in overview.villages if not level or v.level == level]
        villages = _sorted_villages(villages, order)
        pager = paginate(len(villages), page_number(request), VILLAGES_PER_PAGE)
        level_totals = {lv: sum(1 for v in overview.villages if v.level == lv) for lv in LEVELS}
        township_names = {t.code: t.name for t in overview.townships}
        rollup = overview.townships if area.district else overview.districts
        if area.township:
            rollup = []

        trend = await _trend(db_session, area, parse_month(overview.month))
        counts = await _open_alert_counts(db_session, user, area)
        today = local_today(request)
        overdue_total = (
            await db_session.scalar(
                select(func.count())
                .select_from(Alert)
                .where(visible_to(user), overdue_condition(today), *area.conditions(Alert))
            )
            or 0
        )
        overdue = await AlertService(db_session).list(
            user, today, district=area.district, township=area.township, overdue=True, page_size=10
        )
        mean = (
            round(sum(v.score for v in overview.villages) / len(overview.villages), 2)
            if overview.villages
            else None
        )

        def t(text: str) -> str:
            return translate(text, lang)

        charts = {
            "trend": line_chart(
                [m["month"] for m in trend],
                {t("廉情指数（平均）"): [m["score"] for m in trend]},
                title=t("廉情指数月度趋势"),
                range_=(0, 100),
                colours=("#2f6f9f",),
            )
            if trend
            else None,
            "levels": pie_chart(
                {
                    t(name): level_totals[lv]
                    for lv, name in (
                        ("green", "绿色"),
                        ("yellow", "黄色"),
                        ("orange", "橙色"),
                        ("red", "红色"),
                    )
                },
                title=t("各等级村数"),
                colours=[SEVERITY_COLOURS[lv] for lv in ("green", "yellow", "orange", "red")],
            )
            if overview.villages
            else None,
            "severity": pie_chart(
                {
                    t(name): counts["by_severity"][s]
                    for s, name in (("red", "红色"), ("orange", "橙色"), ("yellow", "黄色"))
                },
                title=t("未办结预警（按等级）"),
                colours=[SEVERITY_COLOURS[s] for s in SEVERITIES],
            )
            if counts["total"]
            else None,
            "rules": rules_chart(counts["by_rule"][:12], t) if counts["total"] else None,
        }
        report_townships = (
            [(area.township, area.name)]
            if area.township
            else [(t_.code, t_.name) for t_ in overview.townships]
            if area.district
            else []
        )
        return page(
            request,
            "oversight/dashboard.html",
            area=area,
            pickers=await area_pickers(db_session, user, area),
            overview=overview,
            months=months,
            villages=villages[pager["offset"] : pager["offset"] + pager["per_page"]],
            pager=pager,
            level=level,
            order=order,
            level_totals=level_totals,
            township_names=township_names,
            rollup=rollup,
            rollup_kind="township" if area.district else "district",
            mean=mean,
            trend=trend,
            counts=counts,
            overdue=overdue.items,
            overdue_total=overdue_total,
            charts=charts,
            report_townships=report_townships,
            levels=LEVELS,
            thresholds=await index.parameters(),
        )


# ---- the alert list and an alert's page --------------------------------------------------------------------


def _choice(value: str | None, allowed: tuple[str, ...], field: str, errors: dict[str, str]) -> str | None:
    if value and value not in allowed:
        errors[field] = "无效的筛选条件"
        return None
    return value or None


async def alert_filters(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    user: User,
) -> tuple[dict[str, Any], dict[str, str], Area | None]:
    """The list's filters from the query string, each checked; a bad one is named beside its field."""
    errors: dict[str, str] = {}
    rule_ids = tuple(rule.id for rule in all_rules())
    filters: dict[str, Any] = {
        "status": _choice(_query_value(request, "status"), STATUS_FILTERS, "status", errors),
        "severity": _choice(_query_value(request, "severity"), SEVERITIES, "severity", errors),
        "rule": _choice(_query_value(request, "rule", 48), rule_ids, "rule", errors),
    }
    overdue = _query_value(request, "overdue")
    filters["overdue"] = {"yes": True, "no": False}.get(overdue or "")
    if overdue and filters["overdue"] is None:
        errors["overdue"] = "无效的筛选条件"
    village = _query_value(request, "village")
    filters["village"] = None
    if village:
        try:
            filters["village"] = normalise_code(village, "village")
        except DomainError as exc:
            errors["village"] = exc.message
    area = None
    try:
        area = await resolve_area(
            session, user, _query_value(request, "district"), _query_value(request, "township")
        )
    except DomainError as exc:
        if exc.status_code == 403:
            raise
        errors["township"] = exc.message
    return filters, errors, area


async def village_choices(session: AsyncSession, area: Area | None) -> list[tuple[str, str]]:
    """The villages of a township, for a select (a district's or the city's are too many: a code is typed)."""
    if area is None or not area.township:
        return []
    rows = await session.execute(
        select(Village.code, Village.name)
        .where(Village.township_code == area.township)
        .order_by(Village.code)
    )
    return [(row.code, row.name) for row in rows]


class SupervisorAlertPages(Controller):
    """预警处置: the alerts of the supervisor's area, each with its evidence and its review."""

    path = "/supervisor/alerts"
    include_in_schema = False

    @get(operation_id="SupervisorAlertListPage", opt=REVIEWERS)
    async def list_alerts(self, db_session: AsyncSession, request: Request[Any, Any, Any]) -> Template:
        user: User = request.user
        filters, errors, area = await alert_filters(request, db_session, user)
        number = page_number(request)
        result = await AlertService(db_session).list(
            user,
            local_today(request),
            **filters,
            district=area.district if area else None,
            township=area.township if area else None,
            page=number,
            page_size=ALERTS_PER_PAGE,
        )
        return page(
            request,
            "oversight/alerts.html",
            status_code=400 if errors else 200,
            alerts=result.items,
            pager=paginate(result.total, number, ALERTS_PER_PAGE),
            errors=errors,
            form=dict(request.query_params.items()),
            area=area,
            pickers=await area_pickers(db_session, user, area)
            if area
            else {"districts": [], "townships": []},
            villages=await village_choices(db_session, area),
            rules=[(rule.id, rule.title) for rule in all_rules()],
            statuses=STATUSES,
            severities=SEVERITIES,
        )

    @get("/{alert_id:int}", operation_id="SupervisorAlertPage", opt=REVIEWERS)
    async def alert(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int
    ) -> Template:
        return await alert_page(request, db_session, alert_id)

    @post("/{alert_id:int}/assign", operation_id="AssignAlertPage", opt=REVIEWERS)
    async def assign(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int
    ) -> Template | Redirect:
        return await review(request, db_session, alert_id, "assign")

    @post("/{alert_id:int}/investigate", operation_id="InvestigateAlertPage", opt=REVIEWERS)
    async def investigate(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int
    ) -> Template | Redirect:
        return await review(request, db_session, alert_id, "investigate")

    @post("/{alert_id:int}/confirm", operation_id="ConfirmAlertPage", opt=REVIEWERS)
    async def confirm(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int
    ) -> Template | Redirect:
        return await review(request, db_session, alert_id, "confirm")

    @post("/{alert_id:int}/dismiss", operation_id="DismissAlertPage", opt=REVIEWERS)
    async def dismiss(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int
    ) -> Template | Redirect:
        return await review(request, db_session, alert_id, "dismiss")

    @post("/{alert_id:int}/rectify", operation_id="RectifyAlertPage", opt=REVIEWERS)
    async def rectify(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int
    ) -> Template | Redirect:
        return await review(request, db_session, alert_id, "rectify")


def review_actions(alert: schemas.AlertDetail, user: User) -> tuple[list[str], str | None]:
    """The review steps the caller may take in the alert's state, and why others are not offered."""
    if not covers(user, alert.village_code):
        return [], "仅该村所在镇街或区的监督人员可处理此预警"
    steps = {
        AlertStatus.NEW.value: ["assign"],
        AlertStatus.ASSIGNED.value: ["investigate", "assign"],
        AlertStatus.INVESTIGATING.value: ["confirm", "dismiss"],
        AlertStatus.CONFIRMED.value: [] if alert.rectified_at else ["rectify"],
    }.get(alert.status, [])
    is_handler = user.role == Role.ADMIN.value or (
        alert.assigned_to is not None and alert.assigned_to.id == user.id
    )
    allowed = [step for step in steps if step == "assign" or is_handler]
    reason = None if allowed == steps else "仅承办人可办理此预警的后续步骤"
    return allowed, reason


def basis_paragraphs(text: str) -> list[str]:
    """A rule's docstring as paragraphs (its lines are wrapped for the source file, not for the page)."""
    return [" ".join(part.split()) for part in text.split("\n\n") if part.strip()]


async def assignee_choices(session: AsyncSession, alert: schemas.AlertSummary) -> list[tuple[str, str]]:
    """Active supervisors whose area holds the alert's village (its township's or its district's)."""
    rows = await session.execute(
        select(User.id, User.display_name, User.area_code)
        .where(
            User.role == Role.SUPERVISOR.value,
            User.is_active.is_(True),
            User.area_code.in_([alert.township_code, alert.district_code]),
        )
        .order_by(User.display_name)
    )
    return [(str(row.id), row.display_name) for row in rows]


async def alert_page(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    alert_id: int,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    failed: str | None = None,
) -> Template:
    user: User = request.user
    today = local_today(request)
    alert = await AlertService(session).detail(alert_id, user, today)
    rule = next((r for r in all_rules() if r.id == alert.rule_id), None)
    actions, blocked = review_actions(alert, user)
    return page(
        request,
        "oversight/alert.html",
        status_code=status_code,
        alert=alert,
        rule=rule,
        basis=basis_paragraphs(inspect.getdoc(type(rule)) if rule else ""),
        evidence=evidence_rows(alert.evidence),
        other_evidence={k: v for k, v in alert.evidence.items() if not isinstance(v, list)},
        responses=[h for h in alert.history if h.action == "response"],
        actions=actions,
        blocked=blocked,
        assignees=await assignee_choices(session, alert) if "assign" in actions else [],
        errors=errors or {},
        form=form or {},
        failed=failed,
        today=today,
        month=today.strftime("%Y-%m"),
    )


_FLASHES = {
    "assign": "已分派承办人",
    "investigate": "已开始核查",
    "confirm": "已核实属实，并下达整改期限",
    "dismiss": "已排除该预警",
    "rectify": "已确认整改完成",
}


async def review(
    request: Request[Any, Any, Any], session: AsyncSession, alert_id: int, action: str
) -> Template | Redirect:
    """One review step from its form: checked fields, then the review service; errors beside the fields."""
    user: User = request.user
    form = await form_data(request)
    errors: dict[str, str] = {}
    note_field = f"{action}_note"
    rename = {"note": note_field, "status": "__all__"}
    service = AlertService(session)
    today = local_today(request)
    data: Any
    if action == "assign":
        assignee = form.get("assignee_id", "")
        if not assignee:
            errors["assignee_id"] = "请选择承办人"
        elif not assignee.isdigit():
            errors["assignee_id"] = "承办人无效"
        due_on = parse_date(form, "due_on", errors, "请选择核查期限")
        note = require_text(form, note_field, errors, "请填写分派说明")
        data = build(
            schemas.AssignIn, {"assignee_id": assignee, "due_on": due_on, "note": note}, errors, rename
        )
    elif action == "confirm":
        due_on = parse_date(form, "rectification_due_on", errors, "请选择整改期限")
        note = require_text(form, note_field, errors, "请填写核实情况")
        data = build(schemas.ConfirmIn, {"rectification_due_on": due_on, "note": note}, errors, rename)
    elif action == "dismiss":
        reason = require_text(form, "reason", errors, "请填写排除理由")
        data = build(schemas.DismissIn, {"reason": reason}, errors, rename)
    else:
        messages = {"investigate": "请填写核查安排", "rectify": "请填写整改情况"}
        note = require_text(form, note_field, errors, messages[action])
        data = build(schemas.NoteIn, {"note": note}, errors, rename)
    if data is None:
        return await alert_page(
            request, session, alert_id, status_code=400, errors=errors, form=form, failed=action
        )
    try:
        if action == "assign":
            await service.assign(alert_id, data, user, today)
        elif action == "investigate":
            await service.investigate(alert_id, data, user)
        elif action == "confirm":
            await service.confirm(alert_id, data, user, today)
        elif action == "dismiss":
            await service.dismiss(alert_id, data, user)
        else:
            await service.rectify(alert_id, data, user)
    except DomainError as exc:
        return await alert_page(
            request,
            session,
            alert_id,
            status_code=exc.status_code,
            errors=domain_errors(exc, rename),
            form=form,
            failed=action,
        )
    flash(request, _FLASHES[action])
    return see_other(f"/supervisor/alerts/{alert_id}")


controllers: list[Any] = [WarningsDashboardPage, SupervisorAlertPages]
