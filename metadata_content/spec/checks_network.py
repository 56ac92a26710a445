"""Semantic checks on the friendly network form: NICs, bonds, VLANs, subnets."""
from __future__ import annotations

from functools import partial
from typing import Any

from metadata_content.spec.validators import IFNAME, Checker, cidr_error, ip_error, mac_error, uuid_error


def check_friendly_network(c: Checker) -> None:
    data = c.data
    names: dict[str, str] = {}   # link name -> its path
    macs: dict[str, str] = {}
    fixed: dict[tuple[str | None, str], str] = {}
    for kind in ("nics", "bonds", "vlans"):
        for i, holder in enumerate(data.get(kind, [])):
            where = f"{kind}[{i}]"
            name = holder.get("name")
            if name is not None:
                if not IFNAME.fullmatch(name):
                    c.add(f"{where}.name",
                          f"{name!r} is not a Linux interface name (1-15 characters, no '/', ':' or spaces)")
                elif name in names:
                    c.add(f"{where}.name", f"{name!r} is already the name of {names[name]}")
                names.setdefault(name, where)
            mac = holder.get("mac")
            c.check(f"{where}.mac", mac, mac_error)
            if kind == "nics" and mac:
                if mac.lower() in macs:
                    c.add(f"{where}.mac", f"duplicate MAC {mac} (also {macs[mac.lower()]}.mac)")
                macs.setdefault(mac.lower(), where)
            c.check(f"{where}.port_id", holder.get("port_id"), uuid_error)
            c.check(f"{where}.network_id", holder.get("network_id"), uuid_error)
            for j, subnet in enumerate(holder.get("subnets", [])):
                _check_subnet(c, f"{where}.subnets[{j}]", subnet, holder.get("network_id"), fixed)
    nic_names = {n.get("name") for n in data.get("nics", []) if n.get("name")}
    enslaved: dict[str, str] = {}
    for i, bond in enumerate(data.get("bonds", [])):
        for j, member in enumerate(bond["links"]):
            where = f"bonds[{i}].links[{j}]"
            if member not in nic_names:
                c.add(where, f"no NIC is named {member!r}")
            elif member in enslaved:
                c.add(where, f"{member!r} is already a member of {enslaved[member]}")
            enslaved.setdefault(member, f"bonds[{i}]")
    linkable = nic_names | {b["name"] for b in data.get("bonds", [])}
    for i, vlan in enumerate(data.get("vlans", [])):
        if vlan["link"] not in linkable:
            c.add(f"vlans[{i}].link", f"no NIC or bond is named {vlan['link']!r}")


def _check_subnet(c: Checker, where: str, subnet: dict[str, Any], network_id: str | None,
                  fixed: dict[tuple[str | None, str], str]) -> None:
    parsed = c.addresses
    error = cidr_error(subnet["cidr"], parsed)
    if error:
        c.add(f"{where}.cidr", error)
        return
    net = parsed.network(subnet["cidr"])
    for field in ("ip", "gateway"):
        value = subnet.get(field)
        if value is None:
            continue
        error = ip_error(value, net.version, parsed)
        if error:
            c.add(f"{where}.{field}", error)
            continue
        address = parsed.ip(value)
        if address not in net:
            c.add(f"{where}.{field}", f"{value} is outside the subnet {net}")
        elif net.version == 4 and net.prefixlen < 31 and address in (net.network_address, net.broadcast_address):
            which = "network" if address == net.network_address else "broadcast"
            c.add(f"{where}.{field}", f"{value} is the {which} address of {net}")
    if subnet.get("ip") and subnet.get("ip") == subnet.get("gateway"):
        c.add(f"{where}.gateway", "is the instance's own fixed IP")
    if subnet.get("ip") is None and not subnet.get("dhcp") and subnet.get("ipv6_address_mode") is None:
        c.add(f"{where}.ip", "is required on a static subnet (or set dhcp: true)")
    if subnet.get("ipv6_address_mode") and net.version != 6:
        c.add(f"{where}.ipv6_address_mode", "applies to IPv6 subnets only")
    if subnet.get("ip"):
        key = (network_id, str(parsed.ip(subnet["ip"])) if not ip_error(subnet["ip"], None, parsed) else subnet["ip"])
        if key in fixed:
            c.add(f"{where}.ip", f"{subnet['ip']} is already used by {fixed[key]}")
        fixed.setdefault(key, where)
    for k, server in enumerate(subnet.get("dns", [])):
        c.check(f"{where}.dns[{k}]", server, lambda v: ip_error(v, None, parsed))
    for k, route in enumerate(subnet.get("routes", [])):
        error = cidr_error(route["cidr"], parsed)
        if error:
            c.add(f"{where}.routes[{k}].cidr", error)
            continue
        version = parsed.network(route["cidr"]).version
        if version != net.version:
            c.add(f"{where}.routes[{k}].cidr", f"is IPv{version} on an IPv{net.version} subnet")
            continue
        c.check(f"{where}.routes[{k}].gateway", route["gateway"],
                partial(ip_error, version=version, addresses=parsed))
    c.check(f"{where}.floating_ip", subnet.get("floating_ip"), lambda v: ip_error(v, 4, parsed))
