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
from sanzi.ledger.models import Contract
from sanzi.platform.events import DomainEvent
from sanzi.warnings.engine import GROUP
from sanzi.warnings.models import Alert, IntegrityIndex
from tests.conftest import VILLAGE_A, VILLAGE_B, make_settings, run_sync
from tests.warnings.test_engine import (  # noqa: F401 - fixtures
    TEST_RULES,
    committed_contracts_url,
    worker_redis,
)


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
def data_url(committed_contracts_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(warnings_engine, "all_rules", lambda: TEST_RULES)
    return committed_contracts_url


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
        (("--jobs", "0"), "'--jobs': 0 is not in the range"),
    ]:
        result = invoke(data_url, "scan", *args)
        assert result.exit_code != 0 and message in result.output, result.output
    assert count(data_url, Alert) == 0 and count(data_url, IntegrityIndex) == 0

    future = invoke(data_url, "scan", "--since", "2030-01-01")
    assert future.exit_code == 0 and "0 raised" in future.output
    district = invoke(data_url, "scan", "--district", VILLAGE_B[:6], "--jobs", "3")
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


# ---- `sanzi warnings worker` -------------------------------------------------------------------------------


def invoke_worker(url: str, redis_url: str, stream: str, *args: str) -> Result:
    env = {"DATABASE_URL": url, "SANZI_ENV": "test", "REDIS_URL": redis_url, "SANZI_WARNINGS_STREAM": stream}
    return CliRunner().invoke(warnings_group, ["worker", "--drain", "--linger-ms", "0", *args], env=env)


def _contract_ids(url: str) -> list[tuple[int, str]]:
    async def work() -> list[tuple[int, str]]:
        engine = create_engine(make_settings(url))
        try:
            async with async_sessionmaker(engine)() as session:
                return [tuple(row) for row in await session.execute(select(Contract.id, Contract.village_code).order_by(Contract.id))]
        finally:
            await engine.dispose()

    return run_sync(work)


def _publish(redis_url: str, stream: str, url: str, times: int = 1) -> int:
    """The events the app would have appended for the data's contracts (``times`` each); their count."""
    import redis

    client = redis.Redis.from_url(redis_url)
    n = 0
    for _ in range(times):
        for contract_id, village in _contract_ids(url):
            client.xadd(stream, DomainEvent("contract_recorded", village, {"contract_id": contract_id}).to_fields())
            n += 1
    return n


def _group(redis_url: str, stream: str) -> dict[str, Any]:
    import redis

    groups = redis.Redis.from_url(redis_url, decode_responses=True).xinfo_groups(stream)
    return next(g for g in groups if g["name"] == GROUP)


def alert_keys(url: str) -> list[tuple[str, str]]:
    async def work() -> list[tuple[str, str]]:
        engine = create_engine(make_settings(url))
        try:
            async with async_sessionmaker(engine)() as session:
                return [tuple(r) for r in await session.execute(select(Alert.rule_id, Alert.subject_id).order_by(Alert.rule_id, Alert.subject_id))]
        finally:
            await engine.dispose()

    return run_sync(work)


