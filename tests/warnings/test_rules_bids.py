"""Bid-irregularity rules at their boundaries, on SQLite and PostgreSQL: just over raises, just under does not,
statistics stay quiet with too few comparables, and a village's scoped evaluation finds exactly its share of
the full scan."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Listing, Registration
from sanzi.platform.events import DomainEvent
from sanzi.platform.models import Village
from sanzi.warnings import engine as warnings_engine
from sanzi.warnings.models import Alert
from sanzi.warnings.rules.base import Finding, Scope
from sanzi.warnings.rules.bids import RULES
from tests.conftest import VILLAGE_A, VILLAGE_B
from tests.warnings import builders as b

RULE = {rule.id: rule for rule in RULES}


async def found(db: AsyncSession, rule_id: str, scope: Scope | None = None, **params: Any) -> list[Finding]:
    return await RULE[rule_id].evaluate(db, scope or Scope(), params)


def subjects(findings: list[Finding]) -> set[str]:
    return {f.subject_id for f in findings}


@pytest.mark.parametrize("rule_id", sorted(RULE))
async def test_every_rule_runs_on_both_databases(db: AsyncSession, rule_id: str) -> None:
    await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_010_00)])
    assert isinstance(await found(db, rule_id), list)


async def township_villages(db: AsyncSession, village_code: str = VILLAGE_A) -> list[str]:
    return await b.villages_of_township(db, await b.village_township(db, village_code))


# --- single bidder -------------------------------------------------------------------------------------------


async def test_single_bidder_raised_for_one_bidder_not_for_two(db: AsyncSession) -> None:
    lonely = await b.make_auction(
        db, VILLAGE_A, amounts=[(0, 1_000_00)], bidders=2
    )  # the second stays silent
    contested = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_010_00)])
    findings = await found(db, "BID-SINGLE-BIDDER")
    assert subjects(findings) >= {str(lonely.listing.id)}
    assert str(contested.listing.id) not in subjects(findings)
    finding = next(f for f in findings if f.subject_id == str(lonely.listing.id))
    assert "仅 1 名竞买人出价" in finding.explanation and "其中 1 名未出价" in finding.explanation
    assert finding.evidence["bids"] == [lonely.bids[0].id]
    assert finding.evidence["registrations"] == [lonely.registrations[0].id]


async def test_single_bidder_ignores_failed_listings(db: AsyncSession) -> None:
    failed = await b.make_auction(db, VILLAGE_A, amounts=[])
    assert failed.listing.status == "failed"
    assert str(failed.listing.id) not in subjects(await found(db, "BID-SINGLE-BIDDER"))


async def test_single_bidder_counts_bidders_not_bids(db: AsyncSession) -> None:
    """A bidder who raised their own bid is still the only bidder; every one of their bids is evidence."""
    raised = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (0, 1_010_00), (0, 1_020_00)])
    findings = {f.subject_id: f for f in await found(db, "BID-SINGLE-BIDDER")}
    finding = findings[str(raised.listing.id)]
    assert finding.numbers["bidders"] == 1
    assert finding.evidence["bids"] == sorted(bid.id for bid in raised.bids)


# --- reserve hugging -----------------------------------------------------------------------------------------


async def test_reserve_hugging_at_one_increment_not_at_two(db: AsyncSession) -> None:
    hugging = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_010_00)])
    rising = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_010_00), (0, 1_020_00)])
    alone = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00)])
    got = subjects(await found(db, "BID-RESERVE-HUGGING"))
    assert str(hugging.listing.id) in got
    assert str(rising.listing.id) not in got and str(alone.listing.id) not in got
    assert str(rising.listing.id) in subjects(await found(db, "BID-RESERVE-HUGGING", increments=2))
    finding = next(f for f in await found(db, "BID-RESERVE-HUGGING") if f.subject_id == str(hugging.listing.id))
    assert finding.numbers["bidders"] == 2
    assert finding.evidence["bids"] == sorted(bid.id for bid in hugging.bids)


# --- close second bid and identical amounts ------------------------------------------------------------------


async def test_close_second_at_the_gap_ratio_not_above(db: AsyncSession) -> None:
    at_ratio = await b.make_auction(  # 10 / 2000 = 0.5 %
        db,
        VILLAGE_A,
        amounts=[(0, 1_990_00), (1, 2_000_00)],
        starting_price_fen=1_990_00,
        min_increment_fen=1_00,
    )
    above = await b.make_auction(  # 10.01 / 2000.01 > 0.5 %
        db,
        VILLAGE_A,
        amounts=[(0, 1_990_00), (1, 2_000_01)],
        starting_price_fen=1_990_00,
        min_increment_fen=1,
    )
    findings = await found(db, "BID-CLOSE-SECOND")
    assert str(at_ratio.listing.id) in subjects(findings)
    assert str(above.listing.id) not in subjects(findings)
    finding = next(f for f in findings if f.subject_id == str(at_ratio.listing.id))
    assert "第二名最高报价 ¥1990.00" in finding.explanation and "相差 ¥10.00" in finding.explanation


async def gap_comparables(db: AsyncSession, count: int, kind: str = "fish_pond") -> None:
    """Sold lots in village A's township whose runner-up stopped about five minimum increments behind."""
    villages = await township_villages(db)
    for i in range(count):
        await b.make_auction(
            db,
            villages[i % len(villages)],
            amounts=[(0, 1_000_00), (1, 1_000_00 + (250 + 5 * i) * 1_00)],
            min_increment_fen=50_00,
            kind=kind,
        )


