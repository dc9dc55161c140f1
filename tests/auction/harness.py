"""Real processes for the auction proofs: uvicorn app workers, a private Redis, an auction seeded in
PostgreSQL, bidders and SSE watchers talking HTTP to the workers, and the invariants every finished auction
must satisfy.

Everything listens on 127.0.0.1 and every loop here is bounded in count and in time.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from sanzi.auction.lifecycle import lock_listing
from sanzi.auction.models import Bid, DepositState, Listing, ListingStatus, Registration, RegistrationStatus
from sanzi.ledger.schemas.books import EntryCreate, LineIn
from sanzi.ledger.services.books import BooksService
from sanzi.platform.auth import Passwords, issue_token
from sanzi.platform.database import create_engine
from sanzi.platform.models import Bidder, Collective, Role, User
from sanzi.platform.money import fen_to_yuan
from tests.conftest import (
    PASSWORD,
    VILLAGE_A,
    create_database,
    load_villages,
    make_settings,
    run_sync,
    unavailable,
)

PROJECT = Path(__file__).resolve().parents[2]
UVICORN = PROJECT / ".venv" / "bin" / "uvicorn"
HOST = "127.0.0.1"
SECRET = "test-secret-key-not-for-production"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate, then kill if it does not go within ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace)


# ---- Redis -------------------------------------------------------------------------------------------------


class RedisServer:
    """A private redis-server on a free port, so a test may stop it without touching the shared one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        binary = "redis-server"
        try:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory)],
                stdout=(self.directory / f"redis-{self.port}.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
        except FileNotFoundError as exc:
            unavailable("Redis", f"no redis-server binary: {exc}")
        import redis

        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        self.stop()
        unavailable("Redis", f"redis-server did not answer on port {self.port} within 10 s")

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)
            self.process = None


# ---- app workers -------------------------------------------------------------------------------------------


