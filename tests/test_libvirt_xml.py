"""Our domain edits, checked on the XML that real libvirt returns.

Domains are defined on the ``test:///default`` driver (in-process, no daemon;
it has no attachDeviceFlags, so this is the persistent-definition path that
every driver shares). Assertions read ``XMLDesc`` after libvirt has parsed,
validated and re-serialised our edit: bus, target, read-only, the added
virtio-scsi controller, no clash with existing disks, one drive after any
number of attaches, none after detach.
"""
from __future__ import annotations

import os
import stat
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import libvirt  # libvirt-python, in the test extra: a missing module fails, never skips
import pytest

from hypervisor import PlacementError, attach, devices
from hypervisor.connection import open_connection
from metadata_content import load_instance
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = load_instance(ROOT / "samples" / "minimal.yaml")

PC_DISKS = """
<disk type='file' device='disk'><source file='/var/tmp/root.qcow2'/><target dev='hda' bus='ide'/></disk>
<disk type='file' device='cdrom'><source file='/var/tmp/install.iso'/><target dev='hdc' bus='ide'/><readonly/></disk>
"""
Q35_DISKS = """
<disk type='file' device='disk'><source file='/var/tmp/root.qcow2'/><target dev='sda' bus='sata'/></disk>
<disk type='file' device='disk'><source file='/var/tmp/data.qcow2'/><target dev='vda' bus='virtio'/></disk>
"""
VIRT_DISKS = """
<disk type='file' device='disk'><source file='/var/tmp/root.qcow2'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='disk'><source file='/var/tmp/data.qcow2'/><target dev='sda' bus='usb'/></disk>
"""
METADATA = """<metadata><nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
<nova:name>keep-me</nova:name></nova:instance></metadata>"""


@pytest.fixture(scope="module")
def conn() -> Iterator[libvirt.virConnect]:
    c = open_connection("test:///default")
    yield c
    c.close()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return attach.prepare_images_dir(tmp_path / "images")


@pytest.fixture
def define(conn: libvirt.virConnect) -> Iterator:
    made: list = []

    def make(arch: str, machine: str, disks: str = "", extra: str = "", metadata: str = "") -> object:
        name = f"cfg-{machine}-{uuidlib.uuid4().hex[:8]}"
        xml = (f"<domain type='test'><name>{name}</name><memory>65536</memory>{metadata}"
               f"<os><type arch='{arch}' machine='{machine}'>hvm</type></os>"
               f"<devices>{disks}{extra}</devices></domain>")
        dom = conn.defineXML(xml)
        made.append(dom)
        return dom

    yield make
    for dom in made:
        if dom.isActive():
            dom.destroy()
        dom.undefine()


def _xml(dom: object) -> ET.Element:
    return ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))  # type: ignore[attr-defined]


def _ours(root: ET.Element) -> list[ET.Element]:
    return [d for d in root.iterfind("devices/disk")
            if d.find("alias") is not None and d.find("alias").get("name") == devices.ALIAS]


def _addr(disk: ET.Element, bus: str) -> tuple[str, ...]:
    a = disk.find("address")
    assert a is not None and a.get("type") == "drive"
    return (bus, *(a.get(k) for k in ("controller", "bus", "target", "unit")))


def _check_no_clash(root: ET.Element) -> None:
    targets = [d.find("target").get("dev") for d in root.iterfind("devices/disk")]
    assert len(targets) == len(set(targets)), targets
    addrs = [_addr(d, d.find("target").get("bus")) for d in root.iterfind("devices/disk")
             if d.find("address") is not None and d.find("address").get("type") == "drive"]
    assert len(addrs) == len(set(addrs)), addrs