@pytest.mark.parametrize(("others", "raised"), [(7, True), (6, False)])
async def test_close_second_below_the_fence_of_enough_comparables(
    db: AsyncSession, others: int, raised: bool
) -> None:
    await gap_comparables(db, others)
    close = await b.make_auction(  # 20 / 1020 ≈ 2 %, above the ratio; one increment against the others' five
        db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_020_00)], min_increment_fen=20_00
    )
    findings = await found(db, "BID-CLOSE-SECOND")
    assert (str(close.listing.id) in subjects(findings)) is raised
    if raised:
        finding = next(f for f in findings if f.subject_id == str(close.listing.id))
        assert "同镇街同类成交 8 宗" in finding.explanation and finding.numbers["comparables"] == 8


async def test_identical_amounts_from_two_bidders_not_one_fen_apart(db: AsyncSession) -> None:
    same = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_000_00), (0, 1_010_00)])
    apart = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_000_01)])
    own = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (0, 1_000_00), (1, 1_010_00)])
    findings = await found(db, "BID-IDENTICAL-AMOUNTS")
    assert str(same.listing.id) in subjects(findings)
    assert not subjects(findings) & {str(apart.listing.id), str(own.listing.id)}
    finding = next(f for f in findings if f.subject_id == str(same.listing.id))
    assert finding.evidence["bids"] == sorted(bid.id for bid in same.bids[:2])
    assert "2 名竞买人均报价 ¥1000.00" in finding.explanation


async def test_identical_amounts_gathers_every_bid_of_every_shared_amount_of_a_listing(db: AsyncSession) -> None:
    """Two shared amounts on one listing, one of them bid three times by two bidders: one finding with every
    one of those bids, and not the bid whose amount nobody else offered."""
    lot = await b.make_auction(
        db,
        VILLAGE_A,
        bidders=3,
        amounts=[(0, 1_000_00), (1, 1_000_00), (0, 1_000_00), (2, 1_010_00), (1, 1_020_00), (2, 1_020_00)],
    )
    findings = [f for f in await found(db, "BID-IDENTICAL-AMOUNTS") if f.subject_id == str(lot.listing.id)]
    assert len(findings) == 1
    (finding,) = findings
    assert finding.evidence["bids"] == sorted(bid.id for i, bid in enumerate(lot.bids) if i != 3)
    assert finding.evidence["registrations"] == sorted(r.id for r in lot.registrations)
    assert "2 名竞买人均报价 ¥1000.00；2 名竞买人均报价 ¥1020.00" in finding.explanation


# --- shared identity -----------------------------------------------------------------------------------------


async def lot_with(db: AsyncSession, village: str = VILLAGE_A, *, same_phone: bool = False) -> b.Lot:
    """A sold lot of two bidders, the second giving the first's phone when ``same_phone``."""
    listing = await b.make_listing(db, village, status="closed")
    first = await b.add_registration(db, listing)
    other = await b.add_registration(db, listing, contact_phone=first.contact_phone if same_phone else None)
    await b.add_bid(db, listing, first, 1_000_00)
    await b.add_bid(db, listing, other, 1_010_00)
    await b.close_listing(db, listing)
    return b.Lot(listing, [], [first, other])


async def test_shared_identity_raised_per_trait_and_quiet_when_distinct(db: AsyncSession) -> None:
    phone_owner = await b.make_bidder(db)
    listing = await b.make_listing(db, VILLAGE_A, status="closed")
    first = await b.add_registration(db, listing, phone_owner)
    second = await b.add_registration(db, listing, contact_phone=phone_owner.phone)
    await b.add_bid(db, listing, first, 1_000_00)
    await b.add_bid(db, listing, second, 1_010_00, device_fingerprint=first.applied_device)
    await b.close_listing(db, listing)
    distinct = await lot_with(db)
    findings = await found(db, "BID-SHARED-IDENTITY")
    assert str(distinct.listing.id) not in subjects(findings)
    finding = next(f for f in findings if f.subject_id == str(listing.id))
    assert finding.evidence["traits"] == ["device", "phone"]
    assert finding.evidence["registrations"] == sorted([first.id, second.id])
    assert f"联系电话 {phone_owner.phone} 为 2 名竞买人共用" in finding.explanation
    assert finding.severity is None and RULE["BID-SHARED-IDENTITY"].severity.value == "red"


