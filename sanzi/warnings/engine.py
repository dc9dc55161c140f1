"""The warning engine: full scans, incremental evaluation after committed events, alert upserts.

Both paths go through :func:`_evaluate`: per rule, the districts in question are grouped by their resolved
parameter values and the rule runs once per group; its findings are upserted by (rule, subject) so that the
same rule and subject keep one alert, and an evaluation over unchanged data changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from sanzi.platform import events
from sanzi.platform.events import DomainEvent
from sanzi.platform.geography import normalise_code
from sanzi.platform.models import District, Setting, Village
from sanzi.platform.problems import NotFound
from sanzi.warnings import rules as catalogue
from sanzi.warnings.models import Alert, AlertEvent
from sanzi.warnings.rules.base import Finding, Rule, Scope

log = logging.getLogger(__name__)

#: bound parameters per IN (...) list: well under SQLite's and asyncpg's limits
_CHUNK = 500


def all_rules() -> list[Rule]:
    """The catalogue (a seam tests may replace)."""
    return catalogue.all_rules()


@dataclass
class RuleCounts:
    raised: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, other: RuleCounts) -> None:
        self.raised += other.raised
        self.updated += other.updated
        self.unchanged += other.unchanged


@dataclass
class ScanSummary:
    """What an evaluation did, per rule; the villages whose alerts were raised or changed."""

    rules: dict[str, RuleCounts] = field(default_factory=dict)
    changed_villages: set[str] = field(default_factory=set)
    index_month: date | None = None

    def counts(self, rule_id: str) -> RuleCounts:
        return self.rules.setdefault(rule_id, RuleCounts())

    @property
    def raised(self) -> int:
        return sum(c.raised for c in self.rules.values())

    @property
    def updated(self) -> int:
        return sum(c.updated for c in self.rules.values())

    @property
    def unchanged(self) -> int:
        return sum(c.unchanged for c in self.rules.values())


Progress = Callable[[Rule, RuleCounts], None]


# ---- parameters -------------------------------------------------------------------------------------------


def short_name(rule: Rule, key: str) -> str:
    return key.removeprefix(f"warnings.{rule.id}.")


#: how long the incremental path trusts the rule settings it read (a change made through the API reaches the
#: app's own evaluation at once, since the app clears the cache; the separate worker sees it within this time)
PARAMETER_CACHE_SECONDS = 5.0


@dataclass
class _StoredSettings:
    bind: Any
    keys: frozenset[str]
    values: dict[tuple[str, str], Any]
    expires: float


_settings_cache: _StoredSettings | None = None


def clear_parameter_cache() -> None:
    """Forget the rule settings read for incremental evaluation (after a settings change, and in tests)."""
    global _settings_cache
    _settings_cache = None


async def _stored_settings(session: AsyncSession, keys: Sequence[str], cached: bool) -> dict[tuple[str, str], Any]:
    """{(key, scope): value} of the stored settings among the keys: one query, or none within the cache time."""
    global _settings_cache
    wanted = frozenset(keys)
    bind = session.bind
    entry = _settings_cache
    now = time.monotonic()
    if cached and entry is not None and entry.bind is bind and wanted <= entry.keys and entry.expires > now:
        return entry.values
    if cached:
        # every rule's keys at once, so that batches triggering other rules find them cached too
        wanted |= {p.key for rule in all_rules() for p in rule.parameters}
    stored: dict[tuple[str, str], Any] = {}
    ordered = sorted(wanted)
    for chunk in _chunks(ordered):
        for row in await session.execute(select(Setting.key, Setting.scope, Setting.value).where(Setting.key.in_(chunk))):
            stored[(row.key, row.scope)] = row.value
    if cached:
        _settings_cache = _StoredSettings(bind, wanted, stored, now + PARAMETER_CACHE_SECONDS)
    return stored


async def resolve_parameters(
    session: AsyncSession, rules: Sequence[Rule], district_codes: Iterable[str], *, cached: bool = False
) -> dict[str, dict[str, dict[str, Any]]]:
    """{rule id: {district: {short name: value}}}: a district's value, else the city's, else the default.

    One query for every rule's settings (none at all when ``cached`` and read within the last few seconds)."""
    districts = list(district_codes)
    keys = [p.key for rule in rules for p in rule.parameters]
    stored = await _stored_settings(session, keys, cached) if keys else {}
    resolved: dict[str, dict[str, dict[str, Any]]] = {}
    for rule in rules:
        per_district = resolved.setdefault(rule.id, {})
        for district in districts:
            values = {}
            for parameter in rule.parameters:
                value = stored.get((parameter.key, district), stored.get((parameter.key, ""), parameter.default))
                values[short_name(rule, parameter.key)] = value
            per_district[district] = values
    return resolved


