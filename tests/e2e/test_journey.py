"""A lot's whole journey through the pages, in Debian's Chromium, every role in its own browser context:

the committee lists an asset with the villagers' resolution; the township supervisor approves and announces it;
two bidders sign up and apply; the committee confirms their deposits and the supervisor qualifies them; the two
bid against each other, each seeing the other's bid arrive without reloading; the scheduler closes the auction;
the public result page shows the winner's price; the winner's certificate PDF downloads, and its verification
code checks out on the public verification page against the published root, while an altered code is refused.

Only the wait for days of announcement period is skipped: the listing's stored times are moved back (the
auction proofs' ``advance_clock``), which to the server is the clock jumping forward.
"""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import uuid
from datetime import UTC, datetime
from typing import Any

from playwright.async_api import expect
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker
from stdnum.cn import ric

from sanzi.auction.models import Listing
from sanzi.platform.database import create_engine
from sanzi.platform.demo import DEMO_PASSWORD
from tests.auction.harness import advance_clock, seconds_to_end
from tests.conftest import make_settings
from tests.e2e.conftest import DESKTOP, PHONE, SANZI, Shots

LIVE_TIMEOUT = 15_000  # ms: a bid must reach the other bidder's screen well within this


async def open_as(chromium: Any, site: Any, username: str | None, password: str = DEMO_PASSWORD, **device: Any):
    context = await chromium.new_context(base_url=site.base_url, locale="zh-CN", **(device or DESKTOP))
    page = await context.new_page()
    if username is not None:
        await page.goto("/login")
        await page.get_by_label("用户名").fill(username)
        await page.get_by_label("密码").fill(password)
        await page.get_by_role("button", name="登录").click()
        await page.wait_for_url("**/")
    return context, page


def resident_id() -> str:
    """A valid 18-digit resident identity number (born 1985, Baiyun district) that no other run uses."""
    body = f"44011119850{random.randint(1, 9)}{random.randint(10, 28)}{random.randint(100, 999)}"
    return body + ric.calc_check_digit(body + "0")  # the function ignores the last character


async def sign_up(page: Any, name: str, phone: str) -> str:
    username = f"e2e-{uuid.uuid4().hex[:8]}"
    await page.goto("/bidder/signup")
    await page.get_by_label("用户名").fill(username)
    await page.locator("#f-password").fill("Bidder-pass-2026")
    await page.get_by_label("再次输入密码").fill("Bidder-pass-2026")
    await page.get_by_label("竞买人类型").select_option("person")
    await page.get_by_label("姓名或企业名称").fill(name)
    await page.get_by_label("证件号码").fill(resident_id())
    await page.get_by_label("手机号码").fill(phone)
    await page.get_by_role("button", name="注册并登录").click()
    await page.wait_for_load_state()
    errors = await page.locator(".error, .alert").all_inner_texts()
    assert "/bidder/profile" in page.url, errors
    return username


async def seconds_to_start(database_url: str, listing_id: int) -> float:
    engine = create_engine(make_settings(database_url))
    try:
        async with async_sessionmaker(engine)() as session:
            start = await session.scalar(select(Listing.bidding_starts_at).where(Listing.id == listing_id))
            assert start is not None
            return (start - datetime.now(UTC)).total_seconds()
    finally:
        await engine.dispose()


