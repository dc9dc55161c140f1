"""The warnings API: who sees which alerts, filters and pages, evidence links, the rule catalogue and its
parameters, the on-demand scan, and every route declaring its access."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.models import Setting
from sanzi.platform.parameters import get_parameter
from sanzi.warnings import engine as warnings_engine
from sanzi.warnings.models import Alert
from tests.conftest import VILLAGE_A, VILLAGE_B, Actor
from tests.warnings.test_engine import TEST_RULES, add_contract
from tests.warnings.test_review import make_alert


@pytest.fixture(autouse=True)
def test_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warnings_engine, "all_rules", lambda: TEST_RULES)


def ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return sorted(item["id"] for item in response.json()["items"])


async def test_each_role_sees_its_own_alerts_with_filters_and_pages(
    client: httpx.AsyncClient, db: AsyncSession, admin: Actor, supervisor_a: Actor, supervisor_b: Actor,
    committee_a: Actor, committee_b: Actor, make_user: Any,
) -> None:
    red_a = await make_alert(db, VILLAGE_A, severity="red", family="bid", rule_id="TEST-BIG-CONTRACT")
    yellow_a = await make_alert(db, VILLAGE_A, severity="yellow", family="election", status="assigned")
    red_b = await make_alert(db, VILLAGE_B, severity="red", family="undisclosed")

    assert ids(await client.get("/api/alerts", headers=admin.headers)) == sorted([red_a.id, yellow_a.id, red_b.id])
    assert ids(await client.get("/api/alerts", headers=supervisor_a.headers)) == sorted([red_a.id, yellow_a.id])
    assert ids(await client.get("/api/alerts", headers=supervisor_b.headers)) == [red_b.id]
    assert ids(await client.get("/api/alerts", headers=committee_a.headers)) == sorted([red_a.id, yellow_a.id])
    assert ids(await client.get("/api/alerts", headers=committee_b.headers)) == [red_b.id]
    from sanzi.platform.models import Role

    bidder = await make_user(Role.BIDDER)
    assert (await client.get("/api/alerts", headers=bidder.headers)).status_code == 403
    assert (await client.get("/api/alerts")).status_code == 401

    get = lambda **params: client.get("/api/alerts", params=params, headers=admin.headers)  # noqa: E731
    assert ids(await get(severity="red")) == sorted([red_a.id, red_b.id])
    assert ids(await get(family="election")) == [yellow_a.id]
    assert ids(await get(status="assigned")) == [yellow_a.id]
    assert ids(await get(rule="TEST-BIG-CONTRACT")) == [red_a.id]
    assert ids(await get(village=VILLAGE_B)) == [red_b.id]
    assert ids(await get(township=VILLAGE_A[:9])) == sorted([red_a.id, yellow_a.id])
    first = (await get(page_size=2, page=1)).json()
    second = (await get(page_size=2, page=2)).json()
    assert first["total"] == 3 and len(first["items"]) == 2 and len(second["items"]) == 1
    assert [a["severity"] for a in first["items"]] == ["red", "red"]  # most serious first
    assert first["items"][0]["rule_title"] in (None, "大额合同（测试）")
    for params in ({"severity": "purple"}, {"page": "0"}, {"village": "12x"}, {"overdue": "maybe"}):
        assert (await get(**params)).status_code == 400, params


async def test_an_alert_links_its_evidence_and_outsiders_get_404(
    client: httpx.AsyncClient, db: AsyncSession, supervisor_a: Actor, supervisor_b: Actor, committee_b: Actor
) -> None:
    alert = await make_alert(db, VILLAGE_A, evidence={"listings": [12], "contracts": [7], "bids": [3, 4]})
    detail = await client.get(f"/api/alerts/{alert.id}", headers=supervisor_a.headers)
    assert detail.status_code == 200
    links = {(link["kind"], link["id"]): link["href"] for link in detail.json()["evidence_links"]}
    assert links == {
        ("listings", "12"): "/api/listings/12",
        ("contracts", "7"): "/api/contracts/7",
        ("bids", "3"): None,
        ("bids", "4"): None,
    }
    assert detail.json()["history"][0]["action"] == "raised"
    for outsider in (supervisor_b, committee_b):
        assert (await client.get(f"/api/alerts/{alert.id}", headers=outsider.headers)).status_code == 404


async def test_the_rule_catalogue_is_public_and_parameters_are_checked(
    client: httpx.AsyncClient, db: AsyncSession, admin: Actor, supervisor_a: Actor
) -> None:
    rules = await client.get("/api/rules")
    assert rules.status_code == 200
    big = next(r for r in rules.json() if r["id"] == "TEST-BIG-CONTRACT")
    assert big["severity"] == "orange" and big["family"] == "undisclosed" and "大额" in big["title"]
    assert big["basis"].startswith("Test rule") and big["triggers"] == ["contract_recorded"]
    assert big["parameters"] == [{
        "name": "threshold_yuan", "key": "warnings.TEST-BIG-CONTRACT.threshold_yuan", "kind": "int",
        "default": 100000, "value": 100000, "minimum": 1.0, "maximum": 1e9, "description": "门槛",
    }]

    key = "warnings.TEST-BIG-CONTRACT.threshold_yuan"
    url = "/api/rules/TEST-BIG-CONTRACT/parameters/threshold_yuan"
    district = VILLAGE_B[:6]
    settings_before = await db.scalar(select(func.count()).select_from(Setting))
    for body, status in [
        ({"value": "lots"}, 422), ({"value": 1.5}, 422), ({"value": 0}, 422), ({"value": True}, 422),
        ({"value": 10**10}, 422), ({"value": 5, "district_code": "999999"}, 422), ({}, 400),
        ({"value": 5, "extra": 1}, 400),
    ]:
        response = await client.put(url, json=body, headers=admin.headers)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.put(url, json={"value": 5}, headers=supervisor_a.headers)).status_code == 403
    assert (await client.put("/api/rules/NOPE/parameters/x", json={"value": 5}, headers=admin.headers)).status_code == 404
    assert (await client.put("/api/rules/TEST-BIG-CONTRACT/parameters/x", json={"value": 5}, headers=admin.headers)).status_code == 404
    assert await db.scalar(select(func.count()).select_from(Setting)) == settings_before
    assert await get_parameter(db, key, district + "000000") == 100_000

    ok = await client.put(url, json={"value": 250_000, "district_code": district}, headers=admin.headers)
    assert ok.status_code == 200 and ok.json()["value"] == 250_000 and ok.json()["district_code"] == district + "000000"
    assert await get_parameter(db, key, district + "000000") == 250_000
    assert await get_parameter(db, key, VILLAGE_A[:6] + "000000") == 100_000
    shown = (await client.get("/api/rules", params={"district": district})).json()
    assert next(r for r in shown if r["id"] == "TEST-BIG-CONTRACT")["parameters"][0]["value"] == 250_000


async def test_an_admin_runs_a_scan(
    client: httpx.AsyncClient, db: AsyncSession, admin: Actor, supervisor_a: Actor
) -> None:
    await add_contract(db, VILLAGE_A, 200_000)
    await db.commit()
    assert (await client.post("/api/warnings/scan", headers=supervisor_a.headers)).status_code == 403
    assert (await client.post("/api/warnings/scan", params={"district": "999999"}, headers=admin.headers)).status_code == 404
    assert await db.scalar(select(func.count()).select_from(Alert)) == 0
    first = await client.post("/api/warnings/scan", headers=admin.headers)
    assert first.status_code == 200, first.text
    assert first.json()["raised"] == 1 and first.json()["index_month"]
    again = (await client.post("/api/warnings/scan", headers=admin.headers)).json()
    assert (again["raised"], again["updated"], again["unchanged"]) == (0, 0, 1)


def test_every_warnings_route_declares_access_and_an_operation_id(app: Litestar) -> None:
    paths = [r for r in app.routes if r.path.startswith(("/api/alerts", "/api/rules", "/api/warnings", "/api/integrity"))
             or r.path.endswith("/integrity")]
    assert len(paths) >= 10
    for route in paths:
        for handler in route.route_handlers:
            if "OPTIONS" in handler.http_methods:
                continue
            assert handler.opt.get("access") and handler.operation_id, route.path