CASES = [
    # arch, machine, existing disks, format, bus, device, target prefix
    ("x86_64", "pc-i440fx-7.2", PC_DISKS, "iso9660", "ide", "cdrom", "hd"),
    ("x86_64", "pc", "", "iso9660", "ide", "cdrom", "hd"),
    ("x86_64", "q35", Q35_DISKS, "iso9660", "sata", "cdrom", "sd"),
    ("x86_64", "pc-q35-7.2", "", "iso9660", "sata", "cdrom", "sd"),
    ("aarch64", "virt", VIRT_DISKS, "iso9660", "scsi", "cdrom", "sd"),
    ("x86_64", "q35", Q35_DISKS, "vfat", "scsi", "disk", "sd"),
    ("x86_64", "pc-i440fx-7.2", PC_DISKS, "vfat", "scsi", "disk", "sd"),
    ("aarch64", "virt", VIRT_DISKS, "vfat", "scsi", "disk", "sd"),
]


@pytest.mark.parametrize("arch,machine,disks,fmt,bus,device,prefix", CASES)
def test_attach_places_drive(define, images: Path, arch: str, machine: str, disks: str,
                             fmt: str, bus: str, device: str, prefix: str) -> None:
    dom = define(arch, machine, disks)
    before = {d.find("target").get("dev") for d in _xml(dom).iterfind("devices/disk")}
    outcome = attach.attach(dom, INSTANCE, fmt, images)
    root = _xml(dom)
    [disk] = _ours(root)
    target = disk.find("target")
    assert (target.get("bus"), disk.get("device")) == (bus, device)
    assert target.get("dev").startswith(prefix) and target.get("dev") not in before
    assert outcome.target == target.get("dev")
    assert disk.find("readonly") is not None
    assert disk.find("source").get("file") == str(outcome.image)
    assert disk.find("driver").get("type") == "raw"
    _check_no_clash(root)
    if bus == "scsi":
        ctrl = int(disk.find("address").get("controller"))
        models = {int(c.get("index")): c.get("model") for c in root.iterfind("devices/controller")
                  if c.get("type") == "scsi"}
        assert models[ctrl] == "virtio-scsi"
    # the image is a real, readable config drive, readable by qemu's user
    mode = os.stat(outcome.image).st_mode
    assert stat.S_IMODE(mode) == 0o640  # issue 16: admin_pass and user data are not for other users
    from configdrive.images.inspect import read_drive, validate
    report = validate(read_drive(outcome.image))
    assert report.valid and report.uuid == INSTANCE.uuid


def test_aarch64_virt_gets_one_virtio_scsi_controller(define, images: Path) -> None:
    dom = define("aarch64", "virt", VIRT_DISKS)
    assert not [c for c in _xml(dom).iterfind("devices/controller") if c.get("type") == "scsi"]
    for fmt in ("iso9660", "vfat", "iso9660"):
        attach.attach(dom, INSTANCE, fmt, images)
    scsi = [c for c in _xml(dom).iterfind("devices/controller") if c.get("type") == "scsi"]
    assert [(c.get("index"), c.get("model")) for c in scsi] == [("0", "virtio-scsi")]


def _scsi_controllers(dom: object) -> list[tuple[str | None, str | None]]:
    return [(c.get("index"), c.find("alias").get("name") if c.find("alias") is not None else None)
            for c in _xml(dom).iterfind("devices/controller") if c.get("type") == "scsi"]


def test_the_controller_we_added_goes_with_our_last_drive(define, conn, images: Path) -> None:
    dom = define("x86_64", "q35", Q35_DISKS)
    assert _scsi_controllers(dom) == []
    attach.attach(dom, INSTANCE, "vfat", images)  # VFAT: a virtio-scsi disk, controller added
    assert _scsi_controllers(dom) == [("0", "ua-configdrive-scsi")]
    attach.attach(dom, INSTANCE, "iso9660", images)  # back to a SATA cdrom: nothing sits on it
    assert _scsi_controllers(dom) == []
    attach.attach(dom, INSTANCE, "vfat", images)
    attach.detach(dom, images)
    assert _scsi_controllers(dom) == [] and not _ours(_xml(dom))
    # once an operator puts a disk of their own on it, the controller stays
    attach.attach(dom, INSTANCE, "vfat", images)
    root = _xml(dom)
    ET.SubElement(root.find("devices"), "disk", type="file", device="disk").extend([
        ET.Element("source", file="/var/tmp/mine.img"), ET.Element("target", dev="sdz", bus="scsi"),
        ET.Element("address", type="drive", controller="0", bus="0", target="0", unit="5")])
    dom = conn.defineXML(ET.tostring(root, encoding="unicode"))
    attach.detach(dom, images)
    assert _scsi_controllers(dom) == [("0", "ua-configdrive-scsi")]


