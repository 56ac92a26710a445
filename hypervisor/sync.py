"""`configdrive sync`: every domain whose uuid is a registered instance gets
what the policy says - a fresh drive, or nothing (HTTP metadata).

Domains without a registered instance are never touched. One domain's
failure is reported and does not stop the others.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hypervisor import HypervisorError, attach, devices, policy
from metadata_content.errors import Failure, SpecError
from metadata_content.spec import instance_from_data

if TYPE_CHECKING:  # pragma: no cover
    import libvirt

    from metadata_content.model import Instance
    from metadata_content.store import Store

Lookup = Callable[[str], "Instance | None"]


@dataclass(frozen=True)
class Result:
    domain: str
    uuid: str
    status: str   # "drive", "http", "ignored", "failed"
    detail: str

    def line(self) -> str:
        return f"{self.status:8} {self.domain} ({self.uuid}): {self.detail}"


def store_lookup(store: Store) -> Lookup:
    """Domain uuid -> registered Instance (or None): the only place sync reads the store."""

    def lookup(uuid: str) -> Instance | None:
        record = store.get(uuid)
        if record is None:
            return None
        return instance_from_data(record.spec, f"stored instance {uuid}", validated=True)
    return lookup


def sync(conn: libvirt.virConnect, lookup: Lookup, *, force: bool, images_dir: Path,
         fmt: str = "iso9660", dry_run: bool = False, epoch: int | None = None) -> list[Result]:
    """Apply the policy to every domain on ``conn``; one Result per domain, by name.

    ``epoch`` dates the new drives (None: now), as in :func:`hypervisor.attach.attach`.
    """
    results = []
    for dom in sorted(conn.listAllDomains(), key=lambda d: d.name()):
        results.append(_one(dom, lookup, force, images_dir, fmt, dry_run, epoch))
    return results


def _one(dom: libvirt.virDomain, lookup: Lookup, force: bool, images_dir: Path,
         fmt: str, dry_run: bool, epoch: int | None) -> Result:
    import libvirt  # here: libvirt-python is an extra (see hypervisor/__init__.py)

    name, uuid = dom.name(), dom.UUIDString()
    try:
        instance = lookup(uuid)
    except SpecError as err:
        return Result(name, uuid, "failed", f"stored instance is invalid: {err}")
    if instance is None:
        return Result(name, uuid, "ignored", "no registered instance")
    try:  # the domain may vanish or change under us: report it, go on with the others
        current = attach.persistent_drive(dom)
        launched = bool(dom.isActive())
    except libvirt.libvirtError as err:
        return Result(name, uuid, "failed", f"libvirt: {err.get_error_message()}")
    decision = policy.required_by(instance, force=force, launched=launched,
                                  has_drive=current is not None)
    if not decision.required:
        return Result(name, uuid, "http", decision.reason)
    if current is not None:  # keep the format the guest already has
        fmt = devices.format_of(current)
    if dry_run:
        return Result(name, uuid, "drive", f"would attach {fmt} ({decision.reason})")
    try:
        outcome = attach.attach(dom, instance, fmt, images_dir, epoch=epoch)
    except HypervisorError as err:
        return Result(name, uuid, "failed", str(err))
    except (OSError, Failure) as err:  # image could not be built or written (too big, disk full)
        return Result(name, uuid, "failed", f"cannot build the drive: {err}")
    except libvirt.libvirtError as err:
        return Result(name, uuid, "failed", f"libvirt: {err.get_error_message()}")
    return Result(name, uuid, "drive", f"{outcome.action} {fmt} at {outcome.target} "
                                       f"({decision.reason}); live: {outcome.live}")
