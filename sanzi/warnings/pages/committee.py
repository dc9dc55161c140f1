"""The village committee's alerts: its own village's alerts, what each found and where it stands, and a form
to respond (情况说明) through the review service. Supervisors' working notes stay with the supervisors."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.auth import roles
from sanzi.platform.models import Role, User
from sanzi.platform.pages import flash, form_data, page, paginate, see_other
from sanzi.platform.problems import DomainError
from sanzi.warnings import schemas
from sanzi.warnings.engine import all_rules
from sanzi.warnings.pages.common import (
    COMMITTEE_EVIDENCE,
    INTERNAL_NOTES,
    SEVERITIES,
    STATUS_FILTERS,
    STATUSES,
    build,
    domain_errors,
    evidence_rows,
    local_today,
    require_text,
)
from sanzi.warnings.services import AlertService

VILLAGE_READERS = roles(Role.COMMITTEE, Role.ADMIN)
PER_PAGE = 25


class CommitteeAlertPages(Controller):
    """村委会预警: the village's alerts and its responses."""

    path = "/committee/alerts"
    include_in_schema = False

    @get(operation_id="CommitteeAlertListPage", opt=VILLAGE_READERS)
    async def list_alerts(self, db_session: AsyncSession, request: Request[Any, Any, Any]) -> Template:
        user: User = request.user
        errors: dict[str, str] = {}
        status = (request.query_params.get("status") or "").strip()
        severity = (request.query_params.get("severity") or "").strip()
        if status and status not in STATUS_FILTERS:
            errors["status"], status = "无效的筛选条件", ""
        if severity and severity not in SEVERITIES:
            errors["severity"], severity = "无效的筛选条件", ""
        page_text = (request.query_params.get("page") or "1").strip()
        page_number = min(int(page_text), 100_000) if page_text.isdigit() and int(page_text) > 0 else 1
        result = await AlertService(db_session).list(
            user,
            local_today(request),
            status=status or None,
            severity=severity or None,
            page=page_number,
            page_size=PER_PAGE,
        )
        return page(
            request,
            "oversight/committee_alerts.html",
            status_code=400 if errors else 200,
            alerts=result.items,
            pager=paginate(result.total, page_number, PER_PAGE),
            errors=errors,
            form=dict(request.query_params.items()),
            statuses=STATUSES,
            severities=SEVERITIES,
        )

    @get("/{alert_id:int}", operation_id="CommitteeAlertPage", opt=VILLAGE_READERS)
    async def alert(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int
    ) -> Template:
        return await committee_alert_page(request, db_session, alert_id)

    @post("/{alert_id:int}/responses", operation_id="RespondToAlertPage", opt=roles(Role.COMMITTEE))
    async def respond(
        self, db_session: AsyncSession, request: Request[Any, Any, Any], alert_id: int
    ) -> Template | Redirect:
        form = await form_data(request)
        errors: dict[str, str] = {}
        note = require_text(form, "note", errors, "请填写情况说明")
        data = build(schemas.NoteIn, {"note": note}, errors)
        if data is None:
            return await committee_alert_page(
                request, db_session, alert_id, status_code=400, errors=errors, form=form
            )
        try:
            await AlertService(db_session).respond(alert_id, data, request.user)
        except DomainError as exc:
            return await committee_alert_page(
                request,
                db_session,
                alert_id,
                status_code=exc.status_code,
                errors=domain_errors(exc),
                form=form,
            )
        flash(request, "情况说明已提交，镇街监管人员将看到")
        return see_other(f"/committee/alerts/{alert_id}")


async def committee_alert_page(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    alert_id: int,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> Template:
    user: User = request.user
    alert = await AlertService(session).detail(alert_id, user, local_today(request))
    rule = next((r for r in all_rules() if r.id == alert.rule_id), None)
    history = [
        {
            "action": h.action,
            "to_status": h.to_status,
            "at": h.at,
            "note": None if h.action in INTERNAL_NOTES else h.note,
            "by_village": h.action == "response",
        }
        for h in alert.history
    ]
    return page(
        request,
        "oversight/committee_alert.html",
        status_code=status_code,
        alert=alert,
        rule=rule,
        evidence=evidence_rows(alert.evidence, COMMITTEE_EVIDENCE),
        history=history,
        may_respond=user.role == Role.COMMITTEE.value and user.village_code == alert.village_code,
        errors=errors or {},
        form=form or {},
    )


controllers: list[Any] = [CommitteeAlertPages]
