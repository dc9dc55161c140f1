"""The page infrastructure: the layout, language switch, static files, filters, and HTML refusals."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from sanzi.platform.models import Role
from sanzi.platform.pages import LOCALE_DIR, english_catalog, local_time, wan_yuan, yuan
from sanzi.platform.settings import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "templates"
MESSAGE = re.compile(r"""_\(\s*(["'])(.+?)\1""")


def test_money_and_time_filters_use_integer_fen_and_beijing_time() -> None:
    assert yuan(123456789) == "¥1,234,567.89"
    assert yuan(-5) == "-¥0.05"
    assert yuan(0, symbol=False) == "0.00"
    assert yuan(None) == "—"
    assert wan_yuan(123_456_789) == "123.46 万元"
    assert wan_yuan(4_999) == "0.00 万元"
    assert local_time(datetime(2026, 1, 1, 16, 30, tzinfo=UTC)) == "2026-01-02 00:30"
    assert local_time(datetime(2026, 1, 1, 16, 30)) == "2026-01-02 00:30"  # naive values are stored UTC


def test_every_translatable_string_in_the_templates_has_an_english_text() -> None:
    catalog = english_catalog()
    missing = set()
    for path in TEMPLATES.rglob("*.html"):
        for match in MESSAGE.finditer(path.read_text(encoding="utf-8")):
            if match.group(2) not in catalog:
                missing.add(f"{path.relative_to(TEMPLATES)}: {match.group(2)}")
    assert sorted(missing) == []


def test_catalog_files_are_valid_and_do_not_contradict_each_other() -> None:
    seen: dict[str, tuple[str, str]] = {}
    for path in sorted((LOCALE_DIR / "en").glob("*.json")):
        for source, english in json.loads(path.read_text(encoding="utf-8")).items():
            assert english.strip(), f"{path.name}: empty English for {source}"
            if source in seen:
                assert seen[source][1] == english, f"{source}: {seen[source][0]} and {path.name} disagree"
            seen[source] = (path.name, english)


async def test_layout_is_chinese_first_with_an_english_switch(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text and "农村集体三资交易平台" in page.text
    assert 'name="viewport"' in page.text and 'href="/static/sanzi.css"' in page.text

    switched = await client.get("/lang/en?next=/login")
    assert switched.status_code == 303 and switched.headers["location"] == "/login"
    english = await client.get("/login")
    assert '<html lang="en">' in english.text and "Rural Collective Assets Trading Platform" in english.text
    assert ">Log in<" in english.text

    await client.get("/lang/zh?next=/login")
    assert '<html lang="zh-CN">' in (await client.get("/login")).text


async def test_language_switch_follows_only_local_paths(client: httpx.AsyncClient) -> None:
    for target in ("https://elsewhere.example/", "//elsewhere.example/", "/\\elsewhere"):
        response = await client.get("/lang/en", params={"next": target})
        assert response.status_code == 303 and response.headers["location"] == "/"


async def test_static_files_and_vendored_htmx_are_served(client: httpx.AsyncClient) -> None:
    css = await client.get("/static/sanzi.css")
    assert css.status_code == 200 and "--accent" in css.text
    htmx = await client.get("/static/vendor/htmx-2.0.11.min.js")
    assert htmx.status_code == 200 and len(htmx.content) > 10_000
    assert (await client.get("/static/../pyproject.toml")).status_code == 404


async def test_unknown_page_is_a_chinese_404_page_and_unknown_api_path_a_problem(client: httpx.AsyncClient) -> None:
    page = await client.get("/no-such-page")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html") and "页面或对象不存在" in page.text
    api = await client.get("/api/no-such-thing")
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/problem+json")


async def test_logged_in_visitor_sees_their_work_area_links(browser, make_user) -> None:
    committee = await make_user(Role.COMMITTEE, village_code="440111020200", display_name="出纳小李")
    visitor = await browser(committee)
    page = await visitor.get("/account")
    assert page.status_code == 200
    assert "出纳小李（村委会）" in page.text
    assert 'href="/committee/assets"' in page.text and 'href="/admin/users"' not in page.text
    anonymous = await browser()
    assert 'href="/committee/assets"' not in (await anonymous.get("/login")).text


@pytest.mark.parametrize("path", ["/admin/users", "/committee/assets", "/supervisor/warnings"])
async def test_work_pages_send_anonymous_visitors_to_log_in(browser, path: str) -> None:
    anonymous = await browser()
    response = await anonymous.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=" + path


def test_form_errors_speak_plain_chinese_for_pydantic_errors() -> None:
    from datetime import date

    from pydantic import BaseModel, Field, ValidationError

    from sanzi.platform.pages import form_errors

    class Example(BaseModel):
        name: str = Field(min_length=2, max_length=4)
        count: int = Field(ge=1)
        day: date

    with pytest.raises(ValidationError) as caught:
        Example.model_validate({"name": "x", "count": "0", "day": "2026-02-30"})
    errors = form_errors(caught.value)
    assert errors == {"name": "至少需要 2 个字符", "count": "不能小于 1", "day": "请输入有效日期（如 2026-03-01）"}
    with pytest.raises(ValidationError) as caught:
        Example.model_validate({"count": "many"})
    assert form_errors(caught.value) == {"name": "请填写此项", "count": "请输入整数", "day": "请填写此项"}


def test_a_code_reads_the_same_on_every_page() -> None:
    from sanzi.platform.pages import register_labels

    register_labels("test_group", {"a": "甲"})
    register_labels("test_group", {"a": "甲", "b": "乙"})  # the same word again is fine
    with pytest.raises(ValueError, match="test_group"):
        register_labels("test_group", {"a": "另一个词"})
