"""VFAT writer: independent readers (fsck.vfat, mtools, blkid, 7z) agree on every image."""
from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from configdrive.images.vfat import VfatError, geometry, write_vfat
from tests.support.imagetools import blkid, digests_in_time_zones, fixture_files, mcopy_extract, run, sevenzip_extract

EPOCH = 1700000000
MiB = 1024 * 1024


def _build(tmp_path: Path, files=None, **kwargs) -> Path:
    image = tmp_path / "drive.img"
    with open(image, "wb") as fh:
        write_vfat(fixture_files() if files is None else files, fh, epoch=EPOCH, **kwargs)
    return image


def _fsck_clean(image: Path) -> None:
    proc = run("fsck.vfat", "-n", str(image), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "differ" not in proc.stdout and "Auto-" not in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("vfat"))


def test_default_is_64mib_fat16_labelled_config2(image: Path) -> None:
    assert image.stat().st_size == 64 * MiB
    info = blkid(image)
    assert info["TYPE"] == "vfat" and info["LABEL"] == "config-2"
    assert info["VERSION"] == "FAT16" and info.get("LABEL_FATBOOT") == "config-2"


def test_fsck_vfat_finds_nothing(image: Path) -> None:
    _fsck_clean(image)


def test_mtools_read_it_without_skip_check(image: Path, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    listing = run("mdir", "-i", str(image), "::/openstack", env=env).stdout
    assert "2012-08-10" in listing and "latest" in listing
    assert mcopy_extract(image, tmp_path / "x") == fixture_files()


def test_7z_lists_and_extracts_every_file(image: Path, tmp_path: Path) -> None:
    listing = run("7z", "l", str(image)).stdout
    for name in fixture_files():
        assert name in listing
    assert sevenzip_extract(image, tmp_path / "x") == fixture_files()


def test_label_is_lowercase_in_boot_sector_and_root_directory(image: Path) -> None:
    raw = image.read_bytes()[:0x40000]
    assert raw[43:54] == b"config-2   "  # FAT12/16 BS_VolLab
    reserved, fats, fat_size = struct.unpack_from("<H", raw, 14)[0], raw[16], struct.unpack_from("<H", raw, 22)[0]
    root = (reserved + fats * fat_size) * 512
    assert raw[root:root + 11] == b"config-2   " and raw[root + 11] == 0x08


def test_geometry_is_valid(image: Path) -> None:
    spt, heads = struct.unpack_from("<HH", image.read_bytes(), 24)
    assert spt > 0 and heads > 0


@pytest.mark.parametrize("size,fat", [(512 * 1024, "FAT12"), (4 * MiB, "FAT12"), (16 * MiB, "FAT16"),
                                      (64 * MiB + 512, "FAT16"), (600 * MiB, "FAT32")])
def test_other_sizes_pick_the_right_fat(tmp_path: Path, size: int, fat: str) -> None:
    image = _build(tmp_path, size=size)
    assert image.stat().st_size == size
    assert blkid(image)["VERSION"] == fat
    _fsck_clean(image)
    assert mcopy_extract(image, tmp_path / "x") == fixture_files()


def test_geometry_rejects_bad_sizes() -> None:
    for size in (1000, 1024, 7 * 1024 * 1024 * 1024 * 1024):
        with pytest.raises(VfatError):
            geometry(size)


def test_files_that_do_not_fit_are_refused() -> None:
    with pytest.raises(VfatError, match="clusters"):
        write_vfat({"openstack/content/0000": bytes(600 * 1024)}, io.BytesIO(), size=512 * 1024)


def test_many_and_awkward_names(tmp_path: Path) -> None:
    files = {f"openstack/content/{i:04d}": bytes([i % 256]) * i for i in range(300)}
    files.update({"a/meta_data.json": b"1", "a/meta-data.json": b"2", "a/META_DATA.JSON": b"3",
                  "a/x.tar.gz": b"4", "a/.hidden": b"5", "a/UPPER": b"6", "a/lower": b"7"})
    image = _build(tmp_path, files=files)
    _fsck_clean(image)
    assert mcopy_extract(image, tmp_path / "x") == files


def test_same_epoch_same_bytes_in_any_time_zone(tmp_path: Path) -> None:
    assert len(digests_in_time_zones("vfat.write_vfat", EPOCH)) == 1


def test_without_epoch_the_clock_is_used() -> None:
    a, b = io.BytesIO(), io.BytesIO()
    write_vfat({"x": b"1"}, a, epoch=0)
    write_vfat({"x": b"1"}, b)
    assert a.getvalue() != b.getvalue()


def test_names_fat_cannot_hold_are_refused() -> None:
    with pytest.raises(VfatError):
        write_vfat({"d/" + "n" * 300: b"x"}, io.BytesIO())


def test_bad_paths_are_refused() -> None:
    for bad in ("/abs", "a/../b", "a//b", "", "a/"):
        with pytest.raises(VfatError):
            write_vfat({bad: b"x"}, io.BytesIO())
    with pytest.raises(VfatError):
        write_vfat({"a": b"1", "a/b": b"2"}, io.BytesIO())