def group_by_values(per_district: dict[str, dict[str, Any]]) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Districts that share every parameter value, evaluated together (usually one group: the defaults)."""
    groups: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for district in sorted(per_district):
        values = per_district[district]
        marker = json.dumps(values, sort_keys=True, default=str)
        groups.setdefault(marker, ([], values))[0].append(district)
    return [(tuple(districts), values) for districts, values in groups.values()]


# ---- upserts ----------------------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _normalised_evidence(evidence: dict[str, Any]) -> dict[str, Any]:
    """The evidence as the JSON column gives it back (tuples become lists, keys are strings)."""
    return json.loads(json.dumps(evidence, sort_keys=True, default=str))


def _score(value: float) -> float:
    return round(min(100.0, max(0.0, float(value))), 2)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def upsert_findings(session: AsyncSession, rule: Rule, findings: Sequence[Finding], now: datetime) -> RuleCounts:
    """Insert new alerts and update changed ones; the existing alerts are read in one query per 500 subjects."""
    counts = RuleCounts()
    latest: dict[tuple[str, str], Finding] = {}
    for finding in findings:
        latest[(finding.subject_type, str(finding.subject_id))] = finding
    if not latest:
        return counts
    subject_ids = sorted({subject_id for _, subject_id in latest})
    existing: dict[tuple[str, str], Alert] = {}
    for chunk in _chunks(subject_ids):
        query = select(Alert).where(Alert.rule_id == rule.id, Alert.subject_id.in_(chunk))
        for alert in await session.scalars(query):
            existing[(alert.subject_type, alert.subject_id)] = alert

    new_villages = sorted({f.village_code for key, f in latest.items() if key not in existing})
    places = await village_places(session, new_villages)

    # new alerts and history rows as plain values, written by bulk INSERTs (one statement per few hundred
    # rows) rather than as ORM objects flushed one unit of work at a time
    raised: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    changed_villages: set[str] = set()
    for key, finding in latest.items():
        severity = (finding.severity or rule.severity).value
        score = _score(finding.score)
        evidence = _normalised_evidence(finding.evidence)
        occurred_at = _aware(finding.occurred_at)
        alert = existing.get(key)
        if alert is None:
            if finding.village_code not in places:
                log.warning("%s: finding for unknown village %s skipped", rule.id, finding.village_code)
                continue
            township, district = places[finding.village_code]
            raised.append(
                {
                    "rule_id": rule.id,
                    "family": rule.family.value,
                    "subject_type": finding.subject_type,
                    "subject_id": str(finding.subject_id),
                    "village_code": finding.village_code,
                    "township_code": township,
                    "district_code": district,
                    "severity": severity,
                    "score": score,
                    "explanation": finding.explanation,
                    "evidence": evidence,
                    "occurred_at": occurred_at,
                    "first_raised_at": now,
                    "last_updated_at": now,
                    "status": "new",
                }
            )
            changed_villages.add(finding.village_code)
            continue
        material = alert.score != score or alert.evidence != evidence
        if not material and (alert.severity, alert.explanation, _aware(alert.occurred_at)) == (
            severity,
            finding.explanation,
            occurred_at,
        ):
            counts.unchanged += 1
            continue
        if material:
            history.append(
                {
                    "alert_id": alert.id,
                    "action": "updated",
                    "from_status": alert.status,
                    "to_status": alert.status,
                    "note": f"评分 {alert.score:g} → {score:g}" if alert.score != score else "证据更新",
                    "at": now,
                }
            )
        alert.severity, alert.score, alert.explanation = severity, score, finding.explanation
        alert.evidence, alert.occurred_at, alert.last_updated_at = evidence, occurred_at, now
        counts.updated += 1
        changed_villages.add(alert.village_code)

    await session.flush()  # the updated alerts
    if raised:
        inserted = await session.execute(insert(Alert).returning(Alert.id, sort_by_parameter_order=True), raised)
        history.extend(
            {"alert_id": alert_id, "action": "raised", "from_status": None, "to_status": "new",
             "note": values["explanation"], "at": now}
            for alert_id, values in zip(inserted.scalars().all(), raised, strict=True)
        )
        counts.raised = len(raised)
    if history:
        await session.execute(insert(AlertEvent), history)
    _changed_villages(session).update(changed_villages)
    return counts


#: village code -> (township, district): a village's place never changes, so it is read once per process
_places: dict[str, tuple[str, str]] = {}


async def village_places(session: AsyncSession, codes: Iterable[str]) -> dict[str, tuple[str, str]]:
    """(township, district) of each known village among the codes; unknown codes are left out."""
    wanted = sorted(set(codes))
    missing = [code for code in wanted if code not in _places]
    if len(_places) > 100_000:
        _places.clear()
    for chunk in _chunks(missing):
        rows = await session.execute(
            select(Village.code, Village.township_code, Village.district_code).where(Village.code.in_(chunk))
        )
        _places.update({row.code: (row.township_code, row.district_code) for row in rows})
    return {code: _places[code] for code in wanted if code in _places}


def _changed_villages(session: AsyncSession) -> set[str]:
    return session.info.setdefault("sanzi_warnings_changed", set())


# ---- evaluation -------------------------------------------------------------------------------------------


#: sort and hash memory per operation in a full scan: the window totals of the whole city's books sort a few
#: hundred thousand rows, which spilled to disk at the server's default (4 MB)
SCAN_WORK_MEM = "64MB"


async def _evaluation_settings(session: AsyncSession, work_mem: str | None = None) -> None:
    """PostgreSQL: no JIT compilation for the rest of this transaction, and ``work_mem`` when given. The rules'
    statements join CTEs whose row counts the planner cannot estimate, so their estimated cost passes the JIT
    threshold even on small data, and compiling them took longer (about 100 ms a statement, more with
    inlining on large data) than running them."""
    if session.get_bind().dialect.name != "postgresql":
        return
    # set_config(name, value, true) is SET LOCAL, and both take one round trip
    if work_mem is None:
        await session.execute(text("SELECT set_config('jit', 'off', true)"))
    else:
        await session.execute(
            text("SELECT set_config('jit', 'off', true), set_config('work_mem', :work_mem, true)"),
            {"work_mem": work_mem},
        )


async def _evaluate(
    session: AsyncSession,
    rules: Sequence[Rule],
    districts: Sequence[str],
    summary: ScanSummary,
    *,
    whole_city: bool,
    village_codes: tuple[str, ...] | None = None,
    since: date | None = None,
    progress: Progress | None = None,
    triggering: tuple[DomainEvent, ...] | None = None,
    resolved: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> None:
    if resolved is None:
        resolved = await resolve_parameters(session, rules, districts)
    now = datetime.now(UTC)
    for rule in rules:
        counts = summary.counts(rule.id)
        groups = group_by_values({d: resolved[rule.id][d] for d in districts})
        for group, values in groups:
            # the whole city in one group needs no district filter at all
            codes = None if whole_city and len(groups) == 1 else group
            scope = Scope(district_codes=codes, village_codes=village_codes, since=since, events=triggering)
            findings = await rule.evaluate(session, scope, dict(values))
            counts.add(await upsert_findings(session, rule, findings, now))
        if progress is not None:
            progress(rule, counts)
    summary.changed_villages |= _changed_villages(session)
    _changed_villages(session).clear()


def default_scan_jobs() -> int:
    """Connections a full scan reads on at once by default: one per CPU this process may use, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, 8))


