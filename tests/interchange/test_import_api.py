"""POST /api/imports: admins upload a zip or the files; the validation report comes back; limits are clear."""

from __future__ import annotations

from typing import Any

import httpx
from litestar import Litestar
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import Contract
from sanzi.warnings.models import Alert
from tests.conftest import VILLAGE_A, Actor
from tests.interchange.dataset import records, sources, table_counts, zipped
from tests.ledger.test_contracts import create_contract, make_asset

OFF_PLATFORM = "UND-OFF-PLATFORM"  # sanzi/warnings/rules/undisclosed.py


def multipart(data: dict[str, list[dict[str, Any]]]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (item.name, item.data, "text/csv")) for item in sources(data)]


async def test_an_admin_uploads_a_zip_and_gets_the_report(
    client: httpx.AsyncClient, db: AsyncSession, admin: Actor
) -> None:
    before = await table_counts(db)
    body = zipped(sources(records()))
    response = await client.post(
        "/api/imports", content=body, headers={**admin.headers, "Content-Type": "application/zip"}
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["valid"] is True and report["format_version"] == 1 and report["problems"] == []
    assert report["dry_run"] is False and report["written"]["contracts"] == 2
    files = {item["file"]: item for item in report["files"]}
    assert files["bids.csv"] == {
        "file": "bids.csv",
        "kind": "bids",
        "rows": 3,
        "records": 3,
        "new": 3,
        "unchanged": 0,
        "problems": 0,
        "loaded": True,
        "skipped_because": None,
    }
    assert files["book_entries.csv"]["rows"] == 6 and files["book_entries.csv"]["records"] == 3
    after = await table_counts(db)
    assert after["contract"] == before["contract"] + 2 and after["import_key"] == before["import_key"] + 20

    again = await client.post(
        "/api/imports", content=body, headers={**admin.headers, "Content-Type": "application/zip"}
    )
    assert again.status_code == 200 and sum(again.json()["written"].values()) == 0
    assert await table_counts(db) == after


async def test_multipart_dry_run_and_an_invalid_upload_write_nothing(
    client: httpx.AsyncClient, db: AsyncSession, admin: Actor
) -> None:
    before = await table_counts(db)
    dry = await client.post(
        "/api/imports", params={"dry_run": "true"}, files=multipart(records()), headers=admin.headers
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["valid"] is True and dry.json()["written"] == {}
    assert await table_counts(db) == before

    data = records()
    data["book_entries"][1]["credit_fen"] = "6557499"
    bad = await client.post("/api/imports", files=multipart(data), headers=admin.headers)
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    problem = bad.json()
    assert problem["problem_count"] == 1 and problem["valid"] is False
    assert problem["problems"] == [
        {
            "file": "book_entries.csv",
            "line": 2,
            "field": "debit_fen",
            "message": "借贷不平衡：借方合计 6557500 分，贷方合计 6557499 分",
            "message_en": "unbalanced entry: debits 6557500 fen, credits 6557499 fen",
        }
    ]
    assert "book_entries.csv 第 2 行" in problem["detail"] and "nothing written" in problem["detail_en"]
    assert await table_counts(db) == before


async def test_uploads_above_the_limit_are_refused_with_413(
    app: Litestar, client: httpx.AsyncClient, db: AsyncSession, admin: Actor
) -> None:
    app.state.import_max_bytes = 2000
    before = await table_counts(db)
    body = zipped(sources(records()))
    assert len(body) > 2000
    response = await client.post(
        "/api/imports", content=body, headers={**admin.headers, "Content-Type": "application/zip"}
    )
    assert response.status_code == 413
    problem = response.json()
    assert (
        problem["limit_bytes"] == 2000
        and "sanzi import" in problem["detail"]
        and "limit" in problem["detail_en"]
    )

    # a chunked upload without a length is counted as it arrives
    async def chunks() -> Any:
        for start in range(0, len(body), 500):
            yield body[start : start + 500]

    streamed = await client.post(
        "/api/imports", content=chunks(), headers={**admin.headers, "Content-Type": "application/zip"}
    )
    assert streamed.status_code == 413
    assert await table_counts(db) == before


async def test_only_admins_may_import_and_other_bodies_are_refused(
    client: httpx.AsyncClient, db: AsyncSession, admin: Actor, committee_a: Actor, supervisor_a: Actor
) -> None:
    before = await table_counts(db)
    body = zipped(sources(records()))
    for actor in (committee_a, supervisor_a):
        response = await client.post(
            "/api/imports", content=body, headers={**actor.headers, "Content-Type": "application/zip"}
        )
        assert response.status_code == 403 and response.json()["detail"] == "您的角色无权执行此操作"
    anonymous = await client.post("/api/imports", content=body, headers={"Content-Type": "application/zip"})
    assert anonymous.status_code == 401
    json_body = await client.post("/api/imports", json={"cadres": []}, headers=admin.headers)
    assert json_body.status_code == 415 and "multipart/form-data" in json_body.json()["detail_en"]
    not_zip = await client.post(
        "/api/imports", content=b"not a zip", headers={**admin.headers, "Content-Type": "application/zip"}
    )
    assert not_zip.status_code == 422 and not_zip.json()["errors"][0]["field"] == "archive"
    assert await table_counts(db) == before


async def test_the_scan_flags_an_imported_direct_contract_as_it_flags_one_recorded_through_the_api(
    client: httpx.AsyncClient, db: AsyncSession, admin: Actor, committee_a: Actor
) -> None:
    imported = await client.post(
        "/api/imports",
        content=zipped(sources(records())),
        headers={**admin.headers, "Content-Type": "application/zip"},
    )
    assert imported.status_code == 200, imported.text
    asset = await make_asset(client, committee_a)
    live = await create_contract(client, committee_a, asset["id"], number="LIVE-HT-1")
    direct = await db.scalar(select(Contract.id).where(Contract.number == "OLD-HT-02"))
    auctioned = await db.scalar(select(Contract.id).where(Contract.number == "OLD-HT-01"))

    scan = await client.post("/api/warnings/scan", headers=admin.headers)
    assert scan.status_code == 200, scan.text
    flagged = {
        subject: (severity, village)
        for subject, severity, village in await db.execute(
            select(Alert.subject_id, Alert.severity, Alert.village_code).where(Alert.rule_id == OFF_PLATFORM)
        )
    }
    assert flagged[str(direct)] == ("red", VILLAGE_A)
    assert flagged[str(live["id"])] == ("red", VILLAGE_A)
    assert str(auctioned) not in flagged  # the imported auction-born contract has its trade behind it
