"""The `sanzi` command: the Litestar CLI (with advanced-alchemy's `db` group) plus the project's own groups."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

T = TypeVar("T")


def main() -> None:
    """Entry point of the `sanzi` console script.

    The project's own groups (`geography`, `demo`, `warnings`, ...) run without the Litestar CLI, which builds
    the whole web app to find its plugins' commands (about two seconds before any command starts); `run`, `db`,
    `--help` and the rest go through it."""
    os.environ.setdefault("LITESTAR_APP", "sanzi.platform.asgi:create_app")
    commands = project_commands()
    first = next((argument for argument in sys.argv[1:] if not argument.startswith("-")), None)
    if first in commands:
        from rich_click import RichGroup  # as the Litestar CLI formats help and errors

        sys.exit(RichGroup(name="sanzi", commands=commands)(prog_name="sanzi"))
    from litestar.cli.main import litestar_group

    sys.exit(litestar_group())


def run_async(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a command's work; a database that cannot be reached or is not migrated is a clear error."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    try:
        return asyncio.run(coro_factory())  # type: ignore[arg-type]
    except (OperationalError, DBAPIError) as exc:
        reason = str(exc.orig) if getattr(exc, "orig", None) else str(exc)
        fail(
            f"数据库错误 / database error: {reason.splitlines()[0]}\n"
            "检查 DATABASE_URL，并先运行 `sanzi db upgrade` / check DATABASE_URL and run `sanzi db upgrade` first"
        )


def fail(message: str) -> NoReturn:
    """Stop a command with a clear message and a non-zero exit."""
    raise click.ClickException(message)


def project_commands() -> dict[str, click.Command]:
    """The project's own command groups by name."""
    return {command.name: command for loader in _GROUP_LOADERS for command in loader() if command.name}


def register_commands(cli: Any) -> None:
    """Add the project's groups to the Litestar CLI (called by SanziPlugin.on_cli_init)."""
    for group in project_commands().values():
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
    from sanzi.platform.demo import (
        DEMO_LOGINS,
        DEMO_PASSWORD,
        load_demo_auctions,
        load_demo_books,
        load_demo_users,
    )
    from sanzi.platform.settings import get_settings

    settings = get_settings()
    if settings.environment == "production":
        fail("demo data is refused in production (SANZI_ENV=production)")

    async def load() -> tuple[int, bool]:
        engine = create_engine(settings)
        try:
            async with session_scope(engine) as session:
                users = await load_demo_users(session, Passwords(cheap=settings.environment == "test"))
            async with session_scope(engine) as session:
                books = await load_demo_books(session)
            async with session_scope(engine) as session:
                await load_demo_auctions(session, datetime.now(UTC))
            return users, books
        finally:
            await engine.dispose()

    created, books_loaded = run_async(load)
    table = Table(title=f"演示账号 / demo logins (password: {DEMO_PASSWORD})")
    for column in ("username", "role", "name", "scope"):
        table.add_column(column)
    for login in DEMO_LOGINS:
        table.add_row(login.username, login.role.value, login.display_name, login.scope)
    console = Console()
    console.print(table)
    console.print(f"{created} demo users created ({len(DEMO_LOGINS) - created} already present)")
    console.print(
        "demo village 永兴村 (440111020200): "
        + ("assets, books, contracts and auctions loaded" if books_loaded else "already loaded")
    )


