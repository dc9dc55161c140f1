"""Election-period risks (换届选举): what an outgoing committee does with the collective's assets and money in
the months before a re-election, read against each village's election calendar.

Basis shared by the family: 《广东省村民委员会选举办法》 and the provincial 换届 notices (2014, 2017, 2021; next
2026), which require an economic audit of the outgoing committee (离任经济责任审计) and forbid, during the
换届 period, disposing of collective assets, signing long contracts that bind the next committee and using
collective money to win votes (贿选); 《广东省农村集体资产管理条例》 for the trading rules themselves.

The window before an election is [election date − window_days, election date). Set-based SQL; dates compared as
dates or day numbers computed by the database (the helpers in stats.py) on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement, Select

from sanzi.auction.models import Listing, ListingAsset, Registration
from sanzi.ledger.models import Account, AssetStatusChange, Asset, Contract, ContractReceipt, JournalEntry, JournalLine
from sanzi.platform.models import Bidder, Cadre, CadreRelative, Candidate, Collective, Election, Village
from sanzi.warnings.models import Severity
from sanzi.warnings.rules.base import Family, Finding, Rule, Scope
from sanzi.warnings.rules.base import rule_parameter as parameter
from sanzi.warnings.rules.stats import add_days, china_date, quartile_fences
from sanzi.warnings.rules.undisclosed import (
    at_midnight,
    ids_in,
    in_scope,
    linked_assets,
    linked_contracts,
    linked_listings,
    no_listing_behind,
    scaled_score,
    since,
    touched,
    yuan,
)

YEAR_DAYS = 365.25

# aliases built once per process: a fresh alias of a wide model cost milliseconds of column adaptation
# on every evaluation (the first use of each of its attributes), more than many a rule's statement runs
_NEIGHBOUR, _COUNTERPARTY = aliased(Village), aliased(Bidder)
_EARLIER_ENTRY = aliased(JournalEntry)
_EARLIER_CONTRACT, _PREVIOUS_CONTRACT = aliased(Contract), aliased(Contract)


def in_window(election: Any, village_code: ColumnElement[str], on: ColumnElement[Any], days: int,
              date_column: str = "election_date") -> Any:
    """The fact (of the village, on that date) falls in the window before the election (or other date)."""
    ends = getattr(election, date_column)
    return and_(election.village_code == village_code, on >= add_days(ends, -days), on < ends)


def days_before(election_date: Any, on: Any) -> int:
    return (election_date - on).days


DISPOSAL = "ELE-DISPOSAL-BEFORE-ELECTION"


class DisposalBeforeElection(Rule):
    """Disposals, transfers or leases signed in the window before the village's election: contracts signed
    (those not from a listing), listings closed sold, assets marked sold or disposed without any trade.

    Basis: the provincial 换届 notices: during the 换届 period the outgoing committee does not dispose of
    collective assets or sign major contracts (重大事项暂缓决策); 离任经济责任审计 checks exactly these.
    """

    id = DISPOSAL
    family = Family.ELECTION
    title = "换届前处置资产或签订合同"
    severity = Severity.ORANGE
    triggers = frozenset({"contract_recorded", "listing_closed", "election_set"})
    parameters = (
        parameter(DISPOSAL, "window_days", 180, int, 7, 730, "选举日前多少天内视为换届敏感期"),
        parameter(DISPOSAL, "min_value", 50_000, int, 0, 10**9, "合同（或成交）总价达到多少元才预警"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        days, minimum = params["window_days"], params["min_value"] * 100
        # a recorded contract or a closed listing changes its own finding, its linked listing's or
        # contract's (a listing's value is its contract's) and its assets' (a trade clears them); an
        # election changes the whole village's
        hit = await touched(session, scope)
        if hit is not None and not (hit.contracts or hit.listings):
            return []
        findings: list[Finding] = []
        contracts = await session.execute(
            select(Contract.id, Contract.village_code, Contract.number, Contract.counterparty_name,
                   Contract.trade_type, Contract.total_value_fen, Contract.signed_on, Election.id.label("election_id"),
                   Election.election_date)
            .join(Election, in_window(Election, Contract.village_code, Contract.signed_on, days))
            .where(*([] if hit is None else [linked_contracts(hit)]),
                   no_listing_behind(Contract), Contract.total_value_fen >= minimum,
                   *in_scope(Contract.village_code, scope), *since(Contract.signed_on, scope))
            .order_by(Contract.id)
        )
        kinds = {"transfer": "转让", "lease": "出租", "contracting": "发包", "joint_venture": "合作"}
        for row in contracts:
            before = days_before(row.election_date, row.signed_on)
            findings.append(self._finding(
                "contract", row.id, row.village_code, row.election_date, before, days, row.signed_on,
                f"合同 {row.number}（{kinds.get(row.trade_type, row.trade_type)}给「{row.counterparty_name}」，总价 "
                f"{yuan(row.total_value_fen)}）于 {row.signed_on.isoformat()} 签订",
                {"contracts": [row.id], "elections": [row.election_id]}, row.total_value_fen, minimum,
            ))
        contract_value = (
            select(func.max(Contract.total_value_fen))
            .where(or_(Contract.listing_id == Listing.id, Contract.id == Listing.contract_id))
            .scalar_subquery()
        )
        value = func.coalesce(contract_value, Listing.final_price_fen)
        closed_on = china_date(Listing.closed_at)
        listings = await session.execute(
            select(Listing.id, Listing.village_code, Listing.number, Listing.title, value.label("value"),
                   closed_on.label("closed_on"), Election.id.label("election_id"), Election.election_date)
            .join(Election, in_window(Election, Listing.village_code, closed_on, days))
            .where(*([] if hit is None else [linked_listings(hit)]),
                   Listing.status == "sold", value >= minimum,
                   *in_scope(Listing.village_code, scope), *since(closed_on, scope))
            .order_by(Listing.id)
        )
        for row in listings:
            on = row.closed_on
            findings.append(self._finding(
                "listing", row.id, row.village_code, row.election_date, days_before(row.election_date, on), days, on,
                f"交易项目 {row.number}「{row.title}」于 {on.isoformat()} 成交（{yuan(row.value)}）",
                {"listings": [row.id], "elections": [row.election_id]}, row.value, minimum,
            ))
        changed_on = china_date(AssetStatusChange.changed_at)
        traded = or_(
            exists().where(Contract.asset_id == Asset.id),
            exists(select(1).select_from(ListingAsset).join(Listing, Listing.id == ListingAsset.listing_id)
                   .where(ListingAsset.asset_id == Asset.id, Listing.status == "sold")),
        )
        assets = await session.execute(
            select(Asset.id, Asset.village_code, Asset.code, Asset.name, AssetStatusChange.to_status,
                   func.min(changed_on).label("changed_on"), Election.id.label("election_id"),
                   Election.election_date)
            .join(AssetStatusChange, AssetStatusChange.asset_id == Asset.id)
            .join(Election, in_window(Election, Asset.village_code, changed_on, days))
            .where(*([] if hit is None else [linked_assets(hit, Asset.id)]),
                   AssetStatusChange.to_status.in_(("sold", "disposed")), ~traded,
                   *in_scope(Asset.village_code, scope), *since(changed_on, scope))
            .group_by(Asset.id, Asset.village_code, Asset.code, Asset.name, AssetStatusChange.to_status,
                      Election.id, Election.election_date)
            .order_by(Asset.id, Election.id)
        )
        seen: set[int] = set()
        for row in assets:
            if row.id in seen:
                continue
            seen.add(row.id)
            on = row.changed_on
            findings.append(self._finding(
                "asset", row.id, row.village_code, row.election_date, days_before(row.election_date, on), days, on,
                f"资产 {row.code}「{row.name}」于 {on.isoformat()} 被标记为"
                f"{'已转让' if row.to_status == 'sold' else '已处置'}（无交易、无合同）",
                {"assets": [row.id], "elections": [row.election_id]}, 0, 0,
            ))
        return findings

    def _finding(self, subject_type: str, subject_id: int, village_code: str, election_date: Any, before: int,
                 days: int, on: Any, what: str, evidence: dict[str, list[Any]], value: Any, minimum: int) -> Finding:
        closeness = 1 - before / days  # the nearer the election, the stronger
        return Finding(
            rule_id=self.id,
            subject_type=subject_type,
            subject_id=str(subject_id),
            village_code=village_code,
            score=scaled_score(closeness, 55),
            explanation=(
                f"{what}，距 {election_date.isoformat()} 换届选举仅 {before} 天（敏感期 {days} 天）"
                + (f"，达到预警金额 {yuan(minimum)}" if minimum else "")
            ),
            evidence=evidence,
            occurred_at=at_midnight(on),
            numbers={"days_before_election": before, "window_days": days, "value_fen": int(value or 0)},
        )


def reference_dates(scope: Scope | None = None) -> Any:
    """The moments an outgoing committee hands over: each election date, and each committee term's end (of
    the scope's villages: a contract is compared with its own village's dates only)."""
    scope = scope or Scope()
    return union_all(
        select(Election.village_code.label("village_code"), Election.election_date.label("ref"),
               Election.id.label("election_id"))
        .where(*in_scope(Election.village_code, scope)),
        select(Cadre.village_code, Cadre.term_end, cast(null(), BigInteger).label("election_id"))
        .where(Cadre.body == "committee", Cadre.term_end.is_not(None), *in_scope(Cadre.village_code, scope))
        .distinct(),
    ).cte("refs")


BEYOND = "ELE-LEASE-BEYOND-TERM"


class LeaseBeyondTerm(Rule):
    """Leases signed by an outgoing committee (in the window before an election or the end of the committee's
    term) that run far beyond it, or multi-year rent collected in advance in that window.

    Basis: the provincial 换届 notices and 《广东省农村集体资产管理条例》 (a contract's term does not bind the
    collective beyond what is reasonable; rent is not collected years ahead, which hands the next committee
    an asset let for nothing — 寅吃卯粮).
    """

    id = BEYOND
    family = Family.ELECTION
    title = "换届前签订超长期合同或预收多年租金"
    severity = Severity.RED
    triggers = frozenset({"contract_recorded", "entry_posted", "election_set"})
    parameters = (
        parameter(BEYOND, "window_days", 365, int, 7, 1_095, "选举日（或任期届满日）前多少天内视为即将离任"),
        parameter(BEYOND, "years_beyond", 10, int, 1, 70, "合同结束日超过选举日多少年（按 365.25 天计）即预警"),
        parameter(BEYOND, "advance_years", 2.0, float, 0.5, 30.0, "敏感期内收取的租金超过几年的租金即预警"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        days = params["window_days"]
        # a contract's finding is its own dates and receipts: a recorded contract or a receipt's entry
        # changes that contract only (other entries change nothing here); an election, the whole village
        hit = await touched(session, scope)
        if hit is not None and not hit.contracts:
            return []
        narrow = [] if hit is None else [ids_in(Contract.id, hit.contracts)]
        beyond_days = round(params["years_beyond"] * YEAR_DAYS)
        refs = reference_dates(scope)
        leases = Contract.trade_type != "transfer"
        signed = await session.execute(
            select(Contract.id, Contract.village_code, Contract.number, Contract.counterparty_name,
                   Contract.signed_on, Contract.end_date, func.min(refs.c.ref).label("ref"))
            .join(refs, in_window(refs.c, Contract.village_code, Contract.signed_on, days, "ref"))
            .where(*narrow, leases, Contract.end_date > add_days(refs.c.ref, beyond_days),
                   *in_scope(Contract.village_code, scope), *since(Contract.signed_on, scope))
            .group_by(Contract.id, Contract.village_code, Contract.number, Contract.counterparty_name,
                      Contract.signed_on, Contract.end_date)
            .order_by(Contract.id)
        )
        findings: dict[int, Finding] = {}
        for row in signed:
            years = (row.end_date - row.ref).days / YEAR_DAYS
            findings[row.id] = Finding(
                rule_id=self.id,
                subject_type="contract",
                subject_id=str(row.id),
                village_code=row.village_code,
                score=scaled_score(years / params["years_beyond"] - 1, 60),
                explanation=(
                    f"合同 {row.number}（「{row.counterparty_name}」）于 {row.signed_on.isoformat()} 签订，在 "
                    f"{row.ref.isoformat()} 换届（任期届满）前 {(row.ref - row.signed_on).days} 天内，"
                    f"到期日 {row.end_date.isoformat()} 超出换届 {years:.1f} 年（标准 {params['years_beyond']} 年）"
                ),
                evidence={"contracts": [row.id]},
                occurred_at=at_midnight(row.signed_on),
                numbers={"years_beyond": round(years, 2), "standard_years": params["years_beyond"]},
            )
        window_receipts = (
            select(ContractReceipt.contract_id, refs.c.ref, func.sum(ContractReceipt.amount_fen).label("received"),
                   func.min(ContractReceipt.received_on).label("first_on"))
            .join(Contract, Contract.id == ContractReceipt.contract_id)
            .join(refs, in_window(refs.c, Contract.village_code, ContractReceipt.received_on, days, "ref"))
            .where(*narrow, *in_scope(Contract.village_code, scope), *since(ContractReceipt.received_on, scope))
            .group_by(ContractReceipt.contract_id, refs.c.ref)
            .subquery("window_receipts")
        )
        advance = await session.execute(
            select(Contract.id, Contract.village_code, Contract.number, Contract.counterparty_name,
                   Contract.total_value_fen, Contract.term_months, window_receipts.c.ref,
                   window_receipts.c.received, window_receipts.c.first_on)
            .join(window_receipts, window_receipts.c.contract_id == Contract.id)
            .where(leases, window_receipts.c.received * Contract.term_months
                   > literal(params["advance_years"]) * Contract.total_value_fen * 12)
            .order_by(Contract.id, window_receipts.c.ref)
        )
        for row in advance:
            yearly = row.total_value_fen * 12 / row.term_months
            received = int(row.received)
            text = (
                f"{row.ref.isoformat()} 换届（任期届满）前 {days} 天内收取合同 {row.number}（「{row.counterparty_name}」）"
                f"租金 {yuan(received)}，相当于 {received / yearly:.1f} 年租金（年租金 {yuan(yearly)}，标准 "
                f"{params['advance_years']} 年）"
            )
            if row.id in findings:
                findings[row.id].explanation += "；另" + text
                findings[row.id].numbers["advance_years"] = round(received / yearly, 2)
                continue
            findings[row.id] = Finding(
                rule_id=self.id,
                subject_type="contract",
                subject_id=str(row.id),
                village_code=row.village_code,
                score=scaled_score(received / yearly / params["advance_years"] - 1, 60),
                explanation=text,
                evidence={"contracts": [row.id]},
                occurred_at=at_midnight(row.first_on),
                numbers={"advance_years": round(received / yearly, 2), "received_fen": received},
            )
        return list(findings.values())


def _windows(subjects: Any, days: int, lookback: int, peers: int | None) -> Any:
    """Per election: its window (k = 0), the same window k years earlier (k = 1..lookback) and, with
    ``peers`` (the number wanted), the same window in each other village of the township (k = -1), or of
    the district when the township has fewer other villages than that."""
    years = union_all(*[select(literal_column(str(k), Integer).label("k")) for k in range(1, lookback + 1)]).subquery("years")
    parts = [
        select(subjects.c.election_id, subjects.c.village_code.label("v"), literal_column("0", Integer).label("k"),
               add_days(subjects.c.election_date, -days).label("start"), subjects.c.election_date.label("end")),
        select(subjects.c.election_id, subjects.c.village_code, years.c.k,
               add_days(subjects.c.election_date, -days - 365 * years.c.k),
               add_days(subjects.c.election_date, -365 * years.c.k)).select_from(subjects.join(years, true())),
    ]
    if peers is not None:
        small_township = subjects.c.township_size - 1 < peers
        parts.append(
            select(subjects.c.election_id, Village.code, literal_column("-1", Integer),
                   add_days(subjects.c.election_date, -days), subjects.c.election_date)
            .join(Village, and_(
                Village.code != subjects.c.village_code,
                or_(and_(~small_township, Village.township_code == subjects.c.township_code),
                    and_(small_township, Village.district_code == subjects.c.district_code)),
            ))
        )
    return union_all(*parts).cte("windows")


def _elections(scope: Scope, election_ids: set[int] | None = None) -> Any:
    """The elections under evaluation (the scope's; only ``election_ids`` when given), with their township,
    district and the township's number of villages."""
    neighbour = _NEIGHBOUR
    township_size = (
        select(func.count()).where(neighbour.township_code == Village.township_code).scalar_subquery()
    )
    return (
        select(Election.id.label("election_id"), Election.village_code, Election.election_date,
               Village.township_code, Village.district_code, township_size.label("township_size"))
        .join(Village, Village.code == Election.village_code)
        .where(*in_scope(Election.village_code, scope), *since(Election.election_date, scope),
               *([Election.id.in_(sorted(election_ids))] if election_ids is not None else []))
        .cte("subjects")
    )


async def touched_elections(session: AsyncSession, scope: Scope, reach_days: int,
                            books_start_matters: bool = False) -> set[int] | None:
    """The elections whose findings the triggering events can change, for a rule that reads the books in
    windows ending at most ``reach_days`` after the facts they count (and ending on the election date, so
    only elections after the entry's date): None (evaluate every election in scope) outside an incremental
    evaluation or for an event this cannot narrow.

    ``election_set`` touches its election; ``entry_posted`` the village's elections after the entry's date
    and no more than ``reach_days`` after it, or every later one when ``books_start_matters`` and the entry
    is the first of the village's books (it moves the books' start, so earlier comparison windows count).
    A new entry changes no other election's windows: each window is of one village and ends on its
    election's date."""
    if scope.events is None:
        return None
    election_ids: set[int] = set()
    entry_ids: set[int] = set()
    for event in scope.events:
        if event.kind == "election_set" and "election_id" in event.ids:
            election_ids.add(event.ids["election_id"])
        elif event.kind == "entry_posted" and "entry_id" in event.ids:
            entry_ids.add(event.ids["entry_id"])
        else:
            return None
    if not entry_ids:
        return election_ids
    earlier = _EARLIER_ENTRY
    entries = list(await session.execute(
        select(JournalEntry.id, Collective.village_code, JournalEntry.entry_date,
               exists().where(earlier.collective_id == JournalEntry.collective_id,
                              earlier.entry_date < JournalEntry.entry_date).label("has_earlier"))
        .join(Collective, Collective.id == JournalEntry.collective_id)
        .where(JournalEntry.id.in_(sorted(entry_ids)))
    ))
    if len(entries) != len(entry_ids):
        return None  # an entry we cannot see: evaluate the villages whole
    conditions = []
    for row in entries:
        bounded = not books_start_matters or row.has_earlier
        conditions.append(and_(
            Election.village_code == row.village_code,
            Election.election_date > row.entry_date,
            *([Election.election_date <= row.entry_date + timedelta(days=reach_days)] if bounded else []),
        ))
    election_ids |= set(await session.scalars(select(Election.id).where(or_(*conditions))))
    return election_ids


def _entries_in(windows: Any) -> Any:
    """Join condition: the entries of a window's village posted inside it."""
    return and_(
        Collective.village_code == windows.c.v,
        JournalEntry.collective_id == Collective.id,
        JournalEntry.entry_date >= windows.c.start,
        JournalEntry.entry_date < windows.c.end,
    )


def _window_spending(windows: Any, every_village: bool = False) -> Any:
    """Per window (election_id, v, k): the hospitality and non-production debits of village v's entries dated
    in [start, end), for the windows with at least one entry that the village's books cover (k = 0, or
    starting on or after the village's first entry: a window the books cover only in part would count as
    one of little spending and drag the fence down).

    Computed in one pass over the spending lines instead of a range join per window (which re-read a
    township's books once for each of its elections): each village's spending is reduced to per-day totals,
    every window adds two marker rows to that ordered stream (its start, sign −1, and its end, sign +1),
    sorted before the same day's spending, and a running sum gives at each marker the total of everything
    dated before it, so a window's figure is the signed sum of its two markers. Whether a window has any
    entry, and where a village's books start, are index probes on journal_entry (collective_id,
    entry_date); only the days between a village's earliest window start and latest window end are read.
    Comparable windows only in part covered by the books are left out as before.

    With ``every_village`` (a scan of whole districts: nearly every village has windows) the per-day totals
    are taken from all the spending lines, found by their accounts, and then kept within each village's
    span: reading each village's entries through its collective and each entry's lines through an index
    took a lookup per entry of the city's books."""
    spans = (
        select(windows.c.v, func.min(windows.c.start).label("lo"), func.max(windows.c.end).label("hi"))
        .group_by(windows.c.v)
        .subquery("spans")
    )
    first_entry = (
        select(func.min(JournalEntry.entry_date)).where(JournalEntry.collective_id == Collective.id)
        .scalar_subquery()
    )
    books = (
        select(spans.c.v, spans.c.lo, spans.c.hi, Collective.id.label("collective_id"),
               first_entry.label("books_start"))
        .join(Collective, Collective.village_code == spans.c.v)
        .cte("books")
    )
    marked = (
        select(windows.c.election_id, windows.c.v, windows.c.k, windows.c.start, windows.c.end,
               books.c.collective_id, books.c.books_start)
        .join(books, books.c.v == windows.c.v)
        .cte("marked")
    )
    nothing = null()
    zero = literal_column("0", BigInteger)

    def marker(day: Any, sign: int) -> Select:
        return select(marked.c.v.label("v"), day.label("d"), literal_column("0", Integer).label("ord"),
                      zero.label("spend"), literal_column(str(sign), Integer).label("sign"),
                      marked.c.election_id, marked.c.k, marked.c.start, marked.c.end, marked.c.collective_id,
                      marked.c.books_start)

    if every_village:
        daily = (
            select(JournalEntry.collective_id, JournalEntry.entry_date, func.sum(JournalLine.debit_fen).label("spend"))
            .select_from(JournalLine)
            .join(Account, Account.id == JournalLine.account_id)
            .join(JournalEntry, JournalEntry.id == JournalLine.entry_id)
            .where(Account.category.in_(SPENDING), JournalLine.debit_fen > 0)
            .group_by(JournalEntry.collective_id, JournalEntry.entry_date)
            .subquery("daily")
        )
        spending = (
            select(books.c.v, daily.c.entry_date, literal_column("1", Integer), daily.c.spend,
                   literal_column("0", Integer), cast(nothing, BigInteger), cast(nothing, Integer), nothing, nothing,
                   cast(nothing, BigInteger), nothing)
            .select_from(books)
            .join(daily, and_(daily.c.collective_id == books.c.collective_id,
                              daily.c.entry_date >= books.c.lo, daily.c.entry_date < books.c.hi))
        )
    else:
        spending = (
            select(books.c.v, JournalEntry.entry_date, literal_column("1", Integer), func.sum(JournalLine.debit_fen),
                   literal_column("0", Integer), cast(nothing, BigInteger), cast(nothing, Integer), nothing, nothing,
                   cast(nothing, BigInteger), nothing)
            .select_from(books)
            .join(JournalEntry, and_(JournalEntry.collective_id == books.c.collective_id,
                                     JournalEntry.entry_date >= books.c.lo, JournalEntry.entry_date < books.c.hi))
            .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
            .join(Account, Account.id == JournalLine.account_id)
            .where(Account.category.in_(SPENDING), JournalLine.debit_fen > 0)
            .group_by(books.c.v, JournalEntry.entry_date)
        )
    stream = union_all(marker(marked.c.start, -1), marker(marked.c.end, 1), spending).subquery("stream")
    totals = (
        select(stream, func.sum(stream.c.spend).over(partition_by=stream.c.v, order_by=(stream.c.d, stream.c.ord),
                                                     rows=(None, 0)).label("before"))
        .subquery("totals")
    )
    per_window = (
        select(totals.c.election_id, totals.c.v, totals.c.k, func.sum(totals.c.sign * totals.c.before).label("spend"),
               func.min(totals.c.start).label("start"), func.min(totals.c.end).label("end"),
               func.min(totals.c.collective_id).label("collective_id"),
               func.min(totals.c.books_start).label("books_start"))
        .where(totals.c.ord == 0)
        .group_by(totals.c.election_id, totals.c.v, totals.c.k)
        .subquery("per_window")
    )
    return (
        select(per_window.c.election_id, per_window.c.v, per_window.c.k, per_window.c.spend)
        .where(or_(per_window.c.k == 0, per_window.c.start >= per_window.c.books_start),
               exists().where(JournalEntry.collective_id == per_window.c.collective_id,
                              JournalEntry.entry_date >= per_window.c.start,
                              JournalEntry.entry_date < per_window.c.end))
        .cte("spend")
    )


SPIKE = "ELE-HOSPITALITY-SPIKE"
SPENDING = ("hospitality", "non_production")


class HospitalitySpike(Rule):
    """Hospitality and non-production spending in the window before an election above the upper fence
    (Q3 + 1.5·IQR) of the village's own same window in earlier years and the township's villages' same
    window (the district's, when the township has fewer other villages than ``min_comparables``); quiet
    with fewer than ``min_comparables`` comparables (only windows with posted entries that the village's
    books cover from their first day count).

    Basis: the 换届 notices forbid using collective funds for treating and gifts (请客送礼) to win votes; the
    离任审计 compares 招待费 across periods (中央八项规定 spirit applies to village cadres).
    """

    id = SPIKE
    family = Family.ELECTION
    title = "换届前招待费等非生产性开支异常增长"
    severity = Severity.ORANGE
    triggers = frozenset({"entry_posted", "election_set"})
    parameters = (
        parameter(SPIKE, "window_days", 180, int, 30, 730, "选举日前多少天内的开支"),
        parameter(SPIKE, "lookback_years", 3, int, 1, 10, "与本村前几年同期比较"),
        parameter(SPIKE, "min_comparables", 8, int, 3, 1_000, "比较样本（往年同期及同镇街各村同期）少于此数不预警"),
        parameter(SPIKE, "min_amount", 5_000, int, 0, 10**9, "敏感期开支低于此金额（元）不预警"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        days, lookback = params["window_days"], params["lookback_years"]
        touched = await touched_elections(session, scope, days + 365 * lookback, books_start_matters=True)
        if touched is not None and not touched:
            return []
        subjects = _elections(scope, touched)
        windows = _windows(subjects, days, lookback, peers=params["min_comparables"])
        spend = _window_spending(windows, every_village=scope.events is None and scope.village_codes is None)
        # the election's own window total rides along as a grouping column of its comparables' fences (it is
        # one value per election), so the result needs no join of the window totals back to themselves: the
        # planner cannot estimate those rows and a nested loop over them grew with the square of the city
        own = (
            select(spend.c.election_id, spend.c.k, spend.c.spend,
                   func.max(case((spend.c.k == 0, spend.c.spend))).over(partition_by=spend.c.election_id).label("own"))
            .subquery("own")
        )
        fences = quartile_fences(
            select(own.c.election_id, own.c.own, own.c.spend).where(own.c.k != 0), ("election_id", "own"), "spend"
        ).subquery("fences")
        rows = await session.execute(
            select(Election.id.label("election_id"), Election.village_code, Election.election_date,
                   fences.c.own.label("spend"), fences.c.n, fences.c.median, fences.c.q3, fences.c.upper_fence)
            .join(fences, fences.c.election_id == Election.id)
            .where(fences.c.n >= params["min_comparables"], fences.c.own > fences.c.upper_fence,
                   fences.c.own > params["min_amount"] * 100)
            .order_by(Election.id)
        )
        rows = list(rows)
        evidence = await self._entries(session, [r.election_id for r in rows], days)
        findings = []
        for row in rows:
            amount, fence = int(row.spend), float(row.upper_fence)
            findings.append(
                Finding(
                    rule_id=self.id,
                    subject_type="village",
                    subject_id=f"{row.village_code}:{row.election_date.isoformat()}",
                    village_code=row.village_code,
                    score=scaled_score(amount / fence - 1 if fence > 0 else 1.0, 55),
                    explanation=(
                        f"{row.election_date.isoformat()} 换届选举前 {days} 天内招待费及非生产性开支 {yuan(amount)}，"
                        f"高于本村往年同期及同镇街各村同期的上限 {yuan(fence)}（样本 {row.n} 个，中位数 "
                        f"{yuan(row.median)}）"
                    ),
                    evidence={"entries": evidence.get(row.election_id, []), "elections": [row.election_id]},
                    occurred_at=at_midnight(row.election_date),
                    numbers={"spend_fen": amount, "upper_fence_fen": round(fence), "comparables": row.n},
                )
            )
        return findings

    async def _entries(self, session: AsyncSession, election_ids: list[int], days: int) -> dict[int, list[int]]:
        if not election_ids:
            return {}
        rows = await session.execute(
            select(Election.id, JournalEntry.id)
            .join(Collective, Collective.village_code == Election.village_code)
            .join(JournalEntry, and_(JournalEntry.collective_id == Collective.id,
                                     JournalEntry.entry_date >= add_days(Election.election_date, -days),
                                     JournalEntry.entry_date < Election.election_date))
            .where(Election.id.in_(election_ids), exists().where(
                JournalLine.entry_id == JournalEntry.id, JournalLine.debit_fen > 0,
                JournalLine.account_id == Account.id, Account.category.in_(SPENDING)))
            .order_by(Election.id, JournalEntry.id)
        )
        out: dict[int, list[int]] = defaultdict(list)
        for election_id, entry_id in rows:
            out[election_id].append(entry_id)
        return out


PAYOUTS = "ELE-MANY-SMALL-PAYOUTS"
PAYOUT_CATEGORIES = ("individual_payout", "villager_payout")


class ManySmallPayouts(Rule):
    """Many small payouts to individuals in the window before an election: more than ``min_count`` entries
    under ``max_amount`` each, and more than ``usual_factor`` times the most the village made in the same
    window of earlier years (so regular yearly dividends do not raise it).

    Basis: 《广东省村民委员会选举办法》 forbids bribing voters (贿选) with money or goods; cash handed out in small
    sums just before the vote is the classic pattern the 换届风气监督 looks for.
    """

    id = PAYOUTS
    family = Family.ELECTION
    title = "换届前向个人小额发放款项异常"
    severity = Severity.RED
    triggers = frozenset({"entry_posted", "election_set"})
    parameters = (
        parameter(PAYOUTS, "window_days", 180, int, 7, 730, "选举日前多少天内的发放"),
        parameter(PAYOUTS, "max_amount", 2_000, int, 1, 10**7, "单笔低于多少元视为小额"),
        parameter(PAYOUTS, "min_count", 20, int, 1, 100_000, "小额发放超过多少笔才预警"),
        parameter(PAYOUTS, "lookback_years", 3, int, 1, 10, "与本村前几年同期比较"),
        parameter(PAYOUTS, "usual_factor", 1.5, float, 1.0, 100.0, "超过往年同期最多笔数的几倍才预警"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        days, lookback = params["window_days"], params["lookback_years"]
        touched = await touched_elections(session, scope, days + 365 * lookback)
        if touched is not None and not touched:
            return []
        subjects = _elections(scope, touched)
        windows = _windows(subjects, days, lookback, peers=None)
        payouts = (
            select(windows.c.election_id, windows.c.k, JournalEntry.id.label("entry_id"))
            .select_from(windows)
            .join(Collective, Collective.village_code == windows.c.v)
            .join(JournalEntry, _entries_in(windows))
            .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
            .join(Account, Account.id == JournalLine.account_id)
            .where(Account.category.in_(PAYOUT_CATEGORIES), JournalLine.debit_fen > 0,
                   JournalEntry.counterparty.is_not(None), JournalEntry.counterparty != "")
            .group_by(windows.c.election_id, windows.c.k, JournalEntry.id)
            .having(func.sum(JournalLine.debit_fen) < params["max_amount"] * 100)
            .cte("small_payouts")
        )
        counts = (
            select(payouts.c.election_id, payouts.c.k, func.count().label("n"))
            .group_by(payouts.c.election_id, payouts.c.k)
            .cte("counts")
        )
        usual = (
            select(counts.c.election_id, func.max(counts.c.n).label("usual"))
            .where(counts.c.k > 0)
            .group_by(counts.c.election_id)
            .subquery("usual")
        )
        usual_n = func.coalesce(usual.c.usual, 0)
        rows = list(await session.execute(
            select(subjects.c.election_id, subjects.c.village_code, subjects.c.election_date, counts.c.n,
                   usual_n.label("usual"))
            .join(counts, and_(counts.c.election_id == subjects.c.election_id, counts.c.k == 0))
            .outerjoin(usual, usual.c.election_id == subjects.c.election_id)
            .where(counts.c.n > params["min_count"], counts.c.n > usual_n * literal(params["usual_factor"]))
            .order_by(subjects.c.election_id)
        ))
        entries: dict[int, list[int]] = defaultdict(list)
        if rows:
            for election_id, entry_id in await session.execute(
                select(payouts.c.election_id, payouts.c.entry_id)
                .where(payouts.c.k == 0, payouts.c.election_id.in_([r.election_id for r in rows]))
                .order_by(payouts.c.election_id, payouts.c.entry_id)
            ):
                entries[election_id].append(entry_id)
        return [
            Finding(
                rule_id=self.id,
                subject_type="village",
                subject_id=f"{row.village_code}:{row.election_date.isoformat()}",
                village_code=row.village_code,
                score=scaled_score(row.n / max(params["min_count"], row.usual * params["usual_factor"], 1) - 1, 60),
                explanation=(
                    f"{row.election_date.isoformat()} 换届选举前 {days} 天内向个人发放单笔低于 "
                    f"{yuan(params['max_amount'] * 100)} 的款项 {row.n} 笔（标准 {params['min_count']} 笔），"
                    f"往年同期最多 {row.usual} 笔"
                ),
                evidence={"entries": entries[row.election_id], "elections": [row.election_id]},
                occurred_at=at_midnight(row.election_date),
                numbers={"count": row.n, "usual": row.usual, "min_count": params["min_count"]},
            )
            for row in rows
        ]


CUT = "ELE-RENT-CUT-IN-WINDOW"


class RentCutInWindow(Rule):
    """A new contract for the same asset and counterparty signed in the window before an election at a lower
    unit price (same price basis) than the previous one: an amendment or rent cut by the outgoing committee.

    Basis: the 换届 notices (no major decisions favouring individuals during the 换届 period) and
    《广东省农村集体资产管理条例》 (changing a contract's price requires the members' resolution).
    """

    id = CUT
    family = Family.ELECTION
    title = "换届前降低租金或变更合同"
    severity = Severity.RED
    triggers = frozenset({"contract_recorded", "election_set"})
    parameters = (
        parameter(CUT, "window_days", 180, int, 7, 730, "选举日前多少天内签订"),
        parameter(CUT, "min_cut_percent", 0.0, float, 0.0, 99.0, "单价降幅超过百分之几才预警（0：任何降低）"),
    )

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        days = params["window_days"]
        # a new contract may cut its asset's previous price, or be the previous contract of one signed
        # later (recorded late): its asset's contracts are what it can change; an election, the village's
        hit = await touched(session, scope)
        if hit is not None and not hit.contracts:
            return []
        earlier = _EARLIER_CONTRACT
        party = func.coalesce(Contract.counterparty_id_number, Contract.counterparty_name)
        latest_previous = (
            select(earlier.id)
            .where(earlier.asset_id == Contract.asset_id, earlier.id != Contract.id,
                   func.coalesce(earlier.counterparty_id_number, earlier.counterparty_name) == party,
                   or_(earlier.signed_on < Contract.signed_on,
                       and_(earlier.signed_on == Contract.signed_on, earlier.id < Contract.id)))
            .order_by(earlier.signed_on.desc(), earlier.id.desc())
            .limit(1)
            .correlate(Contract)
            .scalar_subquery()
        )
        previous = _PREVIOUS_CONTRACT
        rows = await session.execute(
            select(Contract.id, Contract.village_code, Contract.number, Contract.counterparty_name,
                   Contract.unit_price_fen, Contract.signed_on, previous.id.label("previous_id"),
                   previous.number.label("previous_number"), previous.unit_price_fen.label("previous_price"),
                   Election.id.label("election_id"), Election.election_date)
            .join(Election, in_window(Election, Contract.village_code, Contract.signed_on, days))
            .join(previous, previous.id == latest_previous)
            .where(*([] if hit is None else [linked_assets(hit, Contract.asset_id)]),
                   Contract.asset_id.is_not(None), previous.price_basis == Contract.price_basis,
                   Contract.unit_price_fen * 100
                   < previous.unit_price_fen * (100 - literal(params["min_cut_percent"])),
                   *in_scope(Contract.village_code, scope), *since(Contract.signed_on, scope))
            .order_by(Contract.id)
        )
        findings = []
        for row in rows:
            cut = 1 - row.unit_price_fen / row.previous_price
            findings.append(
                Finding(
                    rule_id=self.id,
                    subject_type="contract",
                    subject_id=str(row.id),
                    village_code=row.village_code,
                    score=scaled_score(cut * 4, 55),
                    explanation=(
                        f"合同 {row.number}（「{row.counterparty_name}」）于 {row.signed_on.isoformat()} 签订，距 "
                        f"{row.election_date.isoformat()} 换届选举 {days_before(row.election_date, row.signed_on)} 天，"
                        f"单价 {yuan(row.unit_price_fen)} 比原合同 {row.previous_number} 的 "
                        f"{yuan(row.previous_price)} 降低 {cut:.1%}"
                    ),
                    evidence={"contracts": [row.id, row.previous_id], "elections": [row.election_id]},
                    occurred_at=at_midnight(row.signed_on),
                    numbers={"unit_price_fen": row.unit_price_fen, "previous_price_fen": row.previous_price,
                             "cut": round(cut, 4)},
                )
            )
        return findings


RELATED = "ELE-RELATED-TO-CANDIDATE"


class RelatedToCandidate(Rule):
    """Winners of listings or counterparties of direct contracts in the window before an election who are a
    registered candidate of that election (same ID number, or a candidate who is a cadre: same name and phone)
    or a declared relative of a candidate who is a cadre (same ID number).

    Basis: 《广东省村民委员会选举办法》 and the 换届 notices (利益输送 to candidates, using collective assets to
    buy support), and the avoidance rules for cadres and their close relatives (回避制度).
    """

    id = RELATED
    family = Family.ELECTION
    title = "换届前交易对象与候选人或其亲属关联"
    severity = Severity.RED
    triggers = frozenset({"contract_recorded", "listing_closed", "election_set"})
    parameters = (parameter(RELATED, "window_days", 180, int, 7, 730, "选举日前多少天内成交或签订"),)

    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        days = params["window_days"]
        # a winner's or a direct contract's finding is its own: a closed listing changes it and its
        # contract (which then has a listing behind it), a recorded contract itself; an election, the village
        hit = await touched(session, scope)
        if hit is not None and not (hit.contracts or hit.listings):
            return []
        cadre_of_candidate = and_(
            Cadre.village_code == Election.village_code,
            or_(Cadre.id_number == Candidate.id_number,
                and_(Candidate.id_number.is_(None), Cadre.name == Candidate.name)),
        )
        # the people of the elections the subjects can match: those of the subjects' own villages
        elections = in_scope(Election.village_code, scope)
        people = union_all(
            select(Election.id.label("election_id"), Candidate.name.label("name"),
                   Candidate.id_number.label("id_number"), cast(null(), String(32)).label("phone"),
                   Candidate.name.label("candidate"), cast(literal_column("'候选人本人'"), String(16)).label("relation"))
            .join(Candidate, Candidate.election_id == Election.id).where(*elections),
            select(Election.id, Cadre.name, Cadre.id_number, Cadre.phone, Candidate.name,
                   cast(literal_column("'候选人本人'"), String(16)))
            .join(Candidate, Candidate.election_id == Election.id).join(Cadre, cadre_of_candidate).where(*elections),
            select(Election.id, CadreRelative.name, CadreRelative.id_number, cast(null(), String(32)), Candidate.name,
                   CadreRelative.relation)
            .join(Candidate, Candidate.election_id == Election.id).join(Cadre, cadre_of_candidate)
            .join(CadreRelative, CadreRelative.cadre_id == Cadre.id).where(*elections),
        ).cte("people")
        findings: dict[tuple[str, int], Finding] = {}

        def matches(name: Any, id_numbers: list[Any], phones: list[Any]) -> Any:
            return or_(
                *[and_(people.c.id_number.is_not(None), people.c.id_number == n) for n in id_numbers],
                *[and_(people.c.phone.is_not(None), people.c.name == name, people.c.phone == p) for p in phones],
            )

        closed_on = china_date(Listing.closed_at)
        if hit is None or hit.listings:  # a recorded contract alone changes no winner's finding
            winners = await session.execute(
                select(Listing.id, Listing.village_code, Listing.number, Bidder.name.label("party"), closed_on.label("on"),
                       Election.id.label("election_id"), Election.election_date, people.c.candidate, people.c.relation)
                .join(Registration, Registration.id == Listing.winner_registration_id)
                .join(Bidder, Bidder.id == Registration.bidder_id)
                .join(Election, in_window(Election, Listing.village_code, closed_on, days))
                .join(people, and_(people.c.election_id == Election.id,
                                   matches(Bidder.name, [Bidder.id_number], [Bidder.phone, Registration.contact_phone])))
                .where(*([] if hit is None else [ids_in(Listing.id, hit.listings)]),
                       Listing.status == "sold", *in_scope(Listing.village_code, scope), *since(closed_on, scope))
                .order_by(Listing.id, people.c.candidate, people.c.relation)
            )
            self._collect(findings, "listing", winners, days, "竞得人", "listings")
        counterparty = _COUNTERPARTY
        direct = await session.execute(
            select(Contract.id, Contract.village_code, Contract.number, Contract.counterparty_name.label("party"),
                   Contract.signed_on.label("on"), Election.id.label("election_id"), Election.election_date,
                   people.c.candidate, people.c.relation)
            .outerjoin(counterparty, counterparty.id == Contract.counterparty_bidder_id)
            .join(Election, in_window(Election, Contract.village_code, Contract.signed_on, days))
            .join(people, and_(people.c.election_id == Election.id,
                               matches(Contract.counterparty_name,
                                       [Contract.counterparty_id_number, counterparty.id_number],
                                       [counterparty.phone])))
            .where(*([] if hit is None else [linked_contracts(hit)]),
                   Contract.origin == "direct", no_listing_behind(Contract),
                   *in_scope(Contract.village_code, scope), *since(Contract.signed_on, scope))
            .order_by(Contract.id, people.c.candidate, people.c.relation)
        )
        self._collect(findings, "contract", direct, days, "直接签约对象", "contracts")
        return list(findings.values())

    def _collect(self, findings: dict[tuple[str, int], Finding], subject_type: str, rows: Any, days: int,
                 role: str, evidence_key: str) -> None:
        links: dict[tuple[str, int], list[str]] = defaultdict(list)
        for row in rows:
            key = (subject_type, row.id)
            link = (f"候选人「{row.candidate}」本人" if row.relation == "候选人本人"
                    else f"候选人「{row.candidate}」（村干部）的{row.relation}")
            if link not in links[key]:
                links[key].append(link)
            if key not in findings:
                findings[key] = Finding(
                    rule_id=self.id,
                    subject_type=subject_type,
                    subject_id=str(row.id),
                    village_code=row.village_code,
                    score=80.0,
                    explanation="",
                    evidence={evidence_key: [row.id], "elections": [row.election_id]},
                    occurred_at=at_midnight(row.on),
                    numbers={"days_before_election": days_before(row.election_date, row.on)},
                )
            findings[key].explanation = (
                f"{'交易项目' if subject_type == 'listing' else '合同'} {row.number} 的{role}「{row.party}」"
                f"（{row.on.isoformat()}，距 {row.election_date.isoformat()} 换届选举 "
                f"{days_before(row.election_date, row.on)} 天，敏感期 {days} 天）是" + "、".join(links[key])
            )


RULES: list[Rule] = [
    DisposalBeforeElection(),
    LeaseBeyondTerm(),
    HospitalitySpike(),
    ManySmallPayouts(),
    RentCutInWindow(),
    RelatedToCandidate(),
]