def test_existing_virtio_scsi_controller_is_reused(define, images: Path) -> None:
    disks = "<disk type='file' device='disk'><source file='/var/tmp/a.img'/><target dev='sda' bus='scsi'/></disk>"
    ctrl = "<controller type='scsi' index='2' model='virtio-scsi'/>"
    dom = define("aarch64", "virt", disks + "<disk type='file' device='disk'><source file='/var/tmp/b.img'/>"
                 "<target dev='sdb' bus='scsi'/><address type='drive' controller='2' bus='0' target='0' unit='0'/>"
                 "</disk>", ctrl)
    attach.attach(dom, INSTANCE, "iso9660", images)
    root = _xml(dom)
    [disk] = _ours(root)
    assert disk.find("address").get("controller") == "2"
    assert disk.find("address").get("unit") != "0"
    assert disk.find("target").get("dev") not in ("sda", "sdb")
    assert sum(c.get("model") == "virtio-scsi" for c in root.iterfind("devices/controller")) == 1
    _check_no_clash(root)


def test_reattach_is_idempotent_and_detach_removes(define, images: Path) -> None:
    dom = define("x86_64", "q35", Q35_DISKS, metadata=METADATA)
    first = attach.attach(dom, INSTANCE, "iso9660", images)
    second = attach.attach(dom, INSTANCE, "iso9660", images)
    assert (first.action, second.action) == ("attached", "refreshed")
    root = _xml(dom)
    [disk] = _ours(root)
    assert disk.find("target").get("dev") == first.target == second.target
    assert disk.find("source").get("file") == str(second.image)
    assert sorted(images.iterdir()) == [second.image]  # the old image is gone
    # switching format replaces the drive, still one
    third = attach.attach(dom, INSTANCE, "vfat", images)
    assert len(_ours(_xml(dom))) == 1 and sorted(images.iterdir()) == [third.image]
    # other devices and foreign metadata survive our edits
    root = _xml(dom)
    assert {d.find("target").get("dev") for d in root.iterfind("devices/disk")} >= {"sda", "vda"}
    assert "keep-me" in dom.XMLDesc(0)  # type: ignore[attr-defined]
    gone = attach.detach(dom, images)
    assert gone.action == "detached"
    root = _xml(dom)
    assert not _ours(root) and list(images.iterdir()) == []
    assert {d.find("target").get("dev") for d in root.iterfind("devices/disk")} == {"sda", "vda"}
    assert attach.detach(dom, images).action.startswith("none")


def test_target_in_use_changes_nothing(define, images: Path) -> None:
    dom = define("x86_64", "pc-i440fx-7.2", PC_DISKS)
    before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    with pytest.raises(PlacementError, match=r"target hdc is already in use by the cdrom /var/tmp/install\.iso"):
        attach.attach(dom, INSTANCE, "iso9660", images, target="hdc")
    with pytest.raises(PlacementError, match="does not fit the ide bus"):
        attach.attach(dom, INSTANCE, "iso9660", images, target="sdb")
    assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before
    assert list(images.iterdir()) == []


def test_explicit_free_target_is_used(define, images: Path) -> None:
    dom = define("x86_64", "pc-i440fx-7.2", PC_DISKS)
    assert attach.attach(dom, INSTANCE, "iso9660", images, target="hdd").target == "hdd"
    [disk] = _ours(_xml(dom))
    assert disk.find("target").get("dev") == "hdd"
    _check_no_clash(_xml(dom))


def test_full_ide_bus_is_refused(define, images: Path) -> None:
    disks = "".join(f"<disk type='file' device='disk'><source file='/var/tmp/{n}.img'/>"
                    f"<target dev='{n}' bus='ide'/></disk>" for n in ("hda", "hdb", "hdc", "hdd"))
    dom = define("x86_64", "pc", disks)
    before = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    with pytest.raises(PlacementError, match="all 4 IDE slots"):
        attach.attach(dom, INSTANCE, "iso9660", images)
    assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before and list(images.iterdir()) == []


