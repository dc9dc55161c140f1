"""The warning pages: the supervisors' dashboard and alert review, and the committee's alerts, through a
logged-in browser. Each review step goes through its form and the review service; bad input is shown beside
its field and writes nothing; another area's supervisor or another village's committee is refused."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.models import Role, Village
from sanzi.warnings.models import Alert, AlertEvent
from sanzi.warnings.services import IntegrityService, month_start
from tests.conftest import VILLAGE_A, VILLAGE_B
from tests.warnings.test_review import make_alert

TOWNSHIP_A = VILLAGE_A[:9] + "000"
DISTRICT_A = VILLAGE_A[:6] + "000000"


def tomorrow_plus(days: int) -> str:
    return (date.today() + timedelta(days=days)).isoformat()


async def events_of(db: AsyncSession, alert_id: int) -> list[tuple[str, str | None]]:
    rows = await db.execute(
        select(AlertEvent.action, AlertEvent.note)
        .where(AlertEvent.alert_id == alert_id)
        .order_by(AlertEvent.id)
    )
    return [(row.action, row.note) for row in rows]


async def status_of(db: AsyncSession, alert_id: int) -> tuple[str, int | None]:
    alert = await db.get(Alert, alert_id, populate_existing=True)
    assert alert is not None
    return alert.status, alert.assigned_to_id


async def neighbour_of_a(db: AsyncSession) -> Village:
    """Another village of village A's township."""
    village = await db.scalar(
        select(Village)
        .where(Village.township_code == TOWNSHIP_A, Village.code != VILLAGE_A)
        .order_by(Village.code)
    )
    assert village is not None
    return village


def rows_of(html: str, table_marker: str) -> list[str]:
    """The <tr> blocks of the first table after a marker (a heading's text)."""
    start = html.index(table_marker)
    end = html.index("</table>", start)
    return re.findall(r"<tr>.*?</tr>", html[start:end], flags=re.S)


# ---- dashboard ---------------------------------------------------------------------------------------------


async def test_dashboard_shows_the_areas_villages_worst_first_with_trend_and_open_alerts(
    db: AsyncSession, browser: Any, supervisor_a: Any
) -> None:
    neighbour = await neighbour_of_a(db)
    this_month = month_start(date.today())
    last_month = month_start(this_month - timedelta(days=1))
    await make_alert(db, VILLAGE_A, severity="red", rule_id="BID-SINGLE-BIDDER")
    await make_alert(db, VILLAGE_A, severity="red", rule_id="BID-SINGLE-BIDDER")
    await make_alert(
        db,
        neighbour.code,
        severity="yellow",
        rule_id="BID-SHORT-ANNOUNCEMENT",
        due_on=date.today() - timedelta(days=3),
    )
    await make_alert(
        db, VILLAGE_B, severity="red", rule_id="BID-SINGLE-BIDDER"
    )  # another township: not counted
    index = IntegrityService(db)
    await index.recompute(last_month)
    await index.recompute(this_month)
    await db.commit()

    visitor = await browser(supervisor_a)
    page = await visitor.get("/supervisor/warnings")
    assert page.status_code == 200, page.text
    html = page.text
    assert "廉情预警看板" in html and "龙归街道" in html

    villages = rows_of(html, 'id="villages-title"')[1:]
    assert len(villages) >= 2
    # village A (two red alerts: 100 − 2×30 = 40, red) comes first, then the neighbour (100 − 5 = 95, green)
    assert f"/villages/{VILLAGE_A}" in villages[0] and "level-red" in villages[0] and "40.00" in villages[0]
    neighbour_row = next(row for row in villages if f"/villages/{neighbour.code}" in row)
    assert "level-green" in neighbour_row and "95.00" in neighbour_row
    assert VILLAGE_B not in html  # only the supervisor's township

    trend = rows_of(html, "各月廉情指数")
    assert any(last_month.strftime("%Y-%m") in row for row in trend)
    assert any(this_month.strftime("%Y-%m") in row for row in trend)
    assert "<svg" in html  # the charts, inline

    by_rule = rows_of(html, "<caption>按规则")
    single = next(row for row in by_rule if "单一竞买人成交" in row)
    assert re.findall(r'<td class="num">(\d+)</td>', single) == ["2", "0", "0", "2"]
    by_severity = rows_of(html, "<caption>按等级")
    assert ">2</a>" in by_severity[1] and ">1</a>" in by_severity[3]  # red 2, yellow 1

    overdue = rows_of(html, 'id="overdue-title"')
    assert any("公告期不足" in row and neighbour.name in row for row in overdue)
    assert f"/reports/townships/{TOWNSHIP_A}/{this_month.strftime('%Y-%m')}.pdf" in html


