"""Platform tables: the geography (districts, townships, villages and their collectives) and users."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from advanced_alchemy.base import BigIntAuditBase, BigIntBase, DefaultBase
from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship


class Role(str, enum.Enum):
    ADMIN = "admin"
    COMMITTEE = "committee"  # 村委会 / 经联社: scoped to one village
    SUPERVISOR = "supervisor"  # 镇街 or 区 supervisor: scoped to a township or a district
    BIDDER = "bidder"  # 竞买人


class District(DefaultBase):
    """A district (区), keyed by its official 12-digit statistical division code."""

    __tablename__ = "district"
    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))


class Township(DefaultBase):
    """A town (镇) or sub-district (街道)."""

    __tablename__ = "township"
    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    district_code: Mapped[str] = mapped_column(ForeignKey("district.code"), index=True)
    district: Mapped[District] = relationship(lazy="joined", innerjoin=True)


class Village(DefaultBase):
    """An administrative village (村委会)."""

    __tablename__ = "village"
    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    township_code: Mapped[str] = mapped_column(ForeignKey("township.code"), index=True)
    district_code: Mapped[str] = mapped_column(ForeignKey("district.code"), index=True)
    township: Mapped[Township] = relationship(lazy="joined", innerjoin=True)
    collective: Mapped[Collective] = relationship(back_populates="village", lazy="joined", uselist=False)


class Collective(BigIntAuditBase):
    """The village's collective economic organisation (经济联合社): owns assets, keeps books and one hash chain."""

    __tablename__ = "collective"
    village_code: Mapped[str] = mapped_column(ForeignKey("village.code"), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    #: number of posted journal entries and the hash of the last one: the head of this collective's chain
    chain_length: Mapped[int] = mapped_column(default=0)
    chain_head: Mapped[str] = mapped_column(String(64), default="0" * 64)
    village: Mapped[Village] = relationship(back_populates="collective", lazy="raise")


class User(BigIntAuditBase):
    """Anyone who logs in. Committee members carry a village; supervisors an area (township or district)."""

    __tablename__ = "user_account"
    __table_args__ = (
        CheckConstraint("role in ('admin','committee','supervisor','bidder')", name="role_known"),
        CheckConstraint("role <> 'committee' OR village_code IS NOT NULL", name="committee_has_village"),
        CheckConstraint("role <> 'supervisor' OR area_code IS NOT NULL", name="supervisor_has_area"),
    )
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), index=True)
    village_code: Mapped[str | None] = mapped_column(ForeignKey("village.code"), index=True)
    #: 12-digit code of the township or district a supervisor covers
    area_code: Mapped[str | None] = mapped_column(String(12), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    is_active: Mapped[bool] = mapped_column(default=True)
    last_login_at: Mapped[datetime | None]
    #: copied into a page session at login and bumped when the password changes or the account is
    #: deactivated, so every older session stops identifying the user
    session_epoch: Mapped[int] = mapped_column(default=0, server_default=text("0"))

    @property
    def area_prefix(self) -> str | None:
        """The code prefix of the villages a supervisor covers: 9 digits for a township, 6 for a district."""
        if not self.area_code:
            return None
        return self.area_code[:6] if self.area_code.endswith("000000") else self.area_code[:9]

    def may_read_village(self, village_code: str) -> bool:
        if self.role == Role.ADMIN.value:
            return True
        if self.role == Role.COMMITTEE.value:
            return self.village_code == village_code
        if self.role == Role.SUPERVISOR.value:
            prefix = self.area_prefix
            return bool(prefix) and village_code.startswith(prefix)
        return False

    def may_write_village(self, village_code: str) -> bool:
        return self.role == Role.ADMIN.value or (
            self.role == Role.COMMITTEE.value and self.village_code == village_code
        )


class ApiToken(BigIntBase):
    """A bearer token for the API; only its SHA-256 is stored."""

    __tablename__ = "api_token"
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class Bidder(BigIntAuditBase):
    """A bidder's identity (竞买人): a person with a resident ID or a company with a unified social credit code."""

    __tablename__ = "bidder"
    __table_args__ = (CheckConstraint("kind in ('person','company')", name="kind_known"),)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    #: resident ID number (person) or unified social credit code (company), checksum-validated
    id_number: Mapped[str] = mapped_column(String(18), unique=True)
    legal_representative: Mapped[str | None] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(32), index=True)
    address: Mapped[str | None] = mapped_column(String(200))
    bank_name: Mapped[str | None] = mapped_column(String(100))
    bank_account: Mapped[str | None] = mapped_column(String(40), index=True)
    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


Index("ix_village_name_district", Village.district_code, Village.name)


class Setting(BigIntBase):
    """An operator-set parameter (auction rules, warning-rule thresholds), city-wide or for one district.

    ``scope`` is "" for the whole city or a district's 12-digit code; a district's value overrides the city's.
    """

    __tablename__ = "setting"
    __table_args__ = (UniqueConstraint("key", "scope", name="uq_setting_key_scope"),)
    key: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(12), default="")
    value: Mapped[Any] = mapped_column(JSON)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    updated_at: Mapped[datetime]


class Cadre(BigIntAuditBase):
    """A member of a village's committee (村委会) or Party branch (党支部), with the term served."""

    __tablename__ = "cadre"
    __table_args__ = (CheckConstraint("body in ('committee','party_branch')", name="body_known"),)
    village_code: Mapped[str] = mapped_column(ForeignKey("village.code"), index=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    id_number: Mapped[str | None] = mapped_column(String(18), index=True)
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    body: Mapped[str] = mapped_column(String(16))
    position: Mapped[str] = mapped_column(String(32))  # 书记、主任、委员、出纳 ...
    term_start: Mapped[date]
    term_end: Mapped[date | None]


class CadreRelative(BigIntBase):
    """A relative a cadre has declared (配偶、子女、兄弟姐妹 ...)."""

    __tablename__ = "cadre_relative"
    cadre_id: Mapped[int] = mapped_column(ForeignKey("cadre.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    id_number: Mapped[str | None] = mapped_column(String(18), index=True)
    relation: Mapped[str] = mapped_column(String(16))


class Election(BigIntAuditBase):
    """A re-election (换届选举) of a village's committee, on the village's election calendar."""

    __tablename__ = "election"
    __table_args__ = (UniqueConstraint("village_code", "election_date", name="uq_election_village_date"),)
    village_code: Mapped[str] = mapped_column(ForeignKey("village.code"), index=True)
    election_date: Mapped[date] = mapped_column(index=True)
    note: Mapped[str | None] = mapped_column(String(500))


class Candidate(BigIntBase):
    """A registered candidate of an election."""

    __tablename__ = "candidate"
    election_id: Mapped[int] = mapped_column(ForeignKey("election.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    id_number: Mapped[str | None] = mapped_column(String(18), index=True)
    position: Mapped[str] = mapped_column(String(32))
