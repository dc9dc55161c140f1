"""Warnings services: the supervisors' review of alerts, reads of alerts and rules, rule parameters, and the
village integrity index (廉情指数) with its township and district roll-ups."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ARRAY, and_, bindparam, case, false, func, or_, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from sanzi.platform.geography import normalise_code
from sanzi.platform.models import District, Role, Township, User, Village
from sanzi.platform.parameters import Parameter, get_parameter, register, set_parameter
from sanzi.platform.problems import Conflict, DomainError, Forbidden, NotFound
from sanzi.platform.schemas import Page
from sanzi.warnings import schemas
from sanzi.warnings.models import Alert, AlertEvent, AlertStatus, IntegrityIndex
from sanzi.warnings.rules.base import Rule

OPEN = (AlertStatus.NEW.value, AlertStatus.ASSIGNED.value, AlertStatus.INVESTIGATING.value)

# ---- integrity index parameters -----------------------------------------------------------------------------

INDEX_PARAMETERS = {
    p.key.rsplit(".", 1)[1]: register(p)
    for p in (
        Parameter("warnings.index.weight_red", 30.0, float, 0, 100, "红色预警扣分"),
        Parameter("warnings.index.weight_orange", 15.0, float, 0, 100, "橙色预警扣分"),
        Parameter("warnings.index.weight_yellow", 5.0, float, 0, 100, "黄色预警扣分"),
        Parameter("warnings.index.half_life_months", 6.0, float, 0.5, 120, "扣分随时间衰减的半衰期（月）"),
        Parameter("warnings.index.green_from", 85.0, float, 0, 100, "绿色等级下限"),
        Parameter("warnings.index.yellow_from", 70.0, float, 0, 100, "黄色等级下限"),
        Parameter("warnings.index.orange_from", 50.0, float, 0, 100, "橙色等级下限（以下为红色）"),
    )
}

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_start(day: date) -> date:
    return date(day.year, day.month, 1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def parse_month(value: str, field: str = "month") -> date:
    """"YYYY-MM" → the month's first day, or a clear refusal."""
    match = _MONTH.match(value.strip())
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
        raise DomainError(f"月份格式应为 YYYY-MM：{value!r}", f"month must be YYYY-MM: {value!r}", field=field, status_code=400)
    return date(int(match.group(1)), int(match.group(2)), 1)


def level_for(score: float, thresholds: dict[str, float]) -> str:
    if score >= thresholds["green_from"]:
        return "green"
    if score >= thresholds["yellow_from"]:
        return "yellow"
    if score >= thresholds["orange_from"]:
        return "orange"
    return "red"


