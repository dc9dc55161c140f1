"""The geography: parse the National Bureau of Statistics division-code format and load it idempotently.

A row is ``level,code,name,parent_code,district_code,district_name,township_code,township_name,unit_type,seq3``.
Level 3 is a district, 4 a township (town or sub-district), 5 a village-level unit; only village committees
(村委会) are loaded as villages, each with its collective economic organisation (经济联合社).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.platform.models import Collective, District, Township, Village
from sanzi.platform.problems import DomainError

COLUMNS = [
    "level",
    "code",
    "name",
    "parent_code",
    "district_code",
    "district_name",
    "township_code",
    "township_name",
    "unit_type",
    "seq3",
]
_CODE_LENGTH = {"3": 6, "4": 9, "5": 12}
_DIGITS = re.compile(r"^\d+$")


def shipped_divisions_path() -> Path:
    """The Guangzhou rows the project ships: 7 districts, 63 townships, 1,145 village committees."""
    return Path(str(resources.files("sanzi.platform") / "data" / "guangzhou_villages.csv"))


def full_code(code: str) -> str:
    """The official 12-digit form of a 6-, 9- or 12-digit division code."""
    return code.ljust(12, "0")


def normalise_code(value: str, field_name: str = "code") -> str:
    """Accept a 6-, 9- or 12-digit code from a caller and return the 12-digit form, or refuse clearly."""
    value = value.strip()
    if not _DIGITS.match(value) or len(value) not in (6, 9, 12):
        raise DomainError(
            f"区划代码须为 6、9 或 12 位数字：{value!r}",
            f"division code must be 6, 9 or 12 digits: {value!r}",
            field=field_name,
            status_code=400,
        )
    return full_code(value)


def collective_name(village_name: str) -> str:
    base = re.sub(r"(村民委员会|村委会|委员会)$", "", village_name)
    return f"{base}经济联合社"


class DivisionFileError(ValueError):
    """A malformed division file: names the line and what is wrong with it."""

    def __init__(self, line: int, message_zh: str, message_en: str) -> None:
        super().__init__(f"line {line}: {message_en}")
        self.line = line
        self.message_zh = message_zh
        self.message_en = message_en


@dataclass
class Divisions:
    districts: dict[str, str] = field(default_factory=dict)
    townships: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # code -> (name, kind, district)
    villages: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # code -> (name, township, district)
    skipped: int = 0


def parse_divisions(lines: Iterable[str]) -> Divisions:
    """Validate every row first, so a malformed file loads nothing."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise DivisionFileError(1, "文件为空", "the file is empty")
    header = [h.strip().lstrip("\ufeff") for h in header]
    if header[: len(COLUMNS)] != COLUMNS:
        raise DivisionFileError(1, f"表头应为 {','.join(COLUMNS)}", f"header must be {','.join(COLUMNS)}")
    out = Divisions()
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(COLUMNS):
            raise DivisionFileError(
                line_no, f"应有 {len(COLUMNS)} 列，实有 {len(row)} 列", f"expected {len(COLUMNS)} columns, got {len(row)}"
            )
        rec = dict(zip(COLUMNS, (cell.strip() for cell in row), strict=True))
        level, code, name = rec["level"], rec["code"], rec["name"]
        if level not in ("1", "2", "3", "4", "5"):
            raise DivisionFileError(line_no, f"级别无效：{level!r}", f"invalid level {level!r}")
        if level in ("1", "2"):
            out.skipped += 1
            continue
        if not _DIGITS.match(code) or len(code) != _CODE_LENGTH[level]:
            raise DivisionFileError(
                line_no,
                f"第 {level} 级区划代码应为 {_CODE_LENGTH[level]} 位数字：{code!r}",
                f"a level-{level} code must be {_CODE_LENGTH[level]} digits: {code!r}",
            )
        if not name:
            raise DivisionFileError(line_no, "名称为空", "name is empty")
        if len(name) > 64:
            raise DivisionFileError(line_no, "名称过长（最多 64 字）", "name longer than 64 characters")
        parent = rec["parent_code"]
        if level in ("4", "5") and not code.startswith(parent):
            raise DivisionFileError(
                line_no, f"代码 {code} 不属于上级 {parent!r}", f"code {code} is not under its parent {parent!r}"
            )
        if level == "3":
            out.districts[full_code(code)] = name
        elif level == "4":
            out.townships[full_code(code)] = (name, rec["unit_type"], full_code(code[:6]))
        elif rec["unit_type"].startswith("village_committee"):
            district_code, township_code = rec["district_code"], rec["township_code"]
            if district_code != code[:6] or township_code != code[:9]:
                raise DivisionFileError(
                    line_no,
                    "区、镇街代码与村代码不符",
                    "district_code/township_code do not match the village code",
                )
            if not rec["district_name"] or not rec["township_name"]:
                raise DivisionFileError(line_no, "缺少区或镇街名称", "district_name or township_name is empty")
            out.districts.setdefault(full_code(district_code), rec["district_name"])
            out.townships.setdefault(
                full_code(township_code), (rec["township_name"], "township", full_code(district_code))
            )
            out.villages[code] = (name, full_code(township_code), full_code(district_code))
        else:
            out.skipped += 1
    # only the townships and districts that hold villages are part of the platform's geography
    used_townships = {t for _, t, _ in out.villages.values()}
    out.townships = {c: v for c, v in out.townships.items() if c in used_townships}
    used_districts = {d for _, _, d in out.townships.values()}
    out.districts = {c: v for c, v in out.districts.items() if c in used_districts}
    return out


def read_divisions_file(path: Path) -> Divisions:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DivisionFileError(1, "文件须为 UTF-8 编码", "the file must be UTF-8 encoded") from exc
    return parse_divisions(io.StringIO(text))


@dataclass
class ImportSummary:
    districts: int = 0
    townships: int = 0
    villages: int = 0
    collectives: int = 0
    unchanged: int = 0
    new_collective_ids: list[int] = field(default_factory=list)


async def import_divisions(
    session: AsyncSession, divisions: Divisions, progress: Callable[[int], None] | None = None
) -> ImportSummary:
    """Upsert districts, townships and villages and open a collective for each new village (idempotent)."""
    summary = ImportSummary()
    districts = {d.code: d for d in await session.scalars(select(District))}
    for code, name in divisions.districts.items():
        if code not in districts:
            session.add(District(code=code, name=name))
            summary.districts += 1
        elif districts[code].name != name:
            districts[code].name = name
    await session.flush()
    townships = {t.code: t for t in await session.scalars(select(Township))}
    for code, (name, kind, district_code) in divisions.townships.items():
        if code not in townships:
            session.add(Township(code=code, name=name, kind=kind, district_code=district_code))
            summary.townships += 1
        elif townships[code].name != name:
            townships[code].name = name
    await session.flush()
    villages = {v.code: v for v in await session.scalars(select(Village))}
    have_collective = set(await session.scalars(select(Collective.village_code)))
    new_collectives: list[Collective] = []
    for code, (name, township_code, district_code) in divisions.villages.items():
        existing = villages.get(code)
        if existing is None:
            session.add(Village(code=code, name=name, township_code=township_code, district_code=district_code))
            summary.villages += 1
        elif existing.name != name:
            existing.name = name
        else:
            summary.unchanged += 1
        if code not in have_collective:
            collective = Collective(village_code=code, name=collective_name(name))
            new_collectives.append(collective)
        if progress:
            progress(1)
    await session.flush()
    session.add_all(new_collectives)
    await session.flush()
    summary.collectives = len(new_collectives)
    summary.new_collective_ids = [c.id for c in new_collectives]
    return summary
