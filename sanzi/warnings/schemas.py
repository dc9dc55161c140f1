"""Warnings API schemas: alerts and their review, the rule catalogue, the integrity index."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import Field

from sanzi.platform.schemas import Schema, StrictSchema

Level = Literal["green", "yellow", "orange", "red"]
Note = Field(min_length=1, max_length=2000, description="说明 / the note kept in the alert's history")


# ---- alerts -------------------------------------------------------------------------------------------------


class Person(Schema):
    id: int
    name: str


class AlertSummary(Schema):
    """One alert in a list: what, where, how serious, where it stands in its review."""

    id: int
    rule_id: str
    rule_title: str | None = None
    family: str
    subject_type: str
    subject_id: str
    village_code: str
    village_name: str
    township_code: str
    district_code: str
    severity: str
    score: float
    explanation: str
    status: str
    assigned_to: Person | None = None
    due_on: date | None = None
    overdue: bool
    rectified_at: datetime | None = None
    occurred_at: datetime
    first_raised_at: datetime
    last_updated_at: datetime


class EvidenceLink(Schema):
    """A row behind the alert, with the API path that shows it (None where the API has no page for it)."""

    kind: str
    id: str
    href: str | None = None


class HistoryItem(Schema):
    action: str
    from_status: str | None = None
    to_status: str | None = None
    actor: Person | None = None
    note: str | None = None
    at: datetime


class AlertDetail(AlertSummary):
    evidence: dict[str, Any]
    evidence_links: list[EvidenceLink]
    history: list[HistoryItem]


class AssignIn(StrictSchema):
    assignee_id: int = Field(description="承办人：该村所在镇街或区的监督人员")
    due_on: date = Field(description="核查期限")
    note: str = Note


class NoteIn(StrictSchema):
    note: str = Note


class ConfirmIn(StrictSchema):
    rectification_due_on: date = Field(description="整改期限")
    note: str = Note


class DismissIn(StrictSchema):
    reason: str = Field(min_length=1, max_length=2000, description="排除理由")


# ---- rules and parameters ------------------------------------------------------------------------------------


class RuleParameter(Schema):
    name: str
    key: str
    kind: str
    default: Any
    value: Any = Field(description="the value in force (for the district asked about, else city-wide)")
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""


class RuleInfo(Schema):
    id: str
    family: str
    title: str
    severity: str
    ocds_code: str | None = None
    triggers: list[str]
    basis: str = Field(description="the rule's legal or audit basis (its docstring)")
    parameters: list[RuleParameter]


class ParameterIn(StrictSchema):
    value: Any = Field(description="the new value; its type and range are checked")
    district_code: str | None = Field(default=None, max_length=12, description="only for this district")


class ParameterSet(RuleParameter):
    district_code: str | None = None


# ---- scans ----------------------------------------------------------------------------------------------------


class RuleScan(Schema):
    rule_id: str
    raised: int
    updated: int
    unchanged: int


class ScanResult(Schema):
    raised: int
    updated: int
    unchanged: int
    rules: list[RuleScan]
    index_month: date | None = None


# ---- integrity index (public: aggregates only) ---------------------------------------------------------------


class LevelCounts(Schema):
    green: int = 0
    yellow: int = 0
    orange: int = 0
    red: int = 0


class AreaIntegrity(Schema):
    code: str
    name: str
    score: float = Field(description="mean of its villages' scores")
    level: Level
    villages: int
    levels: LevelCounts


class VillageIntegrity(Schema):
    code: str
    name: str
    township_code: str
    district_code: str
    score: float
    level: Level


class IntegrityOverview(Schema):
    month: str
    districts: list[AreaIntegrity]
    townships: list[AreaIntegrity]
    villages: list[VillageIntegrity]


class IntegrityMonth(Schema):
    month: str
    score: float
    level: Level


class VillageIntegrityHistory(Schema):
    code: str
    name: str
    history: list[IntegrityMonth]
