"""The metadata agent: haproxy's UNIX-socket upstream that decides who is asking.

One request: the network or router id haproxy set, the guest address haproxy
appended to X-Forwarded-For -> the store's port index -> (instance, project)
-> signed request to the metadata API -> the API's answer, relayed.

Identity source (OSSN-0074): haproxy's ``option forwardfor`` *appends* one
X-Forwarded-For line after any the guest sent; the agent joins repeated lines
with commas in order and takes the **last** entry only. A guest-sent
X-Forwarded-For is passed on to the API untouched (its IMDSv2 relay check
needs the whole chain) but never picks the instance.
Neutron instead parses the whole header as one address and answers 502 when a
guest adds one; a forged single value there is overwritten by nothing.

Differences from Neutron 29 (SPEC section 6, "defects not to copy"): the
listen backlog is honoured (default 4096), the socket mode is applied
(default 0660), bodies are read whole up to the largest the API takes
(beyond that 413, before a byte more is read), port lookups are cached for a short
TTL and dropped when the store changes, and API connections are kept alive
in a pool instead of one TCP connection per request.

The agent is an RSGI application (granian's native interface): one event
loop per worker process waits on the API for all requests at once. Header
names are matched exactly as they arrive (lower-cased), so a guest's
``X_Neutron_Network_ID`` is never mistaken for haproxy's
``X-Neutron-Network-ID``, as a WSGI server's ``HTTP_*`` names would allow.
"""
from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from granian.rsgi import ProtocolClosed, ProtocolError

from metadata_content.server.config import AGENT_RESOLVED_ENV, AgentConfig, ConfigError, read_secret
from metadata_content.server.identity import proxy_headers, undecodable_header
from metadata_content.server.runtime import (
    UNKNOWN_ERROR,
    AccessLog,
    Refusal,
    Reply,
    die_with_parent,
    setup_logging,
)
from metadata_content.server.upstream import Upstream, UpstreamError

log = logging.getLogger("configdrive.agent")

# The largest body the API accepts (store.PASSWORD_MAX, a password; not imported:
# the store loads SQLAlchemy, which the parent process never needs). One guest's
# larger body would otherwise sit in the memory of the agent that serves every
# network. A test keeps the two equal.
BODY_MAX = 1020
MAX_CACHED = 100_000  # port lookups kept; beyond that the oldest goes
NETWORK_HEADER = "x-neutron-network-id"
ROUTER_HEADER = "x-neutron-router-id"
# SPEC: statuses relayed as they are; anything else becomes 502. 401/405/411
# are added because our API answers them for IMDSv2 tokens and password POSTs.
RELAYED = frozenset({200, 400, 401, 403, 404, 405, 409, 411, 500, 502, 503, 504})
# Response headers worth passing back to the guest besides Content-Type (the rest are hop details).
PASSED_BACK = ("x-openstack-request-id", "x-aws-ec2-metadata-token-ttl-seconds", "allow")
# Guest request headers forwarded besides the four identity headers: IMDSv2's
# token headers (a token is bound to one instance by HMAC, so it cannot choose one).
TOKEN_HEADERS = (("x-aws-ec2-metadata-token", "X-aws-ec2-metadata-token"),
                 ("x-aws-ec2-metadata-token-ttl-seconds", "X-aws-ec2-metadata-token-ttl-seconds"))

