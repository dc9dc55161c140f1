"""A small, idempotent demo data set for `make run`: one login per role and a village with books to look at.

Refused in production: the demo password is printed on the console.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "bidder1": dict(kind="person", id_number="440111198001011234", phone="13800138001", address="广州市白云区龙归街道"),
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
