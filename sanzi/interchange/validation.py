"""Reads an interchange directory (or upload) and checks everything before anything is written.

Each problem names the file, the line, the field and says what is wrong in Chinese and English. The checks go
from the bytes up: encoding, columns, each value's type, then the records against each other (duplicates,
references, balances, dates) and against the database (village codes, numbers already taken, ids imported
before with other content). The result is a :class:`Plan`: every record parsed, classified as new or
unchanged, and the problems; :mod:`sanzi.interchange.loader` writes a plan that has none.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sanzi.auction.models import Listing
from sanzi.interchange import format as fmt
from sanzi.interchange.models import ImportKey
from sanzi.ledger.models import Account, Asset, Contract
from sanzi.platform.identity import identity_number
from sanzi.platform.models import Bidder, Collective, Election
from sanzi.platform.problems import DomainError

ZONE = ZoneInfo("Asia/Shanghai")
#: the problems listed in a report; beyond it they are only counted (a wrong file can have millions)
MAX_LISTED_PROBLEMS = 1000
_INTEGER = re.compile(r"^[+-]?\d+$")
_DECIMAL_NUMBER = re.compile(r"^[+-]?\d*\.\d+$|^[+-]?\d+\.\d*$|^[+-]?\d+(\.\d+)?[eE][+-]?\d+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_VILLAGE_CODE = re.compile(r"^\d{12}$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, where it is and what it is, in Chinese and English."""

    file: str
    line: int
    field: str
    message: str
    message_en: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "field": self.field,
            "message": self.message,
            "message_en": self.message_en,
        }

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} [{self.field}] {self.message} / {self.message_en}"


@dataclass
class Record:
    """One record (for book entries: one entry with its lines), its values parsed."""

    kind: str
    id: str
    line: int
    values: dict[str, Any]
    lines: list[dict[str, Any]] = field(default_factory=list)
    content_hash: str = ""
    #: "new", "unchanged" (imported before with the same content) or "link" (new, but an existing row is used)
    state: str = "new"
    target_id: int | None = None


@dataclass
class Source:
    """One input file: its name and bytes."""

    name: str
    data: bytes


@dataclass
class FileReport:
    file: str
    kind: str
    rows: int = 0
    records: int = 0
    new: int = 0
    unchanged: int = 0
    problems: int = 0
    loaded: bool = False
    skipped_because: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Plan:
    """What an import would do: the parsed records per kind, what the database already holds, the problems."""

    today: date
    records: dict[str, dict[str, Record]] = field(default_factory=dict)
    files: dict[str, FileReport] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0
    #: (kind, source id) -> (target id, content hash) for everything imported before
    keys: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict)
    collectives: dict[str, int] = field(default_factory=dict)
    #: ids of rows that did not parse: a reference to one is not a further problem of the referring file
    invalid_ids: dict[str, set[str]] = field(default_factory=dict)
    accounts: dict[int, dict[str, tuple[int, str | None, bool]]] = field(default_factory=dict)

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        if problem.file in self.files:
            self.files[problem.file].problems += 1
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(problem)

    @property
    def valid(self) -> bool:
        return self.problem_count == 0

    def file_of(self, kind: str) -> str:
        return next((name for name, report in self.files.items() if report.kind == kind), f"{kind}.csv")

    def target(self, kind: str, source_id: str) -> int | None:
        """The row a source id became: in this import (once loaded) or in an earlier one."""
        record = self.records.get(kind, {}).get(source_id)
        if record is not None and record.target_id is not None:
            return record.target_id
        known = self.keys.get(kind, {}).get(source_id)
        return known[0] if known else None

    def report(self) -> dict[str, Any]:
        return {
            "format": fmt.FORMAT_NAME,
            "format_version": fmt.FORMAT_VERSION,
            "valid": self.valid,
            "files": [report.as_dict() for report in self.files.values()],
            "problem_count": self.problem_count,
            "problems": [problem.as_dict() for problem in self.problems],
        }


# ---- reading the input ------------------------------------------------------------------------------------


def sources_from_directory(directory: Path) -> list[Source]:
    return [Source(path.name, path.read_bytes()) for path in sorted(directory.iterdir()) if path.is_file()]


