"""Geography: the shipped villages, their listing API, and the division-file importer."""

from __future__ import annotations

import io

import httpx
import pytest
from sqlalchemy import func, select

from sanzi.platform.geography import DivisionFileError, parse_divisions
from sanzi.platform.models import Collective, District, Township, Village

HEADER = "level,code,name,parent_code,district_code,district_name,township_code,township_name,unit_type,seq3\n"


async def test_shipped_geography_has_all_guangzhou_villages(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/villages", params={"page_size": 10})
    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 1145
    assert len(body["items"]) == 10
    districts = (await client.get("/api/districts")).json()
    assert len(districts) == 7
    assert {d["name"] for d in districts} >= {"白云区", "增城区", "从化区"}
    assert len((await client.get("/api/townships")).json()) == 63


async def test_every_village_has_a_collective(db) -> None:
    villages = await db.scalar(select(func.count()).select_from(Village))
    collectives = await db.scalar(select(func.count()).select_from(Collective))
    assert villages == collectives == 1145


@pytest.mark.parametrize("district", ["440118", "440118000000"])
async def test_filter_by_district_accepts_short_and_full_codes(client: httpx.AsyncClient, district: str) -> None:
    body = (await client.get("/api/villages", params={"district": district, "page_size": 500})).json()
    assert body["total"] == 285  # 增城区 has 285 village committees
    assert all(v["district_name"] == "增城区" for v in body["items"])


async def test_filter_by_township_and_search_by_name(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/villages", params={"township": "440111020", "page_size": 500})).json()
    assert body["total"] > 0
    assert {v["township_name"] for v in body["items"]} == {"龙归街道"}
    found = (await client.get("/api/villages", params={"q": "永兴"})).json()
    assert any(v["code"] == "440111020200" for v in found["items"])
    assert all("永兴" in v["name"] for v in found["items"])
    none = (await client.get("/api/villages", params={"q": "%"})).json()
    assert none["total"] == 0  # wildcards are matched literally


async def test_pagination_is_stable_and_complete(client: httpx.AsyncClient) -> None:
    first = (await client.get("/api/villages", params={"page": 1, "page_size": 500})).json()
    third = (await client.get("/api/villages", params={"page": 3, "page_size": 500})).json()
    assert len(first["items"]) == 500 and len(third["items"]) == 145
    assert first["items"][0]["code"] < first["items"][-1]["code"] < third["items"][0]["code"]


async def test_one_village(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/villages/440111020200")).json()
    assert body["name"] == "永兴村委会"
    assert body["collective_name"] == "永兴经济联合社"
    assert body["district_name"] == "白云区"
    assert (await client.get("/api/villages/440111020299")).status_code == 404


@pytest.mark.parametrize(
    ("params", "field"),
    [({"district": "44011"}, "district"), ({"township": "abc"}, "township"), ({"page": 0}, "page")],
)
async def test_bad_filters_are_problems(client: httpx.AsyncClient, params: dict, field: str) -> None:
    response = await client.get("/api/villages", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["errors"][0]["field"] == field
    assert body["detail"] and body["detail_en"]


def test_parse_names_the_malformed_line() -> None:
    text = HEADER + (
        "3,440111,白云区,4401,440111,白云区,,,district(区),\n"
        "5,44011102020X,坏村委会,440111020,440111,白云区,440111020,龙归街道,village_committee(村委会),200\n"
    )
    with pytest.raises(DivisionFileError) as caught:
        parse_divisions(io.StringIO(text))
    assert caught.value.line == 3
    assert "12" in caught.value.message_zh


@pytest.mark.parametrize(
    ("row", "fragment"),
    [
        ("5,440111020200,X村委会,440111020,440111,白云区,440111020,龙归街道\n", "columns"),
        ("5,440111020200,,440111020,440111,白云区,440111020,龙归街道,village_committee(村委会),200\n", "empty"),
        ("5,440112020200,X村委会,440111020,440111,白云区,440111020,龙归街道,village_committee(村委会),200\n", "parent"),
        ("9,440111020200,X村委会,440111020,440111,白云区,440111020,龙归街道,village_committee(村委会),200\n", "level"),
    ],
)
def test_parse_refuses_malformed_rows(row: str, fragment: str) -> None:
    with pytest.raises(DivisionFileError) as caught:
        parse_divisions(io.StringIO(HEADER + row))
    assert caught.value.line == 2
    assert fragment in caught.value.message_en


def test_parse_keeps_only_village_committees() -> None:
    text = HEADER + (
        "5,440111020200,永兴村委会,440111020,440111,白云区,440111020,龙归街道,village_committee(村委会),200\n"
        "5,440111020001,某社区居委会,440111020,440111,白云区,440111020,龙归街道,residents_committee(居委会),001\n"
    )
    divisions = parse_divisions(io.StringIO(text))
    assert list(divisions.villages) == ["440111020200"]
    assert divisions.skipped == 1
    assert list(divisions.townships) == ["440111020000"]
    assert list(divisions.districts) == ["440111000000"]


async def test_geography_tables_match_the_file(db) -> None:
    assert await db.scalar(select(func.count()).select_from(District)) == 7
    assert await db.scalar(select(func.count()).select_from(Township)) == 63
