"""Issue 16 (hardening) for the API itself, over real sockets against `serve api`:
identity headers only by their exact names, slow bodies with a deadline,
bounded request targets and access-log lines, store faults."""
from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metadata_content.spec import read_spec
from tests.support.api_support import SAMPLES, prepare
from tests.support.apiserver import ApiServer, api_server, cli

LOCAL = "5e1f0c1a-7a53-4b8e-9b2c-0d1e2f3a4b5c"  # owns 127.0.0.1
TRUSTED = "127.0.0.2"  # the trusted proxy


def _local_spec(tmp: Path) -> Path:
    data = read_spec(SAMPLES / "webserver.yaml")
    data.update(uuid=LOCAL, hostname="local-1", name="local-1", nics=[{
        "name": "eth0", "mac": "fa:16:3e:00:00:5c", "network_id": "7e000000-0000-4000-8000-000000000001",
        "subnets": [{"cidr": "127.0.0.0/8", "ip": "127.0.0.1", "gateway": "127.0.0.254"}]}])
    path = tmp / "local-1.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("api-hardening")
    data, _secret = prepare(tmp, "webserver")
    cli("instances", "--data-dir", str(data), "add", str(_local_spec(tmp)))
    return tmp, data


@pytest.fixture(scope="module")
def api(env: tuple[Path, Path]) -> Iterator[ApiServer]:
    tmp, data = env
    with api_server(tmp, "--data-dir", str(data), "--mode", "direct", "--trusted-proxy", TRUSTED) as server:
        yield server


