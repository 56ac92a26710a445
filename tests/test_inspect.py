"""`configdrive inspect`: reads any config drive back and says what a guest would miss."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from configdrive.images.inspect import read_drive, validate
from configdrive.images.iso import write_iso
from configdrive.images.vfat import write_vfat
from tests.support.imagetools import HOSTNAME, UUID, fixture_files, mkfs_vfat_image, nova_iso_image, read_tree

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "configdrive", "inspect"]


def _inspect(*args: str):
    import subprocess
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def _iso(tmp_path: Path, files, name="d.iso", **kwargs) -> Path:
    path = tmp_path / name
    with open(path, "wb") as fh:
        write_iso(files, fh, epoch=0, **kwargs)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("inspect")
    files = fixture_files()
    ours_vfat = tmp / "ours.img"
    with open(ours_vfat, "wb") as fh:
        write_vfat(files, fh, epoch=0)
    return {"ours-iso": _iso(tmp, files, "ours.iso"), "ours-vfat": ours_vfat,
            "nova-iso": nova_iso_image(files, tmp / "nova.iso", tmp / "n"),
            "mkfs-vfat": mkfs_vfat_image(files, tmp / "mkfs.img", tmp / "m")}


@pytest.mark.parametrize("kind", ["ours-iso", "ours-vfat", "nova-iso", "mkfs-vfat"])
def test_reads_every_kind_of_drive_exactly(images: dict[str, Path], kind: str) -> None:
    drive = read_drive(images[kind])
    assert drive.files == fixture_files()
    assert drive.label == "config-2"
    report = validate(drive)
    assert report.valid, report.problems
    assert (report.uuid, report.hostname) == (UUID, HOSTNAME)
    assert report.openstack_versions[-1] == "latest" and "2018-08-27" in report.openstack_versions
    assert report.ec2_versions == ["2009-04-04", "latest"]


@pytest.mark.parametrize("kind", ["nova-iso", "mkfs-vfat"])
def test_cli_json_and_extract(images: dict[str, Path], kind: str, tmp_path: Path) -> None:
    proc = _inspect(str(images[kind]), "--json", "--extract", str(tmp_path / "x"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["valid"] and report["label"] == "config-2" and report["uuid"] == UUID
    assert report["format"] == ("iso9660" if kind.endswith("iso") else "vfat")
    assert read_tree(tmp_path / "x") == fixture_files()


def test_cli_text_report(images: dict[str, Path]) -> None:
    proc = _inspect(str(images["ours-iso"]))
    assert proc.returncode == 0
    assert "label:      config-2" in proc.stdout and UUID in proc.stdout and "valid:      yes" in proc.stdout


def test_a_non_image_is_bad_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not an image" * 5000)
    for target in (junk, tmp_path / "missing.iso"):
        proc = _inspect(str(target))
        assert proc.returncode == 2
        assert "Traceback" not in proc.stderr and str(target) in proc.stderr


def _problems(tmp_path: Path, files, **kwargs) -> list[str]:
    proc = _inspect(str(_iso(tmp_path, files, **kwargs)), "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["problems"]


def test_incomplete_dated_directory_is_invalid(tmp_path: Path) -> None:
    files = fixture_files()
    del files["openstack/2018-08-27/network_data.json"]
    assert any("2018-08-27" in p and "network_data.json" in p for p in _problems(tmp_path, files))


def test_wrong_label_is_invalid(tmp_path: Path) -> None:
    assert any("label" in p for p in _problems(tmp_path, fixture_files(), volume_id="CONFIG-X"))


def test_missing_uuid_and_bad_json_are_invalid(tmp_path: Path) -> None:
    files = fixture_files()
    files["openstack/latest/meta_data.json"] = b'{"hostname": "x"}'
    files["openstack/2012-08-10/meta_data.json"] = b"{not json"
    problems = _problems(tmp_path, files)
    assert any("no uuid" in p for p in problems)
    assert any("2012-08-10/meta_data.json: invalid JSON" in p for p in problems)


def test_malformed_files_list_is_invalid(tmp_path: Path) -> None:
    for injected in (b'["a", 3]', b'{"a": 1}', b'"x"'):
        files = fixture_files()
        files["openstack/latest/meta_data.json"] = b'{"uuid": "%s", "files": %s}' % (UUID.encode(), injected)
        assert any("files is not a list" in p for p in _problems(tmp_path, files)), injected


def test_missing_required_file_and_content_is_invalid(tmp_path: Path) -> None:
    files = fixture_files()
    del files["openstack/latest/meta_data.json"]
    assert any("latest/meta_data.json is missing" in p for p in _problems(tmp_path, files))
    files = fixture_files()
    del files["openstack/content/0000"]
    assert any("content/0000" in p for p in _problems(tmp_path, files))


def test_network_data_is_checked_against_the_schema(tmp_path: Path) -> None:
    schema = ROOT / "metadata_content" / "schemas" / "network_data.schema.json"
    assert schema.is_file(), "metadata_content/schemas/network_data.schema.json is missing"
    files = fixture_files()
    files["openstack/latest/network_data.json"] = b'{"links": "nope", "networks": [], "services": []}'
    assert any("latest/network_data.json" in p for p in _problems(tmp_path, files))


def test_upper_case_fat_label_is_reported(tmp_path: Path) -> None:
    image = mkfs_vfat_image(fixture_files(), tmp_path / "upper.img", tmp_path, label="CONFIG-2")
    report = validate(read_drive(image))
    assert not report.valid and any("CONFIG-2" in p for p in report.problems)


def _looped_fat(tmp_path: Path, how: str) -> Path:
    """Our FAT16 image with a directory made cyclic: its own FAT entry, or a child pointing back."""
    import io
    import struct

    from configdrive.images.vfat import geometry
    buf = io.BytesIO()
    write_vfat(fixture_files(), buf, epoch=0)
    data = bytearray(buf.getvalue())
    geo = geometry(len(data))
    root = (geo.reserved + geo.num_fats * geo.fat_sectors) * 512
    entries = [root + 32 * i for i in range(geo.root_entries)]
    first = next(e for e in entries if data[e + 11] == 0x10)  # first subdirectory
    cluster = struct.unpack_from("<H", data, first + 26)[0]
    if how == "chain":
        for k in range(geo.num_fats):
            struct.pack_into("<H", data, (geo.reserved + k * geo.fat_sectors) * 512 + 2 * cluster, cluster)
    else:
        start = geo.cluster_offset(cluster)
        child = next(start + 32 * i for i in range(2, geo.cluster_bytes // 32)
                     if data[start + 32 * i + 11] == 0x10)
        struct.pack_into("<H", data, child + 26, cluster)
    image = tmp_path / f"{how}.img"
    image.write_bytes(data)
    return image


@pytest.mark.parametrize("how", ["chain", "ancestor"])
def test_a_looped_fat_is_refused_not_followed_forever(tmp_path: Path, how: str) -> None:
    proc = _inspect(str(_looped_fat(tmp_path, how)))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "unreadable FAT image" in proc.stderr and "Traceback" not in proc.stderr


def test_dangling_network_link_is_invalid(tmp_path: Path) -> None:
    """inspect checks network_data.json as the spec checker does, references included."""
    files = fixture_files()
    doc = json.loads(files["openstack/latest/network_data.json"])
    doc["networks"][0]["link"] = "no-such-link"
    files["openstack/latest/network_data.json"] = json.dumps(doc).encode()
    problems = _problems(tmp_path, files)
    assert "openstack/latest/network_data.json: networks[0].link: no link has id 'no-such-link'" in problems


def _layout(versions: list[str], names: list[str]) -> dict[str, bytes]:
    """The same files in every openstack/<version>/, as openstacksdk's (Ironic's) builder writes them."""
    meta = json.dumps({"uuid": UUID, "hostname": HOSTNAME, "name": "other"}).encode()
    network = json.dumps({"links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:12:34:56"}],
                          "networks": [{"id": "n0", "type": "ipv4_dhcp", "link": "eth0"}]}).encode()
    content = {"meta_data.json": meta, "network_data.json": network, "vendor_data2.json": b'{"static": {}}',
               "user_data": b"#cloud-config\n"}
    return {f"openstack/{version}/{name}": content[name] for version in versions for name in names}


def test_drives_of_other_builders_are_valid(tmp_path: Path) -> None:
    """Ironic/openstacksdk (2012-08-10 and latest, the same files in each, no vendor_data.json),
    cloud-localds-style (latest only, on FAT) and Nova (every version, each with its own files):
    cloud-init reads everything on them, so inspect accepts them (exit 0, no problem)."""
    ironic = _layout(["2012-08-10", "latest"], ["meta_data.json", "network_data.json", "vendor_data2.json",
                                                "user_data"])
    localds = _layout(["latest"], ["meta_data.json", "user_data"])
    drives = {"ironic": nova_iso_image(ironic, tmp_path / "ironic.iso", tmp_path / "i"),
              "localds": mkfs_vfat_image(localds, tmp_path / "localds.img", tmp_path / "l"),
              "nova": nova_iso_image(fixture_files(), tmp_path / "nova.iso", tmp_path / "n")}
    for name, image in drives.items():
        proc = _inspect(str(image), "--json")
        report = json.loads(proc.stdout)
        assert proc.returncode == 0 and report["problems"] == [] and report["warnings"] == [], (name, report)


def test_a_file_the_picked_directory_lacks_is_a_loss(tmp_path: Path) -> None:
    """network_data.json in latest but not in 2012-08-10: cloud-init picks 2012-08-10 (the newest
    dated version it knows on this drive) and never sees the network configuration."""
    files = {**_layout(["2012-08-10", "latest"], ["meta_data.json"]),
             **_layout(["latest"], ["network_data.json"])}
    assert _problems(tmp_path, files) == [
        "openstack/2012-08-10/ has no network_data.json, which openstack/latest/ has: cloud-init reads "
        "2012-08-10 (the newest dated version it knows) and would lose it"]