#: a snapshot id as pg_export_snapshot() returns it (inlined into SET TRANSACTION SNAPSHOT, which takes no
#: bound parameter)
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")


def _engine_of(session: AsyncSession) -> AsyncEngine | None:
    bind = session.bind
    if isinstance(bind, AsyncConnection):
        return bind.engine
    return bind if isinstance(bind, AsyncEngine) else None


async def _snapshot_for_readers(session: AsyncSession) -> str | None:
    """The transaction's snapshot exported for other connections to read in, or None where they could not see
    what this one sees: not PostgreSQL, or the transaction has written something (an importing transaction
    never sees the exporter's uncommitted changes)."""
    if session.get_bind().dialect.name != "postgresql" or _engine_of(session) is None:
        return None
    written = await session.scalar(text("SELECT pg_current_xact_id_if_assigned() IS NOT NULL"))
    if written or session.new or session.dirty or session.deleted:
        return None
    snapshot = await session.scalar(text("SELECT pg_export_snapshot()"))
    return snapshot if snapshot and _SNAPSHOT_ID.fullmatch(snapshot) else None


async def _evaluate_in_parallel(
    session: AsyncSession,
    rules: Sequence[Rule],
    districts: Sequence[str],
    summary: ScanSummary,
    *,
    snapshot: str,
    jobs: int,
    whole_city: bool,
    since: date | None,
    progress: Progress | None,
) -> None:
    """:func:`_evaluate` with the rules' reads spread over ``jobs`` more connections, each in a read-only
    transaction on the session's exported snapshot, so every rule reads the same data as a serial scan would.
    The findings are written through the session, rule by rule in catalogue order (as the serial scan writes
    them), while the readers go on with the next rules."""
    resolved = await resolve_parameters(session, rules, districts)
    pending: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(rules)):
        pending.put_nowait(index)
    loop = asyncio.get_running_loop()
    found: list[asyncio.Future[list[tuple[Finding, ...]]]] = [loop.create_future() for _ in rules]
    engine = _engine_of(session)
    assert engine is not None

    async def reader() -> None:
        async with engine.connect() as connection:
            connection = await connection.execution_options(isolation_level="REPEATABLE READ")
            await connection.execute(text(f"SET TRANSACTION SNAPSHOT '{snapshot}'"))
            await connection.execute(text("SET TRANSACTION READ ONLY"))
            async with AsyncSession(bind=connection) as reading:
                await _evaluation_settings(reading, SCAN_WORK_MEM)
                while not pending.empty():
                    index = pending.get_nowait()
                    rule = rules[index]
                    per_group = []
                    groups = group_by_values({d: resolved[rule.id][d] for d in districts})
                    for group, values in groups:
                        codes = None if whole_city and len(groups) == 1 else group
                        scope = Scope(district_codes=codes, since=since)
                        per_group.append(tuple(await rule.evaluate(reading, scope, dict(values))))
                    found[index].set_result(per_group)
            await connection.rollback()

    async def writer() -> None:
        now = datetime.now(UTC)
        for index, rule in enumerate(rules):
            counts = summary.counts(rule.id)
            for findings in await found[index]:
                counts.add(await upsert_findings(session, rule, findings, now))
            if progress is not None:
                progress(rule, counts)

    try:
        async with asyncio.TaskGroup() as tasks:
            for _ in range(min(jobs, len(rules))):
                tasks.create_task(reader())
            tasks.create_task(writer())
    except BaseExceptionGroup as failed:
        # the first failure, as a serial scan would raise it (the others are its consequences: cancellations)
        raise failed.exceptions[0] from None
    summary.changed_villages |= _changed_villages(session)
    _changed_villages(session).clear()


