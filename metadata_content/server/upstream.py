"""The agent's client for the metadata API: pooled keep-alive HTTP/1.1 on asyncio.

A minimal client on purpose. The agent's whole job per request is a header
lookup, an HMAC and this one exchange, so the client's cost is the agent's
cost: http.client parses every response's headers with the email package,
and the general-purpose async clients (aiohttp, httpx) spend several times
more per exchange than the parsing below. Plain HTTP only: the API sits on
the same host or a trusted network, as nova-api-metadata does for Neutron.

One pool per worker process, used only from that worker's event loop, so it
needs no lock.
"""
from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from metadata_content.server.runtime import Reply

MAX_HEAD = 65536  # bytes of status line + headers accepted from the API


class UpstreamError(OSError):
    """The API's answer was not HTTP/1.x as expected."""


class _Stale(UpstreamError):
    """The connection closed before the first byte of an answer, so the request
    may be sent again on a fresh one (only if it was a pooled connection)."""


def parse_api_url(url: str) -> tuple[str, int, str]:
    """(host, port, path prefix) of an ``http://HOST[:PORT][/prefix]`` URL, or ValueError."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"API URL {url!r} is not http://HOST[:PORT]")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    def close(self) -> None:
        self.writer.close()


class Upstream:
    """Keep-alive connections to the metadata API, at most *size* kept idle."""

    def __init__(self, url: str, timeout: float, size: int):
        self.host, self.port, self.prefix = parse_api_url(url)
        host_header = f"[{self.host}]" if ":" in self.host else self.host
        self.host_line = f"Host: {host_header}:{self.port}\r\n"
        self.timeout = timeout
        self.size = size
        self._idle: list[_Conn] = []

    def encode(self, method: str, target: str, headers: dict[str, str], body: bytes | None) -> bytes:
        """The request's bytes; ValueError for a header value that would split the request."""
        head = [f"{method} {self.prefix}{target} HTTP/1.1\r\n", self.host_line]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise ValueError(f"invalid {name} header")
            head.append(f"{name}: {value}\r\n")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}\r\n")
        head.append("\r\n")
        return "".join(head).encode("latin-1") + (body or b"")

    async def request(self, method: str, target: str, headers: dict[str, str],
                      body: bytes | None) -> Reply:
        """One exchange within the timeout (TimeoutError after it). A pooled connection
        the API closed meanwhile (reset, or EOF before the first byte of an answer)
        is retried once on a fresh one. Once any byte of an answer has arrived the
        request is never sent again: the API may have acted on it (a password POST)."""
        data = self.encode(method, target, headers, body)
        async with asyncio.timeout(self.timeout):
            if self._idle:
                conn = self._idle.pop()
                try:
                    head = await _send(conn, data)
                except (_Stale, ConnectionError):
                    pass  # the API closed the idle connection before answering: nothing happened
                else:
                    return await self._finish(conn, head, method)
            reader, writer = await asyncio.open_connection(self.host, self.port, limit=MAX_HEAD)
            conn = _Conn(reader, writer)
            return await self._finish(conn, await _send(conn, data), method)

    async def _finish(self, conn: _Conn, head: bytes, method: str) -> Reply:
        """The rest of the answer *head* begins; *conn* is pooled after a keep-alive
        answer and closed otherwise (a failure here is never retried)."""
        try:
            reply, keep = await _read_rest(conn.reader, head, method)
        except asyncio.IncompleteReadError:
            conn.close()
            raise UpstreamError("the API closed the connection in the middle of an answer") from None
        except BaseException:
            conn.close()
            raise
        if keep and len(self._idle) < self.size:
            self._idle.append(conn)
        else:
            conn.close()
        return reply

    async def get(self, target: str, headers: dict[str, str]) -> int:
        return (await self.request("GET", target, headers, None)).status


async def _send(conn: _Conn, data: bytes) -> bytes:
    """Write the request and read the answer's head; *conn* is closed on any failure.
    _Stale or a ConnectionError here means no byte of an answer was read (asyncio
    drops head bytes buffered before a reset; an API that resets mid-head is not one we have)."""
    try:
        conn.writer.write(data)
        await conn.writer.drain()
        return await _read_head(conn.reader)
    except BaseException:
        conn.close()
        raise


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    """The status line and headers; _Stale if the connection ended before any of it."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise UpstreamError("response headers too large") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise _Stale("the API closed the connection without answering") from None
        raise UpstreamError("the API closed the connection in the middle of an answer") from None


async def _read_rest(reader: asyncio.StreamReader, head: bytes, method: str) -> tuple[Reply, bool]:
    """The response that *head* begins, and whether the connection stays open.
    Our API always sends Content-Length, so an answer without one (chunked, or
    ending at EOF) is refused like any other answer that is not what it sends."""
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise UpstreamError(f"not an HTTP response: {lines[0][:80]!r}")
    status = int(parts[1])
    keep = parts[0] == b"HTTP/1.1"
    headers: list[tuple[str, str]] = []
    content_type = ""
    length: int | None = None
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        lower = name.lower()
        if lower == "content-length":
            if not value.isdigit():
                raise UpstreamError(f"bad Content-Length {value[:20]!r}")
            length = int(value)
        elif lower == "content-type":
            content_type = value
        elif lower == "transfer-encoding":
            raise UpstreamError(f"Transfer-Encoding {value[:20]!r} (the API sends Content-Length)")
        elif lower == "connection":
            keep = value.lower() != "close" if keep else value.lower() == "keep-alive"
        headers.append((name, value))
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif length is None:
        raise UpstreamError("an answer without Content-Length")
    else:
        body = await reader.readexactly(length)
    return Reply(status, body, content_type, headers=tuple(headers)), keep
