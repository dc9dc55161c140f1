"""The portable quartiles and fences agree with Python's interpolation on both databases."""

from __future__ import annotations

import statistics
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import literal, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.warnings.rules.stats import (
    add_days,
    as_date,
    china_date,
    day_number,
    days_between,
    quartile_fences,
)


def values_select(rows: list[tuple[str, float | None]]):
    """A literal table (grp, value) as a UNION ALL of one-row selects."""
    parts = [select(literal(g).label("grp"), literal(v).label("value")) for g, v in rows]
    return union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()


def expected(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = (
        statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    )
    return q1, median, q3


async def fences(db: AsyncSession, rows: list[tuple[str, float | None]]) -> dict[str, tuple]:
    result = await db.execute(quartile_fences(values_select(rows), ["grp"]))
    return {row.grp: row for row in result}


async def test_quartiles_interpolate_linearly_per_group(db: AsyncSession) -> None:
    rows = [("a", v) for v in (1.0, 2.0, 3.0, 4.0)] + [("b", v) for v in (10.0, 30.0, 20.0, 100.0, 40.0)]
    rows.append(("b", None))
    found = await fences(db, rows)
    a, b = found["a"], found["b"]
    assert (a.n, a.q1, a.median, a.q3) == (4, 1.75, 2.5, 3.25)
    assert a.lower_fence == pytest.approx(1.75 - 1.5 * 1.5) and a.upper_fence == pytest.approx(
        3.25 + 1.5 * 1.5
    )
    assert (b.n, b.q1, b.median, b.q3) == (5, 20.0, 30.0, 40.0)
    assert (b.lower_fence, b.upper_fence) == (-10.0, 70.0)


async def test_a_single_value_is_its_own_quartiles(db: AsyncSession) -> None:
    found = await fences(db, [("a", 7.0)])
    assert (found["a"].n, found["a"].q1, found["a"].median, found["a"].q3) == (1, 7.0, 7.0, 7.0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=30))
async def test_quartiles_match_python(db: AsyncSession, values: list[int]) -> None:
    # read-only, so one session serves every example
    found = (await fences(db, [("g", float(v)) for v in values]))["g"]
    q1, median, q3 = expected([float(v) for v in values])
    assert found.n == len(values)
    assert (found.q1, found.median, found.q3) == (pytest.approx(q1), pytest.approx(median), pytest.approx(q3))


async def test_days_between_and_as_date(db: AsyncSession) -> None:
    start, end = datetime(2024, 3, 1, 12, tzinfo=UTC), datetime(2024, 3, 6, 0, tzinfo=UTC)
    row = (await db.execute(select(days_between(literal(start), literal(end)), as_date(literal(end))))).one()
    assert row[0] == pytest.approx(4.5)
    assert str(row[1]) == "2024-03-06"


async def test_day_number_add_days_and_china_date(db: AsyncSession) -> None:
    evening = datetime(2024, 3, 5, 16, 30, tzinfo=UTC)  # 00:30 on 6 March in China
    row = (await db.execute(select(
        day_number(literal(date(2024, 3, 1))), add_days(literal(date(2024, 3, 1)), -1),
        add_days(literal(date(2024, 2, 28)), literal(2) - 1),
        china_date(literal(evening)),
        as_date(literal(evening)),
    ))).one()
    assert row[0] == (date(2024, 3, 1) - date(1970, 1, 1)).days
    assert [str(v) for v in row[1:]] == ["2024-02-29", "2024-02-29", "2024-03-06", "2024-03-05"]
