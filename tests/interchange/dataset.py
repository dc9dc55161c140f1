"""A small, valid interchange input for village A: every kind of record, as an older system exports it."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from stdnum.cn import ric, uscc

from sanzi.auction.models import Bid, Listing, ListingAsset, ListingEvent, Registration
from sanzi.interchange import format as fmt
from sanzi.interchange.models import ImportKey
from sanzi.interchange.validation import Source
from sanzi.ledger.models import (
    Asset,
    AssetStatusChange,
    Contract,
    ContractInstallment,
    ContractReceipt,
    JournalEntry,
    JournalLine,
)
from sanzi.platform.models import Bidder, Cadre, CadreRelative, Candidate, Election, User
from tests.conftest import VILLAGE_A

#: every table an import writes to: "nothing written" means none of them changed
WRITTEN_TABLES = (
    Cadre,
    CadreRelative,
    Election,
    Candidate,
    Asset,
    AssetStatusChange,
    User,
    Bidder,
    Listing,
    ListingAsset,
    ListingEvent,
    Registration,
    Bid,
    Contract,
    ContractInstallment,
    ContractReceipt,
    JournalEntry,
    JournalLine,
    ImportKey,
)


def person_id(serial: int) -> str:
    body = f"440111198001{serial % 28 + 1:02d}{serial % 1000:03d}"
    return body + ric.calc_check_digit(body + "0")


def company_id(serial: int) -> str:
    body = f"914401017{serial:08d}"
    return body + uscc.calc_check_digit(body)


def records(tag: str = "OLD") -> dict[str, list[dict[str, Any]]]:
    """Every kind for village A: a sold auction with two bidders and its contract, a direct contract above the
    trading threshold (what UND-OFF-PLATFORM exists to find), books with a receipt and hospitality."""
    v = VILLAGE_A
    return {
        "cadres": [
            {
                "id": f"{tag}-C1",
                "village_code": v,
                "name": "陈志强",
                "id_number": person_id(1),
                "phone": "13900000001",
                "body": "committee",
                "position": "主任",
                "term_start": "2017-03-01",
                "term_end": "2021-02-28",
            },
            {
                "id": f"{tag}-C2",
                "village_code": v,
                "name": "黄秀英",
                "id_number": person_id(2),
                "phone": "",
                "body": "party_branch",
                "position": "书记",
                "term_start": "2017-03-01",
                "term_end": "",
            },
        ],
        "cadre_relatives": [
            {
                "id": f"{tag}-R1",
                "cadre_id": f"{tag}-C1",
                "name": "陈小明",
                "id_number": person_id(3),
                "relation": "子女",
            },
        ],
        "elections": [
            {"id": f"{tag}-E1", "village_code": v, "election_date": "2021-03-20", "note": "换届选举"}
        ],
        "candidates": [
            {
                "id": f"{tag}-K1",
                "election_id": f"{tag}-E1",
                "name": "陈志强",
                "id_number": person_id(1),
                "position": "主任",
            },
        ],
        "assets": [
            {
                "id": f"{tag}-A1",
                "village_code": v,
                "code": f"{tag}-ZC-001",
                "name": "东区鱼塘",
                "kind": "fish_pond",
                "area": "30.5",
                "area_unit": "mu",
                "location": "东区",
                "book_value_fen": "1200000",
                "appraisal_fen": "",
                "appraised_on": "",
                "status": "leased",
                "description": "",
            },
            {
                "id": f"{tag}-A2",
                "village_code": v,
                "code": f"{tag}-ZC-002",
                "name": "村口商铺",
                "kind": "shop",
                "area": "120",
                "area_unit": "m2",
                "location": "村口",
                "book_value_fen": "50000000",
                "appraisal_fen": "60000000",
                "appraised_on": "2019-06-30",
                "status": "leased",
                "description": "临街",
            },
        ],
        "bidders": [
            {
                "id": f"{tag}-B1",
                "kind": "person",
                "name": "李四",
                "id_number": person_id(11),
                "legal_representative": "",
                "phone": "13800000011",
                "address": "白云区一路1号",
                "bank_name": "农商行",
                "bank_account": "6222000000000011",
            },
            {
                "id": f"{tag}-B2",
                "kind": "company",
                "name": "广州禾丰水产有限公司",
                "id_number": company_id(12),
                "legal_representative": "王五",
                "phone": "13800000012",
                "address": "白云区二路2号",
                "bank_name": "",
                "bank_account": "",
            },
        ],
        "listings": [
            {
                "id": f"{tag}-L1",
                "village_code": v,
                "number": f"{tag}-JY-2019-01",
                "title": "东区鱼塘发包",
                "asset_ids": f"{tag}-A1",
                "trade_type": "contracting",
                "term_months": "60",
                "price_basis": "per_mu_year",
                "area": "30.5",
                "starting_price_fen": "200000",
                "reserve_price_fen": "",
                "min_increment_fen": "5000",
                "max_increment_fen": "50000",
                "deposit_fen": "20000",
                "performance_bond_fen": "",
                "announcement_days": "10",
                "announced_at": "2019-03-01T09:00:00+08:00",
                "registration_deadline": "2019-03-11T17:00:00+08:00",
                "bidding_starts_at": "2019-03-13T09:00:00+08:00",
                "bidding_ends_at": "2019-03-13T11:00:00+08:00",
                "closed_at": "2019-03-13T11:00:00+08:00",
                "status": "sold",
                "status_reason": "",
                "winner_applicant_id": f"{tag}-P2",
                "final_price_fen": "215000",
                "resolution_meeting_date": "2019-02-20",
                "resolution_present": "40",
                "resolution_votes_for": "35",
                "resolution_votes_against": "2",
            },
        ],
        "applicants": [
            {
                "id": f"{tag}-P1",
                "listing_id": f"{tag}-L1",
                "bidder_id": f"{tag}-B1",
                "bidder_number": "001",
                "status": "qualified",
                "contact_phone": "13800000011",
                "contact_address": "白云区一路1号",
                "applied_ip": "10.0.0.1",
                "applied_device": "",
                "deposit_state": "refunded",
                "deposit_payer_name": "李四",
                "deposit_payer_account": "6222000000000011",
                "deposit_paid_at": "2019-03-10T10:00:00+08:00",
            },
            {
                "id": f"{tag}-P2",
                "listing_id": f"{tag}-L1",
                "bidder_id": f"{tag}-B2",
                "bidder_number": "002",
                "status": "qualified",
                "contact_phone": "13800000012",
                "contact_address": "",
                "applied_ip": "",
                "applied_device": "",
                "deposit_state": "applied",
                "deposit_payer_name": "广州禾丰水产有限公司",
                "deposit_payer_account": "",
                "deposit_paid_at": "2019-03-10T11:00:00+08:00",
            },
        ],
        "bids": [
            {
                "id": f"{tag}-X1",
                "listing_id": f"{tag}-L1",
                "applicant_id": f"{tag}-P1",
                "seq": "1",
                "amount_fen": "200000",
                "placed_at": "2019-03-13T09:05:00+08:00",
                "ip_address": "10.0.0.1",
                "device_fingerprint": "",
            },
            {
                "id": f"{tag}-X2",
                "listing_id": f"{tag}-L1",
                "applicant_id": f"{tag}-P2",
                "seq": "2",
                "amount_fen": "210000",
                "placed_at": "2019-03-13T09:20:00+08:00",
                "ip_address": "",
                "device_fingerprint": "",
            },
            {
                "id": f"{tag}-X3",
                "listing_id": f"{tag}-L1",
                "applicant_id": f"{tag}-P2",
                "seq": "3",
                "amount_fen": "215000",
                "placed_at": "2019-03-13T10:40:00+08:00",
                "ip_address": "",
                "device_fingerprint": "",
            },
        ],
        "contracts": [
            {
                "id": f"{tag}-H1",
                "village_code": v,
                "number": f"{tag}-HT-01",
                "asset_id": f"{tag}-A1",
                "trade_type": "contracting",
                "counterparty_name": "广州禾丰水产有限公司",
                "counterparty_id_number": company_id(12),
                "counterparty_bidder_id": f"{tag}-B2",
                "start_date": "2019-04-01",
                "term_months": "60",
                "price_basis": "per_mu_year",
                "unit_price_fen": "215000",
                "area": "30.5",
                "step_ups": "",
                "payment_frequency": "annual",
                "origin": "auction",
                "origin_reason": "",
                "listing_id": f"{tag}-L1",
                "signed_on": "2019-03-25",
                "status": "expired",
            },
            # 12 years at 100,000 yuan a year, signed directly: far above the trading standard
            {
                "id": f"{tag}-H2",
                "village_code": v,
                "number": f"{tag}-HT-02",
                "asset_id": f"{tag}-A2",
                "trade_type": "lease",
                "counterparty_name": "赵六",
                "counterparty_id_number": person_id(21),
                "counterparty_bidder_id": "",
                "start_date": "2020-01-01",
                "term_months": "144",
                "price_basis": "per_year",
                "unit_price_fen": "10000000",
                "area": "",
                "step_ups": '[{"from_year": 6, "percent": "5"}]',
                "payment_frequency": "annual",
                "origin": "direct",
                "origin_reason": "老租户续租",
                "listing_id": "",
                "signed_on": "2019-12-20",
                "status": "active",
            },
        ],
        "book_entries": [
            *entry(
                f"{tag}-J1",
                "2019-04-01",
                "收取鱼塘承包款",
                "广州禾丰水产有限公司",
                [("102", 6557500, 0), ("50101", 0, 6557500)],
                contract_id=f"{tag}-H1",
            ),
            *entry(
                f"{tag}-J2",
                "2020-01-02",
                "收取商铺租金",
                "赵六",
                [("102", 10000000, 0), ("50101", 0, 10000000)],
                contract_id=f"{tag}-H2",
            ),
            *entry(
                f"{tag}-J3",
                "2019-05-06",
                "接待费",
                "某酒家",
                [("53101", 88000, 0), ("101", 0, 88000)],
                category="hospitality",
            ),
        ],
    }


def entry(
    entry_id: str,
    day: str,
    memo: str,
    counterparty: str,
    lines: list[tuple[str, int, int]],
    contract_id: str = "",
    category: str = "",
    village: str = VILLAGE_A,
) -> list[dict[str, Any]]:
    return [
        {
            "id": entry_id,
            "village_code": village,
            "entry_date": day,
            "memo": memo,
            "counterparty": counterparty,
            "source": "import",
            "contract_id": contract_id,
            "reverses_id": "",
            "line_no": str(no),
            "account_code": code,
            "category": category if no == 1 else "",
            "debit_fen": str(debit),
            "credit_fen": str(credit),
            "line_memo": "",
        }
        for no, (code, debit, credit) in enumerate(lines, start=1)
    ]


def csv_text(kind: str, rows: list[dict[str, Any]], columns: tuple[str, ...] | None = None) -> str:
    columns = columns or fmt.SPEC_BY_KIND[kind].column_names
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([row.get(name, "") for name in columns] for row in rows)
    return buffer.getvalue()


def sources(data: dict[str, list[dict[str, Any]]], jsonl: tuple[str, ...] = ()) -> list[Source]:
    """The records as files: CSV, or JSON Lines for the kinds named in ``jsonl``."""
    out = []
    for kind, rows in data.items():
        if kind in jsonl:
            body = "".join(
                json.dumps({k: v for k, v in row.items() if v != ""}, ensure_ascii=False) + "\n"
                for row in rows
            )
            out.append(Source(f"{kind}.jsonl", body.encode()))
        else:
            out.append(Source(f"{kind}.csv", csv_text(kind, rows).encode()))
    return out


def write_dir(directory: Path, items: list[Source]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for item in items:
        (directory / item.name).write_bytes(item.data)
    return directory


def zipped(items: list[Source]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for item in items:
            archive.writestr(f"export/{item.name}", item.data)
    return buffer.getvalue()


async def table_counts(session: AsyncSession) -> dict[str, int]:
    return {
        model.__tablename__: await session.scalar(select(func.count()).select_from(model)) or 0
        for model in WRITTEN_TABLES
    }
