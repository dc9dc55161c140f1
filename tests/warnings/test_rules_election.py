"""Election-period rules at their boundaries (window edges, amounts, counts, fences with too few comparables),
and a village's slice finding exactly the full scan's findings for that village."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import AssetStatusChange
from sanzi.platform.events import DomainEvent
from sanzi.platform.models import Election, Village
from sanzi.warnings.rules import Scope
from sanzi.warnings.rules.base import Finding, Rule
from sanzi.warnings.rules.election import RULES
from tests.conftest import VILLAGE_A, VILLAGE_B
from tests.auction.factories import resident_id_number
from tests.warnings.builders import (
    make_asset,
    make_auction,
    make_bidder,
    make_cadre,
    make_contract,
    village_township,
    villages_of_township,
)
from tests.warnings.governance_builders import add_receipt, expense, income, make_election

RULE = {rule.id: rule for rule in RULES}
YUAN = 100
ELECTION = date(2026, 4, 1)
FIRST = ELECTION - timedelta(days=180)  # the first day of the default window
HOSPITALITY, PAYOUT = "53101", "53301"


def defaults(rule: Rule, **overrides: Any) -> dict[str, Any]:
    return {p.key.rsplit(".", 1)[1]: p.default for p in rule.parameters} | overrides


async def run(db: AsyncSession, rule_id: str, scope: Scope | None = None, **params: Any) -> list[Finding]:
    rule = RULE[rule_id]
    return await rule.evaluate(db, scope or Scope(), defaults(rule, **params))


def subjects(findings: list[Finding]) -> set[str]:
    return {f.subject_id for f in findings}


def china_noon(day: date) -> datetime:
    return datetime.combine(day, time(4, 0), UTC)  # 12:00 in China


async def test_every_rule_is_documented() -> None:
    assert len(RULE) == 6
    for rule in RULES:
        assert rule.__doc__ and "Basis" in rule.__doc__, rule.id
        assert "election_set" in rule.triggers
        for p in rule.parameters:
            assert p.key.startswith(f"warnings.{rule.id}.") and p.description, p.key


async def test_disposal_before_election(db: AsyncSession) -> None:
    await make_election(db, VILLAGE_A, ELECTION)
    first_day = await make_contract(db, VILLAGE_A, signed_on=FIRST, total_value_fen=50_000 * YUAN)
    last_day = await make_contract(db, VILLAGE_A, signed_on=ELECTION - timedelta(days=1), total_value_fen=90_000_00)
    await make_contract(db, VILLAGE_A, signed_on=FIRST - timedelta(days=1), total_value_fen=90_000 * YUAN)
    await make_contract(db, VILLAGE_A, signed_on=ELECTION, total_value_fen=90_000 * YUAN)
    await make_contract(db, VILLAGE_A, signed_on=FIRST, total_value_fen=50_000 * YUAN - 1)
    await make_contract(db, VILLAGE_B, signed_on=FIRST, total_value_fen=90_000 * YUAN)  # no election there
    sold = await make_auction(db, VILLAGE_A, amounts=[(0, 60_000 * YUAN)], closed_at=china_noon(FIRST))
    await make_auction(db, VILLAGE_A, amounts=[(0, 60_000 * YUAN)], closed_at=china_noon(FIRST - timedelta(1)))
    scrapped = await make_asset(db, VILLAGE_A, status="disposed")
    db.add(AssetStatusChange(asset_id=scrapped.id, to_status="disposed", changed_at=china_noon(FIRST + timedelta(9))))
    await db.flush()
    found = {(f.subject_type, f.subject_id): f for f in await run(db, "ELE-DISPOSAL-BEFORE-ELECTION")}
    assert set(found) == {("contract", str(first_day.id)), ("contract", str(last_day.id)),
                          ("listing", str(sold.listing.id)), ("asset", str(scrapped.id))}
    assert "仅 180 天" in found[("contract", str(first_day.id))].explanation
    assert "仅 1 天" in found[("contract", str(last_day.id))].explanation


async def test_lease_beyond_term(db: AsyncSession) -> None:
    await make_election(db, VILLAGE_A, ELECTION)
    signed = ELECTION - timedelta(days=30)
    far = await make_contract(db, VILLAGE_A, signed_on=signed, term_months=240)
    far.end_date = ELECTION + timedelta(days=3653)  # > 10 × 365.25 days
    near = await make_contract(db, VILLAGE_A, signed_on=signed, term_months=240)
    near.end_date = ELECTION + timedelta(days=3652)
    # rent of ¥10,000 a year; ¥20,000.01 taken in the window is more than two years' rent
    ahead = await make_contract(db, VILLAGE_A, signed_on=date(2020, 1, 1), term_months=120,
                                unit_price_fen=10_000 * YUAN, total_value_fen=100_000 * YUAN)
    await add_receipt(db, ahead, FIRST + timedelta(days=100), 20_000 * YUAN + 1)
    await add_receipt(db, ahead, FIRST - timedelta(days=200), 50_000 * YUAN)  # before the window: not counted
    two_years = await make_contract(db, VILLAGE_A, signed_on=date(2020, 1, 1), term_months=120,
                                    unit_price_fen=10_000 * YUAN, total_value_fen=100_000 * YUAN)
    await add_receipt(db, two_years, FIRST + timedelta(days=100), 20_000 * YUAN)
    # a committee whose term ends, with no election recorded: the last year of its term counts too
    await make_cadre(db, VILLAGE_B, term_end=date(2024, 6, 30))
    outgoing = await make_contract(db, VILLAGE_B, signed_on=date(2024, 6, 1), term_months=300)
    await db.flush()
    found = {f.subject_id: f for f in await run(db, "ELE-LEASE-BEYOND-TERM")}
    assert set(found) == {str(far.id), str(ahead.id), str(outgoing.id)}
    assert "¥20000.01" in found[str(ahead.id)].explanation and "2.0 年" in found[str(ahead.id)].explanation
    assert "2024-06-30" in found[str(outgoing.id)].explanation


async def _spending_township(db: AsyncSession, peers: int, subject_fen: int) -> None:
    """``peers`` other villages (books kept since a year before) spending ¥6,000 in the window; A spends
    ``subject_fen``. A's township has only 6 other villages, so the whole district's villages are its
    comparables."""
    township = await village_township(db, VILLAGE_A)
    assert len(await villages_of_township(db, township)) == 7
    others = list(await db.scalars(
        select(Village.code).where(Village.district_code == VILLAGE_A[:6] + "000000", Village.code != VILLAGE_A)
        .order_by(Village.code.desc()).limit(peers)))
    assert len(others) == peers
    for village in others:
        await income(db, village, FIRST - timedelta(days=365), 1_000 * YUAN, "承包户")  # the books' first entry
        await expense(db, village, FIRST + timedelta(days=5), 6_000 * YUAN, HOSPITALITY)
    await make_election(db, VILLAGE_A, ELECTION)
    await expense(db, VILLAGE_A, FIRST, subject_fen - 1_000 * YUAN, HOSPITALITY)
    await expense(db, VILLAGE_A, ELECTION - timedelta(days=1), 1_000 * YUAN, "533")  # non-production
    await expense(db, VILLAGE_A, ELECTION, 90_000 * YUAN, HOSPITALITY)  # election day: outside


@pytest.mark.parametrize(("peers", "subject_fen", "raised"), [
    (8, 6_000 * YUAN + 1, True), (8, 6_000 * YUAN, False), (7, 60_000 * YUAN, False),
])
async def test_hospitality_spike(db: AsyncSession, peers: int, subject_fen: int, raised: bool) -> None:
    await _spending_township(db, peers, subject_fen)
    found = await run(db, "ELE-HOSPITALITY-SPIKE")
    assert subjects(found) == ({f"{VILLAGE_A}:{ELECTION.isoformat()}"} if raised else set())
    if raised:
        assert "¥6000.01" in found[0].explanation and "样本 8 个" in found[0].explanation
        assert len(found[0].evidence["entries"]) == 2


async def test_hospitality_compares_with_earlier_years(db: AsyncSession) -> None:
    await _spending_township(db, 5, 6_000 * YUAN + 1)
    for k in (1, 2, 3):  # the village's own same window in the three years before: comparables too
        await expense(db, VILLAGE_A, FIRST - timedelta(days=365 * k), 6_000 * YUAN, HOSPITALITY)
    assert len(await run(db, "ELE-HOSPITALITY-SPIKE")) == 1
    assert await run(db, "ELE-HOSPITALITY-SPIKE", lookback_years=2) == []  # 7 comparables: quiet


@pytest.mark.parametrize(("books_start_after", "raised"), [(0, True), (1, False)])
async def test_hospitality_ignores_a_window_the_books_cover_only_in_part(
    db: AsyncSession, books_start_after: int, raised: bool
) -> None:
    """A's books start on the first day of its window three years back (a low ¥100 there: a real comparable
    that pulls the fence down to ¥1,000) or one day later (the window is only partly covered: not counted, so
    the fence is ¥6,000 and A's ¥5,500 is quiet). Counting both alike, as before, raised a false alarm."""
    district = VILLAGE_A[:6] + "000000"
    peers = list(await db.scalars(
        select(Village.code).where(Village.district_code == district, Village.code != VILLAGE_A)
        .order_by(Village.code).limit(6)))
    for village, amount in zip(peers, (1_000, 1_000, 1_000, 1_000, 9_000, 9_000), strict=True):
        # their books start on their window's first day: fully covered
        await expense(db, village, FIRST, amount * YUAN, HOSPITALITY)
    third_year_back = FIRST - timedelta(days=3 * 365)
    await expense(db, VILLAGE_A, third_year_back + timedelta(days=books_start_after), 100 * YUAN, HOSPITALITY)
    for k in (1, 2):
        await expense(db, VILLAGE_A, FIRST - timedelta(days=365 * k), 1_000 * YUAN, HOSPITALITY)
    await make_election(db, VILLAGE_A, ELECTION)
    await expense(db, VILLAGE_A, FIRST, 5_500 * YUAN, HOSPITALITY)
    found = await run(db, "ELE-HOSPITALITY-SPIKE")
    assert subjects(found) == ({f"{VILLAGE_A}:{ELECTION.isoformat()}"} if raised else set())
    if raised:
        assert "上限 ¥1000.00（样本 9 个" in found[0].explanation
    else:  # the eight fully covered windows still count: a lower spend of A's is not enough either
        assert await run(db, "ELE-HOSPITALITY-SPIKE", min_amount=1_000) == []
        await expense(db, VILLAGE_A, FIRST + timedelta(days=1), 500 * YUAN + 1, HOSPITALITY)
        found = await run(db, "ELE-HOSPITALITY-SPIKE")
        assert subjects(found) == {f"{VILLAGE_A}:{ELECTION.isoformat()}"}
        assert "上限 ¥6000.00（样本 8 个" in found[0].explanation


async def _payouts(db: AsyncSession, count: int, on: date, amount_fen: int = 2_000 * YUAN - 1) -> None:
    for n in range(count):
        await expense(db, VILLAGE_A, on, amount_fen, PAYOUT, counterparty=f"村民{n}")


@pytest.mark.parametrize(("now", "before", "raised"), [(21, 0, True), (20, 0, False), (22, 14, True), (21, 14, False)])
async def test_many_small_payouts(db: AsyncSession, now: int, before: int, raised: bool) -> None:
    await make_election(db, VILLAGE_A, ELECTION)
    await _payouts(db, now, FIRST)
    await _payouts(db, before, FIRST - timedelta(days=365))
    await _payouts(db, 30, FIRST, amount_fen=2_000 * YUAN)  # not small
    await _payouts(db, 30, FIRST - timedelta(days=1))  # before the window
    found = await run(db, "ELE-MANY-SMALL-PAYOUTS")
    assert subjects(found) == ({f"{VILLAGE_A}:{ELECTION.isoformat()}"} if raised else set())
    if raised:
        assert f"{now} 笔" in found[0].explanation and len(found[0].evidence["entries"]) == now


async def test_rent_cut_in_window(db: AsyncSession) -> None:
    await make_election(db, VILLAGE_A, ELECTION)

    async def renewal(new_price: int, signed_on: date = FIRST, other_party: bool = False) -> Any:
        pond = await make_asset(db, VILLAGE_A)
        await make_contract(db, VILLAGE_A, asset=pond, counterparty_name="刘某", signed_on=date(2022, 1, 1),
                            unit_price_fen=10_000 * YUAN)
        return await make_contract(db, VILLAGE_A, asset=pond, counterparty_name="赵某" if other_party else "刘某",
                                   signed_on=signed_on, unit_price_fen=new_price)

    cut = await renewal(10_000 * YUAN - 1)
    same = await renewal(10_000 * YUAN)
    early = await renewal(5_000 * YUAN, signed_on=FIRST - timedelta(days=1))
    other = await renewal(5_000 * YUAN, other_party=True)
    found = await run(db, "ELE-RENT-CUT-IN-WINDOW")
    assert subjects(found) == {str(cut.id)}
    assert "¥9999.99" in found[0].explanation and "¥10000.00" in found[0].explanation
    assert not {str(same.id), str(early.id), str(other.id)} & subjects(found)
    assert await run(db, "ELE-RENT-CUT-IN-WINDOW", min_cut_percent=0.01) == []


async def test_related_to_candidate(db: AsyncSession) -> None:
    candidate_id, relative_id = resident_id_number(), resident_id_number()
    cadre = await make_cadre(db, VILLAGE_A, name="李主任", phone="13800000001",
                             relatives=[("李小弟", relative_id, "弟弟")])
    await make_election(db, VILLAGE_A, ELECTION, candidates=[("陈候选", candidate_id), (cadre.name, None)])
    himself = await make_bidder(db, name="陈候选", id_number=candidate_id)
    won = await make_auction(db, VILLAGE_A, amounts=[(0, 9_000_00)], bidders=[himself],
                             closed_at=china_noon(FIRST))
    early = await make_auction(db, VILLAGE_A, amounts=[(0, 9_000_00)], bidders=[himself],
                               closed_at=china_noon(FIRST - timedelta(days=1)))
    brother = await make_contract(db, VILLAGE_A, counterparty_name="李小弟", counterparty_id_number=relative_id,
                                  signed_on=ELECTION - timedelta(days=1))
    same_phone = await make_bidder(db, name="李主任", phone="13800000001")
    by_phone = await make_contract(db, VILLAGE_A, counterparty_bidder=same_phone, signed_on=FIRST)
    namesake = await make_bidder(db, name="李主任")  # same name, another phone and ID: not a match
    other = await make_contract(db, VILLAGE_A, counterparty_bidder=namesake, signed_on=FIRST)
    found = {(f.subject_type, f.subject_id): f for f in await run(db, "ELE-RELATED-TO-CANDIDATE")}
    assert set(found) == {("listing", str(won.listing.id)), ("contract", str(brother.id)),
                          ("contract", str(by_phone.id))}
    assert "候选人「陈候选」本人" in found[("listing", str(won.listing.id))].explanation
    assert "候选人「李主任」（村干部）的弟弟" in found[("contract", str(brother.id))].explanation
    assert ("listing", str(early.listing.id)) not in found and ("contract", str(other.id)) not in found


@pytest.mark.parametrize("rule_id", sorted(RULE))
async def test_a_village_slice_finds_what_the_full_scan_finds(db: AsyncSession, rule_id: str) -> None:
    peers = list(await db.scalars(
        select(Village.code).where(Village.district_code == VILLAGE_A[:6] + "000000", Village.code != VILLAGE_A)
        .order_by(Village.code).limit(10)))
    for village in peers:
        await expense(db, village, FIRST, 6_000 * YUAN, HOSPITALITY)
    for village in (VILLAGE_A, VILLAGE_B, peers[0]):
        someone = resident_id_number()
        await make_election(db, village, ELECTION, candidates=[("候选人", someone)])
        await make_contract(db, village, signed_on=FIRST, total_value_fen=90_000 * YUAN, term_months=300,
                            counterparty_name="候选人", counterparty_id_number=someone)
        pond = await make_asset(db, village)
        await make_contract(db, village, asset=pond, counterparty_name="刘某", signed_on=date(2022, 1, 1))
        await make_contract(db, village, asset=pond, counterparty_name="刘某", signed_on=FIRST,
                            unit_price_fen=1_000 * YUAN)
        await expense(db, village, FIRST, 60_000 * YUAN, HOSPITALITY)
        for n in range(25):
            await expense(db, village, FIRST, 100 * YUAN, PAYOUT, counterparty=f"村民{n}")
    full = await run(db, rule_id)
    sliced = await run(db, rule_id, Scope(village_codes=(VILLAGE_A,)))
    district = await run(db, rule_id, Scope(district_codes=(VILLAGE_A[:6] + "000000",)))
    expected = sorted((f.subject_id, f.explanation) for f in full if f.village_code == VILLAGE_A)
    assert expected, "the data raise this rule in village A"
    assert sorted((f.subject_id, f.explanation) for f in sliced) == expected
    in_district = sorted((f.subject_id, f.explanation) for f in full if f.village_code[:6] == VILLAGE_A[:6])
    assert sorted((f.subject_id, f.explanation) for f in district) == in_district
    assert {f.village_code for f in full} > {VILLAGE_A}


# ---- incremental evaluation: the events narrow a rule to what they touched --------------------------------


def event(kind: str, village: str, **ids: int) -> DomainEvent:
    return DomainEvent(kind, village, dict(ids))


async def on_events(db: AsyncSession, rule_id: str, *events: DomainEvent) -> list[Finding]:
    """The rule as the engine runs it after these committed events: their villages, with the events."""
    return await run(db, rule_id, Scope(village_codes=tuple(sorted({e.village_code for e in events})),
                                        events=tuple(events)))


def facts(findings: list[Finding]) -> list[tuple[Any, ...]]:
    return sorted((f.subject_type, f.subject_id, f.score, f.explanation, repr(sorted(f.evidence.items())))
                  for f in findings)


async def test_an_entry_narrows_the_books_rules_to_the_elections_its_date_reaches(db: AsyncSession) -> None:
    """A posted entry is re-evaluated against the village's elections after its date within the windows'
    reach (all later ones when it is the first of the village's books); a later or an old entry finds
    nothing to re-evaluate, while the elections themselves are still found by the full scan."""
    await _spending_township(db, 8, 6_000 * YUAN + 1)
    election = await db.scalar(select(Election).where(Election.village_code == VILLAGE_A))
    payouts = [await expense(db, VILLAGE_A, FIRST, 100 * YUAN, PAYOUT, counterparty=f"村民{n}") for n in range(21)]
    inside = await expense(db, VILLAGE_A, FIRST + timedelta(days=3), 1 * YUAN, HOSPITALITY)
    after = await expense(db, VILLAGE_A, ELECTION + timedelta(days=10), 1 * YUAN, HOSPITALITY)
    reach = 180 + 365 * 3
    books_start = await expense(db, VILLAGE_A, ELECTION - timedelta(days=reach + 30), 1 * YUAN, HOSPITALITY)
    old = await expense(db, VILLAGE_A, ELECTION - timedelta(days=reach + 29), 1 * YUAN, HOSPITALITY)
    a = VILLAGE_A
    for rule_id in ("ELE-HOSPITALITY-SPIKE", "ELE-MANY-SMALL-PAYOUTS"):
        full = await run(db, rule_id)
        assert subjects(full) == {f"{a}:{ELECTION.isoformat()}"}, rule_id
        for reached in (inside, payouts[0]):
            assert facts(await on_events(db, rule_id, event("entry_posted", a, entry_id=reached.id))) == facts(full)
        assert facts(await on_events(db, rule_id, event("election_set", a, election_id=election.id))) == facts(full)
        for unreached in (after, old):
            assert await on_events(db, rule_id, event("entry_posted", a, entry_id=unreached.id)) == [], rule_id
    # the first entry of the books moves their start, so every later election is evaluated
    assert facts(await on_events(db, "ELE-HOSPITALITY-SPIKE", event("entry_posted", a, entry_id=books_start.id))) \
        == facts(await run(db, "ELE-HOSPITALITY-SPIKE"))
    assert await on_events(db, "ELE-MANY-SMALL-PAYOUTS", event("entry_posted", a, entry_id=books_start.id)) == []


async def test_a_contract_or_a_listing_narrows_the_election_rules_to_its_own_findings(db: AsyncSession) -> None:
    candidate_id = resident_id_number()
    await make_election(db, VILLAGE_A, ELECTION, candidates=[("陈候选", candidate_id)])
    signed = ELECTION - timedelta(days=30)
    disposals = [await make_contract(db, VILLAGE_A, signed_on=FIRST + timedelta(days=n), total_value_fen=90_000 * YUAN)
                 for n in range(2)]
    sold = await make_auction(db, VILLAGE_A, amounts=[(0, 60_000 * YUAN)], closed_at=china_noon(FIRST))
    far = []
    for _ in range(2):
        contract = await make_contract(db, VILLAGE_A, signed_on=signed, term_months=240)
        contract.end_date = ELECTION + timedelta(days=3653)
        far.append(contract)
    ahead = await make_contract(db, VILLAGE_A, signed_on=date(2020, 1, 1), term_months=120,
                                unit_price_fen=10_000 * YUAN, total_value_fen=100_000 * YUAN)
    receipt = await add_receipt(db, ahead, FIRST + timedelta(days=100), 30_000 * YUAN)
    fee = await expense(db, VILLAGE_A, FIRST, 100 * YUAN, HOSPITALITY)
    cuts = []
    for _ in range(2):
        pond = await make_asset(db, VILLAGE_A)
        await make_contract(db, VILLAGE_A, asset=pond, counterparty_name="刘某", signed_on=date(2022, 1, 1),
                            unit_price_fen=10_000 * YUAN)
        cuts.append(await make_contract(db, VILLAGE_A, asset=pond, counterparty_name="刘某", signed_on=FIRST,
                                        unit_price_fen=5_000 * YUAN))
    himself = await make_bidder(db, name="陈候选", id_number=candidate_id)
    won = [await make_auction(db, VILLAGE_A, amounts=[(0, 9_000_00)], bidders=[himself], closed_at=china_noon(FIRST))
           for _ in range(2)]
    related = await make_contract(db, VILLAGE_A, counterparty_name="陈候选", counterparty_id_number=candidate_id,
                                  signed_on=FIRST)
    await db.flush()
    a = VILLAGE_A

    def key(subject_type: str, subject_id: int) -> tuple[str, str]:
        return (subject_type, str(subject_id))

    cases = [
        ("ELE-DISPOSAL-BEFORE-ELECTION", event("contract_recorded", a, contract_id=disposals[0].id),
         {key("contract", disposals[0].id)}),
        ("ELE-DISPOSAL-BEFORE-ELECTION", event("listing_closed", a, listing_id=sold.listing.id),
         {key("listing", sold.listing.id)}),
        ("ELE-LEASE-BEYOND-TERM", event("contract_recorded", a, contract_id=far[0].id), {key("contract", far[0].id)}),
        ("ELE-LEASE-BEYOND-TERM", event("entry_posted", a, entry_id=receipt.entry_id), {key("contract", ahead.id)}),
        ("ELE-LEASE-BEYOND-TERM", event("entry_posted", a, entry_id=fee.id), set()),
        ("ELE-RENT-CUT-IN-WINDOW", event("contract_recorded", a, contract_id=cuts[0].id), {key("contract", cuts[0].id)}),
        ("ELE-RELATED-TO-CANDIDATE", event("listing_closed", a, listing_id=won[0].listing.id),
         {key("listing", won[0].listing.id)}),
        ("ELE-RELATED-TO-CANDIDATE", event("contract_recorded", a, contract_id=related.id),
         {key("contract", related.id)}),
    ]
    for rule_id, happened, expected in cases:
        full = await run(db, rule_id)
        found = {(f.subject_type, f.subject_id) for f in full}
        assert expected <= found and found - expected, (rule_id, found)
        narrowed = await on_events(db, rule_id, happened)
        assert facts(narrowed) == facts([f for f in full if (f.subject_type, f.subject_id) in expected]), rule_id
