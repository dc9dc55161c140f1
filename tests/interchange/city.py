"""A city-scale interchange input, for measuring an import: every village, ten years of trades and books.

``python -m tests.interchange.city DIR [--villages N] [--years Y]`` writes the files. Per village and year it
writes about two auctions (four applicants, about ten bids each) with their contracts and a direct contract,
monthly books (pay and office costs, hospitality, rent received) and, per election, the committee with
relatives and candidates: for 1,145 villages and ten years that is 22,900 trades (229,000 bids), 34,350
contracts and 435,100 entries (1,007,600 lines), 901,535 records in all: the order of what Guangzhou's
platform had carried by 2015.
"""

from __future__ import annotations

import argparse
import csv
import random
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from stdnum.cn import ric, uscc

from sanzi.interchange import format as fmt
from sanzi.platform.geography import read_divisions_file, shipped_divisions_path

KINDS = ("farmland", "fish_pond", "forest", "shop")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡蒋余杜叶程苏魏吕丁"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红辉建国志文斌宇浩凯鹏飞俊峰海波宏亮"


class Writers:
    """One CSV writer per kind, written as rows are made (the input never has to fit in memory)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.files = {
            spec.kind: (directory / f"{spec.kind}.csv").open("w", encoding="utf-8", newline="")
            for spec in fmt.SPECS
        }
        self.writers = {kind: csv.writer(handle, lineterminator="\n") for kind, handle in self.files.items()}
        self.columns = {spec.kind: spec.column_names for spec in fmt.SPECS}
        self.counts = dict.fromkeys(self.files, 0)
        for kind, writer in self.writers.items():
            writer.writerow(self.columns[kind])

    def row(self, file_kind: str, **values: Any) -> None:
        self.writers[file_kind].writerow([values.get(name, "") for name in self.columns[file_kind]])
        self.counts[file_kind] += 1

    def close(self) -> None:
        for handle in self.files.values():
            handle.close()


def write_city(
    directory: Path, villages: int | None = None, years: int = 10, seed: int = 1
) -> dict[str, int]:
    rng = random.Random(seed)
    codes = sorted(read_divisions_file(shipped_divisions_path()).villages)[:villages]
    out = Writers(directory)
    first_year = date.today().year - years
    serial = 0

    def next_id(prefix: str) -> str:
        nonlocal serial
        serial += 1
        return f"{prefix}{serial}"

    def person() -> tuple[str, str]:
        nonlocal serial
        serial += 1
        body = f"440111{1950 + serial % 50}{serial % 12 + 1:02d}{serial % 28 + 1:02d}{serial % 1000:03d}"
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(2))
        return name, body + ric.calc_check_digit(body + "0")

    def at(day: date, hour: int) -> str:
        return f"{day.isoformat()}T{hour:02d}:00:00+08:00"

    # a bidder pool per district
    pools: dict[str, list[str]] = {}
    for code in sorted({c[:6] for c in codes}):
        pool = []
        for _ in range(60):
            bidder_id = next_id("B")
            if rng.random() < 0.3:
                body = f"914401017{serial:08d}"
                out.row(
                    "bidders",
                    id=bidder_id,
                    kind="company",
                    name=f"广州{serial}号实业有限公司",
                    id_number=body + uscc.calc_check_digit(body),
                    legal_representative=person()[0],
                    phone=f"138{serial:08d}",
                    address=f"广州市{serial}号",
                )
            else:
                name, number = person()
                out.row(
                    "bidders",
                    id=bidder_id,
                    kind="person",
                    name=name,
                    id_number=number,
                    phone=f"139{serial:08d}",
                    bank_account=f"6222{serial:012d}",
                )
            pool.append(bidder_id)
        pools[code] = pool

    for village in codes:
        # governance: an election every three or four years, the committee and candidates
        for year in range(first_year, first_year + years, 4):
            election = next_id("E")
            day = date(year, 3, 15)
            out.row(
                "elections", id=election, village_code=village, election_date=day.isoformat(), note="换届选举"
            )
            for position in ("书记", "主任", "副主任", "委员", "委员", "出纳"):
                name, number = person()
                cadre = next_id("C")
                out.row(
                    "cadres",
                    id=cadre,
                    village_code=village,
                    name=name,
                    id_number=number,
                    body="party_branch" if position == "书记" else "committee",
                    position=position,
                    term_start=day.isoformat(),
                    term_end=(day.replace(year=year + 4) - timedelta(days=1)).isoformat()
                    if year + 4 < first_year + years
                    else "",
                )
                relative, relative_number = person()
                out.row(
                    "cadre_relatives",
                    id=next_id("R"),
                    cadre_id=cadre,
                    name=relative,
                    id_number=relative_number,
                    relation="配偶",
                )
                out.row(
                    "candidates",
                    id=next_id("K"),
                    election_id=election,
                    name=name,
                    id_number=number,
                    position=position,
                )
        # assets, and each year two auctions and one direct contract
        assets = []
        for n in range(20):
            asset = next_id("A")
            kind = KINDS[n % len(KINDS)]
            out.row(
                "assets",
                id=asset,
                village_code=village,
                code=f"ZC-{n:03d}",
                name=f"资产{n}",
                kind=kind,
                area="35.50" if kind != "shop" else "120.00",
                area_unit="m2" if kind == "shop" else "mu",
                location="村内",
                book_value_fen=str(rng.randint(10, 500) * 10_000),
                status="leased",
            )
            assets.append((asset, kind))
        entries: list[tuple[date, str, str, list[tuple[str, int, int]], str]] = []
        for year in range(first_year, first_year + years):
            for k in range(2):
                asset, kind = rng.choice(assets)
                listing = next_id("L")
                announced = date(year, 4 + 4 * k, 3)
                start, increment = rng.randint(50, 400) * 1000, 1000
                bidders = rng.sample(pools[village[:6]], 4)
                applicants = [next_id("P") for _ in bidders]
                price, seq, moment = start, 0, datetime(year, 4 + 4 * k, 15, 9, 0)
                order = []
                for round_ in range(10):
                    index = round_ % 4
                    seq += 1
                    moment += timedelta(minutes=rng.randint(1, 9))
                    order.append((next_id("X"), applicants[index], seq, price, moment))
                    winner = applicants[index]
                    price += increment * rng.randint(1, 3)
                final = order[-1][3]
                basis = "per_year" if kind == "shop" else "per_mu_year"
                out.row(
                    "listings",
                    id=listing,
                    village_code=village,
                    number=f"{village}-{listing}",
                    title=f"资产发包 {listing}",
                    asset_ids=asset,
                    trade_type="lease",
                    term_months="36",
                    price_basis=basis,
                    area="" if kind == "shop" else "35.50",
                    starting_price_fen=str(start),
                    min_increment_fen=str(increment),
                    max_increment_fen=str(increment * 10),
                    deposit_fen=str(start // 10),
                    announcement_days="10",
                    announced_at=at(announced, 9),
                    registration_deadline=at(announced + timedelta(days=10), 17),
                    bidding_starts_at=at(announced + timedelta(days=12), 9),
                    bidding_ends_at=at(announced + timedelta(days=12), 11),
                    closed_at=at(announced + timedelta(days=12), 11),
                    status="sold",
                    winner_applicant_id=winner,
                    final_price_fen=str(final),
                )
                for number, (applicant, bidder) in enumerate(zip(applicants, bidders, strict=True), start=1):
                    out.row(
                        "applicants",
                        id=applicant,
                        listing_id=listing,
                        bidder_id=bidder,
                        bidder_number=f"{number:03d}",
                        status="qualified",
                        contact_phone=f"137{serial:08d}",
                        deposit_state="applied" if applicant == winner else "refunded",
                        deposit_paid_at=at(announced + timedelta(days=8), 10),
                    )
                for bid_id, applicant, seq_no, amount, placed in order:
                    out.row(
                        "bids",
                        id=bid_id,
                        listing_id=listing,
                        applicant_id=applicant,
                        seq=str(seq_no),
                        amount_fen=str(amount),
                        placed_at=placed.isoformat() + "+08:00",
                    )
                contract = next_id("H")
                signed = announced + timedelta(days=20)
                out.row(
                    "contracts",
                    id=contract,
                    village_code=village,
                    number=f"HT-{contract}",
                    asset_id=asset,
                    trade_type="lease",
                    counterparty_name="竞得人",
                    counterparty_bidder_id="",
                    start_date=date(year, 6 + 4 * k, 1).isoformat(),
                    term_months="36",
                    price_basis=basis,
                    unit_price_fen=str(final),
                    area="" if kind == "shop" else "35.50",
                    payment_frequency="annual",
                    origin="auction",
                    listing_id=listing,
                    signed_on=signed.isoformat(),
                    status="expired",
                )
                rent = final if kind == "shop" else final * 355 // 10
                entries.append(
                    (
                        date(year, 6 + 4 * k, 1),
                        "收取租金",
                        "竞得人",
                        [("102", rent, 0), ("50101", 0, rent)],
                        contract,
                    )
                )
            direct = next_id("H")
            out.row(
                "contracts",
                id=direct,
                village_code=village,
                number=f"HT-{direct}",
                asset_id="",
                trade_type="lease",
                counterparty_name=person()[0],
                start_date=date(year, 2, 1).isoformat(),
                term_months="12",
                price_basis="total",
                unit_price_fen=str(rng.randint(1, 80) * 100_000),
                payment_frequency="once",
                origin="direct",
                origin_reason="小额短期出租",
                signed_on=date(year, 1, 20).isoformat(),
                status="expired",
            )
            for month in range(1, 13):
                pay, office = rng.randint(30, 45) * 100_000, rng.randint(2, 6) * 100_000
                entries.append(
                    (
                        date(year, month, 10),
                        f"{year}年{month}月干部报酬及办公费",
                        "",
                        [("53103", pay, 0), ("53102", office, 0), ("102", 0, pay + office)],
                        "",
                    )
                )
                food = rng.randint(5, 30) * 10_000
                entries.append(
                    (date(year, month, 18), "招待费", "酒家", [("53101", food, 0), ("101", 0, food)], "")
                )
                cash = rng.randint(1, 5) * 1_000_000
                entries.append(
                    (date(year, month, 2), "提取现金", "", [("101", cash, 0), ("102", 0, cash)], "")
                )
        for day, memo, party, lines, contract in entries:
            entry = next_id("J")
            for no, (account, debit, credit) in enumerate(lines, start=1):
                out.row(
                    "book_entries",
                    id=entry,
                    village_code=village,
                    entry_date=day.isoformat(),
                    memo=memo,
                    counterparty=party,
                    source="import",
                    contract_id=contract,
                    line_no=str(no),
                    account_code=account,
                    debit_fen=str(debit),
                    credit_fen=str(credit),
                )
    out.close()
    return out.counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--villages", type=int, default=None)
    parser.add_argument("--years", type=int, default=10)
    args = parser.parse_args()
    started = time.perf_counter()
    counts = write_city(args.directory, args.villages, args.years)
    print(", ".join(f"{n} {kind}" for kind, n in counts.items()), f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
