"""Contracts through HTTP: creation with the schedule, receipts to the books, arrears, access, bad input."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum.cn import ric, uscc

from sanzi.ledger.models import (
    AssetStatusChange,
    Contract,
    ContractInstallment,
    ContractReceipt,
    JournalEntry,
    JournalLine,
)
from tests.conftest import VILLAGE_A, VILLAGE_B

RESIDENT_ID = "11010519491231002X"  # the standard's own example
COMPANY_CODE = "91440101" + "MA59XK2B0"  # a made-up code, completed with its check character below
COMPANY_CODE += uscc.calc_check_digit(COMPANY_CODE)
BAD_COMPANY_CODE = COMPANY_CODE[:-1] + ("1" if COMPANY_CODE[-1] != "1" else "2")  # wrong check character
assert ric.is_valid(RESIDENT_ID) and uscc.is_valid(COMPANY_CODE) and not uscc.is_valid(BAD_COMPANY_CODE)


async def make_asset(client: Any, actor: Any, village: str = VILLAGE_A, **overrides: Any) -> dict[str, Any]:
    body = {
        "code": "NT-001",
        "name": "东片农田",
        "kind": "farmland",
        "area": "10",
        "area_unit": "mu",
        "location": "东片",
        "book_value": "0",
    }
    body.update(overrides)
    response = await client.post(f"/api/villages/{village}/assets", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    return response.json()


def contract_body(asset_id: int, **overrides: Any) -> dict[str, Any]:
    body = {
        "number": "HT-2024-001",
        "asset_id": asset_id,
        "trade_type": "contracting",
        "counterparty_name": "张三",
        "counterparty_id_number": RESIDENT_ID,
        "start_date": "2024-01-01",
        "term_years": 10,
        "price_basis": "per_mu_year",
        "unit_price": "800",
        "step_ups": [{"from_year": 5, "percent": "5"}],
        "payment_frequency": "annual",
        "signed_on": "2023-12-20",
        "origin": "direct",
        "origin_reason": "原承包户续包，经村民代表会议表决通过",
    }
    body.update(overrides)
    return body


async def create_contract(
    client: Any, actor: Any, asset_id: int, village: str = VILLAGE_A, **overrides: Any
) -> dict:
    response = await client.post(
        f"/api/villages/{village}/contracts", json=contract_body(asset_id, **overrides), headers=actor.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def counts(db: AsyncSession) -> tuple[int, ...]:
    tables = (Contract, ContractInstallment, ContractReceipt, JournalEntry, JournalLine, AssetStatusChange)
    return tuple([await db.scalar(select(func.count()).select_from(t)) or 0 for t in tables])


async def test_a_direct_contract_gets_its_schedule_and_leases_the_asset(
    client, committee_a, supervisor_a
) -> None:
    asset = await make_asset(client, committee_a)
    contract = await create_contract(client, committee_a, asset["id"])
    assert contract["term_months"] == 120
    assert contract["end_date"] == "2033-12-31"
    assert contract["area"] == "10.00"  # defaulted from the asset, which is in mu
    assert contract["unit_price"] == "800.00"
    assert contract["step_ups"] == [{"from_year": 5, "percent": "5"}]
    assert [i["amount"] for i in contract["installments"]] == ["8000.00"] * 4 + ["8400.00"] * 6
    assert contract["installments"][4]["due_date"] == "2028-01-01"
    assert contract["total_value"] == "82400.00"
    assert contract["origin"] == "direct" and contract["status"] == "active"

    again = await client.get(f"/api/contracts/{contract['id']}", headers=supervisor_a.headers)
    assert again.status_code == 200
    assert again.json() == contract
    asset_now = (await client.get(f"/api/assets/{asset['id']}", headers=committee_a.headers)).json()
    assert asset_now["status"] == "leased"
    history = (await client.get(f"/api/assets/{asset['id']}/history", headers=committee_a.headers)).json()
    assert history[-1]["to_status"] == "leased" and "HT-2024-001" in history[-1]["reason"]


async def test_term_by_end_date_total_price_and_company_counterparty(client, committee_a) -> None:
    asset = await make_asset(client, committee_a, code="SP-01", kind="shop", area="120", area_unit="m2")
    contract = await create_contract(
        client,
        committee_a,
        asset["id"],
        number="HT-2024-002",
        trade_type="lease",
        counterparty_name="广州某某商贸有限公司",
        counterparty_id_number=COMPANY_CODE.lower(),
        term_years=None,
        end_date="2026-12-31",
        price_basis="total",
        unit_price="100000.01",
        step_ups=[],
        payment_frequency="annual",
    )
    assert contract["counterparty_id_number"] == COMPANY_CODE
    assert contract["term_months"] == 36
    assert [i["amount"] for i in contract["installments"]] == ["33333.33", "33333.33", "33333.35"]
    assert contract["total_value"] == "100000.01"
    assert contract["area"] is None


async def test_list_filters_by_status_asset_and_counterparty(client, committee_a, supervisor_a) -> None:
    first = await make_asset(client, committee_a, code="NT-001")
    second = await make_asset(client, committee_a, code="NT-002")
    await create_contract(client, committee_a, first["id"], number="A-1", counterparty_name="张三")
    await create_contract(
        client, committee_a, second["id"], number="A-2", counterparty_name="李四", counterparty_id_number=None
    )
    url = f"/api/villages/{VILLAGE_A}/contracts"
    everything = (await client.get(url, headers=supervisor_a.headers)).json()
    assert everything["total"] == 2 and "installments" not in everything["items"][0]
    by_asset = (await client.get(url, params={"asset": second["id"]}, headers=committee_a.headers)).json()
    assert [c["number"] for c in by_asset["items"]] == ["A-2"]
    by_name = (await client.get(url, params={"counterparty": "张"}, headers=committee_a.headers)).json()
    assert [c["number"] for c in by_name["items"]] == ["A-1"]
    by_id = (
        await client.get(url, params={"counterparty": RESIDENT_ID.lower()}, headers=committee_a.headers)
    ).json()
    assert [c["number"] for c in by_id["items"]] == ["A-1"]
    ended = (await client.get(url, params={"status": "terminated"}, headers=committee_a.headers)).json()
    assert ended["total"] == 0
    paged = (await client.get(url, params={"page_size": 1, "page": 2}, headers=committee_a.headers)).json()
    assert paged["total"] == 2 and len(paged["items"]) == 1


async def test_receipts_post_to_the_books_and_pay_the_oldest_installments(client, db, committee_a) -> None:
    asset = await make_asset(client, committee_a)
    contract = await create_contract(
        client, committee_a, asset["id"], payment_frequency="semiannual", step_ups=[]
    )
    url = f"/api/contracts/{contract['id']}"
    response = await client.post(
        url + "/receipts",
        json={"amount": "5000.00", "received_on": "2024-01-05", "account": "bank", "client_key": "r-1"},
        headers=committee_a.headers,
    )
    assert response.status_code == 201, response.text
    receipt = response.json()
    assert receipt["amount"] == "5000.00"

    entry = await db.scalar(select(JournalEntry).where(JournalEntry.id == receipt["entry_id"]))
    assert entry.source == "contract_receipt"
    assert entry.counterparty == "张三"
    assert entry.total_fen == 5000_00
    assert [(line.account.code, line.debit_fen, line.credit_fen) for line in entry.lines] == [
        ("102", 5000_00, 0),
        ("50101", 0, 5000_00),
    ]

    # the same client key and body answers the first receipt and posts nothing more
    before = await counts(db)
    again = await client.post(
        url + "/receipts",
        json={"amount": "5000.00", "received_on": "2024-01-05", "account": "bank", "client_key": "r-1"},
        headers=committee_a.headers,
    )
    assert again.status_code == 200 and again.json()["id"] == receipt["id"]
    assert await counts(db) == before
    # the same key with another body is refused
    other = await client.post(
        url + "/receipts",
        json={"amount": "10.00", "received_on": "2024-01-05", "account": "bank", "client_key": "r-1"},
        headers=committee_a.headers,
    )
    assert other.status_code == 409 and other.json()["errors"][0]["field"] == "client_key"
    assert await counts(db) == before

    cash = await client.post(
        url + "/receipts",
        json={"amount": "1000", "received_on": "2024-08-01", "account": "cash"},
        headers=committee_a.headers,
    )
    assert cash.status_code == 201
    cash_entry = await db.scalar(select(JournalEntry).where(JournalEntry.id == cash.json()["entry_id"]))
    assert cash_entry.lines[0].account.code == "101"

    # semiannual: 4,000 per half year; 6,000 received by 2024-08-01 pays #1 and half of #2
    schedule = (
        await client.get(url + "/schedule", params={"as_of": "2024-09-01"}, headers=committee_a.headers)
    ).json()
    lines = schedule["installments"]
    assert [(x["amount"], x["received"], x["outstanding"], x["overdue"]) for x in lines[:3]] == [
        ("4000.00", "4000.00", "0.00", False),
        ("4000.00", "2000.00", "2000.00", True),
        ("4000.00", "0.00", "4000.00", False),
    ]
    assert schedule["received"] == "6000.00"
    assert schedule["overdue"] == "2000.00"
    assert schedule["outstanding"] == "74000.00"
    # as of a date before the cash receipt, only the first receipt counts
    early = (
        await client.get(url + "/schedule", params={"as_of": "2024-07-02"}, headers=committee_a.headers)
    ).json()
    assert early["received"] == "5000.00" and early["overdue"] == "3000.00"


async def test_arrears_of_a_village(client, committee_a, committee_b, supervisor_a) -> None:
    a1 = await make_asset(client, committee_a, code="NT-001")
    a2 = await make_asset(client, committee_a, code="NT-002")
    a3 = await make_asset(client, committee_a, code="NT-003")
    paid_up = await create_contract(client, committee_a, a1["id"], number="C-1", step_ups=[])
    behind = await create_contract(
        client,
        committee_a,
        a2["id"],
        number="C-2",
        step_ups=[],
        payment_frequency="quarterly",
        counterparty_name="李四",
    )
    await create_contract(
        client, committee_a, a3["id"], number="C-3", start_date="2030-01-01"
    )  # nothing due yet
    b_asset = await make_asset(client, committee_b, village=VILLAGE_B)
    await create_contract(client, committee_b, b_asset["id"], village=VILLAGE_B, number="B-1")

    for contract, amount in ((paid_up, "8000"), (behind, "2500")):
        response = await client.post(
            f"/api/contracts/{contract['id']}/receipts",
            json={"amount": amount, "received_on": "2024-01-02"},
            headers=committee_a.headers,
        )
        assert response.status_code == 201, response.text

    url = f"/api/villages/{VILLAGE_A}/arrears"
    arrears = (await client.get(url, params={"as_of": "2024-07-15"}, headers=supervisor_a.headers)).json()
    # C-2: 2,000 a quarter, due 1 Jan, 1 Apr, 1 Jul = 6,000; 2,500 received → 3,500 overdue since 1 Apr
    assert arrears["total_overdue"] == "3500.00"
    assert arrears["contracts"] == [
        {
            "contract_id": behind["id"],
            "number": "C-2",
            "counterparty_name": "李四",
            "asset_id": a2["id"],
            "due": "6000.00",
            "received": "2500.00",
            "overdue": "3500.00",
            "oldest_due_date": "2024-04-01",
        }
    ]
    later = (await client.get(url, params={"as_of": "2025-01-02"}, headers=committee_a.headers)).json()
    # C-1: 16,000 due − 8,000 received; C-2: 10,000 − 2,500; the largest first
    assert [(c["number"], c["overdue"]) for c in later["contracts"]] == [
        ("C-1", "8000.00"),
        ("C-2", "7500.00"),
    ]
    assert later["total_overdue"] == "15500.00"
    on_day = (await client.get(url, params={"as_of": "2024-01-01"}, headers=committee_a.headers)).json()
    assert on_day["contracts"] == [] and on_day["total_overdue"] == "0.00"  # due today is not yet overdue
    assert (await client.get(url, headers=committee_b.headers)).status_code == 403


@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        ({"asset_id": 987654321}, 422, "asset_id"),
        ({"counterparty_id_number": "110105194912310021"}, 400, "counterparty_id_number"),
        ({"counterparty_id_number": BAD_COMPANY_CODE}, 400, "counterparty_id_number"),
        ({"unit_price": "-800"}, 400, "unit_price"),
        ({"unit_price": "800.005"}, 400, "unit_price"),
        ({"unit_price": 800.5}, 400, "unit_price"),
        ({"unit_price": "0"}, 400, "unit_price"),
        ({"term_years": None, "end_date": "2023-12-31"}, 422, "end_date"),
        ({"term_years": None, "end_date": "2024-03-15"}, 422, "end_date"),
        ({"term_months": 24}, 422, "term_months"),
        ({"term_years": None}, 422, "term_months"),
        ({"term_years": 3}, 422, "step_ups[0].from_year"),
        ({"step_ups": [{"from_year": 1, "percent": "5"}]}, 400, "step_ups[0].from_year"),
        ({"step_ups": [{"from_year": 3, "percent": 5.5}]}, 400, "step_ups[0].percent"),
        (
            {"step_ups": [{"from_year": 3, "percent": "5"}, {"from_year": 3, "percent": "2"}]},
            422,
            "step_ups[1].from_year",
        ),
        ({"price_basis": "total"}, 422, "step_ups"),
        ({"origin_reason": None}, 422, "origin_reason"),
        ({"origin_reason": "   "}, 422, "origin_reason"),
        ({"origin": "auction"}, 422, "origin"),
        ({"area": "10.5"}, 422, "area"),  # more than the asset has
        (
            {"unit_price": "0.01", "payment_frequency": "monthly", "step_ups": [], "area": "1"},
            422,
            "unit_price",
        ),
        ({"payment_frequency": "weekly"}, 400, "payment_frequency"),
        ({"number": ""}, 400, "number"),
    ],
)
async def test_bad_contracts_name_the_field_and_write_nothing(
    client, db, committee_a, overrides, status, field
):
    asset = await make_asset(client, committee_a)
    before = await counts(db)
    body = contract_body(asset["id"])
    body.update(overrides)
    response = await client.post(
        f"/api/villages/{VILLAGE_A}/contracts", json=body, headers=committee_a.headers
    )
    assert response.status_code == status, response.text
    problem = response.json()
    assert field in {e["field"] for e in problem["errors"]}, problem
    assert problem["detail"] and problem["detail_en"]
    assert await counts(db) == before
    assert (await client.get(f"/api/assets/{asset['id']}", headers=committee_a.headers)).json()[
        "status"
    ] == "idle"


async def test_refusals_that_depend_on_other_rows(client, db, committee_a, committee_b) -> None:
    asset = await make_asset(client, committee_a)
    shop = await make_asset(client, committee_a, code="SP-1", kind="shop", area="50", area_unit="m2")
    foreign = await make_asset(client, committee_b, village=VILLAGE_B)
    await create_contract(client, committee_a, asset["id"])
    before = await counts(db)
    cases = [
        (contract_body(asset["id"]), 409, "number"),  # duplicate number
        (contract_body(foreign["id"], number="X-1"), 422, "asset_id"),  # another village's asset
        (contract_body(shop["id"], number="X-2"), 422, "area"),  # per mu, but the shop is in m²
        (
            contract_body(shop["id"], number="X-3", trade_type="transfer", price_basis="total", step_ups=[]),
            422,
            "trade_type",
        ),  # a transfer of an asset never listed
    ]
    for body, status, field in cases:
        response = await client.post(
            f"/api/villages/{VILLAGE_A}/contracts", json=body, headers=committee_a.headers
        )
        assert response.status_code == status, response.text
        assert response.json()["errors"][0]["field"] == field
    assert await counts(db) == before


async def test_bad_receipts_write_nothing(client, db, committee_a) -> None:
    asset = await make_asset(client, committee_a)
    contract = await create_contract(
        client, committee_a, asset["id"], term_years=1, step_ups=[]
    )  # 8,000 in all
    url = f"/api/contracts/{contract['id']}/receipts"
    before = await counts(db)
    cases = [
        ({"amount": "0", "received_on": "2024-01-02"}, 400, "amount"),
        ({"amount": 100.5, "received_on": "2024-01-02"}, 400, "amount"),
        ({"amount": "-5", "received_on": "2024-01-02"}, 400, "amount"),
        ({"amount": "1.001", "received_on": "2024-01-02"}, 400, "amount"),
        ({"amount": "8000.01", "received_on": "2024-01-02"}, 422, "amount"),  # more than is owed
        ({"amount": "100", "received_on": "2099-01-01"}, 422, "received_on"),
        ({"amount": "100", "received_on": "2024-01-02", "account": "alipay"}, 400, "account"),
    ]
    for body, status, field in cases:
        response = await client.post(url, json=body, headers=committee_a.headers)
        assert response.status_code == status, response.text
        assert field in {e["field"] for e in response.json()["errors"]}
    assert await counts(db) == before


async def test_access_to_contracts(
    client, db, committee_a, committee_b, supervisor_a, supervisor_b, admin
) -> None:
    asset = await make_asset(client, committee_a)
    contract = await create_contract(client, committee_a, asset["id"])
    one = f"/api/contracts/{contract['id']}"
    before = await counts(db)
    for outsider in (committee_b, supervisor_b):
        assert (await client.get(one, headers=outsider.headers)).status_code == 404
        assert (await client.get(one + "/schedule", headers=outsider.headers)).status_code == 404
        response = await client.get(f"/api/villages/{VILLAGE_A}/contracts", headers=outsider.headers)
        assert response.status_code == 403
    receipt = {"amount": "100", "received_on": "2024-01-02"}
    assert (
        await client.post(one + "/receipts", json=receipt, headers=committee_b.headers)
    ).status_code == 404
    assert (
        await client.post(one + "/receipts", json=receipt, headers=supervisor_a.headers)
    ).status_code == 403
    response = await client.post(
        f"/api/villages/{VILLAGE_A}/contracts",
        json=contract_body(asset["id"], number="S-1"),
        headers=supervisor_a.headers,
    )
    assert response.status_code == 403
    response = await client.post(
        f"/api/villages/{VILLAGE_A}/contracts",
        json=contract_body(asset["id"], number="S-1"),
        headers=committee_b.headers,
    )
    assert response.status_code == 403
    assert (await client.get(one)).status_code == 401
    assert await counts(db) == before
    for reader in (supervisor_a, admin):
        assert (await client.get(one + "/schedule", headers=reader.headers)).status_code == 200
    assert (await client.post(one + "/receipts", json=receipt, headers=admin.headers)).status_code == 201
