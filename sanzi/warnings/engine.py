"""The warning engine: full scans, incremental evaluation after committed events, alert upserts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


@asynccontextmanager
async def engine_lifespan(app: Any) -> AsyncIterator[None]:
    yield