class IntegrityService:
    """Computes and reads the integrity index; 100 is clean."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def parameters(self) -> dict[str, float]:
        """The index's city-wide parameters, in one query (the incremental engine recomputes per batch)."""
        from sanzi.platform.models import Setting

        rows = await self.session.execute(
            select(Setting.key, Setting.value).where(
                Setting.key.in_([p.key for p in INDEX_PARAMETERS.values()]), Setting.scope == ""
            )
        )
        stored = {row.key: row.value for row in rows}
        return {name: float(stored.get(p.key, p.default)) for name, p in INDEX_PARAMETERS.items()}

    async def recompute(self, month: date, villages: list[str] | None = None, now: datetime | None = None) -> int:
        """The index of every village (or of these) for the month, from one grouped query over the alerts.

        An alert counts from the month its facts occurred until it is dismissed (a false alarm never counts)
        or rectified; it weighs by severity and halves every half-life of months since it occurred.
        """
        month = month_start(month)
        cutoff = datetime(*next_month(month).timetuple()[:3], tzinfo=UTC)
        p = await self.parameters()
        weights = {"red": p["weight_red"], "orange": p["weight_orange"], "yellow": p["weight_yellow"]}
        occurred_month = func.extract("year", Alert.occurred_at) * 12 + func.extract("month", Alert.occurred_at)
        query = (
            select(Alert.village_code, Alert.severity, occurred_month.label("om"), func.count().label("n"))
            .where(
                Alert.occurred_at < cutoff,
                Alert.status != AlertStatus.DISMISSED.value,
                or_(Alert.rectified_at.is_(None), Alert.rectified_at >= cutoff),
            )
            .group_by(Alert.village_code, Alert.severity, occurred_month)
        )
        if villages is not None:
            query = query.where(Alert.village_code.in_(villages))
        this_month = month.year * 12 + month.month
        penalty: dict[str, float] = defaultdict(float)
        open_counts: dict[str, dict[str, int]] = defaultdict(lambda: {"red": 0, "orange": 0, "yellow": 0})
        for row in await self.session.execute(query):
            age = max(0, this_month - int(row.om))
            penalty[row.village_code] += weights[row.severity] * row.n * 0.5 ** (age / p["half_life_months"])
            open_counts[row.village_code][row.severity] += row.n

        places = select(Village.code, Village.township_code, Village.district_code)
        if villages is not None:
            places = places.where(Village.code.in_(villages))
        computed_at = now or datetime.now(UTC)
        rows = []
        for place in await self.session.execute(places):
            score = round(min(100.0, max(0.0, 100.0 - penalty.get(place.code, 0.0))), 2)
            counts = open_counts.get(place.code, {"red": 0, "orange": 0, "yellow": 0})
            rows.append(
                {
                    "village_code": place.code,
                    "township_code": place.township_code,
                    "district_code": place.district_code,
                    "month": month,
                    "score": score,
                    "level": level_for(score, p),
                    "open_red": counts["red"],
                    "open_orange": counts["orange"],
                    "open_yellow": counts["yellow"],
                    "computed_at": computed_at,
                }
            )
        if not rows:
            return 0
        values = ("score", "level", "open_red", "open_orange", "open_yellow")
        table = IntegrityIndex.__table__

        def upsert_changed(statement: Any) -> Any:
            """Insert a village's month, or update it only where a value changed (a full scan usually
            changes few villages: rewriting every row cost most of the recompute)."""
            return statement.on_conflict_do_update(
                index_elements=["village_code", "month"],
                set_={c: statement.excluded[c] for c in (*values, "computed_at")},
                where=or_(*(table.c[c] != statement.excluded[c] for c in values)),
            )

        if self.session.bind.dialect.name == "postgresql":
            # every village's row in one statement, each column sent as one array (one round trip)
            columns = list(rows[0])
            arrays = [bindparam(c, [r[c] for r in rows], type_=ARRAY(table.c[c].type)) for c in columns]
            source = func.unnest(*arrays).table_valued(*columns).render_derived()
            await self.session.execute(
                upsert_changed(postgresql.insert(IntegrityIndex).from_select(columns, select(*source.c)))
            )
            return len(rows)
        statement = upsert_changed(sqlite.insert(IntegrityIndex))
        for start in range(0, len(rows), 1000):
            await self.session.execute(statement, rows[start : start + 1000])
        return len(rows)

    async def latest_month(self) -> date | None:
        return await self.session.scalar(select(func.max(IntegrityIndex.month)))

    async def overview(self, month: date | None, district: str | None, township: str | None) -> schemas.IntegrityOverview:
        """Villages' scores and levels for a month, with township and district means and counts per level."""
        month = month or await self.latest_month() or month_start(datetime.now(UTC).date())
        p = await self.parameters()
        conditions: list[Any] = [IntegrityIndex.month == month]
        if district:
            conditions.append(IntegrityIndex.district_code == normalise_code(district, "district"))
        if township:
            conditions.append(IntegrityIndex.township_code == normalise_code(township, "township"))

        def level_count(level: str) -> Any:
            return func.sum(case((IntegrityIndex.level == level, 1), else_=0)).label(level)

        async def areas(code_column: Any, model: Any) -> list[schemas.AreaIntegrity]:
            query = (
                select(
                    code_column.label("code"),
                    model.name,
                    func.avg(IntegrityIndex.score).label("score"),
                    func.count().label("villages"),
                    *(level_count(level) for level in ("green", "yellow", "orange", "red")),
                )
                .join(model, model.code == code_column)
                .where(*conditions)
                .group_by(code_column, model.name)
                .order_by(code_column)
            )
            result = []
            for row in await self.session.execute(query):
                score = round(float(row.score), 2)
                result.append(
                    schemas.AreaIntegrity(
                        code=row.code,
                        name=row.name,
                        score=score,
                        level=level_for(score, p),  # type: ignore[arg-type]
                        villages=row.villages,
                        levels=schemas.LevelCounts(green=row.green, yellow=row.yellow, orange=row.orange, red=row.red),
                    )
                )
            return result

        villages = await self.session.execute(
            select(IntegrityIndex, Village.name)
            .join(Village, Village.code == IntegrityIndex.village_code)
            .where(*conditions)
            .order_by(IntegrityIndex.village_code)
        )
        return schemas.IntegrityOverview(
            month=month.strftime("%Y-%m"),
            districts=await areas(IntegrityIndex.district_code, District),
            townships=await areas(IntegrityIndex.township_code, Township),
            villages=[
                schemas.VillageIntegrity(
                    code=row.IntegrityIndex.village_code,
                    name=row.name,
                    township_code=row.IntegrityIndex.township_code,
                    district_code=row.IntegrityIndex.district_code,
                    score=row.IntegrityIndex.score,
                    level=row.IntegrityIndex.level,
                )
                for row in villages
            ],
        )

    async def village_history(self, code: str) -> schemas.VillageIntegrityHistory:
        village = await self.session.scalar(select(Village).where(Village.code == normalise_code(code, "village_code")))
        if village is None:
            raise NotFound("村", "village")
        rows = await self.session.scalars(
            select(IntegrityIndex).where(IntegrityIndex.village_code == village.code).order_by(IntegrityIndex.month)
        )
        return schemas.VillageIntegrityHistory(
            code=village.code,
            name=village.name,
            history=[
                schemas.IntegrityMonth(month=row.month.strftime("%Y-%m"), score=row.score, level=row.level)  # type: ignore[arg-type]
                for row in rows
            ],
        )


