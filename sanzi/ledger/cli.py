"""`sanzi ledger ...`: verify the hash chains of the books, publish the root over all chain heads."""

from __future__ import annotations

from typing import Any

import click

from sanzi.platform.cli import fail, run_async


def _engine() -> Any:
    """An engine for DATABASE_URL as the environment says now (settings are read afresh, not from the cache)."""
    from sanzi.platform.database import create_engine
    from sanzi.platform.settings import Settings

    return create_engine(Settings())


@click.group(name="ledger", help="账簿 / the books: verify hash chains, publish the root")
def ledger_group() -> None:
    pass


@ledger_group.command("verify", help="Re-compute every collective's hash chain; exit 1 naming the first broken entry.")
@click.option("--village", "village", default=None, help="only this village (its 12-digit code)")
def verify(village: str | None) -> None:
    from rich.progress import Progress
    from sqlalchemy import func, select

    from sanzi.ledger.services.books import BooksService
    from sanzi.platform.database import session_scope
    from sanzi.platform.geography import normalise_code
    from sanzi.platform.models import Collective
    from sanzi.platform.problems import DomainError

    code = None
    if village:
        try:
            code = normalise_code(village, "village")
        except DomainError as exc:
            fail(f"--village: {exc.message} / {exc.message_en}")

    async def check() -> Any:
        engine = _engine()
        try:
            async with session_scope(engine) as session:
                service = BooksService(session)
                query = select(func.count()).select_from(Collective)
                if code:
                    query = query.where(Collective.village_code == code)
                with Progress(transient=True) as progress:
                    task = progress.add_task("verifying chains", total=await session.scalar(query))
                    return await service.verify_all(code, lambda n: progress.advance(task, n))
        finally:
            await engine.dispose()

    checked, broken = run_async(check)
    if code and checked == 0:
        fail(f"村 {code} 不存在 / village {code} not found")
    if broken:
        for village_code, failure in broken:
            entry = f"entry id {failure.entry_id}" if failure.entry_id is not None else "no entry"
            click.echo(
                f"BROKEN village {village_code} seq {failure.seq} ({entry}): {failure.reason}: {failure.detail}",
                err=True,
            )
        village_code, first = broken[0]
        fail(
            f"{len(broken)} of {checked} chains broken; first: village {village_code} seq {first.seq} "
            f"entry id {first.entry_id}: {first.reason}"
        )
    click.echo(f"OK: {checked} chains verified")


@ledger_group.command("publish-root", help="Roll every chain head into an RFC 6962 Merkle root and publish it.")
def publish_root() -> None:
    from sanzi.ledger.services.books import BooksService
    from sanzi.platform.database import session_scope

    async def publish() -> Any:
        engine = _engine()
        try:
            async with session_scope(engine) as session:
                root = await BooksService(session).publish_root()
                return root.id, root.tree_size, root.root_hash, root.published_at
        finally:
            await engine.dispose()

    root_id, size, root_hash, published_at = run_async(publish)
    click.echo(f"root {root_id}: {root_hash} over {size} chains at {published_at.isoformat()}")


groups: list[click.Group] = [ledger_group]
