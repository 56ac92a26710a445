"""Issue 16 (hardening), spec input and secrets at rest: real files, real CLI
processes, and permissions checked as another local user (nobody) sees them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from metadata_content.chain.dnsmasq import DhcpHost, host_line
from metadata_content.chain.netns import NetError
from tests.conftest import ROOT, run_cli

MINIMAL = ROOT / "samples" / "minimal.yaml"


def nobody_can(path: Path, how: int) -> bool:
    """os.access(path, how) in a process running as nobody:nogroup without groups."""
    proc = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
                           "-c", "import os, sys; print(os.access(sys.argv[1], int(sys.argv[2])))",
                           str(path), str(how)], capture_output=True, text=True, check=True)
    return proc.stdout.strip() == "True"


@pytest.fixture
def shared() -> Iterator[Path]:
    """A 0755 directory under /var/tmp: every user reaches what we put in it."""
    path = Path(tempfile.mkdtemp(prefix="cfgdrive-perm-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_store_and_data_dir_are_private(shared: Path) -> None:
    control = shared / "control"
    control.write_text("x")
    control.chmod(0o644)
    assert nobody_can(control, os.R_OK)  # the check itself can see a readable file
    data = shared / "data"
    run_cli("instances", "--data-dir", str(data), "add", str(MINIMAL), check=True)
    run_cli("instances", "--data-dir", str(data), "list", check=True)
    files = [p for p in data.iterdir() if p.name.startswith("store.db")]
    assert files
    for path in files:
        assert path.stat().st_mode & 0o077 == 0, oct(path.stat().st_mode)
        assert not nobody_can(path, os.R_OK)
    assert not nobody_can(data, os.R_OK)
    # an existing world-readable store is tightened when opened
    (data / "store.db").chmod(0o644)
    data.chmod(0o755)
    run_cli("instances", "--data-dir", str(data), "list", check=True)
    assert not nobody_can(data / "store.db", os.R_OK) and not nobody_can(data, os.R_OK)


def test_attach_image_not_readable_by_others(shared: Path) -> None:
    pytest.importorskip("libvirt")
    images = shared / "images"
    proc = run_cli("attach", "--domain", "test", "--connect", "test:///default",
                   "--instance", str(ROOT / "samples" / "rich.yaml"), "--images-dir", str(images), check=True)
    assert b"attached" in proc.stdout or b"refreshed" in proc.stdout
    (image,) = images.iterdir()
    assert image.stat().st_mode & 0o777 in (0o640, 0o600)
    assert not nobody_can(image, os.R_OK)
    assert not nobody_can(images, os.R_OK)
    assert nobody_can(images, os.X_OK)  # libvirt's qemu user must reach its image


def _spec(folder: Path, **extra: object) -> Path:
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"uuid": "dc7c8e7d-a420-45fd-bc9f-ae0a16177f73", "hostname": "web", **extra}))
    return spec


@pytest.mark.parametrize("command", [["validate"], ["build"], ["tree", "--instance"]])
def test_referenced_file_outside_the_spec_dir_is_refused(tmp_path: Path, command: list[str]) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root:$6$hash\n")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "link").symlink_to(secret)
    for ref, field in (("../secret", "user_data.file"), ("link", "user_data.file")):
        spec = _spec(specs, user_data={"file": ref})
        out = str(tmp_path / "out.iso")
        args = [*command, str(spec)] if command[0] != "build" else ["build", "--instance", str(spec), "-o", out]
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert field.encode() in proc.stderr and b"outside the spec's directory" in proc.stderr
        assert b"root:" not in proc.stdout
    # the operator may allow the directory explicitly
    spec = _spec(specs, user_data={"file": "../secret"})
    proc = run_cli("validate", str(spec), env={"CONFIGDRIVE_ALLOW_FILES_OUTSIDE": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr


def test_referenced_file_must_be_a_bounded_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * 10241)
    (tmp_path / "bigkey").write_bytes(b"x" * 20000)
    cases = [({"user_data": {"file": "fifo"}}, "user_data.file", b"not a regular file"),
             ({"files": [{"path": "/etc/motd", "file": "big"}]}, "files[0].file", b"over the limit of 10240"),
             ({"keys": [{"name": "k", "file": "bigkey"}]}, "keys[0].file", b"over the limit of 16384")]
    for extra, field, reason in cases:
        proc = run_cli("validate", str(_spec(tmp_path, **extra)), timeout=30)
        assert proc.returncode == 2, proc.stderr
        assert field.encode() in proc.stderr and reason in proc.stderr, proc.stderr
    # /dev/zero, allowed explicitly, is still no regular file (and never read whole)
    proc = run_cli("validate", str(_spec(tmp_path, user_data={"file": "/dev/zero"})), timeout=30,
                   env={"CONFIGDRIVE_ALLOW_FILES_OUTSIDE": "/dev"})
    assert proc.returncode == 2 and b"not a regular file" in proc.stderr, proc.stderr


def test_dnsmasq_hosts_line_never_reads_as_syntax() -> None:
    # "ignore" as a name would make dnsmasq refuse the lease; a number is a lease time
    for name in ("ignore", "infinite", "3600", "12h"):
        line = host_line(DhcpHost("fa:16:3e:00:00:01", "10.0.0.5", name))
        assert line == "fa:16:3e:00:00:01,set:meta,10.0.0.5"
    assert host_line(DhcpHost("fa:16:3e:00:00:01", "10.0.0.5", "web-1")).endswith(",web-1")
    for bad in (DhcpHost("fa:16:3e:00:00:01", "10.0.0.5", "web\nfa:16:3e:00:00:02,10.0.0.6"),
                DhcpHost("fa:16:3e:00:00:01\n", "10.0.0.5", "web"),
                DhcpHost("fa:16:3e:00:00:01", "10.0.0.5", "web,ignore")):
        with pytest.raises(NetError):
            host_line(bad)


@pytest.mark.parametrize("extra", [{"hostname": "web\ud800"}, {"name": "x\udfff"},
                                   {"meta": {"k\ud800": "v"}}])
def test_lone_surrogates_are_refused_by_every_command(tmp_path: Path, extra: dict[str, str]) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"uuid": "dc7c8e7d-a420-45fd-bc9f-ae0a16177f73", "hostname": "web", **extra}))
    for args in (["validate", str(spec)], ["render", "--instance", str(spec), "/openstack/latest/meta_data.json"],
                 ["build", "--instance", str(spec), "-o", str(tmp_path / "o.iso")],
                 ["instances", "--data-dir", str(tmp_path / "d"), "add", str(spec)]):
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert b"lone UTF-16 surrogate" in proc.stderr and b"Traceback" not in proc.stderr, proc.stderr


def test_a_full_disk_is_one_line(tmp_path: Path) -> None:
    """`instances add` on a file system with no room left: one line, exit 1, no traceback.
    The data directory is a 96 KiB tmpfs in a mount namespace of the command's own."""
    data = tmp_path / "data"
    data.mkdir()
    specs = [str(ROOT / "samples" / f"{name}.yaml") for name in ("rich", "webserver", "windows", "minimal")]
    script = (f'mount -t tmpfs -o size=96k tmpfs "{data}" && exec "{sys.executable}" -m configdrive '
              f'instances --data-dir "{data}" add {" ".join(specs)}')
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "disk is full" in lines[0] and lines[0].startswith("error: "), proc.stderr
