"""Run the API in production: granian workers (RSGI front around the WSGI app,
see front.py) plus an admin server.

granian was measured against gunicorn's sync worker (bench/api.py): with the
same Flask app and 2 workers it answers several times more requests per
second at a fraction of the p99, because connection handling and HTTP
parsing stay in Rust. Workers are spawned (not forked), so no database
connection or lock crosses a fork.

The admin server (``/healthz``, ``/metrics``) is a small stdlib HTTP server
in the parent process, on its own address, which the metadata chain (and so
the guests) cannot reach.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from metadata_content.server.config import RESOLVED_ENV, ApiConfig, split_bind
from metadata_content.server.metrics import METRICS_DIR_ENV, collect, render


def _port_open(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    try:
        with socket.create_connection((target, port), timeout=1):
            return True
    except OSError:
        return False


class StartError(RuntimeError):
    """The API cannot start; the message is the one line an operator reads (exit 1)."""


def refuse_shared_address(bind: str, option: str) -> None:
    """Refuse to start on an address some process already listens on.

    granian's workers bind with SO_REUSEPORT, which the kernel lets any process
    of the same user share: a second API, or the orphaned workers of a killed
    one, would take turns with ours on every connection (an old generation
    answering with its old settings). A probe bound without SO_REUSEPORT fails
    on any listener there; SO_REUSEADDR keeps it blind to TIME_WAIT leftovers.
    A stranger arriving between this probe and granian's bind is not caught:
    the window is the start-up of one process.
    """
    host, port = split_bind(bind)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartError(_in_use(bind, option, exc)) from None


def _in_use(bind: str, option: str, exc: OSError) -> str:
    return (f"cannot listen on {bind} ({option}): {exc.strerror or exc}; another process (another API, "
            f"or the workers of one still running) holds it. Stop it, or give this API its own "
            f"--bind and --admin-bind")


def admin_server(config: ApiConfig, metrics_dir: str) -> ThreadingHTTPServer:
    """The /healthz and /metrics server (started by the caller in a thread)."""
    from metadata_content.store import Store

    host, port = split_bind(config.admin_bind)
    api_host, api_port = split_bind(config.bind)
    state: dict[str, Any] = {}

    def store() -> Store:
        if "store" not in state:
            state["store"] = Store(config.store_url, config.data_dir)
        return state["store"]

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                status, body, ctype = self._health()
            elif path == "/metrics":
                try:
                    count: int | None = store().count()
                except Exception:
                    count = None
                status, body, ctype = 200, render(collect(metrics_dir), count), "text/plain; version=0.0.4"
            else:
                status, body, ctype = 404, b"Not Found\n", "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _health(self) -> tuple[int, bytes, str]:
            checks: dict[str, str] = {}
            try:
                store().ping()
                checks["store"] = "ok"
            except Exception as exc:
                checks["store"] = f"error: {type(exc).__name__}"
            checks["api"] = "ok" if _port_open(api_host, api_port) else "not listening"
            ok = all(v == "ok" for v in checks.values())
            return (200 if ok else 503), json.dumps({"status": "ok" if ok else "fail", **checks}).encode(), \
                "application/json"

        def log_message(self, *args: Any) -> None:
            pass

    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    try:
        return Server((host, port), Handler)
    except OSError as exc:
        raise StartError(_in_use(config.admin_bind, "--admin-bind", exc)) from None


def serve_api(config: ApiConfig) -> None:
    """Run until SIGTERM/SIGINT. *config* must have passed ``check()``.

    Both addresses are claimed before any worker exists, so a taken one
    (:class:`StartError`) leaves nothing running.
    """
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, RuntimeModes

    refuse_shared_address(config.bind, "--bind")
    metrics_dir = tempfile.mkdtemp(prefix="configdrive-metrics-")
    try:
        admin = admin_server(config, metrics_dir)
    except StartError:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    os.environ[RESOLVED_ENV] = config.to_json()
    os.environ[METRICS_DIR_ENV] = metrics_dir
    multiprocessing.set_start_method("spawn", force=True)
    threading.Thread(target=admin.serve_forever, name="admin", daemon=True).start()
    host, port = split_bind(config.bind)
    try:
        # RSGI, not WSGI: see metadata_content/server/front.py (raw header names, body deadlines)
        Granian("metadata_content.server.api:rsgi_from_env", address=host, port=port,
                interface=Interfaces.RSGI, workers=config.workers,
                websockets=False, factory=True, log_access=False, backlog=2048,
                # one Rust I/O thread per worker: measured lower p99 on 2 cores
                runtime_mode=RuntimeModes.st, http=HTTPModes.http1,
                respawn_failed_workers=True,  # a crashed worker is replaced, the API stays up
                ).serve()
    finally:
        admin.shutdown()
        shutil.rmtree(metrics_dir, ignore_errors=True)
