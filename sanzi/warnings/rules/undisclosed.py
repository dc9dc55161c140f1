"""Undisclosed transactions (应进场未进场): deals that should have gone through the trading platform and did not,
or went through it and were then changed, hidden or left unpursued.

Basis shared by the family: 《广东省农村集体资产管理条例》 (collective assets are contracted, leased and transferred
by open bidding on the rural collective asset trading platform above the published standards), 《广州市农村集体
资产交易管理办法》 (the value and term standards for mandatory trading, publicity of results, signing per the result)
and the Ministry of Agriculture's 《农村集体经济组织财务制度》 (contract management, collection of receivables).

Every rule is one or two set-based statements; Python only shapes the (few) result rows into findings.
Dates are compared as dates or as day numbers (days since 1970-01-01) computed by the database, so the same SQL
runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement

from sanzi.auction.models import Listing, ListingAsset
from sanzi.ledger.models import (
    Account,
    Asset,
    AssetStatusChange,
    Contract,
    ContractInstallment,
    ContractReceipt,
    JournalEntry,
    JournalLine,
)
from sanzi.platform.models import Collective, Village
from sanzi.platform.money import fen_to_yuan
from sanzi.warnings.models import Severity
from sanzi.warnings.rules.base import Family, Finding, Rule, Scope
from sanzi.warnings.rules.base import rule_parameter as parameter
from sanzi.warnings.rules.stats import add_days, china_date, day_number

CHINA = ZoneInfo("Asia/Shanghai")
EPOCH = date(1970, 1, 1)

# ---- shared helpers (election.py imports these; the portable SQL date functions live in stats.py) --------

# aliases built once per process: a fresh alias of a wide model cost milliseconds of column adaptation
# on every evaluation (the first use of each of its attributes), more than many a rule's statement runs
_LINKED_LISTING, _LINKED_CONTRACT = aliased(Listing), aliased(Contract)
_ASSET_CONTRACT, _LISTED_ASSET = aliased(Contract), aliased(ListingAsset)
_REVERSAL, _REVERSED_ENTRY = aliased(JournalEntry), aliased(JournalEntry)
_PREVIOUS_CONTRACT = aliased(Contract)


def today() -> date:
    """Today in China: arrears and windows are counted in the villages' calendar."""
    return datetime.now(CHINA).date()


def day_of(value: date) -> int:
    return (value - EPOCH).days


def at_midnight(value: date | datetime | None) -> datetime:
    """An aware UTC moment for a finding's occurred_at (dates are taken at midnight in China)."""
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.combine(value, time(), CHINA).astimezone(UTC)


def in_scope(village_code: ColumnElement[str], scope: Scope) -> list[ColumnElement[bool]]:
    """WHERE conditions limiting the subjects (never the comparables) to the scope's villages and districts."""
    conditions: list[ColumnElement[bool]] = []
    if scope.village_codes is not None:
        conditions.append(village_code.in_(scope.village_codes))
    if scope.district_codes is not None:
        conditions.append(
            village_code.in_(select(Village.code).where(Village.district_code.in_(scope.district_codes)))
        )
    return conditions


def since(column: ColumnElement[Any], scope: Scope) -> list[ColumnElement[bool]]:
    return [column >= scope.since] if scope.since is not None else []


def party_subject(village_code: str, party: str) -> str:
    """A counterparty's subject id: village code and the name (or id number); hashed when too long for 40."""
    subject = f"{village_code}:{party}"
    if len(subject) <= 40:
        return subject
    return f"{village_code}:#{hashlib.sha256(party.encode()).hexdigest()[:26]}"


def yuan(fen: int | float | None) -> str:
    return "¥" + fen_to_yuan(int(round(fen or 0)))


def scaled_score(ratio: float, base: float = 50.0) -> float:
    """50 at the threshold, rising with how far past it the facts are, at most 100."""
    return round(min(100.0, base + 25.0 * max(float(ratio), 0.0)), 1)


def no_listing_behind(contract: type[Contract] | Any) -> ColumnElement[bool]:
    """The contract did not come out of a trade on the platform."""
    return and_(contract.listing_id.is_(None), ~exists().where(Listing.contract_id == contract.id))


@dataclass(frozen=True)
class Touched:
    """What the triggering events of an incremental evaluation touched: the contracts recorded (and, for
    ``entry_posted``, the contracts the posted entries are receipts of), the listings closed and the entries
    posted."""

    contracts: frozenset[int]
    listings: frozenset[int]
    entries: frozenset[int]


