"""`sanzi demo seed`: deterministic city-scale history that is plausible, verifies, and sets off the warning
rules where irregularities were injected. Small sizes, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from sanzi.ledger.services.books import BooksService
from sanzi.platform.database import create_engine
from sanzi.warnings.seed import TABLES, SeedError, SeedOptions, SeedReport, seed_history
from tests.conftest import create_database, load_villages, make_settings, run_sync

SANZI = str(Path(sys.executable).parent / "sanzi")
TODAY = date(2026, 6, 30)
#: three years up to today (the scan judges arrears as of today), with the 2026 election inside; two
#: townships' worth of villages; irregularities six times as often as by default
OPTIONS = SeedOptions(years=3, villages=30, seed=7, irregularity_rate=6.0)


async def seed(url: str, options: SeedOptions = OPTIONS) -> SeedReport:
    engine = create_engine(make_settings(url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            report = await seed_history(session, options)
            await session.commit()
            return report
    finally:
        await engine.dispose()


async def query(url: str, statement: str, **params: Any) -> list[Any]:
    engine = create_engine(make_settings(url))
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text(statement), params)).all())
    finally:
        await engine.dispose()


def rows(url: str, statement: str, **params: Any) -> list[Any]:
    return run_sync(lambda: query(url, statement, **params))


def table_counts(url: str) -> dict[str, int]:
    return {table.name: rows(url, f"SELECT count(*) FROM {table.name}")[0][0] for table in TABLES}


def digest(url: str) -> str:
    """A fingerprint of everything seeded: chain heads cover every journal entry, plus the trading rows."""
    parts = [
        rows(url, "SELECT v.code, c.chain_length, c.chain_head FROM collective c JOIN village v ON v.code = c.village_code"
                  " WHERE c.chain_length > 0 ORDER BY v.code"),
        rows(url, "SELECT number, status, starting_price_fen, final_price_fen, bid_count FROM listing ORDER BY number"),
        rows(url, "SELECT l.number, b.seq, b.amount_fen, b.placed_at FROM bid b JOIN listing l ON l.id = b.listing_id"
                  " ORDER BY l.number, b.seq"),
        rows(url, "SELECT number, counterparty_name, unit_price_fen, total_value_fen FROM contract ORDER BY number"),
        rows(url, "SELECT village_code, name, id_number, term_start FROM cadre ORDER BY village_code, term_start, name"),
        rows(url, "SELECT name, id_number, phone, bank_account FROM bidder ORDER BY id_number"),
    ]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


async def scan_all(url: str) -> None:
    from sanzi.warnings.engine import scan

    engine = create_engine(make_settings(url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            await scan(session)
            await session.commit()
    finally:
        await engine.dispose()


async def verify(url: str) -> tuple[int, list[Any]]:
    engine = create_engine(make_settings(url))
    try:
        async with async_sessionmaker(engine)() as session:
            return await BooksService(session).verify_all()
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def seeded(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One seeded and scanned database per backend for the tests of this module."""
    url, drop = create_database(backend, tmp_path_factory.mktemp("seed"))
    run_sync(lambda: load_villages(url))
    report = run_sync(lambda: seed(url))
    run_sync(lambda: scan_all(url))
    yield url, report
    drop()


def test_same_arguments_give_the_same_data(seeded: Any, backend: str, tmp_path: Path) -> None:
    url, report = seeded
    other, drop = create_database(backend, tmp_path)
    try:
        run_sync(lambda: load_villages(other))
        again = run_sync(lambda: seed(other))
        assert again.villages == report.villages
        assert again.truth == report.truth
        assert digest(other) == digest(url)
    finally:
        drop()


def test_every_domain_is_populated_and_the_chains_verify(seeded: Any) -> None:
    url, report = seeded
    counts = table_counts(url)
    assert all(counts[name] > 0 for name in counts), counts
    assert dict(report.rows) == {name: n for name, n in counts.items()}  # nothing else was there before
    checked, broken = run_sync(lambda: verify(url))
    assert checked == 1145 and broken == []
    # about 8 to 9 trades a village a year (10,000 a year across 1,145 villages), fewer in the lull before the
    # 2026 election
    listings = counts["listing"] / len(report.villages) / 3
    assert 4 <= listings <= 12, listings
    # every village's books have entries in every month of the three years
    months = rows(url, "SELECT c.village_code, count(DISTINCT substr(CAST(e.entry_date AS TEXT), 1, 7)) "
                       "FROM journal_entry e JOIN collective c ON c.id = e.collective_id GROUP BY c.village_code")
    assert len(months) == len(report.villages)
    expected = (report.today.year - report.first_day.year) * 12 + report.today.month
    assert all(n == expected for _, n in months), (expected, months)
    elections = rows(url, "SELECT DISTINCT substr(CAST(election_date AS TEXT), 1, 4) FROM election ORDER BY 1")
    assert [year for (year,) in elections] == ["2014", "2017", "2021", "2026"]
    per_election = rows(url, "SELECT election_id, count(*) FROM candidate GROUP BY election_id")
    assert len(per_election) == 4 * len(report.villages) and all(n == 9 for _, n in per_election)


