"""`sanzi warnings ...`: full scan, integrity index, scenario generator."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from sanzi.platform.cli import fail, run_async


def _engine() -> Any:
    """An engine for DATABASE_URL as the environment says now (settings are read afresh, not from the cache)."""
    from sanzi.platform.database import create_engine
    from sanzi.platform.settings import Settings

    return create_engine(Settings())


class WarningsGroup(click.Group):
    """Adds `scenarios` from sanzi.warnings.scenarios when that module exists, importing it only when asked."""

    def _scenarios(self) -> click.Command | None:
        try:
            from sanzi.warnings.scenarios import scenarios_command
        except ModuleNotFoundError as exc:
            if exc.name != "sanzi.warnings.scenarios":
                raise
            return None
        except ImportError:
            return None
        return scenarios_command

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        return sorted({*names, "scenarios"}) if self._scenarios() is not None else names

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name == "scenarios":
            return self._scenarios()
        return command


@click.group(name="warnings", cls=WarningsGroup, help="廉情预警 / warning rules: full scan, integrity index")
def warnings_group() -> None:
    pass


@warnings_group.command("scan", help="Evaluate every rule over all data (idempotent) and recompute this month's index.")
@click.option("--district", "district", default=None, help="only this district (6- or 12-digit code)")
@click.option("--since", "since", default=None, help="only facts on or after this date (YYYY-MM-DD)")
def scan_command(district: str | None, since: str | None) -> None:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from sanzi.platform.database import session_scope
    from sanzi.platform.problems import DomainError
    from sanzi.warnings.engine import all_rules, scan

    since_date = None
    if since is not None:
        try:
            since_date = datetime.strptime(since, "%Y-%m-%d").date()
        except ValueError:
            fail(f"--since: 日期格式应为 YYYY-MM-DD / date must be YYYY-MM-DD: {since!r}")
    rules = all_rules()

    async def run() -> Any:
        engine = _engine()
        try:
            async with session_scope(engine) as session:
                with Progress(transient=True) as progress:
                    task = progress.add_task("rules", total=len(rules))

                    def advance(rule: Any, _counts: Any) -> None:
                        progress.update(task, advance=1, description=rule.id)

                    return await scan(session, district_code=district, since=since_date, rules=rules, progress=advance)
        finally:
            await engine.dispose()

    try:
        summary = run_async(run)
    except DomainError as exc:
        fail(f"{exc.field or ''}: {exc.message} / {exc.message_en}".lstrip(": "))
    table = Table(title="预警扫描 / warnings scan")
    for column in ("rule", "raised", "updated", "unchanged"):
        table.add_column(column, justify="left" if column == "rule" else "right")
    for rule in rules:
        counts = summary.counts(rule.id)
        table.add_row(rule.id, str(counts.raised), str(counts.updated), str(counts.unchanged))
    console = Console(width=120)
    console.print(table)
    console.print(
        f"{len(rules)} rules: {summary.raised} raised, {summary.updated} updated, {summary.unchanged} unchanged; "
        f"integrity index recomputed for {summary.index_month:%Y-%m}"
    )


@warnings_group.command("index", help="Recompute the village integrity index for a month (default: this month).")
@click.option("--month", "month", default=None, help="YYYY-MM")
def index_command(month: str | None) -> None:
    from datetime import UTC

    from sanzi.platform.database import session_scope
    from sanzi.platform.problems import DomainError
    from sanzi.warnings.services import IntegrityService, month_start, parse_month

    try:
        first_day = parse_month(month, "--month") if month else month_start(datetime.now(UTC).date())
    except DomainError as exc:
        fail(f"--month: {exc.message} / {exc.message_en}")

    async def run() -> tuple[int, dict[str, int]]:
        from sqlalchemy import func, select

        from sanzi.warnings.models import IntegrityIndex

        engine = _engine()
        try:
            async with session_scope(engine) as session:
                count = await IntegrityService(session).recompute(first_day)
                rows = await session.execute(
                    select(IntegrityIndex.level, func.count())
                    .where(IntegrityIndex.month == first_day)
                    .group_by(IntegrityIndex.level)
                )
                return count, {level: n for level, n in rows}
        finally:
            await engine.dispose()

    count, levels = run_async(run)
    summary = ", ".join(f"{levels.get(level, 0)} {level}" for level in ("green", "yellow", "orange", "red"))
    click.echo(f"integrity index {first_day:%Y-%m}: {count} villages ({summary})")


groups: list[click.Group] = [warnings_group]
