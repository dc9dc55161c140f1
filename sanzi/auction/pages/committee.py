"""The village committee's listing pages: its listings and the submission form with the villagers' resolution."""

from __future__ import annotations

from typing import Any

controllers: list[Any] = []