async def scan(
    session: AsyncSession,
    *,
    district_code: str | None = None,
    since: date | None = None,
    rules: Sequence[Rule] | None = None,
    progress: Progress | None = None,
    recompute_index: bool = True,
    jobs: int = 1,
) -> ScanSummary:
    """Every rule over all data (or one district, or facts since a date); ends by recomputing this month's
    integrity index. The caller commits.

    ``jobs`` > 1 reads on that many more connections at once (PostgreSQL, and only while the session's
    transaction has written nothing; otherwise the scan runs serially on the session)."""
    rules = list(all_rules() if rules is None else rules)
    if district_code:
        code = normalise_code(district_code, "district")
        if await session.get(District, code) is None:
            raise NotFound("区", "district")
        districts = [code]
    else:
        districts = list(await session.scalars(select(District.code).order_by(District.code)))
    summary = ScanSummary()
    await _evaluation_settings(session, SCAN_WORK_MEM)
    snapshot = await _snapshot_for_readers(session) if jobs > 1 else None
    evaluate = (
        _evaluate if snapshot is None else functools.partial(_evaluate_in_parallel, snapshot=snapshot, jobs=jobs)
    )
    await evaluate(
        session, rules, districts, summary, whole_city=district_code is None, since=since, progress=progress
    )
    if recompute_index:
        from sanzi.warnings.services import IntegrityService, month_start

        summary.index_month = month_start(datetime.now(UTC).date())
        await IntegrityService(session).recompute(summary.index_month)
    return summary


async def evaluate_events(
    session: AsyncSession,
    batch: Sequence[DomainEvent],
    rules: Sequence[Rule] | None = None,
    *,
    cached_parameters: bool = True,
) -> ScanSummary:
    """The rules each event's kind triggers, over the event's village only; events of one village and kind
    are evaluated once, and villages of one district that need the same rule share one evaluation.

    Overhead per batch beyond the rules' own queries: the rule settings (one query, or none when read in the
    last few seconds), and, only when an alert was raised or changed, the changed villages' integrity index."""
    rules = list(all_rules() if rules is None else rules)
    kinds_by_village: dict[str, set[str]] = defaultdict(set)
    events_by_village: dict[str, list[DomainEvent]] = defaultdict(list)
    for event in batch:
        kinds_by_village[event.village_code].add(event.kind)
        events_by_village[event.village_code].append(event)
    summary = ScanSummary()
    if not kinds_by_village:
        return summary
    await _evaluation_settings(session)
    district_of = {code: place[1] for code, place in (await village_places(session, kinds_by_village)).items()}
    work: dict[tuple[str, str], list[str]] = defaultdict(list)  # (rule id, district) -> villages
    for village, kinds in sorted(kinds_by_village.items()):
        if village not in district_of:
            continue
        for rule in rules:
            if rule.triggers & kinds:
                work[(rule.id, district_of[village])].append(village)
    by_id = {rule.id: rule for rule in rules}
    needed = [by_id[rule_id] for rule_id in dict.fromkeys(rule_id for rule_id, _ in work)]
    resolved = await resolve_parameters(
        session, needed, sorted({district for _, district in work}), cached=cached_parameters
    )
    for (rule_id, district), villages in work.items():
        rule = by_id[rule_id]
        triggering = tuple(e for v in villages for e in events_by_village[v] if e.kind in rule.triggers)
        await _evaluate(
            session,
            [rule],
            [district],
            summary,
            whole_city=False,
            village_codes=tuple(villages),
            triggering=triggering,
            resolved=resolved,
        )
    if summary.changed_villages:
        from sanzi.warnings.services import IntegrityService, month_start

        summary.index_month = month_start(datetime.now(UTC).date())
        await IntegrityService(session).recompute(summary.index_month, villages=sorted(summary.changed_villages))
    return summary


