"""Scenario generator: years of clean village activity with known irregularities injected at known places.

``generate(session, seed)`` picks villages of two or three townships and writes, deterministically for the
seed, what a rule must stay quiet about (assets leased through competitive auctions to independent bidders,
contracts on the result's terms paid on time, steady monthly books, cadres with their relatives, elections
with candidates who never trade) and then at least three cases of every rule of the catalogue, each recorded
in the ground truth as (family, rule id, subject type, subject id). The warning tests measure precision and
recall of the engine against that truth; ``sanzi warnings scenarios --seed S`` writes the same into a real
database.

Rows are written through the ORM and Core inserts in bulk (fast); journal entries are hashed onto each
village's chain exactly as ``BooksService`` does, so every chain still verifies.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy import bindparam, func, insert, select, update
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
)
from sanzi.ledger.schemas.contracts import PaymentFrequency
from sanzi.ledger.services.contracts import add_months, build_schedule, contract_end
from sanzi.ledger.models import PriceBasis
from sanzi.platform.models import Bidder, Cadre, CadreRelative, Candidate, Collective, Election, User, Village

ZONE = ZoneInfo("Asia/Shanghai")
#: Guangdong's village re-elections (换届选举): 2014, 2017, 2021 and the round of 2026, all in spring
ELECTION_YEARS = (2014, 2017, 2021, 2026)
#: no trading in the months before an election: the clean background keeps out of every election-period window
QUIET_BEFORE_ELECTION = timedelta(days=240)
QUIET_AFTER_ELECTION = timedelta(days=45)
#: fewer villages leave the statistical rules without comparables; fewer years miss the 2017 and 2021 rounds
MIN_VILLAGES, MIN_YEARS = 12, 10


class ScenarioError(Exception):
    """The scenario cannot be written into this database (no villages, or this seed is already there)."""


# ---- the rule ids of the catalogue (as the rule modules define them) ------------------------------------

BID, UNDISCLOSED, ELECTION = "bid", "undisclosed", "election"
OFF_PLATFORM = "UND-OFF-PLATFORM"
STATUS_WITHOUT_TRADE = "UND-STATUS-WITHOUT-TRADE"
INCOME_WITHOUT_CONTRACT = "UND-INCOME-WITHOUT-CONTRACT"
SPLIT_CONTRACTS = "UND-SPLIT-CONTRACTS"
RENEWAL_WITHOUT_REBID = "UND-RENEWAL-WITHOUT-REBID"
TERMS_WORSE = "UND-TERMS-WORSE-THAN-RESULT"
RESULT_NOT_PUBLISHED = "UND-RESULT-NOT-PUBLISHED"
RENT_ARREARS = "UND-RENT-ARREARS"


def group_subject_id(bidder_ids: list[int]) -> str:
    """A group of bidders' subject id as BID-ROTATION writes it: sorted ids joined, hashed when too long."""
    joined = "-".join(str(i) for i in sorted(bidder_ids))
    return joined if len(joined) <= 40 else "g" + hashlib.sha1(joined.encode()).hexdigest()


def party_subject(village_code: str, party: str) -> str:
    """A counterparty's subject id as the undisclosed rules write it (village code and name or ID number)."""
    subject = f"{village_code}:{party}"
    if len(subject) <= 40:
        return subject
    return f"{village_code}:#{hashlib.sha256(party.encode()).hexdigest()[:26]}"


@dataclass(frozen=True)
class Case:
    """One injected irregularity: the alert a rule should raise, on which subject."""

    family: str
    rule_id: str
    subject_type: str
    subject_id: str
    village_code: str
    note: str


@dataclass
class Scenario:
    seed: int
    today: date
    villages: list[str]
    townships: list[str]
    counts: Counter[str] = field(default_factory=Counter)
    truth: list[Case] = field(default_factory=list)

    def summary(self) -> str:
        """The injected truth as an operator reads it: totals, then cases per family and rule."""
        lines = [
            f"scenario seed {self.seed} as of {self.today.isoformat()}: {len(self.villages)} villages in "
            f"{len(self.townships)} townships ({', '.join(self.townships)})",
            "background: " + ", ".join(f"{n} {name}" for name, n in sorted(self.counts.items())),
            f"injected truth: {len(self.truth)} cases",
        ]
        per_rule = Counter((case.family, case.rule_id, case.subject_type) for case in self.truth)
        for (family, rule_id, subject_type), n in sorted(per_rule.items()):
            lines.append(f"  {family:<12} {rule_id:<36} {subject_type:<12} {n}")
        return "\n".join(lines)


# ---- deterministic identities ----------------------------------------------------------------------------

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡蒋余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱覃武戴"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红辉建国志文斌宇浩凯鹏飞俊峰海波宏亮晨欣怡嘉琪子涵梓豪家乐锦荣添福耀祖炳坤润发永康汉标"
_FIRMS = "粤穗珠荔禾云岭海湾华兴盛丰源泰隆达安信诚和顺鸿运"
_TRADES = ("农业发展", "水产养殖", "物流", "商贸", "实业", "林业", "种植专业合作社", "建材")
_ROADS = ("人民路", "解放路", "中山路", "工业大道", "新村路", "环市路", "沿江路", "广从路", "荔新路", "北兴路")


class Identities:
    """Unique names, ID numbers, phones, addresses, accounts, IPs and devices for everyone in the scenario."""

    def __init__(self, seed: int, rng: random.Random) -> None:
        self.rng = rng
        self.seed = seed
        self.n = 0
        self.names: set[str] = set()

    def _next(self) -> int:
        self.n += 1
        return self.n

    def person_name(self) -> str:
        while True:
            given = "".join(self.rng.choice(_GIVEN) for _ in range(self.rng.choice((1, 2, 2))))
            name = self.rng.choice(_SURNAMES) + given
            if name not in self.names:
                self.names.add(name)
                return name

    def company_name(self) -> str:
        while True:
            name = f"广州{self.rng.choice(_FIRMS)}{self.rng.choice(_FIRMS)}{self.rng.choice(_TRADES)}有限公司"
            if name not in self.names:
                self.names.add(name)
                return name

    def resident_id(self) -> str:
        n = self._next()
        born = date(1955, 1, 1) + timedelta(days=(self.seed * 7919 + n * 37) % 16000)
        body = f"4401{(self.seed % 90) + 10:02d}{born:%Y%m%d}{n % 1000:03d}"
        return body + ric.calc_check_digit(body + "0")

    def credit_code(self) -> str:
        n = self._next()
        body = f"9144010{self.seed % 100:02d}{n:08d}"
        return body + uscc.calc_check_digit(body)

    def phone(self) -> str:
        return f"13{(self.seed % 10)}{self._next() * 7919 % 10**8:08d}"

    def address(self, district: str) -> str:
        return f"广州市{district}{self.rng.choice(_ROADS)}{self._next()}号"

    def bank_account(self) -> str:
        return f"6222{self.seed % 1000:03d}{self._next():012d}"

    def ip(self) -> str:
        n = self._next()
        return f"{113 + n % 7}.{(n // 7) % 250 + 1}.{(n * 13) % 250 + 1}.{(n * 31) % 250 + 1}"

    def device(self) -> str:
        return hashlib.sha1(f"device-{self.seed}-{self._next()}".encode()).hexdigest()


# ---- the generator ---------------------------------------------------------------------------------------

# kind: (unit, area range, price basis, median fen per unit per year by township rank, term months choices)
ASSET_KINDS: dict[str, tuple[str, tuple[int, int], str, int, tuple[int, ...]]] = {
    "farmland": ("mu", (20, 90), "per_mu_year", 120_000, (36, 48, 60)),
    "fish_pond": ("mu", (10, 45), "per_mu_year", 210_000, (36, 48, 60)),
    "forest": ("mu", (60, 220), "per_mu_year", 30_000, (60,)),
    "construction_land": ("mu", (3, 15), "per_mu_year", 2_400_000, (60,)),
    "shop": ("m2", (40, 220), "per_year", 0, (36,)),
    "building": ("m2", (600, 3000), "per_year", 0, (60,)),
}
#: yuan per m² per year for buildings and shops (the listing is priced per year)
PER_SQUARE_METRE_FEN = {"shop": 48_000, "building": 15_000}
VILLAGE_ASSETS = (
    "farmland", "farmland", "fish_pond", "fish_pond", "forest", "construction_land", "shop", "building"
)
TRADE_TYPE = {"farmland": "contracting", "fish_pond": "contracting", "forest": "contracting"}


@dataclass
class Person:
    name: str
    id_number: str
    phone: str


@dataclass
class PoolBidder:
    id: int
    name: str
    ip: str
    device: str
    phone: str
    address: str
    account: str
    id_number: str


@dataclass
class AssetRow:
    id: int
    village: str
    kind: str
    area: Decimal
    unit: str
    code: str
    name: str


@dataclass(frozen=True)
class Made:
    """The id of a row the generator wrote."""

    id: int


@dataclass
class ContractRow:
    id: int
    number: str
    counterparty_name: str
    counterparty_id_number: str | None
    unit_price_fen: int
    signed_on: date
    end_date: date
    installments: list[Any]
    #: the applied deposit not yet set against an installment
    credit: int = 0


