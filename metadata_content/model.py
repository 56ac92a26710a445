"""The instance model: what a guest may learn about itself.

Immutable values (:class:`_Value`, like frozen dataclasses) built by
:mod:`metadata_content.spec` from a validated instance spec. Nothing here
renders: :mod:`metadata_content.render` turns an :class:`Instance` into bytes.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, ClassVar, Literal, TypeVar, dataclass_transform

KeyType = Literal["ssh", "x509"]
Bus = Literal["pci", "usb", "scsi", "ide", "xen", "none"]


class FrozenError(AttributeError):
    """A model value was assigned to: every value is immutable once built."""


class _Factory:
    """A default made fresh for every value (``dict``), like dataclasses' default_factory."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]):
        self.make = make


def fresh(make: Callable[[], Any]) -> Any:
    """Field default: a new ``make()`` per value (a shared ``{}`` would leak between values)."""
    return _Factory(make)


@dataclass_transform(eq_default=True, kw_only_default=False, field_specifiers=())
class _Value:
    """Immutable values with fields from the class annotations, as frozen dataclasses.

    ``@dataclass(frozen=True)`` compiles ``__init__``, ``__setattr__``,
    ``__delattr__``, ``__eq__``, ``__hash__`` and ``__repr__`` from source text
    for every class: ~0.8 ms each, ~11 ms of every CLI start for this module.
    Here one generic implementation serves every class: fields in annotation
    order, defaults from the class body (``fresh(dict)`` for mutable ones),
    positional or keyword arguments, no assignment after construction, and
    equality, hash and repr over the field values of the same class.
    """

    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # own annotations only; inspect.get_annotations would cost its import at start-up
        names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
        defaults = {name: cls.__dict__[name] for name in names if name in cls.__dict__}
        required_after = [n for i, n in enumerate(names) if n not in defaults
                          and any(m in defaults for m in names[:i])]
        if required_after:
            raise TypeError(f"{cls.__name__}: field {required_after[0]!r} without a default "
                            f"follows one with a default")
        cls._fields, cls._defaults = names, defaults

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        fields = cls._fields
        if len(args) > len(fields):
            raise TypeError(f"{cls.__name__}() takes {len(fields)} arguments, got {len(args)}")
        values = dict(zip(fields, args, strict=False))
        if kwargs:
            for name in kwargs:
                if name not in cls._defaults and name not in fields:
                    raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {name!r}")
                if name in values:
                    raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
            values.update(kwargs)
        if len(values) < len(fields):
            for name in fields:
                if name not in values:
                    if name not in cls._defaults:
                        raise TypeError(f"{cls.__name__}() missing required argument {name!r}")
                    value = cls._defaults[name]
                    values[name] = value.make() if isinstance(value, _Factory) else value
        # One store for every field (the instance's namespace), not one
        # object.__setattr__ call each: a build makes ~25 values of up to 28 fields.
        object.__setattr__(self, "__dict__", values)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenError(f"cannot delete field {name!r}")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({shown})"


V = TypeVar("V", bound=_Value)


def replace(value: V, **changes: Any) -> V:
    """A copy of *value* with some fields changed (``dataclasses.replace``)."""
    return type(value)(**{**{name: getattr(value, name) for name in value._fields}, **changes})


class Keypair(_Value):
    """An SSH or x509 public key, as ``public_keys``/``keys`` show it."""

    name: str
    data: str
    type: KeyType = "ssh"


class InjectedFile(_Value):
    """A file written onto the config drive only (``openstack/content/NNNN``)."""

    path: str
    content: bytes


class Route(_Value):
    """A static route of a subnet (``routes`` in network_data.json)."""

    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: ipaddress.IPv4Address | ipaddress.IPv6Address


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


class Nic(_Value):
    """A port: one virtual NIC of the guest on one network."""

    mac: str
    name: str | None = None
    mtu: int | None = None
    vif_type: str = "ovs"
    port_id: str | None = None
    network_id: str | None = None
    subnets: tuple[Subnet, ...] = ()


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


class Vlan(_Value):
    """A VLAN link on top of a NIC or bond, with its own subnets."""

    name: str
    link: str
    vlan_id: int
    mac: str | None = None
    mtu: int | None = None
    network_id: str | None = None
    subnets: tuple[Subnet, ...] = ()


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


class BlockDevices(_Value):
    """Block-device mapping as EC2 shows it (``block-device-mapping/``)."""

    root: str | None = None
    ephemeral: tuple[str, ...] = ()
    swap: str | None = None
    volumes: tuple[str, ...] = ()


class Ec2Ids(_Value):
    """The EC2-style ids (``i-``, ``ami-``, ``aki-``, ``ari-``) EC2 metadata shows."""

    instance_id: str
    ami_id: str | None = None
    kernel_id: str | None = None
    ramdisk_id: str | None = None


class Instance(_Value):
    """Everything one guest may learn about itself; every output renders from this."""

    uuid: str
    hostname: str
    name: str
    ec2_ids: Ec2Ids
    dhcp_domain: str = "novalocal"
    project_id: str | None = None
    availability_zone: str | None = "nova"  # None: in no zone
    launch_index: int = 0
    reservation_id: str | None = None
    flavor: str | None = None
    image_id: str | None = None
    image_properties: dict[str, str] = fresh(dict)
    keys: tuple[Keypair, ...] = ()
    user_data: bytes | None = None
    meta: dict[str, str] = fresh(dict)
    files: tuple[InjectedFile, ...] = ()
    admin_pass: str | None = None
    security_groups: tuple[str, ...] = ()
    block_devices: BlockDevices = BlockDevices()
    devices: tuple[Device, ...] = ()
    dedicated_cpus: tuple[int, ...] = ()
    vendor_data: dict[str, Any] = fresh(dict)
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

    def interfaces(self) -> tuple[Nic | Bond | Vlan, ...]:
        """Every friendly-form interface: NICs, then bonds, then VLANs."""
        return (*self.nics, *self.bonds, *self.vlans)

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
        for holder in self.interfaces():
            for subnet in holder.subnets:
                if subnet.ip is not None:
                    found.append(PortAddress(holder.network_id, str(subnet.ip), holder.mac))
        return found


class PortAddress(_Value):
    """One (network id, fixed IP, MAC) the guest owns: a row of the store's indexes."""

    network_id: str | None
    ip: str
    mac: str | None
