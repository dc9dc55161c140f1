"""The engine: one alert per rule and subject, updated as evidence grows; idempotent scans; parameters per
district; incremental evaluation in the background after commits, with the same results as a full scan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from sanzi.ledger.models import Contract
from sanzi.platform import events
from sanzi.platform.app import create_app
from sanzi.platform.auth import issue_token
from sanzi.platform.database import create_engine
from sanzi.platform.models import Collective, Role, User
from sanzi.platform.parameters import Parameter, register, set_parameter
from sanzi.warnings import engine as warnings_engine
from sanzi.warnings.models import Alert, AlertEvent, Severity
from sanzi.warnings.rules.base import Family, Finding, Rule, Scope
from tests.conftest import VILLAGE_A, VILLAGE_B, create_database, load_villages, make_settings, run_sync, serve

def contract_scope(query: Any, scope: Scope, on: Any = None) -> Any:
    """Narrow contracts to the scope (the subjects), as the real rules do."""
    if scope.district_codes is not None:
        query = query.where(func.substr(Contract.village_code, 1, 6).in_([d[:6] for d in scope.district_codes]))
    if scope.village_codes is not None:
        query = query.where(Contract.village_code.in_(scope.village_codes))
    if scope.since is not None:
        query = query.where(Contract.signed_on >= scope.since)
    return query


def at_noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


class BigContractRule(Rule):
    """Test rule: a contract worth at least the threshold (set-based: one SELECT)."""

    id = "TEST-BIG-CONTRACT"
    family = Family.UNDISCLOSED
    title = "大额合同（测试）"
    severity = Severity.ORANGE
    triggers = frozenset({"contract_recorded"})
    parameters = (register(Parameter("warnings.TEST-BIG-CONTRACT.threshold_yuan", 100_000, int, 1, 10**9, "门槛")),)
    calls: list[tuple[Scope, dict[str, Any]]] = []

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        type(self).calls.append((scope, params))
        threshold = params["threshold_yuan"] * 100
        query = contract_scope(select(Contract).where(Contract.total_value_fen >= threshold), scope)
        return [
            Finding(
                rule_id=self.id,
                subject_type="contract",
                subject_id=str(c.id),
                village_code=c.village_code,
                score=min(100.0, 50.0 * c.total_value_fen / threshold),
                explanation=f"合同总价 ¥{c.total_value_fen / 100:.2f}，达到门槛 ¥{threshold / 100:.2f}",
                evidence={"contracts": [c.id]},
                occurred_at=at_noon(c.signed_on),
            )
            for c in await session.scalars(query.order_by(Contract.id))
        ]


class ManyContractsRule(Rule):
    """Test rule: a village with at least ``min_count`` contracts; its evidence grows with every contract."""

    id = "TEST-MANY-CONTRACTS"
    family = Family.ELECTION
    title = "合同密集（测试）"
    severity = Severity.YELLOW
    triggers = frozenset({"contract_recorded"})
    parameters = (register(Parameter("warnings.TEST-MANY-CONTRACTS.min_count", 2, int, 1, 100, "最少合同数")),)

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        query = contract_scope(
            select(Contract.village_code, func.count(), func.max(Contract.signed_on))
            .group_by(Contract.village_code)
            .having(func.count() >= params["min_count"]),
            scope,
        )
        findings = []
        for village, count, last in await session.execute(query):
            ids = list(await session.scalars(
                select(Contract.id).where(Contract.village_code == village).order_by(Contract.id)
            ))
            findings.append(Finding(
                rule_id=self.id, subject_type="village", subject_id=village, village_code=village,
                score=min(100.0, 20.0 * count), explanation=f"本村共有 {count} 份合同",
                evidence={"contracts": ids}, occurred_at=at_noon(last),
            ))
        return findings


TEST_RULES: list[Rule] = [BigContractRule(), ManyContractsRule()]


async def add_contract(
    db: AsyncSession, village: str, value_yuan: int, signed_on: date = date(2025, 3, 1), number: str | None = None
) -> Contract:
    collective = await db.scalar(select(Collective).where(Collective.village_code == village))
    assert collective is not None
    count = await db.scalar(select(func.count()).select_from(Contract)) or 0
    contract = Contract(
        collective_id=collective.id, village_code=village, number=number or f"T-{count + 1}", trade_type="lease",
        counterparty_name="张三", start_date=signed_on, term_months=12, end_date=date(signed_on.year + 1, 2, 28),
        price_basis="total", unit_price_fen=value_yuan * 100, payment_frequency="once",
        total_value_fen=value_yuan * 100, origin="direct", origin_reason="测试", signed_on=signed_on,
    )
    db.add(contract)
    await db.flush()
    return contract


async def alert_rows(db: AsyncSession) -> list[tuple[Any, ...]]:
    rows = await db.execute(
        select(Alert.rule_id, Alert.subject_type, Alert.subject_id, Alert.village_code, Alert.severity, Alert.score,
               Alert.evidence, Alert.explanation).order_by(Alert.rule_id, Alert.subject_type, Alert.subject_id)
    )
    return [tuple(row) for row in rows]


async def event_count(db: AsyncSession) -> int:
    return await db.scalar(select(func.count()).select_from(AlertEvent)) or 0


async def test_a_scan_raises_one_alert_per_subject_and_a_second_scan_changes_nothing(db: AsyncSession) -> None:
    big = await add_contract(db, VILLAGE_A, 150_000)
    await add_contract(db, VILLAGE_A, 99_999)  # just under the threshold
    await add_contract(db, VILLAGE_B, 100_000)  # exactly at it

    first = await warnings_engine.scan(db, rules=TEST_RULES)
    assert (first.counts("TEST-BIG-CONTRACT").raised, first.counts("TEST-MANY-CONTRACTS").raised) == (2, 1)
    rows = await alert_rows(db)
    assert [(r[0], r[2]) for r in rows if r[0] == "TEST-BIG-CONTRACT"] == sorted(
        [("TEST-BIG-CONTRACT", str(big.id)), ("TEST-BIG-CONTRACT", str(big.id + 2))]
    )
    village_alert = next(r for r in rows if r[0] == "TEST-MANY-CONTRACTS")
    assert village_alert[1:5] == ("village", VILLAGE_A, VILLAGE_A, "yellow") and village_alert[5] == 40.0
    alert = await db.scalar(select(Alert).where(Alert.subject_id == str(big.id)))
    assert alert is not None and alert.status == "new" and alert.family == "undisclosed"
    assert alert.township_code == VILLAGE_A[:9] + "000" and alert.district_code == VILLAGE_A[:6] + "000000"
    assert alert.score == 75.0 and alert.evidence == {"contracts": [big.id]}
    assert [e.action for e in await db.scalars(select(AlertEvent).where(AlertEvent.alert_id == alert.id))] == ["raised"]

    events_before = await event_count(db)
    second = await warnings_engine.scan(db, rules=TEST_RULES)
    assert (second.raised, second.updated, second.unchanged) == (0, 0, 3)
    assert await alert_rows(db) == rows and await event_count(db) == events_before


async def test_growing_evidence_updates_the_same_alert(db: AsyncSession) -> None:
    await add_contract(db, VILLAGE_B, 10)
    await add_contract(db, VILLAGE_B, 20)
    await warnings_engine.scan(db, rules=[ManyContractsRule()])
    third = await add_contract(db, VILLAGE_B, 30)

    summary = await warnings_engine.scan(db, rules=[ManyContractsRule()])
    assert (summary.raised, summary.updated) == (0, 1)
    alerts = list(await db.scalars(select(Alert).where(Alert.rule_id == "TEST-MANY-CONTRACTS")))
    assert len(alerts) == 1 and alerts[0].score == 60.0 and third.id in alerts[0].evidence["contracts"]
    assert alerts[0].explanation == "本村共有 3 份合同"
    history = list(await db.scalars(select(AlertEvent.action).where(AlertEvent.alert_id == alerts[0].id).order_by(AlertEvent.id)))
    assert history == ["raised", "updated"]


async def test_districts_are_grouped_by_their_parameter_values(db: AsyncSession) -> None:
    await add_contract(db, VILLAGE_A, 100_000)
    await add_contract(db, VILLAGE_B, 100_000)
    district_b = VILLAGE_B[:6] + "000000"
    await set_parameter(db, "warnings.TEST-BIG-CONTRACT.threshold_yuan", 100_001, district_b, None)
    BigContractRule.calls.clear()

    await warnings_engine.scan(db, rules=[BigContractRule()])
    assert sorted(a.village_code for a in await db.scalars(select(Alert))) == [VILLAGE_A]
    scopes = sorted(BigContractRule.calls, key=lambda call: len(call[0].district_codes or ()))
    assert len(scopes) == 2
    assert scopes[0][0].district_codes == (district_b,) and scopes[0][1] == {"threshold_yuan": 100_001}
    assert district_b not in (scopes[1][0].district_codes or ()) and scopes[1][1] == {"threshold_yuan": 100_000}


async def test_a_scan_of_one_district_or_since_a_date_finds_only_there(db: AsyncSession) -> None:
    old = await add_contract(db, VILLAGE_A, 200_000, signed_on=date(2023, 5, 1))
    new = await add_contract(db, VILLAGE_A, 200_000, signed_on=date(2025, 5, 1))
    await add_contract(db, VILLAGE_B, 200_000)

    summary = await warnings_engine.scan(db, district_code=VILLAGE_A[:6], since=date(2024, 1, 1), rules=[BigContractRule()])
    assert summary.raised == 1
    assert [a.subject_id for a in await db.scalars(select(Alert))] == [str(new.id)]
    assert old.id != new.id

    from sanzi.platform.problems import DomainError

    with pytest.raises(DomainError):
        await warnings_engine.scan(db, district_code="999999", rules=[BigContractRule()])
    with pytest.raises(DomainError):
        await warnings_engine.scan(db, district_code="44x111", rules=[BigContractRule()])


async def test_an_event_evaluates_only_its_village_and_the_rules_it_triggers(db: AsyncSession) -> None:
    a = await add_contract(db, VILLAGE_A, 300_000)
    await add_contract(db, VILLAGE_B, 300_000)
    warnings_engine_rules = [BigContractRule()]

    unrelated = events.DomainEvent("entry_posted", VILLAGE_A, {"entry_id": 1})
    assert (await warnings_engine.evaluate_events(db, [unrelated], warnings_engine_rules)).raised == 0
    summary = await warnings_engine.evaluate_events(
        db, [events.DomainEvent("contract_recorded", VILLAGE_A, {"contract_id": a.id})] * 3, warnings_engine_rules
    )
    assert summary.raised == 1 and summary.changed_villages == {VILLAGE_A}
    assert [a.village_code for a in await db.scalars(select(Alert))] == [VILLAGE_A]


async def test_unchanged_findings_cost_a_fixed_number_of_queries(db: AsyncSession) -> None:
    for n in range(30):
        await add_contract(db, VILLAGE_A if n % 2 else VILLAGE_B, 100_000 + n)
    await warnings_engine.scan(db, rules=[BigContractRule()], recompute_index=False)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    sync_engine = db.bind.engine.sync_engine if hasattr(db.bind, "engine") else db.bind.sync_engine
    event.listen(sync_engine, "before_cursor_execute", count)
    try:
        summary = await warnings_engine.scan(db, rules=[BigContractRule()], recompute_index=False)
    finally:
        event.remove(sync_engine, "before_cursor_execute", count)
    assert (summary.unchanged, summary.updated, summary.raised) == (30, 0, 0)
    # districts, the transaction's settings (PostgreSQL), the rule settings, the rule's queries, the existing
    # alerts: not one per finding
    assert len([s for s in statements if "SAVEPOINT" not in s.upper()]) <= 6, statements


# ---- incremental evaluation on a served app --------------------------------------------------------------


@pytest.fixture
def test_rules(monkeypatch: pytest.MonkeyPatch) -> list[Rule]:
    monkeypatch.setattr(warnings_engine, "all_rules", lambda: TEST_RULES)
    warnings_engine.clear_parameter_cache()
    return TEST_RULES


#: the Redis database of the warnings-worker tests (the rest of the suite uses 15, the bench 8-13)
WORKER_REDIS_DB = 14


@pytest.fixture
def worker_redis(redis_available: str) -> Iterator[tuple[str, str]]:
    """(Redis URL, a stream name of this test's own), the stream deleted afterwards."""
    import uuid

    import redis

    url = make_url_db(redis_available, WORKER_REDIS_DB)
    stream = f"sanzi:test:warnings:{uuid.uuid4().hex[:10]}"
    yield url, stream
    redis.Redis.from_url(url).delete(stream)


def make_url_db(url: str, db: int) -> str:
    base, _, last = url.rstrip("/").rpartition("/")
    return f"{base}/{db}" if last.isdigit() else f"{url.rstrip('/')}/{db}"


async def _officials(session: AsyncSession) -> dict[str, str]:
    from sanzi.platform.auth import Passwords

    tokens = {}
    for village in (VILLAGE_A, VILLAGE_B):
        user = User(username=f"c{village}", password_hash=Passwords(cheap=True).hash("x" * 10), display_name="村委",
                    role=Role.COMMITTEE.value, village_code=village)
        session.add(user)
        await session.flush()
        tokens[village] = await issue_token(session, user, days=1)
    await session.commit()
    return tokens


CONTRACTS = [(VILLAGE_A, "160000"), (VILLAGE_A, "40000"), (VILLAGE_B, "99999.99"), (VILLAGE_B, "100000"), (VILLAGE_A, "5")]


async def _build_over_http(http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    """An asset and a contract for it through the API, one after another; each contract records an event."""
    for n, (village, amount) in enumerate(CONTRACTS):
        response = await http.post(
            f"/api/villages/{village}/assets",
            json={"code": f"A-{n}", "name": "农田", "kind": "farmland", "area": "10", "area_unit": "mu", "location": "东片"},
            headers={"Authorization": f"Bearer {tokens[village]}"},
        )
        assert response.status_code == 201, response.text
        asset_id = response.json()["id"]
        response = await http.post(
            f"/api/villages/{village}/contracts",
            json={
                "number": f"HT-{n}", "asset_id": asset_id, "trade_type": "contracting",
                "counterparty_name": "李四", "start_date": "2025-01-01", "term_years": 1, "price_basis": "total",
                "unit_price": amount, "payment_frequency": "once", "signed_on": f"2024-12-{n + 1:02d}",
                "origin": "direct", "origin_reason": "测试",
            },
            headers={"Authorization": f"Bearer {tokens[village]}"},
        )
        assert response.status_code == 201, response.text


@asynccontextmanager
async def _no_engine(app: Any) -> AsyncIterator[None]:
    yield


async def _snapshot(url: str) -> list[tuple[Any, ...]]:
    engine = create_engine(make_settings(url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            return await alert_rows(session)
    finally:
        await engine.dispose()


async def _full_scan(url: str) -> warnings_engine.ScanSummary:
    engine = create_engine(make_settings(url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            summary = await warnings_engine.scan(session)
            await session.commit()
            return summary
    finally:
        await engine.dispose()


async def test_incremental_and_full_scan_find_the_same(
    test_rules: list[Rule], backend: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    incremental_url, drop_incremental = await asyncio.to_thread(create_database, backend, tmp_path)
    scanned_url, drop_scanned = await asyncio.to_thread(create_database, backend, tmp_path)
    try:
        for url in (incremental_url, scanned_url):
            run_sync(lambda url=url: load_villages(url))  # type: ignore[misc]
        engine = create_engine(make_settings(incremental_url))
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                tokens = await _officials(session)
        finally:
            await engine.dispose()

        # 1. the app runs: every committed contract is evaluated in the background
        app = create_app(make_settings(incremental_url, SANZI_VAR_DIR=str(tmp_path)))
        async with serve(app) as http:
            await _build_over_http(http, tokens)
            background = app.state.warnings_engine
            await asyncio.wait_for(background.wait_idle(), timeout=60)
            assert background.batches >= 1
        incremental = await _snapshot(incremental_url)
        assert [(r[0], r[2]) for r in incremental] == [
            ("TEST-BIG-CONTRACT", "1"), ("TEST-BIG-CONTRACT", "4"),
            ("TEST-MANY-CONTRACTS", VILLAGE_A), ("TEST-MANY-CONTRACTS", VILLAGE_B),
        ]
        assert incremental[2][6] == {"contracts": [1, 2, 5]}  # evidence grew with each contract, one alert
        summary = await _full_scan(incremental_url)
        assert (summary.raised, summary.updated, summary.unchanged) == (0, 0, 4)
        assert await _snapshot(incremental_url) == incremental

        # 2. the reverse: the same data written with no engine running, then a full scan, then the events again
        engine = create_engine(make_settings(scanned_url))
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                tokens = await _officials(session)
            with monkeypatch.context() as patch:  # an app without the engine: the events are dropped
                patch.setattr(warnings_engine, "engine_lifespan", _no_engine)
                quiet = create_app(make_settings(scanned_url, SANZI_VAR_DIR=str(tmp_path)))
            async with serve(quiet) as http:
                await _build_over_http(http, tokens)
            assert await _snapshot(scanned_url) == []
            summary = await _full_scan(scanned_url)
            assert summary.raised == 4
            assert await _snapshot(scanned_url) == incremental
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                replay = [events.DomainEvent("contract_recorded", v, {}) for v, _ in CONTRACTS]
                again = await warnings_engine.evaluate_events(session, replay)
                await session.commit()
            assert (again.raised, again.updated) == (0, 0)
            assert await _snapshot(scanned_url) == incremental
        finally:
            await engine.dispose()
    finally:
        drop_incremental()
        drop_scanned()


async def test_a_failing_batch_is_logged_and_the_engine_goes_on(
    test_rules: list[Rule], empty_database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_sync(lambda: load_villages(empty_database_url))
    app = create_app(make_settings(empty_database_url, SANZI_VAR_DIR=str(tmp_path)))
    real = warnings_engine.evaluate_events
    failures = {"left": 1}

    async def flaky(session: AsyncSession, batch: Any, rules: Any = None) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("boom")
        return await real(session, batch, rules)

    monkeypatch.setattr(warnings_engine, "evaluate_events", flaky)
    engine = create_engine(make_settings(empty_database_url))
    try:
        async with serve(app):
            background = app.state.warnings_engine
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                await add_contract(session, VILLAGE_A, 500_000)
                events.record(session, "contract_recorded", VILLAGE_A)
                await session.commit()
            await asyncio.wait_for(background.wait_idle(), timeout=60)
            assert await _snapshot(empty_database_url) == []  # the failed batch wrote nothing
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                events.record(session, "contract_recorded", VILLAGE_A)
                await session.commit()
            await asyncio.wait_for(background.wait_idle(), timeout=60)
            assert [r[0] for r in await _snapshot(empty_database_url)] == ["TEST-BIG-CONTRACT"]
        assert background.queue.empty()
    finally:
        await engine.dispose()


async def test_a_burst_of_events_on_one_village_is_one_evaluation(
    test_rules: list[Rule], empty_database_url: str
) -> None:
    """The embedded engine waits a moment after the first event: 100 events of a village are one batch."""
    run_sync(lambda: load_villages(empty_database_url))
    engine = create_engine(make_settings(empty_database_url))
    try:
        maker = async_sessionmaker(engine, expire_on_commit=False)
        async with maker() as session:
            await add_contract(session, VILLAGE_A, 500_000)
            await session.commit()
        background = warnings_engine.IncrementalEngine(maker)
        task = asyncio.create_task(background.run())
        BigContractRule.calls.clear()
        try:
            for _ in range(100):
                background.receive([events.DomainEvent("contract_recorded", VILLAGE_A, {"contract_id": 1})])
            await asyncio.wait_for(background.wait_idle(), timeout=60)
        finally:
            task.cancel()
        assert background.batches == 1 and len(BigContractRule.calls) == 1
        assert len(BigContractRule.calls[0][0].events or ()) == 100
        assert [r[0] for r in await _snapshot(empty_database_url)] == ["TEST-BIG-CONTRACT"]
    finally:
        await engine.dispose()


async def test_a_parameter_change_reaches_the_next_incremental_evaluation(
    db: AsyncSession, test_rules: list[Rule]
) -> None:
    """The rule settings are cached between batches, but a change written in this process drops the cache."""
    contract = await add_contract(db, VILLAGE_A, 150_000)
    event = events.DomainEvent("contract_recorded", VILLAGE_A, {"contract_id": contract.id})
    rules = [BigContractRule()]
    await set_parameter(db, "warnings.TEST-BIG-CONTRACT.threshold_yuan", 200_000, None, None)
    await db.flush()
    assert (await warnings_engine.evaluate_events(db, [event], rules)).raised == 0
    await set_parameter(db, "warnings.TEST-BIG-CONTRACT.threshold_yuan", 150_000, None, None)
    await db.flush()
    assert (await warnings_engine.evaluate_events(db, [event], rules)).raised == 1


async def test_with_redis_committed_events_go_to_the_stream_and_a_rollback_sends_nothing(
    test_rules: list[Rule], backend: str, empty_database_url: str, tmp_path: Any, worker_redis: tuple[str, str]
) -> None:
    """The app workers no longer evaluate: each committed event is one stream entry (kind, village, ids)."""
    import redis.asyncio as aioredis

    url, stream = worker_redis
    run_sync(lambda: load_villages(empty_database_url))
    engine = create_engine(make_settings(empty_database_url))
    client = aioredis.Redis.from_url(url)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            tokens = await _officials(session)
        app = create_app(make_settings(
            empty_database_url, SANZI_VAR_DIR=str(tmp_path), REDIS_URL=url, SANZI_WARNINGS_STREAM=stream
        ))
        async with serve(app) as http:
            await _build_over_http(http, tokens)
            publisher = app.state.warnings_publisher
            await asyncio.wait_for(publisher.wait_idle(), timeout=30)
            # a transaction that records an event and rolls back publishes nothing
            async with async_sessionmaker(engine, expire_on_commit=False)() as session:
                events.record(session, "contract_recorded", VILLAGE_B, contract_id=999)
                await session.rollback()
                await session.commit()
                await add_contract(session, VILLAGE_B, 500_000)
                events.record(session, "contract_recorded", VILLAGE_B, contract_id=998)
                await session.rollback()
                await session.commit()
            await asyncio.wait_for(publisher.wait_idle(), timeout=30)
            assert app.state.warnings_engine.batches == 0  # nothing evaluated in the app
        entries = await client.xrange(stream)
        got = [events.DomainEvent.from_fields(fields) for _, fields in entries]
        assert [(e.kind, e.village_code, e.ids) for e in got] == [
            ("contract_recorded", village, {"contract_id": n + 1}) for n, (village, _) in enumerate(CONTRACTS)
        ]
        assert publisher.published == 5 and publisher.failures == 0
        assert await _snapshot(empty_database_url) == []
    finally:
        await client.aclose()
        await engine.dispose()


async def test_when_redis_fails_the_events_are_evaluated_in_the_app(
    test_rules: list[Rule], empty_database_url: str
) -> None:
    """Redis unreachable: the publisher logs it and hands the batch to the in-process engine."""
    import redis.asyncio as aioredis

    run_sync(lambda: load_villages(empty_database_url))
    engine = create_engine(make_settings(empty_database_url))
    broken = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    try:
        maker = async_sessionmaker(engine, expire_on_commit=False)
        async with maker() as session:
            contract = await add_contract(session, VILLAGE_A, 500_000)
            await session.commit()
        fallback = warnings_engine.IncrementalEngine(maker)
        task = asyncio.create_task(fallback.run())
        try:
            publisher = warnings_engine.StreamPublisher(broken, "sanzi:test:nowhere", fallback)
            publisher.receive([events.DomainEvent("contract_recorded", VILLAGE_A, {"contract_id": contract.id})])
            await asyncio.wait_for(publisher.wait_idle(), timeout=30)
            await asyncio.wait_for(fallback.wait_idle(), timeout=30)
        finally:
            task.cancel()
        assert publisher.failures == 1 and publisher.published == 0
        assert [r[0] for r in await _snapshot(empty_database_url)] == ["TEST-BIG-CONTRACT"]
    finally:
        await broken.aclose()
        await engine.dispose()


# ---- a full scan on several connections -------------------------------------------------------------------


class CommitsMidwayRule(Rule):
    """Test rule: commits a big contract on a connection of its own while the scan runs, then counts the
    contracts the scan's connection sees."""

    id = "TEST-COMMITS-MIDWAY"
    family = Family.UNDISCLOSED
    title = "扫描中途提交（测试）"
    severity = Severity.YELLOW

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[int] = []

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        engine = create_engine(make_settings(self.url))
        try:
            async with async_sessionmaker(engine, expire_on_commit=False)() as other:
                await add_contract(other, VILLAGE_B, 900_000, number=f"MIDWAY-{len(self.seen)}")
                await other.commit()
        finally:
            await engine.dispose()
        self.seen.append(await session.scalar(select(func.count()).select_from(Contract)) or 0)
        return []


@pytest.fixture
def committed_contracts_url(empty_database_url: str) -> str:
    """Villages and three committed contracts (two at or above TEST-BIG-CONTRACT's threshold)."""
    warnings_engine.clear_parameter_cache()
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


async def _scan_and_keep(url: str, rules: list[Rule], jobs: int) -> tuple[warnings_engine.ScanSummary, list[Any]]:
    engine = create_engine(make_settings(url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            summary = await warnings_engine.scan(session, rules=rules, jobs=jobs, recompute_index=False)
            await session.commit()
            return summary, await alert_rows(session)
    finally:
        await engine.dispose()


async def test_a_scan_on_several_connections_reads_one_snapshot_and_writes_what_a_serial_scan_writes(
    committed_contracts_url: str, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite scans on one connection (and its writers wait for the scan's transaction)")
    url = committed_contracts_url
    midway = CommitsMidwayRule(url)
    summary, rows = await _scan_and_keep(url, [midway, *TEST_RULES], jobs=3)
    # the contract committed while the scan ran is in the table but in no rule's view of it
    assert midway.seen == [3]
    assert (summary.counts("TEST-BIG-CONTRACT").raised, summary.counts("TEST-MANY-CONTRACTS").raised) == (2, 1)
    assert sorted((r[0], r[3]) for r in rows) == [
        ("TEST-BIG-CONTRACT", VILLAGE_A),
        ("TEST-BIG-CONTRACT", VILLAGE_B),
        ("TEST-MANY-CONTRACTS", VILLAGE_A),
    ]

    # a serial scan reads the contract committed before it began, and the next one committed as it runs
    serial, serial_rows = await _scan_and_keep(url, [midway, *TEST_RULES], jobs=1)
    assert midway.seen == [3, 5]
    assert (serial.counts("TEST-BIG-CONTRACT").raised, serial.counts("TEST-MANY-CONTRACTS").raised) == (2, 1)
    assert len(serial_rows) == 6
    # and a scan on several connections now finds what the serial one wrote: nothing new, nothing changed
    again, again_rows = await _scan_and_keep(url, TEST_RULES, jobs=2)
    assert (again.raised, again.updated, again.unchanged) == (0, 0, 6) and again_rows == serial_rows


async def test_a_scan_after_a_write_in_its_transaction_reads_that_write(committed_contracts_url: str) -> None:
    engine = create_engine(make_settings(committed_contracts_url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            unsaved = await add_contract(session, VILLAGE_B, 500_000)
            summary = await warnings_engine.scan(session, rules=TEST_RULES, jobs=2, recompute_index=False)
            assert summary.counts("TEST-BIG-CONTRACT").raised == 3
            assert ("TEST-BIG-CONTRACT", str(unsaved.id)) in [(r[0], r[2]) for r in await alert_rows(session)]
            await session.rollback()
    finally:
        await engine.dispose()
