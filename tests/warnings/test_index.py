"""The integrity index: 100 − weighted, decaying alerts per village and month; levels; roll-ups; the public
sees only aggregates."""

from __future__ import annotations

from datetime import UTC, date, datetime

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.parameters import set_parameter
from sanzi.warnings.models import IntegrityIndex
from sanzi.warnings.services import IntegrityService, level_for
from tests.conftest import VILLAGE_A, VILLAGE_B
from tests.warnings.test_review import make_alert

MONTH = date(2025, 6, 1)


def at(year: int, month: int, day: int = 15) -> datetime:
    return datetime(year, month, day, 8, tzinfo=UTC)


async def index_of(db: AsyncSession, village: str, month: date = MONTH) -> IntegrityIndex:
    row = await db.scalar(
        select(IntegrityIndex).where(IntegrityIndex.village_code == village, IntegrityIndex.month == month)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def test_score_weights_severity_and_halves_every_six_months(db: AsyncSession) -> None:
    await make_alert(db, VILLAGE_A, severity="red", occurred_at=at(2025, 6, 2))  # 30
    await make_alert(db, VILLAGE_A, severity="orange", occurred_at=at(2024, 12))  # 15 × 0.5 = 7.5
    await make_alert(db, VILLAGE_A, severity="yellow", occurred_at=at(2025, 3), status="confirmed")  # 5 × 0.5^0.5
    await make_alert(db, VILLAGE_A, severity="red", occurred_at=at(2025, 1), status="dismissed")  # a false alarm
    await make_alert(db, VILLAGE_A, severity="red", occurred_at=at(2025, 1), status="confirmed",
                     rectified_at=at(2025, 5))  # rectified before the month ended
    await make_alert(db, VILLAGE_A, severity="red", occurred_at=at(2025, 7, 1))  # after the month

    count = await IntegrityService(db).recompute(MONTH)
    assert count >= 1145
    row = await index_of(db, VILLAGE_A)
    assert row.score == pytest.approx(round(100 - 30 - 7.5 - 5 * 0.5**0.5, 2))
    assert (row.level, row.open_red, row.open_orange, row.open_yellow) == ("orange", 1, 1, 1)
    clean = await index_of(db, VILLAGE_B)
    assert (clean.score, clean.level) == (100.0, "green")

    # recomputing replaces the month, other months are kept
    await IntegrityService(db).recompute(date(2025, 5, 1))
    await make_alert(db, VILLAGE_A, severity="red", occurred_at=at(2025, 6))
    await IntegrityService(db).recompute(MONTH)
    assert (await index_of(db, VILLAGE_A)).score == pytest.approx(round(100 - 60 - 7.5 - 5 * 0.5**0.5, 2))
    months = await db.scalar(
        select(func.count()).select_from(IntegrityIndex).where(IntegrityIndex.village_code == VILLAGE_A)
    )
    assert months == 2


async def test_the_score_is_clamped_and_parameters_apply(db: AsyncSession) -> None:
    for _ in range(4):
        await make_alert(db, VILLAGE_A, severity="red", occurred_at=at(2025, 6))
    await IntegrityService(db).recompute(MONTH)
    assert (await index_of(db, VILLAGE_A)).score == 0.0
    await set_parameter(db, "warnings.index.weight_red", 10.0, None, None)
    await IntegrityService(db).recompute(MONTH)
    row = await index_of(db, VILLAGE_A)
    assert (row.score, row.level) == (60.0, "orange")


async def test_a_recompute_rewrites_only_the_villages_whose_values_changed(db: AsyncSession) -> None:
    first, later, latest = at(2025, 6, 20), at(2025, 6, 21), at(2025, 6, 22)
    await IntegrityService(db).recompute(MONTH, now=first)
    await IntegrityService(db).recompute(MONTH, now=later)  # nothing changed: every row is left as it was
    stamps = dict(
        (await db.execute(select(IntegrityIndex.village_code, IntegrityIndex.computed_at)
                          .where(IntegrityIndex.month == MONTH))).all()
    )
    assert len(stamps) >= 1145 and set(stamps.values()) == {first}

    await make_alert(db, VILLAGE_A, severity="orange", occurred_at=at(2025, 6))
    await IntegrityService(db).recompute(MONTH, now=latest)
    changed = await index_of(db, VILLAGE_A)
    assert (changed.score, changed.open_orange, changed.computed_at) == (85.0, 1, latest)
    assert (await index_of(db, VILLAGE_B)).computed_at == first


@pytest.mark.parametrize(
    ("score", "level"), [(85.0, "green"), (84.99, "yellow"), (70.0, "yellow"), (69.99, "orange"), (50.0, "orange"), (49.99, "red")]
)
def test_levels_at_their_boundaries(score: float, level: str) -> None:
    assert level_for(score, {"green_from": 85, "yellow_from": 70, "orange_from": 50}) == level


async def test_public_roll_ups_and_history_show_no_allegations(client: httpx.AsyncClient, db: AsyncSession) -> None:
    secret = "张某某涉嫌围标"
    await make_alert(db, VILLAGE_A, severity="red", occurred_at=at(2025, 6), explanation=secret)
    await make_alert(db, VILLAGE_A, severity="orange", occurred_at=at(2025, 6), explanation=secret)
    await IntegrityService(db).recompute(date(2025, 5, 1))
    await IntegrityService(db).recompute(MONTH)
    await db.commit()

    response = await client.get("/api/integrity", params={"month": "2025-06"})
    assert response.status_code == 200 and secret not in response.text
    body = response.json()
    village = next(v for v in body["villages"] if v["code"] == VILLAGE_A)
    assert (village["score"], village["level"]) == (55.0, "orange")
    township = next(t for t in body["townships"] if t["code"] == VILLAGE_A[:9] + "000")
    rows = list(await db.scalars(select(IntegrityIndex.score).where(
        IntegrityIndex.month == MONTH, IntegrityIndex.township_code == VILLAGE_A[:9] + "000")))
    assert township["score"] == pytest.approx(round(sum(rows) / len(rows), 2))
    assert township["villages"] == len(rows) and township["levels"]["orange"] == 1
    assert township["levels"]["green"] == len(rows) - 1
    district = next(d for d in body["districts"] if d["code"] == VILLAGE_A[:6] + "000000")
    assert district["levels"]["orange"] == 1 and sum(district["levels"].values()) == district["villages"]

    narrowed = (await client.get("/api/integrity", params={"month": "2025-06", "township": VILLAGE_A[:9]})).json()
    assert {v["township_code"] for v in narrowed["villages"]} == {VILLAGE_A[:9] + "000"}
    history = (await client.get(f"/api/villages/{VILLAGE_A}/integrity")).json()
    assert history["history"] == [
        {"month": "2025-05", "score": 100.0, "level": "green"},
        {"month": "2025-06", "score": 55.0, "level": "orange"},
    ]

    before = await db.scalar(select(func.count()).select_from(IntegrityIndex))
    for params in ({"month": "2025-13"}, {"month": "June"}, {"district": "44x"}):
        bad = await client.get("/api/integrity", params=params)
        assert bad.status_code == 400 and bad.json()["errors"], bad.text
    assert (await client.get("/api/villages/440111999999/integrity")).status_code == 404
    assert await db.scalar(select(func.count()).select_from(IntegrityIndex)) == before
