"""The metadata agent as a real process on its UNIX socket.

Its upstream here is a small recording HTTP server on 127.0.0.1 that answers
what a test asks for (a status, a delay) and echoes what it received, so the
tests can see exactly which headers and bytes the agent forwards. The
end-to-end tests run the agent against the real API.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from metadata_content.chain import dnsmasq, haproxy, netns
from metadata_content.chain.doctor import _UnixHTTP
from metadata_content.server import agent as agentmod
from metadata_content.server.agent import guest_address, mac_from_link_local
from metadata_content.server.identity import sign_instance_id
from metadata_content.spec import instance_from_data, read_spec
from metadata_content.store import PASSWORD_MAX, Store
from tests.conftest import ROOT, SAMPLES
from tests.support.chainlab import peak_rss_kib

WEB = read_spec(SAMPLES / "webserver.yaml")
WEB_NET = WEB["nics"][0]["network_id"]
WEB_IP = WEB["nics"][0]["subnets"][0]["ip"]
WEB_MAC = WEB["nics"][0]["mac"]


class Recorder(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the agent may open many connections at once

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.peers: list[int] = []


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        self.server.peers.append(self.client_address[1])  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status = 200
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "status":
            status = int(parts[1])
        elif parts[0] == "sleep":
            time.sleep(float(parts[1]))
        out = json.dumps({"method": self.command, "path": self.path, "headers": list(self.headers.items()),
                          "body_len": len(body), "body_head": body[:16].decode("latin-1")}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Openstack-Request-Id", "req-upstream")
        self.send_header("Set-Cookie", "never=passed")
        if status == 405:
            self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("agent")
    secret = base / "secret"
    secret.write_text("agent-test-secret\n")
    store = Store(data_dir=base / "data")
    store.add([(WEB, instance_from_data(json.loads(json.dumps(WEB)), "webserver"))])
    store.set_router_networks("router-1", [WEB_NET])
    store.close()
    return {"dir": base, "secret": str(secret), "data": str(base / "data")}


def start_agent(env: dict[str, Any], api: str, name: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    sock = str(env["dir"] / f"{name}.sock")
    log = open(env["dir"] / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "configdrive", "serve", "agent", "--socket", sock,
                             "--api", api, "--secret-file", env["secret"], "--data-dir", env["data"], *extra],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(200):
        if proc.poll() is not None:
            raise AssertionError(f"agent exited: {(env['dir'] / f'{name}.log').read_text()}")
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(sock)
            return proc, sock
        except OSError:
            time.sleep(0.05)
    raise AssertionError("agent did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def agent(env: dict[str, Any], upstream: Recorder) -> Iterator[str]:
    proc, sock = start_agent(env, f"http://127.0.0.1:{upstream.server_port}", "main",
                             "--timeout", "1", "--cache-ttl", "600")
    env["agent_pid"] = proc.pid  # for the memory checks
    yield sock
    stop(proc)


def ask(sock: str, path: str = "/openstack", method: str = "GET", body: bytes | None = None,
        **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = _UnixHTTP(sock, timeout=10)
    try:
        hdrs = {"X-Neutron-Network-ID": WEB_NET, "X-Forwarded-For": WEB_IP}
        for key, value in headers.items():
            name = key.replace("_", "-")
            if value is None:
                hdrs.pop(name, None)
            else:
                hdrs[name] = value
        conn.request(method, path, body=body, headers={k: v for k, v in hdrs.items() if v is not None})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_forwards_only_identity_headers_and_the_whole_body(agent: str, env: dict[str, Any]) -> None:
    body = bytes(range(256)) * 3 + bytes(252)  # 1020 bytes, the largest body the API takes
    status, headers, out = ask(agent, "/openstack/latest/password?x=1&y=%2F", "POST", body,
                               **{"X-Instance-ID": "forged", "X-Tenant-ID": "forged",
                                  "X-Instance-ID-Signature": "forged", "Cookie": "a=b",
                                  "Authorization": "Basic eA==", "X-Custom": "1",
                                  "X-aws-ec2-metadata-token": "tok"})
    assert status == 200
    seen = json.loads(out)
    assert seen["method"] == "POST" and seen["path"] == "/openstack/latest/password?x=1&y=%2F"
    assert seen["body_len"] == len(body)
    names = {k.lower(): v for k, v in seen["headers"]}
    assert set(names) == {"host", "content-length", "x-forwarded-for", "x-instance-id", "x-tenant-id",
                          "x-instance-id-signature", "x-aws-ec2-metadata-token"}
    assert names["x-instance-id"] == WEB["uuid"]
    assert names["x-tenant-id"] == WEB["project_id"]
    assert names["x-instance-id-signature"] == sign_instance_id(b"agent-test-secret", WEB["uuid"])
    assert names["x-forwarded-for"] == WEB_IP
    # only content type and request id come back, no hop headers or cookies
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered.get("x-openstack-request-id") == "req-upstream"
    assert "set-cookie" not in lowered


@pytest.mark.parametrize("code,expected", [(200, 200), (400, 400), (401, 401), (403, 403), (404, 404),
                                           (409, 409), (500, 500), (502, 502), (503, 503), (504, 504),
                                           (201, 502), (302, 502), (418, 502)])
def test_status_mapping(agent: str, code: int, expected: int) -> None:
    assert ask(agent, f"/status/{code}")[0] == expected


def test_a_405_keeps_its_allow_header(agent: str) -> None:
    """RFC 9110: the API's 405 names the methods the path takes; the guest must see it too."""
    status, headers, _ = ask(agent, "/status/405")
    assert status == 405 and {k.lower(): v for k, v in headers.items()}.get("allow") == "GET, HEAD"


