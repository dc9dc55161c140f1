"""Load generators. Each function runs in its own process (one event loop each), starts at a shared wall-clock
moment and returns plain data (counts and latencies) for the runner to combine."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from typing import Any

from benchmarks.httpclient import Connection, HttpError

STARTING_PRICE_FEN = 10_000_000
MIN_INCREMENT_FEN = 10_000
LEADING_PAUSE_SECONDS = 0.01


def _loop_run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def yuan_to_fen(text: str) -> int:
    whole, _, cents = text.partition(".")
    return int(whole) * 100 + int((cents or "0").ljust(2, "0")[:2])


def fen_to_yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def problem_code(body: Any, status: int) -> str:
    """The refusal's code, the last part of its problem type URL (e.g. ``amount_too_low``)."""
    if isinstance(body, dict) and isinstance(body.get("type"), str):
        return body["type"].rsplit("/", 1)[-1]
    return str(status)


async def _until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.time()))


# ---- bids ------------------------------------------------------------------------------------------------


async def _bidder(
    host: str,
    port: int,
    token: str,
    listings: list[int],
    known: dict[int, int],
    start: float,
    end: float,
    rng: random.Random,
    out: dict[str, Any],
    tag: str,
    epoch: float,
) -> None:
    """One bidder: picks a listing, bids a few increments above the price it last saw, learns the price
    from each answer (receipt or refusal), as a person watching the room would."""
    conn = Connection(host, port)
    await conn.open()
    headers = {"Authorization": f"Bearer {token}"}
    await _until(start)
    n = 0
    try:
        while time.time() < end:
            listing = rng.choice(listings)
            # bids serialise on the listing in arrival order: an amount growing with the clock (an increment a
            # millisecond) is above every bid sent before it, so a bid is refused as too low only when a later
            # one overtook it, as in a real room, not because the bidder's view of the price is seconds old
            by_clock = STARTING_PRICE_FEN + MIN_INCREMENT_FEN * int((time.time() - epoch) * 1000)
            amount = max(by_clock, known.get(listing, 0) + MIN_INCREMENT_FEN)
            n += 1
            sent = time.perf_counter()
            try:
                status, body = await conn.post_json(
                    f"/api/listings/{listing}/bids",
                    {"amount": fen_to_yuan(amount), "client_key": f"{tag}-{n}"},
                    headers,
                )
            except HttpError:
                out["errors"] += 1
                await asyncio.sleep(0.05)
                continue
            elapsed = time.perf_counter() - sent
            # no new bid after the window, but the answer to one sent inside it counts: the rate is taken over
            # the time until the last answer, so a server slower than the window still gets a true figure
            out["last_answer"] = max(out["last_answer"], time.time())
            out["latencies_all"].append(elapsed)
            if status == 201:
                out["accepted"] += 1
                out["latencies_ok"].append(elapsed)
                known[listing] = max(known.get(listing, 0), yuan_to_fen(body["current_price"]))
            else:
                code = problem_code(body, status)
                out["refused"][code] += 1
                if isinstance(body, dict) and body.get("next_min_bid"):
                    known[listing] = max(
                        known.get(listing, 0), yuan_to_fen(body["next_min_bid"]) - MIN_INCREMENT_FEN
                    )
                if status == 429:
                    await asyncio.sleep(0.2)
                elif code == "already_leading":
                    # a bidder told they lead waits to be outbid, as a person watching the room would, rather
                    # than asking again at once (with cheap refusals that spins and crowds out the others)
                    await asyncio.sleep(LEADING_PAUSE_SECONDS)
    finally:
        await conn.close()


def bid_load(
    host: str,
    port: int,
    tokens: list[str],
    listings: list[int],
    start: float,
    duration: float,
    seed: int,
    epoch: float,
) -> dict[str, Any]:
    """Every token bids concurrently on ``listings`` from ``start`` for ``duration`` seconds."""

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {
            "accepted": 0,
            "errors": 0,
            "refused": Counter(),
            "latencies_ok": [],
            "latencies_all": [],
            "last_answer": start,
        }
        known: dict[int, int] = {}
        rng = random.Random(seed)
        await asyncio.gather(
            *(
                _bidder(
                    host,
                    port,
                    token,
                    listings,
                    known,
                    start,
                    start + duration,
                    random.Random(rng.random()),
                    out,
                    f"s{seed}-b{i}-{int(start)}",
                    epoch,
                )
                for i, token in enumerate(tokens)
            )
        )
        out["refused"] = dict(out["refused"])
        return out

    return _loop_run(main())


