"""Stopping the processes the services start (haproxy, dnsmasq, agents, APIs).

Every service records its pid and is stopped by that pid; this is the one
place that knows how: SIGTERM, a bounded wait, then SIGKILL.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterable


def alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie (reaping it if it is our child)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
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
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            left = [p for p in left if alive(p)]
            if left:
                time.sleep(0.02)
        if not left:
            return