def _village_count(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    """``all`` or a positive number of villages."""
    if value.strip().lower() == "all":
        return None
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(f"应为 all 或正整数 / must be 'all' or a positive number, got {value!r}") from None
    if number < 1:
        raise click.BadParameter(f"应为 all 或正整数 / must be 'all' or a positive number, got {value!r}")
    return number


@demo_group.command(
    "seed", help="生成城市规模的演示历史 / write years of deterministic, realistic history for the villages."
)
@click.option("--years", type=click.IntRange(1, 30), default=10, show_default=True, help="年数 / years of history")
@click.option("--villages", callback=_village_count, default="all", show_default=True,
              help="村数：all 或 N（按镇街整片选取）/ 'all' or N villages (whole townships, in seed order)")
@click.option("--seed", "seed", type=click.IntRange(0), default=1, show_default=True,
              help="随机种子：同样的参数生成同样的数据 / same arguments, same data")
@click.option("--scale", type=click.IntRange(1, 16), default=1, show_default=True,
              help="每村交易、出价和记账量的倍数 / multiplies each village's trades, bids and book entries")
@click.option("--today", "today", default=None, help="历史截止日 YYYY-MM-DD（默认今天）/ the last day of history")
@click.option("--append", is_flag=True, help="数据库已有演示历史时再追加一批 / add another run to seeded data")
@click.option("--if-empty", "if_empty", is_flag=True,
              help="已有演示历史时跳过并正常退出（供 make run 使用）/ skip, exiting 0, when history is already seeded")
@click.option("--database-url", "database_url", default=None, help="默认取 DATABASE_URL / defaults to DATABASE_URL")
def demo_seed(
    years: int,
    villages: int | None,
    seed: int,
    scale: int,
    today: str | None,
    append: bool,
    if_empty: bool,
    database_url: str | None,
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sanzi.platform.database import create_engine, session_scope
    from sanzi.platform.settings import Settings
    from sanzi.warnings.seed import AlreadySeeded, SeedError, SeedOptions, seed_history

    settings = Settings(DATABASE_URL=database_url) if database_url else Settings()
    if settings.environment == "production":
        fail("演示数据不能写入生产环境 / demo history is refused in production (SANZI_ENV=production)")
    last_day = None
    if today is not None:
        try:
            last_day = datetime.strptime(today, "%Y-%m-%d").date()
        except ValueError:
            fail(f"--today: 日期格式应为 YYYY-MM-DD / date must be YYYY-MM-DD: {today!r}")
    options = SeedOptions(years=years, villages=villages, seed=seed, scale=scale, today=last_day, append=append)
    console = Console()

    async def load() -> Any:
        engine = create_engine(settings)
        try:
            columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console, transient=True) as progress:
                tasks = {
                    "villages": progress.add_task("生成 / generating villages", total=None),
                    "rows": progress.add_task("写入 / writing rows", total=0),
                }

                def advance(phase: str, n: int, total: int | None) -> None:
                    task = tasks[phase]
                    if total is not None:
                        known = progress.tasks[task].total or 0
                        progress.update(task, total=total if phase == "villages" else known + total)
                    if n:
                        progress.advance(task, n)

                async with session_scope(engine) as session:
                    report = await seed_history(session, options, advance)
            return report
        finally:
            await engine.dispose()

    try:
        report = run_async(load)
    except AlreadySeeded as exc:
        if not if_empty:
            fail(str(exc))
        console.print("已有演示历史，跳过 / seeded history already present: skipped")
        return
    except SeedError as exc:
        fail(str(exc))
    table = Table(title=f"演示历史 / seeded history {report.tag}: {len(report.villages)} villages, "
                        f"{report.first_day} to {report.today}")
    for column in ("table", "rows", "seconds", "rows/s"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, rows in report.rows.items():
        seconds = report.seconds[name]
        table.add_row(name, f"{rows:,}", f"{seconds:.2f}", f"{rows / seconds:,.0f}" if seconds else "-")
    for name, seconds in report.seconds.items():
        if name not in report.rows:
            table.add_row(name, "-", f"{seconds:.2f}", "-")
    console.print(table)
    injected = report.injected()
    if injected:
        console.print("injected irregularities: " + ", ".join(f"{rule} {n}" for (_, rule), n in sorted(injected.items())))
    console.print(
        f"{sum(report.rows.values()):,} rows in {report.total_seconds:.1f} s "
        f"(generating {report.generate_seconds:.1f} s); check with `sanzi ledger verify` and `sanzi warnings scan`"
    )


@click.group(name="users", help="用户 / officials' accounts (bidders register themselves)")
def users_group() -> None:
    pass


def _with_user_service(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(UserService)`` in one committed session; a refusal stops the command with its message."""
    from pydantic import ValidationError

    from sanzi.platform.auth import Passwords
    from sanzi.platform.database import create_engine, session_scope
    from sanzi.platform.problems import DomainError
    from sanzi.platform.services import UserService
    from sanzi.platform.settings import get_settings

    settings = get_settings()

    async def run() -> T:
        engine = create_engine(settings)
        try:
            async with session_scope(engine) as session:
                return await work(UserService(session, Passwords(cheap=settings.environment == "test")))
        finally:
            await engine.dispose()

    try:
        return run_async(run)
    except DomainError as exc:
        fail(f"{exc.field or ''}: {exc.message} / {exc.message_en}".lstrip(": "))
    except ValidationError as exc:
        error = exc.errors()[0]
        fail(f"{'.'.join(map(str, error['loc']))}: 输入无效 / {error['msg']}")


_PASSWORD_OPTION = click.option(
    "--password",
    envvar="SANZI_USER_PASSWORD",
    prompt="密码 / password",
    hide_input=True,
    confirmation_prompt=True,
    help="read from SANZI_USER_PASSWORD, else asked for (never pass it on the command line)",
)


@users_group.command("create", help="Create an admin, a village committee member or a supervisor.")
@click.option("--role", required=True, type=click.Choice(["admin", "committee", "supervisor"]))
@click.option("--username", required=True)
@click.option("--name", "display_name", help="display name (default: the username)")
@click.option("--village", "village_code", help="committee: the village's 12-digit code")
@click.option("--area", "area_code", help="supervisor: a township's or district's 12-digit code")
@click.option("--phone")
@_PASSWORD_OPTION
def users_create(
    role: str,
    username: str,
    display_name: str | None,
    village_code: str | None,
    area_code: str | None,
    phone: str | None,
    password: str,
) -> None:
    from sanzi.platform import schemas

    data = schemas.UserCreate(
        username=username,
        password=password,
        display_name=display_name or username,
        role=role,
        village_code=village_code,
        area_code=area_code,
        phone=phone,
    )

    async def create(service: Any) -> Any:
        return await service.create(data)

    user = _with_user_service(create)
    scope = user.village_code or user.area_code or "-"
    click.echo(f"created user {user.username} (id {user.id}, role {user.role}, scope {scope})")


@users_group.command("list", help="List users, optionally of one role.")
@click.option("--role", type=click.Choice(["admin", "committee", "supervisor", "bidder"]))
def users_list(role: str | None) -> None:
    from sanzi.platform.models import Role

    async def rows(service: Any) -> Any:
        return await service.list(Role(role) if role else None, None, 1, 100_000)

    page = _with_user_service(rows)
    for user in page.items:
        scope = user.village_code or user.area_code or "-"
        state = "active" if user.is_active else "inactive"
        click.echo(f"{user.id}\t{user.username}\t{user.role.value}\t{scope}\t{state}\t{user.display_name}")
    click.echo(f"{page.total} users")


@users_group.command("set-password", help="Reset a password (revoking API tokens) and reactivate the user.")
@click.argument("username")
@_PASSWORD_OPTION
def users_set_password(username: str, password: str) -> None:
    from sqlalchemy import select

    from sanzi.platform import schemas
    from sanzi.platform.models import User

    async def reset(service: Any) -> Any:
        user_id = await service.session.scalar(select(User.id).where(User.username == username.lower()))
        if user_id is None:
            fail(f"用户不存在 / no user named {username}")
        data = schemas.UserUpdate(password=password, is_active=True)
        return await service.update(user_id, data)

    user = _with_user_service(reset)
    click.echo(f"password of {user.username} reset; the account is active")


def _platform_groups() -> list[click.Group]:
    from sanzi.platform.document_fonts import documents_group

    return [geography_group, demo_group, users_group, documents_group]


def _ledger_groups() -> list[click.Group]:
    from sanzi.ledger import cli as ledger_cli

    return list(getattr(ledger_cli, "groups", []))


def _warnings_groups() -> list[click.Group]:
    from sanzi.warnings import cli as warnings_cli

    return list(getattr(warnings_cli, "groups", []))


def _interchange_groups() -> list[click.Command]:
    from sanzi.interchange import cli as interchange_cli

    return list(getattr(interchange_cli, "groups", []))


_GROUP_LOADERS: list[Callable[[], list[click.Command]]] = [
    _platform_groups, _ledger_groups, _warnings_groups, _interchange_groups
]