def test_the_worker_evaluates_the_stream_and_acknowledges(data_url: str, worker_redis: tuple[str, str]) -> None:
    redis_url, stream = worker_redis
    sent = _publish(redis_url, stream, data_url, times=2)
    result = invoke_worker(data_url, redis_url, stream, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert f"{sent} events in 2 batches" in result.output
    assert len(alert_keys(data_url)) == 3 and count(data_url, IntegrityIndex) >= 1  # as the full scan finds
    group = _group(redis_url, stream)
    assert group["pending"] == 0 and group["lag"] == 0
    again = invoke_worker(data_url, redis_url, stream)  # nothing new: nothing done
    assert again.exit_code == 0 and "0 events in 0 batches" in again.output


def test_without_redis_the_worker_refuses_to_start(data_url: str) -> None:
    result = CliRunner().invoke(warnings_group, ["worker"], env={"DATABASE_URL": data_url, "SANZI_ENV": "test", "REDIS_URL": ""})
    assert result.exit_code != 0 and "REDIS_URL" in result.output
    assert count(data_url, Alert) == 0


def test_entries_of_a_worker_killed_mid_batch_are_taken_over(
    data_url: str, worker_redis: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker dies while evaluating (nothing committed, nothing acknowledged); another claims its entries."""
    import asyncio

    redis_url, stream = worker_redis
    sent = _publish(redis_url, stream, data_url)
    started = {"n": 0}

    async def hang(*args: Any, **kwargs: Any) -> Any:
        started["n"] += 1
        await asyncio.sleep(3600)

    async def die_mid_batch() -> None:
        import redis.asyncio as aioredis

        settings = make_settings(data_url, REDIS_URL=redis_url, SANZI_WARNINGS_STREAM=stream)
        with monkeypatch.context() as patch:
            patch.setattr(warnings_engine, "evaluate_events", hang)
            task = asyncio.create_task(
                warnings_engine.run_worker(settings, consumer="doomed", linger=0, batch_size=100)
            )
            while not started["n"]:
                await asyncio.sleep(0.05)
            task.cancel()  # killed: the batch is neither committed nor acknowledged
            with pytest.raises(asyncio.CancelledError):
                await task
        client = aioredis.Redis.from_url(redis_url)
        try:
            pending = await client.xpending(stream, GROUP)
            assert pending["pending"] == sent and pending["consumers"] == [{"name": b"doomed", "pending": sent}]
        finally:
            await client.aclose()

    run_sync(die_mid_batch)
    assert alert_keys(data_url) == []
    # a worker that waits a minute before claiming does not take them yet
    patient = invoke_worker(data_url, redis_url, stream)
    assert patient.exit_code == 0 and "0 events" in patient.output and _group(redis_url, stream)["pending"] == sent
    result = invoke_worker(data_url, redis_url, stream, "--claim-idle-ms", "0", "--consumer", "heir")
    assert result.exit_code == 0, result.output
    assert f"{sent} events in 1 batches" in result.output
    assert _group(redis_url, stream)["pending"] == 0 and len(alert_keys(data_url)) == 3


def test_two_workers_on_one_village_keep_one_alert_per_subject(
    data_url: str, worker_redis: tuple[str, str]
) -> None:
    """Two consumers evaluating batches of the same villages at once: no duplicate alert, no lost event."""
    import asyncio

    redis_url, stream = worker_redis
    sent = _publish(redis_url, stream, data_url, times=20)
    settings = make_settings(data_url, REDIS_URL=redis_url, SANZI_WARNINGS_STREAM=stream)

    async def both() -> list[Any]:
        return await asyncio.gather(
            *(warnings_engine.run_worker(settings, drain=True, consumer=f"w{n}", linger=0, batch_size=3) for n in range(2))
        )

    totals = run_sync(both)
    assert sum(t.events for t in totals) == sent and all(t.dropped == 0 for t in totals)
    assert all(t.events for t in totals)  # both took part
    assert len(alert_keys(data_url)) == 3
    assert _group(redis_url, stream)["pending"] == 0
    rescan = invoke(data_url, "scan")
    assert "0 raised, 0 updated, 3 unchanged" in rescan.output


def test_the_worker_stops_cleanly_on_sigterm(data_url: str, worker_redis: tuple[str, str]) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import redis

    redis_url, stream = worker_redis
    env = {**os.environ, "DATABASE_URL": data_url, "SANZI_ENV": "test", "REDIS_URL": redis_url,
           "SANZI_WARNINGS_STREAM": stream, "LOG_LEVEL": "INFO"}
    code = "import sys; sys.argv[0] = 'sanzi'; from sanzi.platform.cli import main; main()"
    process = subprocess.Popen([sys.executable, "-c", code, "warnings", "worker"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if client.exists(stream) and client.xinfo_groups(stream):  # created once the signals are handled
                break
            time.sleep(0.2)
        else:
                raise AssertionError("the worker never joined the group")
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert b"stopped" in output and b"0 events in 0 batches" in output


def test_sanzi_run_offers_to_leave_the_worker_out() -> None:
    import subprocess

    from sanzi.platform.settings import PROJECT_ROOT

    result = subprocess.run([str(PROJECT_ROOT / ".venv/bin/sanzi"), "run", "--help"], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "SANZI_ENV": "test"}, cwd=PROJECT_ROOT)
    assert result.returncode == 0 and "--no-warnings-worker" in result.stdout, result.stdout + result.stderr


def test_an_event_that_always_fails_is_dropped_and_a_down_database_drops_nothing(
    data_url: str, worker_redis: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One bad event does not hold up its batch; when every evaluation fails the entries stay pending and are
    retried, until one has been delivered more than MAX_DELIVERIES times."""
    redis_url, stream = worker_redis
    sent = _publish(redis_url, stream, data_url)
    real = warnings_engine.evaluate_events

    async def village_b_fails(session: Any, batch: Any, rules: Any = None, **kwargs: Any) -> Any:
        if any(e.village_code == VILLAGE_B for e in batch):
            raise RuntimeError("boom")
        return await real(session, batch, rules, **kwargs)

    async def all_fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database down")

    monkeypatch.setattr(warnings_engine, "evaluate_events", all_fail)
    down = invoke_worker(data_url, redis_url, stream)
    assert down.exit_code == 0 and "0 events" in down.output
    assert _group(redis_url, stream)["pending"] == sent and alert_keys(data_url) == []

    monkeypatch.setattr(warnings_engine, "evaluate_events", village_b_fails)
    result = invoke_worker(data_url, redis_url, stream, "--claim-idle-ms", "0")
    assert result.exit_code == 0, result.output
    assert f"{sent} events in 1 batches, 1 dropped" in result.output
    assert _group(redis_url, stream)["pending"] == 0
    assert [subject for rule, subject in alert_keys(data_url) if rule == "TEST-MANY-CONTRACTS"] == [VILLAGE_A]

    # an entry that fails every time is given up after MAX_DELIVERIES deliveries
    _publish(redis_url, stream, data_url)
    monkeypatch.setattr(warnings_engine, "evaluate_events", all_fail)
    for _ in range(warnings_engine.MAX_DELIVERIES):
        assert invoke_worker(data_url, redis_url, stream, "--claim-idle-ms", "0").exit_code == 0
        assert _group(redis_url, stream)["pending"] == sent
    last = invoke_worker(data_url, redis_url, stream, "--claim-idle-ms", "0")
    assert last.exit_code == 0 and f"{sent} dropped" in last.output
    assert _group(redis_url, stream)["pending"] == 0
