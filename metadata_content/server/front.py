"""The API's front: granian's RSGI interface around the WSGI app (fast path + Flask).

Why not granian's WSGI interface, which the API used before:

* **Raw header names.** Under WSGI a header becomes ``HTTP_`` + its name
  upper-cased with ``-`` turned into ``_``, so ``X_Forwarded_For`` and
  ``X-Forwarded-For`` land on the same key, and granian (checked on 2.8.9)
  lets the later spelling *replace* the earlier one (same-name repeats are
  comma-joined). Nothing in the environ tells that a collision happened, so
  no check made from the environ can be sound. RSGI hands over the names as
  they arrived (lower-cased by hyper): a request that carries any spelling of
  an identity header other than the exact one is refused with 400 here,
  before an environ exists.
* **Bodies without threads.** Under WSGI a password POST read its body in a
  worker thread with no deadline, so a few clients that withheld their
  bodies held every thread. Here the body is awaited on the event loop,
  bounded by :data:`BODY_TIMEOUT` (408 after it) and :data:`BODY_MAX`, and
  only a complete request reaches a thread.
* **Cached reads never queue behind slow work.** The fast path (cached
  GET/HEAD, no rendering, no writes) runs on the event loop itself; cache
  misses and writes (which may wait on the store's write lock) run in a pool
  of ``threads`` threads, so a held write lock cannot delay a cached answer.

Also the request-target bound (:data:`PATH_MAX`, 414) lives here, before any
service code or memo sees the path.
"""
from __future__ import annotations

import asyncio
import io
import logging
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from metadata_content.server.identity import undecodable_header
from metadata_content.server.runtime import TEXT, UNKNOWN_ERROR, Reply, response_headers

log = logging.getLogger("configdrive.api")

# Identity headers, exactly as they must be spelled (lower-cased as hyper hands them over).
IDENTITY_HEADERS = ("x-forwarded-for", "x-instance-id", "x-tenant-id", "x-instance-id-signature",
                    "x-aws-ec2-metadata-token", "x-aws-ec2-metadata-token-ttl-seconds")
_BY_KEY = {name.replace("-", "_"): name for name in IDENTITY_HEADERS}
# The longest real metadata path is well under 200 bytes
# (/openstack/2018-08-27/vendor_data2.json, /latest/meta-data/public-keys/0/openssh-key);
# 1 KiB leaves room for any Nova path and refuses what only grows logs and memos.
PATH_MAX = 1024
BODY_TIMEOUT = 5.0  # seconds a request body may take to arrive whole (408 after)
BODY_MAX = 64 * 1024  # more than any body the API takes (a password is <= 1020 bytes)
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


def colliding_header(names: Iterable[str]) -> str | None:
    """The first header name that WSGI would map onto an identity header's key
    without being that header (``x_forwarded_for``, ``x-forwarded_for``...)."""
    for name in names:
        lowered = name.lower()
        canonical = _BY_KEY.get(lowered.replace("-", "_"))
        if canonical is not None and lowered != canonical:
            return name
    return None


