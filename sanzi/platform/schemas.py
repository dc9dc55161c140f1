"""Platform API schemas (pydantic): geography here; users, tokens and bidders below."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from sanzi.platform.models import Role

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


# ---- authentication, users and bidders ------------------------------------------------------------------

#: letters, digits and . _ - @ (a phone number or an e-mail address works as a username)
USERNAME_PATTERN = r"^[A-Za-z0-9._@-]{3,64}$"
Username = Annotated[str, Field(pattern=USERNAME_PATTERN, min_length=3, max_length=64)]
Password = Annotated[str, Field(min_length=1, max_length=128)]


class StrictSchema(Schema):
    """Input that refuses unknown fields, so e.g. an attempt to change a bidder's identity is an error."""

    model_config = ConfigDict(from_attributes=True, str_strip_whitespace=True, extra="forbid")


class TokenRequest(StrictSchema):
    username: str = Field(min_length=1, max_length=64)
    password: Password


class User(Schema):
    id: int
    username: str
    display_name: str
    role: Role
    village_code: str | None = None
    area_code: str | None = None
    phone: str | None = None
    is_active: bool
    last_login_at: datetime | None = None
    created_at: datetime


class Token(Schema):
    """A bearer token: shown once, stored only as its SHA-256."""

    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: User


class UserCreate(StrictSchema):
    """An official's account, created by an admin; bidders register themselves."""

    username: Username
    password: Password
    display_name: str = Field(min_length=1, max_length=64)
    role: Role
    village_code: str | None = Field(default=None, max_length=12, description="committee: a village")
    area_code: str | None = Field(default=None, max_length=12, description="supervisor: township or district")
    phone: str | None = Field(default=None, max_length=32)


class UserUpdate(StrictSchema):
    """What an admin may change: name, phone, active flag, a new password, the scope (same role)."""

    display_name: str | None = Field(default=None, min_length=1, max_length=64)
    phone: str | None = Field(default=None, max_length=32)
    is_active: bool | None = None
    password: str | None = Field(default=None, min_length=1, max_length=128)
    village_code: str | None = Field(default=None, max_length=12)
    area_code: str | None = Field(default=None, max_length=12)


class PasswordChange(StrictSchema):
    current_password: Password
    new_password: Password


class BidderCreate(StrictSchema):
    """Self-registration of a bidder (竞买人): a person with a resident ID or a company with its USCC."""

    kind: Literal["person", "company"]
    name: str = Field(min_length=1, max_length=100, description="full name, or the company's registered name")
    id_number: str = Field(min_length=1, max_length=24, description="resident ID (person) or USCC (company)")
    legal_representative: str | None = Field(default=None, max_length=64, description="company: 法定代表人")
    phone: str = Field(min_length=1, max_length=20, description="mainland mobile number")
    address: str | None = Field(default=None, max_length=200)
    bank_name: str | None = Field(default=None, max_length=100)
    bank_account: str | None = Field(default=None, max_length=40)
    username: Username
    password: Password


class BidderUpdate(StrictSchema):
    """Contact details only: the name, kind and identity number of a bidder cannot change."""

    phone: str | None = Field(default=None, min_length=1, max_length=20)
    address: str | None = Field(default=None, max_length=200)
    bank_name: str | None = Field(default=None, max_length=100)
    bank_account: str | None = Field(default=None, max_length=40)


class Bidder(Schema):
    id: int
    user_id: int
    username: str
    kind: Literal["person", "company"]
    name: str
    id_number: str
    legal_representative: str | None = None
    phone: str
    address: str | None = None
    bank_name: str | None = None
    bank_account: str | None = None
    created_at: datetime


class BidderRegistered(Schema):
    """The new bidder and a token, so a phone user is logged in at once."""

    bidder: Bidder
    token: Token