# Headers whose value must arrive as text: a value granian cannot decode would
# be dropped, turning a bad token into none or shortening X-Forwarded-For.
CHECKED_HEADERS = frozenset({NETWORK_HEADER, ROUTER_HEADER, "x-forwarded-for", *(k for k, _ in TOKEN_HEADERS)})


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
        raise Refusal(400, "No client address in X-Forwarded-For: the request did not "
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
    the store's change log moves (an instance added, updated or removed).

    Used from the worker's event loop only; a miss asks the store in a small
    thread pool, so a slow database never stalls the requests the cache answers.
    """

    def __init__(self, store: Any, ttl: float, threads: int = 4):
        # Lazy, as the Store in Agent: the parent process that only starts granian
        # (serve_agent) never loads SQLAlchemy.
        from metadata_content.store import ChangeWatcher

        self.store = store
        self.ttl = ttl
        self.watcher = ChangeWatcher(store)
        self._cache: OrderedDict[tuple[str, ...], tuple[float, Any]] = OrderedDict()  # oldest first
        self._generation = 0  # moves whenever the cache is dropped
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="store")

    async def _cached(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        generation = self._generation
        value = await asyncio.get_running_loop().run_in_executor(self._pool, load)
        if generation == self._generation:  # not read before a change that arrived meanwhile
            if len(self._cache) >= MAX_CACHED:
                self._cache.popitem(last=False)
            self._cache[key] = (time.monotonic() + self.ttl, value)
        return value

    async def refresh(self) -> None:
        """Drop every cached lookup if the store changed. Asking costs a thread hop
        and a system call, so it is asked only when the watcher says it is due."""
        if not self.watcher.due():
            return
        changed = await asyncio.get_running_loop().run_in_executor(self._pool, self.watcher.poll)
        if changed != []:
            self._cache.clear()
            self._generation += 1

    async def router_networks(self, router_id: str) -> list[str]:
        return await self._cached(("router", router_id), lambda: self.store.router_networks(router_id))

    async def lookup(self, ip: str, mac: str | None, networks: list[str]) -> list[tuple[str, str | None]]:
        """(uuid, project) of every instance owning *ip* (or *mac*) on *networks*."""
        if mac is not None:
            return await self._cached(("mac", mac, *networks), lambda: self.store.find_by_mac(mac, networks))
        return await self._cached(("ip", ip, *networks), lambda: self.store.find_by_address(ip, networks))


async def identify(network_id: str | None, router_id: str | None, xff: str | None,
                   ports: PortIndex, rid: str = "-") -> tuple[str, str | None]:
    """(instance uuid, project) for a request haproxy passed on, or Refusal."""
    if network_id and router_id:
        raise Refusal(400, "Both X-Neutron-Network-ID and X-Neutron-Router-ID were given; "
                           "a metadata proxy sets exactly one.")
    if not network_id and not router_id:
        raise Refusal(400, "Neither X-Neutron-Network-ID nor X-Neutron-Router-ID was given: "
                           "the request did not come through a metadata proxy.")
    ip, mac = guest_address(xff)
    await ports.refresh()
    if network_id:
        networks, where = [network_id], f"network {network_id}"
    else:
        assert router_id is not None
        networks, where = await ports.router_networks(router_id), f"the networks of router {router_id}"
    found = await ports.lookup(ip, mac, networks) if networks else []
    if len(found) != 1:
        if found:
            log.error("%s address %s (mac %s) on %s matches %d instances: %s; refusing to choose",
                      rid, ip, mac or "-", where, len(found), ", ".join(u for u, _ in found))
        raise Refusal(404, f"Instance was not found on {where} for address {ip}.")
    return found[0][0], found[0][1]


# -- the RSGI application -----------------------------------------------------


@dataclass
class Request:
    """What the agent reads of one request (header names in lower case, as sent)."""

    method: str
    path: str
    target: str
    headers: dict[str, str]
    xff: str | None
    has_body: bool

    @classmethod
    def from_scope(cls, scope: Any) -> Request:
        """From granian's RSGI scope: the path arrives decoded, the query as sent."""
        headers: dict[str, str] = {}
        xff: list[str] = []
        for name, value in scope.headers.items():
            if name == "x-forwarded-for":
                xff.append(value)  # repeated lines, in order
            else:
                headers[name] = value
        method = scope.method
        target = _quote_path(scope.path)
        if scope.query_string:
            target += "?" + scope.query_string
        has_body = "content-length" in headers or "transfer-encoding" in headers or \
            method not in ("GET", "HEAD")
        return cls(method, scope.path, target, headers, ", ".join(xff) if xff else None, has_body)


class Agent:
    """The RSGI app of one worker process: one event loop, no thread per request,
    so requests waiting on a slow API hold nothing (the threaded WSGI agent
    served at most 8 at once per worker). RSGI is granian's native interface:
    a constant responder answers ~1.4x as many requests through it as through ASGI."""

    def __init__(self, config: AgentConfig, store: Any = None):
        from metadata_content.store import Store

        self.config = config
        if not config.secret_file:  # never sign with an empty key
            raise ConfigError("the agent needs the shared secret: give --secret-file")
        self.secret = read_secret(config.secret_file)
        self.store = store or Store(config.store_url, config.data_dir)
        self.ports = PortIndex(self.store, config.cache_ttl, config.threads)
        self.upstream = Upstream(config.api, config.timeout, config.pool_size)
        self.access = AccessLog(config.access_log)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        started = time.perf_counter()
        rid = "req-" + os.urandom(8).hex()
        instance = "-"
        request = Request.from_scope(scope)
        network_id = request.headers.get(NETWORK_HEADER)
        router_id = request.headers.get(ROUTER_HEADER)
        try:
            unreadable = undecodable_header(scope.headers, CHECKED_HEADERS)
            if unreadable is not None:  # the API refuses the same (identity.undecodable_header)
                raise Refusal(400, f"The {unreadable} header is not ASCII text.")
            if request.path == "/healthz" and not (network_id or router_id):
                reply = await self.health()
            else:
                check_length(request.headers)
                instance, project = await identify(network_id, router_id, request.xff, self.ports, rid)
                # the whole body (Neutron read one 4 KiB recv and cut the rest), up to BODY_MAX
                data = await read_body(protocol, request.headers) if request.has_body else None
                reply = await self.forward(request, data, instance, project or "", rid)
        except Refusal as exc:
            reply = exc.reply()
        except Exception:
            log.exception("%s agent failure", rid)
            reply = Refusal(500, UNKNOWN_ERROR).reply()
        self.access.write(rid, instance, request.method, request.path, reply.status,
                          time.perf_counter() - started,
                          f"xff={request.xff or '-'!r} net={network_id or '-'} router={router_id or '-'} ")
        headers = [("content-type", reply.content_type), *reply.headers] if reply.content_type \
            else list(reply.headers)
        if request.method == "HEAD":  # the length of the body not sent (the API's, if it answered)
            if not any(name == "content-length" for name, _ in headers):
                headers.append(("content-length", str(len(reply.body))))
            protocol.response_empty(reply.status, headers)
        else:
            protocol.response_bytes(reply.status, headers, reply.body)

    async def forward(self, request: Request, body: bytes | None, instance: str, project: str,
                      rid: str = "-") -> Reply:
        """Sign and send the request to the API with only the identity headers."""
        headers = {"X-Forwarded-For": request.xff or "", **proxy_headers(self.secret, instance, project)}
        for key, name in TOKEN_HEADERS:
            if key in request.headers:
                headers[name] = request.headers[key]
        try:
            reply = await self.upstream.request(request.method, request.target, headers, body)
        except ValueError as exc:  # a header value that would split the request
            raise Refusal(400, str(exc)) from None
        except TimeoutError:
            log.error("%s metadata API %s did not answer within %.1f s", rid, self.config.api,
                      self.config.timeout)
            raise Refusal(504, "The metadata server did not answer in time.") from None
        except UpstreamError as exc:
            log.error("%s metadata API %s sent a broken answer: %s", rid, self.config.api, exc)
            raise Refusal(502, "The remote metadata server sent an invalid answer.") from None
        except OSError as exc:
            log.error("%s metadata API %s unreachable: %s", rid, self.config.api, exc)
            raise Refusal(503, "The remote metadata server is temporarily unavailable. "
                               "Please try again later.") from None
        if reply.status not in RELAYED:
            log.error("%s metadata API answered %d; relayed as 502", rid, reply.status)
            raise Refusal(502, f"The remote metadata server answered {reply.status}.")
        if reply.status == 403:
            log.warning("%s metadata API refused the signature for %s: do the agent's and the "
                        "API's shared secrets match?", rid, instance)
        passed = tuple((k.lower(), v) for k, v in reply.headers if k.lower() in PASSED_BACK
                       or (request.method == "HEAD" and k.lower() == "content-length"))
        return Reply(reply.status, reply.body, reply.content_type, instance, passed)

    async def health(self) -> Reply:
        """For `configdrive doctor`: store reachable? API reachable? signature accepted?
        Only reachable on the socket itself: haproxy always sets an id header."""
        report: dict[str, str] = {}
        try:
            await asyncio.to_thread(self.store.ping)
            report["store"] = "ok"
        except Exception as exc:
            report["store"] = f"error: {exc}"
        probe = "00000000-0000-0000-0000-000000000000"
        try:
            status = await self.upstream.get("/openstack", proxy_headers(self.secret, probe, "doctor"))
            report["api"] = "ok"
            report["signature"] = {403: "rejected: the shared secrets differ",
                                   400: "incomplete headers"}.get(status, "ok")
            report["api_status"] = str(status)
        except (OSError, TimeoutError) as exc:
            report["api"] = f"unreachable: {exc or type(exc).__name__}"
        ok = all(report.get(k) == "ok" for k in ("store", "api", "signature"))
        return Reply(200 if ok else 503, json.dumps({"status": "ok" if ok else "fail", **report}).encode(),
                     "application/json")


def check_length(headers: dict[str, str]) -> None:
    """Refuse a declared body above BODY_MAX (413) before any of it is read."""
    length = headers.get("content-length")
    if length is None:
        return
    if not (length.isascii() and length.isdigit()):
        raise Refusal(400, "Content-Length is not a number.")
    if int(length) > BODY_MAX:
        raise Refusal(413, f"The request body is larger than {BODY_MAX} bytes.")


async def read_body(protocol: Any, headers: dict[str, str], limit: int = BODY_MAX) -> bytes:
    """The body, at most *limit* bytes; a broken or cut-off body is the guest's
    mistake: 400, not a traceback.

    With Content-Length (already checked against *limit*) granian reads exactly
    that much and raises on a short or broken body. A chunked body declares no
    size, so it is counted as it streams in and refused (413) at the first byte
    beyond *limit*. Granian's stream does not raise on broken chunked encoding:
    it yields an empty piece and then ends, where a sound body yields its one
    empty piece last; so an empty piece followed by anything is refused (which
    also refuses chunked trailers, which no metadata client sends)."""
    broken = Refusal(400, "The request body is malformed or incomplete.")
    try:
        if "content-length" in headers:
            return bytes(await protocol())
        parts: list[bytes] = []
        size = 0
        ended = False
        async for chunk in protocol:
            if ended:
                raise broken
            if not chunk:
                ended = True
                continue
            size += len(chunk)
            if size > limit:
                raise Refusal(413, f"The request body is larger than {limit} bytes.")
            parts.append(chunk)
    except (ProtocolClosed, ProtocolError):
        raise broken from None
    return b"".join(parts)


_PLAIN_PATH = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=._~-]*")


