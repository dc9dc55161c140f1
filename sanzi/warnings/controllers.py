"""Warnings HTTP API: alerts and their review, rule parameters, the integrity index."""

from __future__ import annotations

from typing import Any

controllers: list[Any] = []
