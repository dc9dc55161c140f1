"""A small HTTP/1.1 keep-alive client on asyncio streams: cheap enough per request that the load generator
spends the shared CPU on the server, not on itself (httpx costs several times more per request)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any


class HttpError(Exception):
    """The server closed the connection or answered something that is not HTTP/1.1."""


class Connection:
    """One persistent connection; requests on it run one at a time, like a browser tab's."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=2**20)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            self.writer = None

    def _send(self, method: str, path: str, headers: dict[str, str] | None, body: bytes | None) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        assert self.writer is not None
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))

    async def _head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"not an HTTP response: {status_line!r}")
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def _chunk(self) -> bytes:
        assert self.reader is not None
        size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        """Send a request and read the whole response: (status, body)."""
        if self.writer is None:
            await self.open()
        try:
            self._send(method, path, headers, body)
            status, response_headers = await self._head()
            assert self.reader is not None
            if response_headers.get("transfer-encoding", "").lower() == "chunked":
                parts = []
                while chunk := await self._chunk():
                    parts.append(chunk)
                await self.reader.readuntil(b"\r\n")  # no trailers are sent: the final empty line
                data = b"".join(parts)
            else:
                data = await self.reader.readexactly(int(response_headers.get("content-length", "0")))
            if response_headers.get("connection", "").lower() == "close":
                await self.close()
            return status, data
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.close()
            raise HttpError(str(exc)) from exc

    async def post_json(
        self, path: str, payload: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        body = json.dumps(payload).encode()
        status, data = await self.request(
            "POST", path, {"Content-Type": "application/json", **(headers or {})}, body
        )
        return status, json.loads(data) if data else None

    async def events(self, path: str) -> AsyncIterator[tuple[str, str]]:
        """Open a server-sent event stream and yield (event, data) as each event's blank line arrives."""
        if self.writer is None:
            await self.open()
        self._send("GET", path, {"Accept": "text/event-stream"}, None)
        status, headers = await self._head()
        if status != 200:
            raise HttpError(f"stream answered {status}")
        chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        assert self.reader is not None
        buffer = b""
        event, data = "message", []
        while True:
            piece = await self._chunk() if chunked else await self.reader.read(65536)
            if not piece:
                return
            buffer += piece
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                text = line.decode("utf-8").rstrip("\r")
                if not text:
                    if data:
                        yield event, "\n".join(data)
                    event, data = "message", []
                elif text.startswith("event:"):
                    event = text[6:].strip()
                elif text.startswith("data:"):
                    data.append(text[5:].lstrip())
