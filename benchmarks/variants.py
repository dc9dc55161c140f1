"""App variants for diagnostic runs of the benchmark only (never served in production): the same app with one
part switched off, so the cost of that part under the bid load can be read off as a ratio."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar


def app_without_incremental_warnings() -> Litestar:
    """The app whose workers neither evaluate warning rules after each committed event nor append the events
    to the stream for `sanzi warnings worker` (a full scan would find what they raise)."""
    from sanzi.warnings import engine

    @contextlib.asynccontextmanager
    async def no_engine(app: Any) -> AsyncIterator[None]:
        yield

    engine.engine_lifespan = no_engine  # read by the app factory when it builds the app
    from sanzi.platform.app import create_app

    return create_app()