async def evaluate_event(session: AsyncSession, event: DomainEvent) -> ScanSummary:
    """Incremental evaluation after one committed event."""
    return await evaluate_events(session, [event])


# ---- settings changes -------------------------------------------------------------------------------------


@sa_event.listens_for(Session, "after_flush")
def _settings_flushed(session: Session, _context: Any) -> None:
    """A rule setting written in this process drops the cached settings at once (another process's change
    is seen within PARAMETER_CACHE_SECONDS)."""
    if any(isinstance(o, Setting) for o in (*session.new, *session.dirty, *session.deleted)):
        clear_parameter_cache()
        session.info["sanzi_settings_changed"] = True


@sa_event.listens_for(Session, "after_commit")
def _settings_committed(session: Session) -> None:
    if session.info.pop("sanzi_settings_changed", False):
        clear_parameter_cache()


# ---- in the app: evaluate in a background task (the embedded default) --------------------------------------

#: how long the in-process engine gathers events before evaluating them: 100 bids on one village in this
#: time are one evaluation
DEBOUNCE_SECONDS = 0.05


class IncrementalEngine:
    """Receives committed events without blocking their request and evaluates them in coalesced batches."""

    def __init__(self, session_maker: async_sessionmaker[AsyncSession], debounce: float = DEBOUNCE_SECONDS) -> None:
        self.session_maker = session_maker
        self.debounce = debounce
        self.queue: asyncio.Queue[DomainEvent] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.pending = 0
        self.batches = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def receive(self, batch: list[DomainEvent]) -> None:
        """The events subscriber: hands the events to the loop (from any thread) and returns at once."""
        if threading.get_ident() == self.thread:
            self._enqueue(batch)
        else:
            self.loop.call_soon_threadsafe(self._enqueue, batch)

    def _enqueue(self, batch: list[DomainEvent]) -> None:
        for event in batch:
            self.queue.put_nowait(event)
        self.pending += len(batch)
        if self.pending:
            self._idle.clear()

    async def wait_idle(self) -> None:
        """Until every event received so far has been evaluated."""
        await self._idle.wait()

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            if self.debounce:
                await asyncio.sleep(self.debounce)
            while not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                async with self.session_maker() as session:
                    summary = await evaluate_events(session, batch)
                    await session.commit()
                if summary.raised or summary.updated:
                    log.info("warnings: %d events, %d raised, %d updated", len(batch), summary.raised, summary.updated)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad batch must not stop the engine; a full scan catches up
                log.exception("warnings: evaluating %d events failed", len(batch))
            finally:
                self.batches += 1
                self.pending -= len(batch)
                if self.pending <= 0:
                    self.pending = 0
                    self._idle.set()


# ---- in the app, with Redis: append the events to a stream -------------------------------------------------

GROUP = "sanzi-warnings"
#: the stream keeps about this many entries (XADD MAXLEN ~): hours of peak bidding; an entry trimmed before a
#: worker read it is caught up by the nightly full scan
STREAM_MAXLEN = 200_000