def test_disk_with_odd_address_does_not_clash(define, images: Path) -> None:
    """An existing disk named sdb but sitting at sata unit 0 still blocks unit 0."""
    disks = ("<disk type='file' device='disk'><source file='/var/tmp/r.img'/><target dev='sdb' bus='sata'/>"
             "<address type='drive' controller='0' bus='0' target='0' unit='0'/></disk>")
    dom = define("x86_64", "q35", disks)
    attach.attach(dom, INSTANCE, "iso9660", images)
    root = _xml(dom)
    [disk] = _ours(root)
    assert disk.find("address").get("unit") != "0" and disk.find("target").get("dev") != "sdb"
    _check_no_clash(root)


@pytest.mark.parametrize("arch,machine,fmt,bus", [
    ("x86_64", "pc-i440fx-8.0", "iso9660", "ide"), ("i686", "isapc", "iso9660", "ide"),
    ("x86_64", "pc-q35-6.2", "iso9660", "sata"), ("x86_64", "microvm", "iso9660", "scsi"),
    ("aarch64", "virt-7.2", "iso9660", "scsi"), ("ppc64le", "pseries", "iso9660", "scsi"),
    ("x86_64", "q35", "vfat", "scsi"), ("x86_64", "pc", "vfat", "scsi"),
])
def test_bus_choice(arch: str, machine: str, fmt: str, bus: str) -> None:
    assert devices.domain_bus(arch, machine, fmt) == bus


def test_connect_error_messages() -> None:
    from hypervisor.connection import explain_connect_error, resolve_uri
    msg = explain_connect_error("qemu:///system", "authentication unavailable: no polkit agent available")
    assert msg.startswith("permission denied connecting to libvirt at qemu:///system")
    assert "libvirt' group" in msg
    msg = explain_connect_error("qemu:///system", "Failed to connect socket to '/x': Connection refused")
    assert "no daemon is listening" in msg
    assert resolve_uri("test:///default") == "test:///default"


def test_build_never_imports_libvirt(tmp_path: Path) -> None:
    """`configdrive build` and `--help` stay free of libvirt (lazy commands)."""
    import subprocess
    import sys
    code = ("import sys\nfrom configdrive.cli import cli\n"
            "for args in (['--help'], ['build', '--instance', sys.argv[1], '-o', sys.argv[2]]):\n"
            "    try:\n        cli(args, standalone_mode=False)\n    except SystemExit:\n        pass\n"
            "assert 'libvirt' not in sys.modules and 'hypervisor.attach' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "samples/minimal.yaml"),
                           str(tmp_path / "d.iso")], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "d.iso").stat().st_size > 0


# -- bad input on the command line: one line, exit 2, nothing touched (no daemon needed) ----


def test_overlong_instance_ref_is_bad_input(tmp_path: Path) -> None:
    """A name the OS refuses to stat (ENAMETOOLONG) is neither a spec file nor an ID."""
    ref = "a" * 300
    proc = run_cli("attach", "--domain", "test", "--instance", ref, "--connect", "test:///default",
                   "--images-dir", str(tmp_path / "images"))
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err == f"error: --instance {ref}: no such spec file, and not an instance ID\n"
    assert not (tmp_path / "images").exists()


def test_bad_source_date_epoch_is_bad_input(tmp_path: Path) -> None:
    """Refused up front with exit 2, as `build` does - not a build failure (1) per domain."""
    spec = str(ROOT / "samples" / "minimal.yaml")
    for args in (["attach", "--domain", "test", "--instance", spec],
                 ["sync", "--data-dir", str(tmp_path / "data")]):
        proc = run_cli(*args, "--connect", "test:///default", "--images-dir", str(tmp_path / "images"),
                       env={"SOURCE_DATE_EPOCH": "abc"})
        err = proc.stderr.decode()
        assert proc.returncode == 2, err
        assert err == "error: SOURCE_DATE_EPOCH must be a non-negative integer, not 'abc'\n"
        assert not (tmp_path / "images").exists() and not (tmp_path / "data").exists()
