"""Bidding pages through HTTP: the live auction (page, HTML stream, fragment), the bidder's console with its bid
form and refusals, applying to bid, sign-up, profile, applications, and the township's approval queues."""

from __future__ import annotations

import asyncio
import contextvars
import re
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.response.sse import ServerSentEventMessage
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from sanzi.auction.models import Bid, DepositState, Listing, ListingStatus, Registration, RegistrationStatus
from sanzi.auction.pages.bidding import views
from sanzi.auction.pages.bidding.live import PANEL, panel_stream
from sanzi.auction.ratelimit import STATE_KEY, BidRateLimiter
from sanzi.auction.services.bidding import channels_publisher, listing_channel, place_bid
from sanzi.auction.services.results import close_listing
from sanzi.platform.models import ApiToken, Bidder, Role, User
from tests.auction.factories import LiveBidder, LiveListing, add_bidder, make_bidder_user, make_live_listing
from tests.conftest import PASSWORD, VILLAGE_A, Actor

NOW = datetime.now(UTC).replace(microsecond=0)


def as_actor(bidder: LiveBidder) -> Actor:
    return Actor(user=bidder.user, token=bidder.token, password=PASSWORD)


def bid_rows(html: str) -> list[int]:
    """The sequence numbers of the bid history's rows, in page order."""
    return [int(seq) for seq in re.findall(r'<tr data-seq="(\d+)"', html)]


def field_error(html: str, name: str) -> str | None:
    """The message shown beside a field, if the field is marked invalid."""
    if not re.search(rf'id="f-{name}"[^>]*aria-invalid="true"', html, re.DOTALL):
        return None
    found = re.search(rf'<p class="error" id="f-{name}-error">(.*?)</p>', html, re.DOTALL)
    return found.group(1) if found else None


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return await db.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def bidding_on(db: AsyncSession, bids: int, **kwargs: Any) -> LiveListing:
    live = await make_live_listing(db, bidders=2, now=NOW, **kwargs)
    for seq in range(1, bids + 1):
        await place_bid(
            db,
            live.id,
            live.bidders[seq % 2].bidder,
            100_000_00 + (seq - 1) * 1_000_00,
            f"k{seq}",
            NOW + timedelta(seconds=seq),
        )
    return live


# ---- the live auction -------------------------------------------------------------------------------------


async def test_live_page_shows_price_countdown_extensions_and_history_by_bidder_number(
    db: AsyncSession, browser: Any
) -> None:
    live = await bidding_on(db, 3, ends_in=timedelta(minutes=3), extension_minutes=5, max_extensions=2)
    page = await (await browser()).get(f"/listings/{live.id}/live")
    assert page.status_code == 200
    html = page.text
    assert "¥102,000.00" in html and "共 3 次出价" in html
    assert bid_rows(html) == [3, 2, 1]
    numbers = re.findall(r'<tr data-seq="\d+"[^>]*>\s*<td>\d+</td>\s*<td>(\d+)', html)
    assert numbers == [live.bidders[1].number, live.bidders[0].number, live.bidders[1].number]
    for bidder in live.bidders:  # numbers only: no identities
        assert bidder.bidder.name not in html and bidder.bidder.id_number not in html
    assert "已延时 2 次（最多 2 次）" in html  # bids 1 and 2 extended the end; the cap stopped the third
    listing = await db.get_one(Listing, live.id, populate_existing=True)
    end = views.as_utc(listing.current_end_at)
    assert f'data-countdown-end="{end.isoformat()}"' in html
    assert "下一口可出价范围" in html and "¥103,000.00" in html and "¥107,000.00" in html
    assert f'sse-connect="/listings/{live.id}/live/events"' in html
    # the fragment is the same panel, for polling
    fragment = await (await browser()).get(f"/listings/{live.id}/live/fragment")
    assert (
        fragment.status_code == 200 and bid_rows(fragment.text) == [3, 2, 1] and "<html" not in fragment.text
    )


async def test_a_listing_that_is_not_public_has_no_live_page(db: AsyncSession, browser: Any) -> None:
    live = await make_live_listing(db, bidders=0, now=NOW)
    listing = await db.get_one(Listing, live.id)
    listing.status, listing.announced_at = ListingStatus.SUBMITTED.value, None
    await db.commit()
    visitor = await browser()
    for path in (
        f"/listings/{live.id}/live",
        f"/listings/{live.id}/live/fragment",
        f"/listings/{live.id}/live/events",
    ):
        response = await visitor.get(path)
        assert response.status_code == 404 and "不存在" in response.text