def test_slow_api_gives_504_within_the_timeout(agent: str) -> None:
    began = time.monotonic()
    status, _, body = ask(agent, "/sleep/4")
    assert status == 504 and b"in time" in body
    assert time.monotonic() - began < 3
    assert ask(agent, "/openstack")[0] == 200  # the timed-out connection is not reused


def test_slow_answers_do_not_hold_up_other_guests(agent: str) -> None:
    """Requests waiting on the API cost the agent nothing: 40 slow ones in flight
    (a thread per request would have run out of threads) do not delay a fast one."""
    results: list[int] = []
    slow = [threading.Thread(target=lambda: results.append(ask(agent, "/sleep/0.8")[0])) for _ in range(40)]
    for thread in slow:
        thread.start()
    time.sleep(0.2)
    began = time.monotonic()
    assert ask(agent, "/openstack")[0] == 200
    fast = time.monotonic() - began
    for thread in slow:
        thread.join(timeout=10)
    assert sorted(results) == [200] * 40, results
    assert fast < 0.5, fast


def test_head_keeps_the_length_and_sends_no_body(agent: str) -> None:
    status, headers, body = ask(agent, "/openstack", "HEAD")
    lowered = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and body == b""
    assert int(lowered["content-length"]) == len(ask(agent, "/openstack")[2]) + 1  # "HEAD" vs "GET"
    status, headers, body = ask(agent, "/openstack", "HEAD", X_Neutron_Network_ID="another-network")
    assert status == 404 and body == b"" and int({k.lower(): v for k, v in headers.items()}["content-length"]) > 0