def _quote_path(path: str) -> str:
    """The path arrives decoded; quote it again so the request line stays valid."""
    if _PLAIN_PATH.fullmatch(path):
        return path
    from urllib.parse import quote

    return quote(path, safe="/:@!$&'()*+,;=-._~", errors="surrogateescape")


def app_from_env() -> Agent:
    """Factory for the server's worker processes (which die with the main process)."""
    die_with_parent()
    setup_logging()
    return Agent(AgentConfig.from_json(os.environ[AGENT_RESOLVED_ENV]))


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
    """Run granian (RSGI) on the UNIX socket until SIGTERM/SIGINT."""
    import multiprocessing
    from pathlib import Path

    from granian import Granian
    from granian.constants import Interfaces, RuntimeModes

    prepare_socket(config.socket)
    os.environ[AGENT_RESOLVED_ENV] = config.to_json()
    multiprocessing.set_start_method("spawn", force=True)
    try:
        Granian("metadata_content.server.agent:app_from_env", uds=Path(config.socket),
                uds_permissions=config.socket_mode, interface=Interfaces.RSGI,
                workers=config.workers, websockets=False, factory=True, backlog=config.backlog,
                runtime_mode=RuntimeModes.st, log_access=False, respawn_failed_workers=True).serve()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config.socket)
