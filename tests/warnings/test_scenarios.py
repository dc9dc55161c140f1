"""The proof: on a generated scenario, the full scan finds the injected irregularities and little else.

Per family: recall = injected cases found / injected, a case being found when an alert of its own rule — or,
failing that, of another rule of the same family (counted and printed apart as "sibling") — names its
subject; precision = alerts whose subject is the subject of an injected case of the same family / all alerts
of that family on the scenario's villages. The issue's bar: recall ≥ 95 %, precision ≥ 90 %, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from sanzi.ledger.services.books import BooksService
from sanzi.platform.database import create_engine
from sanzi.warnings.models import Alert
from sanzi.warnings.scenarios import BID, ELECTION, UNDISCLOSED, Scenario, generate
from tests.conftest import create_database, load_villages, make_settings

SEED = 20260
FAMILIES = (BID, UNDISCLOSED, ELECTION)
SANZI = str(Path(sys.executable).parent / "sanzi")


def catalogue_ids() -> set[str]:
    from sanzi.warnings.rules import all_rules

    return {rule.id for rule in all_rules()}


async def build(url: str, seed: int = SEED) -> tuple[Scenario, list[tuple[str, str, str, str, str]], Any]:
    """Villages, the scenario and a full scan, committed; returns the truth, the alerts and the summary."""
    from sanzi.warnings.engine import scan

    await load_villages(url)
    engine = create_engine(make_settings(url))
    try:
        maker = async_sessionmaker(engine, expire_on_commit=False)
        async with maker() as session:
            scenario = await generate(session, seed)
            await session.commit()
        async with maker() as session:
            summary = await scan(session)
            await session.commit()
        return scenario, await alerts_of(url, scenario), summary
    finally:
        await engine.dispose()


async def alerts_of(url: str, scenario: Scenario) -> list[tuple[str, str, str, str, str]]:
    engine = create_engine(make_settings(url))
    try:
        async with async_sessionmaker(engine)() as session:
            rows = await session.execute(
                select(Alert.family, Alert.rule_id, Alert.subject_type, Alert.subject_id, Alert.explanation)
                .where(Alert.village_code.in_(scenario.villages))
                .order_by(Alert.rule_id, Alert.subject_type, Alert.subject_id)
            )
            return [tuple(row) for row in rows]  # type: ignore[misc]
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def scanned(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One scenario per backend, generated and scanned once for the tests of this module."""
    from tests.conftest import run_sync

    url, drop = create_database(backend, tmp_path_factory.mktemp("scenario"))
    scenario, alerts, summary = run_sync(lambda: build(url))
    yield url, scenario, alerts, summary
    drop()


def measure(scenario: Scenario, alerts: list[tuple[str, str, str, str, str]]) -> dict[str, dict[str, Any]]:
    """Per family: injected, alerts, true positives, found (by the case's own rule, or by a sibling rule)."""
    by_rule = {(rule, kind, subject) for _, rule, kind, subject, _ in alerts}
    table: dict[str, dict[str, Any]] = {}
    for family in FAMILIES:
        cases = [c for c in scenario.truth if c.family == family]
        subjects = {(c.subject_type, c.subject_id) for c in cases}
        mine = [a for a in alerts if a[0] == family]
        on_family = {(kind, subject) for _, _, kind, subject, _ in mine}
        exact = [c for c in cases if (c.rule_id, c.subject_type, c.subject_id) in by_rule]
        sibling = [c for c in cases if c not in exact and (c.subject_type, c.subject_id) in on_family]
        true_positives = [a for a in mine if (a[2], a[3]) in subjects]
        table[family] = {
            "injected": len(cases),
            "alerts": len(mine),
            "true_positives": len(true_positives),
            "found": len(exact) + len(sibling),
            "by_sibling": len(sibling),
            "missed": [c for c in cases if c not in exact and c not in sibling],
            "false": [a for a in mine if (a[2], a[3]) not in subjects],
            "precision": len(true_positives) / len(mine) if mine else 1.0,
            "recall": (len(exact) + len(sibling)) / len(cases) if cases else 1.0,
        }
    return table


def print_table(backend: str, table: dict[str, dict[str, Any]]) -> None:
    print(f"\nprecision / recall on scenario seed {SEED} ({backend})")
    header = ("injected", 9), ("alerts", 8), ("true pos", 9), ("precision", 10), ("recall", 8), ("sibling", 8)
    print(f"{'family':<12}" + "".join(f"{name:>{width}}" for name, width in header))
    for family, row in table.items():
        print(
            f"{family:<12}{row['injected']:>9}{row['alerts']:>8}{row['true_positives']:>9}"
            f"{row['precision']:>10.1%}{row['recall']:>8.1%}{row['by_sibling']:>8}"
        )
        for case in row["missed"]:
            print(f"    missed {case.rule_id} {case.subject_type} {case.subject_id} ({case.note})")
        for alert in row["false"]:
            print(f"    false  {alert[1]} {alert[2]} {alert[3]}: {alert[4][:160]}")


def print_rules(scenario: Scenario, alerts: list[tuple[str, str, str, str, str]]) -> None:
    """Per rule: cases injected, found by that very rule, and all its alerts on the scenario's villages."""
    raised = {(rule, kind, subject) for _, rule, kind, subject, _ in alerts}
    print(f"{'rule':<32}{'injected':>9}{'found':>7}{'alerts':>8}")
    for rule in sorted({c.rule_id for c in scenario.truth} | {a[1] for a in alerts}):
        cases = [c for c in scenario.truth if c.rule_id == rule]
        found = sum((rule, c.subject_type, c.subject_id) in raised for c in cases)
        print(f"{rule:<32}{len(cases):>9}{found:>7}{sum(a[1] == rule for a in alerts):>8}")