async def test_live_stream_of_a_closed_auction_sends_the_result_once_and_ends(
    db: AsyncSession, browser: Any
) -> None:
    live = await bidding_on(db, 4, ends_in=timedelta(minutes=30))
    await close_listing(db, live.id, NOW + timedelta(minutes=31))
    async with (await browser()).http.stream("GET", f"/listings/{live.id}/live/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = (await response.aread()).decode()
    events = re.findall(r"^event: (\w+)", body, re.MULTILINE)
    assert events == ["closed"]
    html = "\n".join(line[6:] for line in body.splitlines() if line.startswith("data: "))
    assert bid_rows(html) == [4, 3, 2, 1]
    assert "竞价结束：成交" in html and "¥103,000.00" in html
    page = await (await browser()).get(f"/listings/{live.id}/live")
    assert "sse-connect" not in page.text  # a finished auction is not followed any more
    # the winner's console stream: their standing, and the bid form replaced wherever it stands
    winner = await browser(as_actor(live.bidders[0]))  # bidder 0 placed bid 4
    async with winner.http.stream("GET", f"/listings/{live.id}/live/events?console=1") as response:
        console = (await response.aread()).decode()
    assert "恭喜，您竞得该项目" in console and 'id="bid-form-area" hx-swap-oob="true"' in console


async def test_panel_stream_follows_every_bid_once_and_ends_with_the_result(
    app: Litestar, db: AsyncSession, session_maker: async_sessionmaker[AsyncSession]
) -> None:
    live = await bidding_on(db, 2, ends_in=timedelta(hours=2))
    engine = app.template_engine
    assert engine is not None

    def render(view: views.LiveView) -> str:
        return engine.get_template(PANEL).render(view=view, console=False, me=None, lang="zh")

    async with session_maker() as session:
        view = await views.live_view(session, live.id)
    async with ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True) as plugin:
        def panel(current: views.LiveView, event: str) -> ServerSentEventMessage:
            return ServerSentEventMessage(event=event, data=render(current), id=str(current.last_seq))

        stream = panel_stream(view, panel, plugin, session_maker)
        first = await anext(stream)
        assert first.event == "update" and bid_rows(str(first.data)) == [2, 1]
        waiting = asyncio.create_task(anext(stream))
        await asyncio.sleep(0.05)
        publish = channels_publisher(plugin)
        await place_bid(
            db, live.id, live.bidders[1].bidder, 102_000_00, "p3", NOW + timedelta(minutes=1), publish=publish
        )
        third = await asyncio.wait_for(waiting, 5)
        assert (
            third.event == "update"
            and bid_rows(str(third.data)) == [3, 2, 1]
            and "¥102,000.00" in str(third.data)
        )
        # a repeated event is skipped; a lost one (4) comes from the database before 5
        await publish(listing_channel(live.id), {"type": "bid", "bid": {"seq": 3}})
        await place_bid(db, live.id, live.bidders[0].bidder, 103_000_00, "lost", NOW + timedelta(minutes=2))
        await place_bid(
            db, live.id, live.bidders[1].bidder, 104_000_00, "p5", NOW + timedelta(minutes=3), publish=publish
        )
        panels = [await asyncio.wait_for(anext(stream), 5), await asyncio.wait_for(anext(stream), 5)]
        assert [bid_rows(str(p.data)) for p in panels] == [[4, 3, 2, 1], [5, 4, 3, 2, 1]]
        await close_listing(db, live.id, NOW + timedelta(hours=3), publish=publish)
        closed = await asyncio.wait_for(anext(stream), 5)
        assert (
            closed.event == "closed"
            and "竞价结束：成交" in str(closed.data)
            and "¥104,000.00" in str(closed.data)
        )
        assert [m async for m in stream] == []


# ---- the console and bids ---------------------------------------------------------------------------------


def client_key(html: str) -> str:
    found = re.search(r'name="client_key" value="([0-9a-f]+)"', html)
    assert found, "the bid form carries a client key"
    return found.group(1)


