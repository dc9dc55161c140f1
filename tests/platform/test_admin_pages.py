"""The administration pages through an admin's logged-in browser: users and roles (the password policy, ending
sessions), rule parameters (validated, city-wide or per district), elections and candidates, cadres and
relatives. Bad input is shown beside its field and writes nothing; nobody but an admin gets in."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.models import Cadre, CadreRelative, Candidate, Election, Role, Setting, User, Village
from tests.conftest import PASSWORD, VILLAGE_A, VILLAGE_B


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return await db.scalar(select(func.count()).select_from(model).where(*where)) or 0


def invalid(html: str, field: str) -> bool:
    return re.search(rf'id="f-{field}"[^>]*aria-invalid="true"', html, flags=re.S) is not None


# ---- users and roles ---------------------------------------------------------------------------------------


async def test_admin_lists_users_with_filters(browser: Any, admin: Any, make_user: Any) -> None:
    committee = await make_user(Role.COMMITTEE, village_code=VILLAGE_A, display_name="出纳王芳")
    supervisor = await make_user(Role.SUPERVISOR, area_code=VILLAGE_A[:9] + "000", display_name="纪检李明")
    visitor = await browser(admin)
    everyone = await visitor.get("/admin/users?q=" + committee.user.username[:9])
    assert everyone.status_code == 200 and "出纳王芳" in everyone.text
    committees = await visitor.get("/admin/users?role=committee&q=" + committee.user.username)
    assert "出纳王芳" in committees.text and "永兴村" in committees.text and "纪检李明" not in committees.text
    supervisors = await visitor.get("/admin/users?role=supervisor&q=" + supervisor.user.username)
    assert "纪检李明" in supervisors.text and "龙归街道" in supervisors.text
    bad = await visitor.get("/admin/users?role=king")
    assert bad.status_code == 400 and invalid(bad.text, "role")


async def test_create_an_official_with_scope_and_password_policy(
    db: AsyncSession, browser: Any, admin: Any
) -> None:
    visitor = await browser(admin)
    form = {
        "username": "cun-kuaiji-01",
        "display_name": "村会计陈",
        "role": "committee",
        "village_code": VILLAGE_A,
        "phone": "13800138001",
        "password": "Zhangben-2026",
        "password_confirm": "Zhangben-2026",
    }
    before = await count(db, User)
    for changes, field, message in [
        ({"password": "12345678", "password_confirm": "12345678"}, "password", "密码不能全部是数字"),
        ({"password_confirm": "Other-2026"}, "password_confirm", "两次输入的密码不一致"),
        ({"village_code": ""}, "village_code", "村委会成员须填写所属村代码"),
        ({"village_code": "440111999999"}, "village_code", "村代码不存在"),
        (
            {"role": "supervisor", "village_code": "", "area_code": ""},
            "area_code",
            "监管人员须填写所辖镇街或区代码",
        ),
        ({"username": "a"}, "username", "至少需要 3 个字符"),
    ]:
        response = await visitor.post("/admin/users/new", {**form, **changes})
        assert response.status_code in (400, 422), (changes, response.status_code)
        assert invalid(response.text, field) and message in response.text, (changes, response.text[-3000:])
        assert "Zhangben-2026" not in response.text  # a password is never sent back
    assert await count(db, User) == before

    created = await visitor.post("/admin/users/new", form)
    assert created.status_code == 303
    user = await db.scalar(select(User).where(User.username == "cun-kuaiji-01"))
    assert user is not None and user.role == "committee" and user.village_code == VILLAGE_A
    assert created.headers["location"] == f"/admin/users/{user.id}"

    duplicate = await visitor.post("/admin/users/new", form)
    assert (
        duplicate.status_code == 409
        and invalid(duplicate.text, "username")
        and "用户名已被使用" in duplicate.text
    )
    assert await count(db, User) == before + 1

    # the new member logs in with the password the admin set
    login = await (await browser()).post("/login", {"username": "cun-kuaiji-01", "password": "Zhangben-2026"})
    assert login.status_code == 303


async def test_reset_password_and_deactivation_end_the_users_sessions(
    db: AsyncSession, browser: Any, admin: Any, make_user: Any
) -> None:
    member = await make_user(Role.COMMITTEE, village_code=VILLAGE_A)
    member_browser = await browser(member)
    assert (await member_browser.get("/account")).status_code == 200
    visitor = await browser(admin)
    page = await visitor.get(f"/admin/users/{member.id}")
    assert page.status_code == 200 and member.user.username in page.text

    weak = await visitor.post(
        f"/admin/users/{member.id}/password", {"password": "short", "password_confirm": "short"}
    )
    assert weak.status_code == 422 and invalid(weak.text, "password") and "至少需要 8 个字符" in weak.text
    assert (await member_browser.get("/account")).status_code == 200  # nothing changed

    reset = await visitor.post(
        f"/admin/users/{member.id}/password",
        {"password": "Xin-mima-2026", "password_confirm": "Xin-mima-2026"},
    )
    assert reset.status_code == 303
    stale = await member_browser.get("/account")
    assert stale.status_code == 303 and stale.headers["location"].startswith("/login")
    again = await browser()
    assert (
        await again.post("/login", {"username": member.user.username, "password": PASSWORD})
    ).status_code == 401
    fresh = await browser()
    assert (
        await fresh.post("/login", {"username": member.user.username, "password": "Xin-mima-2026"})
    ).status_code == 303
    assert (await fresh.get("/account")).status_code == 200

    off = await visitor.post(f"/admin/users/{member.id}/active", {"is_active": "false"})
    assert off.status_code == 303
    assert (await fresh.get("/account")).status_code == 303
    account = await db.get(User, member.id, populate_existing=True)
    assert account is not None and account.is_active is False

    own = await visitor.post(f"/admin/users/{admin.id}/active", {"is_active": "false"})
    assert own.status_code == 422 and "不能停用自己的账户" in own.text
    assert (await visitor.get("/admin/users")).status_code == 200  # still logged in


async def test_edit_a_supervisors_area(db: AsyncSession, browser: Any, admin: Any, make_user: Any) -> None:
    supervisor = await make_user(Role.SUPERVISOR, area_code=VILLAGE_A[:9] + "000")
    visitor = await browser(admin)
    bad = await visitor.post(f"/admin/users/{supervisor.id}", {"display_name": "纪检组", "area_code": "123"})
    assert bad.status_code == 422 and invalid(bad.text, "area_code") and "镇街或区代码不存在" in bad.text
    moved = await visitor.post(
        f"/admin/users/{supervisor.id}", {"display_name": "纪检组", "area_code": VILLAGE_B[:6]}
    )
    assert moved.status_code == 303
    user = await db.get(User, supervisor.id, populate_existing=True)
    assert user is not None and user.display_name == "纪检组" and user.area_code == VILLAGE_B[:6] + "000000"


@pytest.mark.parametrize("path", ["/admin/users", "/admin/parameters", "/admin/elections", "/admin/cadres"])
async def test_only_admins_reach_the_admin_pages(
    browser: Any, committee_a: Any, supervisor_a: Any, path: str
) -> None:
    for actor in (committee_a, supervisor_a):
        response = await (await browser(actor)).get(path)
        assert response.status_code == 403 and "无权" in response.text
    anonymous = await (await browser()).get(path)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login?next=" + path


# ---- rule parameters ---------------------------------------------------------------------------------------


async def test_rule_parameters_city_and_district_values_are_validated(
    db: AsyncSession, browser: Any, admin: Any
) -> None:
    visitor = await browser(admin)
    page = await visitor.get("/admin/parameters")
    assert page.status_code == 200
    assert "单一竞买人成交" in page.text and "BID-SINGLE-BIDDER" in page.text
    assert "廉情指数与交易参数" in page.text and "warnings.index.weight_red" in page.text

    key = "warnings.BID-SHORT-ANNOUNCEMENT.min_days"
    if key not in page.text:  # the rule's own parameter name, whatever it is
        key = re.search(r'name="key" value="(warnings\.BID-SHORT-ANNOUNCEMENT\.[^"]+)"', page.text).group(1)
    settings = await count(db, Setting)
    for value, message in (("abc", "请输入"), ("-5", "应在"), ("", "请填写参数值")):
        refused = await visitor.post("/admin/parameters", {"key": key, "value": value})
        assert refused.status_code in (400, 422), value
        assert message in refused.text and 'aria-invalid="true"' in refused.text
    assert await count(db, Setting) == settings

    district = VILLAGE_B[:6] + "000000"
    set_city = await visitor.post("/admin/parameters", {"key": key, "value": "12"})
    assert set_city.status_code == 303
    set_district = await visitor.post(
        "/admin/parameters", {"key": key, "value": "15", "district_code": district}
    )
    assert set_district.status_code == 303 and set_district.headers["location"].startswith(
        f"/admin/parameters?district={district}"
    )
    rows = {row.scope: row.value for row in await db.scalars(select(Setting).where(Setting.key == key))}
    assert rows == {"": 12, district: 15}

    shown = await visitor.get(f"/admin/parameters?district={district}")
    assert "增城区" in shown.text
    assert re.search(rf'value="{re.escape(key)}".*?name="value"[^>]*value="15"', shown.text, flags=re.S)
    index_weight = await visitor.post(
        "/admin/parameters", {"key": "warnings.index.weight_red", "value": "40"}
    )
    assert index_weight.status_code == 303
    unknown = await visitor.post("/admin/parameters", {"key": "no.such.parameter", "value": "1"})
    assert unknown.status_code == 400 and "请选择要修改的参数" in unknown.text


# ---- elections and candidates ------------------------------------------------------------------------------


async def test_elections_per_village_in_bulk_and_candidates(
    db: AsyncSession, browser: Any, admin: Any
) -> None:
    visitor = await browser(admin)
    found = await visitor.get("/admin/elections?q=永兴")
    assert found.status_code == 200 and f'href="/admin/elections/villages/{VILLAGE_A}"' in found.text

    page = await visitor.get(f"/admin/elections/villages/{VILLAGE_A}")
    assert page.status_code == 200 and "永兴村" in page.text and "本村尚未登记选举" in page.text
    bad = await visitor.post(f"/admin/elections/villages/{VILLAGE_A}", {"election_date": "2026-02-30"})
    assert bad.status_code == 400 and invalid(bad.text, "election_date")
    assert await count(db, Election, Election.village_code == VILLAGE_A) == 0
    added = await visitor.post(
        f"/admin/elections/villages/{VILLAGE_A}", {"election_date": "2026-12-20", "note": "换届"}
    )
    assert added.status_code == 303
    twice = await visitor.post(f"/admin/elections/villages/{VILLAGE_A}", {"election_date": "2026-12-20"})
    assert twice.status_code == 409 and "已登记该日期" in twice.text
    election = await db.scalar(select(Election).where(Election.village_code == VILLAGE_A))
    assert election is not None

    no_name = await visitor.post(
        f"/admin/elections/villages/{VILLAGE_A}/candidates",
        {"election_id": str(election.id), "position": "主任"},
    )
    assert no_name.status_code == 400 and invalid(no_name.text, "name")
    candidate = await visitor.post(
        f"/admin/elections/villages/{VILLAGE_A}/candidates",
        {"election_id": str(election.id), "name": "赵六", "position": "主任"},
    )
    assert candidate.status_code == 303
    assert await count(db, Candidate, Candidate.election_id == election.id) == 1
    shown = await visitor.get(f"/admin/elections/villages/{VILLAGE_A}")
    assert "赵六" in shown.text and "2026-12-20" in shown.text
    # an election of another village cannot take candidates through this village's page
    wrong = await visitor.post(
        f"/admin/elections/villages/{VILLAGE_B}/candidates",
        {"election_id": str(election.id), "name": "钱七", "position": "委员"},
    )
    assert (
        wrong.status_code == 400 and invalid(wrong.text, "election_id") and "请选择本村的选举" in wrong.text
    )
    assert await count(db, Candidate, Candidate.name == "钱七") == 0

    district = VILLAGE_B[:6]
    villages = await count(db, Village, Village.district_code == district + "000000")
    bulk = await visitor.post(
        "/admin/elections/bulk", {"district_code": district, "election_date": "2026-12-27"}
    )
    assert bulk.status_code == 303
    assert await count(db, Election, Election.election_date == date(2026, 12, 27)) == villages
    index = await visitor.get("/admin/elections")
    assert f"{villages} 个村登记" in index.text  # the flash
    assert re.search(rf"2026-12-27</td><td class=\"num\">{villages}<", index.text)
    missing = await visitor.post("/admin/elections/bulk", {"district_code": district})
    assert missing.status_code == 400 and invalid(missing.text, "election_date")


# ---- cadres and relatives ----------------------------------------------------------------------------------


async def test_cadres_terms_and_relatives(db: AsyncSession, browser: Any, admin: Any) -> None:
    visitor = await browser(admin)
    base = f"/admin/cadres/villages/{VILLAGE_A}"
    assert (await visitor.get(base)).status_code == 200
    cadres = await count(db, Cadre, Cadre.village_code == VILLAGE_A)
    bad = await visitor.post(
        base,
        {
            "name": "孙八",
            "body": "committee",
            "position": "主任",
            "term_start": "2021-03-01",
            "term_end": "2020-01-01",
        },
    )
    assert bad.status_code == 400 and "任期结束日不能早于开始日" in bad.text
    bad_id = await visitor.post(
        base,
        {
            "name": "孙八",
            "body": "committee",
            "position": "主任",
            "term_start": "2021-03-01",
            "id_number": "440111198001011234",
        },
    )
    assert bad_id.status_code == 422 and invalid(bad_id.text, "id_number")
    assert await count(db, Cadre, Cadre.village_code == VILLAGE_A) == cadres

    added = await visitor.post(
        base,
        {
            "name": "孙八",
            "body": "committee",
            "position": "主任",
            "term_start": "2021-03-01",
            "phone": "13800138002",
        },
    )
    assert added.status_code == 303
    cadre = await db.scalar(select(Cadre).where(Cadre.village_code == VILLAGE_A, Cadre.name == "孙八"))
    assert cadre is not None and added.headers["location"] == f"/admin/cadres/{cadre.id}"

    edited = await visitor.post(f"/admin/cadres/{cadre.id}", {"position": "书记", "phone": "13800138002"})
    assert edited.status_code == 303
    relative = await visitor.post(
        f"/admin/cadres/{cadre.id}/relatives", {"relative_name": "孙小八", "relation": "子女"}
    )
    assert relative.status_code == 303
    no_relation = await visitor.post(f"/admin/cadres/{cadre.id}/relatives", {"relative_name": "孙二"})
    assert no_relation.status_code == 400 and invalid(no_relation.text, "relation")
    page = await visitor.get(f"/admin/cadres/{cadre.id}")
    assert "书记" in page.text and "孙小八" in page.text
    listed = await visitor.get(base)
    assert "孙小八（子女）" in listed.text

    row = await db.scalar(select(CadreRelative).where(CadreRelative.cadre_id == cadre.id))
    assert row is not None
    unconfirmed = await visitor.post(f"/admin/cadres/relatives/{row.id}/delete", {})
    assert unconfirmed.status_code == 400 and await count(db, CadreRelative, CadreRelative.id == row.id) == 1
    deleted = await visitor.post(f"/admin/cadres/relatives/{row.id}/delete", {"confirm": "yes"})
    assert deleted.status_code == 303 and await count(db, CadreRelative, CadreRelative.id == row.id) == 0

    not_confirmed = await visitor.post(f"/admin/cadres/{cadre.id}/end", {})
    assert not_confirmed.status_code == 400 and invalid(not_confirmed.text, "confirm")
    assert "请勾选确认" in not_confirmed.text
    ended = await visitor.post(f"/admin/cadres/{cadre.id}/end", {"confirm": "yes"})
    assert ended.status_code == 303
    kept = await db.get(Cadre, cadre.id, populate_existing=True)  # history is kept: the term ends today
    assert kept is not None and kept.term_end == datetime.now(ZoneInfo("Asia/Shanghai")).date()


async def test_every_admin_page_renders_in_both_languages(db: AsyncSession, browser: Any, admin: Any) -> None:
    cadre = Cadre(
        village_code=VILLAGE_A, name="周九", body="party_branch", position="书记", term_start=date(2021, 3, 1)
    )
    db.add(cadre)
    await db.commit()
    visitor = await browser(admin)
    paths = [
        "/admin/users",
        "/admin/users/new",
        f"/admin/users/{admin.id}",
        "/admin/parameters",
        f"/admin/parameters?district={VILLAGE_B[:6]}",
        "/admin/elections",
        f"/admin/elections?district={VILLAGE_A[:6]}",
        f"/admin/elections/villages/{VILLAGE_A}",
        "/admin/cadres?q=永兴",
        f"/admin/cadres/villages/{VILLAGE_A}",
        f"/admin/cadres/{cadre.id}",
    ]
    for lang, marker in (("zh", '<html lang="zh-CN">'), ("en", '<html lang="en">')):
        await visitor.get(f"/lang/{lang}?next=/")
        for path in paths:
            response = await visitor.get(path)
            assert response.status_code == 200, (lang, path, response.text[-500:])
            assert marker in response.text
    assert "Users and roles" in (await visitor.get("/admin/users")).text