async def test_a_lot_from_listing_to_verified_certificate(site: Any, chromium: Any, shots: Shots) -> None:
    contexts = []
    try:
        # ---- the committee registers an asset, drafts the listing and submits it with the resolution --------
        context, committee = await open_as(chromium, site, "yongxing", **PHONE)
        contexts.append(context)
        code = f"J-{uuid.uuid4().hex[:6].upper()}"
        title = f"东片鱼塘三年出租 {code}"
        await committee.goto("/committee/assets/new")
        await committee.get_by_label("资产编码").fill(code)
        await committee.get_by_label("资产名称").fill("东片鱼塘")
        await committee.get_by_label("资产类别").select_option("fish_pond")
        await committee.get_by_label("面积/数量").fill("12")
        await committee.get_by_label("单位").select_option("mu")
        await committee.get_by_label("位置（四至）").fill("村东")
        await committee.get_by_role("button", name="保存").click()
        await committee.wait_for_url("**/committee/assets/*")

        await committee.get_by_role("link", name="挂牌交易").last.click()
        await committee.wait_for_url("**/committee/listings/new*")
        await committee.get_by_label("项目名称").fill(title)
        await committee.get_by_label("起始价").fill("18000")
        await committee.get_by_label("最低加价幅度").fill("500")
        await committee.get_by_label("最高加价幅度").fill("2000")
        await committee.get_by_label("竞买保证金").fill("1800")
        await committee.get_by_role("button", name="保存草稿").click()
        await committee.wait_for_url(re.compile(r".*/committee/listings/\d+.*"))
        listing_id = int(re.search(r"/committee/listings/(\d+)", committee.url).group(1))  # type: ignore[union-attr]
        await committee.get_by_label("到会人数").fill("30")
        await committee.get_by_label("赞成票").fill("24")
        await committee.get_by_label("反对票").fill("3")
        await committee.get_by_role("button", name="提交镇街审核").click()
        await committee.wait_for_load_state()
        await shots.take(committee, "committee-submitted")

        # ---- the township supervisor approves and announces it ----------------------------------------------
        context, supervisor = await open_as(chromium, site, "longgui")
        contexts.append(context)
        await supervisor.goto("/supervisor/approvals")
        card = supervisor.locator(f'#submitted-listings article[data-listing="{listing_id}"]')
        await expect(card).to_contain_text("赞成票达到三分之二")
        await shots.take(supervisor, "supervisor-queue")
        await card.get_by_role("button", name="审核通过").click()
        await supervisor.wait_for_load_state()
        await supervisor.locator(f'#approved-listings article[data-listing="{listing_id}"]').get_by_role(
            "button", name="发布交易公告"
        ).click()
        await supervisor.wait_for_load_state()

        # ---- the public sees the announcement ----------------------------------------------------------------
        context, public = await open_as(chromium, site, None, **PHONE)
        contexts.append(context)
        await public.goto("/announcements")
        await expect(public.get_by_role("link", name=title)).to_be_visible()
        await public.get_by_role("link", name=title).click()
        await expect(public.locator("main")).to_contain_text("¥18,000.00")
        await shots.take(public, "public-announcement")

        # ---- two bidders sign up and apply --------------------------------------------------------------------
        bidders = []
        for name, phone, device in (("陈建华", "13911112222", PHONE), ("林晓梅", "13933334444", DESKTOP)):
            context, page = await open_as(chromium, site, None, **device)
            contexts.append(context)
            await sign_up(page, name, phone)
            await page.goto(f"/listings/{listing_id}/bid")
            await page.get_by_role("button", name="报名参加竞买").click()
            await page.wait_for_load_state()
            await expect(page.locator("#my-registration")).to_be_visible()
            bidders.append(page)
        await shots.take(bidders[0], "bidder-applied")

        # ---- the committee confirms both deposits; the supervisor qualifies both bidders --------------------
        await committee.goto(f"/committee/listings/{listing_id}")
        for payer in ("陈建华", "林晓梅"):
            row = committee.locator("#registrations tbody tr", has=committee.get_by_text("登记到账")).first
            await row.get_by_text("登记到账").click()
            await row.get_by_label("付款人户名").fill(payer)
            await row.get_by_label("付款账号").fill(f"62220200{random.randint(10**7, 10**8 - 1)}")
            await row.get_by_role("button", name="确认到账").click()
            await committee.wait_for_load_state()
        await shots.take(committee, "deposits-confirmed")

        await supervisor.goto("/supervisor/approvals")
        for _ in range(2):
            pending = supervisor.locator("#pending-registrations article", has_text=title).first
            await pending.get_by_role("button", name="资格审核通过").click()
            await supervisor.wait_for_load_state()
        await expect(supervisor.locator("#pending-registrations article", has_text=title)).to_have_count(0)

        # ---- bidding opens (the announcement period passes) and the two bid against each other ------------
        await advance_clock(site.database_url, listing_id, await seconds_to_start(site.database_url, listing_id) + 2)
        first, second = bidders
        for page in bidders:
            await page.goto(f"/listings/{listing_id}/bid")
            await expect(page.get_by_label("出价金额（元）")).to_be_visible(timeout=LIVE_TIMEOUT)

        await first.get_by_label("出价金额（元）").fill("18000")
        await first.get_by_role("button", name="确认出价").click()
        # the other bidder's console shows it without reloading
        await expect(second.locator("#current-price")).to_contain_text("¥18,000.00", timeout=LIVE_TIMEOUT)
        await shots.take(second, "second-sees-first-bid")

        await second.get_by_label("出价金额（元）").fill("18500")
        await second.get_by_role("button", name="确认出价").click()
        await expect(first.locator("#current-price")).to_contain_text("¥18,500.00", timeout=LIVE_TIMEOUT)
        await shots.take(first, "first-sees-second-bid")

        # a bid below the next minimum is refused with the allowed range, and changes nothing
        await first.get_by_label("出价金额（元）").fill("18600")
        await first.get_by_role("button", name="确认出价").click()
        await expect(first.locator("main")).to_contain_text("¥19,000.00", timeout=LIVE_TIMEOUT)
        await expect(first.locator("#current-price")).to_contain_text("¥18,500.00")
        await shots.take(first, "bid-refused")

        await public.goto(f"/listings/{listing_id}/live")
        await expect(public.locator("#current-price")).to_contain_text("¥18,500.00", timeout=LIVE_TIMEOUT)
        await shots.take(public, "public-live")

        # ---- the auction closes on its own; the public result shows the winner's price ------------------------
        await advance_clock(site.database_url, listing_id, await seconds_to_end(site.database_url, listing_id) + 1)
        await expect(public.locator("#result")).to_contain_text("¥18,500.00", timeout=LIVE_TIMEOUT)
        await public.goto(f"/listings/{listing_id}")
        await expect(public.locator("main")).to_contain_text("成交")
        await expect(public.locator("main")).to_contain_text("¥18,500.00")
        await shots.take(public, "public-result")
        await public.goto("/results")
        await expect(public.locator("main")).to_contain_text(title)

        # ---- the winner downloads the certificate and anyone verifies it ----------------------------------------
        await second.goto("/bidder/applications")
        await shots.take(second, "winner-applications")
        link = second.get_by_role("link", name=re.compile("鉴证书"))
        href = await link.first.get_attribute("href")
        assert href and href.endswith("certificate.pdf")
        async with second.expect_download() as download_info:
            await second.evaluate("href => { const a = document.createElement('a'); a.href = href; "
                                  "a.download = 'certificate.pdf'; document.body.appendChild(a); a.click(); }", href)
        download = await download_info.value
        pdf = open(await download.path(), "rb").read()  # noqa: SIM115, ASYNC230 - a small local file
        text = "".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages)
        assert "交易鉴证书" in re.sub(r"\s+", "", text) and "18,500.00" in text
        match = re.search(r"鉴证编号[:：]\s*([0-9A-Z-]+)", text)
        assert match, text
        # the platform publishes the root of all books; the code then checks out against the published root
        env = {**os.environ, "DATABASE_URL": site.database_url, "SANZI_ENV": "test"}
        subprocess.run([str(SANZI), "ledger", "publish-root"], env=env, check=True, capture_output=True)
        await public.goto(f"/verify/{match.group(1)}")
        await expect(public.locator("main")).to_contain_text("18,500.00")
        await expect(public.locator("main")).to_contain_text("该根包含本村前")
        await shots.take(public, "certificate-verified")
        await public.goto(f"/verify/{match.group(1)[:-1]}{'A' if match.group(1)[-1] != 'A' else 'B'}")
        await expect(public.locator("main")).to_contain_text("伪造")
        await shots.take(public, "forged-code-refused")
    finally:
        for context in contexts:
            await context.close()