def _split_host(address: str) -> tuple[str, str]:
    """("ip", "port") of granian's ``ip:port`` / ``[ipv6]:port``."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), port


def wsgi_path(path: str) -> str:
    """PEP 3333's PATH_INFO: the decoded path's bytes as latin-1 text (what
    granian's WSGI interface passed and what werkzeug decodes again)."""
    if path.isascii():
        return path
    return path.encode("utf-8", "surrogateescape").decode("latin-1")


def build_environ(scope: Any, body: bytes) -> dict[str, Any]:
    """The WSGI environ the app saw under granian's WSGI interface (same keys and
    decoding: the path decoded, repeated headers comma-joined)."""
    server, server_port = _split_host(scope.server)
    client, _ = _split_host(scope.client)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method, "SCRIPT_NAME": "", "PATH_INFO": wsgi_path(scope.path),
        "QUERY_STRING": scope.query_string, "SERVER_NAME": server, "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}", "REMOTE_ADDR": client,
        "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "Granian",
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.scheme, "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False, "wsgi.input_terminated": True,
    }
    for name, value in scope.headers.items():
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def run_wsgi(app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Call a WSGI app and collect its whole answer (ours are small and in memory)."""
    started: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        started[:] = [int(status.split(" ", 1)[0]), headers]

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return started[0], list(started[1]), body


class Front:
    """RSGI app of one API worker: refuse colliding headers and huge targets,
    await bodies with a deadline, answer cached reads on the loop, everything
    else in a thread."""

    def __init__(self, fast: Any, threads: int):
        self.fast = fast  # api.FastPath: .service and .app (Flask's wsgi_app)
        self.service = fast.service
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="api")

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        started = time.perf_counter()
        try:
            reply, environ = await self._early(scope, protocol, started)
        except Exception:
            log.exception("request failed before the service: %s", scope.method)
            reply, environ = Reply(500, UNKNOWN_ERROR.encode()), None
        if reply is not None:
            self._send(protocol, scope.method, reply.status,
                       [("Content-Type", reply.content_type), *reply.headers], reply.body)
            return
        assert environ is not None
        quick = self.service.answer(environ, render=False)
        if quick is not None:
            self.service.finish(quick, environ, started)
            self._send(protocol, scope.method, quick.status, response_headers(quick, environ), quick.body)
            return
        loop = asyncio.get_running_loop()
        try:
            status, headers, body = await loop.run_in_executor(self.pool, run_wsgi, self.fast.app, environ)
        except Exception:
            log.exception("%s request failed outside the service", environ.get("configdrive.request_id", "-"))
            status, headers, body = 500, [("Content-Type", TEXT)], UNKNOWN_ERROR.encode()
        self._send(protocol, scope.method, status, headers, body)

    async def _early(self, scope: Any, protocol: Any, started: float) -> tuple[Reply | None, dict[str, Any] | None]:
        """A refusal before the service (logged here), or the environ to answer."""
        def refuse(status: int, message: str, log_path: str) -> tuple[Reply, None]:
            reply = Reply(status, message.encode(), TEXT, path_class="refused")
            environ = {"configdrive.request_id": "-", "REQUEST_METHOD": scope.method, "PATH_INFO": log_path}
            self.service.finish(reply, environ, started)
            return reply, None

        if len(scope.path) + len(scope.query_string) > PATH_MAX:
            return refuse(414, f"The request target is longer than {PATH_MAX} bytes.", scope.path)
        bad = colliding_header(scope.headers.keys())
        if bad is not None:
            log.warning("refused a request with header %r (spelled unlike an identity header)", bad[:64])
            return refuse(400, "A header name collides with an identity header.", scope.path)
        unreadable = undecodable_header(scope.headers, IDENTITY_HEADERS)
        if unreadable is not None:
            return refuse(400, f"The {unreadable} header is not ASCII text.", scope.path)
        body = b""
        if scope.method not in _NO_BODY or "content-length" in scope.headers \
                or "transfer-encoding" in scope.headers:
            try:
                body = await asyncio.wait_for(self._read_body(protocol), BODY_TIMEOUT)
            except TimeoutError:
                return refuse(408, f"The request body did not arrive within {BODY_TIMEOUT:g} seconds.",
                              scope.path)
        return None, build_environ(scope, body)

    @staticmethod
    async def _read_body(protocol: Any) -> bytes:
        """The body, cut after BODY_MAX + 1 bytes (the service refuses what is too large)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in protocol:
            chunks.append(chunk)
            size += len(chunk)
            if size > BODY_MAX:
                break
        return b"".join(chunks)[:BODY_MAX + 1]

    @staticmethod
    def _send(protocol: Any, method: str, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        if not any(name.lower() == "content-length" for name, _ in headers):
            headers = [*headers, ("Content-Length", str(len(body)))]
        if method == "HEAD":
            protocol.response_empty(status, headers)
        else:
            protocol.response_bytes(status, headers, body)