async def test_qualified_bidder_bids_from_the_console_without_javascript(
    db: AsyncSession, browser: Any
) -> None:
    live = await make_live_listing(db, bidders=2, now=NOW)
    first, second = live.bidders
    visitor = await browser(as_actor(first))
    console = await visitor.get(f"/listings/{live.id}/bid")
    assert console.status_code == 200
    assert f"您的竞买号：{first.number}" in console.text and "¥100,000.00" in console.text
    assert "¥105,000.00" in console.text  # the first bid may go up to start + the maximum increment
    key = client_key(console.text)
    placed = await visitor.post(f"/listings/{live.id}/bid", {"amount": "100000", "client_key": key})
    assert placed.status_code == 303 and placed.headers["location"] == f"/listings/{live.id}/bid"
    again = await visitor.post(f"/listings/{live.id}/bid", {"amount": "100000", "client_key": key})
    assert again.status_code == 303  # the double submit answers the same bid
    assert await count(db, Bid, Bid.listing_id == live.id) == 1
    after = await visitor.get(f"/listings/{live.id}/bid")
    assert "出价成功：¥100,000.00" in after.text and "您目前出价最高" in after.text
    assert client_key(after.text) != key
    # the leader may not raise alone
    leading = await visitor.post(
        f"/listings/{live.id}/bid", {"amount": "101000", "client_key": client_key(after.text)}
    )
    assert leading.status_code == 409 and "您已是当前最高出价者" in leading.text

    other = await browser(as_actor(second))
    page = await other.get(f"/listings/{live.id}/bid")
    low = await other.post(
        f"/listings/{live.id}/bid", {"amount": "100500", "client_key": client_key(page.text)}
    )
    assert low.status_code == 422 and low.headers["content-type"].startswith("text/html")
    message = field_error(low.text, "amount")
    assert message and "至少 101000.00 元" in message and "¥101,000.00 至 ¥105,000.00" in message
    high = await other.post(
        f"/listings/{live.id}/bid", {"amount": "200000", "client_key": client_key(low.text)}
    )
    assert high.status_code == 422 and "至多 105000.00 元" in (field_error(high.text, "amount") or "")
    bad = await other.post(
        f"/listings/{live.id}/bid", {"amount": "12.345", "client_key": client_key(high.text)}
    )
    assert bad.status_code == 400 and field_error(bad.text, "amount")
    empty = await other.post(f"/listings/{live.id}/bid", {"amount": "", "client_key": client_key(bad.text)})
    assert empty.status_code == 400 and field_error(empty.text, "amount") == "请填写出价金额（元）"
    assert await count(db, Bid, Bid.listing_id == live.id) == 1  # refusals write nothing
    assert 'value="200000"' in high.text  # the amount typed is kept for correction


async def test_htmx_bid_answers_with_the_form_fragment_and_a_refusal_inside_it(
    app: Litestar, db: AsyncSession, browser: Any
) -> None:
    live = await make_live_listing(db, bidders=2, now=NOW)
    visitor = await browser(as_actor(live.bidders[0]))
    key = client_key((await visitor.get(f"/listings/{live.id}/bid")).text)
    headers = {"HX-Request": "true"}
    ok = await visitor.post(
        f"/listings/{live.id}/bid", {"amount": "100000.00", "client_key": key}, headers=headers
    )
    assert ok.status_code == 200 and ok.text.lstrip().startswith('<div id="bid-form-area">')
    assert "出价成功" in ok.text and client_key(ok.text) != key
    refused = await visitor.post(
        f"/listings/{live.id}/bid", {"amount": "101000", "client_key": client_key(ok.text)}, headers=headers
    )
    assert (
        refused.status_code == 200 and "您已是当前最高出价者" in refused.text and "<html" not in refused.text
    )
    # too fast: the platform's per-bidder rate limit
    app.state[STATE_KEY] = BidRateLimiter(0)
    fast = await visitor.post(f"/listings/{live.id}/bid", {"amount": "101000", "client_key": "x1"})
    assert fast.status_code == 429 and "出价过于频繁" in fast.text
    assert await count(db, Bid, Bid.listing_id == live.id) == 1


