"""Where a config drive goes in a domain: bus, target name, address, controller.

Pure XML work (no libvirt import), so it is testable on any string and the
same edit serves both the persistent definition and a live update.

The bus follows the machine: i440fx has IDE, q35 has SATA (AHCI), and
machines without IDE (aarch64 ``virt``, pseries, microvm, ...) get SCSI on a
virtio-scsi controller, added when the domain has none. A VFAT drive is a
read-only *disk*, which QEMU refuses on IDE and SATA ("Block node is
read-only"), so VFAT always goes on virtio-scsi. Our drive carries the user
alias ``ua-configdrive``: that is how a re-attach finds and replaces it
instead of adding a second one. A controller we add carries
``ua-configdrive-scsi`` and is removed with the last drive on it, so a detach
(or a switch back to a SATA/IDE cdrom) leaves the domain as it was.
"""
from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from hypervisor import PlacementError

ALIAS = "ua-configdrive"
CONTROLLER_ALIAS = "ua-configdrive-scsi"
DEVICE = {"iso9660": "cdrom", "vfat": "disk"}
PREFIX = {"ide": "hd", "sata": "sd", "scsi": "sd"}
VIRTIO_SCSI = "virtio-scsi"
_TARGET = re.compile(r"^(hd|sd|vd|xvd)([a-z]+)$")
_SATA_CONTROLLERS = 4      # q35 has one AHCI controller; libvirt adds more on demand
_SCSI_UNITS = {VIRTIO_SCSI: 256}  # searched per controller; other models have 7 units


@dataclass(frozen=True)
class Address:
    """A libvirt ``<address type='drive'>``."""

    controller: int
    bus: int
    target: int
    unit: int


@dataclass(frozen=True)
class Placement:
    """The decided position of the drive; ``new_controller`` is a SCSI index to add."""

    bus: str
    target: str
    device: str
    address: Address
    new_controller: int | None = None


def parse(xml: str) -> ET.Element:
    """Parse domain XML, keeping namespace prefixes (``<metadata>``) as written."""
    for _event, (prefix, uri) in ET.iterparse(io.StringIO(xml), events=("start-ns",)):
        if prefix and not re.fullmatch(r"ns\d+", prefix):
            ET.register_namespace(prefix, uri)
    return ET.fromstring(xml)


def tostring(elem: ET.Element) -> str:
    return ET.tostring(elem, encoding="unicode")


def domain_bus(arch: str, machine: str, fmt: str) -> str:
    """The bus for a drive of ``fmt`` on a domain of ``arch``/``machine``."""
    if fmt == "vfat":
        return "scsi"
    machine = machine.lower()
    if arch in ("x86_64", "i686"):
        if "q35" in machine:
            return "sata"
        if machine in ("", "pc", "isapc") or machine.startswith(("pc-i440fx", "pc-")):
            return "ide"
    return "scsi"


def find_drive(root: ET.Element) -> ET.Element | None:
    """Our config drive in a domain, by its user alias."""
    for disk in root.iterfind("devices/disk"):
        alias = disk.find("alias")
        if alias is not None and alias.get("name") == ALIAS:
            return disk
    return None


def format_of(disk: ET.Element) -> str:
    """The image format of our drive, from its device (DEVICE reversed): re-attaches keep it."""
    device = disk.get("device")
    return next((fmt for fmt, dev in DEVICE.items() if dev == device), "vfat")


def drive_source(disk: ET.Element) -> str | None:
    source = disk.find("source")
    return None if source is None else source.get("file")


def os_type(root: ET.Element) -> tuple[str, str]:
    """(arch, machine) as the domain XML states them."""
    elem = root.find("os/type")
    if elem is None:
        return "", ""
    return elem.get("arch", ""), elem.get("machine", "")


