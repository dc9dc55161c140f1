"""Money is integer fen everywhere; the API reads and writes yuan as decimal strings."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_YUAN = re.compile(r"^(\d{1,13})(?:\.(\d{1,2}))?$")
MAX_FEN = 10**15  # ¥10 trillion: far above any collective's deal, far below 2**63


def fen_to_yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def parse_yuan(value: Any) -> int:
    """Parse a non-negative yuan amount given as a string (or an integer) into fen; refuse floats."""
    if isinstance(value, bool) or isinstance(value, float):
        raise ValueError("金额须为字符串形式的元，如 \"1234.50\" / amount must be a yuan string like \"1234.50\"")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("金额格式无效 / invalid amount")
    match = _YUAN.match(value.strip())
    if not match:
        raise ValueError(
            "金额须为非负数且最多两位小数（分） / amount must be non-negative with at most two decimals (fen)"
        )
    whole, cents = match.group(1), (match.group(2) or "").ljust(2, "0")
    fen = int(whole) * 100 + int(cents)
    if fen > MAX_FEN:
        raise ValueError("金额过大 / amount too large")
    return fen


def round_fen(value: Decimal) -> int:
    """Round a computed Decimal amount of fen half-up to a whole fen."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


_yuan_schema = WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d{1,2})?$", "examples": ["1234.50"]})

#: An input amount in yuan (string) held as int fen.
YuanIn = Annotated[int, BeforeValidator(parse_yuan), _yuan_schema]
#: An output amount held as int fen, shown as a yuan string.
YuanOut = Annotated[int, PlainSerializer(fen_to_yuan, return_type=str), _yuan_schema]