def exchange(sock: str, request: bytes) -> bytes:
    """Send raw *request* bytes (ending with ``Connection: close``) on the agent's socket;
    the whole answer, read until the agent closes."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def test_header_names_are_matched_exactly(agent: str) -> None:
    """A guest's ``X_Neutron_Router_ID`` is not haproxy's ``X-Neutron-Router-ID``
    (a WSGI server would have given both the same HTTP_* key)."""
    request = (f"GET /openstack HTTP/1.1\r\nHost: x\r\nX-Neutron-Network-ID: {WEB_NET}\r\n"
               f"X_Neutron_Router_ID: router-1\r\nX_Forwarded_For: 10.9.9.9\r\n"
               f"X-Forwarded-For: {WEB_IP}\r\nConnection: close\r\n\r\n").encode()
    head, _, body = exchange(agent, request).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert {k.lower(): v for k, v in json.loads(body)["headers"]}["x-instance-id"] == WEB["uuid"]


def raw_request(sock: str, head: str, body: Iterable[bytes] = (), seconds: float = 20.0) -> bytes:
    """Send *head* and then *body* (from a thread, stopping when the agent stops
    reading) on the agent's socket; the whole answer, read until the agent closes."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(seconds)
        s.connect(sock)
        s.sendall(head.encode())

        def send() -> None:
            with contextlib.suppress(OSError):
                for piece in body:
                    s.sendall(piece)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and b"connection: close" not in answer.lower():
                    break  # the head and (short) body of an answer on a kept-alive connection
        s.shutdown(socket.SHUT_RDWR)
        sender.join(timeout=seconds)
        return answer


def identity_head(method: str, extra: str) -> str:
    return (f"{method} /openstack/latest/password HTTP/1.1\r\nHost: x\r\n"
            f"X-Neutron-Network-ID: {WEB_NET}\r\nX-Forwarded-For: {WEB_IP}\r\n{extra}\r\n")


BIG = 256 * 1024 * 1024  # what one guest might send; the agent must not hold it


