"""The public portal through HTTP: the home page's figures (and how few queries make them), announcements
and results with their filters, a listing's public page (never a draft, never the reserve, identities only
with the result), and search with its "no results" message."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import httpx
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from sanzi.auction.models import Listing, ListingStatus
from sanzi.auction.services.bidding import place_bid
from sanzi.auction.services.public import platform_figures, premium_rate, public_results
from sanzi.auction.services.results import close_listing
from sanzi.platform.models import District, Township, Village
from tests.auction.factories import LiveListing, make_live_listing
from tests.conftest import VILLAGE_A, VILLAGE_B, Actor

# 23:00 on 31 December in Beijing: an auction that runs two hours closes in the next Beijing year
NEW_YEAR_EVE = datetime(2025, 12, 31, 15, 0, tzinfo=UTC)
SUMMER = datetime(2025, 6, 1, 2, 0, tzinfo=UTC)
DISTRICT_A = VILLAGE_A[:6] + "000000"  # 白云区
DISTRICT_B = VILLAGE_B[:6] + "000000"  # 增城区


class Rows(HTMLParser):
    """The text of each row of one table (by id), cell by cell."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id, self.inside, self.depth = table_id, False, 0
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and dict(attrs).get("id") == self.table_id:
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.inside:
            self.inside = False
        elif self.inside and tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table(html: str, table_id: str) -> list[list[str]]:
    parser = Rows(table_id)
    parser.feed(html)
    assert parser.rows, f"no table #{table_id}"
    return parser.rows[1:]  # without the header


def listing_ids(html: str) -> set[int]:
    return {int(n) for n in re.findall(r'data-listing="(\d+)"', html)}


async def sold(
    db: AsyncSession, start: datetime, amounts: list[int], *, village: str = VILLAGE_A, **terms: Any
) -> LiveListing:
    """A listing bid on by alternating bidders from ``start``, closed through the real services at its end."""
    live = await make_live_listing(
        db, bidders=2, now=start, village_code=village, ends_in=timedelta(hours=2), **terms
    )
    for seq, amount in enumerate(amounts):
        bidder = live.bidders[seq % 2].bidder
        await place_bid(db, live.id, bidder, amount, f"k{seq}", start + timedelta(minutes=seq + 1))
    await close_listing(db, live.id, start + timedelta(hours=2))
    return live


async def unpublished(db: AsyncSession, status: ListingStatus, **terms: Any) -> LiveListing:
    live = await make_live_listing(db, bidders=0, status=ListingStatus.ANNOUNCED, **terms)
    listing = await db.get_one(Listing, live.id)
    listing.status, listing.announced_at = status.value, None
    await db.commit()
    return live


async def trades(db: AsyncSession) -> tuple[LiveListing, LiveListing, LiveListing]:
    """Two sales in 白云区 (2% and 10% premium; one closing after midnight of New Year in Beijing) and a
    failed listing in 增城区."""
    summer = await sold(db, SUMMER, [100_000_00, 102_000_00])
    new_year = await sold(
        db, NEW_YEAR_EVE, [100_000_00, 105_000_00, 110_000_00], reserve_price_fen=109_876_54
    )
    failed = await make_live_listing(
        db, bidders=1, now=SUMMER, village_code=VILLAGE_B, ends_in=timedelta(hours=2)
    )
    await close_listing(db, failed.id, SUMMER + timedelta(hours=2))
    return summer, new_year, failed


# ---- the figures ------------------------------------------------------------------------------------------


async def test_figures_are_grouped_in_sql_by_district_and_beijing_year(db: AsyncSession) -> None:
    await trades(db)
    await unpublished(db, ListingStatus.SUBMITTED)
    figures = await platform_figures(db)
    assert (figures.total.sold, figures.total.failed) == (2, 1)
    assert figures.total.value_fen == 212_000_00 and figures.total.starting_fen == 200_000_00
    assert figures.total.average_premium == Decimal("0.0600")  # the mean of 2% and 10%
    assert figures.total.success_rate == Decimal("0.6667")
    districts = {f.key: f for f in figures.by_district}
    assert (districts[DISTRICT_A].sold, districts[DISTRICT_A].failed) == (2, 0)
    assert (districts[DISTRICT_B].sold, districts[DISTRICT_B].failed, districts[DISTRICT_B].value_fen) == (
        0,
        1,
        0,
    )
    assert districts[DISTRICT_B].average_premium is None
    # every district is listed, also those without any trade
    assert len(districts) == await db.scalar(select(func.count(func.distinct(Village.district_code))))
    years = {f.key: (f.sold, f.failed, f.value_fen) for f in figures.by_year}
    assert years == {"2025": (1, 1, 102_000_00), "2026": (1, 0, 110_000_00)}
    # the submitted listing is not published: it counts nowhere
    assert figures.listings_by_status == {"sold": 2, "failed": 1} and figures.open_now == 0


async def test_results_carry_premium_bidders_and_winner_and_filter_like_announcements(
    db: AsyncSession,
) -> None:
    summer, new_year, failed = await trades(db)
    page = await public_results(db)
    assert [r.listing_id for r in page.items] == [new_year.id, failed.id, summer.id]  # newest close first
    latest = page.items[0]
    assert latest.outcome == "sold" and latest.final_price_fen == 110_000_00 and latest.bidders == 2
    assert latest.premium == Decimal("0.1000") and latest.bid_count == 3
    assert (
        latest.winner_name == new_year.bidders[0].bidder.name
        and latest.winner_number == new_year.bidders[0].number
    )
    assert (
        page.items[1].outcome == "failed" and page.items[1].winner_name is None and page.items[1].bidders == 0
    )
    assert [r.listing_id for r in (await public_results(db, district=DISTRICT_B)).items] == [failed.id]
    assert [r.listing_id for r in (await public_results(db, outcome="sold", q="永兴")).items] == [
        new_year.id,
        summer.id,
    ]
    assert (await public_results(db, q="测试鱼塘")).total == 3  # the asset's name
    # the total comes with the page's rows; a page past the end still tells it, one of none tells none
    assert (page.total, (await public_results(db, page_size=2, page=2)).total) == (3, 3)
    past = await public_results(db, page_size=2, page=3)
    assert (past.items, past.total) == ([], 3)
    assert (await public_results(db, district=DISTRICT_B, outcome="sold")).total == 0
    assert premium_rate(100_000_00, None) is None and premium_rate(3, 4) == Decimal("0.3333")


# ---- the home page ----------------------------------------------------------------------------------------


async def test_home_shows_the_figures_beside_charts_in_a_handful_of_queries(
    client: httpx.AsyncClient, db: AsyncSession, connection: AsyncConnection
) -> None:
    summer, new_year, _ = await trades(db)
    open_now = await make_live_listing(db, bidders=0, village_code=VILLAGE_B)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(connection.sync_connection, "before_cursor_execute", count)
    try:
        home = await client.get("/")
    finally:
        event.remove(connection.sync_connection, "before_cursor_execute", count)
    assert home.status_code == 200
    assert len(statements) <= 12, "\n\n".join(statements)  # not one per district or per listing

    assert re.search(r'id="stat-trades">2<', home.text)
    assert re.search(r'id="stat-value">21\.20 万元<', home.text)
    assert re.search(r'id="stat-premium">6\.0%<', home.text)
    by_district = {row[0]: row[1:] for row in table(home.text, "by-district")}
    assert by_district["白云区"] == ["2", "0", "21.20 万元", "6.0%"]
    assert by_district["增城区"] == ["0", "1", "0.00 万元", "—"]
    assert table(home.text, "by-district")[-1] == ["合计", "2", "1", "21.20 万元", "6.0%"]
    assert [row[0] for row in table(home.text, "by-year")] == ["2025", "2026"]
    assert home.text.count("<svg") >= 3 and 'role="img"' in home.text  # the charts, inline, no script
    # only what is open now is under the announcements; finished ones are under the results
    assert len(table(home.text, "latest-announcements")) == 1
    assert f'href="/listings/{open_now.id}"' in home.text and f'href="/listings/{summer.id}"' not in home.text
    assert re.search(r'id="stat-open"><a[^>]*>1<', home.text)
    latest = table(home.text, "latest-results")
    assert "¥110,000.00" in latest[0] and "10.0%" in latest[0]
    assert f'href="/listings/{new_year.id}#result"' in home.text and "/results" in home.text

    await client.get("/lang/en?next=/")
    english = await client.get("/")
    assert "Platform figures" in english.text and "Value of trades by district" in english.text


