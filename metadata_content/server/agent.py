"""The metadata agent: haproxy's UNIX-socket upstream that decides who is asking.

One request: the network or router id haproxy set, the guest address haproxy
appended to X-Forwarded-For -> the store's port index -> (instance, project)
-> signed request to the metadata API -> the API's answer, relayed.

Identity source (OSSN-0074): haproxy's ``option forwardfor`` *appends* one
X-Forwarded-For line after any the guest sent, and the WSGI server joins
repeated lines with commas in order, so the agent takes the **last** entry
only. A guest-sent X-Forwarded-For is passed on to the API untouched (its
IMDSv2 relay check needs the whole chain) but never picks the instance.
Neutron instead parses the whole header as one address and answers 502 when a
guest adds one; a forged single value there is overwritten by nothing.

Differences from Neutron 29 (SPEC section 6, "defects not to copy"): the
listen backlog is honoured (default 4096), the socket mode is applied
(default 0660), bodies are read whole, port lookups are cached for a short
TTL and dropped when the store changes, and API connections are kept alive
in a pool instead of one TCP connection per request.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import IO, Any, Callable, Iterable
from urllib.parse import urlsplit

from metadata_content.server.identity import sign_instance_id

log = logging.getLogger("configdrive.agent")

RESOLVED_ENV = "CONFIGDRIVE_AGENT_RESOLVED"
MAX_CACHED = 100_000  # port lookups kept; beyond that the cache starts again
NETWORK_HEADER = "HTTP_X_NEUTRON_NETWORK_ID"
ROUTER_HEADER = "HTTP_X_NEUTRON_ROUTER_ID"
# SPEC: statuses relayed as they are; anything else becomes 502. 401/405/411
# are added because our API answers them for IMDSv2 tokens and password POSTs.
RELAYED = frozenset({200, 400, 401, 403, 404, 405, 409, 411, 500, 502, 503, 504})
# Response headers worth passing back to the guest (the rest are hop details).
PASSED_BACK = ("content-type", "x-openstack-request-id", "x-aws-ec2-metadata-token-ttl-seconds")
# Guest request headers forwarded besides the four identity headers: IMDSv2's
# token headers (a token is bound to one instance by HMAC, so it cannot choose one).
TOKEN_HEADERS = (("HTTP_X_AWS_EC2_METADATA_TOKEN", "X-aws-ec2-metadata-token"),
                 ("HTTP_X_AWS_EC2_METADATA_TOKEN_TTL_SECONDS", "X-aws-ec2-metadata-token-ttl-seconds"))
REASONS = {status.value: status.phrase for status in HTTPStatus}


@dataclass
class AgentConfig:
    """Everything a worker needs; the parent resolves it and hands it over as JSON."""

    socket: str
    api: str = "http://127.0.0.1:8775"
    secret_file: str | None = None
    store_url: str | None = None
    data_dir: str | None = None
    workers: int = 1
    threads: int = 8
    backlog: int = 4096
    socket_mode: int = 0o660
    # SPEC's Neutron value is 60 s, but haproxy gives up after its 32 s server
    # timeout, so 60 could never be seen by a guest: 30 s answers first, logged.
    timeout: float = 30.0
    cache_ttl: float = 5.0
    pool_size: int = 16
    access_log: str = "-"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AgentConfig:
        return cls(**json.loads(text))


class Refused(Exception):
    """The agent answers itself with *status* (the request never reaches the API)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# -- who is asking ------------------------------------------------------------


def guest_address(xff: str | None) -> tuple[str, str | None]:
    """(IP, MAC or None) of the guest from X-Forwarded-For's last entry (haproxy's).

    IPv4-mapped IPv6 becomes IPv4; an IPv6 link-local address yields the MAC
    of its EUI-64 interface id, the only thing such a source says about the port.
    """
    last = (xff or "").rsplit(",", 1)[-1].strip()
    try:
        addr = ipaddress.ip_address(last.split("%", 1)[0])
    except ValueError:
        raise Refused(400, "No client address in X-Forwarded-For: the request did not "
                           "come through the metadata proxy.") from None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped:
            return str(addr.ipv4_mapped), None
        if addr.is_link_local:
            return str(addr), mac_from_link_local(addr)
    return str(addr), None


def mac_from_link_local(addr: ipaddress.IPv6Address) -> str | None:
    """The MAC encoded in an EUI-64 link-local address, or None if it is not EUI-64."""
    iid = addr.packed[8:]
    if iid[3:5] != b"\xff\xfe":
        return None
    mac = bytes([iid[0] ^ 0x02]) + iid[1:3] + iid[5:8]
    return ":".join(f"{b:02x}" for b in mac)