def test_prices_areas_and_bids_are_plausible(seeded: Any) -> None:
    url, _ = seeded
    per_mu = rows(url, "SELECT a.kind, c.unit_price_fen, a.area FROM contract c JOIN asset a ON a.id = c.asset_id "
                       "WHERE c.price_basis = 'per_mu_year' AND c.origin = 'auction'")
    bands = {"farmland": (300, 4_000), "fish_pond": (600, 6_000), "forest": (80, 1_000),
             "construction_land": (8_000, 60_000)}  # yuan per mu per year
    found = {kind for kind, _, _ in per_mu}
    assert found == set(bands), found
    outside = [(kind, price) for kind, price, _ in per_mu
               if not bands[kind][0] * 100 <= price <= bands[kind][1] * 100]
    # only the lots sold far below the market (injected) fall under the band
    assert len(outside) <= len(per_mu) * 0.02, outside[:5]
    per_m2 = rows(url, "SELECT a.kind, c.unit_price_fen, a.area FROM contract c JOIN asset a ON a.id = c.asset_id "
                       "WHERE a.kind IN ('shop', 'building') AND c.origin = 'auction'")
    yuan_per_m2 = [(kind, price / 100 / float(area)) for kind, price, area in per_m2]
    assert all(50 <= value <= 1_200 for _, value in yuan_per_m2), min(yuan_per_m2, key=lambda item: item[1])
    areas = rows(url, "SELECT kind, min(area), max(area) FROM asset GROUP BY kind")
    for kind, low, high in areas:
        assert 0 < float(low) <= float(high) <= 3_000, (kind, low, high)
    # money is integer fen; bids of a listing rise (an injected identical pair may repeat an amount)
    falling = rows(url, "SELECT count(*) FROM bid b JOIN bid p ON p.listing_id = b.listing_id AND p.seq = b.seq - 1 "
                        "WHERE b.amount_fen < p.amount_fen")
    assert falling[0][0] == 0
    unbalanced = rows(url, "SELECT entry_id FROM journal_line GROUP BY entry_id "
                           "HAVING sum(debit_fen) <> sum(credit_fen)")
    assert unbalanced == []
    winners = rows(url, "SELECT count(*) FROM listing WHERE status = 'sold' AND (winner_registration_id IS NULL "
                        "OR contract_id IS NULL OR final_price_fen < starting_price_fen)")
    assert winners[0][0] == 0
    deposits = rows(url, "SELECT count(*) FROM registration WHERE deposit_entry_id IS NULL "
                         "OR deposit_settlement_entry_id IS NULL")
    assert deposits[0][0] == 0


def test_the_scan_finds_the_injected_irregularities(seeded: Any) -> None:
    url, report = seeded
    alerts = {(rule, subject) for rule, subject in rows(url, "SELECT rule_id, subject_id FROM alert")}
    families = {(family, subject) for family, subject in rows(url, "SELECT family, subject_id FROM alert")}
    injected = report.truth
    assert len({case.rule_id for case in injected}) >= 12, report.injected()
    missed = [case for case in injected if (case.rule_id, case.subject_id) not in alerts
              and (case.family, case.subject_id) not in families]
    assert len(missed) <= len(injected) * 0.05, missed
    # and the clean background stays mostly quiet: few alerts beyond the injected cases' subjects
    subjects = {case.subject_id for case in injected}
    total = rows(url, "SELECT count(*) FROM alert")[0][0]
    extra = [row for row in rows(url, "SELECT rule_id, subject_id FROM alert") if row[1] not in subjects]
    assert len(extra) <= total * 0.25, extra[:10]