async def test_a_deposit_paid_for_another_bidder_is_shared_but_namesakes_are_not(db: AsyncSession) -> None:
    listing = await b.make_listing(db, VILLAGE_A, status="closed")
    payer = await b.make_bidder(db, name="陈大文")
    await b.add_registration(db, listing, payer)
    await b.add_registration(db, listing, deposit_payer_name="陈大文")
    namesakes = await b.make_listing(db, VILLAGE_A, status="closed")
    await b.add_registration(db, namesakes, await b.make_bidder(db, name="李小明"))
    await b.add_registration(db, namesakes, await b.make_bidder(db, name="李小明"))
    findings = await found(db, "BID-SHARED-IDENTITY")
    assert str(namesakes.id) not in subjects(findings)
    finding = next(f for f in findings if f.subject_id == str(listing.id))
    assert finding.evidence["traits"] == ["deposit_payer"]


async def test_shared_identity_ignores_rejected_registrations(db: AsyncSession) -> None:
    owner = await b.make_bidder(db)
    listing = await b.make_listing(db, VILLAGE_A, status="closed")
    await b.add_registration(db, listing, owner)
    await b.add_registration(db, listing, contact_phone=owner.phone, status="rejected", deposit=False)
    assert str(listing.id) not in subjects(await found(db, "BID-SHARED-IDENTITY"))


# --- related to officials ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("term_end", "raised"), [("2025-06-20", True), ("2025-06-19", False)])
async def test_a_cadre_in_office_over_the_listing_is_raised(
    db: AsyncSession, term_end: str, raised: bool
) -> None:
    from datetime import date

    lot = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_010_00)])  # announced 2025-06-20
    winner = lot.bidders[1]
    await b.make_cadre(
        db, VILLAGE_A, name="黄主任", id_number=winner.id_number, term_end=date.fromisoformat(term_end)
    )
    findings = await found(db, "BID-RELATED-TO-OFFICIAL")
    assert (str(lot.registrations[1].id) in subjects(findings)) is raised
    if raised:
        finding = next(f for f in findings if f.subject_id == str(lot.registrations[1].id))
        assert "身份证号相同" in finding.explanation and "并竞得该标的" in finding.explanation
        assert finding.evidence["bidders"] == [winner.id] and finding.severity is None


async def test_other_villages_cadres_do_not_count(db: AsyncSession) -> None:
    lot = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00)])
    await b.make_cadre(db, VILLAGE_B, id_number=lot.bidders[0].id_number)
    assert str(lot.registrations[0].id) not in subjects(await found(db, "BID-RELATED-TO-OFFICIAL"))


async def test_relatives_by_id_red_by_name_only_orange(db: AsyncSession) -> None:
    lot = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_010_00)])
    son, namesake = lot.bidders
    await b.make_cadre(
        db, VILLAGE_A, relatives=[("某子", son.id_number, "儿子"), (namesake.name, None, "配偶")]
    )
    by_subject = {f.subject_id: f for f in await found(db, "BID-RELATED-TO-OFFICIAL")}
    by_id, by_name = by_subject[str(lot.registrations[0].id)], by_subject[str(lot.registrations[1].id)]
    assert by_id.severity is None and "申报的亲属（儿子）" in by_id.explanation
    assert by_name.severity is not None and by_name.severity.value == "orange" and by_name.score < by_id.score


async def test_name_and_phone_match_but_name_alone_does_not(db: AsyncSession) -> None:
    lot = await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_010_00)])
    await b.make_cadre(db, VILLAGE_A, name=lot.bidders[0].name, phone=lot.bidders[0].phone)
    await b.make_cadre(db, VILLAGE_A, name=lot.bidders[1].name)
    got = subjects(await found(db, "BID-RELATED-TO-OFFICIAL"))
    assert str(lot.registrations[0].id) in got and str(lot.registrations[1].id) not in got


# --- cover bidding -------------------------------------------------------------------------------------------


async def cover_lots(
    db: AsyncSession, silent: Any, days_ago: list[int], village: str = VILLAGE_A
) -> list[b.Lot]:
    lots = []
    for days in days_ago:
        lot = await b.make_auction(
            db,
            village,
            amounts=[(1, 1_000_00)],
            bidders=[silent, await b.make_bidder(db)],
            closed_at=b.DEFAULT_CLOSED_AT - timedelta(days=days),
        )
        lots.append(lot)
    return lots