# ---- pages -----------------------------------------------------------------------------------------------


def page_load(
    host: str, port: int, paths: list[str], connections: int, start: float, duration: float
) -> dict[str, Any]:
    """``connections`` keep-alive clients request ``paths`` in turn as fast as answered."""

    async def client(index: int, out: dict[str, Any]) -> None:
        conn = Connection(host, port)
        await conn.open()
        await _until(start)
        end = start + duration
        i = index
        try:
            while time.time() < end:
                path = paths[i % len(paths)]
                i += 1
                sent = time.perf_counter()
                try:
                    status, _ = await conn.request("GET", path)
                except HttpError:
                    out["errors"] += 1
                    continue
                if time.time() > end:
                    break
                if status == 200:
                    out["ok"] += 1
                    out["latencies"].append(time.perf_counter() - sent)
                else:
                    out["bad"][status] += 1
        finally:
            await conn.close()

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"ok": 0, "errors": 0, "bad": Counter(), "latencies": []}
        await asyncio.gather(*(client(i, out) for i in range(connections)))
        out["bad"] = dict(out["bad"])
        return out

    return _loop_run(main())


# ---- watchers --------------------------------------------------------------------------------------------


def watch(
    host: str, port: int, listing: int, watchers: int, ready: Any, last_seq: Any, deadline: float
) -> dict[str, Any]:
    """``watchers`` SSE connections to one listing; records when each bid (by seq) reached each watcher.
    ``ready`` (a shared counter) counts watchers that have received the replay; the watchers stop once
    ``last_seq`` (shared) is set and reached, or at ``deadline``."""

    async def one(out: dict[int, list[float]], opening: asyncio.Semaphore, state: dict[str, int]) -> None:
        conn = Connection(host, port)
        counted = False
        try:
            async with opening:
                await conn.open()
            stream = conn.events(f"/api/listings/{listing}/stream")
            while time.time() < deadline:
                try:
                    event, data = await asyncio.wait_for(stream.__anext__(), max(0.1, deadline - time.time()))
                except (StopAsyncIteration, TimeoutError):
                    break
                now = time.time()
                if event != "bid":
                    continue
                seq = json.loads(data)["bid"]["seq"]
                if not counted:
                    counted = True
                    with ready.get_lock():
                        ready.value += 1
                    continue  # the replay of what was placed before the test
                out.setdefault(seq, []).append(now)
                target = last_seq.value
                if target and seq >= target:
                    break
        except (HttpError, OSError, EOFError) as exc:  # EOFError: asyncio's IncompleteReadError (server hung up)
            state["failed"] += 1
            state.setdefault("why", str(exc))  # type: ignore[arg-type]
        finally:
            await conn.close()

    async def main() -> dict[str, Any]:
        out: dict[int, list[float]] = {}
        state: dict[str, Any] = {"failed": 0}
        opening = asyncio.Semaphore(50)
        await asyncio.gather(*(one(out, opening, state) for _ in range(watchers)))
        return {"arrivals": out, **state}

    return _loop_run(main())


def watch_to_queue(queue: Any, *args: Any) -> None:
    queue.put(watch(*args))


def place_paced(
    host: str, port: int, tokens: list[str], listing: int, count: int, interval: float, first_amount_fen: int
) -> dict[int, tuple[float, float]]:
    """Two bidders take turns placing ``count`` bids ``interval`` apart; returns the wall-clock times each
    bid was sent and acknowledged, by seq."""

    async def main() -> dict[int, tuple[float, float]]:
        conns = [Connection(host, port) for _ in tokens]
        for conn in conns:
            await conn.open()
        acks: dict[int, tuple[float, float]] = {}
        amount = first_amount_fen
        for n in range(count):
            amount += MIN_INCREMENT_FEN
            conn, token = conns[n % 2], tokens[n % 2]
            sent = time.time()
            payload = {"amount": fen_to_yuan(amount), "client_key": f"watch-{n}-{sent}"}
            headers = {"Authorization": f"Bearer {token}"}
            try:
                status, body = await conn.post_json(f"/api/listings/{listing}/bids", payload, headers)
            except HttpError:  # the server dropped the connection: the same client key makes the retry safe
                await conn.open()
                status, body = await conn.post_json(f"/api/listings/{listing}/bids", payload, headers)
            if status in (200, 201):
                acks[body["seq"]] = (sent, time.time())
            await asyncio.sleep(interval)
        for conn in conns:
            await conn.close()
        return acks

    return _loop_run(main())
