"""`sanzi import` and `sanzi export` against real, committed databases; the round trip of a whole scenario."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from sanzi.interchange.cli import export_command, import_command
from sanzi.ledger.models import Contract
from sanzi.ledger.services.books import BooksService
from sanzi.platform.database import create_engine
from sanzi.warnings.cli import warnings_group
from sanzi.warnings.models import Alert
from sanzi.warnings.scenarios import generate
from tests.conftest import VILLAGE_A, create_database, load_villages, make_settings, run_sync
from tests.interchange.dataset import records, sources, table_counts, write_dir


def invoke(command: Any, url: str, *args: str) -> Result:
    return CliRunner().invoke(command, list(args), env={"DATABASE_URL": url, "SANZI_ENV": "test"})


def query(url: str, work: Any) -> Any:
    async def run() -> Any:
        engine = create_engine(make_settings(url))
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return run_sync(run)


@pytest.fixture
def city_url(empty_database_url: str) -> str:
    run_sync(lambda: load_villages(empty_database_url))
    return empty_database_url


def test_dry_run_import_again_and_bad_input_from_the_command_line(city_url: str, tmp_path: Path) -> None:
    folder = write_dir(tmp_path / "old-system", sources(records(), jsonl=("bids",)))
    before = query(city_url, table_counts)

    dry = invoke(import_command, city_url, str(folder), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "dry run: no problems in 20 records; nothing written" in dry.output
    assert query(city_url, table_counts) == before

    first = invoke(import_command, city_url, str(folder), "--report", str(tmp_path / "report.json"))
    assert first.exit_code == 0, first.output
    assert "imported 20 new records (0 unchanged)" in first.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["valid"] and report["written"]["listings"] == 1
    after = query(city_url, table_counts)
    assert after["journal_entry"] == before["journal_entry"] + 3

    second = invoke(import_command, city_url, str(folder))
    assert second.exit_code == 0 and "imported 0 new records (20 unchanged)" in second.output
    assert query(city_url, table_counts) == after

    broken = records("BAD")
    broken["cadres"][1]["term_start"] = "2021-02-29"
    broken["book_entries"][0]["debit_fen"] = "100.5"
    bad = invoke(import_command, city_url, str(write_dir(tmp_path / "bad", sources(broken))))
    assert bad.exit_code == 1
    assert (
        "cadres.csv:3 [term_start] 日期「2021-02-29」不存在 / '2021-02-29' is not a real date" in bad.output
    )
    assert "book_entries.csv:2 [debit_fen]" in bad.output and "whole fen" in bad.output
    assert "2 problems; nothing was written" in bad.output
    assert query(city_url, table_counts) == after

    # the warning scan sees the imported direct contract above the trading threshold
    scan = invoke(warnings_group, city_url, "scan")
    assert scan.exit_code == 0, scan.output

    async def flagged(session: Any) -> set[str]:
        direct = await session.scalar(select(Contract.id).where(Contract.number == "OLD-HT-02"))
        rows = await session.scalars(select(Alert.subject_id).where(Alert.rule_id == "UND-OFF-PLATFORM"))
        return {str(direct)} & set(rows)

    assert len(query(city_url, flagged)) == 1


def test_export_filters_and_refuses_bad_options(city_url: str, tmp_path: Path) -> None:
    assert (
        invoke(import_command, city_url, str(write_dir(tmp_path / "in", sources(records())))).exit_code == 0
    )
    out = tmp_path / "out"
    result = invoke(export_command, city_url, str(out), "--village", VILLAGE_A, "--since", "2019-06-01")
    assert result.exit_code == 0, result.output
    contracts = (out / "contracts.csv").read_text().splitlines()
    assert len(contracts) == 2 and contracts[1].startswith("OLD-H2,")  # signed 2019-12-20; OLD-H1 before
    entries = (out / "book_entries.csv").read_text()
    assert "OLD-J2" in entries and "OLD-J1" not in entries and "OLD-J3" not in entries
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == {
        "format": "sanzi-interchange",
        "format_version": 1,
        "village": VILLAGE_A,
        "since": "2019-06-01",
    }
    for args, words in (
        (("--village", "1234"), "12 digits"),
        (("--village", "440111999999"), "no village"),
        (("--since", "2019-13-01"), "YYYY-MM-DD"),
    ):
        refused = invoke(export_command, city_url, str(tmp_path / "x"), *args)
        assert refused.exit_code != 0 and words in refused.output, refused.output


def test_an_import_of_an_export_reproduces_the_same_data(city_url: str, backend: str, tmp_path: Path) -> None:
    """Years of a scenario's trades and books (and an earlier import): out, into a fresh database, out."""

    async def fill(session: Any) -> int:
        await generate(session, 7, villages=12, years=10)
        return await session.scalar(select(func.count()).select_from(Contract)) or 0

    contracts = query(city_url, fill)
    assert (
        invoke(import_command, city_url, str(write_dir(tmp_path / "in", sources(records())))).exit_code == 0
    )
    first, second = tmp_path / "first", tmp_path / "second"
    assert invoke(export_command, city_url, str(first)).exit_code == 0

    fresh_url, drop = create_database(backend, tmp_path)
    try:
        run_sync(lambda: load_villages(fresh_url))
        loaded = invoke(import_command, fresh_url, str(first))
        assert loaded.exit_code == 0, loaded.output
        assert invoke(export_command, fresh_url, str(second)).exit_code == 0
        names = sorted(path.name for path in first.iterdir())
        assert names == sorted(path.name for path in second.iterdir()) and len(names) == 12
        for name in names:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
        assert len((first / "contracts.csv").read_text().splitlines()) == contracts + 2 + 1

        async def verify(session: Any) -> tuple[int, list[Any]]:
            return await BooksService(session).verify_all()

        checked, broken = query(fresh_url, verify)
        assert checked == 1145 and broken == []

        # the same data as JSON Lines is the same content: importing it changes nothing
        jsonl = tmp_path / "jsonl"
        assert invoke(export_command, fresh_url, str(jsonl), "--format", "jsonl").exit_code == 0
        before = query(fresh_url, table_counts)
        again = invoke(import_command, fresh_url, str(jsonl))
        assert again.exit_code == 0 and "imported 0 new records" in again.output, again.output
        assert query(fresh_url, table_counts) == before
    finally:
        drop()