async def test_bidders_without_qualification_or_outside_the_window_are_told_why(
    db: AsyncSession, browser: Any
) -> None:
    live = await make_live_listing(db, bidders=1, now=NOW)
    listing = await db.get_one(Listing, live.id)
    waiting = await add_bidder(db, listing, qualified=False, deposit=True, now=NOW)
    unpaid = await add_bidder(db, listing, qualified=False, deposit=False, now=NOW)
    await db.commit()
    for bidder, status_text in ((waiting, "待资格审核"), (unpaid, "待缴保证金")):
        visitor = await browser(as_actor(bidder))
        page = await visitor.get(f"/listings/{live.id}/bid")
        assert page.status_code == 200 and status_text in page.text and 'name="client_key"' not in page.text
        refused = await visitor.post(
            f"/listings/{live.id}/bid", {"amount": "100000", "client_key": "k-" + status_text}
        )
        assert refused.status_code == 403 and "尚未取得该项目的竞买资格" in refused.text
    # outside the window: bidding has not begun
    early = await make_live_listing(
        db,
        bidders=1,
        now=NOW,
        status=ListingStatus.ANNOUNCED,
        starts_in=timedelta(hours=1),
        ends_in=timedelta(hours=2),
    )
    visitor = await browser(as_actor(early.bidders[0]))
    page = await visitor.get(f"/listings/{early.id}/bid")
    assert "距竞价开始" in page.text
    refused = await visitor.post(
        f"/listings/{early.id}/bid", {"amount": "100000", "client_key": client_key(page.text)}
    )
    assert refused.status_code == 409 and "不在竞价时间内" in refused.text
    assert await count(db, Bid, Bid.listing_id.in_([live.id, early.id])) == 0


async def test_a_bidder_applies_from_the_console_once(db: AsyncSession, browser: Any) -> None:
    live = await make_live_listing(
        db,
        bidders=0,
        now=NOW,
        status=ListingStatus.ANNOUNCED,
        starts_in=timedelta(days=2),
        ends_in=timedelta(days=2, hours=1),
    )
    listing = await db.get_one(Listing, live.id)
    listing.registration_deadline = NOW + timedelta(days=1)
    user, bidder, token = await make_bidder_user(db)
    await db.commit()
    visitor = await browser(Actor(user=user, token=token))
    page = await visitor.get(f"/listings/{live.id}/bid")
    assert "报名参加竞买" in page.text and bidder.phone in page.text
    bad = await visitor.post(f"/listings/{live.id}/register", {"contact_phone": "1" * 40})
    assert bad.status_code == 400 and field_error(bad.text, "contact_phone")
    assert await count(db, Registration, Registration.listing_id == live.id) == 0
    applied = await visitor.post(
        f"/listings/{live.id}/register", {"contact_phone": "", "contact_address": "村西"}
    )
    assert applied.status_code == 303
    registration = await db.scalar(select(Registration).where(Registration.listing_id == live.id))
    assert registration is not None and registration.contact_phone == bidder.phone
    assert registration.contact_address == "村西" and registration.status == RegistrationStatus.APPLIED.value
    again = await visitor.post(f"/listings/{live.id}/register", {})
    assert again.status_code == 409 and "您已报名该交易项目" in again.text
    assert await count(db, Registration, Registration.listing_id == live.id) == 1
    console = await visitor.get(f"/listings/{live.id}/bid")
    assert (
        "待缴保证金" in console.text and "¥100,000.00" in console.text
    )  # the deposit to pay (factory: 10万)


async def test_console_is_for_bidders(db: AsyncSession, browser: Any, committee_a: Actor) -> None:
    live = await make_live_listing(db, bidders=0, now=NOW)
    anonymous = await (await browser()).get(f"/listings/{live.id}/bid")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
    refused = await (await browser(committee_a)).get(f"/listings/{live.id}/bid")
    assert refused.status_code == 403


# ---- sign-up, profile, applications -----------------------------------------------------------------------


def signup_form(**fields: str) -> dict[str, str]:
    form = {
        "kind": "person",
        "name": "赵六",
        "id_number": "11010519491231002X",
        "phone": "138 1234 5678",
        "address": "广州市白云区龙归街道永兴村 2 号",
        "bank_name": "",
        "bank_account": "",
        "username": "zhaoliu",
        "password": "zhao-liu-2026",
        "password_again": "zhao-liu-2026",
    }
    form.update(fields)
    return form


