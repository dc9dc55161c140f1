"""Auction HTTP API: bidding."""

from __future__ import annotations

from typing import Any

controllers: list[Any] = []