def place(root: ET.Element, fmt: str, target: str | None = None) -> Placement:
    """Choose bus, target and address; raise PlacementError when taken or full.

    A drive we already attached keeps its target and address when the bus
    does not change, so the guest sees it where it was.
    """
    if fmt not in DEVICE:
        raise PlacementError(f"unknown format {fmt!r}; choose iso9660 or vfat")
    bus = domain_bus(*os_type(root), fmt)
    ours = find_drive(root)
    others = [d for d in root.iterfind("devices/disk") if d is not ours]
    names = {target_of(d)[0]: d for d in others}
    if target is not None:
        _check_target(target, bus, names)
    device = DEVICE[fmt]
    if ours is not None:
        dev, old_bus = target_of(ours)
        addr = _address(ours)
        if old_bus == bus and addr is not None and target in (None, dev) \
                and addr not in _used(root, bus, skip=ours):
            return Placement(bus, dev, device, addr)
    controller, new_controller = 0, None
    if bus == "scsi":
        controller, new_controller = scsi_controller(root)
    addr = _free_address(root, bus, controller, skip=ours)
    name = target or _name_for(bus, addr, set(names))
    return Placement(bus, name, device, addr, new_controller)


def _check_target(target: str, bus: str, names: dict[str, ET.Element]) -> None:
    match = _TARGET.match(target)
    if not match or match.group(1) != PREFIX[bus]:
        raise PlacementError(f"target {target!r} does not fit the {bus} bus this drive uses: "
                             f"give {PREFIX[bus]}X (e.g. {PREFIX[bus]}c) or omit --target")
    if target in names:
        raise PlacementError(f"target {target} is already in use by {_describe(names[target])}; "
                             f"choose another --target or omit it")


def _describe(disk: ET.Element) -> str:
    src = drive_source(disk)
    return f"the {disk.get('device', 'disk')} {src}" if src else f"a {disk.get('device', 'disk')}"


def target_of(disk: ET.Element) -> tuple[str, str]:
    """(dev, bus) of a disk's <target>."""
    elem = disk.find("target")
    if elem is None:
        return "", ""
    return elem.get("dev", ""), elem.get("bus", "")


def _address(elem: ET.Element) -> Address | None:
    addr = elem.find("address")
    if addr is None or addr.get("type") != "drive":
        return None
    return Address(*(int(addr.get(k, "0"), 0) for k in ("controller", "bus", "target", "unit")))


def _name_index(name: str, prefix: str) -> int | None:
    if not name.startswith(prefix) or not name[len(prefix):].isalpha():
        return None
    idx = 0
    for ch in name[len(prefix):]:
        idx = idx * 26 + (ord(ch) - ord("a") + 1)
    return idx - 1