async def test_home_on_an_empty_platform_says_so_instead_of_drawing_empty_charts(
    client: httpx.AsyncClient,
) -> None:
    home = await client.get("/")
    assert home.status_code == 200
    assert "暂无成交结果" in home.text and "暂无成交记录" in home.text and "<svg" not in home.text


async def test_home_figures_are_kept_for_a_minute_then_read_again(
    client: httpx.AsyncClient, db: AsyncSession, monkeypatch: Any
) -> None:
    from sanzi.auction.pages import public as public_pages

    await sold(db, SUMMER, [100_000_00, 102_000_00])
    assert re.search(r'id="stat-trades">1<', (await client.get("/")).text)
    await sold(db, NEW_YEAR_EVE, [100_000_00, 105_000_00])
    # the worker's copy, under a minute old
    assert re.search(r'id="stat-trades">1<', (await client.get("/")).text)

    monkeypatch.setattr(public_pages, "HOME_FIGURES_SECONDS", 0.0)  # as if the minute had passed
    home = await client.get("/")
    assert re.search(r'id="stat-trades">2<', home.text)
    assert re.search(r'id="stat-value">20\.70 万元<', home.text)


# ---- announcements ----------------------------------------------------------------------------------------


async def test_announcements_list_only_published_listings_with_their_terms(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    announced = await make_live_listing(
        db,
        bidders=0,
        status=ListingStatus.ANNOUNCED,
        starts_in=timedelta(days=2),
        ends_in=timedelta(days=2, hours=2),
        deposit_fen=12_345_00,
    )
    bidding = await make_live_listing(db, bidders=0, village_code=VILLAGE_B, trade_type="contracting")
    hidden = [
        await unpublished(db, status)
        for status in (ListingStatus.DRAFT, ListingStatus.SUBMITTED, ListingStatus.APPROVED)
    ]
    response = await client.get("/announcements")
    assert response.status_code == 200
    assert listing_ids(response.text) == {announced.id, bidding.id}
    assert not listing_ids(response.text) & {h.id for h in hidden}
    rows = {row[0]: row for row in table(response.text, "announcements")}
    row = next(r for title, r in rows.items() if announced.listing.number in title)
    assert row[2] == "测试鱼塘 鱼塘 · 12.50 亩" and row[3] == "出租"
    assert row[4] == "¥100,000.00 元/年" and row[5] == "¥12,345.00" and row[8] == "公告中"
    assert "共 2 个项目" in response.text and 'method="get"' in response.text


async def test_announcement_filters_narrow_the_list_and_bad_values_are_shown_beside_the_field(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    baiyun = await make_live_listing(
        db,
        bidders=0,
        status=ListingStatus.ANNOUNCED,
        starts_in=timedelta(days=2),
        ends_in=timedelta(days=2, hours=2),
    )
    zengcheng = await make_live_listing(db, bidders=0, village_code=VILLAGE_B, trade_type="contracting")
    village_b = await db.get_one(Village, VILLAGE_B)

    async def ids(**params: str) -> set[int]:
        response = await client.get("/announcements", params=params)
        assert response.status_code == 200, response.text
        return listing_ids(response.text)

    assert await ids(district=DISTRICT_B) == {zengcheng.id}
    assert await ids(township=VILLAGE_A[:9] + "000") == {baiyun.id}
    assert await ids(status="bidding") == {zengcheng.id}
    assert await ids(trade_type="contracting") == {zengcheng.id}
    assert await ids(kind="fish_pond") == {baiyun.id, zengcheng.id}
    assert await ids(kind="shop") == set()
    assert await ids(q=village_b.name) == {zengcheng.id}  # by the village's name
    assert await ids(q=baiyun.listing.number) == {baiyun.id}
    # a township left over from another district gives way to the district chosen last
    assert await ids(district=DISTRICT_B, township=VILLAGE_A[:9] + "000") == {zengcheng.id}

    for params, name in (
        ({"district": "999999000000"}, "district"),
        ({"status": "draft"}, "status"),
        ({"kind": "castle"}, "kind"),
        ({"trade_type": "gift"}, "trade_type"),
        ({"q": "长" * 51}, "q"),
    ):
        refused = await client.get("/announcements", params=params)
        assert refused.status_code == 400, params
        assert re.search(rf'id="f-{name}"[^>]*aria-invalid="true"', refused.text, re.S), params
        error = re.search(rf'id="f-{name}-error">([^<]+)<', refused.text)
        assert error and ("请从列表中选择" in error.group(1) or "不能超过 50 个字" in error.group(1)), params
        assert listing_ids(refused.text) == set()


class Select(HTMLParser):
    """One select's options by id: (option group, value, text, selected)."""

    def __init__(self, select_id: str) -> None:
        super().__init__()
        self.select_id, self.inside, self.group = select_id, False, ""
        self.options: list[tuple[str, str, str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "select":
            self.inside = values.get("id") == self.select_id
        elif self.inside and tag == "optgroup":
            self.group = values.get("label") or ""
        elif self.inside and tag == "option":
            self.options.append((self.group, values.get("value") or "", "", "selected" in values))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside and self.options and not self.options[-1][2]:
            group, value, _, selected = self.options[-1]
            self.options[-1] = (group, value, data.strip(), selected)


def township_options(html: str) -> list[tuple[str, str, str, bool]]:
    parser = Select("f-township")
    parser.feed(html)
    return parser.options


async def test_the_township_filter_lists_every_township_by_district_and_keeps_the_choice(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    expected = {(t.district_code, t.code, t.name) for t in await db.scalars(select(Township))}
    district_names = {code: name for code, name in await db.execute(select(District.code, District.name))}
    township_a = VILLAGE_A[:9] + "000"
    for path in ("/results", "/announcements"):
        every = township_options((await client.get(path)).text)
        assert every[0] == ("", "", "全部镇街", False)
        assert {(group, value, text) for group, value, text, _ in every[1:]} == {
            (district_names[d], code, name) for d, code, name in expected
        }
        assert not any(selected for *_, selected in every)

        # a district narrows the list to its townships; a township chosen is selected, and the choice of
        # one request never leaks into the next (the options are written once per worker)
        for _ in range(2):
            response = await client.get(path, params={"district": DISTRICT_A, "township": township_a})
            options = township_options(response.text)[1:]
            assert {value for _, value, _, _ in options} == {c for d, c, _ in expected if d == DISTRICT_A}
            assert [value for _, value, _, selected in options if selected] == [township_a]
        again = township_options((await client.get(path, params={"district": DISTRICT_A})).text)
        assert not any(selected for *_, selected in again)


async def test_announcements_are_paged_keeping_the_filters(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    made = [await make_live_listing(db, bidders=0, commit=False) for _ in range(22)]
    await db.commit()
    first = await client.get("/announcements", params={"status": "bidding"})
    second = await client.get("/announcements", params={"status": "bidding", "page": "2"})
    assert len(listing_ids(first.text)) == 20 and len(listing_ids(second.text)) == 2
    assert listing_ids(first.text) | listing_ids(second.text) == {m.id for m in made}
    assert 'href="/announcements?status=bidding&amp;page=2"' in first.text
    assert (await client.get("/announcements", params={"page": "oops"})).status_code == 200
    past_the_end = await client.get("/announcements", params={"status": "bidding", "page": "7"})
    assert listing_ids(past_the_end.text) == listing_ids(second.text)  # the last page, not an empty one


# ---- a listing's page -------------------------------------------------------------------------------------


async def test_listing_page_shows_terms_and_dates_but_never_the_reserve(
    browser: Callable[..., Any], db: AsyncSession, committee_a: Actor, supervisor_a: Actor
) -> None:
    live = await make_live_listing(
        db,
        bidders=2,
        reserve_price_fen=123_456_78,
        now=datetime(2026, 3, 2, 2, 0, tzinfo=UTC),
        ends_in=timedelta(days=3650),
    )
    for visitor in (await browser(), await browser(committee_a), await browser(supervisor_a)):
        response = await visitor.get(f"/listings/{live.id}")
        assert response.status_code == 200
        assert "123,456.78" not in response.text and "123456.78" not in response.text  # the secret reserve
        for bidder in live.bidders:  # identities stay hidden until the close
            assert bidder.bidder.name not in response.text
    text = response.text
    terms = dict(row for row in re.findall(r"<dt>([^<]+)</dt><dd>(.*?)</dd>", text, re.S))
    assert "¥100,000.00" in terms["起始价"] and "元/年" in terms["起始价"]
    assert terms["期限"].strip() == "5 年" and terms["竞买保证金"] == "¥10,000.00"
    assert "¥1,000.00" in terms["加价幅度"] and "¥5,000.00" in terms["加价幅度"]
    assert "5 分钟" in terms["延时规则"] and "3 次" in terms["延时规则"]
    assert terms["竞价开始时间"] == "2026-03-02 09:50"  # Beijing time
    assert (
        f'href="/listings/{live.id}/live"' in text and f'href="/listings/{live.id}/announcement.pdf"' in text
    )
    assert "result.pdf" not in text and "测试鱼塘" in text and "12.50 亩" in text


async def test_unpublished_listing_is_404_except_to_its_own_officials(
    browser: Callable[..., Any],
    db: AsyncSession,
    committee_a: Actor,
    committee_b: Actor,
    supervisor_b: Actor,
    make_user: Callable[..., Any],
) -> None:
    from sanzi.platform.models import Role

    draft = await unpublished(db, ListingStatus.SUBMITTED)
    bidder = await make_user(Role.BIDDER)
    for actor in (None, committee_b, supervisor_b, bidder):
        response = await (await browser(actor)).get(f"/listings/{draft.id}")
        assert response.status_code == 404, actor
        assert "测试鱼塘出租" not in response.text
    own = await (await browser(committee_a)).get(f"/listings/{draft.id}")
    assert own.status_code == 200 and "该项目尚未公告" in own.text
    assert "announcement.pdf" not in own.text
    for missing in ("999999999", "99999999999999999999", "0"):
        assert (await (await browser()).get(f"/listings/{missing}")).status_code == 404


async def test_registration_links_depend_on_who_is_looking(
    browser: Callable[..., Any], db: AsyncSession, committee_a: Actor, make_user: Callable[..., Any]
) -> None:
    from sanzi.platform.models import Role

    live = await make_live_listing(
        db,
        bidders=0,
        status=ListingStatus.ANNOUNCED,
        starts_in=timedelta(days=3),
        ends_in=timedelta(days=3, hours=2),
    )
    listing = await db.get_one(Listing, live.id)
    listing.registration_deadline = datetime.now(UTC) + timedelta(days=2)
    await db.commit()
    anonymous = (await (await browser()).get(f"/listings/{live.id}")).text
    assert 'href="/bidder/signup"' in anonymous and f"/login?next=/listings/{live.id}/bid" in anonymous
    bidder = (await (await browser(await make_user(Role.BIDDER))).get(f"/listings/{live.id}")).text
    assert f'href="/listings/{live.id}/bid"' in bidder and "注册竞买人" not in bidder
    official = (await (await browser(committee_a)).get(f"/listings/{live.id}")).text
    assert "工作人员账户不能报名竞买" in official


async def test_sold_listing_shows_its_result_winner_and_bids_by_number(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    live = await sold(db, SUMMER, [100_000_00, 103_000_00])
    text = (await client.get(f"/listings/{live.id}")).text
    assert 'id="final-price">¥103,000.00<' in text
    winner = live.bidders[1]
    assert re.search(rf'id="winner">{re.escape(winner.bidder.name)}（竞买号 {winner.number}）', text)
    assert "3.00%" in text  # the premium
    assert [row[1:3] for row in table(text, "bid-history")] == [
        [winner.number, "¥103,000.00"],
        [live.bidders[0].number, "¥100,000.00"],
    ]
    assert live.bidders[0].bidder.name not in text  # the loser is published by number only
    assert (
        f'href="/listings/{live.id}/result.pdf"' in text
        and f'href="/listings/{live.id}/certificate.pdf"' in text
    )


async def test_failed_suspended_and_terminated_listings_give_their_reasons(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    failed = await make_live_listing(db, bidders=1, now=SUMMER, ends_in=timedelta(hours=2))
    await close_listing(db, failed.id, SUMMER + timedelta(hours=2))
    text = (await client.get(f"/listings/{failed.id}")).text
    assert "流拍结果" in text and "竞价期内无人出价" in text and "certificate.pdf" not in text
    assert f'href="/listings/{failed.id}/result.pdf"' in text

    relisted = await make_live_listing(
        db,
        bidders=0,
        status=ListingStatus.ANNOUNCED,
        starts_in=timedelta(days=2),
        ends_in=timedelta(days=2, hours=2),
    )
    (await db.get_one(Listing, relisted.id)).relisted_from_id = failed.id
    await db.commit()
    again = (await client.get(f"/listings/{relisted.id}")).text
    assert f"本项目由流拍项目 {failed.listing.number} 重新挂牌" in again
    assert f'href="/listings/{failed.id}"' in again

    suspended = await make_live_listing(db, bidders=0)
    listing = await db.get_one(Listing, suspended.id)
    listing.status, listing.status_reason = ListingStatus.SUSPENDED.value, "村民对面积有异议，暂停核实"
    await db.commit()
    page = (await client.get(f"/listings/{suspended.id}")).text
    assert re.search(r'id="status-reason">.*中止原因：.*村民对面积有异议，暂停核实', page, re.S)


# ---- results and search -----------------------------------------------------------------------------------


async def test_results_page_lists_outcomes_with_filters(client: httpx.AsyncClient, db: AsyncSession) -> None:
    summer, new_year, failed = await trades(db)
    response = await client.get("/results")
    assert response.status_code == 200
    rows = table(response.text, "results")
    assert [row[3] for row in rows] == ["成交", "流拍", "成交"]
    assert rows[0][4:9] == ["¥100,000.00", "¥110,000.00", "10.0%", "2", "3"]
    assert new_year.bidders[0].bidder.name in rows[0][9]
    assert rows[1][5:8] == ["—", "—", "0"]
    only_failed = await client.get("/results", params={"status": "failed"})
    assert listing_ids(only_failed.text) == {failed.id}
    assert listing_ids((await client.get("/results", params={"district": DISTRICT_A})).text) == {
        summer.id,
        new_year.id,
    }
    refused = await client.get("/results", params={"status": "bidding"})
    assert refused.status_code == 400 and 'id="f-status-error"' in refused.text


async def test_search_finds_villages_listings_and_results_or_says_nothing_matched(
    client: httpx.AsyncClient, db: AsyncSession
) -> None:
    live = await sold(db, SUMMER, [100_000_00])
    village = await db.get_one(Village, VILLAGE_A)
    by_name = await client.get("/search", params={"q": village.name})
    assert by_name.status_code == 200
    assert f'href="/villages/{VILLAGE_A}"' in by_name.text
    assert f'href="/listings/{live.id}#result"' in by_name.text
    by_code = await client.get("/search", params={"q": VILLAGE_A})
    assert [row[1] for row in table(by_code.text, "search-villages")] == [VILLAGE_A]
    township = (await client.get("/api/villages", params={"q": VILLAGE_A[:9], "page_size": 500})).json()
    assert township["total"] > 1 and all(v["code"].startswith(VILLAGE_A[:9]) for v in township["items"])
    by_asset = await client.get("/search", params={"q": "测试鱼塘"})
    assert f'href="/listings/{live.id}"' in by_asset.text and "search-results" in by_asset.text
    nothing = await client.get("/search", params={"q": "没有这个词"})
    assert nothing.status_code == 200 and 'id="no-results"' in nothing.text and "没有找到" in nothing.text
    too_long = await client.get("/search", params={"q": "长" * 51})
    assert (
        too_long.status_code == 400
        and 'aria-invalid="true"' in too_long.text
        and "不能超过 50 个字" in too_long.text
    )
    empty = await client.get("/search")
    assert empty.status_code == 200 and 'id="no-results"' not in empty.text