def sources_from_zip(data: bytes) -> list[Source]:
    """The files of a zip archive (folders inside it are flattened: only file names count)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DomainError(
            "上传的文件不是有效的 zip 压缩包", "the upload is not a valid zip archive", field="archive"
        ) from None
    with archive:
        return [
            Source(Path(info.filename).name, archive.read(info))
            for info in archive.infolist()
            if not info.is_dir() and not Path(info.filename).name.startswith(".")
        ]


def _decode(source: Source, plan: Plan) -> str | None:
    try:
        return source.data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = source.data[: exc.start].count(b"\n") + 1
        guess = ""
        try:
            source.data.decode("gb18030")
            guess = "（看起来是 GBK/GB18030 编码）"
        except UnicodeDecodeError:
            pass
        plan.add(
            Problem(
                source.name,
                line,
                "(encoding)",
                f"文件不是 UTF-8 编码{guess}，请另存为 UTF-8 后再导入",
                "the file is not UTF-8 encoded"
                + (" (it looks like GBK/GB18030)" if guess else "")
                + "; save it as UTF-8 and import again",
            )
        )
        return None


def _rows(source: Source, text: str, spec: fmt.FileSpec, plan: Plan) -> list[tuple[int, dict[str, str]]]:
    """The rows of a CSV or JSON Lines file as (line number, column -> text), after checking the columns."""
    rows: list[tuple[int, dict[str, str]]] = []
    known = set(spec.column_names)
    required = [c.name for c in spec.columns if c.required]
    if source.name.endswith(".csv"):
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, None)
        if header is None:
            return rows
        header = [name.strip() for name in header]
        missing = [name for name in required if name not in header]
        for name in missing:
            plan.add(
                Problem(
                    source.name, 1, name, f"缺少必需的列「{name}」", f"required column {name!r} is missing"
                )
            )
        for name in header:
            if name not in known:
                plan.add(
                    Problem(
                        source.name,
                        1,
                        name,
                        f"未知的列「{name}」（格式第 {fmt.FORMAT_VERSION} 版没有此列）",
                        f"unknown column {name!r} (not in format version {fmt.FORMAT_VERSION})",
                    )
                )
        duplicated = {name for name in header if header.count(name) > 1}
        for name in sorted(duplicated):
            plan.add(Problem(source.name, 1, name, f"列「{name}」重复", f"column {name!r} appears twice"))
        if missing or duplicated:
            return rows
        for values in reader:
            line = reader.line_num
            if not any(value.strip() for value in values):
                continue
            if len(values) != len(header):
                plan.add(
                    Problem(
                        source.name,
                        line,
                        "(row)",
                        f"该行有 {len(values)} 个值，表头有 {len(header)} 列",
                        f"the row has {len(values)} values but the header has {len(header)} columns",
                    )
                )
                continue
            rows.append(
                (line, {name: value for name, value in zip(header, values, strict=True) if name in known})
            )
        return rows
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as exc:
            plan.add(
                Problem(
                    source.name, line, "(row)", f"不是有效的 JSON：{exc.msg}", f"not valid JSON: {exc.msg}"
                )
            )
            continue
        if not isinstance(item, dict):
            plan.add(
                Problem(
                    source.name, line, "(row)", "每行应为一个 JSON 对象", "each line must be a JSON object"
                )
            )
            continue
        bad = False
        for name in item:
            if name not in known:
                plan.add(Problem(source.name, line, name, f"未知的字段「{name}」", f"unknown field {name!r}"))
                bad = True
        for name in required:
            if name not in item:
                plan.add(
                    Problem(
                        source.name,
                        line,
                        name,
                        f"缺少必需的字段「{name}」",
                        f"required field {name!r} is missing",
                    )
                )
                bad = True
        if not bad:
            rows.append((line, {name: _json_text(value) for name, value in item.items()}))
    return rows


def _json_text(value: Any) -> str:
    """A JSON value as the text a CSV cell would hold (so both encodings share one parser)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


# ---- one value --------------------------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, message: str, message_en: str) -> None:
        self.message, self.message_en = message, message_en