def plan_bids(
    rng: random.Random,
    n: int,
    start: int,
    increment: int,
    final: int,
    silent: tuple[int, ...] = (),
    winner: int | None = None,
) -> list[tuple[int, int]]:
    """Competitive ascending bidding as (bidder index, amount): everyone bids once, then the bidders outbid the
    leader by one to three increments until the price reaches ``final``; the last bidder (``winner`` if given)
    wins. ``silent`` bidders never bid. Shared by the scenario generator and the city-scale seed."""
    active = [i for i in range(n) if i not in silent]
    if len(active) == 1:
        return [(active[0], start)]
    plan = [(index, start + k * increment) for k, index in enumerate(active)]
    price = plan[-1][1]
    while True:
        leader = plan[-1][0]
        if price >= final and len(plan) >= len(active) + 2 and winner in (None, leader):
            return plan
        if winner is not None and price >= final:
            index = winner
        else:
            index = rng.choice([i for i in active if i != leader])
        price += increment * rng.randint(1, 3)
        plan.append((index, price))


class Generator:
    """Writes one scenario: background first, then the injected cases, then the books in bulk."""

    def __init__(self, session: AsyncSession, seed: int, villages: int, years: int, today: date) -> None:
        self.session = session
        self.seed = seed
        self.rng = random.Random(seed)
        self.ids = Identities(seed, random.Random(seed * 31 + 1))
        self.n_villages = villages
        self.years = years
        self.today = today
        self.first_day = date(today.year - years + 1, 1, 1)
        self.scenario = Scenario(seed, today, [], [])
        self.tag = f"SC{seed}"
        self.serial = 0
        # per village: collective id, account ids by code, district name, elections
        self.collective: dict[str, int] = {}
        self.accounts: dict[int, dict[str, int]] = {}
        self.township_of: dict[str, str] = {}
        self.district_name: dict[str, str] = {}
        self.elections: dict[str, list[date]] = {}
        self.pool: dict[str, list[PoolBidder]] = {}  # per township
        self.journal: dict[str, list[dict[str, Any]]] = {}  # per village: pending entries
        self.last_winners: dict[str, list[int]] = {}  # per village, newest last
        self.system_user_id: int | None = None
        self.asset_status: dict[int, tuple[datetime, str]] = {}
        self.sold_on: dict[str, list[date]] = {}
        self.buffer: dict[Any, list[dict[str, Any]]] = {}
        #: (village, registration, client key of its deposit entry, of the entry that settled it)
        self.deposit_links: list[tuple[str, int, str, str | None]] = []
        self.entry_ids: dict[tuple[str, str], int] = {}  # (village, client key) -> entry id

    # -- small helpers

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def at(self, day: date, hour: int = 10, minute: int = 0) -> datetime:
        """A local time of day as aware UTC."""
        return datetime.combine(day, time(hour, minute), ZONE).astimezone(UTC)

    def quiet(self, day: date, village: str) -> bool:
        """True if ``day`` lies in an election-period window of the village (the background avoids it)."""
        return any(
            when - QUIET_BEFORE_ELECTION <= day <= when + QUIET_AFTER_ELECTION
            for when in self.elections[village]
        )

    def clear_day(self, day: date, village: str) -> date:
        """The first day from ``day`` on outside the village's election windows."""
        while self.quiet(day, village):
            day += timedelta(days=7)
        return day

    def record(
        self, family: str, rule_id: str, subject_type: str, subject_id: int | str, village: str, note: str
    ) -> None:
        self.scenario.truth.append(Case(family, rule_id, subject_type, str(subject_id), village, note))

    # -- villages, collectives, accounts

    async def pick_villages(self) -> None:
        from sanzi.platform.models import District, Township

        rows = (
            await self.session.execute(
                select(Village.code, Village.township_code, District.name)
                .join(District, District.code == Village.district_code)
                .order_by(Village.code)
            )
        ).all()
        if not rows:
            raise ScenarioError("数据库中没有村：请先导入区划（sanzi geography import）/ no villages: import them first")
        by_township: dict[str, list[tuple[str, str]]] = {}
        for code, township, district in rows:
            by_township.setdefault(township, []).append((code, district))
        # at least six villages a township: the statistical rules need eight comparables (a village's own
        # earlier windows and its peers')
        n_townships = 2 if self.n_villages < 18 else 3
        per = -(-self.n_villages // n_townships)
        candidates = sorted(t for t, vs in by_township.items() if len(vs) >= per)
        if len(candidates) < n_townships:
            raise ScenarioError(f"没有 {n_townships} 个各有 {per} 个村的镇街 / too few townships with {per} villages")
        townships = self.rng.sample(candidates, n_townships)
        chosen: list[str] = []
        for township in townships:
            picked = self.rng.sample(by_township[township], min(per, self.n_villages - len(chosen)))
            for code, district in sorted(picked):
                chosen.append(code)
                self.township_of[code] = township
                self.district_name[code] = district
        self.scenario.villages = chosen
        self.scenario.townships = townships
        names = await self.session.execute(
            select(Township.code, Township.name).where(Township.code.in_(townships))
        )
        self.township_names = dict(names.all())
        collectives = await self.session.execute(
            select(Collective.id, Collective.village_code).where(Collective.village_code.in_(chosen))
        )
        self.collective = {code: cid for cid, code in collectives}
        missing = set(chosen) - set(self.collective)
        if missing:
            raise ScenarioError(f"村 {sorted(missing)} 没有集体经济组织 / villages without a collective")
        for cid, code, account_id in await self.session.execute(
            select(Account.collective_id, Account.code, Account.id).where(
                Account.collective_id.in_(self.collective.values())
            )
        ):
            self.accounts.setdefault(cid, {})[code] = account_id
        mine = select(func.count()).select_from(Listing).where(Listing.number.like(f"{self.tag}-%"))
        if await self.session.scalar(mine):
            raise ScenarioError(f"种子 {self.seed} 的场景已经写入 / the scenario of seed {self.seed} is already here")
        for code in chosen:
            self.journal[code] = []
            self.last_winners[code] = []
            # elections in March of each round's year, a different day per village
            self.elections[code] = [
                date(year, 3, self.rng.randint(5, 28))
                for year in ELECTION_YEARS
                if date(year, 3, 1) >= self.first_day and date(year, 3, 28) <= self.today
            ]

    # -- people: cadres, relatives, candidates, bidders

    async def system_user(self) -> int:
        user = User(
            username=f"{self.tag.lower()}-clerk",
            password_hash="!",  # cannot log in: the scenario's clerk only signs the rows it writes
            display_name="场景生成",
            role="admin",
        )
        self.session.add(user)
        await self.session.flush()
        self.system_user_id = user.id
        return user.id

    def person(self) -> Person:
        return Person(self.ids.person_name(), self.ids.resident_id(), self.ids.phone())

    async def cadres_and_elections(self) -> None:
        """Each village's committee and Party branch for every term, with declared relatives; the elections
        with their candidates (the sitting cadres and a few challengers), none of whom ever bids."""
        self.cadre_people: dict[str, list[Person]] = {}
        self.relative_people: dict[str, list[Person]] = {}
        self.candidate_people: dict[tuple[str, date], list[Person]] = {}
        cadres, relatives = [], []
        positions = [("party_branch", "书记"), ("party_branch", "委员"), ("committee", "主任"),
                     ("committee", "副主任"), ("committee", "委员"), ("committee", "出纳")]
        for village in self.scenario.villages:
            elections = self.elections[village]
            starts = [self.first_day - timedelta(days=400), *elections]
            team = [self.person() for _ in range(6)]
            everyone: dict[str, Person] = {}
            for index, start in enumerate(starts):
                end = starts[index + 1] - timedelta(days=1) if index + 1 < len(starts) else None
                if index:
                    # the sitting team and three challengers stand; one or two challengers win a seat,
                    # the third always loses (so a losing candidate is never a cadre)
                    candidates = [*team, self.person(), self.person(), self.person()]
                    for k, slot in enumerate(self.rng.sample(range(6), self.rng.choice((1, 2)))):
                        team[slot] = candidates[6 + k]
                    self.candidate_people[(village, start)] = candidates
                for person, (body, position) in zip(team, positions, strict=True):
                    cadres.append((village, person, body, position, start, end))
                    everyone[person.id_number] = person
            self.cadre_people[village] = list(everyone.values())
        rows = [
            Cadre(village_code=v, name=p.name, id_number=p.id_number, phone=p.phone, body=b, position=pos,
                  term_start=s, term_end=e)
            for v, p, b, pos, s, e in cadres
        ]
        self.session.add_all(rows)
        await self.session.flush()
        declared: dict[str, list[Person]] = {}
        self.declared = declared
        self.cadre_terms = {v: [(p, start, end) for code, p, _, _, start, end in cadres if code == v]
                            for v in self.scenario.villages}
        for row in rows:
            if row.id_number not in declared:
                declared[row.id_number] = [self.person() for _ in range(self.rng.choice((1, 2)))]
            for relative in declared[row.id_number]:
                relatives.append(CadreRelative(cadre_id=row.id, name=relative.name,
                                               id_number=relative.id_number,
                                               relation=self.rng.choice(("配偶", "子女", "兄弟姐妹"))))
        for village in self.scenario.villages:
            ids = {p.id_number for p in self.cadre_people[village]}
            self.relative_people[village] = [r for key, rs in declared.items() if key in ids for r in rs]
        self.session.add_all(relatives)
        self.election_ids: dict[tuple[str, date], int] = {}
        for village in self.scenario.villages:
            for when in self.elections[village]:
                election = Election(village_code=village, election_date=when, note="村（社区）“两委”换届选举")
                self.session.add(election)
                await self.session.flush()
                self.election_ids[(village, when)] = election.id
                positions = ("主任", "副主任", "委员")
                self.session.add_all(
                    Candidate(election_id=election.id, name=p.name, id_number=p.id_number,
                              position=positions[min(i, 2)])
                    for i, p in enumerate(self.candidate_people[(village, when)])
                )
        self.scenario.counts["cadres"] = len(rows)
        self.scenario.counts["elections"] = len(self.election_ids)
        await self.session.flush()

    async def new_bidder(self, township: str, *, company: bool | None = None, **overrides: Any) -> PoolBidder:
        """A bidder with its own user account and identity traits (each one distinct unless overridden)."""
        village = next(v for v in self.scenario.villages if self.township_of[v] == township)
        company = self.rng.random() < 0.35 if company is None else company
        name = overrides.pop("name", None) or (self.ids.company_name() if company else self.ids.person_name())
        number = self.next_serial()
        user = User(
            username=f"{self.tag.lower()}-bidder-{number}", password_hash="!", display_name=name,
            role="bidder",
        )
        self.session.add(user)
        await self.session.flush()
        traits = {
            "phone": self.ids.phone(),
            "address": self.ids.address(self.district_name[village]),
            "bank_account": self.ids.bank_account(),
            "ip": self.ids.ip(),
            "device": self.ids.device(),
            "id_number": self.ids.credit_code() if company else self.ids.resident_id(),
        }
        traits.update(overrides)
        bidder = Bidder(
            user_id=user.id,
            kind="company" if company else "person",
            name=name,
            id_number=traits["id_number"],
            legal_representative=self.ids.person_name() if company else None,
            phone=traits["phone"],
            address=traits["address"],
            bank_name="广州农村商业银行",
            bank_account=traits["bank_account"],
        )
        self.session.add(bidder)
        await self.session.flush()
        return PoolBidder(bidder.id, name, traits["ip"], traits["device"], traits["phone"], traits["address"],
                          traits["bank_account"], traits["id_number"])

    async def bidder_pools(self) -> None:
        for township in self.scenario.townships:
            self.pool[township] = [await self.new_bidder(township) for _ in range(70)]

    # -- assets

    async def new_asset(
        self, village: str, kind: str, area: Decimal | None = None, label: str = ""
    ) -> AssetRow:
        unit, (low, high), *_ = ASSET_KINDS.get(kind, ("item", (1, 3), "", 0, ()))
        area = area if area is not None else Decimal(self.rng.randint(low * 10, high * 10)) / 10
        number = self.next_serial()
        code = f"{self.tag}-{number:05d}"
        names = {"farmland": "耕地", "fish_pond": "鱼塘", "forest": "林地", "construction_land": "集体建设用地",
                 "shop": "商铺", "building": "厂房", "equipment": "设备", "other": "其他资产"}
        name = f"{names[kind]}{label or number}"
        asset_id = await self.insert(
            Asset, collective_id=self.collective[village], village_code=village, code=code, name=name,
            kind=kind,
            area=area, area_unit=unit, location=f"{names[kind]}片区第{number}号",
            book_value_fen=self.rng.randint(50, 500) * 100_000, status="idle",
        )
        self.scenario.counts["assets"] += 1
        return AssetRow(asset_id, village, kind, area, unit, code, name)

    def price_band(self, village: str, kind: str, area: Decimal) -> int:
        """A plausible price per the listing's basis: per mu per year for land, per year for buildings."""
        rank = self.scenario.townships.index(self.township_of[village])
        factor = (1.0, 1.18, 0.9)[rank]
        if kind in PER_SQUARE_METRE_FEN:
            median = PER_SQUARE_METRE_FEN[kind] * float(area)
        else:
            median = ASSET_KINDS[kind][3]
        return int(median * factor * self.rng.uniform(0.88, 1.12)) // 100 * 100

    def median_price(self, village: str, kind: str, area: Decimal) -> int:
        rank = self.scenario.townships.index(self.township_of[village])
        factor = (1.0, 1.18, 0.9)[rank]
        per_area = kind in PER_SQUARE_METRE_FEN
        base = PER_SQUARE_METRE_FEN[kind] * float(area) if per_area else ASSET_KINDS[kind][3]
        return int(base * factor) // 100 * 100

    async def status_change(self, asset_id: int, old: str | None, new: str, reason: str, day: date) -> None:
        moment = self.at(day, 9)
        if asset_id not in self.asset_status or self.asset_status[asset_id][0] <= moment:
            self.asset_status[asset_id] = (moment, new)
        self.later(AssetStatusChange, asset_id=asset_id, from_status=old, to_status=new, reason=reason,
                   changed_by_id=self.system_user_id, changed_at=moment)

    async def insert(self, model: Any, **values: Any) -> int:
        """Insert one row (Core, with the model's Python-side defaults) and return its id."""
        table = model.__table__
        return (await self.session.execute(insert(table).returning(table.c.id), [values])).scalar_one()

    async def insert_many(self, model: Any, rows: list[dict[str, Any]]) -> list[int]:
        table = model.__table__
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        result = await self.session.execute(statement, rows)
        return list(result.scalars())

    def later(self, model: Any, **values: Any) -> None:
        """Queue a row nothing refers to, for one bulk insert per table at the end."""
        self.buffer.setdefault(model, []).append(values)

    async def flush_buffers(self) -> None:
        for model, rows in self.buffer.items():
            for start in range(0, len(rows), 2000):
                await self.session.execute(insert(model.__table__), rows[start:start + 2000])
        self.buffer.clear()

    # -- auctions

    async def auction(
        self,
        asset: AssetRow,
        announce_on: date,
        bidders: list[PoolBidder],
        *,
        final: int | None = None,
        start: int | None = None,
        increment: int | None = None,
        plan: list[tuple[int, int]] | None = None,
        announcement_days: int | None = None,
        term_months: int | None = None,
        sold: bool = True,
        publish: bool = True,
        reserve: int | None = None,
        relisted_from: int | None = None,
        contract: bool = True,
        contract_overrides: dict[str, Any] | None = None,
        registration_overrides: dict[int, dict[str, Any]] | None = None,
        silent: tuple[int, ...] = (),
        winner: int | None = None,
        pay: bool = True,
    ) -> tuple[Made, ContractRow | None, list[Made]]:
        """A listing of one asset from announcement to result (and contract), with the bids as planned.

        ``plan`` lists (bidder index, amount); without it the bidders outbid each other from ``start`` up to
        about ``final`` and the last one wins. ``silent`` bidders qualify but never bid.
        """
        village = asset.village
        unit, _, basis, _, terms = ASSET_KINDS.get(asset.kind, ("item", (1, 1), "per_year", 0, (12,)))
        term = term_months or self.rng.choice(terms)
        final = final or self.price_band(village, asset.kind, asset.area)
        start = start or int(final / self.rng.uniform(1.3, 1.55)) // 100 * 100
        increment = increment or max(100, start * self.rng.choice((2, 3, 4)) // 100 // 100 * 100)
        days = announcement_days or self.rng.choice((10, 12, 15, 20))
        announced_at = self.at(announce_on, 9)
        registration_deadline = self.at(announce_on + timedelta(days=days), 17)
        bidding_starts = self.at(announce_on + timedelta(days=days + 2), 9)
        bidding_ends = bidding_starts + timedelta(hours=2)
        number = f"{self.tag}-{village[-6:]}-{self.next_serial():05d}"
        if plan is None:
            plan = self.bid_plan(len(bidders), start, increment, final, silent, winner)
        moments, moment = [], bidding_starts
        for _ in plan:
            moment += timedelta(seconds=self.rng.randint(20, 240))
            moments.append(moment)
        closed_at = max(bidding_ends, moment + timedelta(minutes=5))
        price = plan[-1][1] if plan else None
        sold = sold and price is not None and (reserve is None or price >= reserve)
        closed_on = closed_at.astimezone(ZONE).date()
        listing_id = await self.insert(
            Listing,
            collective_id=self.collective[village],
            village_code=village,
            number=number,
            title=f"{asset.name}{'发包' if asset.kind in TRADE_TYPE else '出租'}",
            status="sold" if sold else "failed",
            trade_type=TRADE_TYPE.get(asset.kind, "lease"),
            term_months=term,
            price_basis=basis,
            area=asset.area if basis == "per_mu_year" else None,
            starting_price_fen=start,
            reserve_price_fen=reserve,
            min_increment_fen=increment,
            max_increment_fen=increment * 10,
            deposit_fen=min(start, max(100, start // 10 // 100 * 100)),
            performance_bond_fen=0,
            announcement_days=days,
            registration_deadline=registration_deadline,
            bidding_starts_at=bidding_starts,
            bidding_ends_at=bidding_ends,
            extension_minutes=5,
            max_extensions=20,
            extensions_used=0,
            lock_version=len(plan),
            resolution_meeting_date=announce_on - timedelta(days=20),
            resolution_present=45,
            resolution_votes_for=41,
            resolution_votes_against=2,
            announced_at=announced_at,
            relisted_from_id=relisted_from,
            current_end_at=closed_at,
            current_price_fen=price,
            bid_count=len(plan),
            closed_at=closed_at,
            final_price_fen=price if sold else None,
            publicity_ends_at=closed_at + timedelta(days=5) if publish else None,
            sign_deadline=closed_on + timedelta(days=20) if sold else None,
        )
        self.later(ListingAsset, listing_id=listing_id, asset_id=asset.id)
        await self.status_change(asset.id, "idle", "listed", f"挂牌 {number}", announce_on)
        registrations = []
        for index, bidder in enumerate(bidders):
            traits = {"contact_phone": bidder.phone, "contact_address": bidder.address,
                      "applied_ip": bidder.ip, "applied_device": bidder.device,
                      "deposit_payer_name": bidder.name, "deposit_payer_account": bidder.account}
            traits.update((registration_overrides or {}).get(index, {}))
            won = sold and index == plan[-1][0]
            registrations.append(dict(
                listing_id=listing_id, bidder_id=bidder.id, status="qualified",
                bidder_number=f"{index + 1:03d}",
                deposit_state=("applied" if contract else "held") if won else "refunded",
                deposit_paid_at=self.at(announce_on + timedelta(days=min(days - 1, 2 + index)), 11),
                decided_by_id=self.system_user_id, decided_at=self.at(announce_on + timedelta(days=days), 16),
                **traits,
            ))
        registration_ids = await self.insert_many(Registration, registrations) if registrations else []
        deposit = min(start, max(100, start // 10 // 100 * 100))
        winner_index = plan[-1][0] if sold else None
        for index, (registration_id, row) in enumerate(zip(registration_ids, registrations, strict=True)):
            # deposits as the registration and closing services book them: in to 21101, back to the losers
            payer, paid_on = row["deposit_payer_name"], row["deposit_paid_at"].astimezone(ZONE).date()
            self.entry(village, paid_on, f"收到交易项目 {number} 竞买保证金", payer,
                       [("102", deposit, 0, None), ("21101", 0, deposit, None)],
                       source="deposit", key=f"deposit:{registration_id}")
            settled = None
            if index != winner_index:
                settled = f"deposit-refunded-{registration_id}"
                self.entry(village, closed_on, f"退还交易项目 {number} 竞买保证金", payer,
                           [("21101", deposit, 0, f"竞买号 {row['bidder_number']}"),
                            ("102", 0, deposit, f"项目 {number}")],
                           source="auction_deposit", key=settled)
            elif contract:
                settled = f"deposit-applied-{registration_id}"
            self.deposit_links.append((village, registration_id, f"deposit:{registration_id}", settled))
        for seq, ((index, amount), when) in enumerate(zip(plan, moments, strict=True), start=1):
            self.later(Bid, listing_id=listing_id, seq=seq, registration_id=registration_ids[index],
                       amount_fen=amount, client_key=f"{number}-{seq}", placed_at=when, extended_end_at=None,
                       ip_address=registrations[index]["applied_ip"],
                       device_fingerprint=registrations[index]["applied_device"])
        self.scenario.counts["bids"] += len(plan)
        self.scenario.counts["listings"] += 1
        steps = [("draft", "submitted", self.at(announce_on - timedelta(days=15), 9), None),
                 ("submitted", "approved", self.at(announce_on - timedelta(days=5), 9), None),
                 ("approved", "announced", announced_at, None),
                 ("announced", "bidding", bidding_starts, None),
                 ("bidding", "closed", closed_at, "竞价结束"),
                 ("closed", "sold" if sold else "failed", closed_at,
                  f"成交，成交价 {price / 100:.2f} 元" if sold and price else "流拍")]
        for old, new, at, note in steps:
            self.later(ListingEvent, listing_id=listing_id, from_status=old, to_status=new,
                       actor_id=self.system_user_id if note is None else None, at=at, note=note)
        listing = Made(listing_id)
        if not sold:
            await self.status_change(asset.id, "listed", "idle", f"交易项目 {number} 流拍", closed_on)
            return listing, None, [Made(i) for i in registration_ids]
        assert price is not None and winner_index is not None
        self.last_winners[village].append(bidders[winner_index].id)
        self.sold_on.setdefault(village, []).append(closed_on)
        made = None
        if contract:
            signed = closed_on + timedelta(days=self.rng.randint(7, 12))
            start_day = add_months(signed.replace(day=1), 1)
            terms = {"unit_price_fen": price, "term_months": term,
                     "area": asset.area if basis == "per_mu_year" else None,
                     "start_date": start_day, "signed_on": signed,
                     "counterparty_bidder_id": bidders[winner_index].id,
                     "listing_id": listing_id, "origin": "auction", "price_basis": basis,
                     "trade_type": TRADE_TYPE.get(asset.kind, "lease")}
            terms.update(contract_overrides or {})
            bidder = bidders[winner_index]
            winner_id = registration_ids[winner_index]
            payer = registrations[winner_index]["deposit_payer_name"]
            made = await self.contract(asset, bidder.name, bidder.id_number, pay=pay,
                                       deposit=(deposit, winner_id, payer), **terms)
        table = Listing.__table__
        await self.session.execute(
            update(table).where(table.c.id == listing_id).values(
                winner_registration_id=registration_ids[winner_index],
                leading_registration_id=registration_ids[winner_index],
                contract_id=made.id if made else None,
            )
        )
        return listing, made, [Made(i) for i in registration_ids]

    def bid_plan(
        self,
        n: int,
        start: int,
        increment: int,
        final: int,
        silent: tuple[int, ...] = (),
        winner: int | None = None,
    ) -> list[tuple[int, int]]:
        return plan_bids(self.rng, n, start, increment, final, silent, winner)

    # -- contracts and money

    async def contract(
        self,
        asset: AssetRow,
        counterparty: str,
        id_number: str | None,
        *,
        unit_price_fen: int,
        term_months: int,
        start_date: date,
        signed_on: date,
        price_basis: str,
        trade_type: str,
        origin: str = "direct",
        area: Decimal | None = None,
        listing_id: int | None = None,
        counterparty_bidder_id: int | None = None,
        origin_reason: str | None = None,
        frequency: str = "annual",
        pay: bool = True,
        paid_until: date | None = None,
        set_status: bool = True,
        deposit: tuple[int, int, str] | None = None,
    ) -> ContractRow:
        """A contract with its schedule; with ``pay`` every installment due by today is received on time."""
        village = asset.village
        schedule = build_schedule(start_date, term_months, PriceBasis(price_basis), unit_price_fen,
                                  PaymentFrequency(frequency), area)
        number = f"HT-{self.tag}-{self.next_serial():05d}"
        end = contract_end(start_date, term_months)
        total = sum(item.amount_fen for item in schedule)
        contract_id = await self.insert(
            Contract, collective_id=self.collective[village], village_code=village, number=number,
            asset_id=asset.id,
            trade_type=trade_type, counterparty_name=counterparty, counterparty_id_number=id_number,
            counterparty_bidder_id=counterparty_bidder_id, start_date=start_date, term_months=term_months,
            end_date=end, price_basis=price_basis, unit_price_fen=unit_price_fen, area=area, step_ups=[],
            payment_frequency=frequency, total_value_fen=total, origin=origin,
            origin_reason=origin_reason or ("小额短期出租，经村民代表会议同意" if origin == "direct" else None),
            listing_id=listing_id, signed_on=signed_on, status="active" if end >= self.today else "expired",
            created_by_id=self.system_user_id,
        )
        for item in schedule:
            self.later(ContractInstallment, contract_id=contract_id, seq=item.seq,
                       period_start=item.period_start, period_end=item.period_end, due_date=item.due_date,
                       amount_fen=item.amount_fen)
        contract = ContractRow(
            contract_id, number, counterparty, id_number, unit_price_fen, signed_on, end, schedule
        )
        self.scenario.counts["contracts"] += 1
        if set_status:
            target = "sold" if trade_type == "transfer" else "leased"
            before = "listed" if listing_id else "idle"
            await self.status_change(asset.id, before, target, f"签订合同 {number}", signed_on)
            if end < self.today:
                await self.status_change(asset.id, target, "idle", f"合同 {number} 期满", end + timedelta(days=1))
        if deposit is not None:
            # the winner's deposit becomes the first payment, as contract_from_result books it
            amount, registration_id, payer = deposit
            applied = min(amount, total)
            self.entry(village, signed_on, f"竞买保证金转作合同 {number} 首期价款", payer,
                       [("21101", applied, 0, None), ("50101", 0, applied, f"合同 {number}")],
                       source="contract_receipt", receipt_for=(contract_id, applied),
                       key=f"deposit-applied-{registration_id}")
            contract.credit = applied
        if pay:
            limit = min(paid_until or self.today, self.today)
            for item in schedule:
                if item.due_date > limit:
                    break
                received = max(signed_on, item.due_date - timedelta(days=self.rng.randint(0, 6)))
                self.pay_installment(village, contract, item, received)
        return contract

    def pay_installment(self, village: str, contract: ContractRow, item: Any, day: date) -> None:
        """Receive an installment, less what the applied deposit already paid of it."""
        used = min(contract.credit, item.amount_fen)
        contract.credit -= used
        if item.amount_fen > used:
            self.receipt(village, contract, item.amount_fen - used, day)

    def receipt(
        self, village: str, contract: ContractRow, amount: int, day: date, account: str = "102"
    ) -> None:
        self.entry(village, day, f"收取合同 {contract.number} 款项", contract.counterparty_name,
                   [(account, amount, 0, None), ("50101", 0, amount, f"合同 {contract.number}")],
                   source="contract_receipt", receipt_for=(contract.id, amount))

    def entry(
        self,
        village: str,
        day: date,
        memo: str,
        counterparty: str | None,
        lines: list[tuple[str, int, int, str | None]],
        *,
        source: str = "manual",
        receipt_for: tuple[int, int] | None = None,
        key: str | None = None,
    ) -> None:
        """Queue an entry of the village's books; ``post_journal`` hashes them onto the chain by date."""
        self.journal[village].append({"day": day, "memo": memo, "counterparty": counterparty, "lines": lines,
                                      "source": source, "receipt_for": receipt_for, "key": key,
                                      "order": len(self.journal[village])})

    async def post_journal(self) -> None:
        """Hash every queued entry onto its village's chain (as BooksService does) and insert them in bulk."""
        entry_table, line_table = JournalEntry.__table__, JournalLine.__table__
        for village in self.scenario.villages:
            collective_id = self.collective[village]
            accounts = self.accounts[collective_id]
            length, head = (
                await self.session.execute(
                    select(Collective.chain_length, Collective.chain_head)
                    .where(Collective.id == collective_id)
                )
            ).one()
            pending = sorted(self.journal[village], key=lambda e: (e["day"], e["order"]))
            rows, lines_of, receipts = [], [], []
            for item in pending:
                length += 1
                posted_at = self.at(item["day"], 16) + timedelta(seconds=item["order"] % 3600)
                total = sum(debit for _, debit, _, _ in item["lines"])
                canonical = chain.CanonicalEntry(
                    village_code=village, seq=length, entry_date=item["day"], memo=item["memo"],
                    counterparty=item["counterparty"], source=item["source"], reverses_seq=None,
                    posted_at=posted_at, total_fen=total,
                    lines=tuple(chain.CanonicalLine(no, code, d, c, m)
                                for no, (code, d, c, m) in enumerate(item["lines"], start=1)),
                )
                head = chain.entry_hash(head, chain.canonical_bytes(canonical))
                rows.append({"collective_id": collective_id, "seq": length, "entry_date": item["day"],
                             "memo": item["memo"], "counterparty": item["counterparty"],
                             "source": item["source"],
                             "client_key": item["key"], "request_hash": None, "reverses_entry_id": None,
                             "total_fen": total, "posted_by_id": self.system_user_id, "posted_at": posted_at,
                             "prev_hash": rows[-1]["hash"] if rows else None, "hash": head})
                lines_of.append(item["lines"])
                receipts.append((item["receipt_for"], item["day"]))
            if not rows:
                continue
            first_prev = (
                await self.session.execute(
                    select(Collective.chain_head).where(Collective.id == collective_id)
                )
            ).scalar_one()
            rows[0]["prev_hash"] = first_prev
            await self.session.execute(insert(entry_table), rows)
            by_seq = dict(
                (await self.session.execute(
                    select(entry_table.c.seq, entry_table.c.id).where(
                        entry_table.c.collective_id == collective_id, entry_table.c.seq >= rows[0]["seq"]
                    )
                )).all()
            )
            ids = [by_seq[row["seq"]] for row in rows]
            self.entry_ids.update(
                ((village, row["client_key"]), entry_id)
                for row, entry_id in zip(rows, ids, strict=True) if row["client_key"]
            )
            await self.session.execute(
                insert(line_table),
                [
                    {"entry_id": entry_id, "line_no": no, "account_id": accounts[code], "debit_fen": d,
                     "credit_fen": c, "memo": m}
                    for entry_id, lines in zip(ids, lines_of, strict=True)
                    for no, (code, d, c, m) in enumerate(lines, start=1)
                ],
            )
            receipt_rows = [
                {"contract_id": r[0], "entry_id": entry_id, "amount_fen": r[1], "received_on": day,
                 "created_at": self.at(day, 16)}
                for entry_id, (r, day) in zip(ids, receipts, strict=True)
                if r is not None
            ]
            if receipt_rows:
                await self.session.execute(insert(ContractReceipt.__table__), receipt_rows)
            await self.session.execute(
                update(Collective.__table__).where(Collective.__table__.c.id == collective_id)
                .values(chain_length=length, chain_head=head)
            )
            self.scenario.counts["journal entries"] += len(rows)
            self.journal[village] = []

    async def link_deposits(self) -> None:
        """Point each registration at its deposit entry and the entry that refunded or applied it."""
        rows = [
            {"rid": registration_id, "deposit": self.entry_ids[(village, key)],
             "settled": self.entry_ids[(village, settled)] if settled else None}
            for village, registration_id, key, settled in self.deposit_links
        ]
        if rows:
            table = Registration.__table__
            await self.session.execute(
                update(table).where(table.c.id == bindparam("rid"))
                .values(deposit_entry_id=bindparam("deposit"),
                        deposit_settlement_entry_id=bindparam("settled")),
                rows,
            )

    # -- background activity

    def months(self) -> list[date]:
        out, day = [], self.first_day
        while day <= self.today:
            out.append(day)
            day = add_months(day, 1)
        return out

    async def background_books(self) -> None:
        """Monthly books: cadre pay and office costs, modest steady hospitality, a few labour payments to
        individuals, a yearly dividend to members; receipts come from the contracts."""
        for village in self.scenario.villages:
            hospitality = self.rng.randint(18, 35) * 10_000
            pay = self.rng.randint(30, 45) * 100_000
            workers = [self.ids.person_name() for _ in range(3)]
            for month in self.months():
                last = min(add_months(month, 1) - timedelta(days=1), self.today)
                if month.day != 1 or last < month:
                    continue
                office = self.rng.randint(20, 60) * 10_000
                self.entry(village, min(month + timedelta(days=9), last), f"{month:%Y年%m月}干部报酬及办公费", None,
                           [("53103", pay, 0, None), ("53102", office, 0, None),
                            ("102", 0, pay + office, None)])
                amount = int(hospitality * self.rng.uniform(0.9, 1.1)) // 100 * 100
                self.entry(village, min(month + timedelta(days=14), last), f"{month:%Y年%m月}公务接待费",
                           None, [("53101", amount, 0, None), ("102", 0, amount, None)])
                worker = workers[month.month % 3]
                wage = self.rng.randint(18, 26) * 10_000
                self.entry(village, min(month + timedelta(days=19), last), f"{month:%Y年%m月}保洁员劳务费", worker,
                           [("53301", wage, 0, None), ("102", 0, wage, None)])
                if month.month == 1:
                    dividend = self.rng.randint(80, 150) * 1_000_000
                    self.entry(village, month + timedelta(days=24), f"{month.year - 1}年度成员分红", "全体成员",
                               [("32201", dividend, 0, None), ("102", 0, dividend, None)])

    async def background_assets(self) -> None:
        """Every village's assets, each leased again and again through competitive auctions."""
        self.assets: dict[str, list[AssetRow]] = {}
        for village in self.scenario.villages:
            self.assets[village] = []
            for kind in VILLAGE_ASSETS:
                asset = await self.new_asset(village, kind)
                self.assets[village].append(asset)
                day = self.first_day + timedelta(days=self.rng.randint(0, 700))
                while True:
                    day = self.clear_day(day, village)
                    term = self.rng.choice(ASSET_KINDS[kind][4])
                    # the whole cycle (announcement to signature) keeps out of the election windows
                    if any(self.quiet(day + timedelta(days=d), village) for d in (0, 20, 40, 60)):
                        day += timedelta(days=30)
                        continue
                    if day + timedelta(days=70) > self.today:
                        break
                    bidders = self.pick_bidders(village, self.rng.randint(3, 5))
                    listing, contract, _ = await self.auction(asset, day, bidders, term_months=term)
                    assert contract is not None
                    day = contract.end_date - timedelta(days=60)

    def pick_bidders(self, village: str, n: int) -> list[PoolBidder]:
        """Independent bidders from the township's pool, none of the village's last few winners."""
        recent = set(self.last_winners[village][-6:])
        pool = [b for b in self.pool[self.township_of[village]] if b.id not in recent]
        return self.rng.sample(pool, n)

    async def background_direct(self) -> None:
        """Small, short direct leases of equipment (below every trading threshold), to distinct villagers."""
        for village in self.scenario.villages:
            for year in range(self.first_day.year, self.today.year):
                if self.rng.random() < 0.5:
                    continue
                signed = self.clear_day(date(year, self.rng.randint(4, 9), self.rng.randint(1, 28)), village)
                if signed >= self.today - timedelta(days=30):
                    continue
                asset = await self.new_asset(village, "equipment", Decimal(1))
                await self.contract(asset, self.ids.person_name(), self.ids.resident_id(),
                                    unit_price_fen=self.rng.randint(30, 120) * 10_000,
                                    term_months=self.rng.choice((3, 6)),
                                    start_date=signed + timedelta(days=1), signed_on=signed,
                                    price_basis="total", trade_type="lease", frequency="once")

    async def settle_asset_statuses(self) -> None:
        """Each asset's status is the last one its history gives it."""
        by_status: dict[str, list[int]] = {}
        for asset_id, (_, status) in self.asset_status.items():
            by_status.setdefault(status, []).append(asset_id)
        for status, ids in by_status.items():
            table = Asset.__table__
            await self.session.execute(update(table).where(table.c.id.in_(ids)).values(status=status))

    # -- injected irregularities

    def clear_date(
        self, village: str, earliest: date, latest: date, span: int = 60, also: tuple[int, int] | None = None
    ) -> date:
        """A day between the two such that the ``span`` days from it (and the days ``also`` after it) keep out
        of the village's election windows."""
        offsets = list(range(0, span + 1, 5)) + (list(range(also[0], also[1] + 1, 5)) if also else [])
        for attempt in range(600):
            # widen the range past ``latest`` a month at a time when it lies wholly inside a window
            stretch = (latest - earliest).days + 30 * (attempt // 40)
            day = earliest + timedelta(days=self.rng.randint(0, max(0, stretch)))
            if not any(self.quiet(day + timedelta(days=d), village) for d in offsets):
                return day
        raise ScenarioError(f"no clear period for {village} between {earliest} and {latest}")

    def villages_cycle(self) -> Any:
        while True:
            order = list(self.scenario.villages)
            self.rng.shuffle(order)
            yield from order

    async def inject(self) -> None:
        self.cycle = self.villages_cycle()
        await self.inject_undisclosed()
        await self.inject_bids()
        await self.inject_election()
        await self.inject_dominant_winners()

    async def clean_auction(
        self, village: str, kind: str, announce_on: date, **options: Any
    ) -> tuple[AssetRow, Made, ContractRow | None]:
        asset = await self.new_asset(village, kind, options.pop("area", None))
        bidders = self.pick_bidders(village, 4)
        listing, contract, _ = await self.auction(asset, announce_on, bidders, **options)
        return asset, listing, contract

    async def inject_undisclosed(self) -> None:
        recent = self.today - timedelta(days=3 * 365)
        for n in range(3):
            # off the platform: a five-year farmland contract worth well above the trading standard
            village = next(self.cycle)
            asset = await self.new_asset(village, "farmland", Decimal(30 + 10 * n))
            signed = self.clear_date(village, recent, self.today - timedelta(days=90))
            contract = await self.contract(asset, self.ids.person_name(), self.ids.resident_id(),
                                           unit_price_fen=self.median_price(village, "farmland", asset.area),
                                           term_months=60 + 12 * n, start_date=signed + timedelta(days=5),
                                           signed_on=signed, price_basis="per_mu_year", area=asset.area,
                                           trade_type="contracting", origin_reason="老承包户续包")
            self.record(UNDISCLOSED, OFF_PLATFORM, "contract", contract.id, village, "direct, above standard")
        for n in range(3):
            # leased or sold in the registry with neither a trade nor a contract
            village = next(self.cycle)
            asset = await self.new_asset(village, ("fish_pond", "shop", "construction_land")[n])
            day = self.clear_date(village, recent, self.today - timedelta(days=30), 0)
            status = "sold" if n == 2 else "leased"
            await self.status_change(asset.id, "idle", "listed" if status == "sold" else status, "出租给村民", day)
            if status == "sold":
                await self.status_change(asset.id, "listed", "sold", "转让", day + timedelta(days=1))
            self.record(UNDISCLOSED, STATUS_WITHOUT_TRADE, "asset", asset.id, village, f"{status}, no trade")
        for n in range(3):
            # rent received from someone the village has no contract with
            village = next(self.cycle)
            payer = self.ids.person_name()
            day = self.clear_date(village, self.today - timedelta(days=500), self.today - timedelta(days=120),
                                  90)
            for k in range(3):
                amount = (2_400 + 300 * n) * 100
                self.entry(village, day + timedelta(days=30 * k), f"收{payer}鱼塘租金", payer,
                           [("101", amount, 0, None), ("50101", 0, amount, None)])
            self.record(UNDISCLOSED, INCOME_WITHOUT_CONTRACT, "counterparty", party_subject(village, payer),
                        village,
                        "three rent receipts without a contract")
        for n in range(3):
            # three small direct contracts with one counterparty within months, together above the standard
            village = next(self.cycle)
            person = self.person()
            day = self.clear_date(village, recent, self.today - timedelta(days=200), 150)
            for k in range(3):
                asset = await self.new_asset(village, "other", Decimal(1), label=f"仓库{k + 1}")
                signed = day + timedelta(days=50 * k)
                await self.contract(asset, person.name, person.id_number,
                                    unit_price_fen=(20_000 + 1_000 * n) * 100, term_months=12,
                                    start_date=signed + timedelta(days=3), signed_on=signed,
                                    price_basis="total", trade_type="lease", frequency="once")
            subject = party_subject(village, person.id_number)
            self.record(UNDISCLOSED, SPLIT_CONTRACTS, "counterparty", subject, village,
                        "three direct contracts of one counterparty above the standard together")
        for n in range(3):
            # the winner of a 3-year auction keeps the asset by a direct one-year renewal
            village = next(self.cycle)
            announce = self.clear_date(village, self.today - timedelta(days=6 * 365),
                                       self.today - timedelta(days=4 * 365), also=(36 * 30, 38 * 30 + 60))
            asset, listing, first = await self.clean_auction(village, "fish_pond", announce,
                                                             area=Decimal(12 + n), term_months=36)
            assert first is not None
            start = first.end_date + timedelta(days=1)
            renewal = await self.contract(asset, first.counterparty_name, first.counterparty_id_number,
                                          unit_price_fen=first.unit_price_fen, term_months=12,
                                          start_date=start,
                                          signed_on=start - timedelta(days=10), price_basis="per_mu_year",
                                          area=asset.area, trade_type="contracting", origin_reason="原承包户续包")
            self.record(UNDISCLOSED, RENEWAL_WITHOUT_REBID, "contract", renewal.id, village, "direct renewal")
        for n in range(3):
            # the contract undercuts the auction's result
            village = next(self.cycle)
            announce = self.clear_date(village, recent, self.today - timedelta(days=120))
            asset = await self.new_asset(village, "farmland")
            final = self.price_band(village, "farmland", asset.area)
            listing, contract, _ = await self.auction(
                asset, announce, self.pick_bidders(village, 4), final=final, term_months=36,
                contract_overrides={"unit_price_fen": final * (80 + 5 * n) // 100 // 100 * 100}
                if n < 2 else {"term_months": 60},
            )
            assert contract is not None
            self.record(UNDISCLOSED, TERMS_WORSE, "contract", contract.id, village, "worse than the result")
        for n in range(3):
            # a sold listing whose result was never publicised
            village = next(self.cycle)
            announce = self.clear_date(village, recent, self.today - timedelta(days=120))
            _, listing, _ = await self.clean_auction(village, "shop", announce, publish=False)
            self.record(UNDISCLOSED, RESULT_NOT_PUBLISHED, "listing", listing.id, village, "no publicity")
        for n in range(3):
            # rent left unpaid for years on a running contract
            village = next(self.cycle)
            announce = self.clear_date(village, self.today - timedelta(days=4 * 365),
                                       self.today - timedelta(days=3 * 365))
            asset = await self.new_asset(village, "fish_pond")
            listing, contract, _ = await self.auction(asset, announce, self.pick_bidders(village, 4),
                                                      term_months=60, pay=False)
            assert contract is not None
            for item in contract.installments[: 1 + (n == 2)]:
                self.pay_installment(village, contract, item, max(contract.signed_on, item.due_date))
            self.record(UNDISCLOSED, RENT_ARREARS, "contract", contract.id, village, "years of rent unpaid")

    def clear_recent(self, village: str, span: int = 60) -> date:
        earliest, latest = self.today - timedelta(days=4 * 365), self.today - timedelta(days=150)
        return self.clear_date(village, earliest, latest, span)

    async def inject_bids(self) -> None:
        for n in range(3):
            # one bidder, sold at the starting price
            village = next(self.cycle)
            asset = await self.new_asset(village, "farmland")
            listing, _, _ = await self.auction(
                asset, self.clear_recent(village), self.pick_bidders(village, 1),
                start=self.price_band(village, "farmland", asset.area))
            self.record(BID, "BID-SINGLE-BIDDER", "listing", listing.id, village, "one bidder")
        for n in range(3):
            # three bidders, yet sold one increment above the start
            village = next(self.cycle)
            asset = await self.new_asset(village, "fish_pond")
            start = self.price_band(village, "fish_pond", asset.area)
            increment = start * 3 // 100 // 100 * 100
            listing, _, _ = await self.auction(
                asset, self.clear_recent(village), self.pick_bidders(village, 3),
                start=start, increment=increment,
                plan=[(0, start), (1 + n % 2, start + increment)])
            self.record(BID, "BID-RESERVE-HUGGING", "listing", listing.id, village, "start + 1 increment")
        for n in range(3):
            # the runner-up stops one (tiny) increment short of the winner
            village = next(self.cycle)
            asset = await self.new_asset(village, "farmland")
            final = self.price_band(village, "farmland", asset.area)
            start = int(final / 1.4) // 100 * 100
            increment = max(100, start // 500 // 100 * 100)
            plan, price, bidder = [], start, 0
            while price < final:
                plan.append((bidder, price))
                bidder = (bidder + 1) % 3
                price += increment * self.rng.randint(5, 10)
            runner_up = plan[-1][0]
            winner = (runner_up + 1) % 3
            plan.append((winner, plan[-1][1] + increment))
            listing, _, _ = await self.auction(
                asset, self.clear_recent(village), self.pick_bidders(village, 3),
                start=start, increment=increment, plan=plan)
            self.record(BID, "BID-CLOSE-SECOND", "listing", listing.id, village, "gap of one small increment")
        for n in range(3):
            # two bidders offer the very same amount (an imported offline bid)
            village = next(self.cycle)
            asset = await self.new_asset(village, "shop")
            final = self.price_band(village, "shop", asset.area)
            start = int(final / 1.4) // 100 * 100
            increment = start * 3 // 100 // 100 * 100
            plan = self.bid_plan(4, start, increment, final)
            plan.insert(3, (plan[2][0] ^ 1 if plan[2][0] < 2 else 0, plan[2][1]))
            listing, _, _ = await self.auction(
                asset, self.clear_recent(village), self.pick_bidders(village, 4),
                start=start, increment=increment, final=final, plan=plan)
            self.record(BID, "BID-IDENTICAL-AMOUNTS", "listing", listing.id, village, "two equal bids")
        for trait in ("phone", "address", "bank_account", "deposit_payer", "network", "device"):
            # two bidders of one listing share an identity trait
            village = next(self.cycle)
            township = self.township_of[village]
            first = await self.new_bidder(township)
            overrides: dict[str, Any] = {}
            registration: dict[int, dict[str, Any]] = {}
            if trait in ("phone", "address", "bank_account"):
                overrides = {trait: getattr(first, {"bank_account": "account"}.get(trait, trait))}
            second = await self.new_bidder(township, **overrides)
            if trait == "deposit_payer":
                registration = {1: {"deposit_payer_name": first.name, "deposit_payer_account": first.account}}
            elif trait == "network":
                second.ip = first.ip
            elif trait == "device":
                second.device = first.device
            if trait == "bank_account":
                registration = {1: {"deposit_payer_account": first.account}}
            asset = await self.new_asset(village, "farmland")
            bidders = [first, second, *self.pick_bidders(village, 2)]
            listing, _, _ = await self.auction(asset, self.clear_recent(village), bidders,
                                               registration_overrides=registration)
            self.record(BID, "BID-SHARED-IDENTITY", "listing", listing.id, village, f"shared {trait}")
        for n in range(3):
            # a sitting cadre (by ID number, or by name and phone) or a declared relative bids
            village = next(self.cycle)
            day = self.clear_recent(village)
            in_office = [c for c in self.cadre_terms[village]
                         if c[1] <= day and (c[2] is None or c[2] >= day)]
            person = in_office[n % len(in_office)][0]
            if n == 0:
                bidder = await self.new_bidder(self.township_of[village], company=False, name=person.name,
                                               id_number=person.id_number)
            elif n == 1:
                bidder = await self.new_bidder(self.township_of[village], company=False, name=person.name,
                                               phone=person.phone)
            else:
                relative = self.declared[person.id_number][0]
                bidder = await self.new_bidder(self.township_of[village], company=False, name=relative.name,
                                               id_number=relative.id_number)
            asset = await self.new_asset(village, "fish_pond")
            bidders = [bidder, *self.pick_bidders(village, 3)]
            _, _, registrations = await self.auction(asset, day, bidders, winner=0)
            self.record(BID, "BID-RELATED-TO-OFFICIAL", "registration", registrations[0].id, village,
                        ("cadre by ID", "cadre by name and phone", "declared relative")[n])
        for n in range(3):
            # a bidder qualifies with a deposit in three lots within months, never bids, and others win
            village = next(self.cycle)
            cover = await self.new_bidder(self.township_of[village])
            day = self.clear_date(village, self.today - timedelta(days=4 * 365),
                                  self.today - timedelta(days=500), 300)
            for k in range(3):
                lot_village = self.scenario.villages[(self.scenario.villages.index(village) + k) %
                                                    len(self.scenario.villages)]
                if self.township_of[lot_village] != self.township_of[village]:
                    lot_village = village
                when = self.clear_date(lot_village, day + timedelta(days=100 * k),
                                       day + timedelta(days=100 * k + 40))
                asset = await self.new_asset(lot_village, "farmland")
                await self.auction(asset, when, [*self.pick_bidders(lot_village, 3), cover], silent=(3,))
            self.record(BID, "BID-COVER-BIDDING", "bidder", cover.id, village, "qualified 3 times, never bid")
        for n in range(3):
            # three bidders meet in four lots of the township and take turns winning
            township = self.scenario.townships[n % len(self.scenario.townships)]
            villages = [v for v in self.scenario.villages if self.township_of[v] == township]
            group = [await self.new_bidder(township) for _ in range(3)]
            earliest = self.today - timedelta(days=(3 + 3 * n) * 365 // 2)
            for k in range(4):
                village = villages[(n + k) % len(villages)]
                when = self.clear_date(village, earliest + timedelta(days=120 * k),
                                       earliest + timedelta(days=120 * k + 60))
                asset = await self.new_asset(village, "farmland")
                outsider = self.pick_bidders(village, 1)
                await self.auction(asset, when, [*group, *outsider], winner=k % 3)
            self.record(BID, "BID-ROTATION", "bidder_group", group_subject_id([b.id for b in group]),
                        villages[n % len(villages)],
                        "four lots, wins rotate in the group")
        for n in range(3):
            # sold far below the township's prices for the kind
            village = next(self.cycle)
            asset = await self.new_asset(village, "farmland")
            final = self.median_price(village, "farmland", asset.area) * (40 + 5 * n) // 100 // 100 * 100
            listing, _, _ = await self.auction(
                asset, self.clear_recent(village), self.pick_bidders(village, 4),
                final=final)
            self.record(BID, "BID-BELOW-MARKET", "listing", listing.id, village, "40-50 % of the median")
        for n in range(3):
            # announced two days before registration closed: bidding began four days after the announcement
            village = next(self.cycle)
            asset = await self.new_asset(village, "fish_pond")
            listing, _, _ = await self.auction(
                asset, self.clear_recent(village), self.pick_bidders(village, 4),
                announcement_days=2 - (n == 2))
            self.record(BID, "BID-SHORT-ANNOUNCEMENT", "listing", listing.id, village, "announced 3-4 days")
        for n in range(3):
            # a failed lot relisted with its starting price cut by 30-40 %
            village = next(self.cycle)
            asset = await self.new_asset(village, "farmland")
            final = self.price_band(village, "farmland", asset.area)
            start = int(final / 1.3) // 100 * 100
            day = self.clear_recent(village, 90)
            failed, _, _ = await self.auction(asset, day, [], start=start, plan=[], sold=False)
            relisted, _, _ = await self.auction(
                asset, day + timedelta(days=40), self.pick_bidders(village, 4),
                start=start * (70 - 5 * n) // 100 // 100 * 100, final=final,
                relisted_from=failed.id)
            self.record(BID, "BID-RELISTED-CHEAPER", "listing", relisted.id, village, "start cut beyond 20 %")

    async def inject_dominant_winners(self) -> None:
        """Last, once every other lot is placed: one bidder wins most of a village's lots within two years."""
        for n in range(3):
            village = next(self.cycle)
            dominant = await self.new_bidder(self.township_of[village])
            first = self.clear_date(village, self.today - timedelta(days=5 * 365),
                                    self.today - timedelta(days=900), 0)
            days, wins = [], 0
            while True:
                day = self.clear_date(village, first + timedelta(days=45 * wins),
                                      first + timedelta(days=45 * wins + 20), 30)
                days.append(day)
                wins += 1
                latest = day + timedelta(days=20)
                window = latest - timedelta(days=740)
                others = sum(1 for d in self.sold_on.get(village, []) if window <= d <= latest)
                if wins >= 4 and wins >= others + 3:
                    break
            for k, day in enumerate(days):
                asset = await self.new_asset(village, ("farmland", "fish_pond", "shop")[k % 3])
                await self.auction(asset, day, [dominant, *self.pick_bidders(village, 3)], winner=0)
            self.record(BID, "BID-DOMINANT-WINNER", "bidder", f"{dominant.id}:{village}", village,
                        f"wins {wins} of {wins + others} lots")

    def election_in(self, village: str, years: tuple[int, ...] = (2017, 2021, 2026)) -> date:
        choices = [d for d in self.elections[village] if d.year in years]
        return self.rng.choice(choices)

    async def inject_election(self) -> None:
        used: set[tuple[str, date]] = set()

        def fresh(
            years: tuple[int, ...] = (2017, 2021, 2026), township: str | None = None
        ) -> tuple[str, date]:
            while True:
                village = next(self.cycle)
                if township and self.township_of[village] != township:
                    continue
                election = self.election_in(village, years)
                if (village, election) not in used:
                    used.add((village, election))
                    return village, election

        for n in range(3):
            # a 3-year lease auctioned and signed in the months before the election
            village, election = fresh()
            asset = await self.new_asset(village, "farmland", Decimal(40 + 5 * n))
            announce = election - timedelta(days=self.rng.randint(60, 150))
            listing, _, _ = await self.auction(asset, announce, self.pick_bidders(village, 4), term_months=36,
                                               announcement_days=10)
            self.record(ELECTION, "ELE-DISPOSAL-BEFORE-ELECTION", "listing", listing.id, village,
                        f"sold {(election - announce).days - 12} days before the election")
        for n in range(2):
            # a twenty-year lease signed by the outgoing committee
            village, election = fresh()
            asset = await self.new_asset(village, "fish_pond")
            announce = election - timedelta(days=self.rng.randint(215, 300))
            _, contract, _ = await self.auction(asset, announce, self.pick_bidders(village, 4),
                                                term_months=240, announcement_days=10)
            assert contract is not None
            self.record(ELECTION, "ELE-LEASE-BEYOND-TERM", "contract", contract.id, village, "20-year lease")
        for n in range(2):
            # three years' rent taken in advance in the year before the election
            village, election = fresh((2021, 2026))
            asset = await self.new_asset(village, "farmland")
            announce = self.clear_date(village, election - timedelta(days=800),
                                       election - timedelta(days=650))
            _, contract, _ = await self.auction(asset, announce, self.pick_bidders(village, 4),
                                                term_months=60, pay=False)
            assert contract is not None
            schedule = contract.installments
            lump_day = election - timedelta(days=250)
            paid = [i for i in schedule if i.due_date < lump_day]
            for item in paid:
                self.pay_installment(village, contract, item, item.due_date)
            rest = [i for i in schedule if i.due_date >= lump_day]
            self.receipt(village, contract, sum(i.amount_fen for i in rest[:3]), lump_day)
            for item in rest[3:]:
                if item.due_date <= self.today:
                    self.pay_installment(village, contract, item, item.due_date)
            self.record(ELECTION, "ELE-LEASE-BEYOND-TERM", "contract", contract.id, village, "3 years ahead")
        townships = self.scenario.townships
        for n in range(3):
            # hospitality several times the usual in the six months before the election
            village, election = fresh((2021, 2026) if n < 2 else (2021,), townships[n % len(townships)])
            for k in range(6):
                amount = self.rng.randint(10, 16) * 100_000
                self.entry(village, election - timedelta(days=170 - 28 * k), "接待来访及慰问", "某酒家",
                           [("53101", amount, 0, None), ("102", 0, amount, None)])
            self.record(ELECTION, "ELE-HOSPITALITY-SPIKE", "village", f"{village}:{election.isoformat()}",
                        village,
                        "hospitality ×5")
        for n in range(3):
            # dozens of small cash payments to villagers just before the vote
            village, election = fresh()
            for k in range(32):
                amount = self.rng.randint(3, 15) * 10_000
                self.entry(village, election - timedelta(days=60 - k), "慰问金", self.ids.person_name(),
                           [("53301", amount, 0, None), ("101", 0, amount, None)])
            self.record(ELECTION, "ELE-MANY-SMALL-PAYOUTS", "village", f"{village}:{election.isoformat()}",
                        village,
                        "32 small payouts")
        for n in range(3):
            # the outgoing committee cuts a running lease's rent (a new direct contract) before the vote
            village, election = fresh((2021, 2026))
            asset = await self.new_asset(village, "fish_pond", Decimal(12 + n))
            announce = self.clear_date(village, election - timedelta(days=900),
                                       election - timedelta(days=700))
            bidders = self.pick_bidders(village, 4)
            _, first, _ = await self.auction(asset, announce, bidders, term_months=60, pay=False)
            assert first is not None
            signed = election - timedelta(days=self.rng.randint(40, 150))
            for item in first.installments:
                if item.due_date <= signed:
                    self.pay_installment(village, first, item, item.due_date)
            table = Contract.__table__
            terminate = update(table).where(table.c.id == first.id).values(status="terminated")
            await self.session.execute(terminate)
            cut = await self.contract(asset, first.counterparty_name, first.counterparty_id_number,
                                      unit_price_fen=first.unit_price_fen * 7 // 10 // 100 * 100,
                                      term_months=12,
                                      start_date=signed + timedelta(days=1), signed_on=signed,
                                      price_basis="per_mu_year", area=asset.area, trade_type="contracting",
                                      origin_reason="承包户经营困难，经协商降低租金", set_status=False)
            self.record(ELECTION, "ELE-RENT-CUT-IN-WINDOW", "contract", cut.id, village, "rent cut by 30 %")
            # re-signing the asset to the same tenant without a trade is also a renewal without re-bidding
            self.record(UNDISCLOSED, RENEWAL_WITHOUT_REBID, "contract", cut.id, village, "the rent cut")
        for n in range(3):
            # a losing candidate of the election wins a small lot in the months before it
            village, election = fresh()
            candidate = self.candidate_people[(village, election)][-1]
            bidder = await self.new_bidder(self.township_of[village], company=False, name=candidate.name,
                                           id_number=candidate.id_number)
            asset = await self.new_asset(village, "farmland", Decimal(8 + n))
            announce = election - timedelta(days=self.rng.randint(50, 150))
            listing, _, _ = await self.auction(asset, announce, [bidder, *self.pick_bidders(village, 3)],
                                               term_months=36, announcement_days=10, winner=0)
            self.record(ELECTION, "ELE-RELATED-TO-CANDIDATE", "listing", listing.id, village, "candidate won")

    # -- entry point

    async def run(self) -> Scenario:
        await self.pick_villages()
        await self.system_user()
        await self.cadres_and_elections()
        await self.bidder_pools()
        await self.background_assets()
        await self.background_direct()
        await self.background_books()
        await self.inject()
        await self.settle_asset_statuses()
        await self.flush_buffers()
        await self.post_journal()
        await self.link_deposits()
        await self.session.flush()
        return self.scenario


async def generate(
    session: AsyncSession, seed: int, *, villages: int = 12, years: int = 14, today: date | None = None
) -> Scenario:
    """Write the scenario of ``seed`` into the session's database (not committed); returns its truth."""
    today = today or datetime.now(ZONE).date()
    if villages < MIN_VILLAGES or years < MIN_YEARS or today.year - years + 1 > 2017:
        raise ScenarioError(
            f"场景至少需要 {MIN_VILLAGES} 个村、自 2017 年前开始的账 / a scenario needs at least {MIN_VILLAGES} "
            "villages and books from before 2017"
        )
    return await Generator(session, seed, villages, years, today).run()


@click.command("scenarios", help="写入带已知违规的模拟场景 / write a scenario with known irregularities.")
@click.option("--seed", type=int, required=True, help="随机种子：同一种子生成同一场景 / the seed")
@click.option("--villages", type=click.IntRange(MIN_VILLAGES, 60), default=12, show_default=True,
              help="村数（至少 12）/ villages (at least 12)")
@click.option("--years", type=click.IntRange(MIN_YEARS, 20), default=14, show_default=True,
              help="年数（至少 10，覆盖 2017 年以来的换届）/ years of activity (at least 10: from before 2017)")
def scenarios_command(seed: int, villages: int, years: int) -> None:
    """Generate the scenario into DATABASE_URL (committed) and print its injected truth."""
    from sanzi.platform.cli import fail, run_async
    from sanzi.platform.database import create_engine, session_scope
    from sanzi.platform.settings import Settings

    async def write() -> Scenario:
        engine = create_engine(Settings())
        try:
            async with session_scope(engine) as session:
                return await generate(session, seed, villages=villages, years=years)
        finally:
            await engine.dispose()

    try:
        scenario = run_async(write)
    except ScenarioError as exc:
        fail(str(exc))
    click.echo(scenario.summary())