# ---- rules and their parameters ------------------------------------------------------------------------------


def _rules() -> list[Rule]:
    from sanzi.warnings.engine import all_rules

    return all_rules()


def find_rule(rule_id: str) -> Rule:
    for rule in _rules():
        if rule.id == rule_id:
            return rule
    raise NotFound("预警规则", "rule")


def _basis(rule: Rule) -> str:
    import inspect

    return inspect.getdoc(type(rule)) or ""


class RuleService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _parameter_view(self, rule: Rule, parameter: Parameter, district: str | None) -> schemas.RuleParameter:
        return schemas.RuleParameter(
            name=parameter.key.removeprefix(f"warnings.{rule.id}."),
            key=parameter.key,
            kind=parameter.kind.__name__,
            default=parameter.default,
            value=await get_parameter(self.session, parameter.key, district),
            minimum=parameter.minimum,
            maximum=parameter.maximum,
            description=parameter.description,
        )

    async def _district(self, code: str | None) -> str | None:
        if not code:
            return None
        district = normalise_code(code, "district_code")
        if await self.session.get(District, district) is None:
            raise DomainError("区不存在", "no such district", field="district_code")
        return district

    async def catalogue(self, district: str | None) -> list[schemas.RuleInfo]:
        district = await self._district(district)
        return [
            schemas.RuleInfo(
                id=rule.id,
                family=rule.family.value,
                title=rule.title,
                severity=rule.severity.value,
                ocds_code=rule.ocds_code,
                triggers=sorted(rule.triggers),
                basis=_basis(rule),
                parameters=[await self._parameter_view(rule, p, district) for p in rule.parameters],
            )
            for rule in _rules()
        ]

    async def set(self, rule_id: str, name: str, data: schemas.ParameterIn, actor: User) -> schemas.ParameterSet:
        """Validate and store a rule's parameter (city-wide or for a district); a bad value changes nothing."""
        rule = find_rule(rule_id)
        key = f"warnings.{rule.id}.{name}"
        parameter = next((p for p in rule.parameters if p.key == key), None)
        if parameter is None:
            raise NotFound(f"规则 {rule.id} 的参数 {name}", f"parameter {name} of {rule.id}")
        district = await self._district(data.district_code)
        await set_parameter(self.session, key, data.value, district, actor)
        view = await self._parameter_view(rule, parameter, district)
        return schemas.ParameterSet(**view.model_dump(), district_code=district)


