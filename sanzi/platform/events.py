"""Domain events, delivered only after the transaction that caused them commits (zulip's rule).

A service records ``record(session, "bid_placed", village_code, listing_id=...)``; when the session commits,
every subscriber receives the events in order; a rollback discards them. The warning engine subscribes in
the app's lifespan: with Redis configured it appends the events to a Redis Stream that `sanzi warnings worker`
consumes, else it evaluates them in a background task of the app; either way the request that caused the
event never waits for it. Processes without subscribers (the CLI) drop events: a full scan covers what they
wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

_KEY = "sanzi_events"

#: the kinds the warning engine reacts to
KINDS = {"bid_placed", "listing_closed", "bidder_qualified", "contract_recorded", "entry_posted", "election_set"}


@dataclass(frozen=True)
class DomainEvent:
    kind: str
    village_code: str
    ids: dict[str, int] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_fields(self) -> dict[str, str]:
        """The event as the flat string fields of a Redis Stream entry."""
        return {
            "kind": self.kind,
            "village": self.village_code,
            "ids": json.dumps(self.ids, separators=(",", ":")),
            "at": self.at.isoformat(),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[Any, Any]) -> DomainEvent:
        """The event back from a stream entry's fields (bytes or str); ValueError when they are not one."""

        def text(name: str) -> str:
            value = fields.get(name, fields.get(name.encode()))
            if value is None:
                raise ValueError(f"stream entry without {name!r}")
            return value.decode() if isinstance(value, bytes) else str(value)

        kind = text("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        ids = json.loads(text("ids"))
        if not isinstance(ids, dict) or not all(isinstance(v, int) for v in ids.values()):
            raise ValueError(f"bad ids {ids!r}")
        at = datetime.fromisoformat(text("at"))
        return cls(kind, text("village"), {str(k): v for k, v in ids.items()}, at if at.tzinfo else at.replace(tzinfo=UTC))


Subscriber = Callable[[list[DomainEvent]], None]
_subscribers: list[Subscriber] = []


def record(session: Any, kind: str, village_code: str, **ids: int) -> None:
    """Queue an event on the session (sync or async); it is delivered when the session commits."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    sync = session if isinstance(session, Session) else session.sync_session
    if not sync.in_transaction():
        # tie the event to a transaction even before any SQL ran, so a rollback discards it
        sync.begin()
    sync.info.setdefault(_KEY, []).append(DomainEvent(kind, village_code, dict(ids)))


def subscribe(subscriber: Subscriber) -> Callable[[], None]:
    """Receive committed events (called synchronously after commit: hand them off, do no I/O there)."""
    _subscribers.append(subscriber)
    return lambda: _subscribers.remove(subscriber) if subscriber in _subscribers else None


@event.listens_for(Session, "after_commit")
def _deliver(session: Session) -> None:
    events = session.info.pop(_KEY, None)
    if not events:
        return
    for subscriber in list(_subscribers):
        subscriber(list(events))


@event.listens_for(Session, "after_soft_rollback")
def _discard(session: Session, previous_transaction: SessionTransaction) -> None:
    if previous_transaction.parent is None:  # the whole transaction, not a savepoint inside it
        session.info.pop(_KEY, None)
