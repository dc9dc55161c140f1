"""Undisclosed-transaction rules at their boundaries: just over the standard raises, just under does not; a
village's slice finds exactly what the full scan finds for that village."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import AssetStatusChange
from sanzi.platform.events import DomainEvent
from sanzi.warnings.rules import Scope
from sanzi.warnings.rules.base import Finding, Rule
from sanzi.warnings.rules.undisclosed import RULES, today
from tests.conftest import VILLAGE_A, VILLAGE_B
from tests.warnings.builders import make_asset, make_auction, make_contract, make_listing
from tests.warnings.governance_builders import add_installment, add_receipt, income

RULE = {rule.id: rule for rule in RULES}
YUAN = 100


def defaults(rule: Rule, **overrides: Any) -> dict[str, Any]:
    return {p.key.rsplit(".", 1)[1]: p.default for p in rule.parameters} | overrides


async def run(db: AsyncSession, rule_id: str, scope: Scope | None = None, **params: Any) -> list[Finding]:
    rule = RULE[rule_id]
    return await rule.evaluate(db, scope or Scope(), defaults(rule, **params))


def subjects(findings: list[Finding]) -> set[str]:
    return {f.subject_id for f in findings}


async def test_every_rule_is_documented() -> None:
    assert len(RULE) == 8
    for rule in RULES:
        assert rule.__doc__ and "Basis" in rule.__doc__, rule.id
        for p in rule.parameters:
            assert p.key.startswith(f"warnings.{rule.id}.") and p.description, p.key


async def test_off_platform_value_and_term(db: AsyncSession) -> None:
    over = await make_contract(db, VILLAGE_A, total_value_fen=50_000 * YUAN + 1, term_months=12)
    at = await make_contract(db, VILLAGE_A, total_value_fen=50_000 * YUAN, term_months=60)
    long = await make_contract(db, VILLAGE_A, total_value_fen=1_000 * YUAN, term_months=61)
    lot = await make_auction(db, VILLAGE_A, amounts=[(0, 2_000_00)])
    auctioned = await make_contract(db, VILLAGE_A, listing=lot.listing, total_value_fen=900_000 * YUAN)
    found = await run(db, "UND-OFF-PLATFORM")
    assert subjects(found) == {str(over.id), str(long.id)}
    assert str(at.id) not in subjects(found) and str(auctioned.id) not in subjects(found)
    first = next(f for f in found if f.subject_id == str(over.id))
    assert "¥50000.01" in first.explanation and "¥50000.00" in first.explanation
    assert first.evidence == {"contracts": [over.id]}
    # a district may raise its standard
    assert await run(db, "UND-OFF-PLATFORM", value_threshold=60_000, term_threshold_years=10) == []


async def test_status_without_trade(db: AsyncSession) -> None:
    bare = await make_asset(db, VILLAGE_A, status="leased")
    sold = await make_asset(db, VILLAGE_A, status="sold")
    db.add(AssetStatusChange(asset_id=sold.id, from_status="idle", to_status="sold", changed_at=datetime.now(UTC)))
    with_contract = await make_asset(db, VILLAGE_A, status="leased")
    await make_contract(db, VILLAGE_A, asset=with_contract)
    traded = await make_asset(db, VILLAGE_A, status="leased")
    await make_listing(db, VILLAGE_A, asset=traded, status="sold")
    idle = await make_asset(db, VILLAGE_A, status="idle")
    found = await run(db, "UND-STATUS-WITHOUT-TRADE")
    assert subjects(found) == {str(bare.id), str(sold.id)}
    assert str(idle.id) not in subjects(found)


async def test_income_without_contract(db: AsyncSession) -> None:
    start = date(2025, 1, 10)
    # ¥5,000.01 in two receipts within 12 months: raised; ¥5,000.00: not
    a1 = await income(db, VILLAGE_A, start, 3_000 * YUAN, "陈某鱼塘")
    a2 = await income(db, VILLAGE_A, start + timedelta(days=364), 2_000 * YUAN + 1, "陈某鱼塘")
    await income(db, VILLAGE_A, start, 3_000 * YUAN, "李某")
    await income(db, VILLAGE_A, start + timedelta(days=300), 2_000 * YUAN, "李某")
    # the same total spread over more than 12 months: not
    await income(db, VILLAGE_A, start, 3_000 * YUAN, "黄某")
    await income(db, VILLAGE_A, start + timedelta(days=365), 2_000 * YUAN + 1, "黄某")
    # a counterparty with a contract, a subsidy and a deposit are not receipts without a contract
    await make_contract(db, VILLAGE_A, counterparty_name="张某")
    await income(db, VILLAGE_A, start, 9_000 * YUAN, "张某")
    await income(db, VILLAGE_A, start, 9_000 * YUAN, "镇财政所", account="521")
    await income(db, VILLAGE_A, start, 9_000 * YUAN, "某竞买人", account="522", source="auction_deposit")
    found = await run(db, "UND-INCOME-WITHOUT-CONTRACT")
    assert [f.subject_id for f in found] == [f"{VILLAGE_A}:陈某鱼塘"]
    assert found[0].evidence["entries"] == [a1.id, a2.id]
    assert "¥5000.01" in found[0].explanation and "2 笔" in found[0].explanation


async def test_split_contracts(db: AsyncSession) -> None:
    day = date(2025, 3, 1)
    c1 = await make_contract(db, VILLAGE_A, counterparty_name="周某", signed_on=day, total_value_fen=30_000 * YUAN)
    c2 = await make_contract(db, VILLAGE_A, counterparty_name="周某", signed_on=day + timedelta(days=200),
                             total_value_fen=20_000 * YUAN + 1)
    # exactly the standard in total: not split; an auctioned one does not count
    await make_contract(db, VILLAGE_A, counterparty_name="吴某", signed_on=day, total_value_fen=30_000 * YUAN)
    await make_contract(db, VILLAGE_A, counterparty_name="吴某", signed_on=day + timedelta(days=10),
                        total_value_fen=20_000 * YUAN)
    # over the standard but more than 12 months apart: not
    await make_contract(db, VILLAGE_A, counterparty_name="郑某", signed_on=day, total_value_fen=30_000 * YUAN)
    await make_contract(db, VILLAGE_A, counterparty_name="郑某", signed_on=day + timedelta(days=365),
                        total_value_fen=30_000 * YUAN)
    found = await run(db, "UND-SPLIT-CONTRACTS")
    assert [f.subject_id for f in found] == [f"{VILLAGE_A}:周某"]
    assert found[0].evidence == {"contracts": [c1.id, c2.id]}
    assert "¥50000.01" in found[0].explanation


async def test_split_contracts_on_one_day_count_in_order(db: AsyncSession) -> None:
    """Contracts signed on one day join a stretch in the order recorded; the window reaches back 365 days."""
    day = date(2025, 3, 1)
    q1 = await make_contract(db, VILLAGE_A, counterparty_name="钱某", signed_on=day, total_value_fen=20_000 * YUAN)
    q2 = await make_contract(db, VILLAGE_A, counterparty_name="钱某", signed_on=day, total_value_fen=20_000 * YUAN)
    q3 = await make_contract(db, VILLAGE_A, counterparty_name="钱某", signed_on=day + timedelta(days=364),
                             total_value_fen=15_000 * YUAN)
    f1 = await make_contract(db, VILLAGE_B, counterparty_name="冯某", signed_on=day, total_value_fen=30_000 * YUAN)
    f2 = await make_contract(db, VILLAGE_B, counterparty_name="冯某", signed_on=day, total_value_fen=21_000 * YUAN)
    await make_contract(db, VILLAGE_B, counterparty_name="冯某", signed_on=day + timedelta(days=365),
                        total_value_fen=1_000 * YUAN)
    found = {f.subject_id: f for f in await run(db, "UND-SPLIT-CONTRACTS")}
    assert set(found) == {f"{VILLAGE_A}:钱某", f"{VILLAGE_B}:冯某"}
    assert found[f"{VILLAGE_A}:钱某"].evidence == {"contracts": [q1.id, q2.id, q3.id]}
    assert found[f"{VILLAGE_A}:钱某"].numbers["total_fen"] == 55_000 * YUAN
    # the stretch with the largest total: the two of the first day (the third is a year after the first)
    assert found[f"{VILLAGE_B}:冯某"].evidence == {"contracts": [f1.id, f2.id]}
    assert found[f"{VILLAGE_B}:冯某"].numbers["total_fen"] == 51_000 * YUAN
    # the village's slice finds the same
    sliced = await run(db, "UND-SPLIT-CONTRACTS", Scope(village_codes=(VILLAGE_B,)))
    assert [f.evidence for f in sliced] == [found[f"{VILLAGE_B}:冯某"].evidence]


async def test_renewal_without_rebid(db: AsyncSession) -> None:
    pond = await make_asset(db, VILLAGE_A)
    await make_contract(db, VILLAGE_A, asset=pond, signed_on=date(2020, 1, 1), term_months=60)  # ends 2024-12-31
    renewal = await make_contract(db, VILLAGE_A, asset=pond, signed_on=date(2025, 12, 31), term_months=12)
    other = await make_asset(db, VILLAGE_A)
    await make_contract(db, VILLAGE_A, asset=other, signed_on=date(2020, 1, 1), term_months=60)
    late = await make_contract(db, VILLAGE_A, asset=other, signed_on=date(2026, 1, 1), term_months=12)  # 366 days
    found = await run(db, "UND-RENEWAL-WITHOUT-REBID")
    assert subjects(found) == {str(renewal.id)}
    assert "相隔 365 天" in found[0].explanation
    assert str(late.id) not in subjects(found)


async def test_terms_worse_than_result(db: AsyncSession) -> None:
    cheaper = await make_auction(db, VILLAGE_A, amounts=[(0, 2_000_00)], term_months=60)
    c1 = await make_contract(db, VILLAGE_A, listing=cheaper.listing, price_basis="per_mu_year",
                             unit_price_fen=2_000_00 - 1, term_months=60)
    longer = await make_auction(db, VILLAGE_A, amounts=[(0, 2_000_00)], term_months=60)
    c2 = await make_contract(db, VILLAGE_A, listing=longer.listing, price_basis="per_mu_year",
                             unit_price_fen=2_000_00, term_months=61)
    same = await make_auction(db, VILLAGE_A, amounts=[(0, 2_000_00)], term_months=60)
    c3 = await make_contract(db, VILLAGE_A, listing=same.listing, price_basis="per_mu_year",
                             unit_price_fen=2_000_00, term_months=60)
    found = {f.subject_id: f for f in await run(db, "UND-TERMS-WORSE-THAN-RESULT")}
    assert set(found) == {str(c1.id), str(c2.id)}
    assert "¥1999.99" in found[str(c1.id)].explanation and "61 个月" in found[str(c2.id)].explanation
    assert str(c3.id) not in found


async def test_result_not_published(db: AsyncSession) -> None:
    closed = datetime(2025, 6, 30, 2, 0, tzinfo=UTC)
    ends = closed + timedelta(days=5)  # 2025-07-05 in China
    early = await make_auction(db, VILLAGE_A, amounts=[(0, 2_000_00)], closed_at=closed)
    early.listing.publicity_ends_at = ends
    c_early = await make_contract(db, VILLAGE_A, listing=early.listing, signed_on=date(2025, 7, 4))
    on_time = await make_auction(db, VILLAGE_A, amounts=[(0, 2_000_00)], closed_at=closed)
    on_time.listing.publicity_ends_at = ends
    await make_contract(db, VILLAGE_A, listing=on_time.listing, signed_on=date(2025, 7, 5))
    unpublished = await make_auction(db, VILLAGE_A, amounts=[], closed_at=closed)  # failed, no publicity
    await db.flush()
    found = {f.subject_id: f for f in await run(db, "UND-RESULT-NOT-PUBLISHED")}
    assert set(found) == {str(early.listing.id), str(unpublished.listing.id)}
    assert found[str(early.listing.id)].evidence["contracts"] == [c_early.id]
    assert "提前 1 天" in found[str(early.listing.id)].explanation


async def test_rent_arrears(db: AsyncSession) -> None:
    now = today()
    overdue = now - timedelta(days=91)

    async def contract_owing(unpaid_fen: int, *, receipt_days_ago: int | None = None) -> Any:
        # ¥12,000 a year over 3 years: the standard is half a year, ¥6,000
        contract = await make_contract(db, VILLAGE_A, signed_on=now - timedelta(days=800), term_months=36,
                                       unit_price_fen=12_000 * YUAN, total_value_fen=36_000 * YUAN)
        await add_installment(db, contract, 1, overdue, 6_000 * YUAN + unpaid_fen)
        await add_receipt(db, contract, now - timedelta(days=receipt_days_ago or 400), 6_000 * YUAN)
        return contract

    over = await contract_owing(6_000 * YUAN + 1)
    under = await contract_owing(6_000 * YUAN)
    recently_paid = await contract_owing(9_000 * YUAN, receipt_days_ago=180)
    not_yet_overdue = await make_contract(db, VILLAGE_A, signed_on=now - timedelta(days=100), term_months=12,
                                          unit_price_fen=12_000 * YUAN, total_value_fen=12_000 * YUAN)
    await add_installment(db, not_yet_overdue, 1, now - timedelta(days=90), 12_000 * YUAN)
    found = await run(db, "UND-RENT-ARREARS")
    assert subjects(found) == {str(over.id)}
    assert "¥6000.01" in found[0].explanation and "¥12000.00" in found[0].explanation
    assert str(under.id) not in subjects(found) and str(recently_paid.id) not in subjects(found)


@pytest.mark.parametrize("rule_id", sorted(RULE))
async def test_a_village_slice_finds_what_the_full_scan_finds(db: AsyncSession, rule_id: str) -> None:
    for village in (VILLAGE_A, VILLAGE_B):
        await make_contract(db, village, total_value_fen=80_000 * YUAN, counterparty_name="甲")
        await make_contract(db, village, total_value_fen=30_000 * YUAN, counterparty_name="乙")
        await make_contract(db, village, total_value_fen=30_000 * YUAN, counterparty_name="乙")
        await make_asset(db, village, status="sold")
        await income(db, village, date(2025, 2, 1), 8_000 * YUAN, "丙")
        lot = await make_auction(db, village, amounts=[])
        pond = await make_asset(db, village)
        await make_contract(db, village, asset=pond, signed_on=date(2020, 1, 1), term_months=60)
        await make_contract(db, village, asset=pond, signed_on=date(2025, 1, 1), term_months=60)
        assert lot.listing.publicity_ends_at is None
        owing = await make_contract(db, village, signed_on=today() - timedelta(days=800), total_value_fen=36_000_00)
        await add_installment(db, owing, 1, today() - timedelta(days=200), 36_000_00)
    full = await run(db, rule_id)
    sliced = await run(db, rule_id, Scope(village_codes=(VILLAGE_A,)))
    district = await run(db, rule_id, Scope(district_codes=(VILLAGE_A[:6] + "000000",)))
    expected = sorted((f.subject_id, f.explanation) for f in full if f.village_code == VILLAGE_A)
    assert sorted((f.subject_id, f.explanation) for f in sliced) == expected
    assert sorted((f.subject_id, f.explanation) for f in district) == expected
    if rule_id != "UND-TERMS-WORSE-THAN-RESULT":
        assert expected, "the data raise this rule in village A"


# ---- incremental evaluation: the events narrow a rule to what they touched --------------------------------


def event(kind: str, village: str, **ids: int) -> DomainEvent:
    return DomainEvent(kind, village, dict(ids))


async def on_events(db: AsyncSession, rule_id: str, *events: DomainEvent) -> list[Finding]:
    """The rule as the engine runs it after these committed events: their villages, with the events."""
    return await run(db, rule_id, Scope(village_codes=tuple(sorted({e.village_code for e in events})),
                                        events=tuple(events)))


def facts(findings: list[Finding], only: set[str] | None = None) -> list[tuple[Any, ...]]:
    return sorted((f.subject_type, f.subject_id, f.score, f.explanation, repr(sorted(f.evidence.items())))
                  for f in findings if only is None or f.subject_id in only)


async def test_events_narrow_each_rule_to_what_they_touched(db: AsyncSession) -> None:
    """Each narrowed rule finds, after an event, exactly the full scan's findings for what the event touched,
    and nothing about the village's other subjects (which the full scan does find)."""
    off = await make_contract(db, VILLAGE_A, total_value_fen=80_000 * YUAN, counterparty_name="甲")
    split = await make_contract(db, VILLAGE_A, total_value_fen=30_000 * YUAN, counterparty_name="乙")
    await make_contract(db, VILLAGE_A, total_value_fen=30_000 * YUAN, counterparty_name="乙")
    for _ in range(2):
        await make_contract(db, VILLAGE_A, total_value_fen=30_000 * YUAN, counterparty_name="丁")
    pond = await make_asset(db, VILLAGE_A)
    first = await make_contract(db, VILLAGE_A, asset=pond, signed_on=date(2020, 1, 1), term_months=60)
    renewal = await make_contract(db, VILLAGE_A, asset=pond, signed_on=date(2025, 1, 1), term_months=60)
    well = await make_asset(db, VILLAGE_A)
    await make_contract(db, VILLAGE_A, asset=well, signed_on=date(2020, 1, 1), term_months=60)
    other_renewal = await make_contract(db, VILLAGE_A, asset=well, signed_on=date(2025, 1, 1), term_months=60)
    owing, also_owing = [
        await make_contract(db, VILLAGE_A, signed_on=today() - timedelta(days=800), total_value_fen=36_000_00)
        for _ in range(2)
    ]
    for contract in (owing, also_owing):
        await add_installment(db, contract, 1, today() - timedelta(days=300), 36_000_00)
    paid = await add_receipt(db, owing, today() - timedelta(days=400), 1_00)
    paid_too = await add_receipt(db, also_owing, today() - timedelta(days=400), 1_00)
    fee = await income(db, VILLAGE_A, date(2025, 2, 1), 8_000 * YUAN, "丙")
    await income(db, VILLAGE_A, date(2025, 2, 1), 8_000 * YUAN, "戊")
    lot = await make_auction(db, VILLAGE_A, amounts=[(0, 2_000_00)], term_months=60)
    worse = await make_contract(db, VILLAGE_A, listing=lot.listing, price_basis="per_mu_year",
                                unit_price_fen=2_000_00 - 1, term_months=60)
    other_lot = await make_auction(db, VILLAGE_A, amounts=[(0, 2_000_00)], term_months=60)
    await make_contract(db, VILLAGE_A, listing=other_lot.listing, price_basis="per_mu_year",
                        unit_price_fen=2_000_00, term_months=61)
    unpublished = await make_auction(db, VILLAGE_A, amounts=[])
    await make_asset(db, VILLAGE_A, status="leased")  # a status without a trade no event here touches
    await db.flush()
    a = VILLAGE_A
    cases = [
        ("UND-OFF-PLATFORM", [event("contract_recorded", a, contract_id=off.id)], {str(off.id)}),
        ("UND-OFF-PLATFORM", [event("contract_recorded", a, contract_id=split.id)], set()),
        ("UND-SPLIT-CONTRACTS", [event("contract_recorded", a, contract_id=split.id)], {f"{a}:乙"}),
        # recorded late, the earlier contract is judged with the later one it precedes
        ("UND-RENEWAL-WITHOUT-REBID", [event("contract_recorded", a, contract_id=first.id)], {str(renewal.id)}),
        ("UND-RENT-ARREARS", [event("entry_posted", a, entry_id=paid.entry_id)], {str(owing.id)}),
        ("UND-RENT-ARREARS", [event("entry_posted", a, entry_id=fee.id)], set()),
        ("UND-RENT-ARREARS", [event("contract_recorded", a, contract_id=also_owing.id)], {str(also_owing.id)}),
        ("UND-INCOME-WITHOUT-CONTRACT", [event("entry_posted", a, entry_id=fee.id)], {f"{a}:丙"}),
        ("UND-INCOME-WITHOUT-CONTRACT", [event("entry_posted", a, entry_id=paid_too.entry_id)], set()),
        ("UND-TERMS-WORSE-THAN-RESULT", [event("contract_recorded", a, contract_id=worse.id)], {str(worse.id)}),
        ("UND-RESULT-NOT-PUBLISHED", [event("listing_closed", a, listing_id=unpublished.listing.id)],
         {str(unpublished.listing.id)}),
        ("UND-STATUS-WITHOUT-TRADE", [event("contract_recorded", a, contract_id=off.id)], set()),
    ]
    for rule_id, events, expected in cases:
        full = await run(db, rule_id)
        assert {f.subject_id for f in full} - expected, f"{rule_id}: the village has other findings"
        assert expected <= {f.subject_id for f in full}, rule_id
        assert facts(await on_events(db, rule_id, *events)) == facts(full, expected), (rule_id, events)
    # an event of a kind a rule cannot narrow by leaves it whole
    assert facts(await on_events(db, "UND-RENEWAL-WITHOUT-REBID", event("contract_recorded", a))) == facts(
        await run(db, "UND-RENEWAL-WITHOUT-REBID", Scope(village_codes=(a,))))
    assert str(other_renewal.id) in subjects(await run(db, "UND-RENEWAL-WITHOUT-REBID"))