# ---- alerts and their review ---------------------------------------------------------------------------------

EVIDENCE_PATHS = {
    "listings": "/api/listings/{}",
    "contracts": "/api/contracts/{}",
    "entries": "/api/entries/{}",
    "assets": "/api/assets/{}",
    "villages": "/api/villages/{}",
}

_SEVERITY_RANK = case((Alert.severity == "red", 0), (Alert.severity == "orange", 1), else_=2)


def overdue_condition(today: date) -> Any:
    """Past its review deadline while open, or past its rectification deadline while not rectified."""
    return and_(
        Alert.due_on.is_not(None),
        Alert.due_on < today,
        or_(
            Alert.status.in_(OPEN),
            and_(Alert.status == AlertStatus.CONFIRMED.value, Alert.rectified_at.is_(None)),
        ),
    )


def is_overdue(alert: Alert, today: date) -> bool:
    if alert.due_on is None or alert.due_on >= today:
        return False
    return alert.status in OPEN or (alert.status == AlertStatus.CONFIRMED.value and alert.rectified_at is None)


def visible_to(user: User) -> Any:
    """The alerts a caller may read: admin all, a supervisor those of the area, a committee its village's."""
    if user.role == Role.ADMIN.value:
        return true()
    if user.role == Role.SUPERVISOR.value and user.area_prefix:
        return Alert.village_code.startswith(user.area_prefix)
    if user.role == Role.COMMITTEE.value and user.village_code:
        return Alert.village_code == user.village_code
    return false()


def covers(user: User, village_code: str) -> bool:
    """A reviewer of this village: an admin, or a supervisor whose area holds it."""
    if user.role == Role.ADMIN.value:
        return True
    return user.role == Role.SUPERVISOR.value and user.may_read_village(village_code)