async def test_dashboard_area_is_the_supervisors_own_and_admins_pick_any(
    db: AsyncSession, browser: Any, supervisor_a: Any, admin: Any, make_user: Any, committee_a: Any
) -> None:
    await IntegrityService(db).recompute(month_start(date.today()))
    await db.commit()
    township_visitor = await browser(supervisor_a)
    refused = await township_visitor.get(f"/supervisor/warnings?township={VILLAGE_B[:9]}")
    assert refused.status_code == 403 and "本辖区" in refused.text

    district_supervisor = await make_user(Role.SUPERVISOR, area_code=DISTRICT_A)
    district_visitor = await browser(district_supervisor)
    whole = await district_visitor.get("/supervisor/warnings")
    assert whole.status_code == 200 and "各镇街汇总" in whole.text and 'name="township"' in whole.text
    one = await district_visitor.get(f"/supervisor/warnings?township={TOWNSHIP_A}")
    assert one.status_code == 200 and "龙归街道" in one.text and VILLAGE_B not in one.text

    admin_visitor = await browser(admin)
    city = await admin_visitor.get("/supervisor/warnings")
    assert city.status_code == 200 and "广州市" in city.text and "各区汇总" in city.text
    other = await admin_visitor.get(f"/supervisor/warnings?district={VILLAGE_B[:6]}")
    assert other.status_code == 200 and "增城区" in other.text
    assert (await admin_visitor.get("/supervisor/warnings?month=2026-13")).status_code == 400

    assert (await (await browser(committee_a)).get("/supervisor/warnings")).status_code == 403
    anonymous = await (await browser()).get("/supervisor/warnings")
    assert (
        anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=/supervisor/warnings"
    )


# ---- alerts list and review --------------------------------------------------------------------------------


async def test_alert_list_filters_and_refuses_a_bad_filter_beside_it(
    db: AsyncSession, browser: Any, supervisor_a: Any
) -> None:
    red = await make_alert(db, VILLAGE_A, severity="red", rule_id="BID-SINGLE-BIDDER")
    yellow = await make_alert(db, VILLAGE_A, severity="yellow", rule_id="BID-SHORT-ANNOUNCEMENT")
    elsewhere = await make_alert(db, VILLAGE_B, severity="red")
    visitor = await browser(supervisor_a)

    everything = await visitor.get("/supervisor/alerts")
    assert everything.status_code == 200
    assert (
        f'/supervisor/alerts/{red.id}"' in everything.text
        and f'/supervisor/alerts/{yellow.id}"' in everything.text
    )
    assert f'/supervisor/alerts/{elsewhere.id}"' not in everything.text
    assert everything.text.index(f"#{red.id}<") < everything.text.index(
        f"#{yellow.id}<"
    )  # most serious first

    reds = await visitor.get("/supervisor/alerts?severity=red")
    assert f"#{red.id}<" in reds.text and f"#{yellow.id}<" not in reds.text
    by_rule = await visitor.get("/supervisor/alerts?rule=BID-SHORT-ANNOUNCEMENT")
    assert f"#{yellow.id}<" in by_rule.text and f"#{red.id}<" not in by_rule.text

    dismissed = await make_alert(db, VILLAGE_A, severity="red", status="dismissed")
    still_open = await visitor.get("/supervisor/alerts?status=open")
    assert f"#{red.id}<" in still_open.text and f"#{yellow.id}<" in still_open.text
    assert f"#{dismissed.id}<" not in still_open.text
    assert f"#{dismissed.id}<" in (await visitor.get("/supervisor/alerts?status=dismissed")).text

    bad = await visitor.get("/supervisor/alerts?severity=purple")
    assert bad.status_code == 400
    assert re.search(r'id="f-severity"[^>]*aria-invalid="true"', bad.text) and "无效的筛选条件" in bad.text


