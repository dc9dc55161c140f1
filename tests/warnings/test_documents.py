"""Supervision documents through HTTP: an alert's case file and the monthly township report as PDFs (Chinese
titles and key figures read back with pypdf, pages saved as PNG), who may fetch them, and bad requests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.services.bidding import place_bid
from sanzi.auction.services.results import close_listing
from sanzi.platform.models import Role, Village
from sanzi.warnings.models import Alert, AlertEvent, IntegrityIndex
from sanzi.warnings.services import IntegrityService, find_rule
from tests.auction.factories import make_live_listing
from tests.conftest import VILLAGE_A, Actor
from tests.platform.pdfs import browse_as, page_count, pdf_text, save_png

TOWNSHIP_A = VILLAGE_A[:9] + "000"  # 龙归街道
# 2026-03-02 10:00 in Shanghai
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def make_alert(
    rule_id: str, severity: str, raised: datetime, subject_id: str, evidence: dict[str, Any], **values: Any
) -> Alert:
    return Alert(
        rule_id=rule_id,
        family="bid",
        subject_type="listing",
        subject_id=subject_id,
        village_code=VILLAGE_A,
        township_code=TOWNSHIP_A,
        district_code=VILLAGE_A[:6] + "000000",
        severity=severity,
        score={"red": 90.0, "orange": 60.0, "yellow": 30.0}[severity],
        explanation=f"{rule_id} 测试说明：{subject_id}",
        evidence=evidence,
        occurred_at=raised,
        first_raised_at=raised,
        last_updated_at=raised,
        **values,
    )


async def sold_listing(db: AsyncSession) -> Any:
    live = await make_live_listing(
        db, bidders=2, now=START, starts_in=timedelta(0), ends_in=timedelta(hours=1)
    )
    await place_bid(db, live.id, live.bidders[0].bidder, 100_000_00, "b1", START + timedelta(minutes=1))
    await place_bid(db, live.id, live.bidders[1].bidder, 104_500_00, "b2", START + timedelta(minutes=2))
    await close_listing(db, live.id, START + timedelta(hours=1, minutes=30))
    return live


async def test_case_file_of_an_alert_with_its_evidence_and_review(
    client: httpx.AsyncClient,
    db: AsyncSession,
    admin: Actor,
    committee_a: Actor,
    supervisor_a: Actor,
    supervisor_b: Actor,
) -> None:
    live = await sold_listing(db)
    alert = make_alert(
        "BID-SINGLE-BIDDER",
        "orange",
        START + timedelta(hours=2),
        str(live.id),
        {"listings": [live.id], "registrations": [live.bidders[1].registration.id], "traits": ["phone"]},
    )
    db.add(alert)
    await db.flush()
    db.add(
        AlertEvent(
            alert_id=alert.id,
            action="raised",
            to_status="new",
            note=alert.explanation,
            at=alert.first_raised_at,
        )
    )
    await db.commit()
    due = (datetime.now(UTC) + timedelta(days=20)).date().isoformat()
    steps = [
        (
            f"/api/alerts/{alert.id}/assign",
            {"assignee_id": supervisor_a.id, "due_on": due, "note": "请于期限内核查"},
            supervisor_a,
        ),
        (f"/api/alerts/{alert.id}/investigate", {"note": "已调取报名材料"}, supervisor_a),
        (f"/api/alerts/{alert.id}/responses", {"note": "村委会情况说明：仅一人报名"}, committee_a),
    ]
    for path, body, actor in steps:
        response = await client.post(path, json=body, headers=actor.headers)
        assert response.status_code in (200, 201), response.text

    path = f"/alerts/{alert.id}/case-file.pdf"
    await browse_as(client, supervisor_a.user.username)
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-store"
    text = pdf_text(response.content)
    village = await db.scalar(select(Village.name).where(Village.code == VILLAGE_A))
    assert (
        "预警处置单" in text and find_rule("BID-SINGLE-BIDDER").title in text and village and village in text
    )
    assert "橙色预警" in text and alert.explanation.replace(" ", "") in text
    assert live.listing.number in text and "104,500.00元" in text  # the evidence, described
    assert f"竞买号{live.bidders[1].number}" in text and "traits" in text
    assert "请于期限内核查" in text and "已调取报名材料" in text and "村委会情况说明：仅一人报名" in text
    assert "核查中" in text and "核查人（签名）" in text
    # the raise shows in Shanghai time: 2026-03-02 12:00
    assert "2026-03-0212:00" in text
    save_png(response.content, "case_file")

    await browse_as(client, admin.user.username)
    assert (await client.get(path)).status_code == 200
    await browse_as(client, supervisor_b.user.username)
    assert (await client.get(path)).status_code == 404
    await browse_as(client, committee_a.user.username)
    assert (await client.get(path)).status_code == 403
    await browse_as(client, None)
    anonymous = await client.get(path, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
    await browse_as(client, supervisor_a.user.username)
    assert (await client.get("/alerts/999999999/case-file.pdf")).status_code == 404


async def test_monthly_township_report_with_its_figures_tables_and_charts(
    client: httpx.AsyncClient,
    db: AsyncSession,
    make_user: Any,
    committee_a: Actor,
    supervisor_a: Actor,
    supervisor_b: Actor,
) -> None:
    live = await sold_listing(db)
    march = START + timedelta(days=3)
    alerts = [
        make_alert("BID-SINGLE-BIDDER", "red", march, "r1", {"listings": [live.id]}),
        make_alert("BID-RESERVE-HUGGING", "orange", march, "r2", {"listings": [live.id]}),
        # raised in February, dismissed in April: open at the end of March, overdue since its deadline passed
        make_alert(
            "BID-CLOSE-SECOND",
            "yellow",
            march - timedelta(days=20),
            "r3",
            {},
            status="dismissed",
            due_on=date(2026, 3, 20),
        ),
    ]
    db.add_all(alerts)
    await db.flush()
    db.add_all(
        AlertEvent(alert_id=a.id, action="raised", to_status="new", at=a.first_raised_at) for a in alerts
    )
    db.add(
        AlertEvent(
            alert_id=alerts[2].id,
            action="dismissed",
            from_status="investigating",
            to_status="dismissed",
            note="不属实",
            at=datetime(2026, 4, 3, tzinfo=UTC),
        )
    )
    for month in (date(2026, 2, 1), date(2026, 3, 1)):
        await IntegrityService(db).recompute(month, villages=None, now=START)
    await db.commit()
    score = await db.scalar(
        select(IntegrityIndex.score).where(
            IntegrityIndex.village_code == VILLAGE_A, IntegrityIndex.month == date(2026, 3, 1)
        )
    )
    assert score is not None and score < 100

    path = f"/reports/townships/{TOWNSHIP_A}/2026-03.pdf"
    await browse_as(client, supervisor_a.user.username)
    response = await client.get(path)
    assert response.status_code == 200, response.text
    text = pdf_text(response.content)
    village = await db.scalar(select(Village.name).where(Village.code == VILLAGE_A))
    assert "农村集体三资监管月报" in text and "龙归街道" in text and "2026年3月" in text and village in text
    assert "成交1宗" in text and "成交金额104,500.00元" in text and "4.50%" in text
    assert "新增预警2条（红色1、橙色1、黄色0）" in text
    assert "3月末未办结预警" in text and "月末逾期未办结1条" in text
    assert find_rule("BID-SINGLE-BIDDER").title in text and find_rule("BID-RESERVE-HUGGING").title in text
    assert f"{score:.2f}" in text and live.listing.number in text
    assert "廉情指数走势" in text  # the trend chart's title, drawn from pygal's SVG
    save_png(response.content, "township_report")
    if page_count(response.content) > 1:
        save_png(response.content, "township_report_p2", page=1)

    district_supervisor = await make_user(Role.SUPERVISOR, area_code=VILLAGE_A[:6] + "000000")
    await browse_as(client, district_supervisor.user.username)
    assert (await client.get(f"/reports/townships/{TOWNSHIP_A}/2026-03")).status_code == 200
    await browse_as(client, supervisor_b.user.username)
    refused = await client.get(path)
    assert refused.status_code == 403 and "不在您的监管范围内" in refused.text
    await browse_as(client, committee_a.user.username)
    assert (await client.get(path)).status_code == 403
    await browse_as(client, None)
    anonymous = await client.get(path, follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")

    await browse_as(client, supervisor_a.user.username)
    bad_month = await client.get(f"/reports/townships/{TOWNSHIP_A}/2026-13.pdf")
    assert bad_month.status_code == 400 and "月份格式应为" in bad_month.text
    assert (await client.get(f"/reports/townships/{TOWNSHIP_A}/2099-01.pdf")).status_code == 404
    assert (await client.get("/reports/townships/440111999000/2026-03.pdf")).status_code == 404
    assert (await client.get("/reports/townships/abc/2026-03.pdf")).status_code in (400, 422)
    # reading a report writes nothing
    assert await db.scalar(select(func.count()).select_from(AlertEvent)) == 4


async def test_a_month_without_activity_still_reports(
    client: httpx.AsyncClient, db: AsyncSession, supervisor_a: Actor
) -> None:
    await browse_as(client, supervisor_a.user.username)
    response = await client.get(f"/reports/townships/{TOWNSHIP_A}/2025-01.pdf")
    assert response.status_code == 200, response.text
    text = pdf_text(response.content)
    assert "本月无新增预警" in text and "本月无成交项目" in text and "本月指数尚未计算" in text