def raw(port: int, data: bytes, source: str = "127.0.0.1", timeout: float = 10) -> bytes:
    """Send *data* as is from *source*; the answer until the server closes (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0)) as s:
        s.sendall(data)
        chunks = []
        with contextlib.suppress(socket.timeout, ConnectionResetError):
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


# -- 1. identity headers only by their exact names ------------------------------


def test_underscore_forwarded_for_cannot_pick_another_instance(api: ApiServer) -> None:
    """A trusted proxy that forwards a guest's X_Forwarded_For after its own
    X-Forwarded-For: WSGI maps both to one key and the later won, so the guest
    at 10.0.0.11 read 127.0.0.1's instance. Now the request is refused."""
    request = (b"GET /latest/meta-data/hostname HTTP/1.1\r\nHost: 169.254.169.254\r\n"
               b"X-Forwarded-For: 10.0.0.11\r\nX_Forwarded_For: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = raw(api.port, request, source=TRUSTED)
    assert status_of(answer) == 400, answer
    assert b"local-1" not in answer
    # the exact name alone still works
    honest = raw(api.port, request.replace(b"X_Forwarded_For: 127.0.0.1\r\n", b""), source=TRUSTED)
    assert status_of(honest) == 200 and honest.endswith(b"web-1.novalocal")


@pytest.mark.parametrize("name", [
    "x_forwarded_for", "X-Forwarded_For", "X_Instance_ID", "x-instance_id", "X_Tenant_ID",
    "X_Instance_ID_Signature", "X-Instance-ID_Signature", "X_aws_ec2_metadata_token",
    "X-aws-ec2-metadata-token_ttl_seconds"])
def test_every_colliding_identity_spelling_is_refused(api: ApiServer, name: str) -> None:
    request = (f"PUT /latest/api/token HTTP/1.1\r\nHost: x\r\n{name}: 10\r\n"
               "X-aws-ec2-metadata-token-ttl-seconds: 60\r\nConnection: close\r\n\r\n").encode()
    if name.lower().replace("_", "-") == "x-aws-ec2-metadata-token-ttl-seconds":
        request = request.replace(b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\n", b"")
    answer = raw(api.port, request, source=TRUSTED)
    assert status_of(answer) == 400, answer
    get = raw(api.port, f"GET /latest/meta-data/hostname HTTP/1.1\r\nHost: x\r\n{name}: 1\r\n"
                        "Connection: close\r\n\r\n".encode())
    assert status_of(get) == 400, get


# -- 2. slow bodies ---------------------------------------------------------------


def test_slow_password_bodies_do_not_stall_other_guests(env: tuple[Path, Path]) -> None:
    """Two clients send a password POST's head and withhold (or trickle) the body;
    another guest's GET is still answered at once, and the slow ones get 408."""
    tmp, data = env
    with api_server(tmp, "--data-dir", str(data), "--mode", "direct", "--trusted-proxy", TRUSTED,
                    "--threads", "2", workers=1) as server:
        assert server.request("GET", "/latest/meta-data/hostname").status == 200  # warm the cache
        head = (b"POST /openstack/latest/password HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                b"Connection: close\r\n\r\n")
        slow = [socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(2)]
        try:
            slow[0].sendall(head)
            slow[1].sendall(head + b"x")  # a byte, then nothing
            time.sleep(0.5)
            for path in ("/latest/meta-data/hostname", "/openstack/latest/meta_data.json"):
                started = time.monotonic()
                answer = raw(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
                             timeout=3)
                assert status_of(answer) == 200, (path, answer)
                assert time.monotonic() - started < 2
            for sock in slow:
                started = time.monotonic()
                answer = b""
                with contextlib.suppress(socket.timeout, ConnectionResetError):
                    while chunk := sock.recv(65536):
                        answer += chunk
                assert status_of(answer) == 408, answer
                assert time.monotonic() - started < 15
        finally:
            for sock in slow:
                sock.close()


# -- 3. long targets ----------------------------------------------------------------


def test_long_paths_are_refused_and_logged_short(env: tuple[Path, Path]) -> None:
    """64 KB paths from an unidentified client: 414, and the access log grows by
    a short line per request, not by the path."""
    tmp, data = env
    with api_server(tmp, "--data-dir", str(data), "--mode", "direct", workers=1) as server:
        before = server.log.stat().st_size
        for i in range(40):
            path = f"/{i}/" + "a" * 65_000
            answer = raw(server.port, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(),
                         source="127.0.0.9")
            assert status_of(answer) == 414, answer[:200]
        ok = raw(server.port, b"GET /" + b"a" * 1000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 source="127.0.0.9")
        assert status_of(ok) == 404  # under the bound: an ordinary answer
        time.sleep(1.5)  # the access log is flushed every 0.5 s
        grown = server.log.stat().st_size - before
        assert 0 < grown < 41 * 600, grown


# -- 4. store faults ------------------------------------------------------------------


@contextlib.contextmanager
def write_lock(data: Path) -> Iterator[None]:
    """Hold the SQLite store's write lock (as a stuck writer would)."""
    import sqlite3

    conn = sqlite3.connect(data / "store.db", timeout=5, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
    finally:
        conn.close()


def test_held_write_lock_gives_503_and_cached_reads_do_not_wait(env: tuple[Path, Path]) -> None:
    import threading

    tmp, data = env
    with api_server(tmp, "--data-dir", str(data), "--mode", "direct", workers=1) as server:
        assert server.request("GET", "/latest/meta-data/hostname").status == 200
        with write_lock(data):
            posted: list[int] = []
            poster = threading.Thread(target=lambda: posted.append(server.request(
                "POST", "/openstack/latest/password", body=b"secret").status))
            poster.start()
            time.sleep(0.5)
            started = time.monotonic()
            assert server.request("GET", "/latest/meta-data/hostname").status == 200
            assert time.monotonic() - started < 2
            poster.join(timeout=25)
            assert posted == [503]
        assert "Traceback" not in server.log.read_text()


def test_instances_add_on_a_locked_store_prints_one_line(env: tuple[Path, Path], tmp_path: Path) -> None:
    _tmp, data = env
    spec = read_spec(SAMPLES / "webserver.yaml")
    spec.update(uuid="5e1f0c1a-7a53-4b8e-9b2c-0d1e2f3a4b77", hostname="other", name="other", nics=[])
    path = tmp_path / "other.json"
    path.write_text(json.dumps(spec))
    with write_lock(data):
        proc = cli("instances", "--data-dir", str(data), "add", str(path), check=False, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "store is unavailable" in proc.stderr


def test_corrupt_store_fails_healthz(tmp_path: Path) -> None:
    data, _secret = prepare(tmp_path, "webserver", "rich", "windows")
    with api_server(tmp_path, "--data-dir", str(data), "--mode", "direct", workers=1) as server:
        db = data / "store.db"
        size = db.stat().st_size
        with open(db, "r+b") as f:  # garbage over every page but the first
            f.seek(4096)
            f.write(b"\xa5" * (size - 4096))
        health = server.admin("/healthz")
        assert health.status == 503, health.body
        assert json.loads(health.body)["store"].startswith("error")


def test_serve_api_with_unreachable_store_exits_with_one_line(tmp_path: Path) -> None:
    from tests.support.apiserver import free_port

    proc = cli("serve", "api", "--mode", "direct", "--bind", f"127.0.0.1:{free_port()}",
               "--admin-bind", f"127.0.0.1:{free_port()}",
               "--store-url", "postgresql://meta:hunter2secret@127.0.0.1:1/configdrive", check=False, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "hunter2secret" not in proc.stderr
    assert "every local user" in proc.stderr  # the warning about a password on the command line
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and ("unavailable" in errors[0] or "cannot open" in errors[0]), proc.stderr


def test_store_url_help_says_a_password_there_is_visible() -> None:
    help_text = " ".join(cli("serve", "api", "--help").stdout.split())
    assert "visible to every local user" in help_text and "CONFIGDRIVE_STORE_URL" in help_text


# -- 5. non-ASCII identity headers: the API and the agent agree ---------------------


@pytest.mark.parametrize("name", ["X-aws-ec2-metadata-token", "X-aws-ec2-metadata-token-ttl-seconds",
                                  "X-Forwarded-For"])
def test_non_ascii_identity_header_is_refused_by_the_api(api: ApiServer, name: str) -> None:
    for method, path in (("GET", "/latest/meta-data/hostname"), ("PUT", "/latest/api/token")):
        ttl = "" if name.endswith("seconds") else "X-aws-ec2-metadata-token-ttl-seconds: 60\r\n"
        request = (f"{method} {path} HTTP/1.1\r\nHost: x\r\n{ttl}".encode()
                   + name.encode() + b": \xe9t\xe9\r\nConnection: close\r\n\r\n")
        answer = raw(api.port, request)
        assert status_of(answer) == 400, (method, answer)