class StreamPublisher:
    """The events subscriber when Redis is configured: appends each committed event to the stream, in one
    pipelined round trip for all the events committed since the last one, without blocking the request.

    When Redis fails, the events of that round trip are evaluated in this process by ``fallback`` instead
    (logged): they are not lost, and only an outage costs the app workers the evaluation's CPU."""

    def __init__(self, redis: Any, stream: str, fallback: IncrementalEngine, maxlen: int = STREAM_MAXLEN) -> None:
        self.redis = redis
        self.stream = stream
        self.fallback = fallback
        self.maxlen = maxlen
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.waiting: list[DomainEvent] = []
        self.flushing: asyncio.Task[None] | None = None
        self.published = 0
        self.failures = 0

    def receive(self, batch: list[DomainEvent]) -> None:
        if threading.get_ident() == self.thread:
            self._enqueue(batch)
        else:
            self.loop.call_soon_threadsafe(self._enqueue, batch)

    def _enqueue(self, batch: list[DomainEvent]) -> None:
        self.waiting.extend(batch)
        if self.flushing is None or self.flushing.done():
            self.flushing = self.loop.create_task(self._flush(), name="sanzi-warnings-publish")

    async def _flush(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for event in batch:
                        pipe.xadd(self.stream, event.to_fields(), maxlen=self.maxlen, approximate=True)
                    await pipe.execute()
                self.published += len(batch)
            except asyncio.CancelledError:
                self.fallback.receive(batch)
                raise
            except Exception as exc:  # noqa: BLE001 - Redis down: evaluate here rather than lose the events
                self.failures += 1
                log.warning(
                    "warnings: appending %d events to %s failed (%s); evaluating them in this process",
                    len(batch), self.stream, exc,
                )
                self.fallback.receive(batch)

    async def wait_idle(self) -> None:
        """Until every event received so far is in the stream (or handed to the fallback)."""
        while self.flushing is not None and not self.flushing.done():
            await asyncio.shield(self.flushing)


# ---- the worker: `sanzi warnings worker` --------------------------------------------------------------------


async def ensure_group(redis: Any, stream: str, group: str = GROUP) -> None:
    """The consumer group, created (with the stream) reading from the stream's start if it is new."""
    from redis.exceptions import ResponseError

    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_ms(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


#: deliveries after which an entry is given up (logged; the nightly full scan covers its village)
MAX_DELIVERIES = 5

#: a PostgreSQL advisory-lock namespace for "a batch is evaluating this village" ('sz')
_VILLAGE_LOCK_SPACE = 0x737A


async def lock_villages(session: AsyncSession, villages: Iterable[str]) -> None:
    """On PostgreSQL, hold a transaction lock per village (in code order, so two workers cannot deadlock):
    two batches touching one village evaluate one after the other, and the second sees the first's alerts.
    SQLite has one writer at a time anyway."""
    codes = sorted(set(villages))
    if not codes or session.bind.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    await session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(:space, hashtext(v))) "
            "FROM (SELECT unnest(CAST(:codes AS text[])) AS v ORDER BY 1) AS villages"
        ),
        {"space": _VILLAGE_LOCK_SPACE, "codes": codes},
    )


