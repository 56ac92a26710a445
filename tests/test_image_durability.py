"""Images survive a power cut whole or not at all: the image's bytes are on disk
before its name (fsync of the file before linkat/rename) and the name after it
(fsync of the directory). A power cut cannot be simulated here, so the real
`configdrive build` runs under strace and the order of those system calls is
checked: the kernel's calls, not a counter inside our own code.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, SAMPLES

CALLS = "fsync,fdatasync,linkat,link,rename,renameat,renameat2"
# `pid call(args) = result` as strace -f -y prints it (the pid column is padded);
# fds carry their path: 3</dir/#123 (deleted)>
LINE = re.compile(r"^\d+\s+(?P<call>\w+)\((?P<args>.*)\)\s+= (?P<result>-?\d+)")


def traced_build(tmp: Path, *args: str) -> list[tuple[str, str]]:
    """(call, arguments) of every successful CALLS of one build, in order."""
    if shutil.which("strace") is None:
        pytest.fail("strace is missing (scripts/debian-packages.txt)")
    log = tmp / "strace.txt"
    proc = subprocess.run(["strace", "-f", "-y", "-e", f"trace={CALLS}", "-o", str(log),
                           sys.executable, "-m", "configdrive", "build", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    calls = []
    for line in log.read_text().splitlines():
        m = LINE.match(line)
        if m and m["result"] != "-1" and ".probe." not in m["args"]:  # the O_TMPFILE probe: no image
            calls.append((m["call"], m["args"]))
    return calls


def _index(calls: list[tuple[str, str]], call: str, needle: str) -> int:
    found = [i for i, (c, a) in enumerate(calls) if c == call and needle in a]
    assert len(found) == 1, (call, needle, calls)
    return found[0]


def test_image_synced_before_its_name_and_the_directory_after(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "config-2.iso"
    calls = traced_build(tmp_path, "--instance", str(SAMPLES / "minimal.yaml"), "-o", str(dest))
    synced_file = _index(calls, "fsync", f"<{out}/#")  # the unnamed O_TMPFILE inode
    linked = _index(calls, "linkat", f'"{dest}"')
    synced_dir = _index(calls, "fsync", f"<{out}>")
    assert synced_file < linked < synced_dir, calls
    assert dest.stat().st_size > 0


def test_replaced_image_synced_before_the_rename_and_the_directory_after(tmp_path: Path) -> None:
    """--force: linked under a temporary name, renamed over the old image."""
    dest = tmp_path / "cd.img"
    dest.write_bytes(b"old image")
    calls = traced_build(tmp_path, "--force", "--format", "vfat", "--instance", str(SAMPLES / "minimal.yaml"),
                         "-o", str(dest))
    synced_file = _index(calls, "fsync", f"<{tmp_path}/#")
    linked = _index(calls, "linkat", ".cfgdrv-tmp")
    renamed = next(i for i, (c, a) in enumerate(calls) if c.startswith("rename") and f'"{dest}"' in a)
    synced_dir = _index(calls, "fsync", f"<{tmp_path}>")
    assert synced_file < linked < renamed < synced_dir, calls
    assert dest.read_bytes()[:9] != b"old image"
