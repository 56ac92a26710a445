"""ISO writer: independent readers (isoinfo, bsdtar, 7z, xorriso, blkid) agree on every image."""
from __future__ import annotations

import hashlib
import io
import re
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from configdrive.images.iso import IsoError, write_iso
from tests.support.imagetools import (
    blkid,
    bsdtar_extract,
    digests_in_time_zones,
    fixture_files,
    read_tree,
    run,
    sevenzip_extract,
)

EPOCH = 1700000000


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("iso") / "drive.iso"
    with open(path, "wb") as fh:
        write_iso(fixture_files(), fh, epoch=EPOCH)
    return path


def _listing(image: Path, *flags: str) -> dict[str, str]:
    """isoinfo -l output as {path: listing line} (dot entries skipped)."""
    out = run("isoinfo", *flags, "-l", "-i", str(image)).stdout
    entries, directory = {}, ""
    for line in out.splitlines():
        if line.startswith("Directory listing of "):
            directory = line[len("Directory listing of "):].strip()
        elif line.strip():
            name = line.split("]", 1)[1].strip()
            if name not in (".", ".."):
                entries[directory + name] = line
    return entries


def test_blkid_sees_iso9660_config2(image: Path) -> None:
    info = blkid(image)
    assert info["TYPE"] == "iso9660" and info["LABEL"] == "config-2"


def test_volume_id_and_extensions(image: Path) -> None:
    out = run("isoinfo", "-d", "-i", str(image)).stdout
    assert "Volume id: config-2\n" in out
    assert "Joliet" in out and "Rock Ridge" in out


def test_size_is_a_4k_multiple(image: Path) -> None:
    assert image.stat().st_size % 4096 == 0
    blocks = int(re.search(r"Volume size is: (\d+)", run("isoinfo", "-d", "-i", str(image)).stdout)[1])
    assert blocks * 2048 == image.stat().st_size


def test_rock_ridge_names_and_modes_as_genisoimage_r(image: Path) -> None:
    entries = _listing(image, "-R")
    files = fixture_files()
    assert {p.lstrip("/") for p, line in entries.items() if not line.startswith("d")} == set(files)
    for _path, line in entries.items():
        mode, _links, uid, gid = line.split()[:4]
        assert (uid, gid) == ("0", "0")
        assert mode == ("dr-xr-xr-x" if line.startswith("d") else "-r--r--r--"), line
    assert "/openstack/2013-04-04/meta_data.json" in entries


def test_joliet_names_are_exact(image: Path) -> None:
    entries = _listing(image, "-J")
    assert {p.lstrip("/") for p, line in entries.items() if not line.startswith("d")} == set(fixture_files())


def test_primary_names_are_valid_iso9660(image: Path) -> None:
    entries = _listing(image)
    assert len([p for p, line in entries.items() if not line.startswith("d")]) == len(fixture_files())
    for path in entries:
        for part in path.strip("/").split("/"):
            assert re.fullmatch(r"[A-Z0-9_]{1,31}(\.[A-Z0-9_]{0,8};1)?", part), part


def test_bsdtar_extracts_the_exact_files(image: Path, tmp_path: Path) -> None:
    assert bsdtar_extract(image, tmp_path / "x") == fixture_files()


def test_7z_lists_every_file(image: Path, tmp_path: Path) -> None:
    listing = run("7z", "l", str(image)).stdout
    for name in fixture_files():
        assert name in listing
    assert sevenzip_extract(image, tmp_path / "x") == fixture_files()


def test_xorriso_reads_it(image: Path, tmp_path: Path) -> None:
    out = run("xorriso", "-indev", str(image), "-find", "/", "-type", "f").stdout
    assert {line.strip("'").lstrip("/") for line in out.splitlines() if line.startswith("'")} \
        == set(fixture_files())
    dest = tmp_path / "x"
    run("xorriso", "-osirrox", "on", "-indev", str(image), "-extract", "/", str(dest))
    assert read_tree(dest) == fixture_files()


def test_colliding_names_are_disambiguated(tmp_path: Path) -> None:
    files = {"d/a-b.json": b"1", "d/a_b.json": b"2", "d/A_B.JSON": b"3", "d/noext": b"4",
             "d/many.dots.in.name": b"5", "d/" + "x" * 60: b"6", "e-f/g": b"7", "e_f/g": b"8"}
    path = tmp_path / "c.iso"
    with open(path, "wb") as fh:
        write_iso(files, fh, epoch=EPOCH)
    assert bsdtar_extract(path, tmp_path / "x") == files
    primary = [p for p, line in _listing(path).items() if not line.startswith("d")]
    assert len(primary) == len(set(primary)) == len(files)


