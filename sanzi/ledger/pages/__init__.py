"""Ledger pages: the committee's assets, books, contracts and arrears; each village's public disclosure."""

from __future__ import annotations

from typing import Any

from sanzi.ledger.pages import assets, books, contracts, disclosure

controllers: list[Any] = [
    *assets.controllers,
    *books.controllers,
    *contracts.controllers,
    *disclosure.controllers,
]