async def test_sign_up_checks_every_field_in_chinese_and_writes_nothing_on_error(
    db: AsyncSession, browser: Any
) -> None:
    visitor = await browser()
    page = await visitor.get("/bidder/signup")
    assert page.status_code == 200
    for name in ("kind", "name", "id_number", "phone", "username", "password", "password_again"):
        assert f'<label for="f-{name}">' in page.text
    users = await count(db, User)
    bad_id = await visitor.post("/bidder/signup", signup_form(id_number="110105194912310021"))
    assert bad_id.status_code == 422 and "身份证" in (field_error(bad_id.text, "id_number") or "")
    mismatch = await visitor.post("/bidder/signup", signup_form(password_again="other-2026x"))
    assert (
        mismatch.status_code == 400 and field_error(mismatch.text, "password_again") == "两次输入的密码不一致"
    )
    company = await visitor.post(
        "/bidder/signup", signup_form(kind="company", id_number="91350100M000100Y43")
    )
    assert company.status_code == 422 and field_error(company.text, "legal_representative")
    bad_phone = await visitor.post("/bidder/signup", signup_form(phone="12345"))
    assert bad_phone.status_code == 422 and field_error(bad_phone.text, "phone")
    empty = await visitor.post("/bidder/signup", {})
    assert (
        empty.status_code == 400 and field_error(empty.text, "name") and field_error(empty.text, "username")
    )
    assert 'value="zhao-liu-2026"' not in mismatch.text  # passwords are never echoed back
    assert await count(db, User) == users and await count(db, Bidder) == 0


async def test_sign_up_logs_the_new_bidder_in_and_the_profile_edits_contact_details(
    db: AsyncSession, browser: Any
) -> None:
    visitor = await browser()
    done = await visitor.post("/bidder/signup", signup_form())
    assert done.status_code == 303 and done.headers["location"] == "/bidder/profile"
    profile = await visitor.get("/bidder/profile")
    assert profile.status_code == 200 and "赵六" in profile.text and "11010519491231002X" in profile.text
    assert "注册成功" in profile.text
    user = await db.scalar(select(User).where(User.username == "zhaoliu"))
    assert user is not None and user.role == Role.BIDDER.value
    # pages use the session: the sign-up's API token is revoked at once
    assert await count(db, ApiToken, ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)) == 0
    duplicate = await (await browser()).post("/bidder/signup", signup_form(username="zhaoliu2"))
    assert duplicate.status_code == 409 and "该证件号码已注册" in (
        field_error(duplicate.text, "id_number") or ""
    )

    bad = await visitor.post("/bidder/profile", {"phone": "999", "address": "新地址"})
    assert bad.status_code == 422 and field_error(bad.text, "phone")
    bidder = await db.scalar(
        select(Bidder).where(Bidder.user_id == user.id).execution_options(populate_existing=True)
    )
    assert bidder is not None and bidder.address == "广州市白云区龙归街道永兴村 2 号"
    saved = await visitor.post(
        "/bidder/profile",
        {
            "phone": "139 0000 1111",
            "address": "新地址",
            "bank_name": "农业银行",
            "bank_account": "6228 4800 1234 5678 901",
        },
    )
    assert saved.status_code == 303
    await db.refresh(bidder)
    assert (bidder.phone, bidder.address, bidder.bank_name) == ("13900001111", "新地址", "农业银行")
    assert "联系方式已更新" in (await visitor.get("/bidder/profile")).text


async def test_applications_show_deposit_qualification_number_and_outcome(
    db: AsyncSession, browser: Any
) -> None:
    won = await bidding_on(db, 3, ends_in=timedelta(minutes=30))  # bidder 1 places bids 1 and 3
    await close_listing(db, won.id, NOW + timedelta(minutes=31))
    winner, loser = won.bidders[1], won.bidders[0]
    pending = await make_live_listing(
        db,
        bidders=0,
        now=NOW,
        status=ListingStatus.ANNOUNCED,
        starts_in=timedelta(days=2),
        ends_in=timedelta(days=2, hours=1),
    )
    registration = Registration(
        listing_id=pending.id,
        bidder_id=winner.bidder.id,
        status=RegistrationStatus.APPLIED.value,
        contact_phone=winner.bidder.phone,
        deposit_state=DepositState.NONE.value,
    )
    db.add(registration)
    await db.commit()

    page = await (await browser(as_actor(winner))).get("/bidder/applications")
    assert page.status_code == 200
    rows = dict(
        re.findall(r'<article class="card" data-registration="(\d+)">(.*?)</article>', page.text, re.DOTALL)
    )
    closed_row, open_row = rows[str(winner.registration.id)], rows[str(registration.id)]
    assert "竞得" in closed_row and "¥102,000.00" in closed_row and winner.number in closed_row
    assert "已到账" in closed_row  # the winner's deposit is held until the contract
    assert "待缴纳" in open_row and "待缴保证金" in open_row and f"/listings/{pending.id}/bid" in open_row
    other = await (await browser(as_actor(loser))).get("/bidder/applications")
    assert "未竞得" in other.text and "已退还" in other.text
    assert str(registration.id) not in re.findall(r'data-registration="(\d+)"', other.text)