def test_bad_paths_are_refused() -> None:
    for bad in ("/abs", "a/../b", "a//b", ""):
        with pytest.raises(IsoError):
            write_iso({bad: b"x"}, io.BytesIO())
    with pytest.raises(IsoError):
        write_iso({"a": b"1", "a/b": b"2"}, io.BytesIO())


def test_same_epoch_same_bytes_in_any_time_zone() -> None:
    assert len(digests_in_time_zones("iso.write_iso", EPOCH)) == 1


def test_dates_come_from_the_epoch(image: Path) -> None:
    data = image.read_bytes()
    assert data[16 * 2048 + 813:16 * 2048 + 829] == b"2023111422132000"  # creation
    assert data[16 * 2048 + 830:16 * 2048 + 846] == b"2023111422132000"  # modification
    listing = run("isoinfo", "-R", "-l", "-i", str(image)).stdout
    assert "Nov 14 2023" in listing and "2026" not in listing


def test_without_epoch_the_clock_is_used() -> None:
    a, b = io.BytesIO(), io.BytesIO()
    write_iso({"x": b"1"}, a, epoch=0)
    write_iso({"x": b"1"}, b)
    assert hashlib.sha256(a.getvalue()).digest() != hashlib.sha256(b.getvalue()).digest()


def _bytes(files, writer: str | None = None, epoch: int = EPOCH) -> bytes:
    out = io.BytesIO()
    write_iso(files, out, epoch=epoch, writer=writer)
    return out.getvalue()


def _rich_drive() -> dict[str, bytes]:
    from configdrive.images.build import render_drive_files
    return render_drive_files(Path(__file__).resolve().parent.parent / "samples" / "rich.yaml")


def test_direct_writer_gives_pycdlibs_bytes() -> None:
    """configdrive/images/iso9660.py against pycdlib, the reference, on the drives we build."""
    colliding = {"d/a-b.json": b"1", "d/a_b.json": b"2", "d/A_B.JSON": b"3", "d/noext": b"",
                 "d/many.dots.in.name": b"5", "d/" + "x" * 60: b"6", "e-f/g": b"7", "e_f/g": b"8"}
    big_dirs = {f"d{i:03d}{'x' * 25}/f": bytes(i) for i in range(300)}  # multi-block directories
    for files in (fixture_files(), _rich_drive(), colliding, big_dirs, {"x": b""}):
        for epoch in (0, EPOCH):
            assert _bytes(files, "direct", epoch) == _bytes(files, "pycdlib", epoch)


names = st.text(string.ascii_letters + string.digits + "-_.~ :", min_size=1, max_size=64).filter(
    lambda n: n not in (".", ".."))


@st.composite
def trees(draw) -> dict[str, bytes]:
    dirs = [""]
    for _ in range(draw(st.integers(0, 25))):
        parent = draw(st.sampled_from(dirs))
        if parent.count("/") < 5:
            dirs.append(f"{parent}/{draw(names)}" if parent else draw(names))
    files = {}
    for _ in range(draw(st.integers(1, 40))):
        where = draw(st.sampled_from(dirs))
        path = f"{where}/{draw(names)}" if where else draw(names)
        size = draw(st.sampled_from([0, 1, 2047, 2048, 2049, 5000]))
        files[path] = bytes([len(path) % 256]) * size
    return {p: d for p, d in files.items() if not any(q.startswith(p + "/") for q in files)}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_direct_writer_gives_pycdlibs_bytes_for_any_plain_tree(files: dict[str, bytes]) -> None:
    from configdrive.images import iso, iso9660
    try:
        layout = iso._layout(files)
    except IsoError:
        return
    if iso9660.supported(*layout):
        assert _bytes(files, "direct") == _bytes(files, "pycdlib")


def test_other_trees_go_to_pycdlib() -> None:
    from configdrive.images import iso, iso9660
    deep = {"/".join("abcdefgh") + "/f": b"1"}  # needs Rock Ridge relocation
    for files in (deep, {"caf\u00e9": b"1"}, {"d/" + "n" * 65: b"1"}):
        assert not iso9660.supported(*iso._layout(files))
    assert _bytes(deep) == _bytes(deep, "pycdlib") and _bytes(deep) != _bytes(deep, "direct")


def test_concurrent_builds_stay_correct() -> None:
    from concurrent.futures import ThreadPoolExecutor
    variants = [{name: data + bytes([i]) * i for name, data in fixture_files().items()} for i in range(8)]
    expected = [_bytes(files) for files in variants]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(_bytes, variants * 3))
    assert got == expected * 3


def test_names_no_reader_can_hold_are_refused() -> None:
    with pytest.raises(IsoError):
        write_iso({"d/" + "n" * 200: b"x"}, io.BytesIO())
