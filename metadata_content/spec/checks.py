"""Semantic checks on a schema-valid spec dict: what a pattern cannot see.

Each check appends :class:`Problem` objects naming the JSON path, so a user
fixes every mistake in one round.
"""
from __future__ import annotations

import re
from functools import partial
from typing import Any

from metadata_content.errors import Problem
from metadata_content.spec.addresses import Addresses
from metadata_content.spec.checks_network import check_friendly_network
from metadata_content.spec.validators import (
    PCI,
    Checker,
    ec2_id_error,
    hostname_error,
    mac_error,
    nonempty_base64,
    uuid_error,
)

USER_DATA_LIMIT = 65535  # Nova's limit, counted on the base64 encoding
_EC2 = {"ec2_instance_id": "i", "image": "ami", "kernel": "aki", "ramdisk": "ari"}


def semantic_problems(data: dict[str, Any], addresses: Addresses) -> list[Problem]:
    """Every problem of a schema-valid spec; *addresses* keeps what was parsed for the build."""
    c = Checker(data, addresses)
    c.check("uuid", data["uuid"], uuid_error)
    c.check("hostname", data["hostname"], hostname_error)
    c.check("dhcp_domain", data.get("dhcp_domain") or None, hostname_error)
    domain = data.get("dhcp_domain", "novalocal")
    fqdn = f"{data['hostname']}.{domain}" if domain else data["hostname"]
    if len(fqdn) > 253:
        c.add("hostname", f"the full name {fqdn!r} is longer than 253 characters")
    c.check("image.id", (data.get("image") or {}).get("id"), uuid_error)
    for field, prefix in _EC2.items():
        value = data.get(field) if field == "ec2_instance_id" else (data.get(field) or {}).get("ec2_id")
        where = field if field == "ec2_instance_id" else f"{field}.ec2_id"
        c.check(where, value, partial(ec2_id_error, prefix=prefix))
    _check_keys(c)
    _check_user_data(c)
    _check_files(c)
    _check_devices(c)
    _check_block_devices(c)
    c.check("random_seed", data.get("random_seed"),
            lambda v: None if nonempty_base64(v) else "must be non-empty base64")
    _check_network(c)
    return c.problems




# -- sections -------------------------------------------------------------------

_SSH_TYPES = re.compile(r"(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+)")


def _check_keys(c: Checker) -> None:
    seen: set[str] = set()
    for i, key in enumerate(c.data.get("keys", [])):
        where = f"keys[{i}]"
        if key["name"] in seen:
            c.add(f"{where}.name", f"duplicate key name {key['name']!r}")
        seen.add(key["name"])
        if "data" not in key:
            c.add(f"{where}.data", "is required (or give file)")
            continue
        c.check(f"{where}.data", key["data"], ssh_key_error if key.get("type", "ssh") == "ssh" else x509_error)


def ssh_key_error(value: str) -> str | None:
    fields = value.split()
    if len(fields) < 2 or not _SSH_TYPES.fullmatch(fields[0]):
        return "is not an OpenSSH public key ('ssh-ed25519 AAAA... comment')"
    blob = nonempty_base64(fields[1])
    if blob is None or len(blob) < 4:
        return "the key body is not base64"
    size = int.from_bytes(blob[:4], "big")
    if blob[4:4 + size].decode("latin-1") != fields[0]:
        return f"the key body does not hold a {fields[0]} key"
    return None


def x509_error(value: str) -> str | None:
    if "-----BEGIN CERTIFICATE-----" not in value or "-----END CERTIFICATE-----" not in value:
        return "is not a PEM certificate (-----BEGIN CERTIFICATE----- ...)"
    return None


def _check_user_data(c: Checker) -> None:
    user_data = c.data.get("user_data")
    if user_data is None:
        return
    if isinstance(user_data, str):
        raw = user_data.encode()
    elif "text" in user_data:
        raw = user_data["text"].encode()
    else:
        decoded = nonempty_base64(user_data["base64"]) if user_data["base64"] else b""
        if decoded is None:
            c.add("user_data.base64", "is not valid base64")
            return
        raw = decoded
    encoded = 4 * ((len(raw) + 2) // 3)
    if encoded > USER_DATA_LIMIT:
        c.add("user_data", f"is {len(raw)} bytes, {encoded} once base64-encoded: "
                           f"over Nova's limit of {USER_DATA_LIMIT} base64 bytes")


def _check_files(c: Checker) -> None:
    seen: set[str] = set()
    for i, item in enumerate(c.data.get("files", [])):
        where = f"files[{i}]"
        if not item["path"].startswith("/"):
            c.add(f"{where}.path", f"{item['path']!r} must be an absolute path in the guest")
        if item["path"] in seen:
            c.add(f"{where}.path", f"duplicate path {item['path']!r}")
        seen.add(item["path"])
        given = [k for k in ("content", "content_base64") if k in item]
        if len(given) != 1:
            c.add(where, "give exactly one of content, content_base64 or file")
        elif given[0] == "content_base64" and item["content_base64"] and not nonempty_base64(item["content_base64"]):
            c.add(f"{where}.content_base64", "is not valid base64")


def _check_devices(c: Checker) -> None:
    needs = {"nic": ("mac",), "disk": (), "share": ("share_id", "tag")}
    only = {"nic": {"mac", "vlan", "vf_trusted"}, "disk": {"serial", "path"}, "share": {"share_id", "tag"}}
    for i, dev in enumerate(c.data.get("devices", [])):
        where = f"devices[{i}]"
        kind = dev["type"]
        for field in needs[kind]:
            if field not in dev:
                c.add(f"{where}.{field}", f"is required for a {kind} device")
        for field in set(dev) & (set().union(*only.values()) - only[kind]):
            c.add(f"{where}.{field}", f"does not apply to a {kind} device")
        c.check(f"{where}.mac", dev.get("mac"), mac_error)
        c.check(f"{where}.share_id", dev.get("share_id"), uuid_error)
        if dev.get("bus") == "pci":
            c.check(f"{where}.address", dev.get("address"),
                    lambda v: None if PCI.fullmatch(v) else f"{v!r} is not a PCI address like 0000:00:03.0")


def _check_block_devices(c: Checker) -> None:
    bd = c.data.get("block_devices") or {}
    for name in ("root", "swap"):
        c.check(f"block_devices.{name}", bd.get(name), _dev_error)
    for name in ("ephemeral", "volumes"):
        for i, value in enumerate(bd.get(name, [])):
            c.check(f"block_devices.{name}[{i}]", value, _dev_error)
    if bd and "root" not in bd:
        c.add("block_devices.root", "is required when block_devices is given")


def _dev_error(value: str) -> str | None:
    return None if re.fullmatch(r"/dev/[a-z0-9/_-]+", value) else f"{value!r} is not a device path like /dev/vdb"


def _check_network(c: Checker) -> None:
    data = c.data
    friendly = [k for k in ("nics", "bonds", "vlans") if data.get(k)]
    if "network_data" in data:
        if friendly:
            c.add("network_data", f"give either network_data or {'/'.join(friendly)}, not both")
        # imported here: it imports jsonschema, which a spec without a literal network_data never needs
        from metadata_content.spec.network_schema import validate_network_data

        for path, reason in validate_network_data(data["network_data"]):
            c.add(f"network_data.{path}" if path else "network_data", reason)
        return

    check_friendly_network(c)
