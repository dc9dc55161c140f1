"""The state live bidding needs, written in bulk before the clock starts: bidder accounts with bearer tokens,
listings open for bidding, and every bidder qualified on them with the deposit held."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sanzi.auction.models import DepositState, Listing, ListingStatus, Registration, RegistrationStatus
from sanzi.platform.auth import Passwords, hash_token, new_token
from sanzi.platform.models import ApiToken, Bidder, Collective, Role, User

STARTING_PRICE_FEN = 10_000_000  # ¥100,000 a year
MIN_INCREMENT_FEN = 10_000  # ¥100
#: wide enough for the load generator's clock-based amounts (one increment a millisecond, for hours)
MAX_INCREMENT_FEN = MIN_INCREMENT_FEN * 10_000_000


@dataclass
class LiveState:
    """What the load generators need: tokens by bidder index and the listings each group bids on."""

    tokens: list[str]
    #: an administrator's bearer token and password (pages such as a certificate need a logged-in session)
    admin_token: str = ""
    admin_username: str = ""
    admin_password: str = ""
    spread_listings: list[int] = field(default_factory=list)
    hot_listing: int = 0
    watched_listing: int = 0
    #: when the listings were made: bidders' amounts grow with the milliseconds since (see load.bid_load)
    epoch: float = field(default_factory=time.time)


async def _listings(
    conn, collectives: list[tuple[int, str]], count: int, label: str, now: datetime
) -> list[int]:
    rows = []
    for n in range(count):
        collective_id, village_code = collectives[n % len(collectives)]
        rows.append(
            {
                "collective_id": collective_id,
                "village_code": village_code,
                "number": f"BENCH-{label}-{n + 1:04d}",
                "title": f"基准测试项目 {label}-{n + 1}",
                "status": ListingStatus.BIDDING.value,
                "trade_type": "lease",
                "term_months": 36,
                "price_basis": "per_year",
                "starting_price_fen": STARTING_PRICE_FEN,
                "min_increment_fen": MIN_INCREMENT_FEN,
                "max_increment_fen": MAX_INCREMENT_FEN,
                "deposit_fen": STARTING_PRICE_FEN // 10,
                "performance_bond_fen": 0,
                "announcement_days": 20,
                "registration_deadline": now - timedelta(hours=1),
                "bidding_starts_at": now - timedelta(minutes=10),
                "bidding_ends_at": now + timedelta(hours=6),
                "current_end_at": now + timedelta(hours=6),
                "extension_minutes": 5,
                "max_extensions": 0,
                "announced_at": now - timedelta(days=20),
                "lock_version": 0,
                "extensions_used": 0,
                "bid_count": 0,
            }
        )
    result = await conn.execute(insert(Listing.__table__).returning(Listing.__table__.c.id), rows)
    return [row[0] for row in result]


async def build(engine: AsyncEngine, bidders: int, spread: int, hot_bidders: int, run_id: str) -> LiveState:
    """Write ``bidders`` bidders (each with a token), ``spread`` listings on which every bidder is qualified,
    one hot listing for the first ``hot_bidders`` and one listing for the watcher test (first two bidders)."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        collectives = [
            (row.id, row.village_code)
            for row in await conn.execute(
                select(Collective.id, Collective.village_code).order_by(Collective.id)
            )
        ]
        if not collectives:
            raise RuntimeError("no collectives: load the geography first")
        user_rows = [
            {
                "username": f"bench-{run_id}-{n:04d}",
                "password_hash": "!",  # cannot log in with a password: bearer tokens only
                "display_name": f"竞买人{n}",
                "role": Role.BIDDER.value,
                "is_active": True,
                "session_epoch": 0,
            }
            for n in range(bidders)
        ]
        user_ids = [
            row[0]
            for row in await conn.execute(insert(User.__table__).returning(User.__table__.c.id), user_rows)
        ]
        bidder_rows = [
            {
                "user_id": user_id,
                "kind": "person",
                "name": f"基准竞买人{n}",
                "id_number": f"B{run_id[:5]}{n:012d}"[:18],
                "phone": f"139{n:08d}",
            }
            for n, user_id in enumerate(user_ids)
        ]
        bidder_ids = [
            row[0]
            for row in await conn.execute(
                insert(Bidder.__table__).returning(Bidder.__table__.c.id), bidder_rows
            )
        ]
        tokens = [new_token() for _ in user_ids]
        await conn.execute(
            insert(ApiToken.__table__),
            [
                {
                    "user_id": user_id,
                    "token_hash": hash_token(token),
                    "created_at": now,
                    "expires_at": now + timedelta(days=1),
                }
                for user_id, token in zip(user_ids, tokens)
            ],
        )
        admin_password = secrets.token_urlsafe(16)
        admin_id = (
            await conn.execute(
                insert(User.__table__).returning(User.__table__.c.id),
                [
                    {
                        "username": f"bench-{run_id}-admin",
                        "password_hash": Passwords().hash(admin_password),
                        "display_name": "基准管理员",
                        "role": Role.ADMIN.value,
                        "is_active": True,
                        "session_epoch": 0,
                    }
                ],
            )
        ).scalar_one()
        admin_token = new_token()
        await conn.execute(
            insert(ApiToken.__table__),
            [
                {
                    "user_id": admin_id,
                    "token_hash": hash_token(admin_token),
                    "created_at": now,
                    "expires_at": now + timedelta(days=1),
                }
            ],
        )
        state = LiveState(
            tokens=tokens,
            admin_token=admin_token,
            admin_username=f"bench-{run_id}-admin",
            admin_password=admin_password,
        )
        state.spread_listings = await _listings(conn, collectives, spread, f"{run_id}-S", now)
        state.hot_listing = (await _listings(conn, collectives, 1, f"{run_id}-H", now))[0]
        state.watched_listing = (await _listings(conn, collectives, 1, f"{run_id}-W", now))[0]

        def registrations(listing_id: int, who: list[int]) -> list[dict]:
            return [
                {
                    "listing_id": listing_id,
                    "bidder_id": bidder_id,
                    "status": RegistrationStatus.QUALIFIED.value,
                    "bidder_number": f"{n + 1:04d}",
                    "contact_phone": f"139{n:08d}",
                    "deposit_state": DepositState.HELD.value,
                    "deposit_paid_at": now - timedelta(hours=2),
                    "decided_at": now - timedelta(hours=1),
                }
                for n, bidder_id in enumerate(who)
            ]

        rows = [row for listing_id in state.spread_listings for row in registrations(listing_id, bidder_ids)]
        rows += registrations(state.hot_listing, bidder_ids[:hot_bidders])
        rows += registrations(state.watched_listing, bidder_ids[:2])
        for start in range(0, len(rows), 5000):
            await conn.execute(insert(Registration.__table__), rows[start : start + 5000])
    return state