def test_a_second_seed_is_refused_and_writes_nothing(seeded: Any) -> None:
    url, _ = seeded
    before = table_counts(url)
    with pytest.raises(SeedError, match="--append"):
        run_sync(lambda: seed(url, SeedOptions(years=1, villages=12, seed=8, today=TODAY)))
    with pytest.raises(SeedError, match="--years"):
        run_sync(lambda: seed(url, SeedOptions(years=0, villages=12, seed=8, today=TODAY, append=True)))
    with pytest.raises(SeedError, match="--villages"):
        run_sync(lambda: seed(url, SeedOptions(years=1, villages=5000, seed=8, today=TODAY, append=True)))
    assert table_counts(url) == before


def run_cli(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "DATABASE_URL": url, "SANZI_ENV": "test", "SANZI_SCHEDULER": "0", **(env or {})}
    return subprocess.run([SANZI, "demo", "seed", *args], check=False, capture_output=True, text=True,
                          env=environment, timeout=600)


def test_the_command_appends_verifies_and_refuses_bad_input(empty_database_url: str) -> None:
    url = empty_database_url
    empty = table_counts(url)
    no_villages = run_cli(url, "--years", "1", "--villages", "12", "--seed", "3")
    assert no_villages.returncode != 0 and "sanzi geography import" in no_villages.stderr
    run_sync(lambda: load_villages(url))
    for bad, named in ((["--years", "0"], "--years"), (["--villages", "abc"], "--villages"),
                       (["--villages", "0"], "--villages"), (["--scale", "0"], "--scale"),
                       (["--seed", "-1"], "--seed"), (["--today", "2026-13-01"], "--today")):
        result = run_cli(url, *bad)
        assert result.returncode != 0, bad
        assert named in result.stderr, (bad, result.stderr)
    production = run_cli(url, "--years", "1", "--villages", "12", env={"SANZI_ENV": "production", "SECRET_KEY": "x"})
    assert production.returncode != 0 and "production" in production.stderr
    assert table_counts(url) == empty
    first = run_cli(url, "--years", "1", "--villages", "12", "--seed", "3", "--today", "2026-06-30")
    assert first.returncode == 0, first.stderr
    assert "listing" in first.stdout and "rows in" in first.stdout
    seeded_counts = table_counts(url)
    again = run_cli(url, "--years", "1", "--villages", "12", "--seed", "3", "--today", "2026-06-30")
    assert again.returncode != 0 and "--append" in again.stderr
    skipped = run_cli(url, "--years", "1", "--villages", "12", "--seed", "3", "--if-empty")
    assert skipped.returncode == 0 and "skipped" in skipped.stdout
    assert table_counts(url) == seeded_counts
    # the same seed again: the second run builds on the recorded cadres and election calendar
    appended = run_cli(url, "--years", "1", "--villages", "12", "--seed", "3", "--scale", "2", "--append",
                       "--today", "2026-06-30")
    assert appended.returncode == 0, appended.stderr
    after = table_counts(url)
    assert after["listing"] > 2 * seeded_counts["listing"]
    assert all(after[name] == seeded_counts[name] for name in ("election", "candidate", "cadre", "cadre_relative"))
    checked, broken = run_sync(lambda: verify(url))
    assert checked == 1145 and broken == []
    verified = subprocess.run([SANZI, "ledger", "verify"], check=False, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "DATABASE_URL": url, "SANZI_ENV": "test"})
    assert verified.returncode == 0 and "1145 chains verified" in verified.stdout


def test_without_superuser_rights_the_journal_triggers_stay_on(backend: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A role that may not skip triggers turns only the two balance triggers off inside the load's transaction
    and checks balances set-based; afterwards the triggers are on again and the books verify."""
    if backend != "postgres":
        pytest.skip("PostgreSQL only: SQLite has no balance triggers")
    from sanzi.warnings.seed import CitySeed

    async def no_superuser(self: CitySeed) -> bool:
        return False

    monkeypatch.setattr(CitySeed, "skip_row_triggers", no_superuser)
    url, drop = create_database(backend, tmp_path)
    try:
        run_sync(lambda: load_villages(url))
        report = run_sync(lambda: seed(url, SeedOptions(years=1, villages=12, seed=5)))
        assert report.rows["journal_line"] > 0
        states = rows(url, "SELECT tgname, CAST(tgenabled AS TEXT) FROM pg_trigger WHERE tgname LIKE 'journal_%_balanced'")
        assert sorted(states) == [("journal_entry_balanced", "O"), ("journal_line_balanced", "O")]
        checked, broken = run_sync(lambda: verify(url))
        assert checked == 1145 and broken == []
    finally:
        drop()
