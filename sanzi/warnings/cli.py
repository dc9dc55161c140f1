"""`sanzi warnings ...`: full scan, integrity index, the stream worker, scenario generator; and `sanzi run`'s
`--no-warnings-worker`."""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import subprocess
import sys
from datetime import datetime
from typing import Any

import click

from sanzi.platform.cli import fail, run_async


def _engine(**kwargs: Any) -> Any:
    """An engine for DATABASE_URL as the environment says now (settings are read afresh, not from the cache)."""
    from sanzi.platform.database import create_engine
    from sanzi.platform.settings import Settings

    return create_engine(Settings(), **kwargs)


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
@click.option(
    "--jobs",
    type=click.IntRange(1, 32),
    default=None,
    help="PostgreSQL: connections reading at once, on one snapshot (default: this machine's CPUs, at most 8)",
)
def scan_command(district: str | None, since: str | None, jobs: int | None) -> None:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from sanzi.platform.database import session_scope
    from sanzi.platform.problems import DomainError
    from sanzi.platform.settings import Settings
    from sanzi.warnings.engine import all_rules, default_scan_jobs, scan

    since_date = None
    if since is not None:
        try:
            since_date = datetime.strptime(since, "%Y-%m-%d").date()
        except ValueError:
            fail(f"--since: 日期格式应为 YYYY-MM-DD / date must be YYYY-MM-DD: {since!r}")
    rules = all_rules()

    jobs = jobs or default_scan_jobs()

    async def run() -> Any:
        # the scan's own connection and one per reader, whatever the pool's default size
        engine = _engine() if Settings().is_sqlite else _engine(pool_size=jobs + 1)
        try:
            async with session_scope(engine) as session:
                with Progress(transient=True) as progress:
                    task = progress.add_task("rules", total=len(rules))

                    def advance(rule: Any, _counts: Any) -> None:
                        progress.update(task, advance=1, description=rule.id)

                    return await scan(
                        session,
                        district_code=district,
                        since=since_date,
                        rules=rules,
                        progress=advance,
                        jobs=jobs,
                    )
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


@warnings_group.command(
    "worker",
    help="Evaluate committed events from the Redis Stream (REDIS_URL) in coalesced batches, until SIGTERM.",
)
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 10_000),
              help="most events evaluated as one batch")
@click.option("--linger-ms", default=100, show_default=True, type=click.IntRange(0, 5_000),
              help="after the first new event, wait this long for more to share its batch")
@click.option("--claim-idle-ms", default=60_000, show_default=True, type=click.IntRange(0),
              help="take over events another consumer left unacknowledged this long (it died mid-batch)")
@click.option("--consumer", default=None, help="this worker's name in the consumer group (default host-pid)")
@click.option("--drain", is_flag=True, help="exit once nothing is left to evaluate (for scripts and tests)")
@click.option("--stats", "stats_path", default=None, type=click.Path(dir_okay=False),
              help="append one JSON line per batch (events, lags, evaluation time) to this file")
@click.option("-v", "--verbose", is_flag=True, help="a line per batch")
def worker_command(
    batch_size: int,
    linger_ms: int,
    claim_idle_ms: int,
    consumer: str | None,
    drain: bool,
    stats_path: str | None,
    verbose: bool,
) -> None:
    from sanzi.platform.settings import Settings
    from sanzi.warnings.engine import run_worker

    settings = Settings()
    if not settings.redis_url:
        fail(
            "未配置 REDIS_URL：没有 Redis 时由应用进程内评估 / REDIS_URL is not set: without Redis the app "
            "evaluates the warning rules in its own process, and no worker is needed"
        )
    level = logging.DEBUG if verbose else getattr(logging, settings.log_level.upper(), logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("sanzi").setLevel(level)
    total = run_async(
        lambda: run_worker(
            settings,
            drain=drain,
            batch_size=batch_size,
            linger=linger_ms / 1000,
            claim_idle=claim_idle_ms / 1000,
            consumer=consumer,
            stats_path=stats_path,
        )
    )
    click.echo(f"warnings worker: {total.line()}")


def _start_worker_child() -> subprocess.Popen[bytes]:
    """`sanzi warnings worker` as a child of this process, in the same environment; on Linux it is told to
    stop when its parent dies, so a killed `sanzi run` leaves no worker behind."""
    preexec = None
    if sys.platform.startswith("linux"):
        import ctypes

        def preexec() -> None:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    code = "import sys; sys.argv[0] = 'sanzi'; from sanzi.platform.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, "warnings", "worker"], preexec_fn=preexec)  # noqa: S603


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def wrap_run_command(cli: click.Group) -> None:
    """`sanzi run` with REDIS_URL set also starts `sanzi warnings worker` (unless --no-warnings-worker or
    SANZI_WARNINGS_WORKER=0), so one command still serves everything; it stops the worker when it stops."""
    command = cli.commands.get("run")
    if command is None or command.callback is None or getattr(command, "_sanzi_worker", False):
        return
    serve = command.callback
    command.params.append(
        click.Option(
            ["--no-warnings-worker"],
            is_flag=True,
            default=False,
            help="do not start `sanzi warnings worker` beside the server (run it yourself, as in production)",
        )
    )

    @functools.wraps(serve)
    def run(*args: Any, no_warnings_worker: bool = False, **kwargs: Any) -> Any:
        from sanzi.platform.settings import Settings

        settings = Settings()
        wanted = (
            settings.redis_url
            and settings.warnings_worker
            and settings.warnings_evaluation == "auto"
            and not no_warnings_worker
        )
        child = _start_worker_child() if wanted else None
        if child is not None:
            click.echo(f"warnings worker started (pid {child.pid}); stop it with the server")
        try:
            return serve(*args, **kwargs)
        finally:
            if child is not None:
                with contextlib.suppress(Exception):
                    _stop_child(child)

    command.callback = run
    command._sanzi_worker = True  # type: ignore[attr-defined]


groups: list[click.Group] = [warnings_group]
