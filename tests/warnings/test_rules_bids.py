"""Bid-irregularity rules at their boundaries, on SQLite and PostgreSQL: just over raises, just under does not,
statistics stay quiet with too few comparables, and a village's scoped evaluation finds exactly its share of
the full scan."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.warnings.rules.base import Finding, Scope
from sanzi.warnings.rules.bids import RULES
from tests.conftest import VILLAGE_A, VILLAGE_B
from tests.warnings import builders as b

RULE = {rule.id: rule for rule in RULES}


async def found(db: AsyncSession, rule_id: str, scope: Scope | None = None, **params: Any) -> list[Finding]:
    return await RULE[rule_id].evaluate(db, scope or Scope(), params)


def subjects(findings: list[Finding]) -> set[str]:
    return {f.subject_id for f in findings}


@pytest.mark.parametrize("rule_id", sorted(RULE))
async def test_every_rule_runs_on_both_databases(db: AsyncSession, rule_id: str) -> None:
    await b.make_auction(db, VILLAGE_A, amounts=[(0, 1_000_00), (1, 1_010_00)])
    assert isinstance(await found(db, rule_id), list)
