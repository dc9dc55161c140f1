"""Platform services: reads of the geography; users, tokens and bidders."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform import schemas
from sanzi.platform.geography import normalise_code
from sanzi.platform.models import District, Township, Village
from sanzi.platform.problems import NotFound


def _village_out(village: Village) -> schemas.Village:
    return schemas.Village(
        code=village.code,
        name=village.name,
        township_code=village.township_code,
        township_name=village.township.name,
        district_code=village.district_code,
        district_name=village.township.district.name,
        collective_name=village.collective.name if village.collective else None,
    )


class GeographyService:
    """Districts, townships and villages as the public sees them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def districts(self) -> list[District]:
        return list(await self.session.scalars(select(District).order_by(District.code)))

    async def townships(self, district: str | None) -> list[Township]:
        query = select(Township).order_by(Township.code)
        if district:
            query = query.where(Township.district_code == normalise_code(district, "district"))
        return list(await self.session.scalars(query))

    async def villages(
        self, district: str | None, township: str | None, q: str | None, page: int, page_size: int
    ) -> schemas.Page[schemas.Village]:
        conditions: list[Any] = []
        if district:
            conditions.append(Village.district_code == normalise_code(district, "district"))
        if township:
            conditions.append(Village.township_code == normalise_code(township, "township"))
        if q:
            pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conditions.append(Village.name.like(pattern, escape="\\"))
        total = await self.session.scalar(select(func.count()).select_from(Village).where(*conditions)) or 0
        rows = await self.session.scalars(
            select(Village).where(*conditions).order_by(Village.code).offset((page - 1) * page_size).limit(page_size)
        )
        return schemas.Page(
            items=[_village_out(v) for v in rows.unique()], total=total, page=page, page_size=page_size
        )

    async def village(self, code: str) -> schemas.Village:
        village = await self.session.scalar(select(Village).where(Village.code == normalise_code(code, "code")))
        if village is None:
            raise NotFound("村", "village")
        return _village_out(village)