async def test_bidder_pages_are_for_bidders(browser: Any, committee_a: Actor, supervisor_a: Actor) -> None:
    for path in ("/bidder/profile", "/bidder/applications"):
        anonymous = await (await browser()).get(path)
        assert anonymous.status_code == 303 and anonymous.headers["location"] == f"/login?next={path}"
        assert (await (await browser(committee_a)).get(path)).status_code == 403
    assert (await (await browser(supervisor_a)).get("/bidder/signup")).status_code == 200


# ---- the approval queues ----------------------------------------------------------------------------------


ASSET = {
    "code": "Q-1",
    "name": "审批测试鱼塘",
    "kind": "fish_pond",
    "area": "8",
    "area_unit": "mu",
    "location": "村南",
}
RESOLUTION = {"meeting_date": "2026-01-10", "members_present": 30, "votes_for": 21, "votes_against": 5}


def listing_terms(asset_id: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "asset_ids": [asset_id],
        "title": "审批测试鱼塘出租",
        "trade_type": "lease",
        "term_years": 3,
        "price_basis": "per_year",
        "starting_price": "1500.00",
        "reserve_price": "1800.00",
        "min_increment": "50.00",
        "max_increment": "500.00",
        "deposit": "100.00",
        "announcement_days": 7,
        "registration_deadline": (now + timedelta(days=10)).isoformat(),
        "bidding_starts_at": (now + timedelta(days=11)).isoformat(),
        "bidding_ends_at": (now + timedelta(days=11, hours=2)).isoformat(),
        "extension_minutes": 5,
        "max_extensions": 10,
    }


async def submitted_listing(client: httpx.AsyncClient, committee: Actor) -> int:
    village = f"/api/villages/{VILLAGE_A}"
    asset = await client.post(f"{village}/assets", json=ASSET, headers=committee.headers)
    assert asset.status_code == 201, asset.text
    listing = await client.post(
        f"{village}/listings", json=listing_terms(asset.json()["id"]), headers=committee.headers
    )
    assert listing.status_code == 201, listing.text
    submitted = await client.post(
        f"/api/listings/{listing.json()['id']}/submit", json=RESOLUTION, headers=committee.headers
    )
    assert submitted.status_code == 200, submitted.text
    return int(listing.json()["id"])


async def test_supervisor_approves_sends_back_and_announces_listings_of_their_area(
    client: httpx.AsyncClient,
    db: AsyncSession,
    browser: Any,
    committee_a: Actor,
    supervisor_a: Actor,
    supervisor_b: Actor,
) -> None:
    listing_id = await submitted_listing(client, committee_a)
    ours, theirs = await browser(supervisor_a), await browser(supervisor_b)
    queue = await ours.get("/supervisor/approvals")
    assert queue.status_code == 200
    row = re.search(
        rf'<article class="card" data-listing="{listing_id}">(.*?)</article>', queue.text, re.DOTALL
    )
    assert row, "the submitted listing is in the area's queue"
    assert "到会 30 人，赞成 21，反对 5" in row.group(1) and "赞成票达到三分之二" in row.group(1)
    assert "¥1,800.00" in row.group(1)  # the supervisor sees the secret reserve
    assert f'data-listing="{listing_id}"' not in (await theirs.get("/supervisor/approvals")).text

    status = lambda: db.scalar(
        select(Listing.status).where(Listing.id == listing_id).execution_options(populate_existing=True)
    )
    base = f"/supervisor/approvals/listings/{listing_id}"
    assert (await theirs.post(f"{base}/approve")).status_code in (403, 404)
    assert (await theirs.post(f"{base}/send-back", {"reason": "材料不全"})).status_code in (403, 404)
    assert await status() == ListingStatus.SUBMITTED.value

    empty = await ours.post(f"{base}/send-back", {"reason": ""})
    assert empty.status_code == 400 and empty.headers["content-type"].startswith("text/html")
    assert re.search(rf'id="reason-listing-{listing_id}"[^>]*aria-invalid="true"', empty.text)
    assert "请填写理由" in empty.text and await status() == ListingStatus.SUBMITTED.value
    early = await ours.post(f"{base}/announce")
    assert (
        early.status_code == 409
        and "不能变为" in early.text
        and await status() == ListingStatus.SUBMITTED.value
    )

    sent_back = await ours.post(f"{base}/send-back", {"reason": "请补充决议原件"})
    assert sent_back.status_code == 303 and await status() == ListingStatus.DRAFT.value
    resubmitted = await client.post(
        f"/api/listings/{listing_id}/submit", json=RESOLUTION, headers=committee_a.headers
    )
    assert resubmitted.status_code == 200
    assert (
        await ours.post(f"{base}/approve")
    ).status_code == 303 and await status() == ListingStatus.APPROVED.value
    approved = await ours.get("/supervisor/approvals")
    assert "已审核通过" in approved.text and re.search(
        rf'<div class="queue" id="approved-listings">\s*<article class="card" data-listing="{listing_id}"',
        approved.text,
        re.DOTALL,
    )
    assert (
        await ours.post(f"{base}/announce")
    ).status_code == 303 and await status() == ListingStatus.ANNOUNCED.value


