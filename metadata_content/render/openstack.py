"""The OpenStack tree: ``openstack/<version>/`` documents and listings.

Keys, key order and the version each key appears in follow Nova 34. One fix:
every keypair is shown (Nova shows only the first).
"""
from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from metadata_content.model import Device, Instance
from metadata_content.render import versions as v

META_DATA = "meta_data.json"
USER_DATA = "user_data"
PASSWORD = "password"
VENDOR_DATA = "vendor_data.json"
VENDOR_DATA2 = "vendor_data2.json"
NETWORK_DATA = "network_data.json"
CONTENT_DIR = "content"


def content_name(index: int) -> str:
    """Name of the *index*-th injected file under ``openstack/content/``."""
    return f"{index:04d}"


def version_listing(instance: Instance, version: str) -> list[str]:
    """What ``openstack/<version>`` lists (*version* is a dated version)."""
    return version_files(version, has_user_data=instance.user_data is not None)


def version_files(version: str, *, has_user_data: bool) -> list[str]:
    """The names under ``openstack/<version>``, in listing order.

    One table for the tree and for ``configdrive inspect``, which checks a
    drive against it (minus ``password``, which is never a drive file).
    """
    names = [META_DATA]
    if has_user_data:
        names.append(USER_DATA)
    if v.at_least(version, v.GRIZZLY):
        names.append(PASSWORD)
    if v.at_least(version, v.HAVANA):
        names.append(VENDOR_DATA)
    if v.at_least(version, v.LIBERTY):
        names.append(NETWORK_DATA)
    if v.at_least(version, v.NEWTON_TWO):
        names.append(VENDOR_DATA2)
    return names


def meta_data(instance: Instance, version: str, *, on_drive: bool, random_seed: bytes) -> dict[str, Any]:
    """meta_data.json for dated *version*; files and admin_pass only *on_drive*."""
    doc: dict[str, Any] = {"uuid": instance.uuid}
    if instance.meta:
        doc["meta"] = dict(instance.meta)
    if on_drive and instance.files:
        doc["files"] = [{"path": f.path, "content_path": f"/{CONTENT_DIR}/{content_name(i)}"}
                        for i, f in enumerate(instance.files)]
    if on_drive and instance.admin_pass is not None:
        doc["admin_pass"] = instance.admin_pass
    if instance.keys:
        # SSH keys only: a reader installs these (cloud-init into authorized_keys) or encrypts
        # with one (cloudbase-init's password); certificates are in "keys", as x509
        ssh = {k.name: k.data for k in instance.keys if k.type == "ssh"}
        if ssh:
            doc["public_keys"] = ssh
        doc["keys"] = [{"name": k.name, "type": k.type, "data": k.data} for k in instance.keys]
    doc["hostname"] = instance.fqdn
    doc["name"] = instance.name
    doc["launch_index"] = instance.launch_index
    doc["availability_zone"] = instance.availability_zone
    if v.at_least(version, v.GRIZZLY):
        doc["random_seed"] = base64.b64encode(random_seed).decode("ascii")
    if v.at_least(version, v.LIBERTY):
        doc["project_id"] = instance.project_id
    if v.at_least(version, v.NEWTON_ONE):
        doc["devices"] = [d for d in (_device(dev, version) for dev in instance.devices) if d]
    if v.at_least(version, v.VICTORIA):
        doc["dedicated_cpus"] = sorted(instance.dedicated_cpus)
    return doc


def _device(device: Device, version: str) -> dict[str, Any] | None:
    """One ``devices[]`` entry as *version* shows it, or None when hidden."""
    entry: dict[str, Any] = {}
    if device.type == "nic":
        if v.at_least(version, v.OCATA) and device.vlan is not None:
            entry["vlan"] = device.vlan
        if v.at_least(version, v.ROCKY):
            entry["vf_trusted"] = device.vf_trusted
        entry["type"] = "nic"
        entry["mac"] = device.mac
        # Nova hides an untagged NIC unless it has something else to say.
        if device.tags is None and "vlan" not in entry and "vf_trusted" not in entry:
            return None
    elif device.type == "disk":
        entry["type"] = "disk"
        if device.serial is not None:
            entry["serial"] = device.serial
        if device.path is not None:
            entry["path"] = device.path
    elif device.type == "share" and v.at_least(version, v.EPOXY):
        entry["type"] = "share"
        entry["share_id"] = device.share_id
        entry["tag"] = device.tag
    else:
        return None
    entry["bus"] = device.bus
    entry["address"] = device.address if device.bus != "none" and device.address else "none"
    if device.tags is not None:
        entry["tags"] = list(device.tags)
    return entry


def vendor_data2(static: dict[str, Any], dynamic: Mapping[str, Any] | None) -> dict[str, Any]:
    """vendor_data2.json: ``static`` plus one key per dynamic REST target."""
    doc: dict[str, Any] = {"static": static}
    for name, value in (dynamic or {}).items():
        if name not in doc:  # Nova drops a target that collides with an existing key
            doc[name] = value
    return doc
