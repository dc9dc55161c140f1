"""Cadres, relatives, elections and candidates over HTTP: who may do what, bad input refused with the field
named and nothing written, terms ended rather than history deleted, bulk election dates set-based."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum.cn import ric

from sanzi.platform import events
from sanzi.platform.models import Cadre, CadreRelative, Candidate, Election, Village
from sanzi.platform.settings import local_today
from tests.auction.factories import resident_id_number
from tests.conftest import VILLAGE_A, VILLAGE_B, Actor


async def count(db: AsyncSession, model: Any) -> int:
    return await db.scalar(select(func.count()).select_from(model)) or 0


def child_id_number() -> str:
    body = "440111" + (date.today() - timedelta(days=365 * 8)).strftime("%Y%m%d") + "123"
    return body + ric.calc_check_digit(body + "0")


def cadre_body(**overrides: Any) -> dict[str, Any]:
    return {"name": "王主任", "id_number": resident_id_number(), "phone": "138 0000 1234", "body": "committee",
            "position": "主任", "term_start": "2021-04-01", "term_end": "2026-03-31"} | overrides


def field_of(response: httpx.Response) -> str:
    return response.json()["errors"][0]["field"]


async def test_cadres_and_relatives(client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor,
                                    supervisor_a: Actor, supervisor_b: Actor, committee_b: Actor) -> None:
    created = await client.post(f"/api/villages/{VILLAGE_A}/cadres", json=cadre_body(), headers=committee_a.headers)
    assert created.status_code == 201, created.text
    cadre = created.json()
    assert cadre["phone"] == "13800001234" and cadre["village_code"] == VILLAGE_A
    child = await client.post(f"/api/cadres/{cadre['id']}/relatives", headers=committee_a.headers,
                              json={"name": "王小明", "id_number": child_id_number(), "relation": "子女"})
    assert child.status_code == 201, child.text  # children may be relatives: no adult check
    listed = await client.get(f"/api/villages/{VILLAGE_A}/cadres", headers=supervisor_a.headers)
    assert [r["name"] for r in listed.json()[0]["relatives"]] == ["王小明"]
    # outsiders and read-only supervisors write nothing
    before = await count(db, Cadre)
    assert (await client.post(f"/api/villages/{VILLAGE_A}/cadres", json=cadre_body(),
                              headers=committee_b.headers)).status_code == 403
    assert (await client.post(f"/api/villages/{VILLAGE_A}/cadres", json=cadre_body(),
                              headers=supervisor_a.headers)).status_code == 403
    assert (await client.get(f"/api/villages/{VILLAGE_A}/cadres", headers=supervisor_b.headers)).status_code == 403
    assert (await client.patch(f"/api/cadres/{cadre['id']}", json={"position": "委员"},
                               headers=committee_b.headers)).status_code == 404
    assert (await client.get(f"/api/villages/{VILLAGE_A}/cadres")).status_code == 401
    assert await count(db, Cadre) == before
    deleted = await client.delete(f"/api/relatives/{child.json()['id']}", headers=committee_a.headers)
    assert deleted.status_code == 204 and await count(db, CadreRelative) == 0


async def test_bad_cadre_input_names_the_field_and_writes_nothing(
    client: httpx.AsyncClient, db: AsyncSession, committee_a: Actor
) -> None:
    good = (await client.post(f"/api/villages/{VILLAGE_A}/cadres", json=cadre_body(),
                              headers=committee_a.headers)).json()
    cadres, relatives = await count(db, Cadre), await count(db, CadreRelative)
    cases = [
        (cadre_body(id_number="44011119900101123"), 422, "id_number"),
        (cadre_body(id_number=child_id_number()), 422, "id_number"),  # a cadre is an adult
        (cadre_body(phone="12345"), 422, "phone"),
        (cadre_body(body="council"), 400, "body"),
        (cadre_body(term_end="2020-01-01"), 400, "body"),
        (cadre_body(name=""), 400, "name"),
    ]
    for body, status, field in cases:
        response = await client.post(f"/api/villages/{VILLAGE_A}/cadres", json=body, headers=committee_a.headers)
        assert response.status_code == status, (body, response.text)
        assert field in field_of(response), response.text
    for body, field in [({"name": "某", "id_number": "123", "relation": "子女"}, "id_number"),
                        ({"name": "某", "relation": "朋友"}, "relation")]:
        response = await client.post(f"/api/cadres/{good['id']}/relatives", json=body, headers=committee_a.headers)
        assert response.status_code in (400, 422) and field in field_of(response), response.text
    response = await client.patch(f"/api/cadres/{good['id']}", json={"term_end": "2000-01-01"},
                                  headers=committee_a.headers)
    assert response.status_code == 422 and field_of(response) == "term_end"
    assert (await count(db, Cadre), await count(db, CadreRelative)) == (cadres, relatives)


async def test_delete_ends_a_term_but_keeps_history(client: httpx.AsyncClient, db: AsyncSession,
                                                    committee_a: Actor) -> None:
    served = (await client.post(f"/api/villages/{VILLAGE_A}/cadres", json=cadre_body(term_end=None),
                                headers=committee_a.headers)).json()
    future = (await client.post(f"/api/villages/{VILLAGE_A}/cadres", headers=committee_a.headers,
                                json=cadre_body(term_start="2099-01-01", term_end=None))).json()
    assert (await client.delete(f"/api/cadres/{served['id']}", headers=committee_a.headers)).status_code == 204
    assert (await client.delete(f"/api/cadres/{future['id']}", headers=committee_a.headers)).status_code == 204
    listed = (await client.get(f"/api/villages/{VILLAGE_A}/cadres", headers=committee_a.headers)).json()
    assert [c["id"] for c in listed] == [served["id"]]
    assert listed[0]["term_end"] is not None and date.fromisoformat(listed[0]["term_end"]) <= local_today()


async def test_elections_and_candidates(client: httpx.AsyncClient, db: AsyncSession, supervisor_a: Actor,
                                        supervisor_b: Actor, committee_a: Actor, committee_b: Actor) -> None:
    delivered: list[events.DomainEvent] = []
    unsubscribe = events.subscribe(delivered.extend)
    try:
        created = await client.post(f"/api/villages/{VILLAGE_A}/elections", headers=supervisor_a.headers,
                                    json={"election_date": "2026-04-01", "note": "第十二届"})
    finally:
        unsubscribe()
    assert created.status_code == 201, created.text
    election = created.json()
    assert [(e.kind, e.village_code, e.ids) for e in delivered] == [
        ("election_set", VILLAGE_A, {"election_id": election["id"]})
    ]
    elections = await count(db, Election)
    for actor, status in [(committee_a, 403), (supervisor_b, 403), (None, 401)]:
        response = await client.post(f"/api/villages/{VILLAGE_A}/elections", json={"election_date": "2026-05-01"},
                                     headers=actor.headers if actor else {})
        assert response.status_code == status
    duplicate = await client.post(f"/api/villages/{VILLAGE_A}/elections", json={"election_date": "2026-04-01"},
                                  headers=supervisor_a.headers)
    assert duplicate.status_code == 409 and field_of(duplicate) == "election_date"
    for bad in ({"election_date": "1999-01-01"}, {"election_date": "soon"}, {}):
        response = await client.post(f"/api/villages/{VILLAGE_A}/elections", json=bad, headers=supervisor_a.headers)
        assert response.status_code == 400 and "election_date" in field_of(response), response.text
    assert await count(db, Election) == elections
    public = await client.get(f"/api/villages/{VILLAGE_A}/elections")
    assert public.json() == [{"id": election["id"], "village_code": VILLAGE_A, "election_date": "2026-04-01"}]

    url = f"/api/elections/{election['id']}/candidates"
    added = await client.post(url, headers=supervisor_a.headers,
                              json={"name": "陈候选", "id_number": resident_id_number(), "position": "主任"})
    assert added.status_code == 201, added.text
    refused = [
        (committee_a, {"name": "某", "position": "主任"}, 403),
        (supervisor_b, {"name": "某", "position": "主任"}, 404),
        (supervisor_a, {"name": "某", "id_number": "4401", "position": "主任"}, 422),
        (supervisor_a, {"name": "", "position": "主任"}, 400),
    ]
    for actor, body, status in refused:
        assert (await client.post(url, json=body, headers=actor.headers)).status_code == status
    assert await count(db, Candidate) == 1
    assert [c["name"] for c in (await client.get(url, headers=committee_a.headers)).json()] == ["陈候选"]
    assert (await client.get(url, headers=committee_b.headers)).status_code == 404
    assert (await client.get(url)).status_code == 401


async def test_bulk_election_dates(client: httpx.AsyncClient, db: AsyncSession, admin: Actor,
                                   supervisor_a: Actor) -> None:
    district = VILLAGE_B[:6]
    villages = await db.scalar(select(func.count()).select_from(Village)
                               .where(Village.district_code == district + "000000"))
    before = await count(db, Election)
    await client.post(f"/api/villages/{VILLAGE_B}/elections", json={"election_date": "2026-04-01"},
                      headers=admin.headers)
    body = {"election_date": "2026-04-01", "district_code": district}
    first = await client.post("/api/elections/bulk", json=body, headers=admin.headers)
    assert first.status_code == 201, first.text
    assert first.json() == {"election_date": "2026-04-01", "created": villages - 1, "skipped": 1}
    again = await client.post("/api/elections/bulk", json=body, headers=admin.headers)
    assert again.json()["created"] == 0 and again.json()["skipped"] == villages
    assert await count(db, Election) == before + villages
    for bad, status, field in [({"election_date": "2026-04-01", "district_code": "12"}, 400, "district_code"),
                               ({"election_date": "2026-04-01", "district_code": "440999"}, 422, "district_code"),
                               ({"district_code": district}, 400, "election_date")]:
        response = await client.post("/api/elections/bulk", json=bad, headers=admin.headers)
        assert response.status_code == status and field in field_of(response), response.text
    assert (await client.post("/api/elections/bulk", json=body, headers=supervisor_a.headers)).status_code == 403
    assert await count(db, Election) == before + villages
    city = await client.post("/api/elections/bulk", json={"election_date": "2021-03-31"}, headers=admin.headers)
    assert city.json()["created"] == await db.scalar(select(func.count()).select_from(Village)) == 1145
