"""Operator parameters with documented defaults, set city-wide or per district (a district's value wins)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.models import Setting, User
from sanzi.platform.problems import DomainError


@dataclass(frozen=True)
class Parameter:
    key: str
    default: Any
    kind: type
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    def validate(self, value: Any) -> Any:
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or isinstance(value, bool) and self.kind is not bool:
            raise DomainError(
                f"参数 {self.key} 的类型应为 {self.kind.__name__}", f"{self.key} must be a {self.kind.__name__}",
                field="value",
            )
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            raise DomainError(
                f"参数 {self.key} 应在 {self.minimum} 与 {self.maximum} 之间",
                f"{self.key} must be between {self.minimum} and {self.maximum}",
                field="value",
            )
        return value


REGISTRY: dict[str, Parameter] = {}


def register(parameter: Parameter) -> Parameter:
    REGISTRY[parameter.key] = parameter
    return parameter


async def get_parameter(session: AsyncSession, key: str, district_code: str | None = None) -> Any:
    """The value for a district (or the city), else the documented default."""
    parameter = REGISTRY[key]
    scopes = [district_code, ""] if district_code else [""]
    rows = {
        row.scope: row.value
        for row in await session.scalars(select(Setting).where(Setting.key == key, Setting.scope.in_(scopes)))
    }
    for scope in scopes:
        if scope in rows:
            return rows[scope]
    return parameter.default


async def set_parameter(
    session: AsyncSession, key: str, value: Any, district_code: str | None, actor: User | None
) -> Setting:
    """Validate and store a value; an invalid one is refused and the running configuration is unchanged."""
    parameter = REGISTRY.get(key)
    if parameter is None:
        raise DomainError(f"未知参数 {key}", f"unknown parameter {key}", field="key", status_code=404)
    value = parameter.validate(value)
    scope = district_code or ""
    row = await session.scalar(select(Setting).where(Setting.key == key, Setting.scope == scope))
    if row is None:
        row = Setting(key=key, scope=scope, value=value, updated_at=datetime.now(UTC))
        session.add(row)
    row.value = value
    row.updated_by_id = actor.id if actor else None
    row.updated_at = datetime.now(UTC)
    await session.flush()
    return row