@pytest.mark.parametrize(
    ("days_ago", "raised"),
    [
        ([0, 300, 600], True),
        ([0, 300], False),
        ([0, 400, 800], False),
        # the window is 24 months (730.5 days) ending at a cover lot: 730 days back is in it, 731 is not
        ([0, 365, 730], True),
        ([0, 365, 731], False),
        # lots closed at the same moment are all in each other's windows
        ([0, 0, 500], True),
    ],
)
async def test_cover_bidding_three_silent_lots_in_24_months(
    db: AsyncSession, days_ago: list[int], raised: bool
) -> None:
    silent = await b.make_bidder(db)
    lots = await cover_lots(db, silent, days_ago)
    findings = [f for f in await found(db, "BID-COVER-BIDDING") if f.subject_id == str(silent.id)]
    assert bool(findings) is raised
    if raised:
        assert findings[0].evidence["listings"] == sorted(lot.listing.id for lot in lots)
        assert findings[0].village_code == VILLAGE_A and "3 宗交易中交纳保证金" in findings[0].explanation


async def test_a_bidder_who_bid_once_is_not_a_cover(db: AsyncSession) -> None:
    silent = await b.make_bidder(db)
    await cover_lots(db, silent, [0, 300])
    await b.make_auction(
        db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_010_00)], bidders=[silent, await b.make_bidder(db)]
    )
    assert str(silent.id) not in subjects(await found(db, "BID-COVER-BIDDING"))


# --- rotation ------------------------------------------------------------------------------------------------


async def rotate(
    db: AsyncSession, ring: list[Any], winners: list[int], extra: dict[int, Any] | None = None
) -> list[b.Lot]:
    """Lots in village A's township where the ring qualifies and ``winners[i]`` (an index of the ring, or
    of ``extra`` bidders joining that lot) takes lot i with the highest bid."""
    villages = await township_villages(db)
    lots = []
    for i, winner in enumerate(winners):
        people = list(ring) + ([extra[i]] if extra and i in extra else [])
        amounts = [(j, 1_000_00 + j * 10_00) for j in range(len(people)) if j != winner]
        amounts.append((winner, 1_100_00))
        lots.append(
            await b.make_auction(
                db,
                villages[i % len(villages)],
                amounts=amounts,
                bidders=people,
                closed_at=b.DEFAULT_CLOSED_AT - timedelta(days=30 * (len(winners) - i)),
            )
        )
    return lots


async def test_rotation_of_three_over_four_lots_not_three(db: AsyncSession) -> None:
    ring = [await b.make_bidder(db) for _ in range(3)]
    lots = await rotate(db, ring, [0, 1, 2, 0])
    findings = await found(db, "BID-ROTATION")
    subject = b"-".join(str(x.id).encode() for x in sorted(ring, key=lambda x: x.id)).decode()
    finding = next(f for f in findings if f.subject_id == subject)
    assert finding.subject_type == "bidder_group" and finding.evidence["listings"] == sorted(
        l.listing.id for l in lots
    )
    assert finding.village_code == lots[-1].listing.village_code and finding.numbers["lots"] == 4
    short = [await b.make_bidder(db) for _ in range(3)]
    await rotate(db, short, [0, 1, 2])
    assert not any(
        str(x.id) in f.subject_id.split("-") for f in await found(db, "BID-ROTATION") for x in short
    )


async def test_rotation_broken_by_an_outsider_win(db: AsyncSession) -> None:
    ring = [await b.make_bidder(db) for _ in range(3)]
    outsider = await b.make_bidder(db)
    await rotate(db, ring, [0, 1, 2, 3], extra={3: outsider})
    assert not any(str(ring[0].id) in f.subject_id.split("-") for f in await found(db, "BID-ROTATION"))


async def test_a_ring_of_four_is_one_group(db: AsyncSession) -> None:
    ring = [await b.make_bidder(db) for _ in range(4)]
    await rotate(db, ring, [0, 1, 2, 3])
    mine = [f for f in await found(db, "BID-ROTATION") if str(ring[0].id) in f.subject_id.split("-")]
    assert [sorted(f.evidence["bidders"]) for f in mine] == [sorted(x.id for x in ring)]


# --- dominant winner -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("wins", "others", "raised"), [(4, 4, True), (4, 5, False), (3, 3, False)])
async def test_dominant_winner_share_and_count(
    db: AsyncSession, wins: int, others: int, raised: bool
) -> None:
    champion = await b.make_bidder(db)
    for i in range(wins + others):
        people = [champion] if i < wins else None
        await b.make_auction(
            db,
            VILLAGE_A,
            amounts=[(0, 1_000_00)],
            bidders=people or 1,
            closed_at=b.DEFAULT_CLOSED_AT - timedelta(days=20 * i),
        )
    findings = [
        f for f in await found(db, "BID-DOMINANT-WINNER") if f.subject_id == f"{champion.id}:{VILLAGE_A}"
    ]
    assert bool(findings) is raised
    if raised:
        assert findings[0].numbers == {"wins": 4, "lots": 8, "share": 0.5}
        assert "竞得本村 8 宗成交交易中的 4 宗" in findings[0].explanation


