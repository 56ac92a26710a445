"""`configdrive inspect` on hostile images: bounded in time, memory and output, never a traceback.

Every image here is made by a stock tool (genisoimage) or our writers, then byte-patched.
"""
from __future__ import annotations

import io
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from configdrive.images.inspect import NotADrive, extract, read_drive, validate
from configdrive.images.iso import write_iso
from configdrive.images.vfat import geometry, write_vfat
from tests.support.imagetools import UUID, fixture_files, run, write_tree

ROOT = Path(__file__).resolve().parent.parent
MEMORY_LIMIT = 1 << 30  # address space for one inspect run: an unbounded reader needs more


def _inspect(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with its address space capped, so hoarding memory fails."""
    return subprocess.run(["prlimit", f"--as={MEMORY_LIMIT}", sys.executable, "-m", "configdrive",
                           "inspect", *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def _refused(proc: subprocess.CompletedProcess, *words: str) -> None:
    """Exit 2, one line in our words, no traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


# ---------------------------------------------------------------- Rock Ridge relocation

def _relocated_iso(tmp_path: Path) -> bytearray:
    """genisoimage -r relocates directories deeper than 8 levels: a CL entry at the old place,
    the directory under rr_moved with a PL entry naming its old parent."""
    files = {"openstack/latest/meta_data.json": json.dumps({"uuid": UUID}).encode(),
             "a/b/c/d/e/f/g/h/i/j/k/deep.txt": b"deep\n"}
    src = write_tree(files, tmp_path / "src")
    image = tmp_path / "deep.iso"
    run("genisoimage", "-quiet", "-r", "-J", "-V", "config-2", "-o", str(image), str(src))
    return bytearray(image.read_bytes())


def _entry(data: bytearray, signature: bytes) -> int:
    found = [m.start() for m in re.finditer(re.escape(signature + b"\x0c\x01"), data)]
    assert len(found) == 1, (signature, found)
    return found[0]


def _point(data: bytearray, at: int, block: int) -> None:
    """Set the both-endian block number of a CL or PL entry."""
    struct.pack_into("<I", data, at + 4, block)
    struct.pack_into(">I", data, at + 8, block)


@pytest.mark.parametrize("how", ["cl-to-ancestor", "pl-to-itself"])
def test_a_rock_ridge_relocation_loop_is_refused_in_bounded_time(tmp_path: Path, how: str) -> None:
    data = _relocated_iso(tmp_path)
    intact = tmp_path / "intact.iso"
    intact.write_bytes(data)
    assert "a/b/c/d/e/f/g/h/i/j/k/deep.txt" in read_drive(intact).files
    cl, pl = _entry(data, b"CL"), _entry(data, b"PL")
    if how == "cl-to-ancestor":  # the relocated directory becomes the one holding the CL entry
        _point(data, cl, cl // 2048)
    else:  # the relocated directory's parent becomes itself: pycdlib's walk spins on this
        _point(data, pl, struct.unpack_from("<I", data, cl + 4)[0])
    image = tmp_path / f"{how}.iso"
    image.write_bytes(data)
    _refused(_inspect(str(image), timeout=30), "unreadable ISO 9660 image", "a/b/c/d/e/f/g/h")


# ---------------------------------------------------------------- shared extents, cross-links

def _shared_extent_iso(tmp_path: Path, how: str) -> Path:
    """Files that share one data extent: genisoimage's own hard links, or 400 records
    patched to all point at one 4 MiB extent (1.6 GB if each were read)."""
    files = {"openstack/latest/meta_data.json": json.dumps({"uuid": UUID}).encode()}
    src = write_tree(files, tmp_path / "src")
    big = random.Random(1).randbytes(1 << 20 if how == "hardlinks" else 4 << 20)
    (src / "big").write_bytes(big)
    count = 40 if how == "hardlinks" else 400
    for i in range(count):
        if how == "hardlinks":
            os.link(src / "big", src / f"link{i:03}")
        else:
            (src / f"small{i:03}").write_bytes(b"small file %03d\n" % i)
    image = tmp_path / f"{how}.iso"
    run("genisoimage", "-quiet", "-r", "-J", "-V", "config-2", "-o", str(image), str(src))
    if how == "crafted":
        data = bytearray(image.read_bytes())
        big_block = data.index(big[:4096]) // 2048
        target = (struct.pack("<I", big_block) + struct.pack(">I", big_block)
                  + struct.pack("<I", len(big)) + struct.pack(">I", len(big)))
        for i in range(count):
            block = data.index(b"small file %03d\n" % i) // 2048
            both = struct.pack("<I", block) + struct.pack(">I", block)
            for at in [m.start() for m in re.finditer(re.escape(both), data)]:
                data[at:at + 16] = target
        assert data.count(target) > count  # the Rock Ridge and Joliet records of each small file
        image.write_bytes(data)
    return image


@pytest.mark.parametrize("how", ["hardlinks", "crafted"])
def test_records_sharing_one_extent_do_not_multiply_memory_or_output(tmp_path: Path, how: str) -> None:
    image = _shared_extent_iso(tmp_path, how)
    out = tmp_path / "x"
    _refused(_inspect(str(image), "--extract", str(out)), "unreadable ISO 9660 image", "4 times")
    assert _tree_size(out) <= 4 * image.stat().st_size


def test_a_few_hard_links_are_still_read_and_extracted(tmp_path: Path) -> None:
    """genisoimage shares one extent among hard links: within the budget that is a fine drive."""
    src = write_tree(fixture_files(), tmp_path / "src")
    for i in range(2):
        os.link(src / "openstack/content/0000", src / f"openstack/content/link{i}")
    image = tmp_path / "links.iso"
    run("genisoimage", "-quiet", "-r", "-J", "-V", "config-2", "-o", str(image), str(src))
    out = tmp_path / "x"
    proc = _inspect(str(image), "--extract", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "openstack/content/link1").read_bytes() == fixture_files()["openstack/content/0000"]
    assert _tree_size(out) <= 4 * image.stat().st_size


def _fat(files: dict[str, bytes], size: int = 1 << 20) -> bytearray:
    buf = io.BytesIO()
    write_vfat(files, buf, size=size, epoch=0)
    return bytearray(buf.getvalue())


def _root_entry(data: bytearray, name83: bytes) -> int:
    geo = geometry(len(data))
    root = (geo.reserved + geo.num_fats * geo.fat_sectors) * 512
    return next(root + 32 * i for i in range(geo.root_entries) if data[root + 32 * i:][:11] == name83)


def test_cross_linked_fat_clusters_are_refused(tmp_path: Path) -> None:
    """Two files whose chains share clusters: each would be read (and extracted) in full."""
    blob = random.Random(2).randbytes(200_000)
    data = _fat({"a.bin": blob, "b.bin": blob[::-1], "openstack/latest/meta_data.json": b"{}"})
    first = struct.unpack_from("<H", data, _root_entry(data, b"A~1     BIN") + 26)[0]
    struct.pack_into("<H", data, _root_entry(data, b"B~1     BIN") + 26, first)
    image = tmp_path / "cross.img"
    image.write_bytes(data)
    out = tmp_path / "x"
    _refused(_inspect(str(image), "--extract", str(out)), "unreadable FAT image", "cross-linked")
    assert _tree_size(out) == 0


@pytest.mark.parametrize("field", ["fat16", "fat32"])
def test_a_huge_fat_size_field_is_refused_before_allocating(tmp_path: Path, field: str) -> None:
    data = _fat({"openstack/latest/meta_data.json": b"{}"})
    if field == "fat16":
        struct.pack_into("<H", data, 22, 0xFFFF)
    else:  # FATSz16 zero makes the FAT32 field count
        struct.pack_into("<H", data, 22, 0)
        struct.pack_into("<I", data, 36, 0xFFFFFFF0)
    image = tmp_path / f"{field}.img"
    image.write_bytes(data)
    _refused(_inspect(str(image), timeout=30), "unreadable FAT image", "do not fit")


# ---------------------------------------------------------------- deep JSON

def test_deeply_nested_json_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    files = fixture_files()
    files["openstack/latest/meta_data.json"] = b"[" * 100_000 + b"]" * 100_000
    # deep enough for the schema check to recurse, shallow enough for json to parse
    files["openstack/latest/network_data.json"] = b'{"links": ' + b"[" * 900 + b"]" * 900 + b"}"
    image = tmp_path / "deep.iso"
    with open(image, "wb") as fh:
        write_iso(files, fh, epoch=0)
    proc = _inspect(str(image), "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stdout
    problems = json.loads(proc.stdout)["problems"]
    for name in ("meta_data.json", "network_data.json"):
        assert f"openstack/latest/{name}: JSON nested more than 100 levels deep" in problems


# ---------------------------------------------------------------- mutation fuzzing

class _TooSlow(Exception):
    pass


@contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    def expired(_signum: int, _frame: object) -> None:
        raise _TooSlow
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _small_files() -> dict[str, bytes]:
    meta = {"uuid": UUID, "hostname": "h", "files": [{"path": "/etc/x", "content_path": "/content/0000"}]}
    return {"openstack/latest/meta_data.json": json.dumps(meta).encode(),
            "openstack/2018-08-27/meta_data.json": json.dumps(meta).encode(),
            "openstack/latest/network_data.json": b'{"links": [], "networks": [], "services": []}',
            "openstack/latest/user_data": b"#cloud-config\n", "openstack/content/0000": b"x" * 5000,
            "ec2/latest/meta-data.json": b"{}"}


def _mutants(image: bytes, structures: range, seed: int, count: int) -> Iterator[bytes]:
    """count copies of image, each with 1 to 8 random bytes changed, mostly in its structures."""
    rng = random.Random(seed)
    for _ in range(count):
        data = bytearray(image)
        for _ in range(rng.randint(1, 8)):
            at = rng.choice(structures) if rng.random() < 0.9 else rng.randrange(len(data))
            data[at] = rng.choice((0, 1, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        yield bytes(data)


@pytest.mark.parametrize("kind", ["iso", "vfat"])
def test_mutated_images_never_end_in_a_traceback(tmp_path: Path, kind: str) -> None:
    """300 mutants from a fixed seed, each read, validated and extracted in-process within
    2 s: only NotADrive (exit 2) or a report (exit 0/1), whatever the bytes."""
    files = _small_files()
    if kind == "iso":
        buf = io.BytesIO()
        write_iso(files, buf, epoch=0)
        image = buf.getvalue()
        structures = range(16 * 2048, min(len(image), 40 * 2048))  # descriptors, path tables, directories
    else:
        image = bytes(_fat(files, size=256 * 1024))
        geo = geometry(len(image))
        structures = range(0, geo.cluster_offset(2) + 8 * geo.cluster_bytes)  # boot, FATs, root, first dirs
    target = tmp_path / f"mutant.{kind}"
    outcomes = {"refused": 0, "read": 0}
    for number, mutant in enumerate(_mutants(image, structures, seed=16, count=300)):
        target.write_bytes(mutant)
        try:
            with _deadline(2):
                report = validate(read_drive(target))
        except NotADrive:
            outcomes["refused"] += 1
            continue
        except _TooSlow:
            pytest.fail(f"mutant {number} took more than 2 s")
        outcomes["read"] += 1
        try:  # as the CLI does: a name extract cannot write is exit 2
            with _deadline(2):
                extract(report.drive, tmp_path / f"x{number}")
        except (OSError, ValueError):
            pass
    assert outcomes["refused"] and outcomes["read"], outcomes
