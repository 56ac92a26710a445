"""What one guest can cost the others on its network, through the real haproxy
and agent: a huge request body, and many half-sent request heads.

Both guests share the DHCP port's proxy (mode dhcp), as guests of one network do.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metadata_content.chain import lab as labmod
from metadata_content.chain import netns
from metadata_content.chain.haproxy import PER_SOURCE_CONNECTIONS
from metadata_content.chain.labstate import LabState
from tests.support.chainlab import peak_rss_kib, running_lab

META = "/openstack/latest/meta_data.json"
PASSWORD = "/openstack/latest/password"
BIG = 256 * 1024 * 1024


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    with running_lab(tmp_path_factory.mktemp("limits") / "lab", mode="dhcp") as state:
        yield state


def _upload(lab: LabState, guest: str, source: Path, chunked: bool) -> int:
    """POST *source* from *guest* with curl, streamed (Content-Length, or chunked
    from stdin); the status code, 0 if there was none."""
    cmd = ["ip", "netns", "exec", lab.guest(guest).ns, "curl", "-s", "-m", "30", "-o", "/dev/null",
           "-w", "%{http_code}", "-X", "POST", "-T", "-" if chunked else str(source),
           f"http://{netns.METADATA_V4}{PASSWORD}"]
    with open(source, "rb") as stdin:
        out = subprocess.run(cmd, stdin=stdin if chunked else subprocess.DEVNULL, capture_output=True,
                             timeout=40).stdout
    return int(out or 0)


def test_large_bodies_are_refused_by_the_proxy(lab: LabState, tmp_path: Path) -> None:
    """A 256 MB POST (with Content-Length or chunked) and a chunked one byte too
    large get 413 from haproxy: the agent never sees them and its memory stays put."""
    agent = lab.processes["agent"]
    access = lab.dir / "agent-access.log"
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(BIG)  # sparse: costs no memory or disk
    small = tmp_path / "small"
    small.write_bytes(b"p" * 1021)
    before_rss, before_log = peak_rss_kib(agent), access.stat().st_size
    assert _upload(lab, "g0", big, chunked=False) == 413
    assert _upload(lab, "g0", big, chunked=True) == 413
    assert _upload(lab, "g0", small, chunked=True) == 413
    grown = peak_rss_kib(agent) - before_rss
    assert grown < 64 * 1024, f"the agent's peak memory grew by {grown} KiB"
    assert labmod.fetch(lab, "g0", META)[0] == 200
    deadline = time.monotonic() + 5  # the agent flushes its access log every 0.5 s
    while META not in (logged := _since(access, before_log)):
        assert time.monotonic() < deadline, logged
        time.sleep(0.1)
    assert "POST" not in logged, f"a refused body reached the agent: {logged}"


def _since(path: Path, offset: int) -> str:
    with open(path, encoding="utf-8") as f:
        f.seek(offset)
        return f.read()


HOLDER = """
import socket, sys, time
count, hold = int(sys.argv[1]), float(sys.argv[2])
socks, deadline = [], time.monotonic() + 5
for _ in range(count):
    if time.monotonic() > deadline:
        break
    s = socket.socket()
    s.settimeout(0.5)
    try:
        s.connect(("169.254.169.254", 80))
        s.sendall(b"GET /openstack HTTP/1.1\\r\\nHost: 169.254.169.254\\r\\n")  # never finished
    except OSError:
        s.close()
        continue
    socks.append(s)
print("opened", len(socks), flush=True)
time.sleep(hold)
still = 0
for s in socks:
    try:
        still += s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) != b""
    except BlockingIOError:
        still += 1
    except OSError:
        pass
print("held", still, flush=True)
"""


def test_half_sent_heads_do_not_stall_another_guest(lab: LabState) -> None:
    """g0 opens 200 half-sent request heads (the proxy's slots are cut to 128 here,
    so that 200 would take them all); g1 is still answered at once, and g0 holds
    no more than its per-source share."""
    labmod.start_proxy(lab, "dhcp", maxconn=128)
    holder = subprocess.Popen(["ip", "netns", "exec", lab.guest("g0").ns, sys.executable, "-c", HOLDER,
                               "200", "6"], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout is not None
        opened = holder.stdout.readline()
        assert opened.startswith("opened"), opened
        status, _, seconds = labmod.fetch(lab, "g1", META, timeout=4)
        assert status == 200 and seconds < 2, (status, seconds, opened)
        held = holder.stdout.readline()
        assert held.startswith("held") and int(held.split()[1]) <= PER_SOURCE_CONNECTIONS, held
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, 9)
            holder.wait(timeout=10)
        labmod.start_proxy(lab, "dhcp")
    deadline = time.monotonic() + 10
    while labmod.fetch(lab, "g0", META, timeout=3)[0] != 200:  # g0 itself is served again
        assert time.monotonic() < deadline
