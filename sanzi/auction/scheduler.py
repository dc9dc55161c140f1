"""The in-app scheduler: opens bidding when its window starts and closes listings that have come due.

One background task per app worker; every pass first asks the database which listings are due (so listings
that came due while the app was down are caught up at start) and then handles each under its lock with a
re-check, so several workers may run it at once. Errors are logged and the loop goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from litestar.channels import ChannelsPlugin
from sqlalchemy.ext.asyncio import async_sessionmaker

from sanzi.auction.services.bidding import channels_publisher, close_due, open_due

log = logging.getLogger(__name__)


async def run_once(maker: Any, publish: Any, now: datetime) -> tuple[list[int], list[int]]:
    async with maker() as session:
        opened = await open_due(session, now)
        closed = await close_due(session, now, publish)
    if opened or closed:
        log.info("scheduler: opened %s, closed %s", opened, closed)
    return opened, closed


async def run_scheduler(app: Any) -> None:
    settings = app.state.settings
    maker = async_sessionmaker(app.state.engine, expire_on_commit=False)
    plugin = app.plugins.get(ChannelsPlugin)
    publish = channels_publisher(plugin) if plugin is not None else None
    while True:
        try:
            await run_once(maker, publish, datetime.now(UTC))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the next pass retries; a scheduler that dies closes nothing
            log.exception("scheduler pass failed")
        await asyncio.sleep(settings.scheduler_interval_seconds)


@asynccontextmanager
async def scheduler_lifespan(app: Any) -> AsyncIterator[None]:
    if not app.state.settings.scheduler_enabled:
        yield
        return
    task = asyncio.create_task(run_scheduler(app), name="sanzi-auction-scheduler")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
