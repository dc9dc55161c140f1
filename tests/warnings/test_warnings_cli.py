"""`sanzi warnings scan` and `sanzi warnings index` against a real, committed database."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from sanzi.platform.database import create_engine
from sanzi.warnings import engine as warnings_engine
from sanzi.warnings.cli import warnings_group
from sanzi.warnings.models import Alert, IntegrityIndex
from tests.conftest import VILLAGE_A, VILLAGE_B, load_villages, make_settings, run_sync
from tests.warnings.test_engine import TEST_RULES, add_contract


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(warnings_group, list(args), env={"DATABASE_URL": url, "SANZI_ENV": "test"})


def count(url: str, model: Any) -> int:
    async def work() -> int:
        engine = create_engine(make_settings(url))
        try:
            async with async_sessionmaker(engine)() as session:
                return await session.scalar(select(func.count()).select_from(model)) or 0
        finally:
            await engine.dispose()

    return run_sync(work)


@pytest.fixture
def data_url(empty_database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(warnings_engine, "all_rules", lambda: TEST_RULES)
    run_sync(lambda: load_villages(empty_database_url))

    async def work() -> None:
        engine = create_engine(make_settings(empty_database_url))
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                await add_contract(session, VILLAGE_A, 150_000)
                await add_contract(session, VILLAGE_A, 10)
                await add_contract(session, VILLAGE_B, 120_000)
                await session.commit()
        finally:
            await engine.dispose()

    run_sync(work)
    return empty_database_url


def test_scan_reports_per_rule_and_is_idempotent(data_url: str) -> None:
    first = invoke(data_url, "scan")
    assert first.exit_code == 0, first.output
    assert "TEST-BIG-CONTRACT" in first.output and "TEST-MANY-CONTRACTS" in first.output
    assert "3 raised, 0 updated, 0 unchanged" in first.output
    assert count(data_url, Alert) == 3 and count(data_url, IntegrityIndex) >= 1145

    second = invoke(data_url, "scan")
    assert second.exit_code == 0 and "0 raised, 0 updated, 3 unchanged" in second.output
    assert count(data_url, Alert) == 3


def test_scan_of_a_district_since_a_date_and_bad_input(data_url: str) -> None:
    for args, message in [
        (("--district", "999999"), "district not found"),
        (("--district", "44x"), "6, 9 or 12 digits"),
        (("--since", "2025-13-01"), "YYYY-MM-DD"),
    ]:
        result = invoke(data_url, "scan", *args)
        assert result.exit_code != 0 and message in result.output, result.output
    assert count(data_url, Alert) == 0 and count(data_url, IntegrityIndex) == 0

    future = invoke(data_url, "scan", "--since", "2030-01-01")
    assert future.exit_code == 0 and "0 raised" in future.output
    district = invoke(data_url, "scan", "--district", VILLAGE_B[:6])
    assert district.exit_code == 0 and "1 raised" in district.output


def test_index_for_a_month(data_url: str) -> None:
    bad = invoke(data_url, "index", "--month", "2025-1")
    assert bad.exit_code != 0 and "YYYY-MM" in bad.output
    assert count(data_url, IntegrityIndex) == 0
    assert invoke(data_url, "scan").exit_code == 0
    result = invoke(data_url, "index", "--month", "2025-03")
    assert result.exit_code == 0, result.output
    # the contracts were signed in March 2025: A has an orange and a yellow alert (100 − 15 − 5 = 80, yellow),
    # B one orange (85, still green)
    assert "integrity index 2025-03: 1145 villages (1144 green, 1 yellow, 0 orange, 0 red)" in result.output
