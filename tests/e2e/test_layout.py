"""The layout in a real browser: Chinese first, the English switch, logging in through the form, a phone screen."""

from __future__ import annotations

from typing import Any

from sanzi.platform.demo import DEMO_PASSWORD
from tests.e2e.conftest import PHONE, Shots


async def test_login_and_language_switch_on_a_phone(site: Any, chromium: Any, shots: Shots) -> None:
    context = await chromium.new_context(base_url=site.base_url, locale="zh-CN", **PHONE)
    page = await context.new_page()
    try:
        await page.goto("/login")
        assert await page.get_attribute("html", "lang") == "zh-CN"
        await page.get_by_label("用户名").fill("yongxing")
        await page.get_by_label("密码").fill("wrong-password")
        await page.get_by_role("button", name="登录").click()
        await page.wait_for_load_state()
        assert await page.locator("#password-error").is_visible()
        await shots.take(page, "login-refused")

        await page.get_by_label("密码").fill(DEMO_PASSWORD)
        await page.get_by_role("button", name="登录").click()
        await page.wait_for_url("**/")
        await page.goto("/account")
        assert "永兴村委会 出纳" in await page.inner_text("#account")
        # no horizontal scrolling on a phone
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
        await shots.take(page, "account")

        await page.get_by_role("link", name="English").click()
        await page.wait_for_url("**/account")
        assert await page.get_attribute("html", "lang") == "en"
        assert await page.get_by_role("heading", name="My account").is_visible()
        await shots.take(page, "account-english")
    finally:
        await context.close()