async def touched(session: AsyncSession, scope: Scope) -> Touched | None:
    """The ids the scope's triggering events carry, or None (evaluate the villages whole) in a full scan or
    when an event is of another kind or lacks its id."""
    if scope.events is None:
        return None
    keys = {"contract_recorded": "contract_id", "listing_closed": "listing_id", "entry_posted": "entry_id"}
    found: dict[str, set[int]] = {key: set() for key in keys.values()}
    for event in scope.events:
        key = keys.get(event.kind)
        if key is None or key not in event.ids:
            return None
        found[key].add(event.ids[key])
    contracts = set(found["contract_id"])
    if found["entry_id"]:
        contracts |= set(await session.scalars(
            select(ContractReceipt.contract_id).where(ContractReceipt.entry_id.in_(sorted(found["entry_id"])))
        ))
    return Touched(frozenset(contracts), frozenset(found["listing_id"]), frozenset(found["entry_id"]))


def ids_in(column: ColumnElement[Any], ids: frozenset[int] | set[int]) -> ColumnElement[bool]:
    """``column IN (ids)`` (false for no ids), the ids sorted so that equal sets give equal statements."""
    return column.in_(sorted(ids))


def linked_contracts(hit: Touched, contract: Any = Contract) -> ColumnElement[bool]:
    """The contract was touched, or is the contract of a touched listing."""
    listing = _LINKED_LISTING
    return or_(ids_in(contract.id, hit.contracts), ids_in(contract.listing_id, hit.listings),
               contract.id.in_(select(listing.contract_id).where(ids_in(listing.id, hit.listings))))


def linked_listings(hit: Touched, listing: Any = Listing) -> ColumnElement[bool]:
    """The listing was touched, or is the listing of a touched contract."""
    contract = _LINKED_CONTRACT
    return or_(ids_in(listing.id, hit.listings), ids_in(listing.contract_id, hit.contracts),
               listing.id.in_(select(contract.listing_id).where(ids_in(contract.id, hit.contracts))))


def linked_assets(hit: Touched, asset_id: ColumnElement[Any]) -> ColumnElement[bool]:
    """The asset is the asset of a touched contract or one of a touched listing's assets."""
    contract, listed = _ASSET_CONTRACT, _LISTED_ASSET
    return or_(asset_id.in_(select(contract.asset_id).where(ids_in(contract.id, hit.contracts))),
               asset_id.in_(select(listed.asset_id).where(ids_in(listed.listing_id, hit.listings))))


# ---- the rules -------------------------------------------------------------------------------------------

OFF = "UND-OFF-PLATFORM"


