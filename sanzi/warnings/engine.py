"""The warning engine: full scans, incremental evaluation after committed events, alert upserts.

Both paths go through :func:`_evaluate`: per rule, the districts in question are grouped by their resolved
parameter values and the rule runs once per group; its findings are upserted by (rule, subject) so that the
same rule and subject keep one alert, and an evaluation over unchanged data changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

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


async def resolve_parameters(
    session: AsyncSession, rules: Sequence[Rule], district_codes: Iterable[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """{rule id: {district: {short name: value}}}: a district's value, else the city's, else the default.

    One query for every rule's settings."""
    districts = list(district_codes)
    keys = [p.key for rule in rules for p in rule.parameters]
    stored: dict[tuple[str, str], Any] = {}
    for chunk in _chunks(keys):
        for row in await session.execute(select(Setting.key, Setting.scope, Setting.value).where(Setting.key.in_(chunk))):
            stored[(row.key, row.scope)] = row.value
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
    places: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(new_villages):
        rows = await session.execute(
            select(Village.code, Village.township_code, Village.district_code).where(Village.code.in_(chunk))
        )
        places.update({row.code: (row.township_code, row.district_code) for row in rows})

    raised: list[Alert] = []
    history: list[AlertEvent] = []
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
                Alert(
                    rule_id=rule.id,
                    family=rule.family.value,
                    subject_type=finding.subject_type,
                    subject_id=str(finding.subject_id),
                    village_code=finding.village_code,
                    township_code=township,
                    district_code=district,
                    severity=severity,
                    score=score,
                    explanation=finding.explanation,
                    evidence=evidence,
                    occurred_at=occurred_at,
                    first_raised_at=now,
                    last_updated_at=now,
                    status="new",
                )
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
                AlertEvent(
                    alert_id=alert.id,
                    action="updated",
                    from_status=alert.status,
                    to_status=alert.status,
                    note=f"评分 {alert.score:g} → {score:g}" if alert.score != score else "证据更新",
                    at=now,
                )
            )
        alert.severity, alert.score, alert.explanation = severity, score, finding.explanation
        alert.evidence, alert.occurred_at, alert.last_updated_at = evidence, occurred_at, now
        counts.updated += 1
        changed_villages.add(alert.village_code)

    if raised:
        session.add_all(raised)
        await session.flush()
        history.extend(
            AlertEvent(alert_id=a.id, action="raised", to_status="new", note=a.explanation, at=now) for a in raised
        )
        counts.raised = len(raised)
    session.add_all(history)
    await session.flush()
    _changed_villages(session).update(changed_villages)
    return counts


def _changed_villages(session: AsyncSession) -> set[str]:
    return session.info.setdefault("sanzi_warnings_changed", set())


# ---- evaluation -------------------------------------------------------------------------------------------


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
) -> None:
    resolved = await resolve_parameters(session, rules, districts)
    now = datetime.now(UTC)
    for rule in rules:
        counts = summary.counts(rule.id)
        groups = group_by_values(resolved[rule.id])
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


async def scan(
    session: AsyncSession,
    *,
    district_code: str | None = None,
    since: date | None = None,
    rules: Sequence[Rule] | None = None,
    progress: Progress | None = None,
    recompute_index: bool = True,
) -> ScanSummary:
    """Every rule over all data (or one district, or facts since a date); ends by recomputing this month's
    integrity index. The caller commits."""
    rules = list(all_rules() if rules is None else rules)
    if district_code:
        code = normalise_code(district_code, "district")
        if await session.get(District, code) is None:
            raise NotFound("区", "district")
        districts = [code]
    else:
        districts = list(await session.scalars(select(District.code).order_by(District.code)))
    summary = ScanSummary()
    await _evaluate(
        session, rules, districts, summary, whole_city=district_code is None, since=since, progress=progress
    )
    if recompute_index:
        from sanzi.warnings.services import IntegrityService, month_start

        summary.index_month = month_start(datetime.now(UTC).date())
        await IntegrityService(session).recompute(summary.index_month)
    return summary


async def evaluate_events(
    session: AsyncSession, batch: Sequence[DomainEvent], rules: Sequence[Rule] | None = None
) -> ScanSummary:
    """The rules each event's kind triggers, over the event's village only; events of one village and kind
    are evaluated once, and villages of one district that need the same rule share one evaluation."""
    rules = list(all_rules() if rules is None else rules)
    kinds_by_village: dict[str, set[str]] = defaultdict(set)
    events_by_village: dict[str, list[DomainEvent]] = defaultdict(list)
    for event in batch:
        kinds_by_village[event.village_code].add(event.kind)
        events_by_village[event.village_code].append(event)
    summary = ScanSummary()
    if not kinds_by_village:
        return summary
    rows = await session.execute(
        select(Village.code, Village.district_code).where(Village.code.in_(list(kinds_by_village)))
    )
    district_of = {row.code: row.district_code for row in rows}
    work: dict[tuple[str, str], list[str]] = defaultdict(list)  # (rule id, district) -> villages
    for village, kinds in sorted(kinds_by_village.items()):
        if village not in district_of:
            continue
        for rule in rules:
            if rule.triggers & kinds:
                work[(rule.id, district_of[village])].append(village)
    by_id = {rule.id: rule for rule in rules}
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
        )
    if summary.changed_villages:
        from sanzi.warnings.services import IntegrityService, month_start

        summary.index_month = month_start(datetime.now(UTC).date())
        await IntegrityService(session).recompute(summary.index_month, villages=sorted(summary.changed_villages))
    return summary


async def evaluate_event(session: AsyncSession, event: DomainEvent) -> ScanSummary:
    """Incremental evaluation after one committed event."""
    return await evaluate_events(session, [event])


# ---- the background task ----------------------------------------------------------------------------------


class IncrementalEngine:
    """Receives committed events without blocking their request and evaluates them in batches."""

    def __init__(self, session_maker: async_sessionmaker[AsyncSession]) -> None:
        self.session_maker = session_maker
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
    """While the app runs, committed domain events are evaluated in the background."""
    if _sessions_share_one_connection(app):
        log.info("warnings: request sessions share one connection; incremental evaluation is off")
        yield
        return
    engine = IncrementalEngine(async_sessionmaker(app.state.engine, expire_on_commit=False))
    app.state.warnings_engine = engine
    unsubscribe = events.subscribe(engine.receive)
    task = asyncio.create_task(engine.run(), name="sanzi-warnings-engine")
    try:
        yield
    finally:
        unsubscribe()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = [
    "IncrementalEngine",
    "RuleCounts",
    "ScanSummary",
    "engine_lifespan",
    "evaluate_event",
    "evaluate_events",
    "resolve_parameters",
    "scan",
    "upsert_findings",
]
