"""Administration pages: users and roles, rule parameters, election calendars and candidates, cadres."""

from __future__ import annotations

from typing import Any

controllers: list[Any] = []