async def test_dominant_winner_counts_the_lots_of_the_window_ending_at_the_latest_win(db: AsyncSession) -> None:
    """The window is 24 months (730.5 days) back from the bidder's latest win in the village: a lot 730 days
    before it is counted, one 731 days before is not, and a lot closed at the same moment as the latest win
    is counted too."""
    champion = await b.make_bidder(db)
    latest = b.DEFAULT_CLOSED_AT
    for days in (0, 20, 40, 60):
        await b.make_auction(
            db, VILLAGE_A, amounts=[(0, 1_000_00)], bidders=[champion], closed_at=latest - timedelta(days=days)
        )
    for days in (0, 100, 730, 731, 900):
        await b.make_auction(
            db, VILLAGE_A, amounts=[(0, 1_000_00)], bidders=1, closed_at=latest - timedelta(days=days)
        )
    findings = [
        f for f in await found(db, "BID-DOMINANT-WINNER") if f.subject_id == f"{champion.id}:{VILLAGE_A}"
    ]
    assert [(f.numbers["wins"], f.numbers["lots"]) for f in findings] == [(4, 7)]
    assert len(findings[0].evidence["listings"]) == 4


# --- below market --------------------------------------------------------------------------------------------


async def market(db: AsyncSession, villages: list[str], count: int = 7, kind: str = "fish_pond") -> None:
    """Sold fish ponds (or lots of ``kind``) at ¥1000.00 … ¥1060.00 per mu per year."""
    for i in range(count):
        await b.make_auction(
            db,
            villages[i % len(villages)],
            amounts=[(0, 1_000_00 + i * 10_00)],
            starting_price_fen=500_00,
            kind=kind,
        )


@pytest.mark.parametrize(("price_fen", "raised"), [(954_99, True), (955_00, False)])
async def test_below_market_under_the_lower_fence(db: AsyncSession, price_fen: int, raised: bool) -> None:
    # with these seven others the fence is 1007.50 − 1.5 × 35.00 = 955.00 whatever the (lowest) subject
    await market(db, await township_villages(db))
    lot = await b.make_auction(db, VILLAGE_A, amounts=[(0, price_fen)], starting_price_fen=500_00)
    findings = await found(db, "BID-BELOW-MARKET", min_shortfall=0.0)
    findings = [f for f in findings if f.subject_id == str(lot.listing.id)]
    assert bool(findings) is raised
    if raised:
        assert findings[0].explanation == (
            "成交价 每亩每年 ¥954.99，低于同镇街同类资产下限 ¥955.00（样本 8 宗，中位数 ¥1025.00，低于中位数 7%）"
        )


@pytest.mark.parametrize(("basis", "price_fen"), [("per_year", 9_549_90), ("total", 47_749_50)])
async def test_below_market_takes_yearly_and_total_prices_per_mu(
    db: AsyncSession, basis: str, price_fen: int
) -> None:
    await market(db, await township_villages(db))
    lot = await b.make_auction(
        db,
        VILLAGE_A,
        amounts=[(0, price_fen)],
        starting_price_fen=500_00,
        price_basis=basis,
        area=Decimal(10),
        term_months=60,
    )  # ¥954.99 per mu-year
    findings = await found(db, "BID-BELOW-MARKET", min_shortfall=0.0)
    findings = [f for f in findings if f.subject_id == str(lot.listing.id)]
    assert findings and findings[0].numbers["unit_price_fen"] == pytest.approx(954_99)


async def test_below_market_quiet_with_too_few_comparables_and_falls_back_to_the_district(
    db: AsyncSession,
) -> None:
    await market(db, await township_villages(db), count=6)
    lot = await b.make_auction(db, VILLAGE_A, amounts=[(0, 100_00)], starting_price_fen=100_00)
    assert str(lot.listing.id) not in subjects(await found(db, "BID-BELOW-MARKET", min_shortfall=0.0))
    other_township = await other_township_village(db, VILLAGE_A)
    await market(db, [other_township], count=1)  # a district comparable of the same kind
    await b.make_auction(db, other_township, amounts=[(0, 1_000_00)], kind="farmland")  # another kind
    findings = await found(db, "BID-BELOW-MARKET", min_shortfall=0.0)
    findings = [f for f in findings if f.subject_id == str(lot.listing.id)]
    assert findings and "同区同类资产" in findings[0].explanation and "样本 8 宗" in findings[0].explanation


async def other_township_village(db: AsyncSession, village_code: str) -> str:
    village = await db.get_one(Village, village_code)
    return await db.scalar(
        select(Village.code)
        .where(Village.district_code == village.district_code, Village.township_code != village.township_code)
        .order_by(Village.code)
        .limit(1)
    )


