"""Ledger pages: the committee's assets, books, contracts and arrears, and each village's public disclosure."""

from __future__ import annotations

from typing import Any

controllers: list[Any] = []
