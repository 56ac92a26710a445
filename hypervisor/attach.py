"""Attach, refresh and detach a domain's config drive.

The persistent definition is the source of truth: we read it
(``XMLDesc(INACTIVE|SECURE)``, so VNC passwords survive), edit it with
:mod:`hypervisor.devices` and ``defineXML`` it back - the one path every
driver has (the ``test:///`` driver lacks attachDeviceFlags). A running
guest is then updated live where QEMU can: a cdrom's media is swapped
(``updateDeviceFlags``), a SCSI disk is hot-plugged; IDE/SATA cannot
hot-plug, so there the new drive appears at the next boot, and we say so.

Images: every build gets a new name, ``<domain uuid>.<random>.iso|img``,
written atomically (temporary file, then link/rename in the same directory,
mode 0640: they hold admin_pass and user data). libvirt's DAC driver chowns
an image to libvirt-qemu while the domain uses it (so qemu reads it as its
owner; where libvirt does not chown, give the images directory qemu's group
and the setgid bit: images take its group); a new name never fights that ownership, a live media swap
sees a different path (libvirt ignores an "update" to the same path), and the
old image is unlinked afterwards, which needs only write access to the
directory. Nothing outside the images directory is ever deleted.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from configdrive.images.build import drive_files, write_image_file
from configdrive.images.formats import FORMATS
from hypervisor import HypervisorError, devices

if TYPE_CHECKING:  # pragma: no cover
    import libvirt

    from metadata_content.model import Instance


@dataclass(frozen=True)
class Outcome:
    """What happened to one domain, for the report line."""

    domain: str
    action: str          # "attached", "refreshed", "detached", "none"
    image: Path | None
    target: str
    live: str            # what happened in the running guest, or "not running"

    def line(self) -> str:
        where = f" at {self.target}" if self.target else ""
        image = f" ({self.image})" if self.image else ""
        return f"{self.domain}: {self.action}{where}{image}; live: {self.live}"


def default_images_dir() -> Path:
    """``<data dir>/images``: /var/lib/configdrive/images for root."""
    from metadata_content.store import default_data_dir  # here: the store module imports SQLAlchemy
    return default_data_dir() / "images"


def prepare_images_dir(path: Path) -> Path:
    """Create the directory traversable, not listable, by libvirt's qemu user (0711);
    an existing one loses others' read and write (its group bits are the operator's)."""
    if not path.is_dir():
        try:
            path.mkdir(parents=True)
            path.chmod(0o711)
        except OSError as err:
            raise HypervisorError(f"cannot create images directory {path}: {err.strerror}") from None
    info = path.stat()
    if info.st_mode & 0o006 and info.st_uid == os.geteuid():
        path.chmod(info.st_mode & 0o7771)
    if not os.access(path, os.W_OK | os.X_OK):
        raise HypervisorError(f"images directory {path} is not writable by this user; "
                              f"run as root or choose --images-dir")
    return path.resolve()


def build_image(instance: Instance, fmt: str, path: Path, *, epoch: int | None = None) -> None:
    """Render the drive through the content model and write it atomically, mode 0640.

    ``epoch`` dates every file (None: now); the caller reads and checks
    SOURCE_DATE_EPOCH, so a bad value is refused before anything is touched.
    """

    # 0640: libvirt chowns it to qemu's user; no one else may read admin_pass or user data
    write_image_file(drive_files(instance), path, fmt, force=False, epoch=epoch, mode=0o640)


def our_images(images_dir: Path, domain_uuid: str) -> list[Path]:
    """Images this tool wrote for the domain (named by its uuid)."""
    return sorted(p for suffix in FORMATS.values() for p in images_dir.glob(f"{domain_uuid}.*{suffix}"))


def _inactive_xml(dom: libvirt.virDomain) -> str:
    import libvirt
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)


def persistent_drive(dom: libvirt.virDomain) -> devices.ET.Element | None:
    """Our drive in the persistent definition (what the domain boots with), or None."""
    return devices.find_drive(devices.parse(_inactive_xml(dom)))


def _define(dom: libvirt.virDomain, xml: str) -> None:
    import libvirt
    try:
        dom.connect().defineXML(xml)
    except libvirt.libvirtError as err:
        raise HypervisorError(f"libvirt refused the edited definition of {dom.name()}: "
                              f"{err.get_error_message()}; nothing was changed") from None


def attach(dom: libvirt.virDomain, instance: Instance, fmt: str, images_dir: Path,
           target: str | None = None, *, epoch: int | None = None) -> Outcome:
    """Give ``dom`` exactly one config drive holding ``instance``, fresh (dated ``epoch``)."""
    root = devices.parse(_inactive_xml(dom))
    had = devices.find_drive(root)
    placement = devices.place(root, fmt, target)  # refuse a bad target before building
    image = images_dir / f"{dom.UUIDString()}.{secrets.token_hex(4)}{FORMATS[fmt]}"
    try:
        build_image(instance, fmt, image, epoch=epoch)
        devices.insert_drive(root, str(image), placement)
        _define(dom, devices.tostring(root))
    except BaseException:
        image.unlink(missing_ok=True)
        raise
    live = _live_attach(dom, str(image), placement) if dom.isActive() else "not running"
    old = [devices.drive_source(had)] if had is not None else []
    _remove_images(images_dir, dom.UUIDString(), keep=image, extra=old)
    return Outcome(dom.name(), "refreshed" if had is not None else "attached", image,
                   placement.target, live)


def detach(dom: libvirt.virDomain, images_dir: Path) -> Outcome:
    """Remove our drive from the definition (and the running guest) and delete its image."""
    new_xml, removed = devices.without_drive(_inactive_xml(dom))
    live_disk = _live_drive(dom)
    if removed is None and live_disk is None:
        _remove_images(images_dir, dom.UUIDString())
        return Outcome(dom.name(), "none (no config drive)", None, "", "not changed")
    if removed is not None:
        _define(dom, new_xml)
    live = _live_detach(dom, live_disk) if live_disk is not None else "not running"
    source = devices.drive_source(removed) if removed is not None else None
    _remove_images(images_dir, dom.UUIDString(), extra=[source])
    target = devices.target_of(removed)[0] if removed is not None else ""
    return Outcome(dom.name(), "detached", None, target, live)


def _live_drive(dom: libvirt.virDomain) -> devices.ET.Element | None:
    if not dom.isActive():
        return None
    return devices.find_drive(devices.parse(dom.XMLDesc(0)))


def _live_attach(dom: libvirt.virDomain, image: str, placement: devices.Placement) -> str:
    """Swap media or hot-plug; a failure is reported, the persistent change stays."""
    import libvirt
    live_root = devices.parse(dom.XMLDesc(0))
    current = devices.find_drive(live_root)
    disk = devices.tostring(devices.disk_element(image, placement))
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
    try:
        if current is not None and current.get("device") == "cdrom" == placement.device \
                and devices.target_of(current) == (placement.target, placement.bus):
            dom.updateDeviceFlags(disk, flags)
            return "media changed in the running guest"
        if current is not None:
            dom.detachDeviceFlags(devices.tostring(current), flags)
        if placement.new_controller is not None:
            _, missing = devices.scsi_controller(live_root)
            if missing is not None:
                dom.attachDeviceFlags(devices.tostring(devices.controller_element(missing)), flags)
        dom.attachDeviceFlags(disk, flags)
        return "hot-plugged into the running guest"
    except libvirt.libvirtError as err:
        return (f"unchanged in the running guest ({err.get_error_message()}); "
                f"the new drive is there from the next boot")


def _live_detach(dom: libvirt.virDomain, disk: devices.ET.Element) -> str:
    import libvirt
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
    try:
        dom.detachDeviceFlags(devices.tostring(disk), flags)
        return "unplugged from the running guest"
    except libvirt.libvirtError as err:
        if disk.get("device") == "cdrom":
            empty = devices.parse(devices.tostring(disk))
            empty.remove(empty.find("source"))  # type: ignore[arg-type]
            try:
                dom.updateDeviceFlags(devices.tostring(empty), flags)
                return "media ejected in the running guest"
            except libvirt.libvirtError:
                pass
        return f"still present in the running guest until it stops ({err.get_error_message()})"


def _remove_images(images_dir: Path, domain_uuid: str, keep: Path | None = None,
                   extra: Sequence[str | None] = ()) -> None:
    """Unlink the domain's old images; only files inside ``images_dir``."""
    candidates = set(our_images(images_dir, domain_uuid))
    for name in extra:
        if name and Path(name).parent.resolve() == images_dir.resolve():
            candidates.add(Path(name))
    for path in candidates:
        if keep is None or path.resolve() != keep.resolve():
            path.unlink(missing_ok=True)