async def test_the_whole_review_through_the_alert_page(
    db: AsyncSession, browser: Any, supervisor_a: Any, make_user: Any
) -> None:
    alert = await make_alert(
        db, VILLAGE_A, rule_id="BID-SINGLE-BIDDER", evidence={"listings": [7], "contracts": [9], "bids": [3]}
    )
    visitor = await browser(supervisor_a)
    page = await visitor.get(f"/supervisor/alerts/{alert.id}")
    assert page.status_code == 200
    assert "单一竞买人成交" in page.text and "成交价低于同镇街下限" in page.text
    assert 'href="/listings/7"' in page.text and 'href="/committee/contracts/9"' in page.text
    assert f'href="/alerts/{alert.id}/case-file.pdf"' in page.text
    assert f'action="/supervisor/alerts/{alert.id}/assign"' in page.text
    assert f'<option value="{supervisor_a.id}"' in page.text  # the area's supervisors to choose from

    before = await events_of(db, alert.id)
    missing = await visitor.post(
        f"/supervisor/alerts/{alert.id}/assign",
        {"assignee_id": str(supervisor_a.id), "assign_note": "请核查"},
    )
    assert missing.status_code == 400 and "请选择核查期限" in missing.text
    assert re.search(r'id="f-due_on"[^>]*aria-invalid="true"', missing.text)
    past = await visitor.post(
        f"/supervisor/alerts/{alert.id}/assign",
        {"assignee_id": str(supervisor_a.id), "due_on": "2020-01-01", "assign_note": "请核查"},
    )
    assert past.status_code == 422 and "核查期限不能早于今天" in past.text
    assert await events_of(db, alert.id) == before and await status_of(db, alert.id) == ("new", None)

    steps = [
        (
            "assign",
            {"assignee_id": str(supervisor_a.id), "due_on": tomorrow_plus(10), "assign_note": "请核查合同"},
            "assigned",
        ),
        ("investigate", {"investigate_note": "调阅会议记录"}, "investigating"),
        ("confirm", {"rectification_due_on": tomorrow_plus(30), "confirm_note": "情况属实"}, "confirmed"),
        ("rectify", {"rectify_note": "已重新进场交易"}, "confirmed"),
    ]
    for action, form, status in steps:
        response = await visitor.post(f"/supervisor/alerts/{alert.id}/{action}", form)
        assert response.status_code == 303, (action, response.text[-500:])
        assert response.headers["location"] == f"/supervisor/alerts/{alert.id}"
        assert (await status_of(db, alert.id))[0] == status
    actions = [action for action, _ in await events_of(db, alert.id)]
    assert actions == ["raised", "assigned", "investigating", "confirmed", "rectified"]
    done = await visitor.get(f"/supervisor/alerts/{alert.id}")
    assert "已确认整改完成" in done.text  # the flash
    assert "已重新进场交易" in done.text and "调阅会议记录" in done.text
    assert '/rectify"' not in done.text and "此预警已办结" in done.text

    # a step out of order is refused beside the form, and changes nothing
    again = await visitor.post(f"/supervisor/alerts/{alert.id}/investigate", {"investigate_note": "再查"})
    assert again.status_code == 409 and 'role="alert"' in again.text
    assert [a for a, _ in await events_of(db, alert.id)] == actions


async def test_only_the_handler_takes_the_next_steps_and_other_areas_are_refused(
    db: AsyncSession, browser: Any, supervisor_a: Any, supervisor_b: Any, make_user: Any
) -> None:
    colleague = await make_user(Role.SUPERVISOR, area_code=TOWNSHIP_A)
    alert = await make_alert(db, VILLAGE_A, status="assigned")
    alert.assigned_to_id = colleague.id
    await db.commit()
    visitor = await browser(supervisor_a)
    page = await visitor.get(f"/supervisor/alerts/{alert.id}")
    assert "仅承办人可办理此预警的后续步骤" in page.text and '/investigate"' not in page.text
    refused = await visitor.post(
        f"/supervisor/alerts/{alert.id}/investigate", {"investigate_note": "抢先核查"}
    )
    assert refused.status_code == 403 and (await status_of(db, alert.id))[0] == "assigned"

    outsider = await browser(supervisor_b)
    assert (await outsider.get(f"/supervisor/alerts/{alert.id}")).status_code == 404
    posted = await outsider.post(f"/supervisor/alerts/{alert.id}/dismiss", {"reason": "不属实"})
    assert posted.status_code == 404 and (await status_of(db, alert.id))[0] == "assigned"


# ---- the committee's alerts --------------------------------------------------------------------------------


