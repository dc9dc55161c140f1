"""The payment schedule as pure functions: amounts, rounding, step-ups, partial years and dates."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from sanzi.ledger.models import PriceBasis
from sanzi.ledger.schemas.contracts import PaymentFrequency
from sanzi.ledger.services.contracts import (
    StepUpTerm,
    add_months,
    apply_receipts,
    build_schedule,
    contract_end,
    yearly_amounts,
)

START = date(2024, 1, 1)


def amounts(schedule) -> list[int]:
    return [item.amount_fen for item in schedule]


def test_per_mu_year_with_a_step_up() -> None:
    # 10 mu at ¥800 per mu per year for 10 years, +5 % from year 5 on
    schedule = build_schedule(
        START,
        120,
        PriceBasis.PER_MU_YEAR,
        800_00,
        PaymentFrequency.ANNUAL,
        Decimal("10"),
        [StepUpTerm(5, Decimal(5))],
    )
    assert amounts(schedule) == [8000_00] * 4 + [8400_00] * 6
    assert [item.due_date for item in schedule] == [date(2024 + n, 1, 1) for n in range(10)]
    assert schedule[-1].period_end == date(2033, 12, 31) == contract_end(START, 120)


def test_step_ups_compound_and_round_half_up_once_per_year() -> None:
    # 2.5 mu at ¥333.33: 83,332.5 fen a year rounds half-up to 83,333 (banker's rounding would give 83,332)
    steps = [StepUpTerm(3, Decimal(5)), StepUpTerm(5, Decimal(10))]
    years = yearly_amounts(Decimal(333_33) * Decimal("2.5"), 72, steps)
    assert years[:2] == [83_333, 83_333]
    assert years[2:4] == [87_499, 87_499]  # 83,332.5 × 1.05 = 87,499.125
    assert years[4:] == [96_249, 96_249]  # 83,332.5 × 1.05 × 1.10 = 96,249.0375: compounded, not 1.15


def test_total_price_puts_the_remainder_on_the_last_installment() -> None:
    schedule = build_schedule(START, 36, PriceBasis.TOTAL, 100_000_01, PaymentFrequency.ANNUAL)
    assert amounts(schedule) == [33_333_33, 33_333_33, 33_333_35]
    assert sum(amounts(schedule)) == 100_000_01


def test_total_price_paid_once() -> None:
    schedule = build_schedule(START, 240, PriceBasis.TOTAL, 5_000_000_00, PaymentFrequency.ONCE)
    assert len(schedule) == 1
    assert schedule[0].amount_fen == 5_000_000_00
    assert (schedule[0].period_start, schedule[0].period_end) == (START, date(2043, 12, 31))


def test_quarterly_installments_and_their_periods() -> None:
    schedule = build_schedule(START, 12, PriceBasis.PER_YEAR, 100_000_01, PaymentFrequency.QUARTERLY)
    assert [(i.period_start, i.period_end, i.due_date) for i in schedule] == [
        (date(2024, 1, 1), date(2024, 3, 31), date(2024, 1, 1)),
        (date(2024, 4, 1), date(2024, 6, 30), date(2024, 4, 1)),
        (date(2024, 7, 1), date(2024, 9, 30), date(2024, 7, 1)),
        (date(2024, 10, 1), date(2024, 12, 31), date(2024, 10, 1)),
    ]
    # 10,000,001 fen a year accrues 2,500,000.25 / 5,000,000.5 / 7,500,000.75 fen by the quarters' ends
    assert amounts(schedule) == [2_500_000, 2_500_001, 2_500_000, 2_500_000]
    assert [i.seq for i in schedule] == [1, 2, 3, 4]


def test_a_partial_last_year_is_pro_rated_by_months() -> None:
    schedule = build_schedule(
        START,
        30,
        PriceBasis.PER_YEAR,
        12_000_00,
        PaymentFrequency.ANNUAL,
        step_ups=[StepUpTerm(3, Decimal(10))],
    )
    assert amounts(schedule) == [12_000_00, 12_000_00, 6_600_00]  # half of 13,200
    assert (schedule[-1].period_start, schedule[-1].period_end) == (date(2026, 1, 1), date(2026, 6, 30))


def test_monthly_periods_stay_on_the_start_day_and_clamp_to_month_ends() -> None:
    schedule = build_schedule(date(2024, 1, 31), 3, PriceBasis.PER_YEAR, 12_000_00, PaymentFrequency.MONTHLY)
    assert [i.due_date for i in schedule] == [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31)]
    assert [i.period_end for i in schedule] == [date(2024, 2, 28), date(2024, 3, 30), date(2024, 4, 29)]
    assert amounts(schedule) == [1_000_00] * 3


def test_receipts_pay_the_oldest_installments_first() -> None:
    assert apply_receipts([100, 100, 100], 150) == [100, 50, 0]
    assert apply_receipts([100, 100], 0) == [0, 0]
    assert apply_receipts([100, 100], 200) == [100, 100]


frequencies = st.sampled_from(list(PaymentFrequency))
step_up_lists = st.lists(
    st.builds(StepUpTerm, st.integers(2, 50), st.decimals("0.01", "100", places=2)),
    max_size=4,
    unique_by=lambda s: s.from_year,
)


@settings(max_examples=300, deadline=None)
@given(
    start=st.dates(date(2000, 1, 1), date(2060, 12, 31)),
    term=st.integers(1, 600),
    basis=st.sampled_from(list(PriceBasis)),
    price=st.integers(1, 10**11),
    area=st.decimals("0.01", "100000", places=2),
    frequency=frequencies,
    step_ups=step_up_lists,
)
def test_the_installments_always_sum_to_the_total_and_cover_the_term(
    start, term, basis, price, area, frequency, step_ups
) -> None:
    step_ups = [] if basis == PriceBasis.TOTAL else [s for s in step_ups if s.from_year <= -(-term // 12)]
    schedule = build_schedule(start, term, basis, price, frequency, area, step_ups)
    if basis == PriceBasis.TOTAL:
        expected = price
    else:
        base = Decimal(price) * (area if basis == PriceBasis.PER_MU_YEAR else 1)
        expected = sum(yearly_amounts(base, term, step_ups))
    assert sum(amounts(schedule)) == expected
    assert all(amount >= 0 for amount in amounts(schedule))
    # contiguous periods from the start to the contract's last day, each due on its first day
    assert schedule[0].period_start == start
    assert schedule[-1].period_end == contract_end(start, term)
    for earlier, later in zip(schedule, schedule[1:], strict=False):
        assert later.period_start == earlier.period_end + timedelta(days=1)
    assert all(item.due_date == item.period_start for item in schedule)
    assert [item.seq for item in schedule] == list(range(1, len(schedule) + 1))


@given(years=st.integers(1, 50), price=st.integers(1, 10**10), frequency=frequencies)
def test_whole_years_without_step_ups_cost_the_yearly_price_each_year(years, price, frequency) -> None:
    schedule = build_schedule(START, years * 12, PriceBasis.PER_YEAR, price, frequency)
    assert sum(amounts(schedule)) == price * years
    per_year = {}
    for item in schedule:
        per_year[item.period_start.year] = per_year.get(item.period_start.year, 0) + item.amount_fen
    if frequency != PaymentFrequency.ONCE:
        assert set(per_year.values()) == {price}


@given(day=st.dates(date(1990, 1, 1), date(2090, 12, 31)), months=st.integers(0, 1200))
def test_add_months_keeps_the_day_or_clamps_it(day, months) -> None:
    later = add_months(day, months)
    assert (later.year - day.year) * 12 + later.month - day.month == months
    assert later.day == day.day or (later.day < day.day and (later + timedelta(days=1)).day == 1)
