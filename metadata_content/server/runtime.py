"""What the API and the agent share at run time: the reply they send, the
refusal that becomes one, the access log and the logging set-up.

One of each, so both services answer, refuse and log in the same shape and a
reader learns them once.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, Any

TEXT = "text/plain; charset=utf-8"
LOGGED_PATH_MAX = 256  # characters of a path the access log keeps
UNKNOWN_ERROR = "An unknown error has occurred. Please try your request again."


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: what the API sends, what the agent received from it and relays.
    *instance_id* and *path_class* are for the access log and the metrics only."""

    status: int
    body: bytes = b""
    content_type: str = TEXT
    instance_id: str = "-"
    headers: tuple[tuple[str, str], ...] = ()
    path_class: str = "ec2"


def response_headers(reply: Reply, environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The API's response headers for *reply* (fast path and front alike)."""
    return [("Content-Type", reply.content_type), ("Content-Length", str(len(reply.body))),
            ("X-Openstack-Request-Id", environ["configdrive.request_id"]), *reply.headers]


class Refusal(Exception):
    """A request answered at once with HTTP *status* and *message* (identity not
    established, a bad header, the API away): raised deep down, answered at the top."""

    def __init__(self, status: int, message: str, log: str = ""):
        super().__init__(message)
        self.status = status
        self.message = message
        self.log = log  # extra detail for the log only (never a signature)

    def reply(self, instance_id: str = "-") -> Reply:
        return Reply(self.status, self.message.encode(), TEXT, instance_id, path_class="refused")


class AccessLog:
    """One line per request: request id, instance, method, path, status, latency
    (the agent adds where the request came from). Never headers, so never a
    signature, token or secret.

    Lines are block-buffered and flushed by a background thread every
    *interval* seconds: a flush per line (a system call) costs more than the
    rest of a cached answer. A crash may lose the last *interval* of lines.
    """

    def __init__(self, target: str, interval: float = 0.5):
        self.out: IO[str] | None
        if target in ("off", "none", ""):
            self.out = None
        elif target == "-":
            self.out = open(sys.stderr.fileno(), "w", buffering=1 << 16, encoding="utf-8",  # noqa: SIM115
                            errors="backslashreplace", closefd=False)
        else:
            self.out = open(target, "a", buffering=1 << 16, encoding="utf-8")  # noqa: SIM115 - lives with the worker
        self.interval = interval
        self._flusher: threading.Thread | None = None

    def write(self, rid: str, instance_id: str, method: str, path: str, status: int, seconds: float,
              source: str = "") -> None:
        """*source*: the agent's ``xff=... net=... router=...`` before the instance."""
        if self.out is not None:
            if len(path) > LOGGED_PATH_MAX:  # a line per request stays small whatever was asked
                path = f"{path[:LOGGED_PATH_MAX]}...({len(path)} chars)"
            self.out.write(f"{rid} {source}instance={instance_id} {method[:16]} {path!r} {status} "
                           f"{seconds * 1000:.3f}ms\n")
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_forever, name="access-log", daemon=True)
                self._flusher.start()
                atexit.register(self.flush)

    def flush(self) -> None:
        if self.out is not None:
            with contextlib.suppress(Exception):
                self.out.flush()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()


def setup_logging() -> None:
    """The log format of every worker process (the pid tells workers apart)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> None:
    """Have the kernel SIGKILL this worker when the server process that spawned it dies.

    Called first in each worker (the app factories). Without it a ``kill -9`` of
    the main process leaves its workers serving on the shared socket, beside the
    next generation. The death signal follows the spawning *thread*: granian
    spawns and respawns workers from its main thread. A spawned worker needs
    a while to get here, so the parent may already be gone: then there is no
    death to wait for and the worker exits at once. A no-op outside a
    multiprocessing child (an app built in process, as the tests do).
    """
    import ctypes
    import multiprocessing
    import os
    import signal

    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent.pid:  # the parent died before the signal was armed
        os._exit(1)
