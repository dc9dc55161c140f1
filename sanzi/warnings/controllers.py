"""Warnings HTTP API: alerts and their review, rule parameters, the integrity index."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from litestar import Controller, Request, get, post, put
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.auth import PUBLIC, roles
from sanzi.platform.models import Role
from sanzi.platform.schemas import Page
from sanzi.warnings import schemas
from sanzi.warnings.services import AlertService, IntegrityService, RuleService, parse_month

READERS = roles(Role.ADMIN, Role.SUPERVISOR, Role.COMMITTEE)
REVIEWERS = roles(Role.ADMIN, Role.SUPERVISOR)
ADMIN = roles(Role.ADMIN)


def local_today(request: Request[Any, Any, Any]) -> date:
    """Today in the platform's time zone: deadlines are local dates."""
    return datetime.now(request.app.state.settings.zone).date()


class AlertController(Controller):
    """Alerts (预警): supervisors of the area review them; the village committee reads and responds."""

    path = "/api/alerts"
    tags = ["warnings"]

    @get(operation_id="ListAlerts", opt=READERS, summary="Alerts the caller may see, most serious first")
    async def list_alerts(
        self,
        db_session: AsyncSession,
        request: Request[Any, Any, Any],
        rule: str | None = Parameter(default=None, max_length=48),
        family: Literal["bid", "undisclosed", "election"] | None = None,
        severity: Literal["red", "orange", "yellow"] | None = None,
        status: Literal["new", "assigned", "investigating", "confirmed", "dismissed"] | None = None,
        village: str | None = Parameter(default=None, max_length=12),
        township: str | None = Parameter(default=None, max_length=12),
        overdue: bool | None = None,
        page: int = Parameter(default=1, ge=1, le=100_000),
        page_size: int = Parameter(default=50, ge=1, le=500),
    ) -> Page[schemas.AlertSummary]:
        return await AlertService(db_session).list(
            request.user, local_today(request), rule=rule, family=family, severity=severity, status=status,
            village=village, township=township, overdue=overdue, page=page, page_size=page_size,
        )

    @get("/{alert_id:int}", operation_id="GetAlert", opt=READERS, summary="An alert with its evidence and history")
    async def get_alert(self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int) -> schemas.AlertDetail:
        return await AlertService(db_session).detail(alert_id, request.user, local_today(request))

    async def _after(self, service: AlertService, alert_id: int, request: Request[Any, Any, Any]) -> schemas.AlertDetail:
        return await service.detail(alert_id, request.user, local_today(request))

    @post("/{alert_id:int}/assign", operation_id="AssignAlert", opt=REVIEWERS, status_code=200)
    async def assign(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int, data: schemas.AssignIn
    ) -> schemas.AlertDetail:
        service = AlertService(db_session)
        await service.assign(alert_id, data, request.user, local_today(request))
        return await self._after(service, alert_id, request)

    @post("/{alert_id:int}/investigate", operation_id="InvestigateAlert", opt=REVIEWERS, status_code=200)
    async def investigate(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int, data: schemas.NoteIn
    ) -> schemas.AlertDetail:
        service = AlertService(db_session)
        await service.investigate(alert_id, data, request.user)
        return await self._after(service, alert_id, request)

    @post("/{alert_id:int}/confirm", operation_id="ConfirmAlert", opt=REVIEWERS, status_code=200)
    async def confirm(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int, data: schemas.ConfirmIn
    ) -> schemas.AlertDetail:
        service = AlertService(db_session)
        await service.confirm(alert_id, data, request.user, local_today(request))
        return await self._after(service, alert_id, request)

    @post("/{alert_id:int}/dismiss", operation_id="DismissAlert", opt=REVIEWERS, status_code=200)
    async def dismiss(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int, data: schemas.DismissIn
    ) -> schemas.AlertDetail:
        service = AlertService(db_session)
        await service.dismiss(alert_id, data, request.user)
        return await self._after(service, alert_id, request)

    @post("/{alert_id:int}/rectify", operation_id="RectifyAlert", opt=REVIEWERS, status_code=200)
    async def rectify(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int, data: schemas.NoteIn
    ) -> schemas.AlertDetail:
        service = AlertService(db_session)
        await service.rectify(alert_id, data, request.user)
        return await self._after(service, alert_id, request)

    @post(
        "/{alert_id:int}/responses", operation_id="RespondToAlert", opt=roles(Role.COMMITTEE),
        summary="The village committee's response (no status change)",
    )
    async def respond(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int, data: schemas.NoteIn
    ) -> schemas.AlertDetail:
        service = AlertService(db_session)
        await service.respond(alert_id, data, request.user)
        return await self._after(service, alert_id, request)


class RuleController(Controller):
    """The rule catalogue (public) and its parameters (admin)."""

    path = "/api"
    tags = ["warnings"]

    @get("/rules", operation_id="ListRules", opt=PUBLIC, summary="Every rule with its basis and parameters")
    async def list_rules(
        self,
        db_session: AsyncSession,
        district: str | None = Parameter(default=None, max_length=12, description="show this district's values"),
    ) -> list[schemas.RuleInfo]:
        return await RuleService(db_session).catalogue(district)

    @put("/rules/{rule_id:str}/parameters/{name:str}", operation_id="SetRuleParameter", opt=ADMIN)
    async def set_parameter(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], rule_id: str, name: str, data: schemas.ParameterIn
    ) -> schemas.ParameterSet:
        return await RuleService(db_session).set(rule_id, name, data, request.user)

    @post("/warnings/scan", operation_id="RunWarningScan", opt=ADMIN, status_code=200, summary="Full scan now")
    async def scan(
        self,
        db_session: AsyncSession,
        district: str | None = Parameter(default=None, max_length=12),
        since: date | None = None,
    ) -> schemas.ScanResult:
        from sanzi.warnings.engine import scan

        summary = await scan(db_session, district_code=district, since=since)
        return schemas.ScanResult(
            raised=summary.raised,
            updated=summary.updated,
            unchanged=summary.unchanged,
            rules=[schemas.RuleScan(rule_id=rule_id, **vars(c)) for rule_id, c in summary.rules.items()],
            index_month=summary.index_month,
        )


class IntegrityController(Controller):
    """The village integrity index (廉情指数): public aggregates only, never alert texts or names."""

    path = "/api"
    tags = ["warnings"]

    @get("/integrity", operation_id="GetIntegrityOverview", opt=PUBLIC, summary="Levels and scores for a month")
    async def overview(
        self,
        db_session: AsyncSession,
        month: str | None = Parameter(default=None, max_length=7, description="YYYY-MM (default: the latest)"),
        district: str | None = Parameter(default=None, max_length=12),
        township: str | None = Parameter(default=None, max_length=12),
    ) -> schemas.IntegrityOverview:
        return await IntegrityService(db_session).overview(
            parse_month(month) if month else None, district, township
        )

    @get("/villages/{code:str}/integrity", operation_id="GetVillageIntegrity", opt=PUBLIC)
    async def village(self, db_session: AsyncSession, code: str) -> schemas.VillageIntegrityHistory:
        return await IntegrityService(db_session).village_history(code)


controllers: list[Any] = [AlertController, RuleController, IntegrityController]

from sanzi.warnings.pages import controllers as _pages; controllers.extend(_pages)  # noqa: E402
