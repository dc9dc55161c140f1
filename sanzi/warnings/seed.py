"""City-scale demo history: ``sanzi demo seed`` writes years of deterministic, plausible activity for the
Guangzhou villages, with irregularities injected at realistic rates.

Per village: assets of every kind leased again and again through open auctions (registrations with deposits
and contact traits, bids, results, contracts with their schedules and receipts), small direct equipment leases,
monthly books (cadre pay, office costs, hospitality, labour payouts, yearly dividends, rent income), cadres with
declared relatives, and the re-elections of 2014, 2017, 2021 and 2026 with their candidates. Irregularities are
injected at rates per opportunity (a sold lot, a village-year, a village's election) so the warning rules fire
on a small share of the data; every injected case is kept as ground truth.

Everything is generated in Python with ids assigned in advance, then written table by table with the database's
bulk path: COPY (asyncpg ``copy_records_to_table``) on PostgreSQL, executemany Core inserts on SQLite. Journal
entries are hashed onto each village's chain with the ledger's own functions, so ``sanzi ledger verify`` passes.
The whole load is one transaction: it commits entirely or leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time as clock
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import JSON, Table, bindparam, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum.cn import ric, uscc

from sanzi.auction.models import Bid, Listing, ListingAsset, ListingEvent, Registration
from sanzi.ledger import chain
from sanzi.ledger.models import (
    Account,
    Asset,
    AssetStatusChange,
    Contract,
    ContractInstallment,
    ContractReceipt,
    JournalEntry,
    JournalLine,
    PriceBasis,
)
from sanzi.ledger.schemas.contracts import PaymentFrequency
from sanzi.ledger.services.contracts import add_months, build_schedule, contract_end
from sanzi.platform.models import (
    Bidder,
    Cadre,
    CadreRelative,
    Candidate,
    Collective,
    District,
    Election,
    User,
    Village,
)
from sanzi.warnings.scenarios import (
    ASSET_KINDS,
    BID,
    ELECTION,
    ELECTION_YEARS,
    INCOME_WITHOUT_CONTRACT,
    OFF_PLATFORM,
    PER_SQUARE_METRE_FEN,
    RENT_ARREARS,
    RESULT_NOT_PUBLISHED,
    STATUS_WITHOUT_TRADE,
    TERMS_WORSE,
    TRADE_TYPE,
    UNDISCLOSED,
    Case,
    Identities,
    party_subject,
    plan_bids,
)

ZONE = ZoneInfo("Asia/Shanghai")
MAX_YEARS, MAX_SCALE = 30, 16
#: the background keeps every trade out of the months around a village's election (the election rules watch
#: the 180 days before it); only injected cases fall inside
QUIET_BEFORE_ELECTION = timedelta(days=240)
QUIET_AFTER_ELECTION = timedelta(days=45)
#: the round before 2014, when the first team in the data took office
FIRST_TERM_YEAR = 2011
#: yearly rent growth: prices of a lot drift up over a decade, as village rents have
RENT_GROWTH = 0.025
#: assets a village offers (before --scale) and bidders a township's pool holds per village
ASSETS_PER_VILLAGE = (25, 46)
BIDDERS_PER_VILLAGE = 7
#: villages generated and written at a time (whole townships): bounds memory at city scale
CHUNK_VILLAGES = 80
#: share of listings that fail (no bidder at the start price) and are relisted at most 20 % cheaper
FAILED_SHARE = 0.06
SEED_CLERK = "seed-{tag}-clerk"

#: rates of injected irregularities, per opportunity: a sold lot, a contract, a village-year, an election
RATES: dict[str, float] = {
    "BID-SINGLE-BIDDER": 0.015,
    "BID-RESERVE-HUGGING": 0.008,
    "BID-IDENTICAL-AMOUNTS": 0.004,
    "BID-SHARED-IDENTITY": 0.008,
    "BID-RELATED-TO-OFFICIAL": 0.003,
    "BID-BELOW-MARKET": 0.008,
    "BID-SHORT-ANNOUNCEMENT": 0.005,
    "BID-RELISTED-CHEAPER": 0.15,  # of relisted failures
    RESULT_NOT_PUBLISHED: 0.004,
    TERMS_WORSE: 0.004,
    RENT_ARREARS: 0.02,  # of auctioned contracts with rent due
    OFF_PLATFORM: 0.02,  # per village-year
    INCOME_WITHOUT_CONTRACT: 0.02,  # per village-year
    STATUS_WITHOUT_TRADE: 0.01,  # per village-year
    "ELE-DISPOSAL-BEFORE-ELECTION": 0.05,  # per village election
    "ELE-HOSPITALITY-SPIKE": 0.03,
    "ELE-MANY-SMALL-PAYOUTS": 0.02,
    "ELE-RELATED-TO-CANDIDATE": 0.01,
    "ELE-LEASE-BEYOND-TERM": 0.01,
}

#: write order: every table after the tables its rows refer to (listing winners are set afterwards)
TABLES: tuple[Table, ...] = tuple(
    model.__table__  # type: ignore[attr-defined]
    for model in (
        User, Bidder, Cadre, CadreRelative, Election, Candidate, Asset, AssetStatusChange, JournalEntry,
        JournalLine, Contract, ContractInstallment, ContractReceipt, Listing, ListingAsset, ListingEvent,
        Registration, Bid,
    )
)


class SeedError(Exception):
    """The seed cannot be written (bad arguments, production, already seeded, no villages)."""


class AlreadySeeded(SeedError):
    """The database already holds seeded history and no --append was given."""


@dataclass(frozen=True)
class SeedOptions:
    years: int
    villages: int | None  # None: all
    seed: int
    scale: int = 1
    today: date | None = None
    append: bool = False
    #: multiplies every injection rate (tests raise it to get cases from a small seed)
    irregularity_rate: float = 1.0


@dataclass
class SeedReport:
    tag: str
    villages: list[str]
    first_day: date
    today: date
    rows: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    truth: list[Case] = field(default_factory=list)
    generate_seconds: float = 0.0
    total_seconds: float = 0.0

    def injected(self) -> Counter[tuple[str, str]]:
        return Counter((case.family, case.rule_id) for case in self.truth)


Progress = Callable[[str, int, int | None], None]
"""progress(phase, advance, new_total): phases are "villages" and "rows"."""


def validate(options: SeedOptions) -> None:
    """Refuse arguments that make no sense, with a message naming the argument."""
    if not 1 <= options.years <= MAX_YEARS:
        raise SeedError(f"--years: 年数应在 1 到 {MAX_YEARS} 之间 / years must be 1..{MAX_YEARS}")
    if options.villages is not None and options.villages < 1:
        raise SeedError("--villages: 村数应为 all 或正整数 / villages must be 'all' or a positive number")
    if not 1 <= options.scale <= MAX_SCALE:
        raise SeedError(f"--scale: 倍数应在 1 到 {MAX_SCALE} 之间 / scale must be 1..{MAX_SCALE}")
    if options.seed < 0:
        raise SeedError("--seed: 种子应为非负整数 / seed must be a non-negative integer")


# ---- identities unique across a city (the scenario's wrap after a few thousand people) -----------------------


class CityIdentities(Identities):
    """Identities that stay unique for millions of people: every number is an injective function of a counter,
    so no two strangers share an ID number, phone, account, address or network address by accident."""

    def __init__(self, seed: int, run: int, rng: random.Random) -> None:
        super().__init__(seed, rng)
        self.n = run * 2_000_000

    def resident_id(self) -> str:
        n = self._next()
        born = date(1950, 1, 1) + timedelta(days=(n * 7919) % 20000)
        serial = (n // 20000 + 13 * (n % 50)) % 1000
        body = f"4401{(self.seed % 80) + 12:02d}{born:%Y%m%d}{serial:03d}"
        return body + ric.calc_check_digit(body + "0")

    def credit_code(self) -> str:
        body = f"9144011{self.seed % 100:02d}{self._next():08d}"
        return body + uscc.calc_check_digit(body)

    def phone(self) -> str:
        return f"15{self.seed % 10}{self._next() * 7919 % 10**8:08d}"

    def bank_account(self) -> str:
        return f"6228{self.seed % 1000:03d}{self._next():012d}"

    def ip(self) -> str:
        n = self._next()
        return f"{113 + n // 65536 % 100}.{n // 256 % 256}.{n % 256}.{n * 7 % 250 + 1}"

    def device(self) -> str:
        return hashlib.sha1(f"seed-device-{self.seed}-{self._next()}".encode()).hexdigest()


@dataclass
class PoolBidder:
    id: int
    name: str
    phone: str
    address: str
    account: str
    id_number: str
    ip: str
    device: str


@dataclass
class Person:
    name: str
    id_number: str
    phone: str


@dataclass
class AssetState:
    id: int
    village: str
    kind: str
    area: Decimal
    name: str
    code: str
    status: str = "idle"


@dataclass
class ContractState:
    id: int
    number: str
    counterparty: str
    id_number: str | None
    unit_price_fen: int
    end_date: date
    schedule: list[Any]
    credit: int = 0


@dataclass
class Entry:
    """A journal entry waiting for its place in the village's chain."""

    day: date
    memo: str
    counterparty: str | None
    lines: list[tuple[str, int, int, str | None]]
    source: str
    key: str | None
    order: int
    receipt_for: tuple[int, int] | None = None
    #: (registration row, column) to point at this entry once it has an id
    link: tuple[dict[str, Any], str] | None = None