def test_large_bodies_are_refused_unread(agent: str, env: dict[str, Any]) -> None:
    """A body above the API's largest (the password's 1020 bytes) gets 413 before
    it is read, with Content-Length or chunked: the worker's peak memory stays put."""
    status, _, out = ask(agent, "/openstack/latest/password", "POST", b"p" * 1021)
    assert status == 413, (status, out)
    status, _, out = ask(agent, "/openstack/latest/password", "POST", b"p" * 1020)
    assert status == 200 and json.loads(out)["body_len"] == 1020
    before = peak_rss_kib(env["agent_pid"])
    piece = bytes(1024 * 1024)
    answer = raw_request(agent, identity_head("POST", f"Content-Length: {BIG}\r\n"),
                         (piece for _ in range(BIG // len(piece))))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    answer = raw_request(agent, identity_head("POST", "Transfer-Encoding: chunked\r\n"),
                         (chunk for _ in range(BIG // len(piece))))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    small = b"%x\r\n" % 1021 + b"p" * 1021 + b"\r\n0\r\n\r\n"  # chunked, one byte too many
    assert raw_request(agent, identity_head("POST", "Transfer-Encoding: chunked\r\n"),
                       iter([small])).startswith(b"HTTP/1.1 413")
    fitting = b"%x\r\n" % 1000 + b"p" * 1000 + b"\r\n14\r\n" + b"q" * 20 + b"\r\n0\r\n\r\n"
    answer = raw_request(agent, identity_head("POST", "Transfer-Encoding: chunked\r\n"), iter([fitting]))
    assert answer.startswith(b"HTTP/1.1 200") and b'"body_len": 1020' in answer, answer
    grown = peak_rss_kib(env["agent_pid"]) - before
    assert grown < 64 * 1024, f"the agent's peak memory grew by {grown} KiB"
    assert ask(agent)[0] == 200


def test_malformed_chunked_body_is_400(agent: str, env: dict[str, Any]) -> None:
    """A broken chunked body is the guest's mistake: 400, and no traceback in the log."""
    log = env["dir"] / "main.log"
    offset = log.stat().st_size
    for body in (b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcdef\r\n0\r\n\r\n"):
        answer = raw_request(agent, identity_head("POST", "Transfer-Encoding: chunked\r\n"), iter([body]))
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    time.sleep(0.2)  # the log is written by another process
    with open(log, "rb") as f:
        f.seek(offset)
        assert b"Traceback" not in f.read()
    assert ask(agent)[0] == 200


@pytest.mark.parametrize("name", ["X-aws-ec2-metadata-token", "X-aws-ec2-metadata-token-ttl-seconds"])
def test_non_ascii_token_headers_are_refused_as_the_api_does(agent: str, name: str) -> None:
    """granian's RSGI headers leave out a value that is not text: the agent used
    to forward the request without it (no token), where the API answers 400."""
    request = (f"GET /openstack HTTP/1.1\r\nHost: x\r\nX-Neutron-Network-ID: {WEB_NET}\r\n"
               f"X-Forwarded-For: {WEB_IP}\r\n").encode() + name.encode() + b": \xe9t\xe9\r\nConnection: close\r\n\r\n"
    answer = exchange(agent, request)
    assert answer.startswith(b"HTTP/1.1 400"), answer


def test_api_unreachable_is_503(env: dict[str, Any]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc, sock = start_agent(env, f"http://127.0.0.1:{port}", "down")
    try:
        status, _, body = ask(sock)
        assert status == 503 and b"temporarily unavailable" in body
    finally:
        stop(proc)


def test_identity_rules(agent: str, env: dict[str, Any]) -> None:
    assert ask(agent, X_Neutron_Router_ID="router-1")[0] == 400  # both ids
    assert ask(agent, X_Neutron_Network_ID=None)[0] == 400  # neither
    assert ask(agent, X_Forwarded_For=None)[0] == 400
    assert ask(agent, X_Neutron_Network_ID=None, X_Neutron_Router_ID="router-1")[0] == 200
    assert ask(agent, X_Neutron_Network_ID=None, X_Neutron_Router_ID="router-unknown")[0] == 404
    # the last X-Forwarded-For entry (haproxy's) decides, whatever comes before it
    assert ask(agent, X_Forwarded_For=f"10.9.9.9, {WEB_IP}")[0] == 200
    status, _, body = ask(agent, X_Forwarded_For=f"{WEB_IP}, 10.9.9.9")
    assert status == 404 and b"not found on network" in body
    assert ask(agent, X_Forwarded_For=f"::ffff:{WEB_IP}")[0] == 200
    assert ask(agent, X_Neutron_Network_ID="another-network")[0] == 404
    # IPv6 link-local: the MAC in the EUI-64 interface id finds the port
    mac = bytes.fromhex(WEB_MAC.replace(":", ""))
    eui = bytes([mac[0] ^ 2]) + mac[1:3] + b"\xff\xfe" + mac[3:]
    link_local = ipaddress.IPv6Address(b"\xfe\x80" + b"\0" * 6 + eui)
    assert ask(agent, X_Forwarded_For=str(link_local))[0] == 200
    assert ask(agent, X_Forwarded_For="fe80::1")[0] == 404


def test_new_instance_is_found_at_once_despite_the_cache(agent: str, env: dict[str, Any]) -> None:
    """A negative answer is cached (TTL 600 s here) but the store's change log drops it."""
    ip = "10.0.0.77"
    assert ask(agent, X_Forwarded_For=ip)[0] == 404
    spec = json.loads(json.dumps(WEB))
    spec["uuid"] = "8d0c3a8e-6f0a-4c39-9f57-2b0c1d2e3f40"
    spec["nics"][0]["subnets"][0]["ip"] = ip
    spec["nics"][0]["mac"] = "fa:16:3e:11:22:44"
    spec["nics"][0]["port_id"] = "2f0c3a8e-6f0a-4c39-9f57-2b0c1d2e3f41"
    store = Store(data_dir=env["data"])
    store.add([(spec, instance_from_data(json.loads(json.dumps(spec)), "copy"))])
    store.close()
    status, _, body = ask(agent, X_Forwarded_For=ip)
    assert status == 200
    assert {k.lower(): v for k, v in json.loads(body)["headers"]}["x-instance-id"] == spec["uuid"]


def test_connections_to_the_api_are_reused(agent: str, upstream: Recorder) -> None:
    upstream.peers.clear()
    for _ in range(30):
        assert ask(agent)[0] == 200
    assert len(upstream.peers) == 30 and 1 <= len(set(upstream.peers)) <= 2, upstream.peers


class _HalfAnswer:
    """A raw API: answers GETs whole on a keep-alive connection (closing it after
    /then-close), but sends half an answer to a POST and closes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = next((int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                               if k.strip().lower() == "content-length"), 0)
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                self.seen.append(lines[0])
                if lines[0].startswith("POST"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"half")
                    return
                if "/chunked" in lines[0]:  # framings our API never sends
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
                    return
                if "/until-eof" in lines[0]:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}")
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
                if "/then-close" in lines[0]:  # kept alive, then closed while idle
                    return

    def close(self) -> None:
        self.sock.close()


def test_a_partly_answered_request_is_not_sent_again(env: dict[str, Any]) -> None:
    """Only a pooled connection closed before any answer byte is retried: once part of
    an answer arrived, the API may have acted on the request (a password POST)."""
    api = _HalfAnswer()
    proc, sock = start_agent(env, f"http://127.0.0.1:{api.port}", "half", "--timeout", "5")
    try:
        assert ask(sock, "/then-close")[0] == 200
        time.sleep(0.1)
        assert ask(sock)[0] == 200  # the idle connection the API closed is retried on a fresh one
        assert len(api.seen) == 2, api.seen
        status, _, body = ask(sock, "/openstack/latest/password", "POST", b"secret")
        assert status == 502 and b"invalid answer" in body
        posts = [line for line in api.seen if line.startswith("POST")]
        assert posts == ["POST /openstack/latest/password HTTP/1.1"], api.seen
    finally:
        stop(proc)
        api.close()


def test_an_answer_without_content_length_is_502(env: dict[str, Any]) -> None:
    """Our API always sends Content-Length; any other framing is an answer the agent cannot read."""
    api = _HalfAnswer()
    proc, sock = start_agent(env, f"http://127.0.0.1:{api.port}", "framing", "--timeout", "5")
    try:
        for path in ("/chunked", "/until-eof"):
            status, _, body = ask(sock, path)
            assert status == 502 and b"invalid answer" in body, (path, status, body)
        assert ask(sock)[0] == 200
    finally:
        stop(proc)
        api.close()


def test_socket_mode_and_backlog(agent: str, env: dict[str, Any], upstream: Recorder) -> None:
    assert stat.S_IMODE(os.stat(agent).st_mode) == 0o660
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    listed = netns.run("ss", "-xlH", "src", agent).stdout.split()
    assert int(listed[3]) == min(4096, somaxconn), listed
    proc, sock = start_agent(env, f"http://127.0.0.1:{upstream.server_port}", "mode",
                             "--socket-mode", "0600", "--backlog", "256")
    try:
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        assert int(netns.run("ss", "-xlH", "src", sock).stdout.split()[3]) == 256
    finally:
        stop(proc)
    assert not os.path.exists(sock)


def test_change_checks_are_throttled(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking the store "anything changed?" costs a thread hop and a system call: the
    agent asks at most once per store.POLL_INTERVAL, as the render cache does."""
    import asyncio

    import metadata_content.store as store_module
    from metadata_content.server.agent import PortIndex

    monkeypatch.setattr(store_module, "POLL_INTERVAL", 600.0)  # no second poll within the test
    store = Store(data_dir=env["data"])
    try:
        ports = PortIndex(store, ttl=5.0)
        polls = []
        poll = ports.watcher.poll
        monkeypatch.setattr(ports.watcher, "poll", lambda: polls.append(1) or poll())

        async def refresh(times: int) -> None:
            for _ in range(times):
                await ports.refresh()

        asyncio.run(refresh(5))
        assert len(polls) == 1
    finally:
        store.close()


def test_guest_address_parsing() -> None:
    assert guest_address("10.0.0.1") == ("10.0.0.1", None)
    assert guest_address("1.2.3.4, 10.0.0.1") == ("10.0.0.1", None)
    assert guest_address("::ffff:10.0.0.1") == ("10.0.0.1", None)
    assert guest_address("2001:db8::1") == ("2001:db8::1", None)
    assert guest_address("fe80::f816:3eff:fe11:2233") == ("fe80::f816:3eff:fe11:2233", "fa:16:3e:11:22:33")
    assert mac_from_link_local(ipaddress.IPv6Address("fe80::1")) is None


def test_haproxy_configuration() -> None:
    net = haproxy.render("/run/a.sock", network_id="net-1")
    assert "bind 169.254.169.254:80" in net
    assert "http-request del-header X-Neutron-Router-ID" in net
    assert "http-request set-header X-Neutron-Network-ID net-1" in net
    assert net.index("del-header") < net.index("set-header")
    for line in ("option forwardfor", "maxconn 1024", "retries 3", "timeout http-request    10s",
                 "timeout connect         30s", "timeout client          32s",
                 "timeout server          32s", "timeout http-keep-alive 30s", "server metadata /run/a.sock",
                 "log stdout"):
        assert line in net, line
    assert "/dev/log" not in net and "429" not in net
    assert "tcp-request connection reject if { src_conn_cur(per_source) ge 16 }" in net
    assert net.index("reject if") < net.index("track-sc1 src table per_source")  # the new one not counted
    assert "deny deny_status 413 if { req.hdr_val(content-length) gt 1020 }" in net
    assert "wait-for-body time 10s at-least 1021" in net and "{ req.body_size gt 1020 }" in net
    assert "maxconn 64" in haproxy.render("/run/a.sock", network_id="net-1", maxconn=64)
    assert haproxy.BODY_MAX == agentmod.BODY_MAX == PASSWORD_MAX  # what the API accepts
    rtr = haproxy.render("/run/a.sock", router_id="r-1", rate_limit=haproxy.RateLimit.parse("10/5"))
    assert "bind 0.0.0.0:9697" in rtr and "del-header X-Neutron-Network-ID" in rtr
    assert "set-header X-Neutron-Router-ID r-1" in rtr and "deny_status 429" in rtr and "gt 10" in rtr
    assert "stick-table type ipv6 " in rtr  # IPv4 and IPv6 guests alike
    for text in (net, rtr):
        path = Path(f"/tmp/cd-haproxy-check-{os.getpid()}.cfg")
        path.write_text(text)
        try:
            haproxy.check_config(path)
        finally:
            path.unlink()
    for bad in ("x", "0/5", "5/0", "5/"):
        with pytest.raises(ValueError):
            haproxy.RateLimit.parse(bad)
    with pytest.raises(ValueError):
        haproxy.render("/run/a.sock", network_id="n", router_id="r")
    with pytest.raises(ValueError):
        haproxy.render("/run/a.sock", network_id="n\n    server evil 1.2.3.4:80")


def test_dhcp_options_and_router_rules() -> None:
    opts = dnsmasq.dhcp_options("10.0.0.2", "10.0.0.1")
    assert "tag:meta,option:classless-static-route,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1" in opts
    assert "tag:meta,249,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1" in opts
    assert "tag:meta,option:router,10.0.0.1" in opts
    assert "tag:router,option:classless-static-route,169.254.169.254/32,10.0.0.1,0.0.0.0/0,10.0.0.1" in opts
    rules = netns.router_rules()
    assert "-j REDIRECT --to-ports 9697" in rules and "--dport 9697 -j DROP" in rules
    assert "--set-xmark 0x1/0xffff" in rules and "--mark 0x1/0xffff -j ACCEPT" in rules