@pytest.mark.parametrize(("price_fen", "raised"), [(820_00, True), (820_01, False)])
async def test_below_market_also_needs_the_shortfall_below_the_median(
    db: AsyncSession, price_fen: int, raised: bool
) -> None:
    # both prices are under the fence (955.00); the median of the eight is 1025.00 and 20 % under it is 820.00
    await market(db, await township_villages(db))
    lot = await b.make_auction(db, VILLAGE_A, amounts=[(0, price_fen)], starting_price_fen=500_00)
    findings = [f for f in await found(db, "BID-BELOW-MARKET") if f.subject_id == str(lot.listing.id)]
    assert bool(findings) is raised


# --- short announcement and relisting ------------------------------------------------------------------------


@pytest.mark.parametrize(("days", "raised"), [(4.99, True), (5.0, False)])
async def test_short_announcement(db: AsyncSession, days: float, raised: bool) -> None:
    lot = await b.make_auction(db, VILLAGE_A, amounts=[], announced_days_before=days)
    findings = [f for f in await found(db, "BID-SHORT-ANNOUNCEMENT") if f.subject_id == str(lot.listing.id)]
    assert bool(findings) is raised
    if raised:
        assert findings[0].explanation == "公告期 5.0 天（自公告至竞价开始），短于最短公告期 5 天"
        assert findings[0].numbers["announcement_days"] == pytest.approx(4.99)


@pytest.mark.parametrize(("new_start", "raised"), [(799_99, True), (800_00, False)])
async def test_relisted_cheaper(db: AsyncSession, new_start: int, raised: bool) -> None:
    failed = (await b.make_auction(db, VILLAGE_A, amounts=[], starting_price_fen=1_000_00)).listing
    relisted = await b.make_listing(
        db, VILLAGE_A, status="announced", closed_at=None, relisted_from=failed, starting_price_fen=new_start
    )
    draft = await b.make_listing(
        db, VILLAGE_A, status="draft", closed_at=None, relisted_from=failed, starting_price_fen=100_00
    )
    got = {f.subject_id: f for f in await found(db, "BID-RELISTED-CHEAPER")}
    assert (str(relisted.id) in got) is raised and str(draft.id) not in got
    if raised:
        assert got[str(relisted.id)].evidence["listings"] == sorted([failed.id, relisted.id])


# --- scope ---------------------------------------------------------------------------------------------------


async def raise_every_rule(db: AsyncSession, village: str) -> None:
    """Data in the village (and its township) raising every rule but the close-second one."""
    villages = await township_villages(db, village)
    await b.make_auction(db, village, amounts=[(0, 1_000_00)], bidders=2, announced_days_before=2)
    await b.make_auction(db, village, amounts=[(0, 1_000_00), (1, 1_000_00), (2, 1_010_00)])
    await lot_with(db, village, same_phone=True)
    lot = await b.make_auction(db, village, amounts=[(0, 1_000_00)])
    await b.make_cadre(db, village, id_number=lot.bidders[0].id_number)
    await cover_lots(db, await b.make_bidder(db), [0, 100, 200], village)
    await rotate_in(db, villages)
    await market(db, villages)
    await b.make_auction(db, village, amounts=[(0, 100_00)], starting_price_fen=100_00)
    failed = (await b.make_auction(db, village, amounts=[])).listing
    await b.make_listing(
        db, village, status="announced", closed_at=None, relisted_from=failed, starting_price_fen=100_00
    )
    champion = await b.make_bidder(db)  # wins all of the village's lots in the 24 months after these
    for days in range(800, 804):
        await b.make_auction(
            db,
            village,
            amounts=[(0, 1_000_00)],
            bidders=[champion],
            closed_at=b.DEFAULT_CLOSED_AT + timedelta(days=days),
        )


async def test_a_village_scope_finds_exactly_that_villages_share_of_the_full_scan(db: AsyncSession) -> None:
    """Data in two villages raising every rule; each rule scoped to one village finds that village's part."""
    for village in (VILLAGE_A, VILLAGE_B):
        await raise_every_rule(db, village)
    district_b = (await db.get_one(Village, VILLAGE_B)).district_code
    for rule in RULES:
        full = await rule.evaluate(db, Scope(), {})
        for village in (VILLAGE_A, VILLAGE_B):
            scoped = await rule.evaluate(db, Scope(village_codes=(village,)), {})
            expected = sorted(key(f) for f in full if f.village_code == village)
            assert sorted(key(f) for f in scoped) == expected, rule.id
        by_district = await rule.evaluate(db, Scope(district_codes=(district_b,)), {})
        assert sorted(key(f) for f in by_district) == sorted(
            key(f) for f in full if f.village_code.startswith(VILLAGE_B[:6])
        ), rule.id
        # the data raises every rule in both villages but the close-second one (no gap is small enough)
        raised = {f.village_code for f in full} >= {VILLAGE_A, VILLAGE_B}
        assert raised or rule.id == "BID-CLOSE-SECOND", rule.id


