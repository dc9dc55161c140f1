"""The asset registry through HTTP: create, list, update, status changes, history, access, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import Asset, AssetStatusChange
from tests.conftest import VILLAGE_A, VILLAGE_B


def asset_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "code": "NT-001",
        "name": "东片农田",
        "kind": "farmland",
        "area": "35.5",
        "area_unit": "mu",
        "location": "永兴村东片",
        "book_value": "120000.00",
        "appraisal": "150000",
        "appraised_on": "2024-03-01",
        "description": "水田",
    }
    body.update(overrides)
    return body


async def counts(db: AsyncSession) -> tuple[int, int]:
    assets = await db.scalar(select(func.count()).select_from(Asset))
    changes = await db.scalar(select(func.count()).select_from(AssetStatusChange))
    return assets or 0, changes or 0


async def create(client: Any, actor: Any, village: str = VILLAGE_A, **overrides: Any) -> dict[str, Any]:
    response = await client.post(
        f"/api/villages/{village}/assets", json=asset_body(**overrides), headers=actor.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_create_and_read_an_asset(client, committee_a, supervisor_a, admin) -> None:
    asset = await create(client, committee_a)
    assert asset["status"] == "idle"
    assert asset["area"] == "35.50"
    assert asset["book_value"] == "120000.00"
    assert asset["appraisal"] == "150000.00"
    assert asset["village_code"] == VILLAGE_A
    for reader in (committee_a, supervisor_a, admin):
        response = await client.get(f"/api/assets/{asset['id']}", headers=reader.headers)
        assert response.status_code == 200
        assert response.json()["code"] == "NT-001"
    history = (await client.get(f"/api/assets/{asset['id']}/history", headers=supervisor_a.headers)).json()
    assert [(h["from_status"], h["to_status"]) for h in history] == [(None, "idle")]
    assert history[0]["changed_by_id"] == committee_a.id


async def test_list_filters_searches_and_paginates(client, committee_a, committee_b) -> None:
    await create(client, committee_a, code="NT-001", name="东片农田")
    await create(client, committee_a, code="YT-001", name="南塘鱼塘", kind="fish_pond")
    await create(client, committee_a, code="SP-001", name="村口商铺", kind="shop", area="80", area_unit="m2")
    await create(client, committee_b, village=VILLAGE_B, code="NT-001")
    url = f"/api/villages/{VILLAGE_A}/assets"

    everything = (await client.get(url, headers=committee_a.headers)).json()
    assert everything["total"] == 3
    assert {a["code"] for a in everything["items"]} == {"NT-001", "YT-001", "SP-001"}

    ponds = (await client.get(url, params={"kind": "fish_pond"}, headers=committee_a.headers)).json()
    assert [a["code"] for a in ponds["items"]] == ["YT-001"]
    shops = (await client.get(url, params={"q": "商铺"}, headers=committee_a.headers)).json()
    assert [a["code"] for a in shops["items"]] == ["SP-001"]
    by_code = (await client.get(url, params={"q": "nt-"}, headers=committee_a.headers)).json()
    assert [a["code"] for a in by_code["items"]] == ["NT-001"]

    second = (await client.get(url, params={"page": 2, "page_size": 2}, headers=committee_a.headers)).json()
    assert second["total"] == 3 and len(second["items"]) == 1
    listed = (await client.get(url, params={"status": "listed"}, headers=committee_a.headers)).json()
    assert listed["total"] == 0


async def test_status_changes_follow_the_lifecycle_and_are_recorded(client, db, committee_a) -> None:
    asset = await create(client, committee_a)
    url = f"/api/assets/{asset['id']}/status"
    steps = [
        ("listed", None),
        ("idle", "流拍后撤牌"),
        ("listed", None),
        ("leased", "平台成交，合同 HT-2024-01"),
        ("idle", "合同到期"),
        ("leased", "直接续租：村民代表会议决议"),
    ]
    for status, reason in steps:
        response = await client.post(
            url, json={"status": status, "reason": reason}, headers=committee_a.headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
    history = (await client.get(f"/api/assets/{asset['id']}/history", headers=committee_a.headers)).json()
    assert [h["to_status"] for h in history] == ["idle"] + [s for s, _ in steps]
    assert history[4]["reason"] == "平台成交，合同 HT-2024-01"
    assert all(h["changed_by_id"] == committee_a.id for h in history)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (["listed", "sold"], {"status": "idle"}, "status"),  # sold is terminal
        ([], {"status": "sold", "reason": "x"}, "status"),  # idle cannot be sold without listing
        ([], {"status": "disposed"}, "reason"),  # disposal needs a reason
        ([], {"status": "leased", "reason": "  "}, "reason"),
        ([], {"status": "idle"}, "status"),  # no change is no transition
        (["disposed"], {"status": "listed"}, "status"),
    ],
)
async def test_invalid_transitions_are_refused(client, db, committee_a, path, body, field) -> None:
    asset = await create(client, committee_a)
    url = f"/api/assets/{asset['id']}/status"
    for status in path:
        response = await client.post(
            url, json={"status": status, "reason": "理由"}, headers=committee_a.headers
        )
        assert response.status_code == 200, response.text
    before = await counts(db)
    response = await client.post(url, json=body, headers=committee_a.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == field
    assert await counts(db) == before
    assert (await client.get(f"/api/assets/{asset['id']}", headers=committee_a.headers)).json()["status"] == (
        path[-1] if path else "idle"
    )


async def test_update_changes_fields_but_not_status(client, committee_a) -> None:
    asset = await create(client, committee_a)
    response = await client.patch(
        f"/api/assets/{asset['id']}",
        json={"name": "东片农田（整治后）", "area": "36", "appraisal": None, "status": "sold"},
        headers=committee_a.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "东片农田（整治后）"
    assert body["area"] == "36.00"
    assert body["appraisal"] is None
    assert body["status"] == "idle"  # status is ignored here: it only changes through its route


async def test_duplicate_code_is_a_conflict(client, db, committee_a, committee_b) -> None:
    first = await create(client, committee_a, code="NT-001")
    await create(client, committee_a, code="NT-002")
    await create(client, committee_b, village=VILLAGE_B, code="NT-001")  # another collective may reuse it
    before = await counts(db)
    response = await client.post(
        f"/api/villages/{VILLAGE_A}/assets", json=asset_body(code="NT-001"), headers=committee_a.headers
    )
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "code"
    response = await client.patch(
        f"/api/assets/{first['id']}", json={"code": "NT-002"}, headers=committee_a.headers
    )
    assert response.status_code == 409
    assert await counts(db) == before


@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        ({"kind": "shop", "area_unit": "mu"}, 422, "area_unit"),
        ({"kind": "equipment", "area_unit": "m2"}, 422, "area_unit"),
        ({"kind": "farmland", "area_unit": "item"}, 422, "area_unit"),
        ({"area": "0"}, 400, "area"),
        ({"area": "-3"}, 400, "area"),
        ({"area": "1.234"}, 400, "area"),
        ({"area": 12.5}, 400, "area"),
        ({"book_value": "-1"}, 400, "book_value"),
        ({"book_value": "10.001"}, 400, "book_value"),
        ({"appraisal": 99.5}, 400, "appraisal"),
        ({"kind": "castle"}, 400, "kind"),
        ({"name": "长" * 101}, 400, "name"),
        ({"code": ""}, 400, "code"),
    ],
)
async def test_bad_input_names_the_field_and_writes_nothing(
    client, db, committee_a, overrides, status, field
) -> None:
    before = await counts(db)
    response = await client.post(
        f"/api/villages/{VILLAGE_A}/assets", json=asset_body(**overrides), headers=committee_a.headers
    )
    assert response.status_code == status, response.text
    problem = response.json()
    assert field in {e["field"] for e in problem["errors"]}
    assert problem["detail"] and problem["detail_en"]
    assert await counts(db) == before


async def test_update_refuses_a_unit_that_does_not_fit_the_kind(client, db, committee_a) -> None:
    asset = await create(client, committee_a, kind="shop", area="50", area_unit="m2")
    before = await counts(db)
    response = await client.patch(
        f"/api/assets/{asset['id']}", json={"area_unit": "mu"}, headers=committee_a.headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "area_unit"
    response = await client.patch(
        f"/api/assets/{asset['id']}", json={"name": None}, headers=committee_a.headers
    )
    assert response.status_code == 422
    assert (await client.get(f"/api/assets/{asset['id']}", headers=committee_a.headers)).json()[
        "area_unit"
    ] == "m2"
    assert await counts(db) == before


async def test_access_by_role_and_village(
    client, db, committee_a, committee_b, supervisor_a, supervisor_b
) -> None:
    asset = await create(client, committee_a)
    one = f"/api/assets/{asset['id']}"
    before = await counts(db)
    # outsiders do not learn that the object exists
    for outsider in (committee_b, supervisor_b):
        assert (await client.get(one, headers=outsider.headers)).status_code == 404
        assert (await client.get(one + "/history", headers=outsider.headers)).status_code == 404
    assert (await client.patch(one, json={"name": "x"}, headers=committee_b.headers)).status_code == 404
    response = await client.post(one + "/status", json={"status": "listed"}, headers=committee_b.headers)
    assert response.status_code == 404
    # the township supervisor reads but may not write
    assert (await client.get(one, headers=supervisor_a.headers)).status_code == 200
    assert (await client.patch(one, json={"name": "x"}, headers=supervisor_a.headers)).status_code == 403
    response = await client.post(one + "/status", json={"status": "listed"}, headers=supervisor_a.headers)
    assert response.status_code == 403
    response = await client.post(
        f"/api/villages/{VILLAGE_A}/assets", json=asset_body(code="X"), headers=supervisor_a.headers
    )
    assert response.status_code == 403
    # another village's list and create are refused
    assert (
        await client.get(f"/api/villages/{VILLAGE_A}/assets", headers=committee_b.headers)
    ).status_code == 403
    assert (
        await client.get(f"/api/villages/{VILLAGE_A}/assets", headers=supervisor_b.headers)
    ).status_code == 403
    response = await client.post(
        f"/api/villages/{VILLAGE_A}/assets", json=asset_body(code="X"), headers=committee_b.headers
    )
    assert response.status_code == 403
    # anonymous callers are asked to authenticate
    assert (await client.get(one)).status_code == 401
    assert (await client.get(f"/api/villages/{VILLAGE_A}/assets")).status_code == 401
    assert await counts(db) == before
    assert (await client.get(one, headers=committee_a.headers)).json()["name"] == "东片农田"


async def test_admin_writes_anywhere(client, admin) -> None:
    asset = await create(
        client, admin, village=VILLAGE_B, code="SB-01", kind="equipment", area="2", area_unit="item"
    )
    assert asset["village_code"] == VILLAGE_B
    response = await client.post(
        f"/api/assets/{asset['id']}/status",
        json={"status": "disposed", "reason": "报废"},
        headers=admin.headers,
    )
    assert response.status_code == 200
    assert response.json()["status"] == "disposed"


async def test_unknown_asset_is_not_found(client, committee_a) -> None:
    assert (await client.get("/api/assets/987654321", headers=committee_a.headers)).status_code == 404
