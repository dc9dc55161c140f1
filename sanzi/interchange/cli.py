"""`sanzi import DIR` and `sanzi export DIR`: a city's existing records in and out (interchange format)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from sanzi.platform.cli import fail, run_async


def _engine() -> Any:
    """An engine for DATABASE_URL as the environment says now (settings read afresh, not from the cache)."""
    from sanzi.platform.database import create_engine
    from sanzi.platform.settings import Settings

    return create_engine(Settings())


def _sources(path: Path) -> list[Any]:
    from sanzi.interchange.validation import sources_from_directory, sources_from_zip
    from sanzi.platform.problems import DomainError

    if path.is_dir():
        return sources_from_directory(path)
    try:
        return sources_from_zip(path.read_bytes())
    except DomainError as exc:
        fail(f"{path}: {exc.message} / {exc.message_en}")


@click.command(
    "import",
    help="导入历史数据 / import a city's records (a directory or a .zip in the interchange "
    "format, docs/import-format.md): everything is checked first, then written in one "
    "transaction; a second run of the same files changes nothing.",
)
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="check only; write nothing")
@click.option(
    "--per-file",
    is_flag=True,
    help="load the files without problems (and not depending on a file with problems); default: "
    "nothing is written if anything is wrong",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also write the validation report as JSON to this file",
)
def import_command(source: Path, dry_run: bool, per_file: bool, report_path: Path | None) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sanzi.interchange.loader import import_sources
    from sanzi.platform.database import session_scope
    from sanzi.platform.settings import Settings

    sources = _sources(source)
    today = datetime.now(Settings().zone).date()
    started = time.perf_counter()

    async def run() -> Any:
        engine = _engine()
        try:
            async with session_scope(engine) as session:
                columns = (
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                )
                with Progress(*columns, transient=True) as progress:
                    checking = progress.add_task("checking / 校验", total=None)
                    loading = progress.add_task("loading / 写入", total=None, visible=False)

                    def advance(kind: str, n: int) -> None:
                        progress.update(
                            loading, advance=n, description=f"loading / 写入 {kind}", visible=True
                        )

                    def stage(text: str, total: int | None = None) -> None:
                        if total is None:
                            progress.update(checking, description=f"checking / 校验: {text}")
                        else:
                            progress.update(checking, total=1, completed=1, description="checked / 已校验")
                            progress.update(loading, total=total, visible=True)

                    plan, written = await import_sources(
                        session,
                        sources,
                        today=today,
                        dry_run=dry_run,
                        per_file=per_file,
                        progress=advance,
                        stage=stage,
                    )
                    progress.update(checking, total=1, completed=1)
                return plan, written
        finally:
            await engine.dispose()

    plan, written = run_async(run)
    elapsed = time.perf_counter() - started
    console = Console(width=140)
    table = Table(title="导入 / import" + (" (dry run)" if dry_run else ""))
    for column in ("file", "records", "new", "unchanged", "problems", "written"):
        table.add_column(column, justify="left" if column == "file" else "right")
    for report in plan.files.values():
        state = (
            "yes"
            if report.loaded
            else (f"no (needs {report.skipped_because})" if report.skipped_because else "no")
        )
        table.add_row(
            report.file,
            str(report.records),
            str(report.new),
            str(report.unchanged),
            str(report.problems),
            state,
        )
    console.print(table)
    for problem in plan.problems:
        console.print(str(problem), markup=False, highlight=False)
    if plan.problem_count > len(plan.problems):
        console.print(f"... {plan.problem_count - len(plan.problems)} more problems not listed")
    if report_path is not None:
        report_path.write_text(
            json.dumps(
                {**plan.report(), "dry_run": dry_run, "written": written}, ensure_ascii=False, indent=2
            ),
            encoding="utf-8",
        )
    total_written = sum(written.values())
    if plan.problem_count:
        if total_written:
            fail(
                f"{plan.problem_count} 个问题；已按文件写入 {total_written} 条无问题的记录 / "
                f"{plan.problem_count} problems; {total_written} records of files without problems written"
            )
        fail(
            f"{plan.problem_count} 个问题，未写入任何数据 / {plan.problem_count} problems; nothing was written"
        )
    if dry_run:
        click.echo(
            f"dry run: no problems in {sum(r.records for r in plan.files.values())} records; nothing written "
            f"({elapsed:.1f} s)"
        )
    else:
        unchanged = sum(r.unchanged for r in plan.files.values())
        click.echo(f"imported {total_written} new records ({unchanged} unchanged) in {elapsed:.1f} s")


@click.command(
    "export",
    help="导出数据 / write the platform's records in the interchange format (docs/import-format.md).",
)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--village", "village", default=None, help="only this village (12-digit code)")
@click.option("--since", "since", default=None, help="only records dated on or after this day (YYYY-MM-DD)")
@click.option(
    "--format", "file_format", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
def export_command(directory: Path, village: str | None, since: str | None, file_format: str) -> None:
    from sanzi.interchange.exporter import ExportFilter, export_records, write_files
    from sanzi.platform.database import session_scope

    since_date = None
    if since is not None:
        try:
            since_date = datetime.strptime(since, "%Y-%m-%d").date()
        except ValueError:
            fail(f"--since: 日期格式应为 YYYY-MM-DD / date must be YYYY-MM-DD: {since!r}")
    if village is not None and (len(village) != 12 or not village.isdigit()):
        fail(f"--village: 村代码须为 12 位数字 / a village code is 12 digits: {village!r}")
    scope = ExportFilter(village, since_date)

    async def run() -> Any:
        from sqlalchemy import select

        from sanzi.platform.models import Village

        engine = _engine()
        try:
            async with session_scope(engine) as session:
                if (
                    village is not None
                    and await session.scalar(select(Village.code).where(Village.code == village)) is None
                ):
                    return None
                return await export_records(session, scope)
        finally:
            await engine.dispose()

    records = run_async(run)
    if records is None:
        fail(f"--village: 村代码 {village} 不存在 / no village {village}")
    counts = write_files(directory, records, scope, as_jsonl=file_format == "jsonl")
    click.echo(f"exported to {directory}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))


groups: list[click.Command] = [import_command, export_command]
