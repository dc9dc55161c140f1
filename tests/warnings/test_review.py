"""The review: new → assigned → investigating → confirmed (rectified) | dismissed, each step by the assigned
supervisor of the area with a note; the committee responds; refusals change nothing; overdue flags."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.models import Role
from sanzi.warnings.models import Alert, AlertEvent
from tests.conftest import VILLAGE_A, VILLAGE_B, Actor

_subjects = itertools.count(1)


async def make_alert(
    db: AsyncSession,
    village: str = VILLAGE_A,
    *,
    severity: str = "red",
    status: str = "new",
    occurred_at: datetime | None = None,
    rule_id: str = "TEST-RULE",
    family: str = "bid",
    evidence: dict[str, Any] | None = None,
    due_on: date | None = None,
    rectified_at: datetime | None = None,
    explanation: str = "成交价低于同镇街下限（测试）",
) -> Alert:
    now = datetime.now(UTC)
    alert = Alert(
        rule_id=rule_id, family=family, subject_type="listing", subject_id=str(next(_subjects)),
        village_code=village, township_code=village[:9] + "000", district_code=village[:6] + "000000",
        severity=severity, score=80.0, explanation=explanation,
        evidence=evidence if evidence is not None else {"listings": [12], "bids": [3, 4]},
        occurred_at=occurred_at or now, first_raised_at=now, last_updated_at=now, status=status,
        due_on=due_on, rectified_at=rectified_at,
    )
    db.add(alert)
    await db.flush()
    db.add(AlertEvent(alert_id=alert.id, action="raised", to_status="new", at=now))
    await db.commit()
    return alert


async def event_count(db: AsyncSession) -> int:
    return await db.scalar(select(func.count()).select_from(AlertEvent)) or 0


async def status_of(db: AsyncSession, alert_id: int) -> tuple[str, int | None, date | None]:
    alert = await db.get(Alert, alert_id, populate_existing=True)
    assert alert is not None
    return alert.status, alert.assigned_to_id, alert.due_on


def soon(days: int = 10) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


async def test_the_whole_review_of_a_confirmed_alert(
    client: httpx.AsyncClient, db: AsyncSession, supervisor_a: Actor, committee_a: Actor, make_user: Any
) -> None:
    alert = await make_alert(db)
    inspector = await make_user(Role.SUPERVISOR, area_code=VILLAGE_A[:9] + "000", display_name="王督查")
    base = f"/api/alerts/{alert.id}"

    assigned = await client.post(
        base + "/assign", json={"assignee_id": inspector.id, "due_on": soon(), "note": "请核查"}, headers=supervisor_a.headers
    )
    assert assigned.status_code == 200, assigned.text
    body = assigned.json()
    assert body["status"] == "assigned" and body["assigned_to"] == {"id": inspector.id, "name": "王督查"}
    assert body["due_on"] == soon() and body["overdue"] is False

    response = await client.post(base + "/responses", json={"note": "该宗交易已按程序公示"}, headers=committee_a.headers)
    assert response.status_code == 201 and response.json()["status"] == "assigned"
    assert (await client.post(base + "/investigate", json={"note": "调取竞价记录"}, headers=inspector.headers)).status_code == 200
    confirmed = await client.post(
        base + "/confirm", json={"rectification_due_on": soon(30), "note": "属实"}, headers=inspector.headers
    )
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed"
    assert confirmed.json()["due_on"] == soon(30)
    rectified = await client.post(base + "/rectify", json={"note": "已重新挂牌"}, headers=inspector.headers)
    assert rectified.status_code == 200 and rectified.json()["rectified_at"] is not None

    detail = (await client.get(base, headers=supervisor_a.headers)).json()
    history = [(h["action"], h["to_status"], (h["actor"] or {}).get("name")) for h in detail["history"]]
    assert history == [
        ("raised", "new", None),
        ("assigned", "assigned", supervisor_a.user.display_name),
        ("response", "assigned", committee_a.user.display_name),
        ("investigating", "investigating", "王督查"),
        ("confirmed", "confirmed", "王督查"),
        ("rectified", "confirmed", "王督查"),
    ]
    assert all(h["at"] for h in detail["history"]) and "请核查" in detail["history"][1]["note"]
    # rectified once
    assert (await client.post(base + "/rectify", json={"note": "再次"}, headers=inspector.headers)).status_code == 409


async def test_a_dismissal_needs_a_reason(
    client: httpx.AsyncClient, db: AsyncSession, supervisor_a: Actor
) -> None:
    alert = await make_alert(db)
    base = f"/api/alerts/{alert.id}"
    await client.post(base + "/assign", json={"assignee_id": supervisor_a.id, "due_on": soon(), "note": "自办"}, headers=supervisor_a.headers)
    await client.post(base + "/investigate", json={"note": "核查"}, headers=supervisor_a.headers)
    before = await event_count(db)
    missing = await client.post(base + "/dismiss", json={"reason": ""}, headers=supervisor_a.headers)
    assert missing.status_code == 400 and await event_count(db) == before
    response = await client.post(base + "/dismiss", json={"reason": "系正常续租，已核实"}, headers=supervisor_a.headers)
    assert response.status_code == 200 and response.json()["status"] == "dismissed"
    assert response.json()["history"][-1]["note"] == "系正常续租，已核实"


async def test_out_of_order_or_by_the_wrong_person_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, supervisor_a: Actor, supervisor_b: Actor, committee_a: Actor,
    committee_b: Actor, admin: Actor, make_user: Any,
) -> None:
    alert = await make_alert(db)
    base = f"/api/alerts/{alert.id}"
    colleague = await make_user(Role.SUPERVISOR, area_code=VILLAGE_A[:9] + "000")
    district_supervisor = await make_user(Role.SUPERVISOR, area_code=VILLAGE_A[:6] + "000000")
    other_area = await make_user(Role.SUPERVISOR, area_code=VILLAGE_B[:9] + "000")
    before_events, before_status = await event_count(db), await status_of(db, alert.id)

    refusals = [
        (supervisor_a, "/investigate", {"note": "x"}, 409),  # not yet assigned
        (supervisor_a, "/confirm", {"rectification_due_on": soon(), "note": "x"}, 409),
        (supervisor_a, "/dismiss", {"reason": "x"}, 409),
        (supervisor_a, "/rectify", {"note": "x"}, 409),
        (supervisor_b, "/assign", {"assignee_id": supervisor_b.id, "due_on": soon(), "note": "x"}, 404),  # outside the area
        (committee_a, "/assign", {"assignee_id": supervisor_a.id, "due_on": soon(), "note": "x"}, 403),  # role
        (committee_b, "/responses", {"note": "x"}, 404),  # another village's committee
        (supervisor_a, "/responses", {"note": "x"}, 403),
        (supervisor_a, "/assign", {"assignee_id": other_area.id, "due_on": soon(), "note": "x"}, 422),  # assignee's area
        (supervisor_a, "/assign", {"assignee_id": committee_a.id, "due_on": soon(), "note": "x"}, 422),  # not a supervisor
        (supervisor_a, "/assign", {"assignee_id": supervisor_a.id, "due_on": soon(-1), "note": "x"}, 422),  # past
        (supervisor_a, "/assign", {"assignee_id": supervisor_a.id, "due_on": soon(), "note": ""}, 400),  # no note
        (supervisor_a, "/assign", {"assignee_id": supervisor_a.id, "due_on": "tomorrow", "note": "x"}, 400),
    ]
    for actor, action, body, expected in refusals:
        response = await client.post(base + action, json=body, headers=actor.headers)
        assert response.status_code == expected, (action, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert await event_count(db) == before_events and await status_of(db, alert.id) == before_status

    # a district supervisor may assign; then only the assignee (or an admin) takes the next steps
    response = await client.post(
        base + "/assign", json={"assignee_id": supervisor_a.id, "due_on": soon(), "note": "交镇街办理"},
        headers=district_supervisor.headers,
    )
    assert response.status_code == 200
    before_events, before_status = await event_count(db), await status_of(db, alert.id)
    for actor, action, body, expected in [
        (colleague, "/investigate", {"note": "x"}, 403),
        (supervisor_a, "/confirm", {"rectification_due_on": soon(), "note": "x"}, 409),  # skips investigating
    ]:
        response = await client.post(base + action, json=body, headers=actor.headers)
        assert response.status_code == expected, (action, response.text)
    assert await event_count(db) == before_events and await status_of(db, alert.id) == before_status
    assert (await client.post(base + "/investigate", json={"note": "督办"}, headers=admin.headers)).status_code == 200
    assert (await client.post(f"/api/alerts/999999/investigate", json={"note": "x"}, headers=admin.headers)).status_code == 404


async def test_overdue_alerts_are_flagged_and_filterable(
    client: httpx.AsyncClient, db: AsyncSession, supervisor_a: Actor
) -> None:
    yesterday = date.today() - timedelta(days=2)
    late_review = await make_alert(db, status="assigned", due_on=yesterday)
    late_rectification = await make_alert(db, status="confirmed", due_on=yesterday)
    rectified = await make_alert(db, status="confirmed", due_on=yesterday, rectified_at=datetime.now(UTC))
    on_time = await make_alert(db, status="investigating", due_on=date.today() + timedelta(days=3))
    dismissed = await make_alert(db, status="dismissed", due_on=yesterday)

    flagged = await client.get("/api/alerts", params={"overdue": "true"}, headers=supervisor_a.headers)
    assert sorted(a["id"] for a in flagged.json()["items"]) == sorted([late_review.id, late_rectification.id])
    assert all(a["overdue"] for a in flagged.json()["items"])
    others = await client.get("/api/alerts", params={"overdue": "false"}, headers=supervisor_a.headers)
    assert sorted(a["id"] for a in others.json()["items"]) == sorted([rectified.id, on_time.id, dismissed.id])
    assert (await client.get(f"/api/alerts/{late_review.id}", headers=supervisor_a.headers)).json()["overdue"] is True
