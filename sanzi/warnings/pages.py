"""Warning pages: the supervisors' dashboard, alerts with their evidence and review, the committee's responses."""

from __future__ import annotations

from typing import Any

controllers: list[Any] = []