class AppServer:
    """One uvicorn process of the app, sharing the database and Redis with its siblings."""

    def __init__(
        self, name: str, database_url: str, redis_url: str | None, directory: Path, **env: str
    ) -> None:
        self.name = name
        self.database_url = database_url
        self.redis_url = redis_url
        self.port = free_port()
        self.log_path = directory / f"app-{name}-{self.port}.log"
        self.extra_env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "SANZI_ENV": "test",
            "SECRET_KEY": SECRET,
            "SANZI_SCHEDULER": "1",
            "SANZI_SCHEDULER_INTERVAL": "0.25",
            "SANZI_VAR_DIR": str(self.log_path.parent),
            **self.extra_env,
        }
        env.pop("REDIS_URL", None)
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        self.process = subprocess.Popen(
            [str(UVICORN), "sanzi.platform.asgi:create_app", "--factory", "--host", HOST,
             "--port", str(self.port), "--log-level", "warning", "--timeout-graceful-shutdown", "2"],
            cwd=PROJECT,
            env=env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        last: str = "no answer"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                raise RuntimeError(f"app {self.name} exited with {code}:\n{self.log_tail()}")
            try:
                response = httpx.get(f"{self.base_url}/api/health", timeout=1.0)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise RuntimeError(f"app {self.name} not healthy within {timeout} s ({last}):\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)

    def stop(self) -> None:
        if self.process is not None:
            _stop_process(self.process)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def start_servers(
    count: int, database_url: str, redis_url: str | None, directory: Path, **env: str
) -> list[AppServer]:
    """Start ``count`` workers in parallel and wait until each answers its health check."""
    servers = [AppServer(chr(ord("a") + i), database_url, redis_url, directory, **env) for i in range(count)]
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_healthy()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


# ---- seeding -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeededBidder:
    number: str
    token: str
    registration_id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class SeededListing:
    id: int
    starting_price_fen: int
    min_increment_fen: int
    max_increment_fen: int
    reserve_price_fen: int | None
    extension_minutes: int
    max_extensions: int
    bidders: tuple[SeededBidder, ...]


def resident_id(serial: int) -> str:
    """A checksum-valid resident ID number (GB 11643) unique per serial."""
    body = f"440111{date(1970, 1, 1) + timedelta(days=serial // 900):%Y%m%d}{serial % 900 + 100:03d}"
    total = sum(int(digit) * (2 ** (17 - i) % 11) for i, digit in enumerate(body))
    return body + "10X98765432"[total % 11]


_serial = [random.randrange(0, 10**6)]
_cheap = Passwords(cheap=True)


async def seed_listing(
    database_url: str,
    *,
    bidders: int,
    window_seconds: float,
    starting_price_fen: int = 100_000_00,
    min_increment_fen: int = 1_000_00,
    max_increment_multiple: int = 5,
    reserve_price_fen: int | None = None,
    extension_minutes: int = 1,
    max_extensions: int = 3,
    deposit_fen: int = 10_000_00,
    village_code: str = VILLAGE_A,
) -> SeededListing:
    """A listing already in bidding (window ends ``window_seconds`` from now) with qualified bidders whose
    deposits are held in the village's books, each with a bearer token."""
    engine = create_engine(make_settings(database_url))
    now = datetime.now(UTC)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            collective = await session.scalar(
                select(Collective).where(Collective.village_code == village_code)
            )
            assert collective is not None, village_code
            ends_at = now + timedelta(seconds=window_seconds)
            listing = Listing(
                collective_id=collective.id,
                village_code=village_code,
                number=f"T{uuid.uuid4().hex[:12].upper()}",
                title="并发竞价测试地块",
                status=ListingStatus.BIDDING.value,
                trade_type="lease",
                term_months=60,
                price_basis="total",
                starting_price_fen=starting_price_fen,
                reserve_price_fen=reserve_price_fen,
                min_increment_fen=min_increment_fen,
                max_increment_fen=min_increment_fen * max_increment_multiple,
                deposit_fen=deposit_fen,
                performance_bond_fen=0,
                announcement_days=5,
                registration_deadline=now - timedelta(days=1),
                bidding_starts_at=now - timedelta(seconds=1),
                bidding_ends_at=ends_at,
                extension_minutes=extension_minutes,
                max_extensions=max_extensions,
                announced_at=now - timedelta(days=6),
                current_end_at=ends_at,
            )
            session.add(listing)
            await session.flush()
            seeded: list[SeededBidder] = []
            for index in range(bidders):
                _serial[0] += 1
                name = f"bidder-{_serial[0]}-{uuid.uuid4().hex[:6]}"
                user = User(
                    username=name,
                    password_hash=_cheap.hash(PASSWORD),
                    display_name=name,
                    role=Role.BIDDER.value,
                )
                session.add(user)
                await session.flush()
                bidder = Bidder(
                    user_id=user.id,
                    kind="person",
                    name=f"竞买人{index + 1}",
                    id_number=resident_id(_serial[0]),
                    phone=f"139{_serial[0] % 10**8:08d}",
                    bank_account=f"6222{_serial[0]:012d}",
                )
                session.add(bidder)
                await session.flush()
                entry, _ = await BooksService(session).post_entry(
                    collective,
                    EntryCreate(
                        entry_date=now.date(),
                        memo=f"{listing.number} 竞买保证金",
                        client_key=f"deposit-{listing.number}-{index}",
                        lines=[
                            LineIn(account_code="102", debit=fen_to_yuan(deposit_fen)),
                            LineIn(account_code="21101", credit=fen_to_yuan(deposit_fen)),
                        ],
                    ),
                    None,
                    source="auction",
                )
                registration = Registration(
                    listing_id=listing.id,
                    bidder_id=bidder.id,
                    status=RegistrationStatus.QUALIFIED.value,
                    bidder_number=f"{index + 1:03d}",
                    contact_phone=bidder.phone,
                    deposit_state=DepositState.HELD.value,
                    deposit_payer_name=bidder.name,
                    deposit_payer_account=bidder.bank_account,
                    deposit_paid_at=now,
                    deposit_entry_id=entry.id,
                    decided_at=now,
                )
                session.add(registration)
                await session.flush()
                token = await issue_token(session, user, days=1)
                seeded.append(SeededBidder(registration.bidder_number or "", token, registration.id))
            await session.commit()
            return SeededListing(
                id=listing.id,
                starting_price_fen=starting_price_fen,
                min_increment_fen=min_increment_fen,
                max_increment_fen=listing.max_increment_fen,
                reserve_price_fen=reserve_price_fen,
                extension_minutes=extension_minutes,
                max_extensions=max_extensions,
                bidders=tuple(seeded),
            )
    finally:
        await engine.dispose()


async def advance_clock(database_url: str, listing_id: int, seconds: float) -> None:
    """Let ``seconds`` pass for one listing without waiting them out.

    The workers run on the real clock and an extension cycle lasts whole minutes, so instead of sleeping we
    move every stored time of the listing and its bids back by the same amount, under the listing's own lock
    (so it interleaves with bids like any other change): to the auction this is the clock jumping forward.
    """
    shift = timedelta(seconds=seconds)
    engine = create_engine(make_settings(database_url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            listing = await lock_listing(session, listing_id)
            listing.bidding_starts_at -= shift
            listing.bidding_ends_at -= shift
            listing.registration_deadline -= shift
            if listing.current_end_at is not None:
                listing.current_end_at -= shift
            for bid in await session.scalars(select(Bid).where(Bid.listing_id == listing_id)):
                bid.placed_at -= shift
                if bid.extended_end_at is not None:
                    bid.extended_end_at -= shift
            await session.commit()
    finally:
        await engine.dispose()


async def seconds_to_end(database_url: str, listing_id: int) -> float:
    engine = create_engine(make_settings(database_url))
    try:
        async with async_sessionmaker(engine)() as session:
            end = await session.scalar(select(Listing.current_end_at).where(Listing.id == listing_id))
            assert end is not None
            return (end - datetime.now(UTC)).total_seconds()
    finally:
        await engine.dispose()


# ---- bidders -----------------------------------------------------------------------------------------------


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def fen(amount: str) -> int:
    whole, _, part = amount.partition(".")
    return int(whole) * 100 + int((part + "00")[:2])


@dataclass
class Attempt:
    """One bid request as its client saw it: acknowledged (2xx), refused (4xx) or unknown (no answer, 5xx)."""

    listing_id: int
    bidder_number: str
    client_key: str
    amount_fen: int
    server: str
    status: int | None = None
    body: Any = None
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status in (200, 201)

    @property
    def refused(self) -> bool:
        """Refused on its merits (a 429 only says "not now", before anything is looked at)."""
        return self.status is not None and 400 <= self.status < 500 and self.status != 429

    @property
    def seq(self) -> int | None:
        return self.body.get("seq") if self.acknowledged else None


@dataclass
class BidLog:
    attempts: list[Attempt] = field(default_factory=list)
    #: (first acknowledgement, the acknowledgement of a deliberate repeat of the same key and amount)
    repeats: list[tuple[Attempt, Attempt]] = field(default_factory=list)

    def acknowledged(self, listing_id: int) -> list[Attempt]:
        return [a for a in self.attempts if a.listing_id == listing_id and a.acknowledged]


async def post_bid(
    http: httpx.AsyncClient, server: str, listing_id: int, bidder: SeededBidder, key: str, amount_fen: int
) -> Attempt:
    attempt = Attempt(listing_id, bidder.number, key, amount_fen, server)
    try:
        response = await http.post(
            f"{server}/api/listings/{listing_id}/bids",
            json={"amount": yuan(amount_fen), "client_key": key},
            headers=bidder.headers,
        )
        attempt.status = response.status_code
        try:
            attempt.body = response.json()
        except ValueError:
            attempt.body = response.text[:500]
    except httpx.HTTPError as exc:
        attempt.error = f"{type(exc).__name__}: {exc}"
    return attempt


async def resend(
    http: httpx.AsyncClient, servers: Sequence[str], listing_id: int, bidder: SeededBidder, first: Attempt,
    log: BidLog, tries: int = 3,
) -> Attempt:
    """Send the same client key and amount again on another worker, as a client does after a lost answer;
    waits out the rate limit (a repeat counts against it like any bid), at most ``tries`` times."""
    attempt = first
    order = [s for s in servers if s != first.server] + [first.server]  # another worker first, then this one
    unreachable: set[str] = set()  # a worker that gave no answer is not tried again while another is left
    for n in range(tries):
        alive = [s for s in order if s not in unreachable] or order
        server = alive[n % len(alive)]
        attempt = await post_bid(http, server, listing_id, bidder, first.client_key, first.amount_fen)
        log.attempts.append(attempt)
        if attempt.status == 429:
            await asyncio.sleep(1.0)
        elif attempt.status is None or attempt.status >= 500:
            if attempt.status is None:
                unreachable.add(server)
            await asyncio.sleep(0.2)
        else:
            break
    return attempt


async def bidder_loop(
    http: httpx.AsyncClient,
    servers: Sequence[str],
    listing: SeededListing,
    bidder: SeededBidder,
    log: BidLog,
    *,
    max_attempts: int,
    deadline: float,
    rng: random.Random,
    repeat_every: int = 4,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Read the live state, bid the next minimum or a little more, until the auction closes or the budget
    ends. A request that fails without an answer (the worker died, a timeout) is sent again with the same
    client key on another worker, as a real client would; every ``repeat_every``-th acknowledged bid is
    repeated on purpose.
    """
    acknowledged = 0
    hint: tuple[int, int] | None = None  # the range a refusal told us, to try again without a read
    for _ in range(max_attempts):
        if time.monotonic() > deadline or stop is not None and stop():
            return
        if hint is None:
            try:
                live = (await http.get(f"{rng.choice(servers)}/api/listings/{listing.id}/live")).json()
            except (httpx.HTTPError, ValueError):
                await asyncio.sleep(0.05)
                continue
            if live.get("status") != ListingStatus.BIDDING.value:
                return
            if live["bids"] and live["bids"][-1]["bidder_number"] == bidder.number:
                await asyncio.sleep(rng.uniform(0.02, 0.1))  # the leader may not raise alone: wait to be outbid
                continue
            low, high = fen(live["next_min_bid"]), fen(live["next_max_bid"])
        else:
            (low, high), hint = hint, None
        amount = min(high, low + listing.min_increment_fen * rng.choice([0, 0, 1, 2, 3, 4]))
        key = f"{bidder.number}-{uuid.uuid4().hex}"
        attempt = await post_bid(http, rng.choice(servers), listing.id, bidder, key, amount)
        log.attempts.append(attempt)
        if attempt.status is None or attempt.status >= 500:
            attempt = await resend(http, servers, listing.id, bidder, attempt, log)
        if attempt.acknowledged:
            acknowledged += 1
            if acknowledged % repeat_every == 0:
                repeat = await resend(http, servers, listing.id, bidder, attempt, log)
                log.repeats.append((attempt, repeat))
        elif attempt.status == 429:
            await asyncio.sleep(0.2)
        elif attempt.status == 422 and isinstance(attempt.body, dict) and attempt.body.get("next_min_bid"):
            # outbid while we were sending: the refusal names the new range, so bid again at once
            hint = (fen(attempt.body["next_min_bid"]), fen(attempt.body["next_max_bid"]))
            continue
        await asyncio.sleep(rng.uniform(0, 0.05))


async def run_bidders(
    servers: Sequence[str],
    listings: Sequence[SeededListing],
    log: BidLog,
    *,
    max_attempts: int = 40,
    seconds: float = 30.0,
    seed: int = 7,
    timeout: float = 10.0,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Every bidder of every listing bidding at once, each bounded by ``max_attempts`` and ``seconds``
    (and ending early once ``stop()`` is true)."""
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
        await asyncio.gather(
            *(
                bidder_loop(
                    http, servers, listing, bidder, log,
                    max_attempts=max_attempts,
                    deadline=deadline,
                    rng=random.Random(f"{seed}-{listing.id}-{n}"),
                    stop=stop,
                )
                for listing in listings
                for n, bidder in enumerate(listing.bidders)
            )
        )


# ---- watchers ----------------------------------------------------------------------------------------------


@dataclass
class Watcher:
    """A public SSE watcher of one listing: collects bid seqs until the ``closed`` event.

    ``after``: start from that sequence number (``?after=``) instead of the beginning.
    ``disconnect_after``: drop the connection after that many bid events and reconnect with Last-Event-ID.
    If the worker it watches goes away, it reconnects to another one the same way.
    """

    listing_id: int
    servers: list[str]
    disconnect_after: int | None = None
    after: int | None = None
    seqs: list[int] = field(default_factory=list)
    closed: bool = False
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    async def run(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        connection = 0
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=seconds)) as http:
            while not self.closed and time.monotonic() < deadline and connection < 20:
                server = self.servers[connection % len(self.servers)]
                connection += 1
                headers = {"Accept": "text/event-stream"}
                if self.seqs:
                    headers["Last-Event-ID"] = str(self.seqs[-1])
                    self.reconnects += 1
                params = {"after": self.after} if self.after is not None and not self.seqs else {}
                try:
                    remaining = max(0.1, deadline - time.monotonic())
                    await asyncio.wait_for(self._read(http, server, headers, params), remaining)
                except (httpx.HTTPError, asyncio.TimeoutError) as exc:
                    self.errors.append(f"{server}: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.1)

    async def _read(
        self, http: httpx.AsyncClient, server: str, headers: dict[str, str], params: dict[str, int]
    ) -> None:
        url = f"{server}/api/listings/{self.listing_id}/stream"
        async with http.stream("GET", url, headers=headers, params=params) as response:
            if response.status_code != 200:
                self.errors.append(f"{server}: status {response.status_code}")
                await asyncio.sleep(0.2)
                return
            event: dict[str, str] = {}
            since_connect = 0
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    event[name] = value.removeprefix(" ")
                    continue
                kind = event.get("event", "message")
                if kind == "bid":
                    self.seqs.append(int(event["id"]))
                    since_connect += 1
                elif kind == "closed":
                    self.closed = True
                    return
                event = {}
                if self.disconnect_after is not None and since_connect >= self.disconnect_after:
                    self.disconnect_after = None  # once
                    return


def assert_watched_every_bid(watcher: Watcher, bid_count: int) -> None:
    assert watcher.closed, f"watcher never saw the close: {watcher.errors[-3:]}"
    assert watcher.seqs == list(range(1, bid_count + 1)), (
        f"watcher saw {len(watcher.seqs)} events for {bid_count} bids; "
        f"missing {sorted(set(range(1, bid_count + 1)) - set(watcher.seqs))[:10]}, "
        f"duplicated {sorted({s for s in watcher.seqs if watcher.seqs.count(s) > 1})[:10]}"
    )


# ---- closing and invariants --------------------------------------------------------------------------------


async def wait_closed(server: str, listing_id: int, seconds: float = 20.0) -> dict[str, Any]:
    """Poll the public live view until the scheduler has closed the listing (bounded)."""
    deadline = time.monotonic() + seconds
    live: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=5.0) as http:
        while time.monotonic() < deadline:
            try:
                live = (await http.get(f"{server}/api/listings/{listing_id}/live")).json()
            except (httpx.HTTPError, ValueError):
                live = {}
            if live.get("status") not in (None, ListingStatus.BIDDING.value):
                return live
            await asyncio.sleep(0.2)
    raise AssertionError(f"listing {listing_id} not closed within {seconds} s; last live view: {live}")


CLOSED_STATES = {ListingStatus.CLOSED.value, ListingStatus.SOLD.value, ListingStatus.FAILED.value}


async def check_invariants(database_url: str, server: str, listing: SeededListing, log: BidLog) -> list[Bid]:
    """Everything that must hold of a closed auction, read from the database and from the API."""
    engine = create_engine(make_settings(database_url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            row = await session.scalar(select(Listing).where(Listing.id == listing.id))
            assert row is not None
            bids = list(
                await session.scalars(select(Bid).where(Bid.listing_id == listing.id).order_by(Bid.seq))
            )
            rows = await session.execute(
                select(Registration.id, Registration.bidder_number).where(
                    Registration.listing_id == listing.id
                )
            )
            numbers = {registration_id: number for registration_id, number in rows}
    finally:
        await engine.dispose()

    attempts = [a for a in log.attempts if a.listing_id == listing.id]
    assert bids, "no bid was stored"
    # seq is 1..n without gaps, prices strictly increase, every step within the increments
    assert [b.seq for b in bids] == list(range(1, len(bids) + 1))
    assert bids[0].amount_fen >= listing.starting_price_fen
    for before, after in zip(bids, bids[1:]):
        assert (
            before.amount_fen + listing.min_increment_fen
            <= after.amount_fen
            <= before.amount_fen + listing.max_increment_fen
        ), (before.seq, before.amount_fen, after.amount_fen)
    # every acknowledged bid is stored exactly once, with the amount, seq and bidder its client was told
    stored = {b.client_key: b for b in bids}
    assert len(stored) == len(bids)
    acknowledged = [a for a in attempts if a.acknowledged]
    for attempt in acknowledged:
        bid = stored.get(attempt.client_key)
        assert bid is not None, f"acknowledged bid lost: {attempt}"
        assert bid.amount_fen == attempt.amount_fen == fen(attempt.body["amount"]), attempt
        assert bid.seq == attempt.body["seq"], (bid.seq, attempt)
        assert numbers[bid.registration_id] == attempt.bidder_number == attempt.body["bidder_number"]
        assert attempt.body["extended"] == (bid.extended_end_at is not None), attempt
    # nothing stored that its client was refused; unacknowledged ones only where the client saw no answer
    by_key: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_key.setdefault(attempt.client_key, []).append(attempt)
    for bid in bids:
        seen = by_key.get(bid.client_key)
        assert seen, f"stored bid {bid.seq} that no client sent"
        if not any(a.acknowledged for a in seen):
            assert all(not a.refused for a in seen), f"bid {bid.seq} stored although refused: {seen}"
            assert any(a.status is None or a.status >= 500 for a in seen), seen
    # an idempotent repeat answers the same bid
    for first, repeat in log.repeats:
        if first.listing_id == listing.id:
            assert repeat.status == 200 and repeat.body["seq"] == first.body["seq"], (first, repeat)

    # extensions: replayed from the original end, each exact, the cap respected, the final end the last one
    extension = timedelta(minutes=listing.extension_minutes)
    end, used = row.bidding_ends_at, 0
    for bid in bids:
        assert bid.placed_at < end, f"bid {bid.seq} placed at {bid.placed_at}, not before the end {end}"
        if end - bid.placed_at < extension and used < listing.max_extensions:
            assert bid.extended_end_at == bid.placed_at + extension, (bid.seq, bid.extended_end_at)
            end, used = bid.extended_end_at, used + 1
        else:
            assert bid.extended_end_at is None, (bid.seq, bid.placed_at, end, used)
    assert used <= listing.max_extensions
    assert row.extensions_used == used
    assert row.current_end_at == end
    assert row.bid_count == len(bids)

    # the result: the final price is the highest acknowledged bid; one winner (the last bidder) unless under
    # the reserve
    highest = max(bids, key=lambda b: b.amount_fen)
    assert highest.seq == len(bids)
    if acknowledged:
        assert highest.amount_fen >= max(a.amount_fen for a in acknowledged)
        if all(not (a.status is None or a.status >= 500) for a in by_key[highest.client_key]):
            assert highest.amount_fen == max(a.amount_fen for a in acknowledged)
    assert row.status in CLOSED_STATES, row.status
    assert row.closed_at is not None
    assert row.current_price_fen == highest.amount_fen
    if listing.reserve_price_fen is not None and highest.amount_fen < listing.reserve_price_fen:
        assert row.winner_registration_id is None
        assert row.status in {ListingStatus.CLOSED.value, ListingStatus.FAILED.value}
    else:
        assert row.winner_registration_id == highest.registration_id
        assert row.final_price_fen == highest.amount_fen
        assert row.status in {ListingStatus.CLOSED.value, ListingStatus.SOLD.value}

    # the API tells the same story
    async with httpx.AsyncClient(timeout=10.0) as http:
        live = (await http.get(f"{server}/api/listings/{listing.id}/live")).json()
        result = await http.get(f"{server}/api/listings/{listing.id}/result")
    assert live["bid_count"] == len(bids)
    assert fen(live["current_price"]) == highest.amount_fen
    assert live["extensions_used"] == used <= live["max_extensions"] == listing.max_extensions
    shown = sorted(live["bids"], key=lambda b: b["seq"])
    assert [(b["seq"], fen(b["amount"]), b["bidder_number"]) for b in shown] == [
        (b.seq, b.amount_fen, numbers[b.registration_id]) for b in bids
    ]
    assert result.status_code == 200, result.text
    return bids


async def stored_bids(database_url: str, listing_id: int) -> list[Bid]:
    engine = create_engine(make_settings(database_url))
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            query = select(Bid).where(Bid.listing_id == listing_id).order_by(Bid.seq)
            return list(await session.scalars(query))
    finally:
        await engine.dispose()


def time_inversions(bids: Sequence[Bid]) -> list[tuple[int, float]]:
    """Bids stamped earlier than the bid before them in sequence: (seq, how many milliseconds earlier)."""
    return [
        (after.seq, (before.placed_at - after.placed_at).total_seconds() * 1000)
        for before, after in zip(bids, bids[1:])
        if after.placed_at < before.placed_at
    ]


def summary(log: BidLog, listing_id: int | None = None) -> str:
    attempts = [a for a in log.attempts if listing_id is None or a.listing_id == listing_id]
    counts: dict[str, int] = {}
    for attempt in attempts:
        label = str(attempt.status) if attempt.status is not None else "error"
        counts[label] = counts.get(label, 0) + 1
    return json.dumps(counts, sort_keys=True)


# ---- fixtures (imported by the test modules) ---------------------------------------------------------------


@pytest.fixture(scope="module")
def auction_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh PostgreSQL database for the module, migrated, with the villages (skips if unreachable)."""
    url, drop = create_database("postgres", tmp_path_factory.mktemp("auction-db"))
    try:
        run_sync(lambda: load_villages(url))
        yield url
    finally:
        drop()


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of the test's own, which the test may stop and start again."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
