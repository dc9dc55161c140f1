"""Public portal pages: home with the platform's figures, announcements, a listing, results and search."""

from __future__ import annotations

from typing import Any

controllers: list[Any] = []
