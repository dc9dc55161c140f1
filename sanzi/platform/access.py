"""Object-level access: resolve a village (and its collective) for a caller, or refuse."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.geography import normalise_code
from sanzi.platform.models import Collective, User, Village
from sanzi.platform.problems import Forbidden, NotFound


async def village_for(
    session: AsyncSession, code: str, user: User | None, *, write: bool = False, public: bool = False
) -> Village:
    """The village with this code if the caller may read it (or write to it, with ``write``).

    Village codes are public, so a village outside the caller's scope is refused with 403, not hidden.
    """
    village = await session.scalar(select(Village).where(Village.code == normalise_code(code, "village_code")))
    if village is None:
        raise NotFound("村", "village")
    if public and not write:
        return village
    if user is None:
        raise Forbidden("请先登录", "authentication required")
    allowed = user.may_write_village(village.code) if write else user.may_read_village(village.code)
    if not allowed:
        raise Forbidden("无权访问该村的数据", "this village is outside your scope")
    return village


async def collective_for(
    session: AsyncSession, code: str, user: User | None, *, write: bool = False, public: bool = False
) -> Collective:
    """The collective of the village with this code, with the same checks as :func:`village_for`."""
    village = await village_for(session, code, user, write=write, public=public)
    collective = await session.scalar(select(Collective).where(Collective.village_code == village.code))
    if collective is None:
        raise NotFound("集体经济组织", "collective")
    return collective


def check_village(user: User | None, village_code: str, *, write: bool = False) -> None:
    """Refuse access to an object of another village (objects fetched by id answer 404 to outsiders)."""
    if user is None:
        raise NotFound("对象", "object")
    allowed = user.may_write_village(village_code) if write else user.may_read_village(village_code)
    if not allowed:
        if user.may_read_village(village_code):
            raise Forbidden("您只能查看，不能修改该村的数据", "read-only access to this village")
        raise NotFound("对象", "object")
