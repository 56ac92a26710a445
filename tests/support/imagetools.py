"""Shared helpers for the image tests: a hand-made drive tree and tool runners.

The drive tree mimics what metadata_content renders for a config drive (every
OpenStack version, EC2, injected content, one file over 64 KiB, one empty file)
so the writers can be tested independently of the content model.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

UUID = "83679162-1378-4288-a2d4-70e13ec132aa"
HOSTNAME = "fixture.novalocal"
USER_DATA = b"#cloud-config\nhostname: fixture\n"

OPENSTACK_VERSIONS = ["2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30",
                      "2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14", "2025-04-04"]

NETWORK_DATA = {
    "links": [{"id": "tap1", "vif_id": "1f1f", "type": "ovs", "mtu": 1450,
               "ethernet_mac_address": "fa:16:3e:00:00:01"}],
    "networks": [{"id": "network0", "type": "ipv4_dhcp", "link": "tap1", "network_id": "n1"}],
    "services": [],
}


def _dump(obj: object) -> bytes:
    return json.dumps(obj).encode()


def fixture_files() -> dict[str, bytes]:
    """A config-drive-like tree: ~50 files, one >64 KiB, one empty."""
    big = bytes(range(256)) * 300  # 76,800 bytes, not a cluster multiple
    meta = {"uuid": UUID, "files": [{"path": "/etc/big.bin", "content_path": "/content/0000"},
                                    {"path": "/etc/empty", "content_path": "/content/0001"}],
            "admin_pass": "secret", "public_keys": {"k": "ssh-ed25519 AAAA k"},
            "hostname": HOSTNAME, "name": "fixture", "launch_index": 0,
            "availability_zone": "nova"}
    files: dict[str, bytes] = {}
    for i, version in enumerate([*OPENSTACK_VERSIONS, "latest"]):
        base = f"openstack/{version}/"
        files[base + "meta_data.json"] = _dump(meta)
        files[base + "user_data"] = USER_DATA
        if i >= 2:
            files[base + "vendor_data.json"] = b"{}"
        if i >= 3:
            files[base + "network_data.json"] = _dump(NETWORK_DATA)
        if i >= 5:
            files[base + "vendor_data2.json"] = b"{}"
    files["openstack/content/0000"] = big
    files["openstack/content/0001"] = b""
    ec2 = {"hostname": HOSTNAME, "instance-id": "i-00000001", "local-hostname": HOSTNAME}
    for version in ("2009-04-04", "latest"):
        files[f"ec2/{version}/meta-data.json"] = _dump(ec2)
        files[f"ec2/{version}/user-data"] = USER_DATA
    return files


def write_tree(files: Mapping[str, bytes], root: Path) -> Path:
    """Write a files mapping as a directory tree (for genisoimage, mcopy, diffs)."""
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    """Every regular file under root as {relative posix path: bytes}."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def tool(name: str) -> str:
    """Path of a required external tool; a missing tool fails the test by name."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not found:
        raise AssertionError(f"required tool {name!r} is not installed "
                             "(see scripts/debian-packages.txt)")
    return found


def run(*args: str, check: bool = True, env: Mapping[str, str] | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    """Run a tool (resolved with :func:`tool`), capturing text output."""
    proc = subprocess.run([tool(args[0]), *args[1:]], capture_output=True, text=True,
                          env=None if env is None else dict(env), **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def blkid(image: Path) -> dict[str, str]:
    """blkid's view of an image: {'LABEL': ..., 'TYPE': ...}."""
    out = run("blkid", "-p", "-o", "export", str(image)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def bsdtar_extract(image: Path, dest: Path) -> dict[str, bytes]:
    dest.mkdir(parents=True, exist_ok=True)
    run("bsdtar", "-x", "-f", str(image), "-C", str(dest))
    return read_tree(dest)


def sevenzip_extract(image: Path, dest: Path) -> dict[str, bytes]:
    """Extract any image 7z understands (ISO 9660, FAT)."""
    run("7z", "x", "-y", f"-o{dest}", str(image))
    return read_tree(dest)


def digests_in_time_zones(writer: str, epoch: int,
                          zones: tuple[str, ...] = ("UTC", "Asia/Kolkata", "America/St_Johns")) -> set[str]:
    """sha256 of ``configdrive.images.<module>.<function>`` (e.g. "iso.write_iso") writing
    :func:`fixture_files` at ``epoch``, once per time zone, each in a fresh process."""
    module, function = writer.rsplit(".", 1)
    code = ("from tests.support.imagetools import fixture_files; "
            f"from configdrive.images.{module} import {function}; import hashlib, io; b = io.BytesIO(); "
            f"{function}(fixture_files(), b, epoch={epoch}); print(hashlib.sha256(b.getvalue()).hexdigest())")
    root = Path(__file__).resolve().parents[2]
    return {subprocess.run([sys.executable, "-c", code], cwd=root, check=True, capture_output=True,
                           text=True, env={"TZ": tz, "PATH": "/usr/bin:/bin"}, timeout=120).stdout
            for tz in zones}


def mcopy_extract(image: Path, dest: Path) -> dict[str, bytes]:
    """Extract a FAT image with mtools, without MTOOLS_SKIP_CHECK."""
    dest.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "MTOOLS_SKIP_CHECK": "0", "HOME": str(dest.parent)}
    run("mcopy", "-s", "-n", "-i", str(image), "::/", str(dest), env=env)
    return read_tree(dest)


def mkfs_vfat_image(files: Mapping[str, bytes], image: Path, workdir: Path, *,
                    label: str = "config-2") -> Path:
    """The classic recipe: truncate + mkfs.vfat -n LABEL + mcopy -s (label: to test bad ones)."""
    src = write_tree(files, workdir / "src")
    with open(image, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    run("mkfs.vfat", "-n", label, str(image))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir)}
    run("mcopy", "-s", "-i", str(image), *[str(p) for p in sorted(src.iterdir())], "::/", env=env)
    return image


def nova_iso_image(files: Mapping[str, bytes], image: Path, workdir: Path, *,
                   label: str = "config-2") -> Path:
    """An ISO made with Nova's exact genisoimage flags (label: to test bad ones)."""
    src = write_tree(files, workdir / "src")
    run("genisoimage", "-o", str(image), "-ldots", "-allow-lowercase", "-allow-multidot",
        "-l", "-publisher", "configdrive tests", "-quiet", "-J", "-r", "-V", label,
        str(src))
    return image
