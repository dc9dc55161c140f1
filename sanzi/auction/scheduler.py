"""The in-app scheduler: opens bidding when its window starts and closes listings that have come due."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def scheduler_lifespan(app: Any) -> AsyncIterator[None]:
    yield
