"""A validated spec dict -> :class:`Instance` (defaults and EC2 id derivation)."""
from __future__ import annotations

import copy
from typing import Any

from metadata_content.model import (
    BlockDevices,
    Bond,
    Device,
    Ec2Ids,
    InjectedFile,
    Instance,
    Keypair,
    Nic,
    Route,
    Subnet,
    Vlan,
)
from metadata_content.spec.addresses import Addresses
from metadata_content.spec.validators import decode_base64


def build(data: dict[str, Any], addresses: Addresses | None = None) -> Instance:
    """Build the model; *data* has passed the schema and the semantic checks.

    *addresses* holds what the checks parsed, so no address is parsed twice.
    """
    uuid = data["uuid"].lower()
    parsed = addresses or Addresses()
    return Instance(
        uuid=uuid,
        hostname=data["hostname"],
        name=data.get("name", data["hostname"]),
        dhcp_domain=data.get("dhcp_domain", "novalocal"),
        ec2_ids=_ec2_ids(data, uuid),
        project_id=data.get("project_id"),
        availability_zone=data.get("availability_zone", "nova"),
        launch_index=data.get("launch_index", 0),
        reservation_id=data.get("reservation_id", f"r-{uuid[:8]}"),
        flavor=data.get("flavor"),
        image_id=(data.get("image") or {}).get("id"),
        image_properties=dict((data.get("image") or {}).get("properties", {})),
        # each key ends with a newline, as a key imported from a .pub file does: a reader
        # that concatenates public_keys values must get one key per line
        keys=tuple(Keypair(k["name"], k["data"].strip() + "\n", k.get("type", "ssh"))
                   for k in data.get("keys", [])),
        user_data=_user_data(data.get("user_data")),
        meta=dict(data.get("meta", {})),  # str -> str: a shallow copy is a full copy
        files=tuple(InjectedFile(f["path"], _content(f)) for f in data.get("files", [])),
        admin_pass=data.get("admin_pass"),
        security_groups=tuple(data.get("security_groups", [])),
        block_devices=_block_devices(data.get("block_devices") or {}),
        devices=tuple(_device(d) for d in data.get("devices", [])),
        dedicated_cpus=tuple(sorted(data.get("dedicated_cpus", []))),
        vendor_data=copy.deepcopy(data.get("vendor_data", {})),  # never shared with the caller's dict
        config_drive=data.get("config_drive", False),
        random_seed=_b64(data["random_seed"]) if "random_seed" in data else None,
        nics=tuple(_nic(n, parsed) for n in data.get("nics", [])),
        bonds=tuple(_bond(b, parsed) for b in data.get("bonds", [])),
        vlans=tuple(_vlan(v, parsed) for v in data.get("vlans", [])),
        network_data=copy.deepcopy(data.get("network_data")),
    )


def _b64(value: str) -> bytes:
    decoded = decode_base64(value)
    assert decoded is not None, "the checks refuse what is not base64"
    return decoded


def _ec2_id(value: str | int | None, prefix: str) -> str | None:
    if value is None:
        return None
    return f"{prefix}-{value:08x}" if isinstance(value, int) else value


def _ec2_ids(data: dict[str, Any], uuid: str) -> Ec2Ids:
    ref = lambda name: (data.get(name) or {}).get("ec2_id")  # noqa: E731
    return Ec2Ids(
        # Default: derived from the UUID, so it is stable across renderings.
        instance_id=_ec2_id(data.get("ec2_instance_id", int(uuid[:8], 16)), "i") or "",  # never None
        ami_id=_ec2_id(ref("image"), "ami"),
        kernel_id=_ec2_id(ref("kernel"), "aki"),
        ramdisk_id=_ec2_id(ref("ramdisk"), "ari"),
    )


def _user_data(value: str | dict[str, str] | None) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    if "text" in value:
        return value["text"].encode()
    return _b64(value["base64"])


def _content(item: dict[str, str]) -> bytes:
    return item["content"].encode() if "content" in item else _b64(item["content_base64"])


def _block_devices(bd: dict[str, Any]) -> BlockDevices:
    return BlockDevices(root=bd.get("root"), ephemeral=tuple(bd.get("ephemeral", [])),
                        swap=bd.get("swap"), volumes=tuple(bd.get("volumes", [])))


def _device(d: dict[str, Any]) -> Device:
    return Device(
        type=d["type"], bus=d.get("bus", "none"), address=d.get("address"),
        tags=tuple(d["tags"]) if "tags" in d else None, mac=d.get("mac", "").lower() or None,
        vlan=d.get("vlan"), vf_trusted=d.get("vf_trusted", False), serial=d.get("serial"),
        path=d.get("path"), share_id=d.get("share_id"), tag=d.get("tag"))


def _subnets(items: list[dict[str, Any]], parsed: Addresses) -> tuple[Subnet, ...]:
    ip = lambda v: parsed.ip(v) if v is not None else None  # noqa: E731
    return tuple(Subnet(
        cidr=parsed.network(s["cidr"]), ip=ip(s.get("ip")), gateway=ip(s.get("gateway")),
        dns=tuple(str(parsed.ip(d)) for d in s.get("dns", [])),
        routes=tuple(Route(parsed.network(r["cidr"]), parsed.ip(r["gateway"]))
                     for r in s.get("routes", [])),
        dhcp=s.get("dhcp", False), ipv6_address_mode=s.get("ipv6_address_mode"),
        floating_ip=ip(s.get("floating_ip"))) for s in items)  # type: ignore[arg-type]  # IPv4: checked


def _mac(value: str | None) -> str | None:
    return value.lower() if value else None


def _nic(n: dict[str, Any], parsed: Addresses) -> Nic:
    return Nic(mac=n["mac"].lower(), name=n.get("name"), mtu=n.get("mtu"), vif_type=n.get("vif_type", "ovs"),
               port_id=n.get("port_id"), network_id=n.get("network_id"), subnets=_subnets(n.get("subnets", []), parsed))


def _bond(b: dict[str, Any], parsed: Addresses) -> Bond:
    return Bond(name=b["name"], links=tuple(b["links"]), mode=b.get("mode", "active-backup"),
                mac=_mac(b.get("mac")), mtu=b.get("mtu"), miimon=b.get("miimon"),
                hash_policy=b.get("hash_policy"), network_id=b.get("network_id"),
                subnets=_subnets(b.get("subnets", []), parsed))


def _vlan(v: dict[str, Any], parsed: Addresses) -> Vlan:
    return Vlan(name=v["name"], link=v["link"], vlan_id=v["vlan_id"], mac=_mac(v.get("mac")), mtu=v.get("mtu"),
                network_id=v.get("network_id"), subnets=_subnets(v.get("subnets", []), parsed))