def parse_date(text: str) -> date:
    if not _DATE.match(text):
        raise _Bad(f"日期格式应为 YYYY-MM-DD，收到「{text}」", f"a date must be YYYY-MM-DD, got {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _Bad(f"日期「{text}」不存在", f"{text!r} is not a real date") from None


def parse_datetime(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        if re.match(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", text):
            raise _Bad(f"时间「{text}」不存在", f"{text!r} is not a real time") from None
        raise _Bad(
            f"时间格式应为 ISO 8601（如 2019-05-01T10:00:00+08:00），收到「{text}」",
            f"a time must be ISO 8601 (e.g. 2019-05-01T10:00:00+08:00), got {text!r}",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZONE)
    return moment.astimezone(UTC)


def parse_fen(text: str, positive: bool) -> int:
    if _INTEGER.match(text):
        value = int(text)
    elif _DECIMAL_NUMBER.match(text):
        raise _Bad(
            f"金额须为整数分，「{text}」不是整数（1 元 = 100 分）",
            f"amounts are whole fen; {text!r} is not a whole number (1 yuan = 100 fen)",
        )
    else:
        raise _Bad(
            f"金额须为整数分，收到「{text}」", f"an amount must be a whole number of fen, got {text!r}"
        )
    if value < 0 or (positive and value == 0):
        bound = "大于零" if positive else "不小于零"
        raise _Bad(
            f"金额须{bound}，收到 {value}",
            f"the amount must be {'more than' if positive else 'at least'} zero",
        )
    return value


def parse_value(column: fmt.Column, text: str) -> Any:
    if column.max_length is not None and len(text) > column.max_length:
        raise _Bad(
            f"长度 {len(text)} 超过上限 {column.max_length}",
            f"{len(text)} characters, at most {column.max_length}",
        )
    if column.type == fmt.TEXT or column.type == fmt.REF:
        return text
    if column.type == fmt.REFS:
        return [part.strip() for part in text.split(";") if part.strip()]
    if column.type == fmt.CODE:
        if not _VILLAGE_CODE.match(text):
            raise _Bad(f"村代码须为 12 位数字，收到「{text}」", f"a village code is 12 digits, got {text!r}")
        return text
    if column.type == fmt.DATE:
        return parse_date(text)
    if column.type == fmt.DATETIME:
        return parse_datetime(text)
    if column.type == fmt.FEN:
        return parse_fen(text, column.positive)
    if column.type == fmt.INT:
        if not _INTEGER.match(text):
            raise _Bad(f"须为整数，收到「{text}」", f"must be a whole number, got {text!r}")
        value = int(text)
        if value < 0 or (column.positive and value == 0):
            raise _Bad(
                f"须为{'正' if column.positive else '非负'}整数",
                f"must be {'positive' if column.positive else 'non-negative'}",
            )
        return value
    if column.type == fmt.DECIMAL:
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise _Bad(f"须为数字，收到「{text}」", f"must be a number, got {text!r}") from None
        exponent = value.as_tuple().exponent
        too_fine = not isinstance(exponent, int) or exponent < -2
        if not value.is_finite() or value <= 0 or too_fine or value >= Decimal("1e12"):
            raise _Bad("须为大于零、最多两位小数的数", "must be more than zero with at most two decimals")
        return value.quantize(Decimal("0.01"))
    if column.type == fmt.CHOICE:
        if text not in column.choices:
            raise _Bad(
                f"「{text}」不是允许的值（{'、'.join(column.choices)}）",
                f"{text!r} is not one of {', '.join(column.choices)}",
            )
        return text
    if column.type == fmt.JSON:
        return parse_step_ups(text)
    raise AssertionError(column.type)


def parse_step_ups(text: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise _Bad(
            '须为 JSON 数组，如 [{"from_year": 5, "percent": "5"}]',
            'must be a JSON array like [{"from_year": 5, "percent": "5"}]',
        ) from None
    if not isinstance(value, list):
        raise _Bad("须为 JSON 数组", "must be a JSON array")
    steps = []
    for item in value:
        ok = (
            isinstance(item, dict)
            and set(item) == {"from_year", "percent"}
            and isinstance(item["from_year"], int)
        )
        try:
            percent = Decimal(str(item["percent"])) if ok else Decimal(0)
        except InvalidOperation:
            ok = False
        if not ok or not 2 <= item["from_year"] <= 100 or not 0 < percent <= 100:
            raise _Bad(
                '每项须为 {"from_year": 2–100, "percent": "0–100"}',
                'each step-up must be {"from_year": 2-100, "percent": "0-100"}',
            )
        steps.append({"from_year": item["from_year"], "percent": format(percent.normalize(), "f")})
    return steps


def canonical(value: Any) -> Any:
    """A parsed value as it enters the content hash (the same whichever way it was written)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, (date, Decimal)):
        return str(value)
    return value


def content_hash(parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=canonical)
    return hashlib.sha256(blob.encode()).hexdigest()


# ---- the whole input --------------------------------------------------------------------------------------


def _kind_of(name: str) -> str | None:
    stem, dot, ext = name.rpartition(".")
    return stem if dot and f".{ext}" in fmt.EXTENSIONS and stem in fmt.SPEC_BY_KIND else None


def parse_sources(sources: Iterable[Source], today: date, stage: Callable[[str], None] | None = None) -> Plan:
    """Read and type-check every file; records of each kind keyed by id (checks against each other follow)."""
    plan = Plan(today=today)
    sources = list(sources)
    by_kind: dict[str, Source] = {}
    for source in sources:
        if source.name == fmt.MANIFEST:
            _check_manifest(source, plan)
            continue
        kind = _kind_of(source.name)
        if kind is None:
            plan.add(
                Problem(
                    source.name,
                    0,
                    "(file)",
                    f"无法识别的文件名：应为 {'、'.join(fmt.KIND_ORDER)} 之一，扩展名 .csv 或 .jsonl",
                    f"unrecognised file name: expected one of {', '.join(fmt.KIND_ORDER)} "
                    "with .csv or .jsonl",
                )
            )
            continue
        if kind in by_kind:
            plan.add(
                Problem(
                    source.name,
                    0,
                    "(file)",
                    f"「{kind}」同时有 {by_kind[kind].name} 和 {source.name}",
                    f"{kind} is given twice ({by_kind[kind].name} and {source.name})",
                )
            )
            continue
        by_kind[kind] = source
    if not by_kind and plan.valid:
        plan.add(Problem("(input)", 0, "(file)", "没有可导入的文件", "no files to import"))
    for kind in fmt.KIND_ORDER:
        if kind in by_kind:
            source = by_kind[kind]
            if stage:
                stage(f"reading {source.name}")
            plan.files[source.name] = FileReport(source.name, kind)
            _parse_file(source, fmt.SPEC_BY_KIND[kind], plan)
    return plan


def _check_manifest(source: Source, plan: Plan) -> None:
    try:
        manifest = json.loads(source.data.decode("utf-8-sig"))
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        version = "?"
    if version != fmt.FORMAT_VERSION:
        plan.add(
            Problem(
                source.name,
                1,
                "format_version",
                f"格式版本为 {version}，本系统读取第 {fmt.FORMAT_VERSION} 版",
                f"format version {version!r}; this system reads version {fmt.FORMAT_VERSION}",
            )
        )


def _parse_file(source: Source, spec: fmt.FileSpec, plan: Plan) -> None:
    text = _decode(source, plan)
    if text is None:
        return
    report = plan.files[source.name]
    records: dict[str, Record] = {}
    plan.records[spec.kind] = records
    rows = _rows(source, text, spec, plan)
    report.rows = len(rows)
    for line, raw in rows:
        values: dict[str, Any] = {}
        ok = True
        for column in spec.columns:
            text_value = (raw.get(column.name) or "").strip()
            if not text_value and column.default is not None:
                text_value = column.default
            if not text_value:
                if column.required:
                    plan.add(
                        Problem(
                            source.name,
                            line,
                            column.name,
                            f"「{column.name}」不能为空",
                            f"{column.name} must not be empty",
                        )
                    )
                    ok = False
                values[column.name] = [] if column.type == fmt.REFS else None
                continue
            try:
                values[column.name] = parse_value(column, text_value)
            except _Bad as bad:
                plan.add(Problem(source.name, line, column.name, bad.message, bad.message_en))
                ok = False
        if not ok:
            if raw.get("id", "").strip():
                plan.invalid_ids.setdefault(spec.kind, set()).add(raw["id"].strip())
            continue
        record_id = values["id"]
        if spec.multi_row:
            _add_entry_line(source.name, line, values, records, plan)
            continue
        record = Record(spec.kind, record_id, line, values, content_hash=content_hash(values))
        first = records.get(record_id)
        if first is None:
            records[record_id] = record
        elif first.content_hash != record.content_hash:
            plan.add(
                Problem(
                    source.name,
                    line,
                    "id",
                    f"编号「{record_id}」重复，且与第 {first.line} 行内容不同",
                    f"id {record_id!r} is duplicated with content different from line {first.line}",
                )
            )
    if spec.multi_row:
        # an entry with a line that did not parse is not checked further (its balance would mislead)
        for entry_id in plan.invalid_ids.get(spec.kind, set()):
            records.pop(entry_id, None)
        for record in records.values():
            record.lines.sort(key=lambda item: item["line_no"])
            # the lines' positions in the file are not content: the same entry written elsewhere is the same
            lines = [{key: value for key, value in item.items() if key != "_line"} for item in record.lines]
            record.content_hash = content_hash([record.values, lines])
    report.records = len(records)


ENTRY_COLUMNS = ("village_code", "entry_date", "memo", "counterparty", "source", "contract_id", "reverses_id")
LINE_COLUMNS = ("line_no", "account_code", "category", "debit_fen", "credit_fen", "line_memo")


def _add_entry_line(
    name: str, line: int, values: dict[str, Any], records: dict[str, Record], plan: Plan
) -> None:
    entry_values = {"id": values["id"], **{key: values[key] for key in ENTRY_COLUMNS}}
    line_values = {key: values[key] for key in LINE_COLUMNS} | {"_line": line}
    record = records.get(values["id"])
    if record is None:
        records[values["id"]] = Record("book_entries", values["id"], line, entry_values, [line_values])
        return
    for key in ENTRY_COLUMNS:
        if record.values[key] != entry_values[key]:
            plan.add(
                Problem(
                    name,
                    line,
                    key,
                    f"同一凭证「{values['id']}」的各行「{key}」不一致（见第 {record.line} 行）",
                    f"the lines of entry {values['id']!r} disagree on {key} (see line {record.line})",
                )
            )
            return
    if any(item["line_no"] == line_values["line_no"] for item in record.lines):
        plan.add(
            Problem(
                name,
                line,
                "line_no",
                f"凭证「{values['id']}」的分录行号 {line_values['line_no']} 重复",
                f"entry {values['id']!r} has line_no {line_values['line_no']} twice",
            )
        )
        return
    record.lines.append(line_values)


# ---- checks against each other and the database ------------------------------------------------------------


async def load_context(session: AsyncSession, plan: Plan) -> None:
    """What the database already holds that the checks need: earlier imports, villages, charts of accounts.

    Of the earlier imports only the ids this input names (as records or in references) are kept, read as a
    stream: a city's earlier imports run to millions of keys.
    """
    wanted = _named_ids(plan)
    result = await session.stream(
        select(ImportKey.kind, ImportKey.source_id, ImportKey.target_id, ImportKey.content_hash)
    )
    async for partition in result.partitions(20_000):
        for kind, source_id, target_id, digest in partition:
            if source_id in wanted.get(kind, ()):
                plan.keys.setdefault(kind, {})[source_id] = (target_id, digest)
    plan.collectives = dict((await session.execute(select(Collective.village_code, Collective.id))).all())
    if "book_entries" in plan.records:
        for collective_id, code, account_id, category, active in await session.execute(
            select(Account.collective_id, Account.code, Account.id, Account.category, Account.is_active)
        ):
            plan.accounts.setdefault(collective_id, {})[code] = (account_id, category, active)


def _named_ids(plan: Plan) -> dict[str, set[str]]:
    """Per kind, the ids the input holds or refers to."""
    named: dict[str, set[str]] = {kind: set(records) for kind, records in plan.records.items()}
    for kind, records in plan.records.items():
        references = [c for c in fmt.SPEC_BY_KIND[kind].columns if c.ref is not None]
        for record in records.values():
            for column in references:
                value = record.values.get(column.name)
                if value:
                    named.setdefault(column.ref, set()).update(value if isinstance(value, list) else [value])
    return named


class Checker:
    """The cross-record checks; each adds its problems to the plan."""

    def __init__(self, session: AsyncSession, plan: Plan) -> None:
        self.session = session
        self.plan = plan
        self.now = datetime.now(UTC)

    def problem(
        self, record: Record, field_name: str, message: str, message_en: str, line: int | None = None
    ) -> None:
        self.plan.add(
            Problem(self.plan.file_of(record.kind), line or record.line, field_name, message, message_en)
        )

    def records(self, kind: str) -> list[Record]:
        return list(self.plan.records.get(kind, {}).values())

    def ref(self, record: Record, field_name: str, kind: str, value: str | None) -> Record | None | bool:
        """Resolve a reference: the record in this import, True when imported before, False (and a problem)
        when it exists nowhere."""
        if value is None:
            return None
        found = self.plan.records.get(kind, {}).get(value)
        if found is not None:
            return found
        if value in self.plan.keys.get(kind, {}):
            return True
        if value in self.plan.invalid_ids.get(kind, set()):
            return False  # its own row is already reported
        self.problem(
            record,
            field_name,
            f"引用的{fmt.SPEC_BY_KIND[kind].title_zh}编号「{value}」不存在",
            f"refers to {kind} id {value!r}, which does not exist (neither in {kind} nor imported before)",
        )
        return False

    def village(self, record: Record) -> bool:
        code = record.values.get("village_code")
        if code is not None and code not in self.plan.collectives:
            self.problem(
                record,
                "village_code",
                f"村代码 {code} 不是已登记的村",
                f"village code {code} is not a known village",
            )
            return False
        return True

    def not_future(self, record: Record, field_name: str, value: date | datetime | None) -> None:
        if value is None:
            return
        late = value > self.now if isinstance(value, datetime) else value > self.plan.today
        if late:
            self.problem(
                record,
                field_name,
                f"历史记录的日期 {canonical(value)} 晚于今天",
                f"{canonical(value)} is in the future; historical records cannot be",
            )

    def classify(self) -> None:
        """New, or imported before with the same content (unchanged), or with other content (a problem)."""
        for kind, records in self.plan.records.items():
            known = self.plan.keys.get(kind, {})
            for record in records.values():
                if record.id in known:
                    target_id, digest = known[record.id]
                    if digest == record.content_hash:
                        record.state, record.target_id = "unchanged", target_id
                    else:
                        record.state = "conflict"
                        self.problem(
                            record,
                            "id",
                            f"编号「{record.id}」此前已导入，但内容与这次不同",
                            f"id {record.id!r} was imported before with different content",
                        )

    def new(self, kind: str) -> list[Record]:
        """The records to check: neither unchanged nor already refused as a conflict."""
        return [r for r in self.records(kind) if r.state not in ("unchanged", "conflict")]

    async def run(self) -> None:
        self.classify()
        for check in (
            self.cadres,
            self.elections,
            self.assets,
            self.bidders,
            self.listings,
            self.applicants,
            self.bids,
            self.contracts,
        ):
            await check()
        self.book_entries()

    async def cadres(self) -> None:
        for record in self.new("cadres"):
            self.village(record)
            v = record.values
            if v["term_end"] is not None and v["term_end"] < v["term_start"]:
                self.problem(record, "term_end", "任期结束日早于开始日", "term_end is before term_start")
        for record in self.new("cadre_relatives"):
            self.ref(record, "cadre_id", "cadres", record.values["cadre_id"])

    async def elections(self) -> None:
        seen: dict[tuple[str, date], Record] = {}
        existing = {
            (code, day): election_id
            for election_id, code, day in await self.session.execute(
                select(Election.id, Election.village_code, Election.election_date)
            )
        }
        for record in self.new("elections"):
            if not self.village(record):
                continue
            key = (record.values["village_code"], record.values["election_date"])
            if key in seen:
                self.problem(
                    record,
                    "election_date",
                    f"同一村同一日期的选举重复（见第 {seen[key].line} 行）",
                    f"the same village's election on this date is given twice (see line {seen[key].line})",
                )
            seen[key] = record
            if key in existing:
                record.state, record.target_id = "link", existing[key]
        for record in self.new("candidates"):
            self.ref(record, "election_id", "elections", record.values["election_id"])

    async def assets(self) -> None:
        records = self.new("assets")
        existing = set((await self.session.execute(select(Asset.village_code, Asset.code))).all())
        seen: dict[tuple[str, str], Record] = {}
        for record in records:
            if not self.village(record):
                continue
            v = record.values
            key = (v["village_code"], v["code"])
            if key in seen:
                self.problem(
                    record,
                    "code",
                    f"资产编码「{v['code']}」在本村重复（见第 {seen[key].line} 行）",
                    f"asset code {v['code']!r} is used twice in this village (see line {seen[key].line})",
                )
            elif key in existing:
                self.problem(
                    record,
                    "code",
                    f"本村已有资产编码为「{v['code']}」的资产",
                    f"the village already has an asset with code {v['code']!r}",
                )
            seen[key] = record
            self.not_future(record, "appraised_on", v["appraised_on"])

    async def bidders(self) -> None:
        existing = dict((await self.session.execute(select(Bidder.id_number, Bidder.id))).all())
        seen: dict[str, Record] = {}
        for record in self.new("bidders"):
            v = record.values
            try:
                v["id_number"] = identity_number(v["kind"], v["id_number"], "id_number")
            except DomainError as exc:
                self.problem(record, "id_number", exc.message, exc.message_en)
                continue
            if v["id_number"] in seen:
                self.problem(
                    record,
                    "id_number",
                    f"证件号码与第 {seen[v['id_number']].line} 行的竞买人重复",
                    f"the same ID number as the bidder on line {seen[v['id_number']].line}",
                )
            seen[v["id_number"]] = record
            if v["id_number"] in existing:
                record.state, record.target_id = "link", existing[v["id_number"]]

    async def listings(self) -> None:
        taken = set((await self.session.execute(select(Listing.number))).scalars())
        seen: dict[str, Record] = {}
        for record in self.new("listings"):
            v = record.values
            self.village(record)
            if v["number"] in seen or v["number"] in taken:
                self.problem(
                    record,
                    "number",
                    f"交易项目编号「{v['number']}」已被使用",
                    f"listing number {v['number']!r} is already used",
                )
            seen[v["number"]] = record
            for asset_id in v["asset_ids"]:
                asset = self.ref(record, "asset_ids", "assets", asset_id)
                if isinstance(asset, Record) and asset.values["village_code"] != v["village_code"]:
                    self.problem(
                        record,
                        "asset_ids",
                        f"资产「{asset_id}」不属于本村",
                        f"asset {asset_id!r} is another village's",
                    )
            if (
                v["max_increment_fen"] < v["min_increment_fen"]
                or v["max_increment_fen"] % v["min_increment_fen"]
            ):
                self.problem(
                    record,
                    "max_increment_fen",
                    "最高加价幅度须为最低加价幅度的整数倍",
                    "max_increment_fen must be a whole multiple of min_increment_fen",
                )
            if v["deposit_fen"] > v["starting_price_fen"]:
                self.problem(
                    record,
                    "deposit_fen",
                    "保证金不能高于起始价",
                    "the deposit cannot exceed the starting price",
                )
            order = ("announced_at", "registration_deadline", "bidding_starts_at", "bidding_ends_at")
            for earlier, later in pairwise(order):
                if v[later] < v[earlier]:
                    self.problem(
                        record, later, f"「{later}」早于「{earlier}」", f"{later} is before {earlier}"
                    )
            if v["status"] in ("sold", "failed") and v["closed_at"] is None:
                self.problem(
                    record,
                    "closed_at",
                    "成交或流拍的项目须有竞价结束时间",
                    "a sold or failed listing needs closed_at",
                )
            if v["closed_at"] is not None and v["closed_at"] < v["bidding_starts_at"]:
                self.problem(
                    record,
                    "closed_at",
                    "竞价结束时间早于竞价开始时间",
                    "closed_at is before bidding_starts_at",
                )
            for name in ("announced_at", "closed_at"):
                self.not_future(record, name, v[name])
            if v["status"] == "sold":
                for name in ("winner_applicant_id", "final_price_fen"):
                    if v[name] is None:
                        self.problem(
                            record,
                            name,
                            "成交的项目须有竞得人和成交价",
                            "a sold listing needs its winner and final price",
                        )
            winner = self.ref(record, "winner_applicant_id", "applicants", v["winner_applicant_id"])
            if isinstance(winner, Record) and winner.values["listing_id"] != record.id:
                self.problem(
                    record,
                    "winner_applicant_id",
                    "竞得人不是本项目的报名人",
                    "the winner is not an applicant of this listing",
                )

    async def applicants(self) -> None:
        pairs: dict[tuple[str, str], Record] = {}
        numbers: dict[tuple[str, str], Record] = {}
        for record in self.new("applicants"):
            v = record.values
            self.ref(record, "listing_id", "listings", v["listing_id"])
            self.ref(record, "bidder_id", "bidders", v["bidder_id"])
            key = (v["listing_id"], v["bidder_id"])
            if key in pairs:
                self.problem(
                    record,
                    "bidder_id",
                    f"同一竞买人在本项目重复报名（见第 {pairs[key].line} 行）",
                    f"the bidder applied twice for this listing (see line {pairs[key].line})",
                )
            pairs[key] = record
            if v["bidder_number"]:
                number = (v["listing_id"], v["bidder_number"])
                if number in numbers:
                    self.problem(
                        record,
                        "bidder_number",
                        "竞买号在本项目重复",
                        "bidder_number is used twice in this listing",
                    )
                numbers[number] = record
            self.not_future(record, "deposit_paid_at", v["deposit_paid_at"])

    async def bids(self) -> None:
        seqs: dict[tuple[str, int], Record] = {}
        for record in self.new("bids"):
            v = record.values
            listing = self.ref(record, "listing_id", "listings", v["listing_id"])
            applicant = self.ref(record, "applicant_id", "applicants", v["applicant_id"])
            if isinstance(applicant, Record) and applicant.values["listing_id"] != v["listing_id"]:
                self.problem(
                    record,
                    "applicant_id",
                    "出价人不是该项目的报名人",
                    "the applicant belongs to another listing",
                )
            key = (v["listing_id"], v["seq"])
            if key in seqs:
                self.problem(
                    record,
                    "seq",
                    f"本项目出价序号 {v['seq']} 重复",
                    f"seq {v['seq']} is used twice in this listing",
                )
            seqs[key] = record
            if isinstance(listing, Record):
                closed = listing.values["closed_at"]
                if closed is not None and v["placed_at"] > closed:
                    self.problem(
                        record,
                        "placed_at",
                        "出价时间晚于竞价结束时间",
                        "placed_at is after the listing's closed_at",
                    )
            self.not_future(record, "placed_at", v["placed_at"])

    async def contracts(self) -> None:
        taken = set((await self.session.execute(select(Contract.village_code, Contract.number))).all())
        seen: dict[tuple[str, str], Record] = {}
        for record in self.new("contracts"):
            v = record.values
            if not self.village(record):
                continue
            key = (v["village_code"], v["number"])
            if key in seen or key in taken:
                self.problem(
                    record,
                    "number",
                    f"本村合同编号「{v['number']}」已被使用",
                    f"contract number {v['number']!r} is already used in this village",
                )
            seen[key] = record
            asset = self.ref(record, "asset_id", "assets", v["asset_id"])
            if isinstance(asset, Record) and asset.values["village_code"] != v["village_code"]:
                self.problem(record, "asset_id", "资产不属于本村", "the asset is another village's")
            listing = self.ref(record, "listing_id", "listings", v["listing_id"])
            if isinstance(listing, Record) and listing.values["village_code"] != v["village_code"]:
                self.problem(record, "listing_id", "交易项目不属于本村", "the listing is another village's")
            self.ref(record, "counterparty_bidder_id", "bidders", v["counterparty_bidder_id"])
            if v["origin"] == "direct" and not v["origin_reason"]:
                self.problem(
                    record,
                    "origin_reason",
                    "直接签订的合同须说明理由",
                    "a direct contract needs origin_reason",
                )
            if v["price_basis"] == "per_mu_year" and v["area"] is None:
                self.problem(
                    record, "area", "按亩计价的合同须有面积（亩）", "a per-mu price needs the area in mu"
                )
            self.not_future(record, "signed_on", v["signed_on"])

    def book_entries(self) -> None:
        entries = self.new("book_entries")
        for record in entries:
            v = record.values
            if not self.village(record):
                continue
            self.not_future(record, "entry_date", v["entry_date"])
            contract = self.ref(record, "contract_id", "contracts", v["contract_id"])
            if isinstance(contract, Record) and contract.values["village_code"] != v["village_code"]:
                self.problem(record, "contract_id", "合同不属于本村", "the contract is another village's")
            reversed_entry = self.ref(record, "reverses_id", "book_entries", v["reverses_id"])
            if isinstance(reversed_entry, Record) and (
                reversed_entry.values["village_code"] != v["village_code"]
                or reversed_entry.values["entry_date"] > v["entry_date"]
                or reversed_entry is record
            ):
                self.problem(
                    record,
                    "reverses_id",
                    "被冲销的凭证须是本村更早的凭证",
                    "the reversed entry must be an earlier entry of the same village",
                )
            chart = self.plan.accounts.get(self.plan.collectives[v["village_code"]], {})
            debits = credits = 0
            for item in record.lines:
                debit, credit = item["debit_fen"], item["credit_fen"]
                if (debit == 0) == (credit == 0):
                    self.problem(
                        record,
                        "debit_fen",
                        "每行须且只能有借方或贷方金额之一",
                        "each line has exactly one of debit_fen and credit_fen",
                        item["_line"],
                    )
                debits, credits = debits + debit, credits + credit
                account = chart.get(item["account_code"])
                if account is None:
                    self.problem(
                        record,
                        "account_code",
                        f"科目 {item['account_code']} 不在本村账套中",
                        f"account {item['account_code']} is not in this collective's chart",
                        item["_line"],
                    )
                elif item["category"] is not None and item["category"] != account[1]:
                    self.problem(
                        record,
                        "category",
                        f"科目 {item['account_code']} 的类别是「{account[1] or '无'}」，不是「{item['category']}」",
                        f"account {item['account_code']} has category {account[1]!r}, "
                        f"not {item['category']!r}",
                        item["_line"],
                    )
            if debits != credits:
                self.problem(
                    record,
                    "debit_fen",
                    f"借贷不平衡：借方合计 {debits} 分，贷方合计 {credits} 分",
                    f"unbalanced entry: debits {debits} fen, credits {credits} fen",
                )
            elif debits == 0:
                self.problem(record, "debit_fen", "凭证金额不能为零", "the entry's total cannot be zero")


def resolve_per_file(plan: Plan) -> set[str]:
    """Per-file mode: the kinds that may be loaded (no problem in their file, nor in a file they refer to)."""
    failed = {report.kind for report in plan.files.values() if report.problems}
    reasons: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for kind, records in plan.records.items():
            if kind in failed:
                continue
            spec = fmt.SPEC_BY_KIND[kind]
            for record in records.values():
                for column in spec.columns:
                    if column.ref is None or column.ref == kind or column.ref not in failed:
                        continue
                    values = record.values.get(column.name)
                    targets = values if isinstance(values, list) else [values] if values else []
                    inside = plan.records.get(column.ref, {}).keys() | plan.invalid_ids.get(column.ref, set())
                    if any(target in inside for target in targets):
                        failed.add(kind)
                        reasons[kind] = column.ref
                        changed = True
                        break
                if kind in failed:
                    break
    for report in plan.files.values():
        if report.kind in reasons:
            report.skipped_because = plan.file_of(reasons[report.kind])
    return {kind for kind in plan.records if kind not in failed}


async def validate(
    session: AsyncSession, sources: Iterable[Source], today: date, stage: Callable[[str], None] | None = None
) -> Plan:
    """Read, type-check and cross-check everything; write nothing. ``stage`` hears what is being done."""
    plan = parse_sources(sources, today, stage)
    if stage:
        stage("checking references and the database")
    await load_context(session, plan)
    await Checker(session, plan).run()
    for kind, records in plan.records.items():
        report = plan.files[plan.file_of(kind)]
        report.unchanged = sum(1 for r in records.values() if r.state == "unchanged")
        report.new = report.records - report.unchanged
    return plan


def grouped(records: Iterable[Record], key: Callable[[Record], Any]) -> dict[Any, list[Record]]:
    out: dict[Any, list[Record]] = defaultdict(list)
    for record in records:
        out[key(record)].append(record)
    return out
