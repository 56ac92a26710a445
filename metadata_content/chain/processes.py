"""Stopping the processes the services start (haproxy, dnsmasq, agents, APIs).

Every service records its pid and is stopped by that pid; this is the one
place that knows how: SIGTERM, a bounded wait, then SIGKILL.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path


def alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie (reaping it if it is our child)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_pids(pids: Iterable[int], wait: float = 5.0) -> None:
    """SIGTERM every pid, SIGKILL those still there after *wait* seconds; return when all are gone."""
    left = list(pids)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            left = [p for p in left if alive(p)]
            if left:
                time.sleep(0.02)
        if not left:
            return
