"""The rule interface: a rule reads the platform's data with set-based SQL and returns findings."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.events import DomainEvent
from sanzi.platform.parameters import Parameter, register
from sanzi.warnings.models import Severity


class Family(str, enum.Enum):
    BID = "bid"  # 围标串标
    UNDISCLOSED = "undisclosed"  # 应进场未进场
    ELECTION = "election"  # 换届选举


@dataclass(frozen=True)
class Scope:
    """What to evaluate: all data (full scan) or a slice (an event's village; a district; recent facts).

    Comparables for statistics are always taken from the whole township/district, whatever the slice:
    a slice narrows which subjects may be found, never what they are compared with, so an incremental
    evaluation and a full scan find the same things.
    """

    district_codes: tuple[str, ...] | None = None
    village_codes: tuple[str, ...] | None = None
    since: date | None = None
    #: incremental evaluation only: the committed events that triggered this evaluation (each carries its ids,
    #: e.g. ``listing_id``, ``contract_id``, ``entry_id``). A rule MAY narrow its subjects to what these events
    #: touched (say, only the closed listing) when it can prove nothing else in the villages can change; a rule
    #: that ignores them evaluates the whole villages, which is always correct. None in a full scan.
    events: tuple[DomainEvent, ...] | None = None

    def event_ids(self, key: str, kinds: frozenset[str] | None = None) -> set[int] | None:
        """The ``key`` ids (e.g. "listing_id") carried by the triggering events of ``kinds`` (all kinds if
        None); None when this is not an incremental evaluation or some such event lacks the id, so the
        caller must evaluate the villages whole."""
        if self.events is None:
            return None
        ids: set[int] = set()
        for event in self.events:
            if kinds is not None and event.kind not in kinds:
                continue
            if key not in event.ids:
                return None
            ids.add(event.ids[key])
        return ids


@dataclass
class Finding:
    rule_id: str
    subject_type: str  # listing, bidder, contract, village, asset, election, entry, ...
    subject_id: str
    village_code: str
    score: float  # 0..100: how strongly the facts point at the risk
    explanation: str  # plain Chinese naming the numbers that triggered it
    evidence: dict[str, list[Any]]  # {"listings": [ids], "bids": [...], "registrations": [...], ...}
    occurred_at: datetime
    severity: Severity | None = None  # None: the rule's own severity
    numbers: dict[str, Any] = field(default_factory=dict)  # the triggering figures, machine-readable


class Rule(ABC):
    """One rule of the catalogue. Its docstring states its legal or audit basis."""

    id: ClassVar[str]  # stable, e.g. "BID-SINGLE-BIDDER"
    family: ClassVar[Family]
    title: ClassVar[str]  # Chinese, e.g. "单一竞买人成交"
    severity: ClassVar[Severity]
    ocds_code: ClassVar[str | None] = None  # e.g. "R018"
    #: the domain events (sanzi.platform.events.KINDS) after which this rule is re-evaluated for the village
    triggers: ClassVar[frozenset[str]] = frozenset()
    #: parameters, keys "warnings.<rule id>.<name>", each with a documented default
    parameters: ClassVar[tuple[Parameter, ...]] = ()

    @abstractmethod
    async def evaluate(self, session: AsyncSession, scope: Scope, params: dict[str, Any]) -> list[Finding]:
        """Findings within ``scope``, with ``params`` resolved for the scope's districts (short names)."""


def rule_parameter(
    rule_id: str, name: str, default: Any, kind: type, minimum: float, maximum: float, description: str
) -> Parameter:
    """Register a rule's parameter as ``warnings.<rule id>.<name>`` (overridable city-wide or per district)."""
    return register(Parameter(f"warnings.{rule_id}.{name}", default, kind, minimum, maximum, description))