async def test_committee_sees_its_villages_alerts_without_supervisors_notes_and_responds(
    db: AsyncSession, browser: Any, committee_a: Any, committee_b: Any, supervisor_a: Any
) -> None:
    alert = await make_alert(db, VILLAGE_A, evidence={"listings": [7], "bids": [3, 4], "bidders": [11]})
    other = await make_alert(db, VILLAGE_B)
    db.add(
        AlertEvent(
            alert_id=alert.id,
            action="assigned",
            from_status="new",
            to_status="assigned",
            actor_id=supervisor_a.id,
            note="内部：重点核查主任亲属",
            at=datetime.now(UTC),
        )
    )
    alert.status = "assigned"
    await db.commit()

    visitor = await browser(committee_a)
    listing = await visitor.get("/committee/alerts")
    assert listing.status_code == 200
    assert (
        f'/committee/alerts/{alert.id}"' in listing.text
        and f'/committee/alerts/{other.id}"' not in listing.text
    )
    page = await visitor.get(f"/committee/alerts/{alert.id}")
    assert page.status_code == 200 and "成交价低于同镇街下限" in page.text
    assert 'href="/listings/7"' in page.text
    assert "内部：重点核查主任亲属" not in page.text  # the supervisors' working note
    evidence = page.text.split('id="evidence-title"')[1].split("</section>")[0]
    assert "竞买人" not in evidence and "出价" not in evidence  # no other bidders' rows

    count = len(await events_of(db, alert.id))
    empty = await visitor.post(f"/committee/alerts/{alert.id}/responses", {"note": ""})
    assert empty.status_code == 400 and re.search(r'id="f-note"[^>]*aria-invalid="true"', empty.text)
    assert "请填写情况说明" in empty.text and len(await events_of(db, alert.id)) == count

    sent = await visitor.post(
        f"/committee/alerts/{alert.id}/responses", {"note": "该地块已按村民代表会议决议公开挂牌"}
    )
    assert sent.status_code == 303
    assert (await events_of(db, alert.id))[-1] == ("response", "该地块已按村民代表会议决议公开挂牌")
    assert (await status_of(db, alert.id))[0] == "assigned"  # a response changes no status

    supervisor_page = await (await browser(supervisor_a)).get(f"/supervisor/alerts/{alert.id}")
    responses = supervisor_page.text.split('id="responses-title"')[1].split("</section>")[0]
    assert "该地块已按村民代表会议决议公开挂牌" in responses

    outsider = await browser(committee_b)
    assert (await outsider.get(f"/committee/alerts/{alert.id}")).status_code == 404
    refused = await outsider.post(f"/committee/alerts/{alert.id}/responses", {"note": "越权回应"})
    assert refused.status_code == 404 and len(await events_of(db, alert.id)) == count + 1
    assert (await outsider.get("/supervisor/alerts")).status_code == 403


@pytest.mark.parametrize("path", ["/supervisor/alerts", "/committee/alerts"])
async def test_alert_pages_send_anonymous_visitors_to_log_in(browser: Any, path: str) -> None:
    response = await (await browser()).get(path)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=" + path


async def test_english_switch_translates_the_dashboard(
    db: AsyncSession, browser: Any, supervisor_a: Any
) -> None:
    visitor = await browser(supervisor_a)
    await visitor.get("/lang/en?next=/supervisor/warnings")
    page = await visitor.get("/supervisor/warnings")
    assert (
        page.status_code == 200
        and "Integrity warnings dashboard" in page.text
        and "Overdue alerts" in page.text
    )


async def test_every_oversight_page_renders_in_both_languages(
    db: AsyncSession, browser: Any, admin: Any, committee_a: Any
) -> None:
    alert = await make_alert(db, VILLAGE_A, rule_id="BID-SINGLE-BIDDER")
    await IntegrityService(db).recompute(month_start(date.today()))
    await db.commit()
    for actor, paths in (
        (
            admin,
            [
                "/supervisor/warnings",
                f"/supervisor/warnings?district={DISTRICT_A}",
                f"/supervisor/warnings?township={TOWNSHIP_A}&level=red&order=code",
                "/supervisor/alerts",
                f"/supervisor/alerts?township={TOWNSHIP_A}&overdue=no",
                f"/supervisor/alerts/{alert.id}",
                "/committee/alerts",
                f"/committee/alerts/{alert.id}",
            ],
        ),
        (committee_a, ["/committee/alerts", f"/committee/alerts/{alert.id}"]),
    ):
        visitor = await browser(actor)
        for lang in ("zh", "en"):
            await visitor.get(f"/lang/{lang}?next=/")
            for path in paths:
                response = await visitor.get(path)
                assert response.status_code == 200, (lang, path, response.text[-500:])
