"""The asset registry: a collective's assets, their allowed status changes and the history of every change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import AreaUnit, Asset, AssetKind, AssetStatus, AssetStatusChange
from sanzi.ledger.schemas import assets as schemas
from sanzi.platform.access import check_village
from sanzi.platform.models import Collective, User
from sanzi.platform.problems import Conflict, DomainError, NotFound
from sanzi.platform.schemas import Page

_LAND = {AreaUnit.MU, AreaUnit.SQUARE_METRE}
#: the units that make sense for each kind of asset
ALLOWED_UNITS: dict[AssetKind, set[AreaUnit]] = {
    AssetKind.FARMLAND: _LAND,
    AssetKind.FISH_POND: _LAND,
    AssetKind.FOREST: _LAND,
    AssetKind.CONSTRUCTION_LAND: _LAND,
    AssetKind.BUILDING: {AreaUnit.SQUARE_METRE},
    AssetKind.SHOP: {AreaUnit.SQUARE_METRE},
    AssetKind.EQUIPMENT: {AreaUnit.ITEM},
    AssetKind.OTHER: set(AreaUnit),
}
_UNIT_ZH = {AreaUnit.MU: "亩", AreaUnit.SQUARE_METRE: "平方米", AreaUnit.ITEM: "台/套"}

S = AssetStatus
#: the status changes the registry allows; sold and disposed are final
TRANSITIONS: dict[AssetStatus, set[AssetStatus]] = {
    S.IDLE: {S.LISTED, S.LEASED, S.DISPOSED},  # idle -> leased: a direct contract
    S.LISTED: {S.IDLE, S.LEASED, S.SOLD},
    S.LEASED: {S.IDLE},
    S.SOLD: set(),
    S.DISPOSED: set(),
}
#: changes that must say why (the contract, the transfer, the write-off)
NEEDS_REASON = {S.LEASED, S.SOLD, S.DISPOSED}

_NULLABLE_FIELDS = {"appraisal", "appraised_on", "description"}
_COLUMN = {"book_value": "book_value_fen", "appraisal": "appraisal_fen"}


def check_unit(kind: AssetKind, unit: AreaUnit) -> None:
    """Refuse a unit that makes no sense for the kind (a shop in 亩, a tractor in m²)."""
    allowed = ALLOWED_UNITS[kind]
    if unit not in allowed:
        names_zh = "、".join(_UNIT_ZH[u] for u in sorted(allowed, key=lambda u: u.value))
        names_en = ", ".join(sorted(u.value for u in allowed))
        raise DomainError(
            f"该类资产的面积单位只能是{names_zh}",
            f"an asset of kind {kind.value} is measured in {names_en}, not {unit.value}",
            field="area_unit",
        )


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class AssetService:
    """Reads and writes of one collective's assets; every write keeps the status history."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list(
        self,
        collective: Collective,
        kind: AssetKind | None,
        status: AssetStatus | None,
        q: str | None,
        page: int,
        page_size: int,
    ) -> Page[schemas.Asset]:
        conditions: list[Any] = [Asset.collective_id == collective.id]
        if kind:
            conditions.append(Asset.kind == kind.value)
        if status:
            conditions.append(Asset.status == status.value)
        if q:
            pattern = _like(q)
            conditions.append(Asset.name.ilike(pattern, escape="\\") | Asset.code.ilike(pattern, escape="\\"))
        total = await self.session.scalar(select(func.count()).select_from(Asset).where(*conditions)) or 0
        rows = await self.session.scalars(
            select(Asset)
            .where(*conditions)
            .order_by(Asset.code)
            .offset((page - 1) * page_size)
            .limit(page_size)
        )
        return Page(
            items=[schemas.Asset.model_validate(a) for a in rows], total=total, page=page, page_size=page_size
        )

    async def get(
        self, asset_id: int, user: User | None, *, write: bool = False, lock: bool = False
    ) -> Asset:
        """The asset if the caller may see it (404 otherwise) or change it (403 for read-only callers)."""
        query = select(Asset).where(Asset.id == asset_id)
        if lock:
            query = query.with_for_update()
        asset = await self.session.scalar(query)
        if asset is None:
            raise NotFound("资产", "asset")
        check_village(user, asset.village_code, write=write)
        return asset

    async def _refuse_duplicate_code(
        self, collective_id: int, code: str, asset_id: int | None = None
    ) -> None:
        query = select(Asset.id).where(Asset.collective_id == collective_id, Asset.code == code)
        if asset_id is not None:
            query = query.where(Asset.id != asset_id)
        if await self.session.scalar(query) is not None:
            raise Conflict(f"资产编码 {code} 已存在", f"asset code {code} already exists", field="code")

    async def create(self, collective: Collective, data: schemas.AssetCreate, actor: User) -> Asset:
        check_unit(data.kind, data.area_unit)
        await self._refuse_duplicate_code(collective.id, data.code)
        asset = Asset(
            collective_id=collective.id,
            village_code=collective.village_code,
            code=data.code,
            name=data.name,
            kind=data.kind.value,
            area=data.area,
            area_unit=data.area_unit.value,
            location=data.location,
            book_value_fen=data.book_value,
            appraisal_fen=data.appraisal,
            appraised_on=data.appraised_on,
            description=data.description,
            status=AssetStatus.IDLE.value,
        )
        self.session.add(asset)
        await self.session.flush()
        self._record(asset, None, AssetStatus.IDLE, None, actor)
        await self.session.flush()
        await self.session.refresh(asset)
        return asset

    async def update(self, asset_id: int, data: schemas.AssetUpdate, actor: User) -> Asset:
        asset = await self.get(asset_id, actor, write=True)
        changes = data.model_dump(exclude_unset=True)
        for name, value in changes.items():
            if value is None and name not in _NULLABLE_FIELDS:
                raise DomainError(f"字段 {name} 不能为空", f"{name} cannot be null", field=name)
        kind = AssetKind(changes.get("kind", asset.kind))
        unit = AreaUnit(changes.get("area_unit", asset.area_unit))
        check_unit(kind, unit)
        if "code" in changes and changes["code"] != asset.code:
            await self._refuse_duplicate_code(asset.collective_id, changes["code"], asset.id)
        for name, value in changes.items():
            if isinstance(value, (AssetKind, AreaUnit)):
                value = value.value
            setattr(asset, _COLUMN.get(name, name), value)
        await self.session.flush()
        await self.session.refresh(asset)
        return asset

    async def change_status(
        self,
        asset: Asset,
        to_status: AssetStatus,
        reason: str | None,
        actor: User | None,
        at: datetime | None = None,
    ) -> AssetStatusChange:
        """Move the asset to ``to_status`` if the registry allows that change, recording who and why.

        ``actor`` None is the platform itself (e.g. the auction closing); ``at`` defaults to now."""
        current = AssetStatus(asset.status)
        if to_status not in TRANSITIONS[current]:
            allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "none"
            raise DomainError(
                f"资产状态不能从 {current.value} 变为 {to_status.value}",
                f"an asset cannot go from {current.value} to {to_status.value} (allowed: {allowed})",
                field="status",
            )
        reason = (reason or "").strip() or None
        if to_status in NEEDS_REASON and reason is None:
            raise DomainError(
                "变更为出租、转让或处置须说明理由",
                f"a change to {to_status.value} needs a reason",
                field="reason",
            )
        asset.status = to_status.value
        change = self._record(asset, current, to_status, reason, actor, at)
        await self.session.flush()
        return change

    async def set_status(self, asset_id: int, data: schemas.AssetStatusIn, actor: User) -> Asset:
        asset = await self.get(asset_id, actor, write=True, lock=True)
        await self.change_status(asset, data.status, data.reason, actor)
        await self.session.refresh(asset)
        return asset

    async def history(self, asset_id: int, user: User | None) -> list[schemas.AssetStatusChange]:
        await self.get(asset_id, user)
        rows = await self.session.execute(
            select(AssetStatusChange, User.display_name)
            .outerjoin(User, User.id == AssetStatusChange.changed_by_id)
            .where(AssetStatusChange.asset_id == asset_id)
            .order_by(AssetStatusChange.changed_at, AssetStatusChange.id)
        )
        return [
            schemas.AssetStatusChange.model_validate(change).model_copy(update={"changed_by": name})
            for change, name in rows
        ]

    def _record(
        self,
        asset: Asset,
        from_status: AssetStatus | None,
        to_status: AssetStatus,
        reason: str | None,
        actor: User | None,
        at: datetime | None = None,
    ) -> AssetStatusChange:
        change = AssetStatusChange(
            asset_id=asset.id,
            from_status=from_status.value if from_status else None,
            to_status=to_status.value,
            reason=reason,
            changed_by_id=actor.id if actor else None,
            changed_at=at or datetime.now(UTC),
        )
        self.session.add(change)
        return change
