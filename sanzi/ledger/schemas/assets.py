"""Asset registry API schemas: areas are decimal strings (at most 2 decimals), money is yuan strings."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from sanzi.ledger.models import AreaUnit, AssetKind, AssetStatus
from sanzi.platform.money import YuanIn, YuanOut
from sanzi.platform.schemas import Schema

_AREA = re.compile(r"^\d{1,12}(\.\d{1,2})?$")


def parse_area(value: Any) -> Decimal:
    """A positive area given as a decimal string (or an integer) (at most two decimals); no floats."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError('面积须为字符串形式的数值，如 "12.5" / area must be a decimal string like "12.5"')
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, Decimal):
        value = format(value, "f")
    if not isinstance(value, str) or not _AREA.match(value.strip()):
        raise ValueError(
            "面积须为正数且最多两位小数 / area must be a positive number with at most two decimals"
        )
    area = Decimal(value.strip())
    if area <= 0:
        raise ValueError("面积须大于零 / area must be greater than zero")
    return area


def format_area(value: Decimal) -> str:
    return format(Decimal(value).quantize(Decimal("0.01")), "f")


_area_schema = WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d{1,2})?$", "examples": ["12.50"]})
#: An input area (亩, m² or items) as a decimal string.
AreaIn = Annotated[Decimal, BeforeValidator(parse_area), _area_schema]
#: An output area shown as a decimal string with two decimals.
AreaOut = Annotated[Decimal, PlainSerializer(format_area, return_type=str), _area_schema]


class AssetCreate(Schema):
    code: str = Field(
        min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-./]+$", description="资产编码，集体内唯一"
    )
    name: str = Field(min_length=1, max_length=100)
    kind: AssetKind
    area: AreaIn
    area_unit: AreaUnit
    location: str = Field(min_length=1, max_length=200)
    book_value: YuanIn = 0
    appraisal: YuanIn | None = None
    appraised_on: date | None = None
    description: str | None = Field(default=None, max_length=1000)


class AssetUpdate(Schema):
    """Any field but the status (which changes only through the status route, to keep its history)."""

    code: str | None = Field(default=None, min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-./]+$")
    name: str | None = Field(default=None, min_length=1, max_length=100)
    kind: AssetKind | None = None
    area: AreaIn | None = None
    area_unit: AreaUnit | None = None
    location: str | None = Field(default=None, min_length=1, max_length=200)
    book_value: YuanIn | None = None
    appraisal: YuanIn | None = None
    appraised_on: date | None = None
    description: str | None = Field(default=None, max_length=1000)


class AssetStatusIn(Schema):
    status: AssetStatus
    reason: str | None = Field(default=None, max_length=500)


class Asset(Schema):
    id: int
    village_code: str
    code: str
    name: str
    kind: str
    area: AreaOut
    area_unit: str
    location: str
    book_value: YuanOut = Field(validation_alias="book_value_fen")
    appraisal: YuanOut | None = Field(validation_alias="appraisal_fen")
    appraised_on: date | None
    status: str
    description: str | None
    created_at: datetime
    updated_at: datetime


class AssetStatusChange(Schema):
    id: int
    from_status: str | None
    to_status: str
    reason: str | None
    changed_by_id: int | None
    changed_by: str | None = None
    changed_at: datetime
