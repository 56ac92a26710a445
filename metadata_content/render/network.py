"""Instance networking -> network_data.json, following Nova's netutils rules.

Nova's rules kept: links named by device name or ``interface<N>``; networks
numbered ``network<N>`` across the whole document; per port, IPv4 before IPv6
and only the first subnet of each family; DHCP subnets carry no addresses;
top-level services are every DNS server, de-duplicated in order; no network
at all gives ``{}``.

Beyond Nova: bond and vlan links (the published format has them, Nova never
emits them), a known MTU is always written (Nova writes ``null`` on DHCP
networks), and a DHCP subnet is listed even before an address is known.
"""
from __future__ import annotations

from typing import Any

from metadata_content.model import Bond, Instance, Nic, Subnet, Vlan

# VIF types Nova has always shown to guests; anything else is "phy".
EXPOSED_VIF_TYPES = frozenset(
    {"bridge", "dvs", "hw_veb", "hyperv", "ovs", "tap", "vhostuser", "vif"})


def network_data(instance: Instance) -> dict[str, Any]:
    """The network_data.json document for *instance* (a dict, not yet JSON)."""
    if instance.network_data is not None:
        return instance.network_data
    if not (instance.nics or instance.bonds or instance.vlans):
        return {}
    builder = _Builder()
    referenced = {m for b in instance.bonds for m in b.links} | {v.link for v in instance.vlans}
    for nic in instance.nics:
        if nic.subnets or (nic.name and nic.name in referenced):
            builder.add_nic(nic)
    for bond in instance.bonds:
        builder.add_bond(bond)
    for vlan in instance.vlans:
        builder.add_vlan(vlan)
    return {"links": builder.links, "networks": builder.networks, "services": builder.services}


class _Builder:
    """Accumulates links, networks and services with Nova's global numbering."""

    def __init__(self) -> None:
        self.links: list[dict[str, Any]] = []
        self.networks: list[dict[str, Any]] = []
        self.services: list[dict[str, str]] = []
        self._interface_count = 0
        self._link_ids: dict[str, str] = {}
        self._macs: dict[str, str] = {}  # link name -> MAC, for bonds and VLANs that inherit one

    def _link_id(self, name: str | None) -> str:
        link_id = name or f"interface{self._interface_count}"
        self._interface_count += 1
        return link_id

    def add_nic(self, nic: Nic) -> None:
        link_id = self._link_id(nic.name)
        link: dict[str, Any] = {"id": link_id}
        if nic.port_id:
            link["vif_id"] = nic.port_id
        link["type"] = nic.vif_type if nic.vif_type in EXPOSED_VIF_TYPES else "phy"
        link["mtu"] = nic.mtu
        link["ethernet_mac_address"] = nic.mac
        self._finish_link(link, nic.name, nic.network_id, nic.subnets)

    def add_bond(self, bond: Bond) -> None:
        link: dict[str, Any] = {
            "id": bond.name,
            "type": "bond",
            "bond_links": [self._link_ids.get(m, m) for m in bond.links],
            "bond_mode": bond.mode,
        }
        if bond.miimon is not None:
            link["bond_miimon"] = bond.miimon
        if bond.hash_policy is not None:
            link["bond_xmit_hash_policy"] = bond.hash_policy  # the key consumers read (Nova schema, cloud-init, glean)
        link["mtu"] = bond.mtu
        # Linux gives a bond its first member's MAC; say so, as cloud-init matches links by MAC.
        mac = bond.mac or next((self._macs[m] for m in bond.links if m in self._macs), None)
        if mac:
            link["ethernet_mac_address"] = mac
        self._finish_link(link, bond.name, bond.network_id, bond.subnets)

    def add_vlan(self, vlan: Vlan) -> None:
        link: dict[str, Any] = {
            "id": vlan.name,
            "type": "vlan",
            "vlan_link": self._link_ids.get(vlan.link, vlan.link),
            "vlan_id": vlan.vlan_id,
        }
        mac = vlan.mac or self._macs.get(vlan.link)  # a VLAN inherits its parent's MAC
        if mac:
            link["vlan_mac_address"] = mac
        link["mtu"] = vlan.mtu
        self._finish_link(link, vlan.name, vlan.network_id, vlan.subnets)

    def _finish_link(self, link: dict[str, Any], name: str | None,
                     network_id: str | None, subnets: tuple[Subnet, ...]) -> None:
        if link.get("mtu") is None:
            del link["mtu"]  # unknown: omitted rather than null
        self.links.append(link)
        if name:
            self._link_ids[name] = link["id"]
            mac = link.get("ethernet_mac_address") or link.get("vlan_mac_address")
            if mac:
                self._macs[name] = mac
        for version in (4, 6):
            subnet = next((s for s in subnets if s.version == version), None)
            if subnet is not None:
                self._add_network(subnet, link["id"], network_id)

    def _add_network(self, subnet: Subnet, link_id: str, network_id: str | None) -> None:
        net_id = f"network{len(self.networks)}"
        version = subnet.version
        if subnet.ipv6_address_mode is None and subnet.dhcp:
            net: dict[str, Any] = {"id": net_id, "type": f"ipv{version}_dhcp", "link": link_id}
            if network_id:
                net["network_id"] = network_id
            self.networks.append(net)
            self._add_services(subnet)
            return
        if subnet.ip is None:
            return  # a static subnet without an address gives the guest nothing to set
        suffix = f"_{subnet.ipv6_address_mode}" if subnet.ipv6_address_mode else ""
        net = {
            "id": net_id,
            "type": f"ipv{version}{suffix}",
            "link": link_id,
            "ip_address": str(subnet.ip),
            "netmask": str(subnet.cidr.netmask),
            "routes": _routes(subnet),
        }
        if network_id:
            net["network_id"] = network_id
        net["services"] = _dns(subnet)
        self.networks.append(net)
        self._add_services(subnet)

    def _add_services(self, subnet: Subnet) -> None:
        for service in _dns(subnet):
            if service not in self.services:
                self.services.append(service)


def _routes(subnet: Subnet) -> list[dict[str, str]]:
    routes: list[dict[str, str]] = []
    if subnet.gateway is not None:
        anywhere = "0.0.0.0" if subnet.version == 4 else "::"
        routes.append({"network": anywhere, "netmask": anywhere, "gateway": str(subnet.gateway)})
    for route in subnet.routes:
        routes.append({"network": str(route.cidr.network_address),
                       "netmask": str(route.cidr.netmask),
                       "gateway": str(route.gateway)})
    return routes


def _dns(subnet: Subnet) -> list[dict[str, str]]:
    return [{"type": "dns", "address": address} for address in subnet.dns]
