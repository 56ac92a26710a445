"""The instance model: what a guest may learn about itself.

Frozen dataclasses built by :mod:`metadata_content.spec` from a validated
instance spec. Nothing here renders; :mod:`metadata_content.openstack`,
:mod:`metadata_content.ec2` and :mod:`metadata_content.network` turn an
:class:`Instance` into bytes, and :mod:`metadata_content.tree` serves them.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from typing import Any, Literal

KeyType = Literal["ssh", "x509"]
Bus = Literal["pci", "usb", "scsi", "ide", "xen", "none"]


class _Value:
    """Equality, hash and repr from the fields, as ``@dataclass(frozen=True)`` makes them.

    ``@dataclass`` compiles those three methods separately for every class,
    which cost ~10 ms of each CLI start for this module; these shared ones give
    the same results (same-class field tuples compared and hashed, the same
    ``Name(field=value, ...)`` text). Each class still lets ``@dataclass``
    generate ``__init__`` and the frozen ``__setattr__``/``__delattr__``
    (``eq=False, repr=False`` keeps these, and the inherited hash).
    """

    __slots__ = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _field_names(type(self)))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()  # type: ignore[attr-defined]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _field_names(type(self)))
        return f"{type(self).__qualname__}({shown})"


_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    return names


@dataclass(frozen=True, eq=False, repr=False)
class Keypair(_Value):
    """An SSH or x509 public key, as ``public_keys``/``keys`` show it."""

    name: str
    data: str
    type: KeyType = "ssh"


@dataclass(frozen=True, eq=False, repr=False)
class InjectedFile(_Value):
    """A file written onto the config drive only (``openstack/content/NNNN``)."""

    path: str
    content: bytes


@dataclass(frozen=True, eq=False, repr=False)
class Route(_Value):
    """A static route of a subnet (``routes`` in network_data.json)."""

    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, eq=False, repr=False)
class Subnet(_Value):
    """One subnet of a port: its CIDR, the guest's fixed IP, gateway, DNS and routes."""

    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address | None = None
    dns: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()
    dhcp: bool = False
    ipv6_address_mode: str | None = None
    floating_ip: ipaddress.IPv4Address | None = None

    @property
    def version(self) -> int:
        return self.cidr.version


@dataclass(frozen=True, eq=False, repr=False)
class Nic(_Value):
    """A port: one virtual NIC of the guest on one network."""

    mac: str
    name: str | None = None
    mtu: int | None = None
    vif_type: str = "ovs"
    port_id: str | None = None
    network_id: str | None = None
    subnets: tuple[Subnet, ...] = ()


@dataclass(frozen=True, eq=False, repr=False)
class Bond(_Value):
    """A bond link over NICs (by name), with its own subnets."""

    name: str
    links: tuple[str, ...]
    mode: str = "active-backup"
    mac: str | None = None
    mtu: int | None = None
    miimon: int | None = None
    hash_policy: str | None = None
    network_id: str | None = None
    subnets: tuple[Subnet, ...] = ()


@dataclass(frozen=True, eq=False, repr=False)
class Vlan(_Value):
    """A VLAN link on top of a NIC or bond, with its own subnets."""

    name: str
    link: str
    vlan_id: int
    mac: str | None = None
    mtu: int | None = None
    network_id: str | None = None
    subnets: tuple[Subnet, ...] = ()


@dataclass(frozen=True, eq=False, repr=False)
class Device(_Value):
    """A device role tag (``devices`` in meta_data.json, from 2016-06-30)."""

    type: Literal["nic", "disk", "share"]
    bus: Bus = "none"
    address: str | None = None
    tags: tuple[str, ...] | None = None
    mac: str | None = None
    vlan: int | None = None
    vf_trusted: bool = False
    serial: str | None = None
    path: str | None = None
    share_id: str | None = None
    tag: str | None = None


@dataclass(frozen=True, eq=False, repr=False)
class BlockDevices(_Value):
    """Block-device mapping as EC2 shows it (``block-device-mapping/``)."""

    root: str | None = None
    ephemeral: tuple[str, ...] = ()
    swap: str | None = None
    volumes: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False, repr=False)
class Ec2Ids(_Value):
    """The EC2-style ids (``i-``, ``ami-``, ``aki-``, ``ari-``) EC2 metadata shows."""

    instance_id: str
    ami_id: str | None = None
    kernel_id: str | None = None
    ramdisk_id: str | None = None


@dataclass(frozen=True, eq=False, repr=False)
class Instance(_Value):
    """Everything one guest may learn about itself; every output renders from this."""

    uuid: str
    hostname: str
    name: str
    ec2_ids: Ec2Ids
    dhcp_domain: str = "novalocal"
    project_id: str | None = None
    availability_zone: str = "nova"
    launch_index: int = 0
    reservation_id: str | None = None
    flavor: str | None = None
    image_id: str | None = None
    image_properties: dict[str, str] = field(default_factory=dict)
    keys: tuple[Keypair, ...] = ()
    user_data: bytes | None = None
    meta: dict[str, str] = field(default_factory=dict)
    files: tuple[InjectedFile, ...] = ()
    admin_pass: str | None = None
    security_groups: tuple[str, ...] = ()
    block_devices: BlockDevices = BlockDevices()
    devices: tuple[Device, ...] = ()
    dedicated_cpus: tuple[int, ...] = ()
    vendor_data: dict[str, Any] = field(default_factory=dict)
    config_drive: bool = False
    random_seed: bytes | None = None
    nics: tuple[Nic, ...] = ()
    bonds: tuple[Bond, ...] = ()
    vlans: tuple[Vlan, ...] = ()
    network_data: dict[str, Any] | None = None
    """A literal network_data.json, used instead of ``nics``/``bonds``/``vlans``."""

    @property
    def fqdn(self) -> str:
        """Nova's hostname: ``<hostname>.<dhcp_domain>``, bare when the domain is empty."""
        return f"{self.hostname}.{self.dhcp_domain}" if self.dhcp_domain else self.hostname

    def ports(self) -> list[PortAddress]:
        """Every (network id, fixed IP, MAC) the guest owns: the store's indexes."""
        found: list[PortAddress] = []
        if self.network_data is not None:
            macs = {link.get("id"): link.get("ethernet_mac_address")
                    for link in self.network_data.get("links", [])}
            for net in self.network_data.get("networks", []):
                if "ip_address" in net:
                    found.append(PortAddress(net.get("network_id"), net["ip_address"],
                                             macs.get(net.get("link"))))
            return found
        for holder in (*self.nics, *self.bonds, *self.vlans):
            for subnet in holder.subnets:
                if subnet.ip is not None:
                    found.append(PortAddress(holder.network_id, str(subnet.ip), holder.mac))
        return found


@dataclass(frozen=True, eq=False, repr=False)
class PortAddress(_Value):
    """One (network id, fixed IP, MAC) the guest owns: a row of the store's indexes."""

    network_id: str | None
    ip: str
    mac: str | None