def _name(prefix: str, idx: int) -> str:
    letters = ""
    idx += 1
    while idx:
        idx, rem = divmod(idx - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def _default_address(bus: str, name: str) -> Address | None:
    """libvirt's address for a disk that states none (virDomainDiskDefAssignAddress)."""
    idx = _name_index(name, PREFIX.get(bus, "sd"))
    if idx is None:
        return None
    if bus == "ide":
        return Address(idx // 4, (idx % 4) // 2, 0, idx % 2)
    if bus == "sata":
        return Address(idx // 6, 0, 0, idx % 6)
    return Address(idx // 7, 0, 0, idx % 7)


def _used(root: ET.Element, bus: str, skip: ET.Element | None = None) -> set[Address]:
    """Drive addresses taken on ``bus`` controllers (disks, and SCSI host devices)."""
    used: set[Address] = set()
    for disk in root.iterfind("devices/disk"):
        dev, disk_bus = target_of(disk)
        if disk is skip or disk_bus != bus:
            continue
        addr = _address(disk) or _default_address(bus, dev)
        if addr is not None:
            used.add(addr)
    if bus == "scsi":
        for hostdev in root.iterfind("devices/hostdev"):
            if hostdev.get("type") == "scsi" and (addr := _address(hostdev)) is not None:
                used.add(addr)
    return used


def scsi_controller(root: ET.Element) -> tuple[int, int | None]:
    """(index to use, index to add or None): an existing virtio-scsi, else a new one."""
    indexes = set()
    for ctrl in root.iterfind("devices/controller"):
        if ctrl.get("type") == "scsi":
            if ctrl.get("model") == VIRTIO_SCSI:
                return int(ctrl.get("index", "0")), None
            indexes.add(int(ctrl.get("index", "0")))
    new = next(i for i in range(len(indexes) + 1) if i not in indexes)
    return new, new


def _scsi_units(root: ET.Element, controller: int) -> int:
    for ctrl in root.iterfind("devices/controller"):
        if ctrl.get("type") == "scsi" and int(ctrl.get("index", "0")) == controller:
            return _SCSI_UNITS.get(ctrl.get("model", ""), 7)
    return _SCSI_UNITS[VIRTIO_SCSI]  # the one we are adding


def _free_address(root: ET.Element, bus: str, controller: int,
                  skip: ET.Element | None) -> Address:
    used = _used(root, bus, skip)
    if bus == "ide":
        candidates = [Address(0, b, 0, u) for b in (0, 1) for u in (0, 1)]
    elif bus == "sata":
        candidates = [Address(c, 0, 0, u) for c in range(_SATA_CONTROLLERS) for u in range(6)]
    else:
        candidates = [Address(controller, 0, 0, u) for u in range(_scsi_units(root, controller))]
    for addr in candidates:
        if addr not in used:
            return addr
    what = {"ide": "all 4 IDE slots (hda-hdd) are", "sata": "every SATA port is",
            "scsi": f"every unit of SCSI controller {controller} is"}[bus]
    raise PlacementError(f"no room for a config drive: {what} in use; detach a disk first")


def _name_for(bus: str, addr: Address, used: set[str]) -> str:
    """The target name matching the address where possible, else the first free one."""
    prefix = PREFIX[bus]
    per_controller = {"ide": 4, "sata": 6, "scsi": 7}[bus]
    idx = addr.controller * per_controller + addr.bus * 2 + addr.unit if bus == "ide" \
        else addr.controller * per_controller + addr.unit
    if _name(prefix, idx) not in used:
        return _name(prefix, idx)
    return next(_name(prefix, i) for i in range(len(used) + 1) if _name(prefix, i) not in used)


def disk_element(image: str, placement: Placement) -> ET.Element:
    """The ``<disk>`` for ``image`` at ``placement``: raw, read-only, aliased."""
    disk = ET.Element("disk", type="file", device=placement.device)
    ET.SubElement(disk, "driver", name="qemu", type="raw")
    ET.SubElement(disk, "source", file=image)
    ET.SubElement(disk, "target", dev=placement.target, bus=placement.bus)
    ET.SubElement(disk, "readonly")
    ET.SubElement(disk, "alias", name=ALIAS)
    a = placement.address
    ET.SubElement(disk, "address", type="drive", controller=str(a.controller), bus=str(a.bus),
                  target=str(a.target), unit=str(a.unit))
    return disk


def controller_element(index: int) -> ET.Element:
    ctrl = ET.Element("controller", type="scsi", index=str(index), model=VIRTIO_SCSI)
    ET.SubElement(ctrl, "alias", name=CONTROLLER_ALIAS)
    return ctrl


def _drop_our_unused_controller(root: ET.Element) -> None:
    """Remove the SCSI controller we added once no disk or host device sits on it."""
    devices = root.find("devices")
    if devices is None:
        return
    for ctrl in devices.findall("controller"):
        alias = ctrl.find("alias")
        if ctrl.get("type") != "scsi" or alias is None or alias.get("name") != CONTROLLER_ALIAS:
            continue
        index = int(ctrl.get("index", "0"))
        in_use = any(addr.controller == index for addr in _used(root, "scsi"))
        if not in_use:
            devices.remove(ctrl)


def insert_drive(root: ET.Element, image: str, placement: Placement) -> None:
    """Put our drive (added, or replacing ours in place) at ``placement`` into ``root``.

    The placement is chosen first (:func:`place`) so a bad target is refused
    before the image is built, and the same parsed tree is edited.
    """
    devices = root.find("devices")
    if devices is None:
        devices = ET.SubElement(root, "devices")
    new = disk_element(image, placement)
    children = list(devices)
    ours = find_drive(root)
    if ours is not None:
        pos = children.index(ours)
        devices.remove(ours)
    else:
        disks = [i for i, c in enumerate(children) if c.tag == "disk"]
        pos = disks[-1] + 1 if disks else 0
    devices.insert(pos, new)
    if placement.new_controller is not None:
        devices.append(controller_element(placement.new_controller))
    _drop_our_unused_controller(root)  # e.g. VFAT (SCSI) replaced by a SATA cdrom


def without_drive(domain_xml: str) -> tuple[str, ET.Element | None]:
    """Domain XML without our drive, and the removed ``<disk>`` (None: there was none)."""
    root = parse(domain_xml)
    ours = find_drive(root)
    if ours is not None:
        root.find("devices").remove(ours)  # type: ignore[union-attr]
        _drop_our_unused_controller(root)
    return tostring(root), ours