async def test_a_scope_since_a_date_finds_the_full_scans_findings_from_that_date(db: AsyncSession) -> None:
    """The date of a scope is bound when the statement runs (the statements are built once per shape of
    scope) and compared with the findings' own moments on both databases: from the earliest finding's day
    all are found, from the day after the latest none."""
    await raise_every_rule(db, VILLAGE_A)
    # the rules whose finding's moment is the one a scope's date is held to
    for rule_id in ("BID-SHARED-IDENTITY", "BID-BELOW-MARKET", "BID-ROTATION", "BID-DOMINANT-WINNER"):
        full = await found(db, rule_id)
        assert full, rule_id
        earliest, latest = min(f.occurred_at for f in full), max(f.occurred_at for f in full)
        for since, expected in ((earliest.date(), full), (latest.date() + timedelta(days=1), [])):
            dated = await found(db, rule_id, Scope(since=since))
            assert sorted(key(f) for f in dated) == sorted(key(f) for f in expected), (rule_id, since)


async def rotate_in(db: AsyncSession, villages: list[str]) -> None:
    ring = [await b.make_bidder(db) for _ in range(3)]
    for i, winner in enumerate([0, 1, 2, 0]):
        amounts = [(j, 1_000_00 + j * 10_00) for j in range(3) if j != winner] + [(winner, 1_100_00)]
        await b.make_auction(
            db,
            villages[(i + 1) % len(villages)] if i < 3 else villages[0],
            amounts=amounts,
            bidders=ring,
            closed_at=b.DEFAULT_CLOSED_AT - timedelta(days=10 * (4 - i)),
        )


def key(finding: Finding) -> tuple:
    return (
        finding.subject_type,
        finding.subject_id,
        finding.village_code,
        finding.explanation,
        repr(sorted(finding.evidence.items())),
        round(finding.score, 6),
    )


# --- incremental evaluation narrowed to the events' listings -------------------------------------------------

#: the rules whose findings about a listing (or its registrations, its bidders' groups, its covers) depend on
#: nothing but that listing's rows and those of its bidders: an event evaluates them for its listing only
NARROWED = {
    "BID-SINGLE-BIDDER",
    "BID-RESERVE-HUGGING",
    "BID-IDENTICAL-AMOUNTS",
    "BID-SHARED-IDENTITY",
    "BID-RELATED-TO-OFFICIAL",
    "BID-SHORT-ANNOUNCEMENT",
    "BID-RELISTED-CHEAPER",
    "BID-ROTATION",
    "BID-COVER-BIDDING",
}


async def about_listing(db: AsyncSession, rule_id: str, listing: Listing, finding: Finding) -> bool:
    """Whether a full scan's finding is one an event of ``listing`` may change."""
    if rule_id == "BID-COVER-BIDDING":  # the bidder had a registration in the listing
        query = select(Registration.bidder_id).where(Registration.listing_id == listing.id)
        bidders = set(await db.scalars(query))
        return int(finding.subject_id) in bidders
    return listing.id in finding.evidence["listings"]  # a listing's, a registration's, a group's lots


async def test_an_event_finds_its_listings_alerts_as_the_full_scan_and_no_other(db: AsyncSession) -> None:
    """Each narrowed rule, evaluated after an event of one listing of the village, finds exactly the full
    scan's findings about that listing (same subjects, scores, texts, evidence) and none about the others."""
    await raise_every_rule(db, VILLAGE_A)
    await raise_every_rule(db, VILLAGE_B)
    query = select(Listing).where(Listing.village_code == VILLAGE_A).order_by(Listing.id)
    listings = list(await db.scalars(query))
    for rule in RULES:
        if rule.id not in NARROWED:
            continue
        full = [f for f in await rule.evaluate(db, Scope(), {}) if f.village_code == VILLAGE_A]
        assert full, rule.id
        touched = 0
        for listing in listings:
            event = DomainEvent("listing_closed", VILLAGE_A, {"listing_id": listing.id})
            scoped = await rule.evaluate(db, Scope(village_codes=(VILLAGE_A,), events=(event,)), {})
            expected = [f for f in full if await about_listing(db, rule.id, listing, f)]
            assert sorted(key(f) for f in scoped) == sorted(key(f) for f in expected), (rule.id, listing.id)
            touched += bool(scoped)
        # the village has flagged listings whose events leave this rule's other subjects alone
        assert 0 < touched < len(listings), rule.id