async def test_supervisor_qualifies_and_rejects_bidders_whose_deposit_is_held(
    db: AsyncSession, browser: Any, admin: Actor, supervisor_a: Actor, supervisor_b: Actor
) -> None:
    live = await make_live_listing(
        db,
        bidders=0,
        now=NOW,
        status=ListingStatus.ANNOUNCED,
        starts_in=timedelta(days=2),
        ends_in=timedelta(days=2, hours=1),
    )
    listing = await db.get_one(Listing, live.id)
    paid = await add_bidder(db, listing, qualified=False, deposit=True, name="钱七", now=NOW)
    other = await add_bidder(db, listing, qualified=False, deposit=True, name="孙八", now=NOW)
    unpaid = await add_bidder(db, listing, qualified=False, deposit=False, name="周九", now=NOW)
    await db.commit()
    ours, theirs = await browser(supervisor_a), await browser(supervisor_b)
    queue = (await ours.get("/supervisor/approvals")).text
    listed = set(re.findall(r'data-registration="(\d+)"', queue))
    assert {str(paid.registration.id), str(other.registration.id)} <= listed
    assert str(unpaid.registration.id) not in listed  # no deposit yet: the committee confirms it first
    assert "钱七" in queue and paid.bidder.id_number in queue
    assert str(paid.registration.id) not in re.findall(
        r'data-registration="(\d+)"', (await theirs.get("/supervisor/approvals")).text
    )
    assert str(paid.registration.id) in (await (await browser(admin)).get("/supervisor/approvals")).text

    base = "/supervisor/approvals/registrations"
    assert (await theirs.post(f"{base}/{paid.registration.id}/qualify")).status_code in (403, 404)
    assert (await ours.post(f"{base}/{paid.registration.id}/qualify")).status_code == 303
    await db.refresh(paid.registration)
    assert paid.registration.status == RegistrationStatus.QUALIFIED.value and paid.registration.bidder_number

    no_reason = await ours.post(f"{base}/{other.registration.id}/reject", {"reason": " "})
    assert no_reason.status_code == 400 and "请填写理由" in no_reason.text
    rejected = await ours.post(f"{base}/{other.registration.id}/reject", {"reason": "不符合竞买条件"})
    assert rejected.status_code == 303
    await db.refresh(other.registration)
    assert other.registration.status == RegistrationStatus.REJECTED.value
    assert other.registration.deposit_state == DepositState.REFUNDED.value
    twice = await ours.post(f"{base}/{paid.registration.id}/qualify")
    assert twice.status_code == 409 and "已通过资格审核" in twice.text


async def test_approval_queue_is_for_supervisors_and_admins(
    browser: Any, committee_a: Actor, make_user: Any
) -> None:
    anonymous = await (await browser()).get("/supervisor/approvals")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")
    assert (await (await browser(committee_a)).get("/supervisor/approvals")).status_code == 403
    bidder = await make_user(Role.BIDDER)
    assert (await (await browser(bidder)).get("/supervisor/approvals")).status_code == 403


async def test_live_page_in_english(db: AsyncSession, browser: Any) -> None:
    live = await bidding_on(db, 1)
    visitor = await browser()
    await visitor.get("/lang/en")
    page = await visitor.get(f"/listings/{live.id}/live")
    assert "Bid history" in page.text and "Next bid range" in page.text and "出价记录" not in page.text
    assert "Leading" in page.text  # badges and form labels come from macros, translated too
    signup = await visitor.get("/bidder/signup")
    assert '<label for="f-id_number">ID number' in signup.text and "Person" in signup.text