def test_every_rule_of_the_catalogue_is_injected_at_least_three_times(scanned: Any) -> None:
    _, scenario, _, _ = scanned
    per_rule = defaultdict(int)
    for case in scenario.truth:
        per_rule[case.rule_id] += 1
    known = catalogue_ids()
    assert known <= set(per_rule), f"rules with no injected case: {sorted(known - set(per_rule))}"
    assert all(n >= 3 for n in per_rule.values()), dict(per_rule)
    assert len({(c.subject_type, c.subject_id, c.rule_id) for c in scenario.truth}) == len(scenario.truth)


def test_precision_and_recall_per_family(scanned: Any, backend: str) -> None:
    _, scenario, alerts, _ = scanned
    table = measure(scenario, alerts)
    print_table(backend, table)
    print_rules(scenario, alerts)
    missing_rules = sorted({c.rule_id for c in scenario.truth} - catalogue_ids())
    incomplete = {c.family for c in scenario.truth if c.rule_id in missing_rules}
    ready = [f for f in FAMILIES if f not in incomplete]
    for family in ready:
        row = table[family]
        assert row["recall"] >= 0.95, f"{family}: recall {row['recall']:.1%}, missed {row['missed']}"
        assert row["precision"] >= 0.90, f"{family}: precision {row['precision']:.1%}, false {row['false']}"
    if missing_rules:
        pytest.skip(f"rules not implemented yet (their cases are injected): {', '.join(missing_rules)}")


def test_the_books_of_the_scenario_still_verify(scanned: Any) -> None:
    url, scenario, _, _ = scanned

    async def verify() -> list[Any]:
        engine = create_engine(make_settings(url))
        try:
            async with async_sessionmaker(engine)() as session:
                return [(code, failure) for code, failure in (await BooksService(session).verify_all())[1]
                        if code in scenario.villages]
        finally:
            await engine.dispose()

    from tests.conftest import run_sync

    assert run_sync(verify) == []


def test_a_second_scan_raises_nothing_new(scanned: Any) -> None:
    from sanzi.warnings.engine import scan
    from tests.conftest import run_sync

    url, scenario, alerts, first = scanned
    assert first.raised > 0

    async def again() -> Any:
        engine = create_engine(make_settings(url))
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                summary = await scan(session)
                await session.commit()
                return summary, await session.scalar(select(func.count()).select_from(Alert))
        finally:
            await engine.dispose()

    summary, total = run_sync(again)
    assert (summary.raised, summary.updated) == (0, 0)
    assert run_sync(lambda: alerts_of(url, scenario)) == alerts
    assert total >= len(alerts)


def test_the_same_seed_gives_the_same_truth_and_alerts(scanned: Any, backend: str, tmp_path: Path) -> None:
    from tests.conftest import run_sync

    _, scenario, alerts, _ = scanned
    url, drop = create_database(backend, tmp_path)
    try:
        again, again_alerts, _ = run_sync(lambda: build(url))
    finally:
        drop()
    assert again.truth == scenario.truth
    assert again.villages == scenario.villages and again.counts == scenario.counts
    assert [a[:4] for a in again_alerts] == [a[:4] for a in alerts]


def sanzi(database_url: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "SANZI_ENV": "test", "SANZI_VAR_DIR": str(tmp_path)}
    env["COLUMNS"] = "500"
    env.pop("REDIS_URL", None)
    return subprocess.run([SANZI, *args], env=env, capture_output=True, text=True, timeout=600)


def test_the_scenarios_command_writes_the_scenario_and_prints_its_truth(
    empty_database_url: str, tmp_path: Path
) -> None:
    assert sanzi(empty_database_url, "geography", "import", tmp_path=tmp_path).returncode == 0
    result = sanzi(empty_database_url, "warnings", "scenarios", "--seed", "7", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("scenario seed 7 as of ") and "12 villages in 2 townships" in lines[0]
    total = int(next(line for line in lines if line.startswith("injected truth:")).split()[2])
    per_rule = [line.split() for line in lines if line.startswith("  ")]
    assert sum(int(parts[-1]) for parts in per_rule) == total >= 3 * len(per_rule)
    assert {parts[0] for parts in per_rule} == set(FAMILIES)
    assert {parts[1] for parts in per_rule} >= catalogue_ids()

    async def listings() -> int:
        from sanzi.auction.models import Listing

        engine = create_engine(make_settings(empty_database_url))
        try:
            async with async_sessionmaker(engine)() as session:
                return await session.scalar(select(func.count()).select_from(Listing)) or 0
        finally:
            await engine.dispose()

    from tests.conftest import run_sync

    written = run_sync(listings)
    assert written > 100
    again = sanzi(empty_database_url, "warnings", "scenarios", "--seed", "7", tmp_path=tmp_path)
    assert again.returncode != 0 and "already" in again.stderr
    assert run_sync(listings) == written  # the refused second run wrote nothing
    too_few = sanzi(empty_database_url, "warnings", "scenarios", "--seed", "8", "--villages", "3", tmp_path=tmp_path)
    assert too_few.returncode == 2 and "--villages" in too_few.stderr
    assert run_sync(listings) == written
