"""A real Linux guest (qemu TCG, Debian's kernel) finds, mounts and reads our config drives.

Host readers parse images in user space; only the guest kernel's own isofs and
vfat drivers prove that a guest will see `config-2` and the exact file names.
Each boot takes ~6-10 s, so there are three: our ISO as an IDE cdrom, our VFAT
as a virtio disk (all files of the rich sample compared byte for byte), and a
wrongly labelled drive made with Nova's genisoimage recipe.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from tests.support import guestboot
from tests.support.guestboot import GuestBootError, NoConfigDriveFound, boot_with_drive, parse_console
from tests.support.imagetools import nova_iso_image, run

ROOT = Path(__file__).resolve().parent.parent

# The drive content used with Nova's own recipe (genisoimage).
SMALL_TREE: dict[str, bytes] = {
    "openstack/latest/meta_data.json": json.dumps(
        {"uuid": "83679162-1378-4288-a2d4-70e13ec132aa", "hostname": "guest-boot.example.org",
         "name": "guest-boot", "launch_index": 0, "availability_zone": "nova",
         "meta": {"note": "ünïcode ✓"}}, ensure_ascii=False).encode(),
    "ec2/latest/meta-data.json": json.dumps({"instance-id": "i-00000001", "hostname": "guest-boot"}).encode(),
}


def build_with_nova_recipe(tmp: Path, *, label: str = "config-2") -> tuple[Path, dict[str, bytes]]:
    """Nova's genisoimage command on SMALL_TREE: checks the harness independently of our writer."""
    return nova_iso_image(SMALL_TREE, tmp / "drive.iso", tmp, label=label), SMALL_TREE


def build_with_configdrive(fmt: str, tmp: Path) -> tuple[Path, dict[str, bytes]]:
    """`configdrive build` on the rich sample; expected bytes from the content model."""
    from metadata_content import MetadataTree, load_instance

    spec = ROOT / "samples/rich.yaml"
    out = tmp / f"drive.{fmt}"
    run(sys.executable, "-m", "configdrive", "build", "--instance", str(spec), "--format", fmt,
        "-o", str(out))
    return out, MetadataTree(load_instance(spec), delivery="drive").drive_files()


# Which writer the boot tests exercise (build_with_nova_recipe checks the harness itself).
build_drive = build_with_configdrive


def _assert_guest_read(result: guestboot.BootResult, expected: dict[str, bytes], fstype: str) -> None:
    assert result.fstype == fstype, result.console
    listed = {p.removeprefix("./") for p in result.listing}
    assert set(expected) <= listed, f"guest listing lacks {sorted(set(expected) - listed)}"
    assert not result.missing
    assert set(result.files) == set(expected), f"guest printed {sorted(result.files)}"
    for name, body in expected.items():
        assert result.files[name] == body, f"{name} differs inside the guest"
        assert result.sha256[name] == hashlib.sha256(body).hexdigest(), name


@pytest.mark.boot
def test_iso_as_ide_cdrom(tmp_path: Path) -> None:
    image, expected = build_drive("iso9660", tmp_path)
    result = boot_with_drive(image, interface="cdrom", files=("*",), fs="iso9660")
    assert result.device == "/dev/sr0"
    _assert_guest_read(result, expected, "iso9660")


@pytest.mark.boot
def test_vfat_as_virtio_disk(tmp_path: Path) -> None:
    image, expected = build_drive("vfat", tmp_path)
    result = boot_with_drive(image, interface="virtio", files=("*",), fs="vfat")
    assert result.device == "/dev/vda"
    _assert_guest_read(result, expected, "vfat")


@pytest.mark.boot
def test_wrong_label_reports_no_config_drive(tmp_path: Path) -> None:
    image, _ = build_with_nova_recipe(tmp_path, label="not-cfg")
    with pytest.raises(NoConfigDriveFound, match="no config drive found"):
        boot_with_drive(image, interface="cdrom", wait=3, timeout=90)


def test_console_parser_rejects_corrupt_transport() -> None:
    """No boot: the parser must notice truncated output and bytes altered on the serial line."""
    good = "@@MOUNTED /dev/sr0 iso9660@@\r\n@@FILE a@@\r\naGk=\r\n@@END@@\r\n@@SHA256 a {}@@\r\n@@DONE@@\r\n"
    digest = hashlib.sha256(b"hi").hexdigest()
    assert parse_console(good.format(digest)).files == {"a": b"hi"}
    with pytest.raises(GuestBootError, match="sha256"):
        parse_console(good.format("0" * 64))
    with pytest.raises(GuestBootError, match="incomplete"):
        parse_console(good.format(digest).replace("@@DONE@@", ""))