@dataclass
class WorkerStats:
    batches: int = 0
    events: int = 0
    dropped: int = 0
    lags_ms: list[float] = field(default_factory=list)
    evaluation_ms: list[float] = field(default_factory=list)

    def line(self) -> str:
        def pct(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

        return (
            f"{self.events} events in {self.batches} batches"
            + (f", {self.dropped} dropped" if self.dropped else "")
            + f"; lag from commit to evaluation p50 {pct(self.lags_ms, 0.5):.0f} ms, p99 {pct(self.lags_ms, 0.99):.0f} ms"
            + f"; evaluation per batch p50 {pct(self.evaluation_ms, 0.5):.0f} ms"
        )


class StreamWorker:
    """Consumes the events stream in a consumer group and evaluates what it reads as one batch.

    Each round: take over entries another consumer left pending too long (it died mid-batch), else read new
    ones: what is there, up to ``batch_size``, gathering for ``linger`` seconds after the first; evaluate
    them together through :func:`evaluate_events`, commit, then XACK. A crash before the XACK leaves the
    entries pending, for this or another worker to claim; evaluation is idempotent, so evaluating one twice
    changes nothing."""

    def __init__(
        self,
        redis: Any,
        session_maker: async_sessionmaker[AsyncSession],
        stream: str,
        *,
        group: str = GROUP,
        consumer: str | None = None,
        batch_size: int = 500,
        linger: float = 0.1,
        block: float = 1.0,
        claim_idle: float = 60.0,
        stats_path: str | None = None,
    ) -> None:
        self.redis = redis
        self.session_maker = session_maker
        self.stream = stream
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.batch_size = batch_size
        self.linger = linger
        self.block = block
        self.claim_idle = claim_idle
        self.stats_path = stats_path
        self.stats = WorkerStats()
        self.total = WorkerStats()
        self._next_claim = 0.0

    async def _read(self, count: int, block: float | None) -> list[tuple[str, Any]]:
        reply = await self.redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=count,
            block=None if block is None else max(1, int(block * 1000)),
        )
        return [(_text(entry_id), fields) for _, entries in reply or [] for entry_id, fields in entries]

    async def claim(self) -> list[tuple[str, Any]]:
        """Entries pending with other consumers (or this one) for longer than ``claim_idle``, taken over."""
        claimed: list[tuple[str, Any]] = []
        start = "0-0"
        while len(claimed) < self.batch_size:
            reply = await self.redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=int(self.claim_idle * 1000),
                start_id=start,
                count=self.batch_size - len(claimed),
            )
            start = _text(reply[0])
            claimed += [(_text(entry_id), fields) for entry_id, fields in reply[1] if fields is not None]
            if start == "0-0":
                break
        if not claimed:
            return claimed
        log.info("warnings worker: took over %d entries left pending by a stopped consumer", len(claimed))
        # an entry delivered again and again fails every time (or kills its worker): give it up to the scan
        details = await self.redis.xpending_range(
            self.stream, self.group, min=claimed[0][0], max=claimed[-1][0], count=len(claimed) + 100,
            consumername=self.consumer,
        )
        delivered = {_text(d["message_id"]): int(d["times_delivered"]) for d in details}
        poisoned = [entry_id for entry_id, _ in claimed if delivered.get(entry_id, 0) > MAX_DELIVERIES]
        if poisoned:
            log.error(
                "warnings worker: %d entries delivered more than %d times dropped (a full scan covers them): %s",
                len(poisoned), MAX_DELIVERIES, ", ".join(poisoned[:10]),
            )
            await self.redis.xack(self.stream, self.group, *poisoned)
            self.stats.dropped += len(poisoned)
        return [(entry_id, fields) for entry_id, fields in claimed if entry_id not in set(poisoned)]

    async def next_batch(self, stop: asyncio.Event | None = None) -> list[tuple[str, Any]]:
        """Claimed entries when it is time to look for them, else new ones (empty after ``block``)."""
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + max(1.0, self.claim_idle / 2)
            claimed = await self.claim()
            if claimed:
                return claimed
        entries = await self._read(self.batch_size, self.block)
        if entries and len(entries) < self.batch_size and self.linger > 0:
            if stop is None or not stop.is_set():
                await asyncio.sleep(self.linger)
            entries += await self._read(self.batch_size - len(entries), None)
        return entries

    async def _evaluate(self, batch: list[DomainEvent]) -> ScanSummary:
        """One transaction for the batch; retried when it collides with another writer (a unique alert
        inserted meanwhile by a full scan, a deadlock, SQLite's lock)."""
        from sqlalchemy.exc import DBAPIError

        for attempt in range(4):
            try:
                async with self.session_maker() as session:
                    await lock_villages(session, (e.village_code for e in batch))
                    summary = await evaluate_events(session, batch)
                    await session.commit()
                return summary
            except DBAPIError as exc:
                if attempt == 3:
                    raise
                log.info("warnings worker: batch collided (%s); retrying", type(exc.orig or exc).__name__)
                await asyncio.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")

    async def process(self, entries: list[tuple[str, Any]]) -> None:
        """Evaluate the entries as one batch, commit, acknowledge; an entry no evaluation accepts is logged
        and acknowledged (the nightly full scan covers it) rather than retried forever."""
        if not entries:
            return
        started = time.perf_counter()
        batch: list[DomainEvent] = []
        for entry_id, fields in entries:
            try:
                batch.append(DomainEvent.from_fields(fields))
            except (ValueError, TypeError) as exc:
                log.error("warnings worker: entry %s is not an event (%s); skipped", entry_id, exc)
                self.stats.dropped += 1
        raised = updated = 0
        try:
            summary = await self._evaluate(batch)
            raised, updated = summary.raised, summary.updated
        except Exception:  # noqa: BLE001 - find the events that fail on their own; evaluate the others
            log.exception("warnings worker: a batch of %d events failed; evaluating them one by one", len(batch))
            failed: list[DomainEvent] = []
            for event in batch:
                try:
                    summary = await self._evaluate([event])
                    raised, updated = raised + summary.raised, updated + summary.updated
                except Exception:  # noqa: BLE001
                    log.exception("warnings worker: evaluating %s of %s failed", event.kind, event.village_code)
                    failed.append(event)
            if failed and len(failed) == len(batch):
                # nothing works (the database is down?): leave the entries pending; after claim_idle this or
                # another worker takes them over, and gives up on one after MAX_DELIVERIES tries
                await asyncio.sleep(min(5.0, self.claim_idle))
                return
            for event in failed:
                log.error("warnings worker: %s of %s dropped (a full scan covers it)", event.kind, event.village_code)
            self.stats.dropped += len(failed)
        await self.redis.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
        done_ms = time.time() * 1000
        lags = [max(0.0, done_ms - _entry_ms(entry_id)) for entry_id, _ in entries]
        elapsed = (time.perf_counter() - started) * 1000
        self.stats.batches += 1
        self.stats.events += len(entries)
        self.stats.lags_ms += lags
        self.stats.evaluation_ms.append(elapsed)
        log.debug(
            "warnings worker: %d events (%d villages) in %.0f ms, %d raised, %d updated, lag max %.0f ms",
            len(entries), len({e.village_code for e in batch}), elapsed, raised, updated, max(lags),
        )
        if self.stats_path:
            with open(self.stats_path, "a", encoding="utf-8") as out:
                out.write(
                    json.dumps({"at": done_ms / 1000, "events": len(entries), "evaluation_ms": round(elapsed, 2),
                                "lags_ms": [round(lag, 1) for lag in lags]})
                    + "\n"
                )

    def report(self) -> None:
        """The summary line of the events since the last one (at info), added to the totals."""
        if self.stats.batches or self.stats.dropped:
            log.info("warnings worker: %s", self.stats.line())
        for name in ("batches", "events", "dropped"):
            setattr(self.total, name, getattr(self.total, name) + getattr(self.stats, name))
        self.total.lags_ms += self.stats.lags_ms
        self.total.evaluation_ms += self.stats.evaluation_ms
        self.stats = WorkerStats()

    async def run(self, stop: asyncio.Event, *, drain: bool = False, report_every: float = 60.0) -> WorkerStats:
        """Until ``stop`` is set (SIGTERM), finishing the batch in hand; with ``drain``, also once nothing is
        left to read. Returns the totals."""
        await ensure_group(self.redis, self.stream, self.group)
        log.info("warnings worker %s: consuming %s as %s", self.consumer, self.stream, self.group)
        next_report = time.monotonic() + report_every
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        while not stop.is_set():
            try:
                entries = await self.next_batch(stop)
                if entries:
                    await self.process(entries)
                elif drain:
                    break
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # a batch evaluated but not acknowledged is evaluated again later: idempotent
                log.warning("warnings worker: Redis unavailable (%s); retrying in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + report_every
                self.report()
        self.report()
        log.info("warnings worker %s: stopped; %s", self.consumer, self.total.line())
        return self.total


async def run_worker(
    settings: Any,
    *,
    stop: asyncio.Event | None = None,
    drain: bool = False,
    **options: Any,
) -> WorkerStats:
    """`sanzi warnings worker`: the stream worker on the configured database and Redis, stopped by SIGTERM or
    SIGINT (after the batch in hand)."""
    from redis.asyncio import Redis

    from sanzi.platform.database import create_engine

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
    engine = create_engine(settings)
    redis = Redis.from_url(settings.redis_url)
    try:
        worker = StreamWorker(
            redis, async_sessionmaker(engine, expire_on_commit=False), settings.warnings_stream, **options
        )
        return await worker.run(stop, drain=drain)
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
        await redis.aclose()
        await engine.dispose()


# ---- wiring into the app ----------------------------------------------------------------------------------


def _sessions_share_one_connection(app: Any) -> bool:
    """True when the app's request sessions are bound to one connection (an outer transaction, as the test
    harness does): another connection could not see their writes and, on SQLite, would wait for their lock."""
    from advanced_alchemy.extensions.litestar import SQLAlchemyPlugin

    plugin = app.plugins.get(SQLAlchemyPlugin) if hasattr(app, "plugins") else None
    configs = getattr(plugin, "config", None) if plugin is not None else None
    for config in configs if isinstance(configs, Sequence) else [configs]:
        maker = getattr(config, "session_maker", None)
        if isinstance(getattr(maker, "kw", {}).get("bind"), AsyncConnection):
            return True
    return False


@asynccontextmanager
async def engine_lifespan(app: Any) -> AsyncIterator[None]:
    """While the app runs, committed domain events go to the warnings worker's stream (Redis configured), or
    are evaluated in a background task of this process (the embedded default, or SANZI_WARNINGS_EVALUATION
    =inprocess)."""
    if _sessions_share_one_connection(app):
        log.info("warnings: request sessions share one connection; incremental evaluation is off")
        yield
        return
    settings = app.state.get("settings")
    redis = app.state.get("redis")
    engine = IncrementalEngine(async_sessionmaker(app.state.engine, expire_on_commit=False))
    app.state.warnings_engine = engine
    publisher = None
    if redis is not None and getattr(settings, "warnings_evaluation", "auto") == "auto":
        publisher = StreamPublisher(redis, settings.warnings_stream, engine)
        app.state.warnings_publisher = publisher
        unsubscribe = events.subscribe(publisher.receive)
    else:
        unsubscribe = events.subscribe(engine.receive)
    task = asyncio.create_task(engine.run(), name="sanzi-warnings-engine")
    try:
        yield
    finally:
        unsubscribe()
        if publisher is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(publisher.wait_idle(), timeout=5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = [
    "GROUP",
    "IncrementalEngine",
    "RuleCounts",
    "ScanSummary",
    "StreamPublisher",
    "StreamWorker",
    "clear_parameter_cache",
    "engine_lifespan",
    "evaluate_event",
    "evaluate_events",
    "resolve_parameters",
    "run_worker",
    "scan",
    "upsert_findings",
]