class OffPlatformContract(Rule):
    """A contract signed directly (origin direct) above the trading standard in value or term, with no auction.

    Basis: 《广东省农村集体资产管理条例》 and 《广州市农村集体资产交易管理办法》: contracting, leasing and transfer of
    collective assets reaching the published value or term standard must be traded openly on the platform.
    """

    id = OFF
    family = Family.UNDISCLOSED
    title = "应进场交易未进场（场外直接签约）"
    severity = Severity.RED
    triggers = frozenset({"contract_recorded"})
    parameters = (
        parameter(OFF, "value_threshold", 50_000, int, 1, 10**9, "进场交易的合同总价标准（元）：超过即应进场"),
        parameter(OFF, "term_threshold_years", 5, int, 1, 70, "进场交易的合同期限标准（年）：超过即应进场"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        threshold = params["value_threshold"] * 100
        term_limit = params["term_threshold_years"] * 12
        hit = await touched(session, scope)  # a contract's finding depends on that contract alone
        if hit is not None and not hit.contracts:
            return []
        rows = await session.execute(
            select(Contract)
            .where(
                *([] if hit is None else [ids_in(Contract.id, hit.contracts)]),
                Contract.origin == "direct",
                no_listing_behind(Contract),
                or_(Contract.total_value_fen > threshold, Contract.term_months > term_limit),
                *in_scope(Contract.village_code, scope),
                *since(Contract.signed_on, scope),
            )
            .order_by(Contract.id)
        )
        findings = []
        for contract in rows.scalars():
            ratio = max(contract.total_value_fen / threshold, contract.term_months / term_limit)
            findings.append(
                Finding(
                    rule_id=self.id,
                    subject_type="contract",
                    subject_id=str(contract.id),
                    village_code=contract.village_code,
                    score=scaled_score(ratio - 1, 60),
                    explanation=(
                        f"合同 {contract.number} 与「{contract.counterparty_name}」直接签订，合同总价 "
                        f"{yuan(contract.total_value_fen)}（进场标准 {yuan(threshold)}），期限 {contract.term_months} 个月"
                        f"（进场标准 {params['term_threshold_years']} 年），未经平台公开交易；"
                        f"直接签约理由：{contract.origin_reason or '未说明'}"
                    ),
                    evidence={"contracts": [contract.id]},
                    occurred_at=at_midnight(contract.signed_on),
                    numbers={
                        "total_value_fen": contract.total_value_fen,
                        "value_threshold_fen": threshold,
                        "term_months": contract.term_months,
                        "term_threshold_months": term_limit,
                    },
                )
            )
        return findings


STATUS = "UND-STATUS-WITHOUT-TRADE"


class StatusWithoutTrade(Rule):
    """An asset marked leased or sold with no completed trade (no sold listing) and no contract for it.

    Basis: 《农村集体经济组织财务制度》 and the Guangdong regulation: an asset is let or transferred only by a contract,
    and above the standard only after an open trade; a status without either hides a deal from the books.
    """

    id = STATUS
    family = Family.UNDISCLOSED
    title = "资产状态已出租/转让但无交易和合同"
    severity = Severity.ORANGE
    triggers = frozenset({"contract_recorded", "listing_closed"})
    parameters = ()

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        hit = await touched(session, scope)  # a contract or a sale changes only its own assets' findings
        if hit is not None and not (hit.contracts or hit.listings):
            return []
        sold_listing = exists(
            select(1)
            .select_from(ListingAsset)
            .join(Listing, Listing.id == ListingAsset.listing_id)
            .where(ListingAsset.asset_id == Asset.id, Listing.status == "sold")
        )
        last_change = (
            select(func.max(AssetStatusChange.changed_at))
            .where(AssetStatusChange.asset_id == Asset.id, AssetStatusChange.to_status == Asset.status)
            .scalar_subquery()
        )
        changed_at = func.coalesce(last_change, Asset.updated_at)
        rows = await session.execute(
            select(Asset.id, Asset.village_code, Asset.code, Asset.name, Asset.status, changed_at.label("changed_at"))
            .where(
                *([] if hit is None else [linked_assets(hit, Asset.id)]),
                Asset.status.in_(("leased", "sold")),
                ~sold_listing,
                ~exists().where(Contract.asset_id == Asset.id),
                *in_scope(Asset.village_code, scope),
                *([changed_at >= at_midnight(scope.since)] if scope.since else []),
            )
            .order_by(Asset.id)
        )
        status_zh = {"leased": "出租/发包中", "sold": "已转让"}
        return [
            Finding(
                rule_id=self.id,
                subject_type="asset",
                subject_id=str(row.id),
                village_code=row.village_code,
                score=70.0 if row.status == "sold" else 60.0,
                explanation=(
                    f"资产 {row.code}「{row.name}」状态为「{status_zh[row.status]}」，但平台上没有该资产的成交记录"
                    f"（成交项目 0 宗），台账中也没有该资产的合同（0 份）"
                ),
                evidence={"assets": [row.id]},
                occurred_at=at_midnight(row.changed_at),
                numbers={"status": row.status, "sold_listings": 0, "contracts": 0},
            )
            for row in rows
        ]


INCOME = "UND-INCOME-WITHOUT-CONTRACT"
#: entries that are not receipts from a trading partner: deposits, their refunds and forfeits, reversals,
#: and contract receipts (tied to a contract by construction)
NON_RECEIPT_SOURCES = ("deposit", "deposit_refund", "auction_deposit", "reversal", "contract_receipt")


class IncomeWithoutContract(Rule):
    """Income received from a counterparty with whom the village has no contract, above a yearly minimum.

    Basis: 《农村集体经济组织财务制度》 (income from contracting and leasing is collected under a contract) and the
    Guangzhou trading rules: money from a user of collective assets without a contract points at a lease made
    off the books and off the platform. Government subsidies (521) and investment income (511) are not counted.
    """

    id = INCOME
    family = Family.UNDISCLOSED
    title = "有收入无合同"
    severity = Severity.ORANGE
    triggers = frozenset({"entry_posted", "contract_recorded"})
    parameters = (
        parameter(INCOME, "min_amount", 5_000, int, 1, 10**9, "12 个月内同一付款方无合同收入的最低金额（元）"),
        parameter(INCOME, "window_days", 365, int, 30, 1_830, "累计收入的时间窗（天），截至该付款方最近一笔收入"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        minimum = params["min_amount"] * 100
        parties = await self._touched_parties(session, scope)
        if parties is not None and not parties:
            return []
        reversal = _REVERSAL
        receipts = (
            select(
                Collective.village_code.label("village_code"),
                JournalEntry.counterparty.label("party"),
                JournalEntry.id.label("entry_id"),
                JournalEntry.entry_date.label("entry_date"),
                day_number(JournalEntry.entry_date).label("day"),
                JournalLine.credit_fen.label("amount"),
            )
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .join(Account, Account.id == JournalLine.account_id)
            .join(Collective, Collective.id == JournalEntry.collective_id)
            .where(
                JournalLine.credit_fen > 0,
                Account.type == "income",
                ~Account.code.like("511%"),
                ~Account.code.like("521%"),
                JournalEntry.counterparty.is_not(None),
                JournalEntry.counterparty != "",
                JournalEntry.source.not_in(NON_RECEIPT_SOURCES),
                JournalEntry.reverses_entry_id.is_(None),
                ~exists().where(reversal.reverses_entry_id == JournalEntry.id),
                ~exists().where(ContractReceipt.entry_id == JournalEntry.id),
                ~exists().where(
                    Contract.village_code == Collective.village_code,
                    Contract.counterparty_name == JournalEntry.counterparty,
                ),
                *in_scope(Collective.village_code, scope),
                *([] if parties is None else [or_(*(
                    and_(Collective.village_code == village, JournalEntry.counterparty == party)
                    for village, party in sorted(parties)
                ))]),
            )
            .cte("receipts")
        )
        latest = (
            select(receipts.c.village_code, receipts.c.party, func.max(receipts.c.day).label("last_day"))
            .group_by(receipts.c.village_code, receipts.c.party)
            .cte("latest")
        )
        in_window = and_(
            receipts.c.village_code == latest.c.village_code,
            receipts.c.party == latest.c.party,
            receipts.c.day > latest.c.last_day - params["window_days"],
        )
        totals = (
            select(latest.c.village_code, latest.c.party, func.sum(receipts.c.amount).label("total"))
            .join(receipts, in_window)
            .group_by(latest.c.village_code, latest.c.party)
            .having(func.sum(receipts.c.amount) > minimum)
            .subquery("totals")
        )
        rows = await session.execute(
            select(receipts.c.village_code, receipts.c.party, receipts.c.entry_id, receipts.c.entry_date,
                   receipts.c.amount, totals.c.total)
            .join(latest, in_window)
            .join(totals, and_(totals.c.village_code == latest.c.village_code, totals.c.party == latest.c.party))
            .where(*([latest.c.last_day >= day_of(scope.since)] if scope.since else []))
            .order_by(receipts.c.village_code, receipts.c.party, receipts.c.entry_date, receipts.c.entry_id)
        )
        groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for row in rows:
            groups[(row.village_code, row.party)].append(row)
        findings = []
        for (village_code, party), entries in groups.items():
            total = int(entries[0].total)
            findings.append(
                Finding(
                    rule_id=self.id,
                    subject_type="counterparty",
                    subject_id=party_subject(village_code, party),
                    village_code=village_code,
                    score=scaled_score(total / minimum - 1),
                    explanation=(
                        f"{entries[0].entry_date.isoformat()} 至 {entries[-1].entry_date.isoformat()} 收到「{party}」"
                        f"款项 {len(entries)} 笔，合计 {yuan(total)}（标准 {yuan(minimum)}），"
                        f"但本村没有与其签订的合同"
                    ),
                    evidence={"entries": [e.entry_id for e in entries], "counterparty": [party]},
                    occurred_at=at_midnight(entries[-1].entry_date),
                    numbers={"total_fen": total, "min_amount_fen": minimum, "entries": len(entries)},
                )
            )
        return findings

    @staticmethod
    async def _touched_parties(session: AsyncSession, scope: Scope) -> set[tuple[str, str]] | None:
        """The (village, counterparty) groups the events can change: a finding is one counterparty's receipts
        in its village, so a posted entry changes its counterparty's (and, for a reversal, the reversed
        entry's), a recorded contract its counterparty's; None to evaluate the villages whole."""
        hit = await touched(session, scope)
        if hit is None:
            return None
        parties: set[tuple[str, str]] = set()
        if hit.entries:
            reversed_entry = _REVERSED_ENTRY
            rows = await session.execute(
                select(Collective.village_code, JournalEntry.counterparty,
                       reversed_entry.counterparty.label("reversed_party"))
                .join(Collective, Collective.id == JournalEntry.collective_id)
                .outerjoin(reversed_entry, reversed_entry.id == JournalEntry.reverses_entry_id)
                .where(ids_in(JournalEntry.id, hit.entries))
            )
            for row in rows:
                parties |= {(row.village_code, p) for p in (row.counterparty, row.reversed_party) if p}
        if hit.contracts:
            rows = await session.execute(
                select(Contract.village_code, Contract.counterparty_name).where(ids_in(Contract.id, hit.contracts))
            )
            parties |= {(row.village_code, row.counterparty_name) for row in rows}
        return parties


SPLIT = "UND-SPLIT-CONTRACTS"


class SplitContracts(Rule):
    """Several direct contracts with one counterparty, each under the trading standard, adding up above it
    within 12 months (OCDS R055-like contract splitting to stay off the platform).

    Basis: 《广州市农村集体资产交易管理办法》 forbids splitting a transaction (化整为零) to avoid open trading.
    """

    id = SPLIT
    family = Family.UNDISCLOSED
    title = "化整为零规避进场"
    severity = Severity.ORANGE
    ocds_code = "R055"
    triggers = frozenset({"contract_recorded"})
    parameters = (
        parameter(SPLIT, "value_threshold", 50_000, int, 1, 10**9, "进场交易的合同总价标准（元）"),
        parameter(SPLIT, "window_days", 365, int, 30, 1_830, "合并计算的时间窗（天）"),
        parameter(SPLIT, "min_contracts", 2, int, 2, 100, "至少几份合同"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        threshold = params["value_threshold"] * 100
        hit = await touched(session, scope)  # a finding is one counterparty's contracts in its village
        parties: list[tuple[str, str]] = []
        party_of = func.coalesce(Contract.counterparty_id_number, Contract.counterparty_name)
        if hit is not None:
            parties = sorted({(row[0], row[1]) for row in await session.execute(
                select(Contract.village_code, party_of).where(ids_in(Contract.id, hit.contracts))
            )})
            if not parties:
                return []
        small = (
            select(
                Contract.id,
                Contract.village_code,
                func.coalesce(Contract.counterparty_id_number, Contract.counterparty_name).label("party"),
                Contract.counterparty_name,
                Contract.number,
                Contract.signed_on,
                day_number(Contract.signed_on).label("day"),
                Contract.total_value_fen,
            )
            .where(Contract.origin == "direct", no_listing_behind(Contract), Contract.total_value_fen <= threshold,
                   # a member is of its anchor's village and counterparty: those of the anchors in question
                   *in_scope(Contract.village_code, scope),
                   *([or_(*(and_(Contract.village_code == v, party_of == p) for v, p in parties))]
                     if hit is not None else []))
            .cte("small")
        )
        member = small.alias("member")

        def together(anchor: Any) -> ColumnElement[bool]:
            """The anchor's members: its village's and counterparty's contracts up to it, within the window."""
            return and_(
                member.c.village_code == anchor.c.village_code,
                member.c.party == anchor.c.party,
                member.c.day <= anchor.c.day,
                member.c.day > anchor.c.day - params["window_days"],
                or_(member.c.day < anchor.c.day, member.c.id <= anchor.c.id),
            )

        # Each anchor's total and count over its members (``together``) in one ordered pass per counterparty
        # instead of a self-join: the days (day - window, day] are a range frame, less the same day's later
        # contracts. The planner cannot estimate the contracts a self-join pairs, and its nested loop grew with
        # the square of the city.
        party_days = {"partition_by": (small.c.village_code, small.c.party), "order_by": small.c.day,
                      "range_": (-(params["window_days"] - 1), 0)}
        later_same_day = {"partition_by": (small.c.village_code, small.c.party, small.c.day),
                          "order_by": small.c.id, "rows": (1, None)}
        windowed = select(
            small.c.id,
            small.c.village_code,
            small.c.party,
            small.c.signed_on,
            small.c.day,
            (func.sum(small.c.total_value_fen).over(**party_days)
             - func.coalesce(func.sum(small.c.total_value_fen).over(**later_same_day), 0)).label("total"),
            (func.count().over(**party_days) - func.count().over(**later_same_day)).label("n"),
        ).subquery("windowed")
        # materialised: whatever the join order below, the windows are computed once
        anchor = (
            select(windowed.c.id, windowed.c.village_code, windowed.c.party, windowed.c.day, windowed.c.total)
            .where(windowed.c.total > threshold, windowed.c.n >= params["min_contracts"],
                   *in_scope(windowed.c.village_code, scope), *since(windowed.c.signed_on, scope),
                   *([or_(*(and_(windowed.c.village_code == v, windowed.c.party == p) for v, p in parties))]
                     if hit is not None else []))
            .cte("anchors")
            .prefix_with("MATERIALIZED")
        )
        rows = await session.execute(
            select(anchor.c.id.label("anchor_id"), anchor.c.village_code, anchor.c.party, anchor.c.total,
                   member.c.id, member.c.number, member.c.counterparty_name, member.c.signed_on,
                   member.c.total_value_fen)
            .join(member, together(anchor))
            .order_by(anchor.c.id, member.c.signed_on, member.c.id)
        )
        by_anchor: dict[int, list[Any]] = defaultdict(list)
        for row in rows:
            by_anchor[row.anchor_id].append(row)
        # one finding per counterparty: the 12-month stretch with the largest total (the latest on ties)
        best: dict[tuple[str, str], list[Any]] = {}
        for anchor_id, members in by_anchor.items():
            key = (members[0].village_code, members[0].party)
            current = best.get(key)
            if current is None or (members[0].total, anchor_id) > (current[0].total, current[0].anchor_id):
                best[key] = members
        findings = []
        for (village_code, party), members in sorted(best.items()):
            total = int(members[0].total)
            names = "、".join(m.number for m in members)
            findings.append(
                Finding(
                    rule_id=self.id,
                    subject_type="counterparty",
                    subject_id=party_subject(village_code, party),
                    village_code=village_code,
                    score=scaled_score(total / threshold - 1),
                    explanation=(
                        f"与「{members[-1].counterparty_name}」在 {members[0].signed_on.isoformat()} 至 "
                        f"{members[-1].signed_on.isoformat()} 间直接签订 {len(members)} 份合同（{names}），"
                        f"每份均未超过进场标准 {yuan(threshold)}，合计 {yuan(total)}"
                    ),
                    evidence={"contracts": [m.id for m in members]},
                    occurred_at=at_midnight(members[-1].signed_on),
                    numbers={"total_fen": total, "value_threshold_fen": threshold, "contracts": len(members)},
                )
            )
        return findings


RENEWAL = "UND-RENEWAL-WITHOUT-REBID"


class RenewalWithoutRebid(Rule):
    """A direct contract for an asset whose previous contract (same or other counterparty) was still running or
    had ended within the window before the new one's start: a renewal that did not go back to open trading.

    Basis: 《广州市农村集体资产交易管理办法》: a contract that expires is traded again; renewal by private agreement
    (私下续签) is not allowed for assets within the trading standard.
    """

    id = RENEWAL
    family = Family.UNDISCLOSED
    title = "到期续约未重新进场"
    severity = Severity.ORANGE
    triggers = frozenset({"contract_recorded"})
    parameters = (
        parameter(RENEWAL, "window_days", 365, int, 30, 1_830, "旧合同结束至新合同开始的最长间隔（天）"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        # a new contract is judged against its asset's earlier contracts and may be the earlier contract of
        # a later one (recorded late): its asset's contracts are what it can change
        hit = await touched(session, scope)
        if hit is not None and not hit.contracts:
            return []
        previous = _PREVIOUS_CONTRACT
        rows = await session.execute(
            select(Contract.id, Contract.village_code, Contract.number, Contract.counterparty_name,
                   Contract.start_date, Contract.signed_on, previous.id.label("previous_id"),
                   previous.number.label("previous_number"), previous.counterparty_name.label("previous_party"),
                   previous.end_date.label("previous_end"), previous.origin.label("previous_origin"))
            .join(previous, and_(previous.asset_id == Contract.asset_id, previous.id != Contract.id))
            .where(
                *([] if hit is None else [linked_assets(hit, Contract.asset_id)]),
                Contract.origin == "direct",
                Contract.asset_id.is_not(None),
                no_listing_behind(Contract),
                previous.start_date < Contract.start_date,
                previous.end_date >= add_days(Contract.start_date, -params["window_days"]),
                *in_scope(Contract.village_code, scope),
                *since(Contract.signed_on, scope),
            )
            .order_by(Contract.id, previous.end_date.desc(), previous.id.desc())
        )
        findings: dict[int, Finding] = {}
        for row in rows:
            if row.id in findings:  # the latest previous contract only
                continue
            same = row.previous_party == row.counterparty_name
            gap = (row.start_date - row.previous_end).days
            findings[row.id] = Finding(
                rule_id=self.id,
                subject_type="contract",
                subject_id=str(row.id),
                village_code=row.village_code,
                score=70.0 if same else 55.0,
                explanation=(
                    f"合同 {row.number}（「{row.counterparty_name}」，{row.start_date.isoformat()} 起）直接签订；"
                    f"同一资产的前一合同 {row.previous_number}（「{row.previous_party}」）于 "
                    + (
                        f"{row.previous_end.isoformat()} 结束，相隔 {gap} 天（标准 {params['window_days']} 天内），"
                        if gap >= 0
                        else f"{row.previous_end.isoformat()} 才到期，新合同在其到期前 {-gap} 天开始，"
                    )
                    + f"{'原承租方' if same else '换了承租方但'}未重新进场交易"
                ),
                evidence={"contracts": [row.id, row.previous_id]},
                occurred_at=at_midnight(row.signed_on),
                numbers={"gap_days": gap, "window_days": params["window_days"], "same_counterparty": same},
            )
        return list(findings.values())


WORSE = "UND-TERMS-WORSE-THAN-RESULT"


class TermsWorseThanResult(Rule):
    """A contract from an auction whose price is below, or term longer than, the listing's published result.

    Basis: 《广州市农村集体资产交易管理办法》: the contract is signed on the terms of the trade's result; changing
    them afterwards in the buyer's favour defeats the open trade.
    """

    id = WORSE
    family = Family.UNDISCLOSED
    title = "合同条款劣于成交结果"
    severity = Severity.RED
    triggers = frozenset({"contract_recorded"})
    parameters = ()

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        hit = await touched(session, scope)  # a contract's finding depends on it and its listing
        if hit is not None and not hit.contracts:
            return []
        same_basis = Contract.price_basis == Listing.price_basis
        rows = await session.execute(
            select(Contract.id, Contract.village_code, Contract.number, Contract.unit_price_fen,
                   Contract.term_months, Contract.signed_on, Listing.id.label("listing_id"),
                   Listing.number.label("listing_number"), Listing.final_price_fen,
                   Listing.term_months.label("listing_term"), same_basis.label("same_basis"))
            .join(Listing, or_(Listing.id == Contract.listing_id, Listing.contract_id == Contract.id))
            .where(
                *([] if hit is None else [ids_in(Contract.id, hit.contracts)]),
                Contract.origin == "auction",
                Listing.final_price_fen.is_not(None),
                or_(
                    and_(same_basis, Contract.unit_price_fen < Listing.final_price_fen),
                    Contract.term_months > Listing.term_months,
                ),
                *in_scope(Contract.village_code, scope),
                *since(Contract.signed_on, scope),
            )
            .order_by(Contract.id, Listing.id)
        )
        findings: dict[int, Finding] = {}
        for row in rows:
            if row.id in findings:
                continue
            problems = []
            if row.same_basis and row.unit_price_fen < row.final_price_fen:
                problems.append(f"单价 {yuan(row.unit_price_fen)} 低于成交价 {yuan(row.final_price_fen)}")
            if row.term_months > row.listing_term:
                problems.append(f"期限 {row.term_months} 个月长于成交期限 {row.listing_term} 个月")
            shortfall = max(0, row.final_price_fen - row.unit_price_fen) / row.final_price_fen if row.same_basis else 0
            findings[row.id] = Finding(
                rule_id=self.id,
                subject_type="contract",
                subject_id=str(row.id),
                village_code=row.village_code,
                score=scaled_score(shortfall * 4 + max(0, row.term_months / row.listing_term - 1), 60),
                explanation=f"合同 {row.number} 与交易项目 {row.listing_number} 的成交结果不符：" + "；".join(problems),
                evidence={"contracts": [row.id], "listings": [row.listing_id]},
                occurred_at=at_midnight(row.signed_on),
                numbers={"unit_price_fen": row.unit_price_fen, "final_price_fen": row.final_price_fen,
                         "term_months": row.term_months, "listing_term_months": row.listing_term},
            )
        return list(findings.values())


UNPUBLISHED = "UND-RESULT-NOT-PUBLISHED"


class ResultNotPublished(Rule):
    """A closed (sold or failed) listing with no publicity period, or whose contract was signed before it ended.

    Basis: 《广州市农村集体资产交易管理办法》: the trading result is published (成交公示) before the contract is signed.
    """

    id = UNPUBLISHED
    family = Family.UNDISCLOSED
    title = "交易结果未公示或公示期内签约"
    severity = Severity.YELLOW
    triggers = frozenset({"listing_closed", "contract_recorded"})
    parameters = ()

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        hit = await touched(session, scope)  # a listing's finding depends on it and its contracts
        if hit is not None and not (hit.contracts or hit.listings):
            return []
        early = (
            select(func.min(Contract.id))
            .where(
                or_(Contract.listing_id == Listing.id, Contract.id == Listing.contract_id),
                Contract.signed_on < china_date(Listing.publicity_ends_at),
            )
            .scalar_subquery()
        )
        rows = await session.execute(
            select(Listing.id, Listing.village_code, Listing.number, Listing.status, Listing.closed_at,
                   Listing.publicity_ends_at, early.label("early_contract_id"))
            .where(
                *([] if hit is None else [linked_listings(hit)]),
                Listing.status.in_(("sold", "failed")),
                or_(Listing.publicity_ends_at.is_(None), early.is_not(None)),
                *in_scope(Listing.village_code, scope),
                *([Listing.closed_at >= at_midnight(scope.since)] if scope.since else []),
            )
            .order_by(Listing.id)
        )
        rows_list = list(rows)
        early_ids = [row.early_contract_id for row in rows_list if row.early_contract_id]
        contracts = {
            row.id: row
            for row in await session.execute(
                select(Contract.id, Contract.number, Contract.signed_on).where(Contract.id.in_(early_ids))
            )
        } if early_ids else {}
        findings = []
        for row in rows_list:
            if row.publicity_ends_at is None:
                text, evidence = "没有登记成交结果公示期", {"listings": [row.id]}
            else:
                contract = contracts[row.early_contract_id]
                ends = row.publicity_ends_at.astimezone(CHINA).date()
                text = (
                    f"合同 {contract.number} 于 {contract.signed_on.isoformat()} 签订，早于公示期结束日 "
                    f"{ends.isoformat()}（提前 {(ends - contract.signed_on).days} 天）"
                )
                evidence = {"listings": [row.id], "contracts": [contract.id]}
            findings.append(
                Finding(
                    rule_id=self.id,
                    subject_type="listing",
                    subject_id=str(row.id),
                    village_code=row.village_code,
                    score=50.0,
                    explanation=f"交易项目 {row.number}（{'成交' if row.status == 'sold' else '流拍'}）{text}",
                    evidence=evidence,
                    occurred_at=at_midnight(row.closed_at),
                    numbers={"publicity_ends_at": row.publicity_ends_at.isoformat() if row.publicity_ends_at else None},
                )
            )
        return findings


ARREARS = "UND-RENT-ARREARS"


class RentArrears(Rule):
    """An active contract whose overdue unpaid rent exceeds a share of its yearly amount with no receipt for long.

    Basis: 《农村集体经济组织财务制度》 (receivables are collected and pursued; 清收清欠) and the audit practice of
    Guangdong's 村级财务审计: large rent arrears left unpursued are a classic form of favour to a tenant.
    """

    id = ARREARS
    family = Family.UNDISCLOSED
    title = "租金长期拖欠未追收"
    severity = Severity.ORANGE
    triggers = frozenset({"entry_posted", "contract_recorded"})
    parameters = (
        parameter(ARREARS, "grace_days", 90, int, 0, 730, "到期后的宽限天数"),
        parameter(ARREARS, "share_of_year", 0.5, float, 0.01, 10.0, "逾期未收金额占年租金的比例标准"),
        parameter(ARREARS, "no_receipt_days", 180, int, 1, 1_830, "多少天没有收到任何款项"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        now = today()
        # a contract's arrears are its own schedule and receipts: a receipt's entry or a recorded contract
        # changes only that contract (arrears that grow with time alone are the scans' to find)
        hit = await touched(session, scope)
        if hit is not None and not hit.contracts:
            return []
        overdue_before = now - timedelta(days=params["grace_days"])
        due = (
            select(func.coalesce(func.sum(ContractInstallment.amount_fen), 0))
            .where(ContractInstallment.contract_id == Contract.id, ContractInstallment.due_date < overdue_before)
            .scalar_subquery()
        )
        paid = (
            select(func.coalesce(func.sum(ContractReceipt.amount_fen), 0))
            .where(ContractReceipt.contract_id == Contract.id)
            .scalar_subquery()
        )
        last_receipt = (
            select(func.max(ContractReceipt.received_on)).where(ContractReceipt.contract_id == Contract.id)
        ).scalar_subquery()
        first_overdue = (
            select(func.min(ContractInstallment.due_date))
            .where(ContractInstallment.contract_id == Contract.id, ContractInstallment.due_date < overdue_before)
            .scalar_subquery()
        )
        unpaid = due - paid
        rows = await session.execute(
            select(Contract.id, Contract.village_code, Contract.number, Contract.counterparty_name,
                   Contract.total_value_fen, Contract.term_months, unpaid.label("unpaid"),
                   last_receipt.label("last_receipt"), first_overdue.label("first_overdue"))
            .where(
                *([] if hit is None else [ids_in(Contract.id, hit.contracts)]),
                Contract.status == "active",
                unpaid * Contract.term_months > literal(params["share_of_year"]) * Contract.total_value_fen * 12,
                or_(last_receipt.is_(None), last_receipt < now - timedelta(days=params["no_receipt_days"])),
                *in_scope(Contract.village_code, scope),
            )
            .order_by(Contract.id)
        )
        findings = []
        for row in rows:
            yearly = row.total_value_fen * 12 / row.term_months
            unpaid = int(row.unpaid)
            last = row.last_receipt.isoformat() if row.last_receipt else "从未收款"
            findings.append(
                Finding(
                    rule_id=self.id,
                    subject_type="contract",
                    subject_id=str(row.id),
                    village_code=row.village_code,
                    score=scaled_score(unpaid / yearly - params["share_of_year"]),
                    explanation=(
                        f"合同 {row.number}（「{row.counterparty_name}」）逾期超过 {params['grace_days']} 天未收 "
                        f"{yuan(unpaid)}，为年租金 {yuan(yearly)} 的 {unpaid / yearly:.0%}"
                        f"（标准 {params['share_of_year']:.0%}）；最近一次收款：{last}"
                        f"（标准 {params['no_receipt_days']} 天内有收款）"
                    ),
                    evidence={"contracts": [row.id]},
                    occurred_at=at_midnight(row.first_overdue),
                    numbers={"unpaid_fen": unpaid, "yearly_fen": round(yearly), "last_receipt": last},
                )
            )
        return findings


RULES: list[Rule] = [
    OffPlatformContract(),
    StatusWithoutTrade(),
    IncomeWithoutContract(),
    SplitContracts(),
    RenewalWithoutRebid(),
    TermsWorseThanResult(),
    ResultNotPublished(),
    RentArrears(),
]
