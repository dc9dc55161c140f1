"""The village accountant's path in a real browser on a phone: register an asset, draft a listing of it and
submit it with the villagers' resolution, post a balanced entry; then anyone sees it on the village's page."""

from __future__ import annotations

import uuid
from typing import Any

from sanzi.platform.demo import DEMO_PASSWORD
from tests.e2e.conftest import PHONE, Shots

VILLAGE = "440111020200"
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= window.innerWidth + 1"


async def test_committee_lists_an_asset_and_posts_an_entry_on_a_phone(
    site: Any, chromium: Any, shots: Shots
) -> None:
    context = await chromium.new_context(base_url=site.base_url, locale="zh-CN", **PHONE)
    page = await context.new_page()
    code = f"E2E-{uuid.uuid4().hex[:6].upper()}"
    try:
        await page.goto("/login")
        await page.get_by_label("用户名").fill("yongxing")
        await page.get_by_label("密码").fill(DEMO_PASSWORD)
        await page.get_by_role("button", name="登录").click()
        await page.wait_for_url("**/")

        await page.goto("/committee/assets/new")
        await page.get_by_label("资产编码").fill(code)
        await page.get_by_label("资产名称").fill("南片鱼塘")
        await page.get_by_label("资产类别").select_option("fish_pond")
        await page.get_by_label("面积/数量").fill("25.5")
        await page.get_by_label("单位").select_option("mu")
        await page.get_by_label("位置（四至）").fill("村南")
        await page.get_by_role("button", name="保存").click()
        await page.wait_for_url("**/committee/assets/*")
        assert "已登记资产“南片鱼塘”" in await page.inner_text("main")
        assert await page.evaluate(NO_SIDEWAYS_SCROLL)
        await shots.take(page, "asset-registered")

        await page.get_by_role("link", name="挂牌交易").last.click()
        await page.wait_for_url("**/committee/listings/new*")
        assert await page.locator("input[name=asset_ids]:checked").count() == 1
        await page.get_by_label("项目名称").fill("南片鱼塘三年出租")
        await page.get_by_label("起始价").fill("18,000")
        await page.get_by_label("最低加价幅度").fill("500")
        await page.get_by_label("最高加价幅度").fill("2000")
        await page.get_by_label("竞买保证金").fill("1800")
        await shots.take(page, "listing-form")
        await page.get_by_role("button", name="保存草稿").click()
        await page.wait_for_url("**/committee/listings/*")
        assert "草稿" in await page.inner_text("h1")

        await page.get_by_label("到会人数").fill("30")
        await page.get_by_label("赞成票").fill("19")
        await page.get_by_label("反对票").fill("4")
        await page.get_by_role("button", name="提交镇街审核").click()
        await page.wait_for_load_state()
        assert "至少需 20 票赞成" in await page.locator("#f-votes_for-error").inner_text()
        await shots.take(page, "resolution-refused")
        await page.get_by_label("赞成票").fill("22")
        await page.get_by_role("button", name="提交镇街审核").click()
        await page.wait_for_load_state()
        assert "已提交镇街审核" in await page.inner_text("main")
        await shots.take(page, "listing-submitted")

        await page.goto("/committee/books/new")
        await page.locator("#f-memo").fill("收取南片鱼塘押金")
        await page.locator("#f-lines\\.0\\.account_code").select_option("102")
        await page.locator("#f-lines\\.0\\.debit").fill("800")
        await page.locator("#f-lines\\.1\\.account_code").select_option("21102")
        await page.locator("#f-lines\\.1\\.credit").fill("700")
        await page.get_by_role("button", name="入账").click()
        await page.wait_for_load_state()
        assert "借贷不平衡" in await page.inner_text("main")
        await page.locator("#f-lines\\.1\\.credit").fill("800.00")
        await page.get_by_role("button", name="入账").click()
        await page.wait_for_url("**/committee/books/entries/*")
        assert "凭证已入账" in await page.inner_text("main")
        assert await page.evaluate(NO_SIDEWAYS_SCROLL)
        await shots.take(page, "entry-posted")
    finally:
        await context.close()

    visitor = await chromium.new_context(base_url=site.base_url, locale="zh-CN", **PHONE)
    public = await visitor.new_page()
    try:
        await public.goto(f"/villages/{VILLAGE}")
        assert "南片鱼塘" in await public.inner_text("#public-assets")
        await public.locator("#public-trades").wait_for()  # the trades arrive through htmx
        assert await public.evaluate(NO_SIDEWAYS_SCROLL)
        await shots.take(public, "village-disclosure")
    finally:
        await visitor.close()