class PortIndex:
    """The store's port lookups, cached for *ttl* seconds and dropped whenever
    the store's change log moves (an instance added, updated or removed)."""

    def __init__(self, store: Any, ttl: float):
        from metadata_content.store import ChangeWatcher

        self.store = store
        self.ttl = ttl
        self.watcher = ChangeWatcher(store)
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _cached(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        with self._lock:
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
            self._cache[key] = (now + self.ttl, value)
        return value

    def refresh(self) -> None:
        if self.watcher.poll() != []:
            with self._lock:
                self._cache.clear()

    def router_networks(self, router_id: str) -> list[str]:
        return self._cached(("router", router_id), lambda: self.store.router_networks(router_id))

    def lookup(self, ip: str, mac: str | None, networks: list[str]) -> list[tuple[str, str | None]]:
        """(uuid, project) of every instance owning *ip* (or *mac*) on *networks*."""
        if mac is not None:
            key = ("mac", mac, *networks)
            return self._cached(key, lambda: self.store.find_by_mac(mac, networks))
        return self._cached(("ip", ip, *networks), lambda: self.store.find_by_address(ip, networks))


def identify(environ: dict[str, Any], ports: PortIndex, rid: str = "-") -> tuple[str, str | None, str]:
    """(instance uuid, project, guest ip) for a request haproxy passed on, or Refused."""
    network_id = environ.get(NETWORK_HEADER)
    router_id = environ.get(ROUTER_HEADER)
    if network_id and router_id:
        raise Refused(400, "Both X-Neutron-Network-ID and X-Neutron-Router-ID were given; "
                           "a metadata proxy sets exactly one.")
    if not network_id and not router_id:
        raise Refused(400, "Neither X-Neutron-Network-ID nor X-Neutron-Router-ID was given: "
                           "the request did not come through a metadata proxy.")
    ip, mac = guest_address(environ.get("HTTP_X_FORWARDED_FOR"))
    ports.refresh()
    if network_id:
        networks, where = [network_id], f"network {network_id}"
    else:
        networks, where = ports.router_networks(router_id), f"the networks of router {router_id}"
    found = ports.lookup(ip, mac, networks) if networks else []
    if len(found) != 1:
        if found:
            log.error("%s address %s (mac %s) on %s matches %d instances: %s; refusing to choose",
                      rid, ip, mac or "-", where, len(found), ", ".join(u for u, _ in found))
        raise Refused(404, f"Instance was not found on {where} for address {ip}.")
    return found[0][0], found[0][1], ip


# -- talking to the API -------------------------------------------------------


class UpstreamError(OSError):
    """The API's answer was not HTTP/1.x as expected."""


class _Conn:
    """One keep-alive connection: a socket and a buffered reader over it."""

    __slots__ = ("sock", "rfile")

    def __init__(self, host: str, port: int, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")

    def close(self) -> None:
        self.rfile.close()
        self.sock.close()


class Upstream:
    """Keep-alive HTTP/1.1 connections to the metadata API, shared by a worker's threads.

    A minimal client on purpose: http.client parses every response's headers
    with the email package, which cost more than the rest of the agent's work
    together. Plain HTTP only (the API sits on the same host or a trusted network).
    """

    def __init__(self, url: str, timeout: float, size: int):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"API URL {url!r} is not http://HOST[:PORT]")
        self.host = parts.hostname
        self.port = parts.port or 80
        host_header = f"[{self.host}]" if ":" in self.host else self.host
        self.host_line = f"Host: {host_header}:{self.port}\r\n"
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout
        self.size = size
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()

    def request(self, method: str, target: str, headers: dict[str, str],
                body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        """One exchange; a pooled connection the API closed meanwhile is retried once
        on a fresh one (nothing was answered on it, so nothing is repeated)."""
        head = [f"{method} {self.prefix}{target} HTTP/1.1\r\n", self.host_line]
        for name, value in headers.items():
            if "\r" in value or "\n" in value:
                raise Refused(400, f"invalid {name} header")
            head.append(f"{name}: {value}\r\n")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1") + (body or b"")
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        reused = conn is not None
        while True:
            if conn is None:
                conn = _Conn(self.host, self.port, self.timeout)
            try:
                conn.sock.sendall(data)
                try:
                    status, got, payload, keep = _read_response(conn.rfile, method)
                except ValueError as exc:
                    raise UpstreamError(f"malformed response: {exc}") from None
            except (ConnectionError, UpstreamError) as exc:
                conn.close()
                if reused and not isinstance(exc, ConnectionRefusedError):
                    conn, reused = None, False
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            break
        if keep:
            with self._lock:
                if len(self._idle) < self.size:
                    self._idle.append(conn)
                    conn = None
        if conn is not None:
            conn.close()
        return status, got, payload

    def get(self, target: str, headers: dict[str, str]) -> int:
        return self.request("GET", target, headers, None)[0]


def _read_response(rfile: Any, method: str) -> tuple[int, list[tuple[str, str]], bytes, bool]:
    """(status, headers, body, keep-alive) of one HTTP/1.x response."""
    line = rfile.readline(65537)
    if not line:
        raise UpstreamError("the API closed the connection without answering")
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise UpstreamError(f"not an HTTP response: {line[:80]!r}")
    status = int(parts[1])
    headers: list[tuple[str, str]] = []
    length: int | None = None
    chunked = False
    keep = parts[0] == b"HTTP/1.1"
    for _ in range(200):
        line = rfile.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        lower = name.lower()
        if lower == "content-length":
            length = int(value)
        elif lower == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif lower == "connection":
            keep = value.lower() != "close" if keep else value.lower() == "keep-alive"
        headers.append((name, value))
    else:
        raise UpstreamError("too many response headers")
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", keep
    if chunked:
        chunks = []
        while True:
            size = int(rfile.readline(1026).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                break
            chunks.append(rfile.read(size))
            rfile.readline(3)
        return status, headers, b"".join(chunks), keep
    if length is None:
        return status, headers, rfile.read(), False
    body = rfile.read(length)
    if len(body) != length:
        raise UpstreamError("the API closed the connection in the middle of a body")
    return status, headers, body, keep


# -- the WSGI application -----------------------------------------------------


def read_body(environ: dict[str, Any]) -> bytes | None:
    """The whole request body (Neutron read one 4 KiB recv and cut the rest)."""
    stream = environ.get("wsgi.input")
    length = environ.get("CONTENT_LENGTH") or ""
    if stream is None:
        return None
    if length.isdigit():
        want = int(length)
        chunks, got = [], 0
        while got < want:
            chunk = stream.read(want - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks) if want else None
    if environ.get("REQUEST_METHOD", "GET") in ("GET", "HEAD"):
        return None
    data = stream.read()
    return data or None


class Agent:
    """The WSGI app of one worker process."""

    def __init__(self, config: AgentConfig, store: Any = None):
        from metadata_content.server.config import ConfigError, read_secret
        from metadata_content.store import Store

        self.config = config
        if not config.secret_file:  # never sign with an empty key
            raise ConfigError("the agent needs the shared secret: give --secret-file")
        self.secret = read_secret(config.secret_file)
        self.store = store or Store(config.store_url, config.data_dir)
        self.ports = PortIndex(self.store, config.cache_ttl)
        self.upstream = Upstream(config.api, config.timeout, config.pool_size)
        self.access: IO[str] | None = _open_log(config.access_log)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = "req-" + os.urandom(8).hex()
        instance = "-"
        try:
            if environ.get("PATH_INFO") == "/healthz" and not (
                    environ.get(NETWORK_HEADER) or environ.get(ROUTER_HEADER)):
                status, headers, body = self.health()
            else:
                instance, project, ip = identify(environ, self.ports, rid)
                status, headers, body = self.forward(environ, instance, project or "", rid)
        except Refused as exc:
            status, headers, body = exc.status, [("Content-Type", "text/plain; charset=utf-8")], \
                exc.message.encode()
        except Exception:  # noqa: BLE001 - a guest gets a 500, the log gets the trace
            log.exception("%s agent failure", rid)
            status, headers, body = 500, [("Content-Type", "text/plain; charset=utf-8")], \
                b"An unknown error has occurred. Please try your request again."
        if self.access is not None:
            self.access.write(
                f"{rid} xff={environ.get('HTTP_X_FORWARDED_FOR', '-')!r} "
                f"net={environ.get(NETWORK_HEADER, '-')} router={environ.get(ROUTER_HEADER, '-')} "
                f"instance={instance} {environ.get('REQUEST_METHOD')} "
                f"{environ.get('PATH_INFO', '')!r} {status} "
                f"{(time.perf_counter() - started) * 1000:.2f}ms\n")
        headers = [*headers, ("Content-Length", str(len(body)))]
        start_response(f"{status} {REASONS.get(status, 'Error')}", headers)
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]

    def forward(self, environ: dict[str, Any], instance: str, project: str,
                rid: str = "-") -> tuple[int, list[tuple[str, str]], bytes]:
        """Sign and send the request to the API with only the identity headers."""
        headers = {
            "X-Forwarded-For": environ.get("HTTP_X_FORWARDED_FOR", ""),
            "X-Instance-ID": instance,
            "X-Tenant-ID": project,
            "X-Instance-ID-Signature": sign_instance_id(self.secret, instance),
        }
        for key, name in TOKEN_HEADERS:
            if key in environ:
                headers[name] = environ[key]
        target = environ.get("PATH_INFO") or "/"
        target = _quote_path(target)
        if environ.get("QUERY_STRING"):
            target += "?" + environ["QUERY_STRING"]
        method = environ.get("REQUEST_METHOD", "GET")
        body = read_body(environ)
        try:
            status, got, data = self.upstream.request(method, target, headers, body)
        except (TimeoutError, socket.timeout):
            log.error("%s metadata API %s did not answer within %.1f s", rid, self.config.api,
                      self.config.timeout)
            raise Refused(504, "The metadata server did not answer in time.") from None
        except UpstreamError as exc:
            log.error("%s metadata API %s sent a broken answer: %s", rid, self.config.api, exc)
            raise Refused(502, "The remote metadata server sent an invalid answer.") from None
        except OSError as exc:
            log.error("%s metadata API %s unreachable: %s", rid, self.config.api, exc)
            raise Refused(503, "The remote metadata server is temporarily unavailable. "
                               "Please try again later.") from None
        if status not in RELAYED:
            log.error("%s metadata API answered %d; relayed as 502", rid, status)
            raise Refused(502, f"The remote metadata server answered {status}.")
        if status == 403:
            log.warning("%s metadata API refused the signature for %s: do the agent's and the "
                        "API's shared secrets match?", rid, instance)
        passed = [(k, v) for k, v in got if k.lower() in PASSED_BACK]
        return status, passed, data

    def health(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """For `configdrive doctor`: store reachable? API reachable? signature accepted?
        Only reachable on the socket itself: haproxy always sets an id header."""
        report: dict[str, str] = {}
        try:
            self.store.ping()
            report["store"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported
            report["store"] = f"error: {exc}"
        probe = "00000000-0000-0000-0000-000000000000"
        headers = {"X-Instance-ID": probe, "X-Tenant-ID": "doctor",
                   "X-Instance-ID-Signature": sign_instance_id(self.secret, probe)}
        try:
            status = self.upstream.get("/openstack", headers)
            report["api"] = "ok"
            report["signature"] = {403: "rejected: the shared secrets differ",
                                   400: "incomplete headers"}.get(status, "ok")
            report["api_status"] = str(status)
        except OSError as exc:
            report["api"] = f"unreachable: {exc}"
        ok = all(report.get(k) == "ok" for k in ("store", "api", "signature"))
        return (200 if ok else 503), [("Content-Type", "application/json")], \
            json.dumps({"status": "ok" if ok else "fail", **report}).encode()


_PLAIN_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=._~-]*")


def _quote_path(path: str) -> str:
    """PATH_INFO is decoded latin-1 text; re-encode so the request line stays valid."""
    if _PLAIN_PATH.fullmatch(path):
        return path
    from urllib.parse import quote

    return quote(path.encode("latin-1"), safe="/:@!$&'()*+,;=-._~")


def _open_log(target: str) -> IO[str] | None:
    if target in ("off", "none", ""):
        return None
    if target == "-":
        return sys.stderr
    return open(target, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives with the worker


def app_from_env() -> Agent:
    """Factory for the server's worker processes."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return Agent(AgentConfig.from_json(os.environ[RESOLVED_ENV]))


# -- running it ---------------------------------------------------------------


def prepare_socket(path: str) -> None:
    """Remove a stale socket left by a crashed agent; refuse if one is still serving."""
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        return
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    finally:
        probe.close()
    raise RuntimeError(f"another process is serving on {path}")


def serve_agent(config: AgentConfig) -> None:
    """Run granian (WSGI) on the UNIX socket until SIGTERM/SIGINT."""
    import multiprocessing
    from pathlib import Path

    from granian import Granian
    from granian.constants import Interfaces

    prepare_socket(config.socket)
    os.environ[RESOLVED_ENV] = config.to_json()
    multiprocessing.set_start_method("spawn", force=True)
    try:
        Granian("metadata_content.server.agent:app_from_env", uds=Path(config.socket),
                uds_permissions=config.socket_mode, interface=Interfaces.WSGI,
                workers=config.workers, blocking_threads=config.threads, websockets=False,
                factory=True, backlog=config.backlog, log_access=False).serve()
    finally:
        try:
            os.unlink(config.socket)
        except FileNotFoundError:
            pass
