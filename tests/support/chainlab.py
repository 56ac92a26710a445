"""The lab the chain tests share: tool check, start, and proof that `down` cleaned up."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from metadata_content.chain import lab as labmod
from metadata_content.chain import netns, processes
from metadata_content.chain.labstate import LabState

TOOLS = ("ip", "haproxy", "dnsmasq", "iptables-restore", "iptables", "busybox", "curl", "ss", "setpriv")


def require_chain_tools() -> None:
    """Fail (never skip) when the machine cannot run the chain."""
    if os.geteuid() != 0:
        pytest.fail("the chain tests need root (network namespaces, iptables)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools: {', '.join(missing)} (scripts/install-debian-packages.sh)")


def assert_gone(state: LabState) -> None:
    """Nothing the lab made is left: namespaces (and so every link: all live in them),
    processes (by the lab's marker, and by the pids it recorded), files."""
    left_ns = [ns for ns in state.namespaces if netns.ns_exists(ns)]
    assert not left_ns, f"namespaces left behind: {left_ns}"
    assert not labmod.lab_pids(state.dir), "processes left behind"
    left = {name: pid for name, pid in state.processes.items() if processes.alive(pid)}
    assert not left, f"recorded processes left behind: {left}"
    assert not state.dir.exists()


@contextmanager
def running_lab(lab_dir: Path, mode: str = "both", **options: Any) -> Iterator[LabState]:
    """A two-guest lab, torn down after: in mode both g0 goes via the DHCP port and
    g1 via the router; in mode dhcp both share the DHCP port's proxy."""
    require_chain_tools()
    state = labmod.up(lab_dir, guests=2, mode=mode, **options)
    try:
        yield state
    finally:
        labmod.down(lab_dir)
    assert_gone(state)


def descendants(pid: int) -> list[int]:
    """*pid* and every process below it (the agent's granian workers are its children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            with suppress(OSError):
                todo += [int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
    return found


def peak_rss_kib(pid: int) -> int:
    """The largest peak resident size (VmHWM, KiB) among *pid* and its descendants:
    a body read whole shows there even after it was freed."""
    peak = 0
    for each in descendants(pid):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak
