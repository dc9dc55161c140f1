"""The `sanzi` command: the Litestar CLI (with advanced-alchemy's `db` group) plus the project's own groups."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

T = TypeVar("T")


def main() -> None:
    """Entry point of the `sanzi` console script."""
    os.environ.setdefault("LITESTAR_APP", "sanzi.platform.asgi:create_app")
    from litestar.cli.main import litestar_group

    sys.exit(litestar_group())


def run_async(coro_factory: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(coro_factory())  # type: ignore[arg-type]


def fail(message: str) -> NoReturn:
    """Stop a command with a clear message and a non-zero exit."""
    raise click.ClickException(message)


def register_commands(cli: Any) -> None:
    """Add the project's groups to the Litestar CLI (called by SanziPlugin.on_cli_init)."""
    for loader in _GROUP_LOADERS:
        for group in loader():
            cli.add_command(group)


@click.group(name="geography", help="区划 / districts, townships and villages")
def geography_group() -> None:
    pass


@geography_group.command("import", help="Load NBS division codes (default: the shipped Guangzhou villages).")
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def geography_import(file: Path | None) -> None:
    from rich.progress import Progress

    from sanzi.ledger.chart import open_books
    from sanzi.platform.database import create_engine, session_scope
    from sanzi.platform.geography import DivisionFileError, import_divisions, read_divisions_file, shipped_divisions_path

    path = file or shipped_divisions_path()
    try:
        divisions = read_divisions_file(path)
    except DivisionFileError as exc:
        fail(f"{path}: 第 {exc.line} 行 / line {exc.line}: {exc.message_zh} / {exc.message_en}")

    async def load() -> Any:
        engine = create_engine()
        try:
            async with session_scope(engine) as session:
                with Progress(transient=True) as progress:
                    task = progress.add_task("importing villages", total=len(divisions.villages))
                    summary = await import_divisions(session, divisions, lambda n: progress.advance(task, n))
                    accounts = await open_books(session, summary.new_collective_ids)
            return summary, accounts
        finally:
            await engine.dispose()

    summary, accounts = run_async(load)
    click.echo(
        f"{len(divisions.villages)} villages in {path.name}: added {summary.districts} districts, "
        f"{summary.townships} townships, {summary.villages} villages, {summary.collectives} collectives "
        f"({accounts} accounts); {summary.unchanged} unchanged; {divisions.skipped} other rows skipped"
    )


@click.group(name="demo", help="演示数据 / demo data for a laptop")
def demo_group() -> None:
    pass


@demo_group.command("load", help="Load the small demo data set (idempotent) and print one login per role.")
def demo_load() -> None:
    from rich.console import Console
    from rich.table import Table

    from sanzi.platform.auth import Passwords
    from sanzi.platform.database import create_engine, session_scope
    from sanzi.platform.demo import DEMO_LOGINS, DEMO_PASSWORD, load_demo_users
    from sanzi.platform.settings import get_settings

    settings = get_settings()
    if settings.environment == "production":
        fail("demo data is refused in production (SANZI_ENV=production)")

    async def load() -> int:
        engine = create_engine(settings)
        try:
            async with session_scope(engine) as session:
                return await load_demo_users(session, Passwords(cheap=settings.environment == "test"))
        finally:
            await engine.dispose()

    created = run_async(load)
    table = Table(title=f"演示账号 / demo logins (password: {DEMO_PASSWORD})")
    for column in ("username", "role", "name", "scope"):
        table.add_column(column)
    for login in DEMO_LOGINS:
        table.add_row(login.username, login.role.value, login.display_name, login.scope)
    console = Console()
    console.print(table)
    console.print(f"{created} demo users created ({len(DEMO_LOGINS) - created} already present)")


def _platform_groups() -> list[click.Group]:
    return [geography_group, demo_group]


def _ledger_groups() -> list[click.Group]:
    from sanzi.ledger import cli as ledger_cli

    return list(getattr(ledger_cli, "groups", []))


_GROUP_LOADERS: list[Callable[[], list[click.Group]]] = [_platform_groups, _ledger_groups]
