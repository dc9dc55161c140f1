"""The committee's asset, books and contract pages and each village's public disclosure, through a browser's
session: forms that refuse bad input beside the field and write nothing, and a committee that reaches only its
own village (supervisors of the area read only)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.ledger.models import Asset, AssetStatusChange, Contract, ContractReceipt, JournalEntry
from tests.conftest import VILLAGE_A, VILLAGE_B, Actor

ASSET_FORM = {
    "code": "YT-01",
    "name": "北围鱼塘",
    "kind": "fish_pond",
    "area": "48.6",
    "area_unit": "mu",
    "location": "村北",
    "book_value": "12,000.00",
    "appraisal": "",
    "appraised_on": "",
    "description": "",
}


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return await db.scalar(select(func.count()).select_from(model).where(*where)) or 0


def invalid_fields(html: str) -> set[str]:
    """The names of the form fields marked invalid on the page."""
    return set(re.findall(r'name="([^"]+)"[^>]*aria-invalid="true"', html, re.DOTALL)) | set(
        re.findall(r'<select id="f-([^"]+)" name="[^"]+"[^>]*aria-invalid="true"', html, re.DOTALL)
    )


def error_beside(html: str, field: str) -> str:
    match = re.search(rf'id="f-{re.escape(field)}-error">([^<]+)<', html)
    assert match, f"no error shown beside {field}"
    return match.group(1)


def rows(html: str, table_id: str) -> list[str]:
    """The text of each body row of a table, tags stripped."""
    table = re.search(rf'<table id="{table_id}".*?<tbody>(.*?)</tbody>', html, re.DOTALL)
    assert table, f"no table {table_id}"
    return [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
        for row in re.findall(r"<tr>(.*?)</tr>", table.group(1), re.DOTALL)
    ]


async def test_committee_registers_edits_and_retires_an_asset_with_its_history(
    browser: Any, committee_a: Actor, db: AsyncSession
) -> None:
    visitor = await browser(committee_a)
    empty = await visitor.get("/committee/assets")
    assert empty.status_code == 200 and "暂无记录" in empty.text

    bad = await visitor.post("/committee/assets/new", {**ASSET_FORM, "area": "四十亩", "kind": ""})
    assert bad.status_code == 400
    assert {"area", "kind"} <= invalid_fields(bad.text)
    assert "面积须为正数" in error_beside(bad.text, "area") and error_beside(bad.text, "kind") == "请填写此项"
    assert 'value="北围鱼塘"' in bad.text  # what was typed is kept
    shop_in_mu = await visitor.post("/committee/assets/new", {**ASSET_FORM, "kind": "shop"})
    assert shop_in_mu.status_code == 400 and "平方米" in error_beside(shop_in_mu.text, "area_unit")
    assert await count(db, Asset, Asset.village_code == VILLAGE_A) == 0

    created = await visitor.post("/committee/assets/new", ASSET_FORM)
    assert created.status_code == 303
    asset_id = int(re.search(r"/committee/assets/(\d+)", created.headers["location"]).group(1))
    asset = await db.get(Asset, asset_id)
    assert asset is not None and asset.book_value_fen == 1_200_000 and str(asset.area) == "48.60"
    page = await visitor.get(created.headers["location"])
    assert "已登记资产“北围鱼塘”" in page.text and "¥12,000.00" in page.text

    listed = await visitor.get("/committee/assets?kind=fish_pond")
    assert [row.split()[1] for row in rows(listed.text, "assets")] == ["北围鱼塘"]
    assert "暂无记录" in (await visitor.get("/committee/assets?kind=shop")).text
    duplicate = await visitor.post("/committee/assets/new", {**ASSET_FORM, "name": "另一个"})
    assert duplicate.status_code == 400 and "已存在" in error_beside(duplicate.text, "code")

    edited = await visitor.post(
        f"/committee/assets/{asset_id}/edit", {**ASSET_FORM, "name": "北围大鱼塘", "area": ""}
    )
    assert edited.status_code == 400 and "area" in invalid_fields(edited.text)
    edited = await visitor.post(f"/committee/assets/{asset_id}/edit", {**ASSET_FORM, "name": "北围大鱼塘"})
    assert edited.status_code == 303
    await db.refresh(asset)
    assert asset.name == "北围大鱼塘"

    no_reason = await visitor.post(
        f"/committee/assets/{asset_id}/status", {"status": "disposed", "reason": ""}
    )
    assert no_reason.status_code == 400 and "须说明理由" in error_beside(no_reason.text, "reason")
    assert await count(db, AssetStatusChange, AssetStatusChange.asset_id == asset_id) == 1
    retired = await visitor.post(
        f"/committee/assets/{asset_id}/status", {"status": "disposed", "reason": "塘基崩塌报废"}
    )
    assert retired.status_code == 303
    history = rows((await visitor.get(f"/committee/assets/{asset_id}")).text, "history")
    assert len(history) == 2 and "闲置" in history[0]
    assert (
        "已处置" in history[1]
        and "塘基崩塌报废" in history[1]
        and committee_a.user.display_name in history[1]
    )


async def test_a_committee_reaches_only_its_village_and_supervisors_read_only(
    browser: Any,
    client: httpx.AsyncClient,
    committee_a: Actor,
    committee_b: Actor,
    supervisor_a: Actor,
    supervisor_b: Actor,
    admin: Actor,
) -> None:
    made = await client.post(
        f"/api/villages/{VILLAGE_A}/assets",
        headers=committee_a.headers,
        json={
            "code": "A-1",
            "name": "东片水田",
            "kind": "farmland",
            "area": "120",
            "area_unit": "mu",
            "location": "村东",
        },
    )
    asset_id = made.json()["id"]
    other = await browser(committee_b)
    assert (await other.get(f"/committee/assets/{asset_id}")).status_code == 404
    assert (await other.get(f"/committee/assets?village={VILLAGE_A}")).status_code == 403
    assert (await other.post(f"/committee/assets/{asset_id}/edit", {**ASSET_FORM})).status_code == 404
    own = await other.get("/committee/assets")
    assert own.status_code == 200 and "东片水田" not in own.text

    reader = await browser(supervisor_a)
    chooser = await reader.get("/committee/assets")
    assert chooser.status_code == 200 and f"?village={VILLAGE_A}" in chooser.text
    assert f"?village={VILLAGE_B}" not in chooser.text
    seen = await reader.get(f"/committee/assets?village={VILLAGE_A}")
    assert seen.status_code == 200 and "东片水田" in seen.text
    assert "只能查看，不能修改" in seen.text and "/committee/assets/new" not in seen.text
    detail = await reader.get(f"/committee/assets/{asset_id}?village={VILLAGE_A}")
    assert detail.status_code == 200 and '<form method="post"' not in detail.text.split("<main")[1]
    assert (await reader.get(f"/committee/assets/{asset_id}/edit")).status_code == 403
    assert (
        await reader.post(f"/committee/assets/{asset_id}/status", {"status": "disposed"})
    ).status_code == 403
    assert (await (await browser(supervisor_b)).get(f"/committee/assets/{asset_id}")).status_code == 404

    for path in ("/committee/assets/", "/committee/books/entries/", "/committee/contracts/", "/committee/listings/"):
        assert (await reader.get(f"{path}{2**63}")).status_code == 404  # beyond any stored id
    admin_view = await (await browser(admin)).get(f"/committee/assets?village={VILLAGE_A}")
    assert admin_view.status_code == 200 and "/committee/assets/new?village=" in admin_view.text
    anonymous = await (await browser()).get("/committee/books")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=")


async def test_posting_an_entry_refuses_unbalanced_lines_and_posts_a_double_submit_once(
    browser: Any, committee_a: Actor, db: AsyncSession
) -> None:
    visitor = await browser(committee_a)
    form_page = await visitor.get("/committee/books/new")
    assert form_page.status_code == 200
    client_key = re.search(r'name="client_key" value="([0-9a-f]+)"', form_page.text).group(1)
    entry = {
        "client_key": client_key,
        "line_count": "3",
        "entry_date": "2025-03-01",
        "memo": "收取鱼塘承包款",
        "counterparty": "张三",
        "lines.0.account_code": "102",
        "lines.0.debit": "¥1,000.50",
        "lines.0.credit": "",
        "lines.1.account_code": "",
        "lines.1.debit": "",
        "lines.1.credit": "",
        "lines.2.account_code": "50101",
        "lines.2.debit": "",
        "lines.2.credit": "1000.00",
    }
    before = await count(db, JournalEntry)
    unbalanced = await visitor.post("/committee/books/new", entry)
    assert unbalanced.status_code == 400 and "借贷不平衡" in unbalanced.text
    assert 'value="¥1,000.50"' in unbalanced.text  # the lines are shown again as typed
    both_sides = await visitor.post(
        "/committee/books/new", {**entry, "lines.2.debit": "5", "lines.2.credit": "1000.50"}
    )
    assert both_sides.status_code == 400 and "借方或贷方" in error_beside(both_sides.text, "lines.2.credit")
    assert await count(db, JournalEntry) == before

    more = await visitor.post("/committee/books/new", {**entry, "add_line": "1"})
    assert more.status_code == 200 and 'name="lines.3.debit"' in more.text
    assert await count(db, JournalEntry) == before

    balanced = {**entry, "lines.2.credit": "1,000.50"}
    first = await visitor.post("/committee/books/new", balanced)
    again = await visitor.post("/committee/books/new", balanced)
    assert first.status_code == again.status_code == 303
    assert first.headers["location"] == again.headers["location"]
    assert await count(db, JournalEntry) == before + 1
    posted = await visitor.get(first.headers["location"])
    assert "凭证已入账" in posted.text and "¥1,000.50" in posted.text
    stored = await db.scalar(select(JournalEntry).where(JournalEntry.client_key == client_key))
    assert stored is not None and stored.total_fen == 100_050 and stored.hash in posted.text
    assert [line.split()[1] for line in rows(posted.text, "lines")] == ["102", "50101"]

    entry_id = stored.id
    reversed_ = await visitor.post(
        f"/committee/books/entries/{entry_id}/reverse", {"entry_date": "", "memo": ""}
    )
    assert reversed_.status_code == 303 and await count(db, JournalEntry) == before + 2
    twice = await visitor.post(f"/committee/books/entries/{entry_id}/reverse", {})
    assert twice.status_code == 400 and "已由第" in twice.text and await count(db, JournalEntry) == before + 2
    original = await visitor.get(f"/committee/books/entries/{entry_id}")
    assert "已冲销" in original.text and "冲销本凭证" not in original.text

    trial = await visitor.get("/committee/books/trial-balance")
    assert 'id="balanced">借贷平衡' in trial.text.replace("\n", "")
    assert re.search(r'id="total-debit">¥2,001.00<', trial.text)
    journal = await visitor.get("/committee/books?date_from=2025-03-01&date_to=2025-03-01")
    assert len(rows(journal.text, "entries")) == 1  # the reversal is dated today


async def test_statements_show_income_and_expenditure_by_period_and_a_balanced_sheet(
    browser: Any, client: httpx.AsyncClient, committee_a: Actor
) -> None:
    for day, memo, lines in [
        ("2024-01-02", "期初资金", [("102", "50000.00", ""), ("301", "", "50000.00")]),
        ("2024-02-10", "收承包款", [("102", "8000.00", ""), ("50101", "", "8000.00")]),
        ("2024-05-20", "付办公用品", [("53102", "300.00", ""), ("102", "", "300.00")]),
    ]:
        body = {
            "entry_date": day,
            "memo": memo,
            "lines": [{"account_code": a, "debit": d or "0", "credit": c or "0"} for a, d, c in lines],
        }
        assert (
            await client.post(f"/api/villages/{VILLAGE_A}/entries", json=body, headers=committee_a.headers)
        ).status_code == 201
    visitor = await browser(committee_a)
    quarters = await visitor.get("/committee/books/statements?by=quarter&year=2024&as_of=2024-12-31")
    assert quarters.status_code == 200 and "<svg" in quarters.text
    table = rows(quarters.text, "income-expenditure")
    assert table[0] == "2024年第1季度 ¥8,000.00 ¥0.00 ¥8,000.00"
    assert table[1] == "2024年第2季度 ¥0.00 ¥300.00 -¥300.00"
    assert re.search(r'id="total-assets">¥57,700.00<', quarters.text)
    assert re.search(r'id="total-claims">¥57,700.00<', quarters.text)
    months = rows(
        (await visitor.get("/committee/books/statements?by=month&year=2024")).text, "income-expenditure"
    )
    assert len(months) == 12 and months[1].startswith("2024年2月 ¥8,000.00")
    ledger = await visitor.get("/committee/books/accounts/102?date_from=2024-02-01")
    assert ledger.status_code == 200 and "¥50,000.00" in ledger.text and "¥57,700.00" in ledger.text


async def test_direct_contract_needs_a_reason_and_receipts_post_once(
    browser: Any, client: httpx.AsyncClient, committee_a: Actor, db: AsyncSession
) -> None:
    made = await client.post(
        f"/api/villages/{VILLAGE_A}/assets",
        headers=committee_a.headers,
        json={
            "code": "S-1",
            "name": "村口商铺",
            "kind": "shop",
            "area": "85",
            "area_unit": "m2",
            "location": "村委旁",
        },
    )
    asset_id = made.json()["id"]
    visitor = await browser(committee_a)
    start = date.today() - timedelta(days=400)
    form = {
        "number": "HT-2025-01",
        "asset_id": str(asset_id),
        "trade_type": "lease",
        "origin_reason": "",
        "counterparty_name": "李四",
        "counterparty_id_number": "",
        "signed_on": start.isoformat(),
        "start_date": start.isoformat(),
        "term_years": "3",
        "term_months": "",
        "price_basis": "per_year",
        "unit_price": "12,000",
        "area": "",
        "payment_frequency": "annual",
    }
    no_reason = await visitor.post("/committee/contracts/new", form)
    assert no_reason.status_code == 400 and "须说明理由" in error_beside(no_reason.text, "origin_reason")
    both_terms = await visitor.post(
        "/committee/contracts/new", {**form, "origin_reason": "续租", "term_months": "36"}
    )
    assert both_terms.status_code == 400 and "term_months" in invalid_fields(both_terms.text)
    assert await count(db, Contract) == 0

    created = await visitor.post(
        "/committee/contracts/new", {**form, "origin_reason": "原承租户续租，经村民代表会议同意"}
    )
    assert created.status_code == 303
    contract_path = created.headers["location"]
    page = await visitor.get(contract_path)
    schedule = rows(page.text, "schedule")
    assert len(schedule) == 3 and "¥12,000.00" in schedule[0] and "逾期" in schedule[0]
    client_key = re.search(r'name="client_key" value="([0-9a-f]+)"', page.text).group(1)
    contract_id = int(contract_path.split("/")[3].split("?")[0])

    too_much = await visitor.post(
        f"/committee/contracts/{contract_id}/receipts",
        {"amount": "99999", "received_on": date.today().isoformat(), "client_key": client_key},
    )
    assert too_much.status_code == 400 and "超过合同未收金额" in error_beside(too_much.text, "amount")
    receipt = {
        "amount": "5,000.00",
        "received_on": date.today().isoformat(),
        "account": "bank",
        "client_key": client_key,
    }
    assert (await visitor.post(f"/committee/contracts/{contract_id}/receipts", receipt)).status_code == 303
    assert (await visitor.post(f"/committee/contracts/{contract_id}/receipts", receipt)).status_code == 303
    assert await count(db, ContractReceipt, ContractReceipt.contract_id == contract_id) == 1
    page = await visitor.get(contract_path)
    assert re.search(r'id="received">¥5,000.00<', page.text) and len(rows(page.text, "receipts")) == 1

    arrears = await visitor.get("/committee/contracts/arrears")
    assert arrears.status_code == 200 and "HT-2025-01" in arrears.text
    assert re.search(r'id="total-overdue">¥(7,000|19,000).00<', arrears.text)
    assert "HT-2025-01" in (await visitor.get("/committee/contracts?counterparty=李")).text
    assert "HT-2025-01" not in (await visitor.get("/committee/contracts?status=expired")).text


async def test_public_disclosure_shows_the_books_and_their_published_root_without_login(
    browser: Any, client: httpx.AsyncClient, committee_a: Actor, admin: Actor
) -> None:
    await client.post(
        f"/api/villages/{VILLAGE_A}/assets",
        headers=committee_a.headers,
        json={
            "code": "S-1",
            "name": "村口商铺",
            "kind": "shop",
            "area": "85",
            "area_unit": "m2",
            "location": "村委旁",
        },
    )
    asset_id = (await client.get(f"/api/villages/{VILLAGE_A}/assets", headers=committee_a.headers)).json()[
        "items"
    ][0]["id"]
    contract = {
        "number": "HT-9",
        "asset_id": asset_id,
        "trade_type": "lease",
        "counterparty_name": "王五",
        "counterparty_id_number": "440111198001011231",
        "start_date": "2025-01-01",
        "term_years": 2,
        "price_basis": "per_year",
        "unit_price": "6000",
        "payment_frequency": "annual",
        "signed_on": "2024-12-20",
        "origin": "direct",
        "origin_reason": "原承租户续租",
    }
    assert (
        await client.post(f"/api/villages/{VILLAGE_A}/contracts", json=contract, headers=committee_a.headers)
    ).status_code == 201
    body = {
        "entry_date": "2025-02-01",
        "memo": "收租金",
        "lines": [{"account_code": "102", "debit": "6000"}, {"account_code": "50101", "credit": "6000"}],
    }
    assert (
        await client.post(f"/api/villages/{VILLAGE_A}/entries", json=body, headers=committee_a.headers)
    ).status_code == 201

    anonymous = await browser()
    before = await anonymous.get(f"/villages/{VILLAGE_A}?by=year&year=2025")
    assert before.status_code == 200 and "尚未发布包含本村的根哈希" in before.text
    assert "村口商铺" in before.text and "王五" in before.text and "原承租户续租" in before.text
    assert "440111198001011231" not in before.text
    assert rows(before.text, "income-expenditure")[-1] == "2025年 ¥6,000.00 ¥0.00 ¥6,000.00"
    assert "完整，验证通过" in before.text

    assert (await client.post("/api/ledger/roots", headers=admin.headers)).status_code == 201
    after = await anonymous.get(f"/villages/{VILLAGE_A}")
    proof = (await client.get(f"/api/villages/{VILLAGE_A}/ledger/proof")).json()
    assert proof["root"]["root_hash"] in after.text and proof["chain_head"] in after.text
    assert "本村账簿包含在已发布的根中" in after.text and "怎样自己验证" in after.text
    assert (await anonymous.get("/villages/000000000000")).status_code == 404

    found = await anonymous.get("/villages?district=440111000000&q=永兴")
    assert found.status_code == 200 and f"/villages/{VILLAGE_A}" in found.text
    assert f"/villages/{VILLAGE_B}" not in found.text
    assert (await anonymous.get("/lang/en?next=/villages")).status_code == 303
    english = await anonymous.get(f"/villages/{VILLAGE_A}")
    assert "Verify the books" in english.text and "Intact, verified" in english.text


async def test_the_disclosure_page_verifies_a_new_entry_at_once_and_tampering_within_a_minute(
    browser: Any, client: httpx.AsyncClient, committee_a: Actor, db: AsyncSession, monkeypatch: Any
) -> None:
    from sqlalchemy import text

    from sanzi.ledger.pages import disclosure

    def entry(memo: str) -> dict[str, Any]:
        lines = [{"account_code": "102", "debit": "6000"}, {"account_code": "50101", "credit": "6000"}]
        return {"entry_date": "2025-02-01", "memo": memo, "lines": lines}

    async def post(memo: str) -> None:
        url = f"/api/villages/{VILLAGE_A}/entries"
        assert (await client.post(url, json=entry(memo), headers=committee_a.headers)).status_code == 201

    async def change_memo(old: str, new: str) -> None:
        # as an intruder with database access could: the immutability triggers off for this transaction
        if db.bind.dialect.name == "postgresql":
            await db.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            await db.execute(text("DROP TRIGGER IF EXISTS journal_entry_no_update"))
        await db.execute(text("UPDATE journal_entry SET memo = :new WHERE memo = :old"), {"old": old, "new": new})
        await db.commit()

    await post("收租金")
    anonymous = await browser()
    page = f"/villages/{VILLAGE_A}"
    first = await anonymous.get(page)
    assert "完整，验证通过" in first.text and "校验于" in first.text

    await change_memo("收租金", "收租金（改）")
    # the same chain as a moment ago: the verification of a moment ago stands, for at most a minute
    assert "完整，验证通过" in (await anonymous.get(page)).text
    monkeypatch.setattr(disclosure, "VERIFIED_FOR_SECONDS", 0.0)
    found = await anonymous.get(page)
    assert "验证未通过" in found.text and "第 1 张凭证起对不上" in found.text

    # put back; a new entry changes the chain, which is verified at once whatever the time
    monkeypatch.setattr(disclosure, "VERIFIED_FOR_SECONDS", 3600.0)
    await change_memo("收租金（改）", "收租金")
    assert "验证未通过" in (await anonymous.get(page)).text
    await post("收租金二")
    assert "完整，验证通过" in (await anonymous.get(page)).text
