"""`make bench`: measure the platform beside the machine's own ceilings, on a database of its own.

The runner makes a PostgreSQL database (dropped at the end), migrates it, loads the villages and their
history, builds live auctions, starts a real ASGI server (uvicorn, 2 workers) with Redis on a database number
of its own, drives load from separate processes and writes ``results.json`` and the table of ``README.md``.
Every figure is repeated and reported as the median with its range, beside a baseline from the same run.

    python -m benchmarks.run [--quick] [--out DIR] [--scales 1,2,4]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import multiprocessing
import os
import platform
import re
import secrets
import statistics
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from benchmarks import inproc, load, state
from benchmarks.report import Figure, Spread, markdown, percentile, ratios, update_readme
from sanzi.warnings.engine import default_scan_jobs

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "benchmarks"
PG_ADMIN = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")
HOST = "127.0.0.1"
console = Console(stderr=True)


class BenchError(Exception):
    """The benchmark cannot run here (a service is missing, a step failed); the message says which."""


@dataclass(frozen=True)
class Plan:
    """How much of everything: the quick plan only proves the machinery works."""

    mode: str
    runs: int
    seconds: float  # each timed load window
    bidders: int
    listings: int
    hot_bidders: int
    watchers: int
    watched_bids: int
    page_connections: int
    scan_runs: int
    events_per_kind: int
    postings: int
    seed_args: tuple[str, ...]  # `sanzi demo seed` arguments (before --scale)
    scenario_villages: int
    documents: int = 20  # PDFs of each kind


FULL = Plan(
    mode="full", runs=3, seconds=10.0, bidders=200, listings=100, hot_bidders=64, watchers=1000,
    watched_bids=40, page_connections=32, scan_runs=2, events_per_kind=4, postings=200,
    seed_args=("--years", "10", "--villages", "60", "--seed", "1"), scenario_villages=60,
)  # fmt: skip
#: what `--only` may name, in the order a run measures them
SECTIONS = ("scan", "bids", "hot", "pages", "documents", "watchers", "variants")
QUICK = Plan(
    mode="quick", runs=2, seconds=3.0, bidders=200, listings=100, hot_bidders=64, watchers=100,
    watched_bids=6, page_connections=16, scan_runs=1, events_per_kind=2, postings=30,
    seed_args=("--years", "2", "--villages", "60", "--seed", "1"), scenario_villages=12, documents=5,
)  # fmt: skip


# ---- services ---------------------------------------------------------------------------------------------


def psql(sql: str, database: str = "postgres") -> str:
    result = subprocess.run(
        ["psql", f"{PG_ADMIN}/{database}", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise BenchError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def redis_client(db: int) -> Any:
    from redis import Redis

    return Redis.from_url(f"{REDIS_URL}/{db}")


def pick_redis_db() -> int:
    """An empty Redis database number (13 down to 8; the tests use 15), flushed again at the end."""
    for db in range(13, 7, -1):
        try:
            if redis_client(db).dbsize() == 0:
                return db
        except Exception as exc:
            raise BenchError(f"Redis at {REDIS_URL} is not reachable: {exc}") from exc
    raise BenchError("no empty Redis database between 8 and 13")


def sanzi(args: list[str], env: dict[str, str], what: str) -> str:
    started = time.perf_counter()
    result = subprocess.run(
        [str(ROOT / ".venv/bin/sanzi"), *args], env=env, capture_output=True, text=True, cwd=ROOT
    )
    if result.returncode != 0:
        raise BenchError(
            f"{what} failed ({' '.join(args)}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    console.log(f"{what}: {time.perf_counter() - started:.1f} s")
    return result.stdout


def has_seed_command(env: dict[str, str]) -> bool:
    result = subprocess.run(
        [str(ROOT / ".venv/bin/sanzi"), "demo", "seed", "--help"],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return result.returncode == 0


def data_key(plan: Plan, scale: int) -> str:
    """What the loaded data depend on: the migrations, the generators, the geography, their arguments and
    the day (the history runs up to today)."""
    digest = hashlib.sha256(
        f"{plan.seed_args}|{plan.scenario_villages}|{scale}|{datetime.now(UTC).date()}".encode()
    )
    for pattern in (
        "migrations/versions/*.py",
        "sanzi/warnings/seed.py",
        "sanzi/warnings/scenarios.py",
        "sanzi/platform/data/*",
    ):
        for path in sorted(ROOT.glob(pattern)):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


class Database:
    """A PostgreSQL database of the run's own: created, migrated and loaded; dropped on exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"{PG_ADMIN.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
        self.env = {
            **os.environ,
            "DATABASE_URL": self.url,
            "SANZI_ENV": "development",
            "LOG_LEVEL": "WARNING",
        }

    def create(self) -> None:
        psql(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        try:
            psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except BenchError as exc:
            console.log(f"[red]could not drop {self.name}: {exc}")

    def prepare(self, plan: Plan, scale: int, cache: bool) -> str:
        """Create the database with its data: a copy of the cached template for these data (PostgreSQL copies
        the files: seconds instead of the minutes of a load), or a fresh load that becomes the template."""
        template = f"sanzi_bench_tpl_{plan.mode}_x{scale}_{data_key(plan, scale)}"
        if cache and psql(f"SELECT 1 FROM pg_database WHERE datname = '{template}'"):
            started = time.perf_counter()
            psql(f'CREATE DATABASE "{self.name}" TEMPLATE "{template}"')
            console.log(f"data copied from the template {template}: {time.perf_counter() - started:.1f} s")
            return psql(
                f"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{template}'"
            )
        self.create()
        data = self.load(plan, scale)
        if cache:
            prefix = f"sanzi_bench_tpl_{plan.mode}_x{scale}_"
            for old in psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%'").split():
                psql(f'DROP DATABASE IF EXISTS "{old}" WITH (FORCE)')  # made from older code or another day
            psql(f'CREATE DATABASE "{template}" TEMPLATE "{self.name}"')
            psql(f"COMMENT ON DATABASE \"{template}\" IS '{data}'")
            console.log(f"kept the data as the template {template} for the next run (--no-cache: never)")
        return data

    def load(self, plan: Plan, scale: int) -> str:
        """Migrate, load the villages and their history; says what was loaded."""
        sanzi(["db", "upgrade", "--no-prompt"], self.env, "migrations")
        sanzi(["geography", "import"], self.env, "geography")
        if has_seed_command(self.env):
            sanzi(["demo", "seed", *plan.seed_args, "--scale", str(scale)], self.env, f"demo seed ×{scale}")
            data = f"`sanzi demo seed {' '.join(plan.seed_args)} --scale {scale}`"
        else:
            # without the city-scale generator: k scenarios of distinct seeds stand for k× the data
            for seed in range(1, scale + 1):
                sanzi(
                    [
                        "warnings",
                        "scenarios",
                        "--seed",
                        str(seed),
                        "--villages",
                        str(plan.scenario_villages),
                        "--years",
                        "10",
                    ],
                    self.env,
                    f"scenario data, seed {seed}",
                )
            data = (
                f"{scale} × `sanzi warnings scenarios --villages {plan.scenario_villages} --years 10` "
                "(seeds 1–{scale}; `sanzi demo seed` is not on this branch yet, so this is far less than the "
                "city's ten years)"
            ).replace("{scale}", str(scale))
        psql("VACUUM ANALYZE", self.name)
        return data


class Server:
    """uvicorn with 2 workers serving the app, started in its own process group and stopped by it."""

    def __init__(
        self,
        database: Database,
        redis_db: int,
        port: int,
        app: str = "sanzi.platform.asgi:create_app",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.app = app
        self.env = {
            **database.env,
            "SANZI_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(32),
            "REDIS_URL": f"{REDIS_URL}/{redis_db}",
            "LOG_LEVEL": "WARNING",
            # the per-bidder policy limit (5/s) would cap 64 bidders at 320 bids/s: the limiter still runs
            "SANZI_BID_RATE_PER_SECOND": "1000",
            **(extra_env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(tempfile.gettempdir()) / f"sanzi-bench-server-{port}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                self.app,
                "--factory",
                "--workers",
                "2",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            env=self.env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the server exited ({self.process.returncode}); see {self.log_path}")
            try:
                status, body = asyncio.run(_get(self.port, "/api/health"))
                if status == 200 and len(self.workers()) >= 2:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise BenchError("the server did not answer /api/health within 60 s")

    def workers(self) -> list[int]:
        """The worker processes (children of the uvicorn supervisor, not its resource tracker)."""
        if self.process is None:
            return []
        children = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                command = Path(f"/proc/{entry}/cmdline").read_bytes()
                if b"resource_tracker" not in command:
                    children.append(int(entry))
        return children

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class WarningsWorker:
    """`sanzi warnings worker` beside a server (the production layout): it consumes the events the app workers
    append to the Redis Stream; each batch it evaluates is a JSON line (events, lags from the entries' ids to
    their acknowledgement) in a file of its own."""

    def __init__(self, server: Server) -> None:
        self.env = {**server.env, "LOG_LEVEL": "WARNING"}
        self.stats_path = Path(tempfile.gettempdir()) / f"sanzi-bench-warnings-{server.port}.jsonl"
        self.stats_path.unlink(missing_ok=True)
        self.log_path = Path(tempfile.gettempdir()) / f"sanzi-bench-warnings-{server.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(ROOT / ".venv/bin/sanzi"), "warnings", "worker", "--stats", str(self.stats_path)],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def wait_drained(self, timeout: float = 120.0) -> bool:
        """Until the group has read and acknowledged every entry (False if it has not within the timeout)."""
        from redis import Redis

        client = Redis.from_url(self.env["REDIS_URL"], decode_responses=True)
        stream = self.env.get("SANZI_WARNINGS_STREAM", "sanzi:warnings:events")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BenchError(f"the warnings worker exited ({self.process.returncode}); see {self.log_path}")
            try:
                groups = client.xinfo_groups(stream)
            except Exception:  # noqa: BLE001 - no stream yet: nothing to drain
                return True
            if all(g["pending"] == 0 and not g.get("lag") for g in groups):
                return True
            time.sleep(0.2)
        return False

    def batches(self, since: float = 0.0) -> list[dict[str, Any]]:
        if not self.stats_path.exists():
            return []
        lines = self.stats_path.read_text(encoding="utf-8").splitlines()
        return [b for b in map(json.loads, lines) if b["at"] >= since]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()



async def _get(port: int, path: str) -> tuple[int, bytes]:
    from benchmarks.httpclient import Connection

    conn = Connection(HOST, port)
    try:
        return await conn.request("GET", path)
    finally:
        await conn.close()


class MemorySampler:
    """Peak resident memory (VmHWM is per process for its life; VmRSS sampled gives the peak under load)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak: dict[int, int] = {pid: 0 for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            self.peak[pid] = max(self.peak[pid], int(line.split()[1]) * 1024)
                except OSError:
                    pass
            self._stop.wait(0.1)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# ---- the measurements -------------------------------------------------------------------------------------


_POOL: ProcessPoolExecutor | None = None
_WARMING: list[Any] = []


def processes(wait: bool = True) -> ProcessPoolExecutor:
    """Two load-generator processes, started once and warmed, so that a round's start time is never missed
    while a fresh interpreter imports."""
    global _POOL
    if _POOL is None:
        _POOL = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
        _WARMING.extend(_POOL.submit(time.sleep, 0.5) for _ in range(2))
    if wait:
        for future in _WARMING:
            future.result()
    return _POOL


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[i::parts] for i in range(parts)]


def pgbench(database: Database, clients: int, seconds: float) -> float:
    """TPS of pgbench's built-in simple-update script on the run's database."""
    result = subprocess.run(
        [
            "pgbench",
            "-n",
            "-b",
            "simple-update",
            "-c",
            str(clients),
            "-j",
            "2",
            "-T",
            str(max(1, round(seconds))),
            f"{PG_ADMIN}/{database.name}",
        ],
        capture_output=True,
        text=True,
    )
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
    if result.returncode != 0 or match is None:
        raise BenchError(f"pgbench failed: {result.stderr[-1000:]}")
    return float(match.group(1))


def pgbench_clients(wanted: int) -> tuple[int, str]:
    """As many pgbench clients as asked, or as the server's free connection slots allow."""
    limit = int(psql("SHOW max_connections"))
    used = int(psql("SELECT count(*) FROM pg_stat_activity"))
    free = limit - used - 15
    if free >= wanted:
        return wanted, ""
    return max(free, 8), (
        f"PostgreSQL here allows {limit} connections ({used} in use), so pgbench ran "
        f"{max(free, 8)} clients, not {wanted}"
    )


def bid_round(
    port: int,
    live: state.LiveState,
    tokens: list[str],
    listings: list[int],
    seconds: float,
    seed: int,
    pids: list[int] | None = None,
) -> tuple[dict[str, Any], dict[int, int]]:
    pool = processes()
    start = time.time() + 1.5
    parts = split(tokens, 2)
    peaks: dict[int, int] = {}
    futures = [
        pool.submit(load.bid_load, HOST, port, part, listings, start, seconds, seed * 10 + i, live.epoch)
        for i, part in enumerate(parts)
    ]
    if pids:
        with MemorySampler(pids) as sampler:
            results = [f.result() for f in futures]
        peaks = sampler.peak
    else:
        results = [f.result() for f in futures]
    merged: dict[str, Any] = {
        "accepted": 0,
        "errors": 0,
        "refused": {},
        "latencies_ok": [],
        "latencies_all": [],
    }
    for r in results:
        merged["accepted"] += r["accepted"]
        merged["errors"] += r["errors"]
        merged["latencies_ok"] += r["latencies_ok"]
        merged["latencies_all"] += r["latencies_all"]
        for code, n in r["refused"].items():
            merged["refused"][code] = merged["refused"].get(code, 0) + n
    elapsed = max([seconds] + [r["last_answer"] - start for r in results])
    merged["per_second"] = merged["accepted"] / elapsed
    merged["elapsed"] = elapsed
    return merged, peaks


def page_endpoints(listing_id: int, with_api: bool) -> dict[str, list[str]]:
    """The paths of the pages rounds, shared by the full bench and the scaling run so that both measure the
    same pages: the public HTML results list and a sold listing's page beside the trivial request, and with
    ``with_api`` the JSON API they are built on (for comparison: it reads less and renders no template)."""
    endpoints = {
        "trivial": ["/api/health"],
        "results": ["/results", "/results?page=2", "/results?page=5"],
        "listing": [f"/listings/{listing_id}"],
    }
    if with_api:
        endpoints["results_api"] = ["/api/results", "/api/results?page=2", "/api/results?page=5"]
        endpoints["listing_api"] = [f"/api/listings/{listing_id}"]
    return endpoints


def database_backends(database: Database) -> list[int]:
    """The PostgreSQL backends connected to the database (the app workers' pooled connections among them)."""
    pids = psql(f"SELECT pid FROM pg_stat_activity WHERE datname = '{database.name}'")
    return [int(pid) for pid in pids.split()]


def page_round_with_cpu(
    server: Server, database: Database, paths: list[str], connections: int, seconds: float
) -> dict[str, Any]:
    """A page round, with the CPU the app workers and the database's backends spent per answered request: on a
    machine shared with other work the requests/s of a round move with the neighbours' load, the CPU a request
    costs much less."""
    app_pids, db_before = server.workers(), {pid: cpu_seconds([pid]) for pid in database_backends(database)}
    app_before = cpu_seconds(app_pids)
    result = page_round(server.port, paths, connections, seconds)
    app_used = cpu_seconds(app_pids) - app_before
    # a backend the pool opened during the round counts from zero
    db_used = sum(cpu_seconds([pid]) - db_before.get(pid, 0.0) for pid in database_backends(database))
    answered = max(1.0, result["rps"] * seconds)
    return {**result, "app_cpu_ms": app_used * 1000 / answered, "db_cpu_ms": db_used * 1000 / answered}


def page_round(port: int, paths: list[str], connections: int, seconds: float) -> dict[str, Any]:
    pool = processes()
    start = time.time() + 1.0
    results = [
        f.result()
        for f in [
            pool.submit(load.page_load, HOST, port, paths, connections // 2, start, seconds) for _ in range(2)
        ]
    ]
    ok = sum(r["ok"] for r in results)
    bad = sum(sum(r["bad"].values()) + r["errors"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    return {"rps": ok / seconds, "bad": bad, "p99": percentile(latencies, 0.99)}


def watcher_round(port: int, live: state.LiveState, plan: Plan, round_no: int) -> dict[str, Any]:
    """1,000 watchers (quick: 200) on one listing; paced bids; time from each acknowledgement to its arrival
    at every watcher."""
    ctx = multiprocessing.get_context("spawn")
    manager_ready = ctx.Value("i", 0)
    last_seq = ctx.Value("i", 0)
    tokens = live.tokens[:2]
    # what is already on the listing: watchers receive it as their replay, which tells us they are connected
    status, body = asyncio.run(_get(port, f"/api/listings/{live.watched_listing}/live"))
    current = json.loads(body)
    price = (
        load.yuan_to_fen(current["current_price"]) if current["current_price"] else state.STARTING_PRICE_FEN
    )
    count = current["bid_count"]
    order = tokens if count % 2 == 0 else tokens[::-1]
    if count == 0:
        load.place_paced(HOST, port, order, live.watched_listing, 1, 0.0, price - state.MIN_INCREMENT_FEN)
        count, order = 1, order[::-1]
    deadline = time.time() + 60 + plan.watched_bids * 0.25
    queue = ctx.Queue()
    watchers = [
        ctx.Process(
            target=load.watch_to_queue,
            args=(
                queue,
                HOST,
                port,
                live.watched_listing,
                plan.watchers // 2,
                manager_ready,
                last_seq,
                deadline,
            ),
        )
        for _ in range(2)
    ]
    for process in watchers:
        process.start()
    try:
        connect_by = time.time() + 90
        while manager_ready.value < plan.watchers and time.time() < connect_by:
            time.sleep(0.2)
        connected = manager_ready.value
        last_seq.value = count + plan.watched_bids
        acks = load.place_paced(HOST, port, order, live.watched_listing, plan.watched_bids, 0.25, price)
        results = [queue.get(timeout=max(1, deadline - time.time() + 30)) for _ in watchers]
    finally:
        for process in watchers:
            process.join(5)
            if process.is_alive():
                process.terminate()
    arrivals: dict[int, list[float]] = {}
    for r in results:
        for seq, times in r["arrivals"].items():
            arrivals.setdefault(int(seq), []).extend(times)
    to_all, from_sent, pairs, missing = [], [], [], 0
    for seq, (sent, acked) in acks.items():
        got = arrivals.get(seq, [])
        missing += connected - len(got)
        if got:
            to_all.append(max(got) - acked)
            from_sent.append(max(got) - sent)
            pairs.extend(t - acked for t in got)
    return {
        "connected": connected,
        "failed": sum(r["failed"] for r in results),
        "bids": len(acks),
        "missing_deliveries": missing,
        "p99_to_every_watcher": percentile(to_all, 0.99),
        "p50_to_every_watcher": percentile(to_all, 0.5),
        "p99_per_delivery": percentile(pairs, 0.99),
        "p99_from_sending_to_every_watcher": percentile(from_sent, 0.99),
    }


def measure(
    plan: Plan,
    out_dir: Path,
    scales: list[int],
    cache: bool,
    sections: frozenset[str] = frozenset(SECTIONS),
    app: str = "sanzi.platform.asgi:create_app",
) -> None:
    started = time.perf_counter()
    run_id = f"{os.getpid()}{secrets.token_hex(2)}"
    figures: list[Figure] = []
    raw: dict[str, Any] = {}
    redis_db = pick_redis_db()
    database = Database(f"sanzi_bench_{run_id}")
    server: Server | None = None
    worker: WarningsWorker | None = None
    try:
        processes(wait=False)  # the load generators start importing while the data loads
        data = database.prepare(plan, scales[0] if scales else 1, cache)
        raw["tables"] = asyncio.run(_tables(database))

        # ---- in the runner: warnings, books, plans -------------------------------------------------------
        if "scan" in sections:
            console.rule("warnings, books and plans")
            inner = asyncio.run(_in_process(database, plan))
            raw.update(inner["raw"])
            figures += inner["figures"]

        # ---- over HTTP ------------------------------------------------------------------------------------
        live = asyncio.run(_live_state(database, plan, run_id))
        console.log("live auctions built")
        server = Server(database, redis_db, free_port(), app)
        server.start()
        worker = WarningsWorker(server)
        worker.start()
        pids = server.workers()
        console.log(f"server on :{server.port}, workers {pids}, warnings worker {worker.process.pid}")

        tps, rates, peaks = [], [], {}
        lag_figures: list[Figure] = []  # placed after the bid figures
        if "bids" in sections:
            console.rule("bids")
            clients, clients_note = pgbench_clients(plan.bidders)
            init = subprocess.run(
                [
                    "pgbench",
                    "-i",
                    "-q",
                    "-s",
                    "10" if plan.mode == "full" else "2",
                    f"{PG_ADMIN}/{database.name}",
                ],
                capture_output=True,
                text=True,
            )
            if init.returncode != 0:
                raise BenchError(f"pgbench -i failed: {init.stderr[-1000:]}")
            tps, rates, p50s, p99s, all_p99s, refused, peaks = [], [], [], [], [], {}, {}
            worker.wait_drained()
            bids_started = time.time()
            app_cpu = cpu_seconds(pids)
            accepted = 0.0
            for n in range(plan.runs):
                tps.append(pgbench(database, clients, plan.seconds))
                merged, peak = bid_round(
                    server.port, live, live.tokens[: plan.bidders], live.spread_listings, plan.seconds, n, pids
                )
                rates.append(merged["per_second"])
                accepted += merged["accepted"]
                p50s.append(percentile(merged["latencies_ok"], 0.5) * 1000)
                p99s.append(percentile(merged["latencies_ok"], 0.99) * 1000)
                all_p99s.append(percentile(merged["latencies_all"], 0.99) * 1000)
                for code, k in merged["refused"].items():
                    refused[code] = refused.get(code, 0) + k
                for pid, value in peak.items():
                    peaks[pid] = max(peaks.get(pid, 0), value)
                console.log(
                    f"bids run {n + 1}: {merged['per_second']:.1f}/s accepted over {merged['elapsed']:.1f} s, "
                    f"p99 {p99s[-1]:.0f} ms, "
                    f"pgbench {tps[-1]:.0f} tps, refused {merged['refused']}, errors {merged['errors']}"
                )
            app_cpu_ms_per_bid = (cpu_seconds(pids) - app_cpu) * 1000 / max(1.0, accepted)
            drained = worker.wait_drained()
            evaluated = worker.batches(since=bids_started)
            lags = [lag for b in evaluated for lag in b["lags_ms"]]
            raw["warnings_worker"] = {
                "events": len(lags),
                "batches": len(evaluated),
                "lag_ms_p50": percentile(lags, 0.5),
                "lag_ms_p99": percentile(lags, 0.99),
                "evaluation_ms_per_batch_p50": percentile([b["evaluation_ms"] for b in evaluated], 0.5),
                "drained": drained,
                "app_workers_cpu_ms_per_accepted_bid": app_cpu_ms_per_bid,
            }
            console.log(f"warnings worker under the bid load: {raw['warnings_worker']}")
            raw["bids"] = {
                "accepted_per_second": rates,
                "pgbench_tps": tps,
                "pgbench_clients": clients,
                "refused": refused,
                "p99_all_answers_ms": all_p99s,
            }
            ratio = ratios(rates, tps)
            figures.append(
                Figure(
                    "bids",
                    f"accepted bids/s, {plan.bidders} bidders over {plan.listings} live listings",
                    Spread.of(rates),
                    "/s",
                    Spread.of(tps),
                    f"pgbench simple-update TPS, {clients} clients",
                    ratio,
                    "≥ 40% of pgbench",
                    ratio.median >= 0.4,
                    clients_note,
                    1,
                )
            )
            figures.append(Figure("bids", "acknowledgement latency p50", Spread.of(p50s), " ms", digits=1))
            worker_figures = raw["warnings_worker"]
            lag_figures.append(
                Figure(
                    "warnings",
                    "lag from a bid's commit to its evaluation by `sanzi warnings worker` under the bid load, p99",
                    Spread.of([worker_figures["lag_ms_p99"]]) if lags else None,
                    " ms",
                    note=f"p50 {worker_figures['lag_ms_p50']:.0f} ms; {len(lags)} events in {len(evaluated)} "
                    f"batches (median {worker_figures['evaluation_ms_per_batch_p50']:.0f} ms each); app workers' "
                    f"CPU per accepted bid {app_cpu_ms_per_bid:.0f} ms"
                    + ("" if drained else "; the worker had NOT caught up 120 s after the load"),
                    digits=0,
                )
            )
            p99 = Spread.of(p99s)
            figures.append(
                Figure(
                    "bids",
                    "acknowledgement latency p99",
                    p99,
                    " ms",
                    target="< 100 ms",
                    met=p99.median < 100,
                    digits=1,
                    note=f"answers refused as outbid or leading: {sum(refused.values())}",
                )
            )

        if "hot" in sections:
            hot_rates, hot_p99 = [], []
            for n in range(plan.runs):
                merged, _ = bid_round(
                    server.port, live, live.tokens[: plan.hot_bidders], [live.hot_listing], plan.seconds, 100 + n
                )
                hot_rates.append(merged["per_second"])
                hot_p99.append(percentile(merged["latencies_ok"], 0.99) * 1000)
                console.log(f"hot run {n + 1}: {merged['per_second']:.0f}/s, refused {merged['refused']}")
            hot = Spread.of(hot_rates)
            figures.append(
                Figure(
                    "bids",
                    f"one hot listing, {plan.hot_bidders} bidders: accepted bids/s",
                    hot,
                    "/s",
                    target="≥ 500/s",
                    met=hot.median >= 500,
                    digits=1,
                )
            )
            figures.append(Figure("bids", "one hot listing: acknowledgement p99", Spread.of(hot_p99), " ms"))
        figures += lag_figures
        worker_peak = Spread.of([v / 2**20 for v in peaks.values()])
        figures.append(
            Figure(
                "memory",
                "peak resident memory of an app worker under the bid load",
                worker_peak,
                " MiB",
                note=f"{len(peaks)} workers",
                digits=0,
            )
        )

        if "pages" in sections:
            console.rule("pages")
            listing_id = asyncio.run(_a_sold_listing(database)) or live.spread_listings[0]
            endpoints = page_endpoints(listing_id, with_api=plan.mode == "full")
            # the hot rounds leave events behind: the worker evaluating them would share the pages' cores
            worker.wait_drained()
            page_rps: dict[str, list[float]] = {k: [] for k in endpoints}
            page_cpu: dict[str, list[float]] = {k: [] for k in endpoints}  # app + database, ms per request
            cpu_parts: dict[str, list[tuple[float, float]]] = {k: [] for k in endpoints}
            for n in range(plan.runs):
                order = list(endpoints) if n % 2 == 0 else list(endpoints)[::-1]
                for key in order:
                    result = page_round_with_cpu(
                        server, database, endpoints[key], plan.page_connections, plan.seconds
                    )
                    page_rps[key].append(result["rps"])
                    page_cpu[key].append(result["app_cpu_ms"] + result["db_cpu_ms"])
                    cpu_parts[key].append((result["app_cpu_ms"], result["db_cpu_ms"]))
                    if result["bad"]:
                        console.log(f"[yellow]{key}: {result['bad']} failed requests")
                done = (f"{k} {rps[-1]:.0f}/s ({page_cpu[k][-1]:.1f} ms CPU)" for k, rps in page_rps.items())
                console.log(f"pages run {n + 1}: " + ", ".join(done))
            raw["pages"] = {"rps": page_rps, "cpu_ms": cpu_parts, "paths": endpoints}
            trivial = Spread.of(page_rps["trivial"])
            for key, title, target in (
                ("results", "results list `/results` (HTML, pages 1, 2 and 5)", True),
                ("listing", "a sold listing's page `/listings/{id}` (HTML)", True),
                ("results_api", "results list `/api/results` (the JSON API)", False),
                ("listing_api", "a listing `/api/listings/{id}` (the JSON API)", False),
            ):
                if key not in endpoints:
                    continue
                ratio = ratios(page_rps[key], page_rps["trivial"])
                app_ms = statistics.median(app for app, _ in cpu_parts[key])
                db_ms = statistics.median(db for _, db in cpu_parts[key])
                cpu_ratio = ratios(page_cpu["trivial"], page_cpu[key])
                figures.append(
                    Figure(
                        "pages",
                        f"{title}, requests/s",
                        Spread.of(page_rps[key]),
                        "/s",
                        trivial,
                        "`/api/health` (one `SELECT 1` and one Redis PING)",
                        ratio,
                        "≥ 25% of trivial" if target else "",
                        ratio.median >= 0.25 if target else None,
                        note=f"CPU per request: app workers {app_ms:.1f} ms, PostgreSQL {db_ms:.1f} ms; "
                        f"trivial's CPU ÷ this page's {cpu_ratio.median:.2f}",
                        digits=0,
                    )
                )

        if "documents" in sections:
            console.rule("documents")
            sold = asyncio.run(_a_sold_listing(database, certified=True))
            announced = asyncio.run(_a_sold_listing(database)) or live.spread_listings[0]
            documents = (
                ("certificate", "certificate PDF (交易鉴证书)", f"/listings/{sold}/certificate.pdf" if sold else None),
                ("announcement", "announcement PDF (交易公告)", f"/listings/{announced}/announcement.pdf"),
            )
            raw["documents"] = {}
            cookie = asyncio.run(_log_in(server.port, live.admin_username, live.admin_password))
            for key, title, path in documents:
                if path is None:
                    figures.append(Figure("documents", f"{title}, ms each", None, " ms", target="median < 150 ms",
                                          note="not measured: no sold listing with a certificate in the data"))
                    continue
                timings, statuses = asyncio.run(
                    _timed_gets(server.port, path, {"Cookie": cookie}, plan.documents)
                )
                if statuses != {200}:
                    raise BenchError(f"{path} answered {sorted(statuses)}")
                ms = [t * 1000 for t in timings]
                raw["documents"][key] = {"path": path, "ms": ms}
                console.log(f"{key}: median {statistics.median(ms):.0f} ms over {len(ms)}")
                figures.append(
                    Figure(
                        "documents",
                        f"{title}, ms each (one client, keep-alive, after one warm-up request)",
                        Spread.of(ms),
                        " ms",
                        target="median < 150 ms",
                        met=statistics.median(ms) < 150,
                        note=f"n = {len(ms)}; the spread is the fastest and slowest request",
                        digits=0,
                    )
                )

        if "watchers" in sections:
            console.rule("watchers")
            try:
                watch_runs = [watcher_round(server.port, live, plan, n) for n in range(max(1, plan.runs // 2))]
                raw["watchers"] = watch_runs
                for w in watch_runs:
                    console.log(f"watchers: {w}")
                every = Spread.of([w["p99_to_every_watcher"] * 1000 for w in watch_runs])
                connected = min(w["connected"] for w in watch_runs)
                missing = sum(w["missing_deliveries"] for w in watch_runs)
                figures.append(
                    Figure(
                        "watchers",
                        f"{plan.watchers} watchers of one auction: p99 from acknowledgement to "
                        "arrival at every watcher",
                        every,
                        " ms",
                        target="< 200 ms",
                        met=every.median < 200,
                        note=f"{connected} connected, {missing} deliveries missing",
                        digits=0,
                    )
                )
                figures.append(
                    Figure(
                        "watchers",
                        "p99 from sending the bid to its arrival at every watcher",
                        Spread.of([w["p99_from_sending_to_every_watcher"] * 1000 for w in watch_runs]),
                        " ms",
                        note="the event is published before the bidder's answer is written, so it can "
                        "arrive before the acknowledgement",
                        digits=0,
                    )
                )

            except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others' results
                console.log(f"[red]watchers failed: {exc!r}")
                figures.append(Figure("watchers", f"{plan.watchers} watchers of one auction", None, " ms",
                                      target="< 200 ms", note=f"the run failed: {exc!r}"[:200]))

        if "variants" in sections:
            # ---- diagnostics: the same bid load with one part switched off, as a ratio to the real thing ----
            try:
                server.stop()
                server = None
                worker.stop()
                worker = None
                # (title, app, environment, whether `sanzi warnings worker` runs beside the server)
                variants = [
                    (
                        "bearer-token cache off (SANZI_TOKEN_CACHE_SECONDS=0): the lookup it saves",
                        "sanzi.platform.asgi:create_app",
                        {"SANZI_TOKEN_CACHE_SECONDS": "0"},
                        True,
                    ),
                    (
                        "warning evaluation in the app workers (SANZI_WARNINGS_EVALUATION=inprocess, no stream "
                        "worker: the layout before the stream)",
                        "sanzi.platform.asgi:create_app",
                        {"SANZI_WARNINGS_EVALUATION": "inprocess"},
                        False,
                    ),
                    (
                        "incremental warnings off (no stream, no worker): what the stream costs the bids",
                        "benchmarks.variants:app_without_incremental_warnings",
                        {},
                        False,
                    ),
                ]
                if plan.mode == "quick":
                    # only that the machinery works: the last variant runs an app factory of its own, the
                    # others only change the environment of the same server (12 s each)
                    variants = variants[-1:]
                raw["variants"] = {}
                for title, app, extra, with_worker in variants:
                    console.rule(f"variant: {title}")
                    server = Server(database, redis_db, free_port(), app, extra)
                    server.start()
                    if with_worker:
                        worker = WarningsWorker(server)
                        worker.start()
                    variant_rates = []
                    variant_pids, variant_cpu, variant_accepted = server.workers(), 0.0, 0.0
                    variant_cpu = cpu_seconds(variant_pids)
                    for n in range(min(plan.runs, 3) if plan.mode == "full" else 1):
                        merged, _ = bid_round(
                            server.port,
                            live,
                            live.tokens[: plan.bidders],
                            live.spread_listings,
                            plan.seconds if plan.mode == "full" else 2.0,  # quick: only that it works
                            200 + n,
                        )
                        variant_rates.append(merged["per_second"])
                        variant_accepted += merged["accepted"]
                        console.log(f"variant run {n + 1}: {merged['per_second']:.1f}/s")
                    variant_cpu = (cpu_seconds(variant_pids) - variant_cpu) * 1000 / max(1.0, variant_accepted)
                    server.stop()
                    server = None
                    if worker is not None:
                        worker.stop()
                        worker = None
                    raw["variants"][title] = variant_rates
                    raw.setdefault("variants_app_cpu_ms_per_bid", {})[title] = variant_cpu
                    shipped_cpu = raw.get("warnings_worker", {}).get("app_workers_cpu_ms_per_accepted_bid")
                    figures.append(
                        Figure(
                            "diagnostics",
                            f"accepted bids/s with {title}",
                            Spread.of(variant_rates),
                            "/s",
                            Spread.of(rates),
                            "as shipped (above)",
                            ratios(variant_rates, rates),
                            note=f"app workers' CPU per accepted bid {variant_cpu:.0f} ms"
                            + (f" (as shipped {shipped_cpu:.0f} ms)" if shipped_cpu is not None else ""),
                            digits=1,
                        )
                    )

            except Exception as exc:  # noqa: BLE001 - the figures measured so far are still written
                console.log(f"[red]diagnostics failed: {exc!r}")

    finally:
        if _POOL is not None:
            _POOL.shutdown(cancel_futures=True)
        if server is not None:
            server.stop()
        if worker is not None:
            worker.stop()
        database.drop()
        try:
            redis_client(redis_db).flushdb()
        except Exception:  # noqa: BLE001
            pass

    context = {
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}, "
        f"{psql('SHOW server_version')[:4].strip()} PostgreSQL",
        "mode": plan.mode,
        "elapsed_seconds": time.perf_counter() - started,
        "data": data,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(
        json.dumps(
            {"context": context, "figures": [f.to_json() for f in figures], "raw": raw},
            ensure_ascii=False,
            indent=2,
            default=str,
        )
        + "\n",
        encoding="utf-8",
    )
    readme = out_dir / "README.md"
    if not readme.exists():
        shutil.copy(BENCH_DIR / "README.md", readme)
    update_readme(readme, markdown(figures, context))
    console.log(
        f"wrote {out_dir / 'results.json'} and the table in {readme} ({context['elapsed_seconds']:.0f} s)"
    )


async def _engine(database: Database) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(database.url, pool_size=5)


async def _tables(database: Database) -> dict[str, int]:
    engine = await _engine(database)
    try:
        tables = await inproc.user_tables(engine)
        return dict(sorted(tables.items(), key=lambda kv: -kv[1]))
    finally:
        await engine.dispose()


async def _log_in(port: int, username: str, password: str) -> str:
    """Log in through the login form as a browser does; the Cookie header of the session."""
    import httpx

    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}") as client:
        await client.get("/login")
        response = await client.post(
            "/login",
            data={"username": username, "password": password, "_csrf_token": client.cookies["csrftoken"]},
        )
        if response.status_code not in (200, 303) or "session" not in client.cookies:
            raise BenchError(f"could not log in as {username}: {response.status_code}")
        return "; ".join(f"{name}={value}" for name, value in client.cookies.items())


async def _timed_gets(
    port: int, path: str, headers: dict[str, str], count: int
) -> tuple[list[float], set[int]]:
    """``count`` sequential GETs on one keep-alive connection after one warm-up: seconds each, statuses seen."""
    from benchmarks.httpclient import Connection

    conn = Connection(HOST, port)
    timings, statuses = [], set()
    try:
        status, _ = await conn.request("GET", path, headers)
        statuses.add(status)
        for _ in range(count):
            started = time.perf_counter()
            status, _ = await conn.request("GET", path, headers)
            timings.append(time.perf_counter() - started)
            statuses.add(status)
    finally:
        await conn.close()
    return timings, statuses


async def _live_state(database: Database, plan: Plan, run_id: str) -> state.LiveState:
    engine = await _engine(database)
    try:
        return await state.build(engine, plan.bidders, plan.listings, plan.hot_bidders, run_id)
    finally:
        await engine.dispose()


async def _a_sold_listing(database: Database, certified: bool = False) -> int | None:
    """The newest sold listing (with ``certified``: one whose winner signed, so it has a certificate)."""
    from sqlalchemy import select

    from sanzi.auction.models import Listing, Registration

    engine = await _engine(database)
    try:
        async with engine.connect() as conn:
            query = select(Listing.id).where(Listing.status == "sold").order_by(Listing.id.desc())
            if certified:
                query = query.join(Registration, Registration.id == Listing.winner_registration_id).where(
                    Listing.final_price_fen.is_not(None), Registration.deposit_state != "forfeited"
                )
            return await conn.scalar(query.limit(1))
    finally:
        await engine.dispose()


async def _in_process(database: Database, plan: Plan) -> dict[str, Any]:
    from sqlalchemy import select

    from sanzi.platform.models import Collective

    engine = await _engine(database)
    log = inproc.StatementLog()
    log.attach(engine)
    figures: list[Figure] = []
    raw: dict[str, Any] = {}
    try:
        tables = await inproc.user_tables(engine)
        jobs = default_scan_jobs()
        scans, serial_scans, reads, per_rule = [], [], [], []
        for n in range(plan.scan_runs):
            # the serial scan gives each rule's own time, the tables read and the heaviest statements
            serial = await inproc.full_scan(engine, log if n == 0 else None)
            if n == 0:
                read_tables = inproc.tables_read(log, set(tables))
                plans = await inproc.heaviest_plans(engine, log)
            result = await inproc.full_scan(engine, jobs=jobs)
            if result["raised"] != serial["raised"]:
                raise BenchError(
                    f"the scan on {jobs} connections raised {result['raised']}, "
                    f"the serial one {serial['raised']}"
                )
            scans.append(result["seconds"])
            serial_scans.append(serial["seconds"])
            per_rule.append(serial["per_rule"])
            reads.append(await inproc.sequential_read(engine, read_tables))
            console.log(
                f"scan {n + 1}: {result['seconds']:.2f} s on {jobs} connections, "
                f"{serial['seconds']:.2f} s on one ({result['raised']} alerts), "
                f"sequential read {reads[-1]:.2f} s"
            )
        rows = sum(tables[t] for t in read_tables)
        for name, values in (
            (f"full scan, all rules, {jobs} connections ({rows:,} rows in {len(read_tables)} tables)", scans),
            ("full scan, all rules, one connection", serial_scans),
        ):
            ratio = ratios(values, reads)
            figures.append(
                Figure(
                    "warnings",
                    name,
                    Spread.of(values),
                    " s",
                    Spread.of(reads),
                    "one sequential read of the same tables",
                    ratio,
                    "within 5× of the read",
                    ratio.median <= 5,
                    digits=2,
                )
            )
        events = await inproc.sample_events(engine, plan.events_per_kind, 1)
        # a worker process's first evaluations also build and compile each rule's statements: measured, reported,
        # then the same events again as a running worker evaluates them
        cold = await inproc.incremental(engine, events)
        times = await inproc.incremental(engine, events)
        per_event_p99 = percentile(times, 0.99) * 1000
        per_kind: dict[str, list[float]] = {}
        for domain_event, seconds in zip(events, times, strict=True):
            per_kind.setdefault(domain_event.kind, []).append(seconds * 1000)
        kinds = ", ".join(f"{kind} {max(values):.0f}" for kind, values in per_kind.items())
        figures.append(
            Figure(
                "warnings",
                f"incremental evaluation per event, p99 ({len(events)} events, after a first pass)",
                Spread.of([per_event_p99]),
                " ms",
                target="< 20 ms",
                met=per_event_p99 < 20,
                note=(
                    f"p50 {percentile(times, 0.5) * 1000:.1f} ms; slowest per kind (ms): {kinds}; "
                    f"the first pass in a fresh process: p99 {percentile(cold, 0.99) * 1000:.0f} ms"
                ),
                digits=1,
            )
        )
        raw["warnings"] = {
            "scan_jobs": jobs,
            "scan_seconds": scans,
            "serial_scan_seconds": serial_scans,
            "read_seconds": reads,
            "tables_read": read_tables,
            "per_rule_seconds": per_rule[0] if per_rule else {},
            "incremental_ms": [t * 1000 for t in times],
            "incremental_first_pass_ms": [t * 1000 for t in cold],
            "incremental_kinds": [e.kind for e in events],
            "plans": plans,
        }

        verify_rates = []
        for _ in range(1 if plan.mode == "quick" else 2):
            seconds, entries, broken = await inproc.verify_chains(engine, 20 if plan.mode == "quick" else 100)
            verify_rates.append(entries / seconds)
            if broken:
                raise BenchError(f"{broken} chains do not verify")
        async with engine.connect() as conn:
            collective_ids = list(await conn.scalars(select(Collective.id).order_by(Collective.id).limit(50)))
        chained, plain = [], []
        for _ in range(plan.runs):
            seconds, ids = await inproc.chained_postings(engine, collective_ids, plan.postings)
            chained.append(plan.postings / seconds)
            plain.append(plan.postings / await inproc.plain_inserts(engine, ids))
        ratio = ratios(chained, plain)
        figures.append(
            Figure(
                "books",
                "chained postings/s (BooksService, one transaction each)",
                Spread.of(chained),
                "/s",
                Spread.of(plain),
                "plain inserts of the same rows",
                ratio,
                "≥ 50% of plain",
                ratio.median >= 0.5,
                digits=0,
            )
        )
        figures.append(
            Figure(
                "books",
                f"chain verification, entries/s ({entries:,} entries of the first villages by code)",
                Spread.of(verify_rates),
                "/s",
                digits=0,
            )
        )
        raw["books"] = {
            "chained_per_second": chained,
            "plain_per_second": plain,
            "verify_per_second": verify_rates,
        }
    finally:
        await engine.dispose()
    return {"figures": figures, "raw": raw}


def storage(database: Database) -> dict[str, float]:
    """What an operator sizes disks and backups by: the database's size on disk (tables, indexes, TOAST), the
    time and size of a compressed logical backup (`pg_dump --format=custom`, PostgreSQL's default compression)
    written to a temporary file, and the time to restore it into an empty database (`pg_restore --jobs` one per
    CPU: tables, indexes and constraints rebuilt), then dropped."""
    size = int(psql(f"SELECT pg_database_size('{database.name}')"))
    restored = f"{database.name}_restore"[:63]
    with tempfile.TemporaryDirectory() as folder:
        dump = Path(folder) / "backup.dump"
        started = time.perf_counter()
        result = subprocess.run(
            ["pg_dump", "--format=custom", f"--file={dump}", f"{PG_ADMIN}/{database.name}"],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise BenchError(f"pg_dump failed: {result.stderr.strip()}")
        backup = dump.stat().st_size
        psql(f'DROP DATABASE IF EXISTS "{restored}"')
        psql(f'CREATE DATABASE "{restored}" TEMPLATE template0')
        try:
            started = time.perf_counter()
            result = subprocess.run(
                ["pg_restore", f"--jobs={os.cpu_count() or 1}", "--exit-on-error", f"--dbname={PG_ADMIN}/{restored}",
                 str(dump)],
                capture_output=True,
                text=True,
            )
            restore_seconds = time.perf_counter() - started
            if result.returncode != 0:
                raise BenchError(f"pg_restore failed: {result.stderr.strip()[-1000:]}")
            # a restore that left anything out would look fast: the same tables, indexes and rows, counted exactly
            census = (
                "SELECT count(*) FILTER (WHERE c.relkind = 'r') || ' tables, ' "
                "|| count(*) FILTER (WHERE c.relkind = 'i') || ' indexes, ' "
                "|| coalesce(sum((xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I', "
                "c.relname), false, true, '')))[1]::text::bigint) FILTER (WHERE c.relkind = 'r'), 0) || ' rows' "
                "FROM pg_class c JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE ns.nspname = 'public'"
            )
            original, copy = psql(census, database.name), psql(census, restored)
            if original != copy:
                raise BenchError(f"the restore differs from its database: {copy} against {original}")
        finally:
            psql(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
    return {
        "database_mib": size / 2**20,
        "backup_seconds": seconds,
        "backup_mib": backup / 2**20,
        "restore_seconds": restore_seconds,
        "restored": copy,
    }


def _restore_cell(row: dict[str, Any]) -> str:
    """The restore time of a scaling row; rows measured before restores were timed have none."""
    seconds = row.get("restore_seconds")
    return "—" if seconds is None else f"{seconds:.1f} s"


SCALING_DOC = ROOT / "docs" / "scaling.md"
SCALING_START, SCALING_END = "<!-- scaling:start -->", "<!-- scaling:end -->"
PLANS_START, PLANS_END = "<!-- plans:start -->", "<!-- plans:end -->"


def _replace_between(text: str, start: str, end: str, body: str) -> str:
    a, b = text.index(start), text.index(end)
    return text[: a + len(start)] + "\n" + body + "\n" + text[b:]


def scaling(plan: Plan, scales: list[int], out_dir: Path, doc: Path, cache: bool) -> None:
    """The full scan and the page figures at each scale of the city's data, and the plans of the heaviest
    rules at the largest; written to ``scaling.json`` and between the markers of docs/scaling.md."""
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    redis_db = pick_redis_db()
    try:
        processes(wait=False)
        for scale in scales:
            console.rule(f"×{scale}")
            run_id = f"{os.getpid()}x{scale}{secrets.token_hex(2)}"
            database = Database(f"sanzi_bench_{run_id}")
            server: Server | None = None
            try:
                data = database.prepare(plan, scale, cache)
                tables = asyncio.run(_tables(database))
                sizes = storage(database)
                inner = asyncio.run(_scan_only(database, plan))
                server = Server(database, redis_db, free_port())
                server.start()
                listing_id = asyncio.run(_a_sold_listing(database)) or 1
                # the HTML pages the full bench's pages round measures, not their JSON API under their names
                endpoints = page_endpoints(listing_id, with_api=False)
                rps: dict[str, list[float]] = {k: [] for k in endpoints}
                for n in range(plan.runs):
                    for key in list(endpoints) if n % 2 == 0 else list(endpoints)[::-1]:
                        rps[key].append(
                            page_round(server.port, endpoints[key], plan.page_connections, plan.seconds)[
                                "rps"
                            ]
                        )
                rows.append(
                    {
                        "scale": scale,
                        "data": data,
                        "rows": sum(tables.values()),
                        "bids": tables.get("bid", 0),
                        "journal_lines": tables.get("journal_line", 0),
                        "listings": tables.get("listing", 0),
                        **inner["summary"],
                        **sizes,
                        "pages_rps": {k: Spread.of(v).median for k, v in rps.items()},
                    }
                )
                plans = inner["plans"]
                console.log(rows[-1])
            finally:
                if server is not None:
                    server.stop()
                database.drop()
    finally:
        if _POOL is not None:
            _POOL.shutdown(cancel_futures=True)
        try:
            redis_client(redis_db).flushdb()
        except Exception:  # noqa: BLE001
            pass
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scaling.json").write_text(
        json.dumps({"rows": rows, "plans": plans}, ensure_ascii=False, indent=2, default=str) + "\n",
        encoding="utf-8",
    )
    base = rows[0]
    table = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M UTC} by `python -m benchmarks.run --scaling` "
        f"({time.perf_counter() - started:.0f} s). Data at ×1: {base['data']}.",
        "",
        (
            "| data | rows | bids | journal lines | full scan, one connection | sequential read "
            "| scan ÷ read "
            f"| scan cost ÷ ×1 | full scan, {base['scan_jobs']} connections | ÷ read "
            "| results list (HTML) req/s | listing page (HTML) req/s | trivial req/s "
            "| database on disk | backup (`pg_dump -Fc`) | restore (`pg_restore -j`) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        table.append(
            f"| ×{row['scale']} | {row['rows']:,} | {row['bids']:,} | {row['journal_lines']:,} "
            f"| {row['scan_seconds']:.2f} s | {row['read_seconds']:.2f} s "
            f"| {row['scan_seconds'] / row['read_seconds']:.1f}× "
            f"| {row['scan_seconds'] / base['scan_seconds']:.2f}× "
            f"| {row['parallel_scan_seconds']:.2f} s "
            f"| {row['parallel_scan_seconds'] / row['read_seconds']:.1f}× "
            f"| {row['pages_rps']['results']:.0f} | {row['pages_rps']['listing']:.0f} "
            f"| {row['pages_rps']['trivial']:.0f} "
            f"| {row['database_mib']:,.0f} MiB | {row['backup_seconds']:.1f} s, {row['backup_mib']:,.0f} MiB "
            f"| {_restore_cell(row)} |"
        )
    heaviest = sorted(rows[-1]["per_rule"].items(), key=lambda kv: -kv[1])[:6]
    table += [
        "",
        f"The slowest rules at ×{rows[-1]['scale']} (seconds of the full scan):",
        "",
        "| rule | " + " | ".join(f"×{r['scale']}" for r in rows) + " |",
        "|---|" + "---|" * len(rows),
    ]
    for rule_id, _ in heaviest:
        table.append(
            f"| {rule_id} | " + " | ".join(f"{r['per_rule'].get(rule_id, 0):.2f}" for r in rows) + " |"
        )
    plan_text = []
    for item in plans:
        plan_text += [
            f"**{item['rule']}** ({item['seconds'] * 1000:.0f} ms in the scan)",
            "",
            "```sql",
            item["statement"].strip(),
            "```",
            "",
            "```",
            item["plan"],
            "```",
            "",
        ]
    text = doc.read_text(encoding="utf-8")
    text = _replace_between(text, SCALING_START, SCALING_END, "\n".join(table))
    text = _replace_between(text, PLANS_START, PLANS_END, "\n".join(plan_text))
    doc.write_text(text, encoding="utf-8")
    console.log(f"wrote {out_dir / 'scaling.json'} and the tables of {doc}")


async def _scan_only(database: Database, plan: Plan) -> dict[str, Any]:
    engine = await _engine(database)
    log = inproc.StatementLog()
    log.attach(engine)
    try:
        tables = await inproc.user_tables(engine)
        scans, parallel_scans, reads = [], [], []
        jobs = default_scan_jobs()
        per_rule: dict[str, float] = {}
        plans: list[dict[str, Any]] = []
        for n in range(max(2, plan.scan_runs)):
            result = await inproc.full_scan(engine, log if n == 0 else None)
            if n == 0:
                read_tables = inproc.tables_read(log, set(tables))
                plans = await inproc.heaviest_plans(engine, log)
                per_rule = result["per_rule"]
            scans.append(result["seconds"])
            parallel_scans.append((await inproc.full_scan(engine, jobs=jobs))["seconds"])
            reads.append(await inproc.sequential_read(engine, read_tables))
        return {
            "summary": {
                "scan_seconds": Spread.of(scans).median,
                "scan_jobs": jobs,
                "parallel_scan_seconds": Spread.of(parallel_scans).median,
                "read_seconds": Spread.of(reads).median,
                "per_rule": per_rule,
            },
            "plans": plans,
        }
    finally:
        await engine.dispose()


def scan_existing(name: str, out_dir: Path) -> None:
    """The full scan (rolled back) and one sequential read of the same tables on an existing database, e.g.
    one loaded once with the whole city; nothing in it is changed."""
    database = Database(name)

    async def run() -> dict[str, Any]:
        engine = await _engine(database)
        log = inproc.StatementLog()
        log.attach(engine)
        try:
            tables = await inproc.user_tables(engine)
            read_all = await inproc.sequential_read(engine, sorted(tables))
            console.log(f"{sum(tables.values()):,} rows; a sequential read of every table: {read_all:.1f} s")
            result = await inproc.full_scan(
                engine, log, on_rule=lambda rule, seconds: console.log(f"{rule}: {seconds:.1f} s")
            )
            read_tables = inproc.tables_read(log, set(tables))
            read = await inproc.sequential_read(engine, read_tables)
            plans = await inproc.heaviest_plans(engine, log)
            jobs = default_scan_jobs()
            parallel = await inproc.full_scan(engine, jobs=jobs)
            console.log(f"full scan on {jobs} connections: {parallel['seconds']:.1f} s")
            return {
                "database": name,
                "rows": sum(tables.values()),
                "tables": tables,
                "scan_seconds": result["seconds"],
                "scan_jobs": jobs,
                "parallel_scan_seconds": parallel["seconds"],
                "read_seconds": read,
                "tables_read": read_tables,
                "per_rule": result["per_rule"],
                "alerts": result["raised"],
                "plans": plans,
            }
        finally:
            await engine.dispose()

    result = asyncio.run(run())
    result.update(storage(database))
    console.log(
        f"{result['database_mib']:,.0f} MiB on disk; a compressed backup (pg_dump -Fc) took "
        f"{result['backup_seconds']:.1f} s and {result['backup_mib']:,.0f} MiB, its restore "
        f"{result['restore_seconds']:.1f} s"
    )
    console.log(
        f"full scan {result['scan_seconds']:.1f} s on one connection, "
        f"{result['parallel_scan_seconds']:.1f} s on {result['scan_jobs']}; "
        f"read {result['read_seconds']:.1f} s: "
        f"{result['scan_seconds'] / result['read_seconds']:.1f}× and "
        f"{result['parallel_scan_seconds'] / result['read_seconds']:.1f}×"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "scan.json").write_text(
        json.dumps(result, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, few repetitions (under 2 minutes)")
    parser.add_argument("--out", type=Path, default=BENCH_DIR, help="where results.json and README.md go")
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="the full scan and pages at several scales of the data, into docs/scaling.md",
    )
    parser.add_argument("--scales", default="1,2,4", help="with --scaling: the scales (default 1,2,4)")
    parser.add_argument(
        "--seed-args",
        default=None,
        help="arguments for `sanzi demo seed` before --scale (default: ten years of all villages)",
    )
    parser.add_argument(
        "--scan-database",
        default=None,
        help="only the full scan and the sequential read, on this existing database (unchanged)",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="load the data afresh and keep no template database for the next run",
    )
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated sections to measure (of {', '.join(SECTIONS)}); default: all",
    )
    parser.add_argument(
        "--app",
        default="sanzi.platform.asgi:create_app",
        help="the app factory the server runs for the sections before the variants (e.g. "
        "benchmarks.variants:app_without_incremental_warnings)",
    )
    args = parser.parse_args(argv)
    sections = frozenset(args.only.split(",")) if args.only else frozenset(SECTIONS)
    if unknown := sections - set(SECTIONS):
        parser.error(f"unknown sections {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    plan = QUICK if args.quick else FULL
    if args.seed_args:
        plan = dataclasses.replace(plan, seed_args=tuple(args.seed_args.split()))
    if shutil.which("pgbench") is None:
        console.print("[red]pgbench is needed for the baselines (apt-get install postgresql-client)")
        return 2
    try:
        if args.scan_database:
            scan_existing(args.scan_database, args.out)
        elif args.scaling:
            scales = [int(x) for x in args.scales.split(",")]
            # the data at each scale is what matters here: fewer and shorter page rounds than `make bench`
            scaling(
                dataclasses.replace(plan, runs=min(plan.runs, 3), seconds=min(plan.seconds, 5.0)),
                scales,
                args.out,
                SCALING_DOC,
                not args.no_cache,
            )
        else:
            measure(plan, args.out, [1], cache=not args.quick and not args.no_cache, sections=sections, app=args.app)
    except BenchError as exc:
        console.print(f"[red]benchmark failed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