async def test_the_statistical_rules_still_evaluate_the_whole_village_after_an_event(db: AsyncSession) -> None:
    """A sold lot moves the fences and the 24-month shares of every lot of its township, so the rules built
    on them are not narrowed to the listing: an event of any listing finds the village's share of the full
    scan (the fenced rules: of the listing's asset kind, which all these lots share)."""
    await raise_every_rule(db, VILLAGE_A)
    await raise_every_rule(db, VILLAGE_B)
    some = await db.scalar(select(Listing.id).where(Listing.village_code == VILLAGE_A).limit(1))
    event = DomainEvent("listing_closed", VILLAGE_A, {"listing_id": some})
    for rule in RULES:
        if rule.id in NARROWED:
            continue
        full = [f for f in await rule.evaluate(db, Scope(), {}) if f.village_code == VILLAGE_A]
        scoped = await rule.evaluate(db, Scope(village_codes=(VILLAGE_A,), events=(event,)), {})
        assert sorted(key(f) for f in scoped) == sorted(key(f) for f in full), rule.id


async def eighth_comparable(db: AsyncSession, rule_id: str, kind: str) -> tuple[Listing, Listing]:
    """Six sold lots of ``kind`` in village A's township, a lot of village A that ``rule_id`` flags once its
    township has eight such lots, and the eighth (in village A): (the flagged lot, the eighth)."""
    if rule_id == "BID-CLOSE-SECOND":
        await gap_comparables(db, 6, kind=kind)
        flagged = await b.make_auction(  # one increment behind against the others' five
            db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_020_00)], min_increment_fen=20_00, kind=kind
        )
        eighth = await b.make_auction(
            db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_280_00)], min_increment_fen=50_00, kind=kind
        )
    else:
        await market(db, await township_villages(db), count=6, kind=kind)
        flagged = await b.make_auction(
            db, VILLAGE_A, amounts=[(0, 100_00)], starting_price_fen=100_00, kind=kind
        )
        eighth = await b.make_auction(
            db, VILLAGE_A, amounts=[(0, 1_060_00)], starting_price_fen=500_00, kind=kind
        )
    return flagged.listing, eighth.listing


@pytest.mark.parametrize("rule_id", ["BID-CLOSE-SECOND", "BID-BELOW-MARKET"])
async def test_a_close_evaluates_the_fenced_lots_of_its_kind_in_the_village(
    db: AsyncSession, rule_id: str
) -> None:
    """A fenced rule after a close: the closed lot, the eighth comparable of its kind, raises another lot of
    that kind in the village (against the whole township's comparables), and leaves the village's flagged lot
    of another kind alone (a close moves its own kind's fences only); what it finds is the full scan's
    findings about the village's lots of that kind."""
    ponds = await eighth_comparable(db, rule_id, "fish_pond")
    fields = await eighth_comparable(db, rule_id, "farmland")
    full = [f for f in await found(db, rule_id) if f.village_code == VILLAGE_A]
    assert {f.subject_id for f in full} == {str(ponds[0].id), str(fields[0].id)}
    for (flagged, eighth), (other, _) in ((ponds, fields), (fields, ponds)):
        event = DomainEvent("listing_closed", VILLAGE_A, {"listing_id": eighth.id})
        scoped = await found(db, rule_id, Scope(village_codes=(VILLAGE_A,), events=(event,)))
        assert [f.subject_id for f in scoped] == [str(flagged.id)]
        assert [key(f) for f in scoped] == [key(f) for f in full if f.subject_id == str(flagged.id)]
        assert str(other.id) not in subjects(scoped)


def test_only_the_shared_identity_rule_runs_on_every_bid() -> None:
    """A bid can add a shared network address or device to its listing; it cannot make two platform bids
    equal (each must beat the current price) nor change a relisting's cut."""
    assert {rule.id for rule in RULES if "bid_placed" in rule.triggers} == {"BID-SHARED-IDENTITY"}


async def test_a_bid_placed_raises_the_shared_device_of_its_listing_only(db: AsyncSession) -> None:
    """Through the engine: the bid's event raises its own listing's shared identity, not the village's
    other flagged listing (left to its own events and the full scan)."""
    mine = await lot_with(db, same_phone=True)
    other = await lot_with(db, same_phone=True)
    bid_event = DomainEvent("bid_placed", VILLAGE_A, {"listing_id": mine.listing.id, "bid_id": 1})
    await warnings_engine.evaluate_event(db, bid_event)
    alerts = list(await db.scalars(select(Alert).where(Alert.rule_id == "BID-SHARED-IDENTITY")))
    assert [a.subject_id for a in alerts] == [str(mine.listing.id)]
    full = next(f for f in await found(db, "BID-SHARED-IDENTITY") if f.subject_id == str(mine.listing.id))
    assert alerts[0].explanation == full.explanation and alerts[0].evidence["registrations"] == sorted(
        r.id for r in mine.registrations
    )
    assert str(other.listing.id) != alerts[0].subject_id
