"""A small, idempotent demo data set for `make run`: one login per role and a village with books to look at.

Refused in production: the demo password is printed on the console.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.auth import Passwords
from sanzi.platform.models import Bidder, Role, User

DEMO_PASSWORD = "sanzi-demo-2026"
DEMO_VILLAGE = "440111020200"  # 永兴村, 龙归街道, 白云区
DEMO_TOWNSHIP = "440111020000"  # 龙归街道
DEMO_DISTRICT = "440111000000"  # 白云区


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: Role
    display_name: str
    scope: str
    village_code: str | None = None
    area_code: str | None = None


DEMO_LOGINS = [
    DemoLogin("admin", Role.ADMIN, "平台管理员", "全市 / all"),
    DemoLogin("yongxing", Role.COMMITTEE, "永兴村委会 出纳", "永兴村 440111020200", village_code=DEMO_VILLAGE),
    DemoLogin("longgui", Role.SUPERVISOR, "龙归街道 纪工委", "龙归街道 440111020", area_code=DEMO_TOWNSHIP),
    DemoLogin("baiyun", Role.SUPERVISOR, "白云区 农业农村局", "白云区 440111", area_code=DEMO_DISTRICT),
    DemoLogin("bidder1", Role.BIDDER, "陈志明", "竞买人（个人）"),
    DemoLogin("bidder2", Role.BIDDER, "广州穗丰农业有限公司", "竞买人（企业）"),
]

# checksum-valid but fictitious identities
_BIDDERS = {
    "bidder1": dict(kind="person", id_number="440111198001011231", phone="13800138001", address="广州市白云区龙归街道"),
    "bidder2": dict(
        kind="company",
        id_number="91440101MA5ABCDE1M",
        phone="13900139002",
        address="广州市白云区太和镇",
        legal_representative="黄伟",
    ),
}


async def load_demo_users(session: AsyncSession, passwords: Passwords) -> int:
    """Create the demo logins that do not exist yet; returns how many were created."""
    existing = set(await session.scalars(select(User.username)))
    created = 0
    for login in DEMO_LOGINS:
        if login.username in existing:
            continue
        user = User(
            username=login.username,
            password_hash=passwords.hash(DEMO_PASSWORD),
            display_name=login.display_name,
            role=login.role.value,
            village_code=login.village_code,
            area_code=login.area_code,
        )
        session.add(user)
        await session.flush()
        if login.username in _BIDDERS:
            session.add(Bidder(user_id=user.id, name=login.display_name, **_BIDDERS[login.username]))
        created += 1
    await session.flush()
    return created


# ---- the demo village's registry, books and contracts ------------------------------------------------------

_DEMO_ASSETS = [
    dict(code="YX-YT-01", name="北围鱼塘", kind="fish_pond", area="48.6", area_unit="mu", location="永兴村北围",
         book_value="180000.00", appraisal="260000.00", appraised_on="2023-11-20"),
    dict(code="YX-NT-01", name="东片水田", kind="farmland", area="120", area_unit="mu", location="永兴村东片",
         book_value="0", appraisal="310000.00", appraised_on="2023-05-10"),
    dict(code="YX-SP-01", name="村口商铺 3 号", kind="shop", area="85", area_unit="m2", location="永兴村委会旁",
         book_value="420000.00", appraisal="560000.00", appraised_on="2024-02-01"),
    dict(code="YX-CF-01", name="旧厂房 A 栋", kind="building", area="1200", area_unit="m2", location="永兴工业区",
         book_value="1350000.00", appraisal="1800000.00", appraised_on="2024-06-15"),
    dict(code="YX-LD-01", name="后山林地", kind="forest", area="300", area_unit="mu", location="永兴村后山",
         book_value="0", appraisal="150000.00", appraised_on="2022-09-01"),
    dict(code="YX-SB-01", name="排灌抽水设备", kind="equipment", area="1", area_unit="item", location="北围泵站",
         book_value="36000.00"),
]

# (client key, date, memo, counterparty, [(account, debit, credit)])
_DEMO_ENTRIES: list[tuple[str, str, str, str | None, list[tuple[str, str, str]]]] = [
    ("demo-open", "2024-01-02", "上年结转银行存款", None, [("102", "860000.00", ""), ("301", "", "860000.00")]),
    ("demo-e1", "2024-01-15", "支付村干部一月报酬", "村委会", [("53103", "18000.00", ""), ("102", "", "18000.00")]),
    ("demo-e2", "2024-02-08", "春节慰问老人", "村民", [("532", "12000.00", ""), ("101", "", "12000.00")]),
    ("demo-e3", "2024-02-08", "提取备用金", None, [("101", "20000.00", ""), ("102", "", "20000.00")]),
    ("demo-e4", "2024-03-12", "接待镇检查组用餐", "龙归酒家", [("53101", "1860.00", ""), ("101", "", "1860.00")]),
    ("demo-e5", "2024-04-20", "购买办公用品", "白云文具店", [("53102", "2350.00", ""), ("101", "", "2350.00")]),
    ("demo-e6", "2024-06-30", "上半年股份分红", "全体成员", [("32201", "150000.00", ""), ("102", "", "150000.00")]),
    ("demo-e7", "2024-09-18", "接待外村考察团用餐", "龙归酒家", [("53101", "3420.00", ""), ("101", "", "3420.00")]),
    ("demo-e8", "2024-12-20", "年终股份分红", "全体成员", [("32201", "180000.00", ""), ("102", "", "180000.00")]),
    ("demo-e9", "2025-01-10", "补助收入：高标准农田建设", "白云区农业农村局",
     [("102", "50000.00", ""), ("521", "", "50000.00")]),
]

_DEMO_CONTRACTS = [
    # asset code, contract body, receipts [(client key, date, amount)]
    ("YX-YT-01", dict(number="YX-HT-2024-01", trade_type="contracting", counterparty_name="何志强",
                      counterparty_id_number="440111198001011231", start_date="2024-01-01", term_years=5,
                      price_basis="per_mu_year", unit_price="1800", payment_frequency="annual",
                      signed_on="2023-12-18", origin="direct",
                      origin_reason="原承包户续包，经 2023 年 12 月村民代表会议表决通过"),
     [("demo-r1", "2024-01-05", "87480.00"), ("demo-r2", "2025-01-08", "87480.00")]),
    ("YX-NT-01", dict(number="YX-HT-2023-07", trade_type="lease", counterparty_name="广州穗丰农业有限公司",
                      counterparty_id_number="91440101MA5ABCDE1M", start_date="2023-07-01", term_years=10,
                      price_basis="per_mu_year", unit_price="900", step_ups=[{"from_year": 6, "percent": "5"}],
                      payment_frequency="semiannual", signed_on="2023-06-20", origin="direct",
                      origin_reason="2023 年平台上线前签订的历史合同，补录"),
     [("demo-r3", "2023-07-03", "54000.00"), ("demo-r4", "2024-01-04", "54000.00")]),
]


async def load_demo_books(session: AsyncSession) -> bool:
    """Give the demo village assets, a year of books and two contracts (one in arrears); False if present."""
    from datetime import date

    from sanzi.ledger.models import Asset
    from sanzi.ledger.schemas.assets import AssetCreate
    from sanzi.ledger.schemas.books import EntryCreate, LineIn
    from sanzi.ledger.schemas.contracts import ContractCreate, ReceiptCreate
    from sanzi.ledger.services.assets import AssetService
    from sanzi.ledger.services.books import BooksService
    from sanzi.ledger.services.contracts import ContractService
    from sanzi.platform.models import Collective

    collective = await session.scalar(select(Collective).where(Collective.village_code == DEMO_VILLAGE))
    actor = await session.scalar(select(User).where(User.username == "yongxing"))
    if collective is None or actor is None:
        raise RuntimeError("load the villages and the demo users first")
    if await session.scalar(select(Asset.id).where(Asset.collective_id == collective.id).limit(1)):
        return False
    assets = AssetService(session)
    ids = {}
    for body in _DEMO_ASSETS:
        asset = await assets.create(collective, AssetCreate.model_validate(body), actor)
        ids[asset.code] = asset.id
    books = BooksService(session)
    for key, day, memo, counterparty, lines in _DEMO_ENTRIES:
        data = EntryCreate(
            entry_date=date.fromisoformat(day), memo=memo, counterparty=counterparty, client_key=key,
            lines=[LineIn(account_code=a, debit=d or "0", credit=c or "0") for a, d, c in lines],
        )
        await books.post_entry(collective, data, actor)
    contracts = ContractService(session)
    for asset_code, body, receipts in _DEMO_CONTRACTS:
        contract = await contracts.create(collective, ContractCreate.model_validate({**body, "asset_id": ids[asset_code]}), actor)
        for key, day, amount in receipts:
            receipt = ReceiptCreate(amount=amount, received_on=date.fromisoformat(day), account="bank", client_key=key)
            await contracts.receive(contract.id, receipt, actor, today=date.fromisoformat(day))
    await books.publish_root()
    return True


# ---- the demo village's auctions: a finished one with its contract, and a live one to bid in ----------------


async def load_demo_auctions(session: AsyncSession, now: datetime) -> bool:
    """Run two listings through the real services with the clock set back: the shop sold three weeks ago
    (result published, contract signed with the deposit applied), the factory building bidding now until
    three days from now. False if the village already has listings."""
    from sanzi.auction.models import Listing
    from sanzi.auction.schemas.bidding import ContractFromResult
    from sanzi.auction.schemas.listings import ListingCreate, ResolutionIn
    from sanzi.auction.schemas.registrations import DepositIn, RegistrationCreate
    from sanzi.auction.services import bidding, listings, registrations, results
    from sanzi.ledger.models import Asset

    if await session.scalar(select(Listing.id).where(Listing.village_code == DEMO_VILLAGE).limit(1)):
        return False
    users = {u.username: u for u in await session.scalars(select(User).where(User.username.in_(
        ["yongxing", "longgui", "bidder1", "bidder2"])))}
    committee, supervisor = users["yongxing"], users["longgui"]
    bidders = [users["bidder1"], users["bidder2"]]
    assets = {a.code: a.id for a in await session.scalars(select(Asset).where(Asset.village_code == DEMO_VILLAGE))}

    async def prepare(asset_code: str, title: str, start_fen: int, created: datetime, ends: datetime) -> int:
        terms = ListingCreate.model_validate({
            "asset_ids": [assets[asset_code]], "title": title, "trade_type": "lease", "term_years": 5,
            "price_basis": "per_year", "starting_price": f"{start_fen // 100}", "min_increment": "500",
            "max_increment": "5000", "deposit": "5000", "performance_bond": "20000",
            "qualification_conditions": "具有完全民事行为能力的个人或依法设立的企业", "announcement_days": 10,
            "registration_deadline": (created + timedelta(days=11)).isoformat(),
            "bidding_starts_at": (created + timedelta(days=12)).isoformat(),
            "bidding_ends_at": ends.isoformat(), "extension_minutes": 5, "max_extensions": 30,
            "description": "水电齐全，交通便利。租期五年，租金按年支付。",
        })
        listing = await listings.create_listing(session, DEMO_VILLAGE, terms, committee, created)
        resolution = ResolutionIn(meeting_date=(created - timedelta(days=3)).date(), members_present=35,
                                  votes_for=31, votes_against=2, note="村民代表会议表决通过")
        await listings.submit_listing(session, listing.id, resolution, committee, created)
        await listings.approve_listing(session, listing.id, supervisor, created + timedelta(hours=2))
        await listings.announce_listing(session, listing.id, supervisor, created + timedelta(hours=3))
        for n, bidder in enumerate(bidders):
            at = created + timedelta(days=2 + n)
            registration = await registrations.register(
                session, listing.id, RegistrationCreate(), bidder, f"192.0.2.{10 + n}", f"demo-device-{n}", at)
            deposit = DepositIn(payer_name=bidder.display_name, payer_account=f"62220200000000{n + 1:02d}",
                                paid_at=at + timedelta(hours=1))
            await registrations.confirm_deposit(session, registration.id, deposit, committee, at + timedelta(hours=2))
            await registrations.qualify(session, registration.id, supervisor, created + timedelta(days=11, hours=2))
        await session.commit()
        return listing.id

    # the shop: bidding ran three weeks ago and sold; the contract was signed with the deposit applied
    sold_start = now - timedelta(days=35)
    opens = sold_start + timedelta(days=12)
    shop = await prepare("YX-SP-01", "永兴村口商铺 3 号五年租赁", 4_800_000, sold_start, opens + timedelta(hours=1))
    await bidding.open_due(session, opens)
    for seq, (bidder, amount) in enumerate([(0, 4_800_000), (1, 4_850_000), (0, 4_950_000), (1, 5_020_000)]):
        await bidding.place_bid(session, shop, bidders[bidder], amount, f"demo-shop-{seq}",
                                opens + timedelta(minutes=10 + 7 * seq), f"192.0.2.{10 + bidder}", f"demo-device-{bidder}")
    await results.close_listing(session, shop, opens + timedelta(hours=1, seconds=1))
    signing = opens + timedelta(days=6)  # after the five-day publicity of the result
    contract = ContractFromResult(number="YX-HT-2026-SP3", signed_on=signing.date(),
                                  start_date=(signing + timedelta(days=7)).date(), payment_frequency="annual")
    await results.contract_from_result(session, shop, contract, committee, signing)
    await session.commit()

    # the factory building: announced a fortnight ago, bidding now, ends in three days
    created = now - timedelta(days=12, hours=1)
    factory = await prepare("YX-CF-01", "永兴工业区旧厂房 A 栋五年租赁", 36_000_000, created, now + timedelta(days=3))
    await bidding.open_due(session, now)
    await bidding.place_bid(session, factory, bidders[0], 36_000_000, "demo-factory-0", now, "192.0.2.10", "demo-device-0")
    await session.commit()
    return True
