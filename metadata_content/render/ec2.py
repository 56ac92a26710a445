"""The EC2 tree (2009-04-04 and older): the meta-data dict and its text rendering.

Fixes over Nova: unknown values are omitted (Nova prints ``None``), every
keypair is listed under ``public-keys/``, and the ``_name`` bookkeeping key
never reaches a guest (Nova serves ``public-keys/0/_name`` and writes it into
the drive's meta-data.json).
"""
from __future__ import annotations

from typing import Any, Union

from metadata_content.model import Instance
from metadata_content.render import versions as v

# A node of the EC2 tree: a leaf (text) or a directory. A directory may carry
# the line its parent lists it by (``0=name`` for a public key).
Node = Union[str, int, bytes, list[str], "Directory"]


class Directory(dict):
    """A dict whose listing line in its parent may differ from ``key/``."""

    def __init__(self, *args: Any, listed_as: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.listed_as = listed_as


class Requester(str):
    """A leaf whose value is the asking guest's address, which only the service knows:
    Nova's ``local-ipv4`` for an instance without a fixed IPv4. Over HTTP only (a drive
    has nobody asking); the service answers it (:attr:`Answer.requester`)."""


REQUESTER = Requester("")
DEFAULT_BLOCK_DEVICE_MAPPING = {"ami": "sda1", "ephemeral0": "sda2", "root": "/dev/sda1", "swap": "sda3"}


def meta_data(instance: Instance, version: str, *, http: bool = False) -> Directory:
    """The ``meta-data`` directory for dated EC2 *version*, in Nova's key order."""
    ids = instance.ec2_ids
    fixed, floating = _addresses(instance)
    md = Directory()
    _put(md, "ami-id", ids.ami_id)
    md["ami-launch-index"] = instance.launch_index  # an int in the drive's JSON, as in Nova
    md["ami-manifest-path"] = "FIXME"
    md["instance-id"] = ids.instance_id
    md["hostname"] = instance.fqdn
    _put(md, "local-ipv4", fixed if fixed is not None or not http else REQUESTER)
    _put(md, "reservation-id", instance.reservation_id)
    md["security-groups"] = list(instance.security_groups)
    ssh_keys = [k for k in instance.keys if k.type == "ssh"]  # openssh-key: no certificates
    if ssh_keys:
        md["public-keys"] = Directory(
            (str(i), Directory({"openssh-key": k.data}, listed_as=f"{i}={k.name}"))
            for i, k in enumerate(ssh_keys))
    if v.at_least(version, "2007-01-19"):
        md["local-hostname"] = instance.fqdn
        md["public-hostname"] = instance.fqdn
        md["public-ipv4"] = floating or ""
    if v.at_least(version, "2007-08-29"):
        _put(md, "instance-type", instance.flavor)
    if v.at_least(version, "2007-12-15"):
        md["block-device-mapping"] = Directory(_block_device_mapping(instance))
        _put(md, "kernel-id", ids.kernel_id)
        _put(md, "ramdisk-id", ids.ramdisk_id)
    if v.at_least(version, "2008-02-01") and instance.availability_zone is not None:
        md["placement"] = Directory({"availability-zone": instance.availability_zone})
    if v.at_least(version, "2008-09-01"):
        md["instance-action"] = "none"
    return md


def version_root(instance: Instance, version: str, *, http: bool = False) -> Directory:
    """``/<version>``: ``meta-data/`` and, when there is user data, ``user-data``."""
    root = Directory({"meta-data": meta_data(instance, version, http=http)})
    if instance.user_data is not None:
        root["user-data"] = instance.user_data
    return root


def _put(md: Directory, key: str, value: str | None) -> None:
    """Set *key* unless its value is unknown (Nova would print ``None``)."""
    if value is not None:
        md[key] = value


def _addresses(instance: Instance) -> tuple[str | None, str | None]:
    """First fixed IPv4 and first floating IPv4, as Nova's get_ec2_ip_info picks them."""
    fixed = next((p.ip for p in instance.ports() if ":" not in p.ip), None)  # IPv6 text always has ":"
    floating = next((str(s.floating_ip) for holder in instance.interfaces()
                     for s in holder.subnets if s.floating_ip is not None), None)
    return fixed, floating


def _block_device_mapping(instance: Instance) -> dict[str, str]:
    bd = instance.block_devices
    if bd.root is None:
        return dict(DEFAULT_BLOCK_DEVICE_MAPPING)
    mapping = {"ami": bd.root.removeprefix("/dev/"), "root": bd.root}
    for i, device in enumerate(bd.ephemeral):
        mapping[f"ephemeral{i}"] = device
    if bd.swap:
        mapping["swap"] = bd.swap
    for i, device in enumerate(sorted(bd.volumes)):
        mapping[f"ebs{i}"] = device
    return mapping


def render(node: Node) -> bytes:
    """Nova's ec2_md_print: a directory lists its keys sorted, one per line."""
    if isinstance(node, Directory):
        lines = []
        for key in sorted(node, key=_sort_key):
            child = node[key]
            if isinstance(child, Directory):
                lines.append(child.listed_as or f"{key}/")
            else:
                lines.append(key)
        return "\n".join(lines).encode()
    if isinstance(node, list):
        return "\n".join(node).encode()
    if isinstance(node, bytes):
        return node
    return str(node).encode()


def _sort_key(key: str) -> tuple[int, int, str]:
    """Sort as Nova does (text order), except public-key indexes sort numerically."""
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def as_json_dict(node: Directory) -> dict[str, Any]:
    """The drive's ``meta-data.json`` body: plain dicts, no listing bookkeeping."""
    return {k: as_json_dict(c) if isinstance(c, Directory) else c for k, c in node.items()}


def find(node: Node, parts: list[str]) -> Node | None:
    """Walk *parts* down from *node*; None for a missing key or a path into a leaf."""
    for part in parts:
        if not isinstance(node, Directory) or part not in node:
            return None
        node = node[part]
    return node
