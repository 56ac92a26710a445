"""The metadata API as a real process for tests: `configdrive serve api` on
127.0.0.1 ports, waited for through /healthz, stopped by its own pid.

Also small HTTP helpers that send exactly what a test says (http.client, or
a raw socket when the request must be malformed).
"""
from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import CLI, ROOT, run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """:func:`run_cli`, checked by default and decoded: these tests compare text."""
    proc = run_cli(*args, check=check, env=env, timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ApiServer:
    """A running `configdrive serve api`; ``log`` is its stderr file."""

    proc: subprocess.Popen[bytes]
    port: int
    admin_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None, port: int | None = None, source: str | None = None) -> Response:
        """One request on a new connection, from loopback address *source* if given."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=30,
                                          source_address=(source, 0) if source else None)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Response(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
        finally:
            conn.close()

    def admin(self, path: str) -> Response:
        return self.request("GET", path, port=self.admin_port)

    def raw(self, data: bytes) -> bytes:
        """Send *data* as is; the whole answer (the server closes or times out)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(data)
            chunks = []
            with contextlib.suppress(socket.timeout):
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    if b"\r\n\r\n" in b"".join(chunks):
                        head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                        length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")]
                        if length and len(rest) >= length[0]:
                            break
            return b"".join(chunks)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only its workers
                self.proc.wait(timeout=10)


@contextlib.contextmanager
def api_server(tmp: Path, *args: str, env: dict[str, str] | None = None,
               workers: int = 2, timeout: float = 60, port: int | None = None,
               admin_port: int | None = None) -> Iterator[ApiServer]:
    """Start the API with *args* (plus loopback binds, free ports unless given); yield it once /healthz says ok."""
    port, admin_port = port or free_port(), admin_port or free_port()
    log = tmp / f"api-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CLI, "serve", "api", "--bind", f"127.0.0.1:{port}", "--admin-bind", f"127.0.0.1:{admin_port}",
             "--workers", str(workers), *args],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **(env or {})},
            start_new_session=True)
    server = ApiServer(proc, port, admin_port, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"API exited {proc.returncode}:\n{log.read_text()}")
            with contextlib.suppress(OSError):
                if server.admin("/healthz").status == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError(f"API not healthy after {timeout}s:\n{log.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
