"""Platform API schemas (pydantic): geography here; users, tokens and bidders below."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, str_strip_whitespace=True)


class Page(Schema, Generic[T]):
    """A page of results with the total number of matching rows."""

    items: list[T]
    total: int
    page: int
    page_size: int


class District(Schema):
    code: str
    name: str


class Township(Schema):
    code: str
    name: str
    kind: str
    district_code: str


class Village(Schema):
    code: str
    name: str
    township_code: str
    township_name: str
    district_code: str
    district_name: str
    collective_name: str | None = None