def test_watchers_of_the_same_moment_share_one_rendered_panel() -> None:
    from sanzi.auction.pages.bidding import live as live_pages

    renders: list[int] = []

    def render() -> str:
        renders.append(1)
        return f"<p>{len(renders)}</p>"

    key = ("test-listing", 7, "bidding", NOW, "zh", False, None)
    shared = [live_pages._shared_panel(key, render, "update", 7) for _ in range(50)]
    assert all(message is shared[0] for message in shared) and shared[0].data == "<p>1</p>" and len(renders) == 1
    assert shared[0].encode() == b"id: 7\r\nevent: update\r\ndata: <p>1</p>\r\n\r\n"  # encoded once, sent to all
    own = live_pages._shared_panel((*key[:-1], "1234"), render, "update", 7)
    assert own.data == "<p>2</p>"  # a bidder's own console differs
    for n in range(live_pages.PANEL_CACHE_SIZE + 1):  # old moments make room for new ones
        live_pages._shared_panel(("filler", n), render, "update", 0)
    assert (*key, "update") not in live_pages._PANELS and len(live_pages._PANELS) == live_pages.PANEL_CACHE_SIZE


async def test_twenty_live_pages_over_http_share_each_rendered_panel_and_the_reads(
    app: Litestar, db: AsyncSession, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sanzi.auction import live as live_streams
    from sanzi.auction.pages.bidding import live as live_pages
    from tests.auction.test_stream import Deferred, http_server, until

    monkeypatch.setattr(live_streams, "POLL_HEALTHY_SECONDS", 3600.0)  # no safety-net read during the test
    renders: list[int] = []
    render = live_pages._render

    def counted(*args: Any, **kwargs: Any) -> str:
        renders.append(1)
        return render(*args, **kwargs)

    monkeypatch.setattr(live_pages, "_render", counted)
    monkeypatch.setattr(live_pages, "_PANELS", OrderedDict())  # (the same moments were rendered by other tests)
    live = await bidding_on(db, 2, ends_in=timedelta(hours=2))
    publish = Deferred(app.plugins.get(ChannelsPlugin))
    placing: contextvars.ContextVar[bool] = contextvars.ContextVar("placing", default=False)
    reads: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not placing.get():
            reads.append(statement)

    panels: list[list[tuple[str, list[int]]]] = []

    async def watch(http: httpx.AsyncClient) -> None:
        seen: list[tuple[str, list[int]]] = []
        panels.append(seen)
        async with http.stream("GET", f"/listings/{live.id}/live/events") as response:
            assert response.status_code == 200
            name, data = "", []
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif not line and name:
                    seen.append((name, bid_rows("\n".join(data))))
                    name, data = "", []

    event.listen(engine.sync_engine, "before_cursor_execute", count)
    try:
        async with http_server(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as http:
            tasks = []
            hubs = live_streams.hubs_of(app.plugins.get(ChannelsPlugin))
            for n in range(20):  # one after another: each page's first panel is read for it
                tasks.append(asyncio.create_task(watch(http)))
                await until(lambda: len(panels) == n + 1 and len(panels[n]) == 1, "a page's first panel")
                # (the tests' sessions share one connection: no read may overlap the listing hub's first one)
                await until(lambda: (hub := hubs.get(live.id)) is not None and hub.ready.is_set(), "the hub")
            connected, rendered = len(reads), len(renders)
            for seq in (3, 4, 5):
                token = placing.set(True)
                try:
                    await place_bid(db, live.id, live.bidders[seq % 2].bidder, 100_000_00 + (seq - 1) * 1_000_00,
                                    f"page{seq}", NOW + timedelta(minutes=seq), publish=publish)
                finally:
                    placing.reset(token)
                await publish.flush()
                await until(lambda: all(p[-1][1][:1] == [seq] for p in panels), f"bid {seq} on every page")
            assert len(reads) == connected, reads[connected:]  # the bids cost no read
            assert len(renders) - rendered == 3  # one render per bid for all twenty pages
            token = placing.set(True)
            try:
                await close_listing(db, live.id, NOW + timedelta(hours=3), publish=publish)
            finally:
                placing.reset(token)
            await publish.flush()
            await asyncio.wait_for(asyncio.gather(*tasks), 15)
            assert len(renders) - rendered == 4  # and one for the result
            assert len(reads) - connected <= 2 * connected // 20 + 10, reads[connected:]  # not one per page
        for seen in panels:
            assert [name for name, _ in seen] == ["update", "update", "update", "update", "closed"]
            assert [rows[:1] for _, rows in seen] == [[2], [3], [4], [5], [5]]
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", count)
