"""Portable SQL helpers for the rules (one home, SQLite and PostgreSQL): quartiles and Tukey fences per group,
date and day arithmetic, id lists.

Quartiles are interpolated linearly between order statistics (numpy's default, PostgreSQL's
``percentile_cont``), computed with ``row_number()``/``count()`` windows because SQLite has no
``percentile_cont``; the fences are Q1 − 1.5·IQR and Q3 + 1.5·IQR, as Cardinal uses for its red flags.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Float, and_, case, cast, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement, FromClause, Select
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Date, Integer, String


def quartile_fences(
    values: Select | FromClause,
    group_columns: Sequence[str] = (),
    value_column: str = "value",
    factor: float = 1.5,
) -> Select:
    """Per group of ``values``: n, q1, median, q3, lower_fence, upper_fence (floats; NULL values ignored).

    ``values`` is a select (or subquery/CTE) with the group columns and a numeric ``value_column``; the
    result is a select with the same group columns, usable as a subquery and joined back to the subjects.
    """
    source = values.subquery() if isinstance(values, Select) else values
    groups = [source.c[name] for name in group_columns]
    value = cast(source.c[value_column], Float)
    ranked = (
        select(
            *groups,
            value.label("v"),
            func.row_number().over(partition_by=groups or None, order_by=value).label("rn"),
            func.count().over(partition_by=groups or None).label("n"),
        )
        .where(source.c[value_column].is_not(None))
        .subquery("ranked")
    )
    n = ranked.c.n

    def quartile(quarters: int) -> ColumnElement[float]:
        # position (0-based) quarters*(n-1)/4 = whole + fraction/4, in integer arithmetic on both databases
        scaled = n * quarters - quarters
        whole = (scaled - scaled % 4) / 4  # exact: both databases divide integers as integers
        fraction = cast(scaled % 4, Float) / 4.0
        low = func.max(case((ranked.c.rn == whole + 1, ranked.c.v)))
        high = func.max(case((ranked.c.rn == whole + 2, ranked.c.v)))
        return low + func.coalesce(func.max(fraction) * (high - low), 0.0)

    by_group = [ranked.c[name] for name in group_columns]
    aggregated = (
        select(
            *by_group,
            func.max(n).label("n"),
            quartile(1).label("q1"),
            quartile(2).label("median"),
            quartile(3).label("q3"),
        )
        .group_by(*by_group)
        .subquery("quartiles")
    )
    iqr = aggregated.c.q3 - aggregated.c.q1
    return select(
        *[aggregated.c[name] for name in group_columns],
        aggregated.c.n,
        aggregated.c.q1,
        aggregated.c.median,
        aggregated.c.q3,
        (aggregated.c.q1 - factor * iqr).label("lower_fence"),
        (aggregated.c.q3 + factor * iqr).label("upper_fence"),
    )


class as_date(FunctionElement):
    """The calendar date (UTC) of a timestamp: ``date(x)`` on SQLite, ``CAST(x AS DATE)`` elsewhere."""

    type = Date()
    inherit_cache = True


@compiles(as_date)
def _as_date_default(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"CAST({compiler.process(element.clauses, **kw)} AS DATE)"


@compiles(as_date, "sqlite")
def _as_date_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"date({compiler.process(element.clauses, **kw)})"


class days_between(FunctionElement):
    """Days (fractional) from the first timestamp or date to the second."""

    type = Float()
    inherit_cache = True


@compiles(days_between)
def _days_between_default(element, compiler, **kw):  # type: ignore[no-untyped-def]
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"(EXTRACT(EPOCH FROM (CAST({end} AS TIMESTAMPTZ) - CAST({start} AS TIMESTAMPTZ))) / 86400.0)"


@compiles(days_between, "sqlite")
def _days_between_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"(julianday({end}) - julianday({start}))"


def within_days(earlier: ColumnElement, later: ColumnElement, days: float) -> ColumnElement[bool]:
    """``earlier`` is at most ``days`` days before ``later`` (and not after it)."""
    return and_(days_between(earlier, later) >= 0, days_between(earlier, later) <= days)


class day_number(FunctionElement):  # noqa: N801 - reads like a SQL function
    """Days since 1970-01-01 of a date (an integer), so date differences are plain subtraction."""

    type = Integer()
    inherit_cache = True


@compiles(day_number)
def _day_number_pg(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"(CAST({compiler.process(element.clauses, **kw)} AS DATE) - DATE '1970-01-01')"


@compiles(day_number, "sqlite")
def _day_number_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    # julianday of a midnight is n.5; the cast truncates to the day; 2440587 is 1970-01-01
    return f"(CAST(julianday({compiler.process(element.clauses, **kw)}) AS INTEGER) - 2440587)"


class add_days(FunctionElement):  # noqa: N801
    """A date plus a (possibly negative, possibly computed) number of days, still a date."""

    type = Date()
    inherit_cache = True


@compiles(add_days)
def _add_days_pg(element, compiler, **kw):  # type: ignore[no-untyped-def]
    value, days = (compiler.process(c, **kw) for c in element.clauses)
    return f"(CAST({value} AS DATE) + CAST({days} AS INTEGER))"


@compiles(add_days, "sqlite")
def _add_days_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    value, days = (compiler.process(c, **kw) for c in element.clauses)
    return f"date({value}, CAST(CAST({days} AS INTEGER) AS TEXT) || ' days')"


class china_date(FunctionElement):  # noqa: N801
    """The calendar date in China (UTC+8, no daylight saving) of a UTC timestamp."""

    type = Date()
    inherit_cache = True


@compiles(china_date)
def _china_date_pg(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"CAST(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'Asia/Shanghai' AS DATE)"


@compiles(china_date, "sqlite")
def _china_date_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"date({compiler.process(element.clauses, **kw)}, '+8 hours')"


class id_list(FunctionElement):
    """An aggregate: the distinct values of a column joined by commas (``group_concat`` / ``string_agg``);
    read back with :func:`parse_ids`."""

    type = String()
    inherit_cache = True


@compiles(id_list)
def _id_list_default(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"string_agg(DISTINCT CAST({compiler.process(element.clauses, **kw)} AS TEXT), ',')"


@compiles(id_list, "sqlite")
def _id_list_sqlite(element, compiler, **kw):  # type: ignore[no-untyped-def]
    return f"group_concat(DISTINCT {compiler.process(element.clauses, **kw)})"


def parse_ids(text: str | None) -> list[int]:
    """The sorted integers of an :class:`id_list` value."""
    return sorted({int(part) for part in (text or "").split(",") if part})


__all__ = [
    "add_days",
    "as_date",
    "china_date",
    "day_number",
    "days_between",
    "id_list",
    "parse_ids",
    "quartile_fences",
    "within_days",
]