class AlertService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self._titles = {rule.id: rule.title for rule in _rules()}

    # -- reads

    async def list(
        self,
        user: User,
        today: date,
        *,
        rule: str | None = None,
        family: str | None = None,
        severity: str | None = None,
        status: str | None = None,
        village: str | None = None,
        township: str | None = None,
        overdue: bool | None = None,
        page: int = 1,
        district: str | None = None,
        page_size: int = 50,
    ) -> Page[schemas.AlertSummary]:
        conditions: list[Any] = [visible_to(user)]
        if rule:
            conditions.append(Alert.rule_id == rule)
        if family:
            conditions.append(Alert.family == family)
        if severity:
            conditions.append(Alert.severity == severity)
        if status == "open":  # new, assigned or investigating: not yet concluded
            conditions.append(Alert.status.in_(OPEN))
        elif status:
            conditions.append(Alert.status == status)
        if village:
            conditions.append(Alert.village_code == normalise_code(village, "village"))
        if township:
            conditions.append(Alert.township_code == normalise_code(township, "township"))
        if district:
            conditions.append(Alert.district_code == normalise_code(district, "district"))
        if overdue is not None:
            conditions.append(overdue_condition(today) if overdue else ~overdue_condition(today))
        total = await self.session.scalar(select(func.count()).select_from(Alert).where(*conditions)) or 0
        assignee = aliased(User)
        rows = await self.session.execute(
            select(Alert, Village.name, assignee.display_name)
            .join(Village, Village.code == Alert.village_code)
            .outerjoin(assignee, assignee.id == Alert.assigned_to_id)
            .where(*conditions)
            .order_by(_SEVERITY_RANK, Alert.score.desc(), Alert.id.desc())
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
        items = [self._summary(row[0], row[1], row[2], today) for row in rows]
        return Page(items=items, total=total, page=page, page_size=page_size)

    def _summary(self, alert: Alert, village_name: str, assignee_name: str | None, today: date) -> schemas.AlertSummary:
        return schemas.AlertSummary(
            id=alert.id,
            rule_id=alert.rule_id,
            rule_title=self._titles.get(alert.rule_id),
            family=alert.family,
            subject_type=alert.subject_type,
            subject_id=alert.subject_id,
            village_code=alert.village_code,
            village_name=village_name,
            township_code=alert.township_code,
            district_code=alert.district_code,
            severity=alert.severity,
            score=alert.score,
            explanation=alert.explanation,
            status=alert.status,
            assigned_to=schemas.Person(id=alert.assigned_to_id, name=assignee_name or "")
            if alert.assigned_to_id
            else None,
            due_on=alert.due_on,
            overdue=is_overdue(alert, today),
            rectified_at=alert.rectified_at,
            occurred_at=alert.occurred_at,
            first_raised_at=alert.first_raised_at,
            last_updated_at=alert.last_updated_at,
        )

    async def _visible_alert(self, alert_id: int, user: User) -> Alert:
        alert = await self.session.get(Alert, alert_id, with_for_update=self.session.bind.dialect.name == "postgresql")
        if alert is None or not user.may_read_village(alert.village_code):
            raise NotFound("预警", "alert")
        return alert

    async def detail(self, alert_id: int, user: User, today: date) -> schemas.AlertDetail:
        alert = await self._visible_alert(alert_id, user)
        actors = select(AlertEvent.actor_id).where(AlertEvent.alert_id == alert.id, AlertEvent.actor_id.is_not(None))
        rows = await self.session.execute(
            select(User.id, User.display_name).where(User.id.in_(actors) | (User.id == alert.assigned_to_id))
        )
        names = {row.id: row.display_name for row in rows}
        events = await self.session.scalars(
            select(AlertEvent).where(AlertEvent.alert_id == alert.id).order_by(AlertEvent.at, AlertEvent.id)
        )
        village_name = await self.session.scalar(select(Village.name).where(Village.code == alert.village_code)) or ""
        summary = self._summary(alert, village_name, names.get(alert.assigned_to_id or -1), today)
        links = [
            schemas.EvidenceLink(
                kind=kind,
                id=str(item),
                href=EVIDENCE_PATHS[kind].format(item) if kind in EVIDENCE_PATHS else None,
            )
            for kind, items in sorted(alert.evidence.items())
            if isinstance(items, list)
            for item in items
            if isinstance(item, (int, str))
        ]
        history = [
            schemas.HistoryItem(
                action=event.action,
                from_status=event.from_status,
                to_status=event.to_status,
                actor=schemas.Person(id=event.actor_id, name=names.get(event.actor_id, "")) if event.actor_id else None,
                note=event.note,
                at=event.at,
            )
            for event in events
        ]
        return schemas.AlertDetail(**summary.model_dump(), evidence=alert.evidence, evidence_links=links, history=history)

    # -- the review

    async def _reviewable(self, alert_id: int, user: User, allowed_from: tuple[str, ...], action: str) -> Alert:
        alert = await self._visible_alert(alert_id, user)
        if not covers(user, alert.village_code):
            raise Forbidden("仅该村所在镇街或区的监督人员可处理此预警", "only a supervisor of the alert's area may review it")
        if alert.status not in allowed_from or (action == "rectify" and alert.rectified_at is not None):
            raise Conflict(
                f"预警当前状态为「{alert.status}」，不能执行「{action}」",
                f"an alert that is {alert.status} cannot be {action}",
                field="status",
            )
        if action != "assign" and user.role != Role.ADMIN.value and alert.assigned_to_id != user.id:
            raise Forbidden("仅承办人可办理此预警", "only the assigned supervisor may take this step")
        return alert

    def _record(self, alert: Alert, action: str, from_status: str, user: User, note: str, now: datetime) -> None:
        self.session.add(
            AlertEvent(
                alert_id=alert.id, action=action, from_status=from_status, to_status=alert.status,
                actor_id=user.id, note=note, at=now,
            )
        )

    async def assign(self, alert_id: int, data: schemas.AssignIn, user: User, today: date) -> Alert:
        """new (or assigned, to reassign) → assigned to a named supervisor of the area, with a review deadline."""
        alert = await self._reviewable(alert_id, user, (AlertStatus.NEW.value, AlertStatus.ASSIGNED.value), "assign")
        assignee = await self.session.get(User, data.assignee_id)
        if (
            assignee is None
            or not assignee.is_active
            or assignee.role != Role.SUPERVISOR.value
            or not assignee.may_read_village(alert.village_code)
        ):
            raise DomainError(
                "承办人须为该村所在镇街或区的在职监督人员",
                "the assignee must be an active supervisor of the alert's area",
                field="assignee_id",
            )
        if data.due_on < today:
            raise DomainError("核查期限不能早于今天", "the review deadline cannot be in the past", field="due_on")
        before = alert.status
        alert.status, alert.assigned_to_id, alert.due_on = AlertStatus.ASSIGNED.value, assignee.id, data.due_on
        self._record(alert, "assigned", before, user, f"{data.note}（承办人：{assignee.display_name}，期限 {data.due_on}）", datetime.now(UTC))
        await self.session.flush()
        return alert

    async def investigate(self, alert_id: int, data: schemas.NoteIn, user: User) -> Alert:
        alert = await self._reviewable(alert_id, user, (AlertStatus.ASSIGNED.value,), "investigate")
        alert.status = AlertStatus.INVESTIGATING.value
        self._record(alert, "investigating", AlertStatus.ASSIGNED.value, user, data.note, datetime.now(UTC))
        await self.session.flush()
        return alert

    async def confirm(self, alert_id: int, data: schemas.ConfirmIn, user: User, today: date) -> Alert:
        alert = await self._reviewable(alert_id, user, (AlertStatus.INVESTIGATING.value,), "confirm")
        if data.rectification_due_on <= today:
            raise DomainError("整改期限须晚于今天", "the rectification deadline must be after today", field="rectification_due_on")
        alert.status, alert.due_on = AlertStatus.CONFIRMED.value, data.rectification_due_on
        self._record(alert, "confirmed", AlertStatus.INVESTIGATING.value, user,
                     f"{data.note}（整改期限 {data.rectification_due_on}）", datetime.now(UTC))
        await self.session.flush()
        return alert

    async def dismiss(self, alert_id: int, data: schemas.DismissIn, user: User) -> Alert:
        alert = await self._reviewable(alert_id, user, (AlertStatus.INVESTIGATING.value,), "dismiss")
        alert.status, alert.due_on = AlertStatus.DISMISSED.value, None
        self._record(alert, "dismissed", AlertStatus.INVESTIGATING.value, user, data.reason, datetime.now(UTC))
        await self.session.flush()
        return alert

    async def rectify(self, alert_id: int, data: schemas.NoteIn, user: User) -> Alert:
        """A confirmed alert's rectification is done: it stops weighing on the village's index."""
        alert = await self._reviewable(alert_id, user, (AlertStatus.CONFIRMED.value,), "rectify")
        now = datetime.now(UTC)
        alert.rectified_at = now
        self._record(alert, "rectified", AlertStatus.CONFIRMED.value, user, data.note, now)
        await self.session.flush()
        return alert

    async def respond(self, alert_id: int, data: schemas.NoteIn, user: User) -> Alert:
        """The village committee's response (情况说明); the status does not change."""
        alert = await self._visible_alert(alert_id, user)
        if user.role != Role.COMMITTEE.value or user.village_code != alert.village_code:
            raise Forbidden("仅该村村委会可回应此预警", "only the village's committee may respond")
        self.session.add(
            AlertEvent(alert_id=alert.id, action="response", from_status=alert.status, to_status=alert.status,
                       actor_id=user.id, note=data.note, at=datetime.now(UTC))
        )
        await self.session.flush()
        return alert