# ---- the generator ---------------------------------------------------------------------------------------


class CitySeed:
    """Generates the history village by village, one district at a time, and writes each district in bulk."""

    def __init__(self, session: AsyncSession, options: SeedOptions, progress: Progress | None = None) -> None:
        self.session = session
        self.options = options
        self.progress = progress or (lambda phase, advance, total: None)
        self.rng = random.Random(f"sanzi-seed:{options.seed}:{options.scale}")
        self.today = options.today or datetime.now(ZONE).date()
        self.first_day = date(self.today.year - options.years + 1, 1, 1)
        self.scale = options.scale
        self.rates = {rule: rate * options.irregularity_rate for rule, rate in RATES.items()}
        self.is_postgres = session.bind.dialect.name == "postgresql"
        self.rows: dict[str, list[dict[str, Any]]] = {table.name: [] for table in TABLES}
        self.next_id: dict[str, int] = {}
        self.serial = 0
        self.winners: list[dict[str, int | None]] = []
        self.used_people: set[str] = set()

    # -- small helpers

    def new_id(self, table: Table) -> int:
        self.next_id[table.name] += 1
        return self.next_id[table.name]

    def add(self, table: Table, **values: Any) -> dict[str, Any]:
        """Queue a row with a fresh id; returns it (its id is ``row["id"]``)."""
        values["id"] = self.new_id(table)
        self.rows[table.name].append(values)
        return values

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def at(self, day: date, hour: int = 10, minute: int = 0) -> datetime:
        """A local time of day as aware UTC."""
        return datetime.combine(day, time(hour, minute), ZONE).astimezone(UTC)

    def chance(self, rule_id: str) -> bool:
        return self.rng.random() < self.rates[rule_id]

    def record(self, family: str, rule_id: str, subject_type: str, subject_id: Any, village: str, note: str) -> None:
        self.report.truth.append(Case(family, rule_id, subject_type, str(subject_id), village, note))

    def quiet(self, day: date, village: str) -> bool:
        return any(
            when - QUIET_BEFORE_ELECTION <= day <= when + QUIET_AFTER_ELECTION for when in self.elections[village]
        )

    def clear_of_elections(self, day: date, village: str, span: int = 50) -> date:
        """The first day from ``day`` on whose next ``span`` days keep out of the village's election windows."""
        for when in sorted(self.elections[village]):
            if day + timedelta(days=span) >= when - QUIET_BEFORE_ELECTION and day <= when + QUIET_AFTER_ELECTION:
                day = when + QUIET_AFTER_ELECTION + timedelta(days=1 + self.rng.randint(0, 20))
        return day

    # -- setup: which villages, their collectives, accounts and chains; what is already there

    async def prepare(self) -> None:
        clerks = await self.session.scalar(
            select(func.count()).select_from(User).where(User.username.like(SEED_CLERK.format(tag="%")))
        )
        if clerks and not self.options.append:
            raise AlreadySeeded(
                "数据库中已有演示历史数据；如需追加请加 --append / the database already holds seeded history "
                "(use --append to add another run)"
            )
        self.run = int(clerks or 0)
        self.tag = f"SD{self.options.seed}" + (f"R{self.run}" if self.run else "")
        rows = (
            await self.session.execute(
                select(Village.code, Village.township_code, Village.district_code, District.name)
                .join(District, District.code == Village.district_code)
                .order_by(Village.code)
            )
        ).all()
        if not rows:
            raise SeedError("数据库中没有村：请先导入区划（sanzi geography import）/ no villages: import them first")
        wanted = self.options.villages
        if wanted is not None and wanted > len(rows):
            raise SeedError(f"--villages: 只有 {len(rows)} 个村 / there are only {len(rows)} villages")
        by_township: dict[str, list[Any]] = {}
        for row in rows:
            by_township.setdefault(row.township_code, []).append(row)
        chosen: list[Any] = []
        if wanted is None:
            chosen = list(rows)
        else:
            # whole townships in a seeded order, so the statistical rules have peers to compare with
            townships = sorted(by_township)
            # by the seed alone, so --scale 1, 2 and 4 cover the same villages
            random.Random(f"sanzi-seed-villages:{self.options.seed}").shuffle(townships)
            for township in townships:
                chosen.extend(by_township[township][: wanted - len(chosen)])
                if len(chosen) >= wanted:
                    break
        chosen.sort(key=lambda row: row.code)
        self.villages = [row.code for row in chosen]
        self.township_of = {row.code: row.township_code for row in chosen}
        self.district_of = {row.code: row.district_code for row in chosen}
        self.district_name = {row.code: row.name for row in chosen}
        collectives = await self.session.execute(
            select(Collective.id, Collective.village_code, Collective.chain_length, Collective.chain_head)
            .where(Collective.village_code.in_(self.villages))
        )
        self.collective: dict[str, int] = {}
        self.chain: dict[str, tuple[int, str]] = {}
        for cid, code, length, head in collectives:
            self.collective[code] = cid
            self.chain[code] = (length, head)
        missing = [code for code in self.villages if code not in self.collective]
        if missing:
            raise SeedError(f"村 {missing[:3]} 没有集体经济组织 / villages without a collective: {missing[:3]}")
        self.accounts: dict[int, dict[str, int]] = {}
        for cid, code, account_id in await self.session.execute(
            select(Account.collective_id, Account.code, Account.id)
        ):
            self.accounts.setdefault(cid, {})[code] = account_id
        for table in TABLES:
            self.next_id[table.name] = int(await self.session.scalar(select(func.max(table.c.id))) or 0)
        self.first_id = dict(self.next_id)
        self.ids = CityIdentities(self.options.seed, self.run, random.Random(f"{self.options.seed}:{self.run}:ids"))
        self.report = SeedReport(self.tag, self.villages, self.first_day, self.today)
        await self.load_governance()

    # -- people

    def person(self) -> Person:
        return Person(self.ids.person_name(), self.ids.resident_id(), self.ids.phone())

    def new_bidder(self, village: str, *, company: bool | None = None, person: Person | None = None) -> PoolBidder:
        """A bidder with a user account and identity traits of its own (or a given person's name and ID)."""
        company = (self.rng.random() < 0.35) if company is None and person is None else bool(company)
        if person is not None:
            name, id_number = person.name, person.id_number
        else:
            name = self.ids.company_name() if company else self.ids.person_name()
            id_number = self.ids.credit_code() if company else self.ids.resident_id()
        stamp = self.at(self.first_day - timedelta(days=30))
        user = self.add(User.__table__, username=f"{self.tag.lower()}-b{self.next_serial()}", password_hash="!",
                        display_name=name, role="bidder", is_active=True, session_epoch=0,
                        created_at=stamp, updated_at=stamp)
        bidder = PoolBidder(0, name, self.ids.phone(), self.ids.address(self.district_name[village]),
                            self.ids.bank_account(), id_number, self.ids.ip(), self.ids.device())
        row = self.add(Bidder.__table__, user_id=user["id"], kind="company" if company else "person", name=name,
                       id_number=id_number, legal_representative=self.ids.person_name() if company else None,
                       phone=bidder.phone, address=bidder.address, bank_name="广州农村商业银行",
                       bank_account=bidder.account, created_at=stamp, updated_at=stamp)
        bidder.id = row["id"]
        return bidder

    async def load_governance(self) -> None:
        """The cadres, relatives and elections already recorded for the chosen villages (an appended run builds
        on them instead of inventing a second calendar), and the people who already bid."""
        self.recorded: dict[str, tuple[list[date], list[Any], dict[date, Person]]] = {}
        elections = (await self.session.execute(
            select(Election.id, Election.village_code, Election.election_date)
            .where(Election.village_code.in_(self.villages)).order_by(Election.election_date)
        )).all()
        if not elections:
            return
        losers: dict[int, Person] = {}
        for election_id, name, id_number in await self.session.execute(
            select(Candidate.election_id, Candidate.name, Candidate.id_number)
            .where(Candidate.election_id.in_([row.id for row in elections])).order_by(Candidate.id)
        ):
            losers[election_id] = Person(name, id_number or "", "")
        relatives: dict[int, list[Person]] = {}
        cadres = (await self.session.execute(
            select(Cadre.id, Cadre.village_code, Cadre.name, Cadre.id_number, Cadre.phone, Cadre.term_start,
                   Cadre.term_end).where(Cadre.village_code.in_(self.villages))
        )).all()
        for cadre_id, name, id_number in await self.session.execute(
            select(CadreRelative.cadre_id, CadreRelative.name, CadreRelative.id_number)
            .join(Cadre, Cadre.id == CadreRelative.cadre_id).where(Cadre.village_code.in_(self.villages))
        ):
            relatives.setdefault(cadre_id, []).append(Person(name, id_number or "", ""))
        for row in elections:
            days, _, by_day = self.recorded.setdefault(row.village_code, ([], [], {}))
            if row.election_date <= self.today:
                days.append(row.election_date)
            if row.id in losers:
                by_day[row.election_date] = losers[row.id]
        for row in cadres:
            if row.village_code in self.recorded and (row.term_end is None or row.term_end >= self.first_day):
                person = Person(row.name, row.id_number or "", row.phone or "")
                self.recorded[row.village_code][1].append((person, relatives.get(row.id, []), row.term_start,
                                                           row.term_end))
        people = [p.id_number for _, sitting, losing in self.recorded.values()
                  for p in [*(r for entry in sitting for r in entry[1]), *losing.values()] if p.id_number]
        for start in range(0, len(people), 5000):
            self.used_people.update(await self.session.scalars(
                select(Bidder.id_number).where(Bidder.id_number.in_(people[start:start + 5000]))
            ))

    def governance(self, village: str) -> None:
        """Cadres of every term with declared relatives; the four re-elections with their candidates."""
        if village in self.recorded:
            self.elections[village], self.sitting[village], self.losers[village] = self.recorded[village]
            return
        rng = self.rng
        days = {year: date(year, 3, rng.randint(5, 28)) for year in (FIRST_TERM_YEAR, *ELECTION_YEARS)}
        self.elections[village] = [day for year, day in days.items() if year != FIRST_TERM_YEAR and day <= self.today]
        starts = [days[FIRST_TERM_YEAR], *self.elections[village]]
        positions = [("party_branch", "书记"), ("party_branch", "委员"), ("committee", "主任"),
                     ("committee", "副主任"), ("committee", "委员"), ("committee", "出纳")]
        team = [self.person() for _ in positions]
        relatives: dict[str, list[Person]] = {}
        self.sitting[village] = []
        self.losers[village] = {}
        for index, start in enumerate(starts):
            end = starts[index + 1] - timedelta(days=1) if index + 1 < len(starts) else None
            if index:
                candidates = [*team, self.person(), self.person(), self.person()]
                for k, slot in enumerate(rng.sample(range(len(team)), rng.choice((1, 2)))):
                    team[slot] = candidates[len(team) + k]
                stamp = self.at(start - timedelta(days=60))
                election = self.add(Election.__table__, village_code=village, election_date=start,
                                    note="村（社区）“两委”换届选举", created_at=stamp, updated_at=stamp)
                for k, person in enumerate(candidates):
                    self.add(Candidate.__table__, election_id=election["id"], name=person.name,
                             id_number=person.id_number, position=("主任", "副主任", "委员")[min(k, 2)])
                self.losers[village][start] = candidates[-1]  # the third challenger never wins a seat
            for person, (body, position) in zip(team, positions, strict=True):
                stamp = self.at(start)
                cadre = self.add(Cadre.__table__, village_code=village, name=person.name, id_number=person.id_number,
                                 phone=person.phone, body=body, position=position, term_start=start,
                                 term_end=end, created_at=stamp, updated_at=stamp)
                if person.id_number not in relatives:
                    relatives[person.id_number] = [self.person() for _ in range(rng.choice((1, 2)))]
                for relative in relatives[person.id_number]:
                    self.add(CadreRelative.__table__, cadre_id=cadre["id"], name=relative.name,
                             id_number=relative.id_number, relation=rng.choice(("配偶", "子女", "兄弟姐妹")))
                if end is None or end >= self.first_day:
                    self.sitting[village].append((person, relatives[person.id_number], start, end))

    # -- assets, prices

    def new_asset(self, village: str, kind: str, area: Decimal | None = None) -> AssetState:
        unit, (low, high), *_ = ASSET_KINDS.get(kind, ("item", (1, 3), "", 0, ()))
        area = area if area is not None else Decimal(self.rng.randint(low * 10, high * 10)) / 10
        number = self.next_serial()
        names = {"farmland": "耕地", "fish_pond": "鱼塘", "forest": "林地", "construction_land": "集体建设用地",
                 "shop": "商铺", "building": "厂房", "equipment": "设备", "other": "仓库"}
        name = f"{names[kind]}{number}号"
        stamp = self.at(self.first_day - timedelta(days=60))
        row = self.add(Asset.__table__, collective_id=self.collective[village], village_code=village,
                       code=f"{self.tag}-{number:06d}", name=name, kind=kind, area=area, area_unit=unit,
                       location=f"{names[kind]}片区第{number % 97 + 1}号", status="idle",
                       book_value_fen=self.rng.randint(50, 500) * 100_000, created_at=stamp, updated_at=stamp)
        asset = AssetState(row["id"], village, kind, area, name, row["code"])
        self.asset_rows[asset.id] = row
        return asset

    def status(self, asset: AssetState, new: str, reason: str, day: date) -> None:
        self.add(AssetStatusChange.__table__, asset_id=asset.id, from_status=asset.status, to_status=new,
                 reason=reason, changed_by_id=self.clerk_id, changed_at=self.at(day, 9))
        asset.status = new
        self.asset_rows[asset.id]["status"] = new

    def market_price(self, village: str, kind: str, area: Decimal, day: date) -> int:
        """The going price on the listing's basis (per mu per year for land, per year for buildings), by
        township, growing a little every year."""
        township = self.township_of[village]
        factor = 0.85 + (int(hashlib.sha1(township.encode()).hexdigest()[:6], 16) % 1000) / 1000 * 0.35
        growth = (1 + RENT_GROWTH) ** ((day - date(2014, 1, 1)).days / 365.25)
        if kind in PER_SQUARE_METRE_FEN:
            base = PER_SQUARE_METRE_FEN[kind] * float(area)
        else:
            base = ASSET_KINDS[kind][3]
        return max(100, int(base * factor * growth) // 100 * 100)

    def pick_bidders(self, village: str, n: int) -> list[PoolBidder]:
        """Independent bidders from the township's pool, none of the village's last few winners."""
        recent = set(self.last_winners[village][-6:])
        pool = [b for b in self.pool[self.township_of[village]] if b.id not in recent]
        return self.rng.sample(pool, min(n, len(pool)))

    # -- books

    def entry(self, village: str, day: date, memo: str, counterparty: str | None,
              lines: list[tuple[str, int, int, str | None]], *, source: str = "manual", key: str | None = None,
              receipt_for: tuple[int, int] | None = None, link: tuple[dict[str, Any], str] | None = None) -> None:
        queue = self.journal[village]
        queue.append(Entry(day, memo, counterparty, lines, source, key, len(queue), receipt_for, link))

    def receive(self, village: str, contract: ContractState, amount: int, day: date) -> None:
        self.entry(village, day, f"收取合同 {contract.number} 款项", contract.counterparty,
                   [("102", amount, 0, None), ("50101", 0, amount, f"合同 {contract.number}")],
                   source="contract_receipt", receipt_for=(contract.id, amount))

    def pay_installment(self, village: str, contract: ContractState, item: Any, day: date) -> None:
        used = min(contract.credit, item.amount_fen)
        contract.credit -= used
        if item.amount_fen > used:
            self.receive(village, contract, item.amount_fen - used, day)

    # -- contracts

    def contract(self, asset: AssetState, counterparty: str, id_number: str | None, *, unit_price_fen: int,
                 term_months: int, start_date: date, signed_on: date, price_basis: str, trade_type: str,
                 origin: str = "direct", area: Decimal | None = None, listing_id: int | None = None,
                 bidder_id: int | None = None, origin_reason: str | None = None, frequency: str = "annual",
                 pay: bool = True, deposit: tuple[int, int, str] | None = None) -> ContractState:
        village = asset.village
        schedule = build_schedule(start_date, term_months, PriceBasis(price_basis), unit_price_fen,
                                  PaymentFrequency(frequency), area)
        end = contract_end(start_date, term_months)
        number = f"HT-{self.tag}-{self.next_serial():06d}"
        stamp = self.at(signed_on, 15)
        row = self.add(
            Contract.__table__, collective_id=self.collective[village], village_code=village, number=number,
            asset_id=asset.id, trade_type=trade_type, counterparty_name=counterparty,
            counterparty_id_number=id_number, counterparty_bidder_id=bidder_id, start_date=start_date,
            term_months=term_months, end_date=end, price_basis=price_basis, unit_price_fen=unit_price_fen,
            area=area, step_ups=[], payment_frequency=frequency, total_value_fen=sum(i.amount_fen for i in schedule),
            origin=origin, listing_id=listing_id, signed_on=signed_on,
            origin_reason=origin_reason or ("小额短期出租，经村民代表会议同意" if origin == "direct" else None),
            status="active" if end >= self.today else "expired", created_by_id=self.clerk_id,
            created_at=stamp, updated_at=stamp,
        )
        for item in schedule:
            self.add(ContractInstallment.__table__, contract_id=row["id"], seq=item.seq,
                     period_start=item.period_start, period_end=item.period_end, due_date=item.due_date,
                     amount_fen=item.amount_fen)
        contract = ContractState(row["id"], number, counterparty, id_number, unit_price_fen, end, schedule)
        target = "sold" if trade_type == "transfer" else "leased"
        self.status(asset, target, f"签订合同 {number}", signed_on)
        if end < self.today:
            self.status(asset, "idle", f"合同 {number} 期满", end + timedelta(days=1))
        if deposit is not None:
            amount, registration_id, payer = deposit
            applied = min(amount, row["total_value_fen"])
            self.entry(village, signed_on, f"竞买保证金转作合同 {number} 首期价款", payer,
                       [("21101", applied, 0, None), ("50101", 0, applied, f"合同 {number}")],
                       source="contract_receipt", receipt_for=(row["id"], applied),
                       key=f"deposit-applied-{registration_id}", link=(self.registration_rows[registration_id],
                                                                     "deposit_settlement_entry_id"))
            contract.credit = applied
        if pay:
            for item in schedule:
                if item.due_date > self.today:
                    break
                received = max(signed_on, item.due_date - timedelta(days=self.rng.randint(0, 6)))
                self.pay_installment(village, contract, item, received)
        return contract

    # -- one auction, announcement to contract

    def auction(self, asset: AssetState, announce_on: date, bidders: list[PoolBidder], *, final: int | None = None,
                start: int | None = None, increment: int | None = None, plan: list[tuple[int, int]] | None = None,
                announcement_days: int | None = None, term_months: int | None = None, sold: bool = True,
                publish: bool = True, relisted_from: int | None = None, traits: dict[int, dict[str, Any]] | None = None,
                winner: int | None = None, pay: bool = True, price_cut: float = 1.0,
                ) -> tuple[dict[str, Any], ContractState | None, list[dict[str, Any]]]:
        rng = self.rng
        village = asset.village
        _, _, basis, _, terms = ASSET_KINDS.get(asset.kind, ("item", (1, 1), "per_year", 0, (12,)))
        term = term_months or rng.choice(terms)
        final = final or int(self.market_price(village, asset.kind, asset.area, announce_on)
                             * rng.uniform(0.88, 1.12)) // 100 * 100
        start = start or int(final / rng.uniform(1.3, 1.55)) // 100 * 100
        increment = increment or max(100, start * rng.choice((2, 3, 4)) // 100 // 100 * 100)
        days = announcement_days or rng.choice((10, 12, 15, 20))
        announced_at = self.at(announce_on, 9)
        bidding_starts = self.at(announce_on + timedelta(days=days + 2), 9)
        bidding_ends = bidding_starts + timedelta(hours=2)
        number = f"{self.tag}-{village[-6:]}-{self.next_serial():06d}"
        if plan is None:
            plan = plan_bids(rng, len(bidders), start, increment, final, (), winner) if sold and bidders else []
        moments, moment = [], bidding_starts
        for _ in plan:
            moment += timedelta(seconds=rng.randint(20, 240))
            moments.append(moment)
        closed_at = max(bidding_ends, moment + timedelta(minutes=5))
        price = plan[-1][1] if plan else None
        sold = sold and price is not None
        closed_on = closed_at.astimezone(ZONE).date()
        deposit = min(start, max(100, start // 10 // 100 * 100))
        trade_type = TRADE_TYPE.get(asset.kind, "lease")
        listing = self.add(
            Listing.__table__, collective_id=self.collective[village], village_code=village, number=number,
            title=f"{asset.name}{'发包' if trade_type == 'contracting' else '出租'}", description=None,
            status="sold" if sold else "failed", trade_type=trade_type, term_months=term, price_basis=basis,
            area=asset.area if basis == "per_mu_year" else None, starting_price_fen=start, reserve_price_fen=None,
            min_increment_fen=increment, max_increment_fen=increment * 10, deposit_fen=deposit,
            performance_bond_fen=0, qualification_conditions="具有完全民事行为能力的个人或依法设立的企业",
            announcement_days=days, registration_deadline=self.at(announce_on + timedelta(days=days), 17),
            bidding_starts_at=bidding_starts, bidding_ends_at=bidding_ends, extension_minutes=5, max_extensions=20,
            resolution_meeting_date=announce_on - timedelta(days=20), resolution_present=45,
            resolution_votes_for=rng.randint(34, 44), resolution_votes_against=rng.randint(0, 3),
            resolution_note="村民代表会议表决通过", announced_at=announced_at, status_reason=None,
            relisted_from_id=relisted_from, lock_version=len(plan), current_end_at=closed_at, extensions_used=0,
            current_price_fen=price, bid_count=len(plan), closed_at=closed_at,
            final_price_fen=price if sold else None,
            publicity_ends_at=closed_at + timedelta(days=5) if publish else None,
            sign_deadline=closed_on + timedelta(days=20) if sold else None, contract_id=None,
            created_at=self.at(announce_on - timedelta(days=16)), updated_at=closed_at,
        )
        self.add(ListingAsset.__table__, listing_id=listing["id"], asset_id=asset.id)
        self.status(asset, "listed", f"挂牌 {number}", announce_on)
        winner_index = plan[-1][0] if sold else None
        registrations = []
        for index, bidder in enumerate(bidders):
            values = {"contact_phone": bidder.phone, "contact_address": bidder.address, "applied_ip": bidder.ip,
                      "applied_device": bidder.device, "deposit_payer_name": bidder.name,
                      "deposit_payer_account": bidder.account}
            values.update((traits or {}).get(index, {}))
            paid_at = self.at(announce_on + timedelta(days=min(days - 1, 2 + index)), 11)
            row = self.add(
                Registration.__table__, listing_id=listing["id"], bidder_id=bidder.id, status="qualified",
                bidder_number=f"{index + 1:03d}",
                deposit_state="applied" if index == winner_index else "refunded", deposit_paid_at=paid_at,
                decided_by_id=self.clerk_id, decided_at=self.at(announce_on + timedelta(days=days), 16),
                created_at=paid_at - timedelta(hours=2), updated_at=closed_at, **values,
            )
            registrations.append(row)
            self.registration_rows[row["id"]] = row
            payer = row["deposit_payer_name"]
            self.entry(village, paid_at.astimezone(ZONE).date(), f"收到交易项目 {number} 竞买保证金", payer,
                       [("102", deposit, 0, None), ("21101", 0, deposit, None)], source="deposit",
                       key=f"deposit:{row['id']}", link=(row, "deposit_entry_id"))
            if index != winner_index:
                self.entry(village, closed_on, f"退还交易项目 {number} 竞买保证金", payer,
                           [("21101", deposit, 0, f"竞买号 {row['bidder_number']}"), ("102", 0, deposit, f"项目 {number}")],
                           source="auction_deposit", key=f"deposit-refunded-{row['id']}",
                           link=(row, "deposit_settlement_entry_id"))
        for seq, ((index, amount), when) in enumerate(zip(plan, moments, strict=True), start=1):
            registration = registrations[index]
            self.add(Bid.__table__, listing_id=listing["id"], seq=seq, registration_id=registration["id"],
                     amount_fen=amount, client_key=f"{number}-{seq}", placed_at=when, extended_end_at=None,
                     ip_address=registration["applied_ip"], device_fingerprint=registration["applied_device"])
        steps = [("draft", "submitted", self.at(announce_on - timedelta(days=15), 9), None),
                 ("submitted", "approved", self.at(announce_on - timedelta(days=5), 9), None),
                 ("approved", "announced", announced_at, None),
                 ("announced", "bidding", bidding_starts, None),
                 ("bidding", "closed", closed_at, "竞价结束"),
                 ("closed", "sold" if sold else "failed", closed_at,
                  f"成交，成交价 {price / 100:.2f} 元" if sold and price else "流拍")]
        for old, new, moment_at, note in steps:
            self.add(ListingEvent.__table__, listing_id=listing["id"], from_status=old, to_status=new,
                     actor_id=self.clerk_id if note is None else None, at=moment_at, note=note)
        if not sold:
            self.status(asset, "idle", f"交易项目 {number} 流拍", closed_on)
            return listing, None, registrations
        assert price is not None and winner_index is not None
        bidder = bidders[winner_index]
        self.last_winners[village].append(bidder.id)
        signed = closed_on + timedelta(days=rng.randint(7, 12))
        won = registrations[winner_index]
        contract = self.contract(
            asset, bidder.name, bidder.id_number, unit_price_fen=max(100, int(price * price_cut) // 100 * 100),
            term_months=term, start_date=add_months(signed.replace(day=1), 1), signed_on=signed, price_basis=basis,
            trade_type=trade_type, origin="auction", area=asset.area if basis == "per_mu_year" else None,
            listing_id=listing["id"], bidder_id=bidder.id, pay=pay,
            deposit=(deposit, won["id"], won["deposit_payer_name"]),
        )
        listing["contract_id"] = contract.id
        self.winners.append({"lid": listing["id"], "rid": won["id"]})
        return listing, contract, registrations

    # -- a village's history

    def village_history(self, village: str) -> None:
        rng = self.rng
        self.journal[village] = []
        self.last_winners[village] = []
        n_assets = rng.randint(*ASSETS_PER_VILLAGE) * self.scale
        kinds = ("farmland", "farmland", "farmland", "fish_pond", "fish_pond", "forest", "construction_land",
                 "shop", "shop", "shop", "building", "building")
        for _ in range(n_assets):
            self.asset_history(self.new_asset(village, rng.choice(kinds)))
        self.direct_leases(village)
        self.books(village)
        self.inject_village(village)

    def asset_history(self, asset: AssetState) -> None:
        """An asset leased again and again: each lease ends, the lot is listed again two months before."""
        rng = self.rng
        village = asset.village
        terms = ASSET_KINDS[asset.kind][4]
        day = self.first_day + timedelta(days=rng.randint(0, 30 * max(terms) - 1))
        relisted_from = None
        while True:
            day = self.clear_of_elections(day, village)
            if day + timedelta(days=60) > self.today:
                return
            if relisted_from is None and rng.random() < FAILED_SHARE:
                # nobody came at the start price: relisted forty days later, cheaper
                failed, _, _ = self.auction(asset, day, [], sold=False)
                relisted_from, day = failed["id"], day + timedelta(days=40)
                continue
            _, contract = self.background_trade(asset, day, relisted_from)
            relisted_from = None
            if contract is None:
                return
            day = contract.end_date - timedelta(days=60)

    def background_trade(self, asset: AssetState, day: date, relisted_from: int | None) -> tuple[Any, Any]:
        """One sold lot, now and then with a bid irregularity of the catalogue."""
        rng, village = self.rng, asset.village
        per_mu = asset.kind in ("farmland", "fish_pond", "forest", "construction_land")
        market = int(self.market_price(village, asset.kind, asset.area, day) * rng.uniform(0.88, 1.12)) // 100 * 100
        options: dict[str, Any] = {}
        note = None
        if relisted_from is not None:
            options["relisted_from"] = relisted_from
            failed_start = self.rows[Listing.__table__.name][-1]["starting_price_fen"]
            if self.chance("BID-RELISTED-CHEAPER"):
                options["start"] = int(failed_start * rng.uniform(0.6, 0.7)) // 100 * 100
                note = ("BID-RELISTED-CHEAPER", "listing", "start cut 30-40 %")
            else:
                options["start"] = max(100, int(failed_start * 0.9) // 100 * 100)
            options["final"] = max(market, options["start"] * 13 // 10)
            bidders = self.pick_bidders(village, rng.randint(3, 5))
        elif self.chance("BID-SINGLE-BIDDER"):
            bidders = self.pick_bidders(village, 1)
            options["start"] = market
            note = ("BID-SINGLE-BIDDER", "listing", "one bidder")
        elif self.chance("BID-RESERVE-HUGGING"):
            bidders = self.pick_bidders(village, 3)
            increment = max(100, market * 3 // 100 // 100 * 100)
            options.update(start=market, increment=increment, plan=[(0, market), (1, market + increment)])
            note = ("BID-RESERVE-HUGGING", "listing", "sold one increment above the start")
        elif self.chance("BID-IDENTICAL-AMOUNTS"):
            bidders = self.pick_bidders(village, 4)
            start = int(market / 1.4) // 100 * 100
            increment = max(100, start * 3 // 100 // 100 * 100)
            plan = plan_bids(rng, 4, start, increment, market)
            plan.insert(3, (plan[2][0] ^ 1 if plan[2][0] < 2 else 0, plan[2][1]))
            options.update(start=start, increment=increment, final=market, plan=plan)
            note = ("BID-IDENTICAL-AMOUNTS", "listing", "two equal bids")
        elif self.chance("BID-SHARED-IDENTITY"):
            bidders = self.pick_bidders(village, 4)
            trait = rng.choice(("phone", "deposit_payer", "device"))
            first = bidders[0]
            options["traits"] = {1: {"phone": {"contact_phone": first.phone},
                                     "deposit_payer": {"deposit_payer_name": first.name,
                                                       "deposit_payer_account": first.account},
                                     "device": {"applied_device": first.device}}[trait]}
            note = ("BID-SHARED-IDENTITY", "listing", f"shared {trait}")
        elif self.chance("BID-RELATED-TO-OFFICIAL") and (relative := self.free_relative(village, day)):
            bidders = [self.new_bidder(village, person=relative), *self.pick_bidders(village, 3)]
            options["winner"] = 0
            note = ("BID-RELATED-TO-OFFICIAL", "registration", "a cadre's declared relative wins")
        elif per_mu and self.chance("BID-BELOW-MARKET"):
            bidders = self.pick_bidders(village, 4)
            options["final"] = market * rng.randint(38, 48) // 100 // 100 * 100
            note = ("BID-BELOW-MARKET", "listing", "about 40 % of the going price")
        elif self.chance("BID-SHORT-ANNOUNCEMENT"):
            bidders = self.pick_bidders(village, 4)
            # bidding opens two days after registration closes: 1-2 days' notice is 3-4 days before bidding
            options["announcement_days"] = rng.choice((1, 2))
            note = ("BID-SHORT-ANNOUNCEMENT", "listing", "announced 3-4 days before bidding")
        elif self.chance(RESULT_NOT_PUBLISHED):
            bidders = self.pick_bidders(village, 4)
            options["publish"] = False
            note = (RESULT_NOT_PUBLISHED, "listing", "result never publicised")
        elif self.chance(TERMS_WORSE):
            bidders = self.pick_bidders(village, 4)
            options["price_cut"] = rng.uniform(0.8, 0.9)
            note = (TERMS_WORSE, "contract", "contract below the result")
        else:
            bidders = self.pick_bidders(village, rng.randint(2, 6) if rng.random() < 0.3 else rng.randint(3, 5))
        options.setdefault("final", market)
        arrears = self.chance(RENT_ARREARS)
        listing, contract, registrations = self.auction(asset, day, bidders, pay=not arrears, **options)
        if note is not None:
            rule_id, subject_type, text_ = note
            family = UNDISCLOSED if rule_id in (RESULT_NOT_PUBLISHED, TERMS_WORSE) else BID
            subject = {"listing": listing["id"], "registration": registrations[0]["id"],
                       "contract": contract.id if contract else None}[subject_type]
            self.record(family, rule_id, subject_type, subject, village, text_)
        if arrears and contract is not None:
            due = [item for item in contract.schedule if item.due_date <= self.today]
            overdue = [item for item in due[1:] if item.due_date <= self.today - timedelta(days=200)]
            # arrears are pursued while the lease runs: a lease already over was settled in the end
            unpaid = overdue and contract.end_date >= self.today
            for item in due[:1] if unpaid else due:
                self.pay_installment(village, contract, item, item.due_date)
            if unpaid:
                self.record(UNDISCLOSED, RENT_ARREARS, "contract", contract.id, village, "rent left unpaid")
        return listing, contract

    def free_relative(self, village: str, day: date) -> Person | None:
        """A declared relative of a cadre in office on ``day`` who has not bid yet."""
        for person, relatives, start, end in self.sitting[village]:
            if start <= day and (end is None or end >= day):
                for relative in relatives:
                    if relative.id_number and relative.id_number not in self.used_people:
                        self.used_people.add(relative.id_number)
                        return relative
        return None

    def direct_leases(self, village: str) -> None:
        """Small, short direct leases of equipment (below every trading threshold), to distinct villagers."""
        rng = self.rng
        for year in range(self.first_day.year, self.today.year + 1):
            for _ in range(self.scale):
                if rng.random() < 0.5:
                    continue
                signed = self.clear_of_elections(date(year, rng.randint(4, 9), rng.randint(1, 28)), village, 10)
                if signed >= self.today - timedelta(days=30):
                    continue
                asset = self.new_asset(village, "equipment", Decimal(1))
                self.contract(asset, self.ids.person_name(), self.ids.resident_id(),
                              unit_price_fen=rng.randint(30, 120) * 10_000, term_months=rng.choice((3, 6)),
                              start_date=signed + timedelta(days=1), signed_on=signed, price_basis="total",
                              trade_type="lease", frequency="once")

    def books(self, village: str) -> None:
        """Monthly books: cadre pay and office costs, steady hospitality, labour paid to a few villagers, a
        subsidy now and then, a yearly dividend to members (rent income comes from the contracts)."""
        rng = self.rng
        hospitality = rng.randint(18, 35) * 10_000
        pay = rng.randint(30, 45) * 100_000
        workers = [self.ids.person_name() for _ in range(3 * self.scale)]
        month = self.first_day
        while month <= self.today:
            last = min(add_months(month, 1) - timedelta(days=1), self.today)
            for k in range(self.scale):
                office = rng.randint(20, 60) * 10_000
                self.entry(village, min(month + timedelta(days=9 + k), last), f"{month:%Y年%m月}干部报酬及办公费", None,
                           [("53103", pay, 0, None), ("53102", office, 0, None), ("102", 0, pay + office, None)])
                amount = int(hospitality * rng.uniform(0.9, 1.1)) // 100 * 100
                self.entry(village, min(month + timedelta(days=14 + k), last), f"{month:%Y年%m月}公务接待费", None,
                           [("53101", amount, 0, None), ("102", 0, amount, None)])
                wage = rng.randint(18, 26) * 10_000
                self.entry(village, min(month + timedelta(days=19 + k), last), f"{month:%Y年%m月}保洁员劳务费",
                           workers[(month.month + k) % len(workers)],
                           [("53301", wage, 0, None), ("102", 0, wage, None)])
            if month.month in (6, 12) and rng.random() < 0.4:
                grant = rng.randint(20, 120) * 100_000
                self.entry(village, min(month + timedelta(days=21), last), "补助收入：农村公益事业建设", "区农业农村局",
                           [("102", grant, 0, None), ("521", 0, grant, None)])
            if month.month == 1 and month + timedelta(days=24) <= self.today:
                dividend = rng.randint(80, 150) * 1_000_000
                self.entry(village, month + timedelta(days=24), f"{month.year - 1}年度成员分红", "全体成员",
                           [("32201", dividend, 0, None), ("102", 0, dividend, None)])
            month = add_months(month, 1)

    # -- injected irregularities outside the background trades

    def inject_village(self, village: str) -> None:
        rng = self.rng
        for year in range(self.first_day.year, self.today.year + 1):
            earliest = max(self.first_day, date(year, 1, 1))
            latest = min(date(year, 12, 31), self.today - timedelta(days=120))
            if latest <= earliest:
                continue
            day = self.clear_of_elections(earliest + timedelta(days=rng.randint(0, (latest - earliest).days)), village)
            if day > latest:
                continue
            if self.chance(OFF_PLATFORM):
                asset = self.new_asset(village, "farmland", Decimal(rng.randint(30, 60)))
                contract = self.contract(
                    asset, self.ids.person_name(), self.ids.resident_id(),
                    unit_price_fen=self.market_price(village, "farmland", asset.area, day), term_months=60,
                    start_date=day + timedelta(days=5), signed_on=day, price_basis="per_mu_year", area=asset.area,
                    trade_type="contracting", origin_reason="老承包户续包")
                self.record(UNDISCLOSED, OFF_PLATFORM, "contract", contract.id, village, "direct, above standard")
            if self.chance(STATUS_WITHOUT_TRADE):
                asset = self.new_asset(village, rng.choice(("fish_pond", "shop")))
                self.status(asset, "leased", "出租给村民", day)
                self.record(UNDISCLOSED, STATUS_WITHOUT_TRADE, "asset", asset.id, village, "leased, no trade")
            if self.chance(INCOME_WITHOUT_CONTRACT) and day + timedelta(days=60) <= self.today:
                payer = self.ids.person_name()
                for k in range(3):
                    amount = rng.randint(24, 40) * 10_000
                    self.entry(village, day + timedelta(days=30 * k), f"收{payer}鱼塘租金", payer,
                               [("101", amount, 0, None), ("50101", 0, amount, None)])
                self.record(UNDISCLOSED, INCOME_WITHOUT_CONTRACT, "counterparty", party_subject(village, payer),
                            village, "rent without a contract")
        for election in self.elections[village]:
            if election < self.first_day + timedelta(days=200):
                continue
            self.inject_election(village, election)

    def inject_election(self, village: str, election: date) -> None:
        rng = self.rng
        if self.chance("ELE-DISPOSAL-BEFORE-ELECTION"):
            asset = self.new_asset(village, "farmland", Decimal(rng.randint(40, 60)))
            announce = election - timedelta(days=rng.randint(60, 150))
            listing, _, _ = self.auction(asset, announce, self.pick_bidders(village, 4), term_months=36,
                                         announcement_days=10)
            self.record(ELECTION, "ELE-DISPOSAL-BEFORE-ELECTION", "listing", listing["id"], village,
                        "leased in the months before the election")
        if self.chance("ELE-LEASE-BEYOND-TERM"):
            asset = self.new_asset(village, "fish_pond")
            announce = election - timedelta(days=rng.randint(215, 300))
            _, contract, _ = self.auction(asset, announce, self.pick_bidders(village, 4), term_months=240,
                                          announcement_days=10)
            assert contract is not None
            self.record(ELECTION, "ELE-LEASE-BEYOND-TERM", "contract", contract.id, village, "20-year lease")
        if self.chance("ELE-HOSPITALITY-SPIKE"):
            for k in range(6):
                amount = rng.randint(10, 16) * 100_000
                self.entry(village, election - timedelta(days=170 - 28 * k), "接待来访及慰问", "某酒家",
                           [("53101", amount, 0, None), ("102", 0, amount, None)])
            self.record(ELECTION, "ELE-HOSPITALITY-SPIKE", "village", f"{village}:{election.isoformat()}", village,
                        "hospitality several times the usual")
        if self.chance("ELE-MANY-SMALL-PAYOUTS"):
            for k in range(32):
                amount = rng.randint(3, 15) * 10_000
                self.entry(village, election - timedelta(days=60 - k), "慰问金", self.ids.person_name(),
                           [("53301", amount, 0, None), ("101", 0, amount, None)])
            self.record(ELECTION, "ELE-MANY-SMALL-PAYOUTS", "village", f"{village}:{election.isoformat()}", village,
                        "32 small payouts")
        if self.chance("ELE-RELATED-TO-CANDIDATE"):
            candidate = self.losers[village].get(election)
            if candidate is not None and candidate.id_number and candidate.id_number not in self.used_people:
                self.used_people.add(candidate.id_number)
                bidder = self.new_bidder(village, person=candidate)
                asset = self.new_asset(village, "farmland", Decimal(rng.randint(8, 12)))
                announce = election - timedelta(days=rng.randint(50, 150))
                listing, _, _ = self.auction(asset, announce, [bidder, *self.pick_bidders(village, 3)],
                                             term_months=36, announcement_days=10, winner=0)
                self.record(ELECTION, "ELE-RELATED-TO-CANDIDATE", "listing", listing["id"], village,
                            "a candidate won a lot")

    # -- the chain and the writes

    def post_journal(self, village: str) -> None:
        """Hash the village's queued entries onto its chain by date (as BooksService does) and queue the rows."""
        collective_id = self.collective[village]
        accounts = self.accounts[collective_id]
        length, head = self.chain[village]
        entry_table, line_table = JournalEntry.__table__, JournalLine.__table__
        for item in sorted(self.journal[village], key=lambda e: (e.day, e.order)):
            length += 1
            posted_at = self.at(item.day, 16) + timedelta(seconds=item.order % 3600)
            total = sum(debit for _, debit, _, _ in item.lines)
            canonical = chain.CanonicalEntry(
                village_code=village, seq=length, entry_date=item.day, memo=item.memo,
                counterparty=item.counterparty, source=item.source, reverses_seq=None, posted_at=posted_at,
                total_fen=total, lines=tuple(chain.CanonicalLine(no, code, d, c, m)
                                             for no, (code, d, c, m) in enumerate(item.lines, start=1)),
            )
            previous, head = head, chain.entry_hash(head, chain.canonical_bytes(canonical))
            row = self.add(entry_table, collective_id=collective_id, seq=length, entry_date=item.day, memo=item.memo,
                           counterparty=item.counterparty, source=item.source, client_key=item.key,
                           request_hash=None, reverses_entry_id=None, total_fen=total, posted_by_id=self.clerk_id,
                           posted_at=posted_at, prev_hash=previous, hash=head)
            for no, (code, debit, credit, memo) in enumerate(item.lines, start=1):
                self.add(line_table, entry_id=row["id"], line_no=no, account_id=accounts[code], debit_fen=debit,
                         credit_fen=credit, memo=memo)
            if item.receipt_for is not None:
                contract_id, amount = item.receipt_for
                self.add(ContractReceipt.__table__, contract_id=contract_id, entry_id=row["id"], amount_fen=amount,
                         received_on=item.day, created_at=posted_at)
            if item.link is not None:
                target, column = item.link
                target[column] = row["id"]
        self.chain[village] = (length, head)
        self.journal[village] = []

    def chunks(self) -> list[list[str]]:
        """The villages in groups of whole townships, about CHUNK_VILLAGES at a time (memory stays bounded)."""
        groups: list[list[str]] = [[]]
        for village in sorted(self.villages, key=lambda code: (self.township_of[code], code)):
            if len(groups[-1]) >= CHUNK_VILLAGES and self.township_of[groups[-1][-1]] != self.township_of[village]:
                groups.append([])
            groups[-1].append(village)
        return [group for group in groups if group]

    def generate_chunk(self, villages: list[str]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
        """Generate a group of townships' history; returns its queued rows and listing winners, leaving fresh
        queues. Runs in a worker thread while the previous group is written, so the database ingests one group
        as Python generates the next; it never touches the session."""
        generating = clock.perf_counter()
        self.registration_rows = {}
        for village in villages:
            self.governance(village)
        per_township = Counter(self.township_of[v] for v in villages)
        for township, count in sorted(per_township.items()):
            anchor = next(v for v in villages if self.township_of[v] == township)
            size = max(12, count * BIDDERS_PER_VILLAGE * self.scale)
            self.pool[township] = [self.new_bidder(anchor) for _ in range(size)]
        for village in villages:
            self.village_history(village)
            self.post_journal(village)
            self.progress("villages", 1, None)
        rows, winners = self.rows, self.winners
        self.rows = {table.name: [] for table in TABLES}
        self.winners = []
        self.report.generate_seconds += clock.perf_counter() - generating
        return rows, winners

    async def write(self, rows: dict[str, list[dict[str, Any]]], winners: list[dict[str, Any]]) -> None:
        """Write a group's rows, table by table in dependency order, then its listings' winners."""
        self.progress("rows", 0, sum(len(table_rows) for table_rows in rows.values()))
        for table in TABLES:
            table_rows = rows[table.name]
            if not table_rows:
                continue
            started = clock.perf_counter()
            await bulk_insert(self.session, table, table_rows, self.is_postgres,
                              lambda n: self.progress("rows", n, None))
            self.report.seconds[table.name] += clock.perf_counter() - started
            self.report.rows[table.name] += len(table_rows)
        if winners:
            started = clock.perf_counter()
            await self.set_winners(winners)
            self.report.seconds["listing winners"] += clock.perf_counter() - started

    async def set_winners(self, winners: list[dict[str, Any]]) -> None:
        """Point sold listings at their winning registrations (written after the listings they refer to)."""
        listing = Listing.__table__
        if not self.is_postgres:
            await self.session.execute(
                update(listing).where(listing.c.id == bindparam("lid"))
                .values(winner_registration_id=bindparam("rid"), leading_registration_id=bindparam("rid")),
                winners,
            )
            return
        # one set-based UPDATE from a COPY-filled temporary table instead of one UPDATE per listing
        await self.session.execute(text(
            "CREATE TEMPORARY TABLE IF NOT EXISTS seed_winner (lid bigint PRIMARY KEY, rid bigint) ON COMMIT DROP"
        ))
        await self.session.execute(text("TRUNCATE seed_winner"))
        connection = await (await self.session.connection()).get_raw_connection()
        await connection.driver_connection.copy_records_to_table(
            "seed_winner", records=[(row["lid"], row["rid"]) for row in winners], columns=["lid", "rid"]
        )
        await self.session.execute(text(
            "UPDATE listing SET winner_registration_id = w.rid, leading_registration_id = w.rid "
            "FROM seed_winner w WHERE listing.id = w.lid"
        ))

    async def defer_balance_check(self) -> None:
        """On PostgreSQL every inserted journal row queues a constraint trigger that re-checks its entry's balance
        at commit: millions of single-row checks for a city's books. The load turns those two triggers off inside
        its own transaction and checks the same rule once, set-based, before committing (``check_balanced``);
        a rollback turns them back on with everything else."""
        for table in ("journal_entry", "journal_line"):
            await self.session.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER {table}_balanced"))

    async def check_balanced(self) -> None:
        """Every entry of the load has at least two lines whose debits equal its credits and its total."""
        first = self.first_entry_id
        broken = await self.session.scalar(text(
            "SELECT e.id FROM journal_entry e LEFT JOIN ("
            " SELECT entry_id, count(*) AS n, sum(debit_fen) AS debits, sum(credit_fen) AS credits"
            " FROM journal_line WHERE entry_id > :first GROUP BY entry_id) l ON l.entry_id = e.id"
            " WHERE e.id > :first AND (l.n IS NULL OR l.n < 2 OR l.debits <> l.credits OR l.debits <> e.total_fen)"
            " LIMIT 1"
        ), {"first": first})
        if broken is not None:
            raise SeedError(f"生成的分录 {broken} 借贷不平 / generated entry {broken} does not balance")

    async def skip_row_triggers(self) -> bool:
        """As a superuser, load the way pg_restore --disable-triggers does: no per-row foreign-key or journal
        triggers during COPY (``session_replication_role = replica`` for this transaction only); the same rules
        are then checked once, set-based (``check_references``, ``check_balanced``). False for other roles."""
        superuser = await self.session.scalar(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
        if superuser:
            await self.session.execute(text("SET LOCAL session_replication_role = replica"))
        return bool(superuser)

    async def check_references(self) -> None:
        """Every foreign key of every loaded row points at a row that exists."""
        for table in TABLES:
            for key in table.foreign_keys:
                child, parent = key.parent, key.column
                dangling = await self.session.scalar(text(
                    f"SELECT c.id FROM {table.name} c WHERE c.id > :first AND c.{child.name} IS NOT NULL "
                    f"AND NOT EXISTS (SELECT 1 FROM {parent.table.name} p WHERE p.{parent.name} = c.{child.name}) "
                    "LIMIT 1"
                ), {"first": self.first_id[table.name]})
                if dangling is not None:
                    raise SeedError(f"{table.name}.{child.name} of row {dangling} points nowhere / 外键无对应行")

    async def run(self) -> SeedReport:
        started = clock.perf_counter()
        await self.prepare()
        stamp = self.at(self.first_day - timedelta(days=90))
        clerk = self.add(User.__table__, username=SEED_CLERK.format(tag=self.tag.lower()), password_hash="!",
                         display_name="演示历史生成", role="admin", is_active=False, session_epoch=0,
                         created_at=stamp, updated_at=stamp)
        self.clerk_id = clerk["id"]
        self.elections: dict[str, list[date]] = {}
        self.sitting: dict[str, list[Any]] = {}
        self.losers: dict[str, dict[date, Person]] = {}
        self.journal: dict[str, list[Entry]] = {}
        self.last_winners: dict[str, list[int]] = {}
        self.asset_rows: dict[int, dict[str, Any]] = {}
        self.registration_rows: dict[int, dict[str, Any]] = {}
        self.pool: dict[str, list[PoolBidder]] = {}
        self.progress("villages", 0, len(self.villages))
        self.first_entry_id = self.next_id[JournalEntry.__table__.name]
        self.without_triggers = self.is_postgres and await self.skip_row_triggers()
        if self.is_postgres and not self.without_triggers:
            await self.defer_balance_check()
        written = None
        for villages in self.chunks():
            generation = asyncio.create_task(asyncio.to_thread(self.generate_chunk, villages))
            if written is not None:
                await self.write(*written)
            written = await generation
        if written is not None:
            await self.write(*written)
        collective = Collective.__table__
        await self.session.execute(
            update(collective).where(collective.c.id == bindparam("cid"))
            .values(chain_length=bindparam("length"), chain_head=bindparam("head")),
            [{"cid": self.collective[v], "length": self.chain[v][0], "head": self.chain[v][1]} for v in self.villages],
        )
        if self.is_postgres:
            checking = clock.perf_counter()
            await self.check_balanced()
            if self.without_triggers:
                await self.check_references()
            else:
                for table in ("journal_entry", "journal_line"):
                    await self.session.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER {table}_balanced"))
            self.report.seconds["checks"] += clock.perf_counter() - checking
            # fresh planner statistics, so the first warnings scan plans for a city's data, not an empty one
            for table in (*TABLES, Collective.__table__):
                await self.session.execute(text(f"ANALYZE {table.name}"))
            for table in TABLES:
                await self.session.execute(text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                    f"(SELECT COALESCE(MAX(id), 1) FROM {table.name}))"
                ))
        self.report.total_seconds = clock.perf_counter() - started
        return self.report


async def bulk_insert(
    session: AsyncSession, table: Table, rows: list[dict[str, Any]], is_postgres: bool,
    advance: Callable[[int], None], batch: int = 20_000,
) -> None:
    """Insert rows with the database's fast path: COPY on PostgreSQL, executemany on SQLite."""
    columns = [column.name for column in table.columns]
    if is_postgres:
        import asyncpg

        json_columns = {column.name for column in table.columns if isinstance(column.type, JSON)}
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        for start in range(0, len(rows), batch):
            records = [
                tuple(json.dumps(row.get(name)) if name in json_columns else row.get(name) for name in columns)
                for row in rows[start:start + batch]
            ]
            try:
                await driver.copy_records_to_table(table.name, records=records, columns=columns)
            except asyncpg.PostgresError as exc:
                raise SeedError(f"写入 {table.name} 失败 / writing {table.name} failed: {exc}") from exc
            advance(len(records))
        return
    statement = insert(table)
    for start in range(0, len(rows), batch):
        chunk = [{name: row.get(name) for name in columns} for row in rows[start:start + batch]]
        await session.execute(statement, chunk)
        advance(len(chunk))


async def seed_history(session: AsyncSession, options: SeedOptions, progress: Progress | None = None) -> SeedReport:
    """Write the history of ``options`` into the session's database (the caller commits)."""
    validate(options)
    return await CitySeed(session, options, progress).run()
