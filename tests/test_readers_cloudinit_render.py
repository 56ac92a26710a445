"""Debian's cloud-init (22.4.2) renders our network_data.json with its own renderers.

tests/test_cloudinit_consumer.py proves cloud-init reads our drives; this
goes to the end of cloud-init's path: convert_net_json, network state, and
the ENI, netplan, sysconfig and networkd renderers writing a guest's files
into a scratch target. The rendered text must carry what the spec says
(addresses, routes, DNS, MTU, bond mode, miimon and hash policy, VLANs);
expectations come from the spec, not from our renderer. cloud-init 22.4's
networkd renderer writes no .netdev files, so bonds and VLANs are asserted
in the other three.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from metadata_content.spec import read_spec
from tests.conftest import SAMPLE_SPECS
from tests.support.readers import build_drive, cloudinit_render


def _interfaces(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """NICs and VLANs: everything that carries subnets, with the name cloud-init gives it."""
    return [*spec.get("nics", []), *spec.get("vlans", [])]


def _static(subnet: dict[str, Any]) -> bool:
    return not subnet.get("dhcp") and subnet.get("ipv6_address_mode") not in ("slaac", "dhcpv6-stateless")


def _subnets(item: dict[str, Any]) -> list[tuple[dict[str, Any], ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    return [(s, ipaddress.ip_network(s["cidr"])) for s in item.get("subnets", [])]


def _dns(spec: dict[str, Any]) -> list[str]:
    return [d for item in _interfaces(spec) for s in item.get("subnets", []) for d in s.get("dns", [])]


def _lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip()}


def eni_problems(spec: dict[str, Any], text: str) -> list[str]:
    want: list[str] = []
    for item in _interfaces(spec):
        name = item["name"]
        if item.get("mtu"):
            want.append(f"mtu {item['mtu']}")
        if "vlan_id" in item:
            want += [f"vlan-raw-device {item['link']}", f"vlan_id {item['vlan_id']}"]
        for subnet, net in _subnets(item):
            if subnet.get("dhcp"):
                want.append(f"iface {name} inet dhcp")
            elif not _static(subnet):
                want.append(f"iface {name} inet6 auto")
            else:
                family, inet6 = ("inet", "") if net.version == 4 else ("inet6", "-A inet6 ")
                want += [f"iface {name} {family} static", f"address {subnet['ip']}/{net.prefixlen}"]
                if subnet.get("gateway"):
                    want.append(f"post-up route add {inet6}default gw {subnet['gateway']} || true")
                want += [f"post-up route add {inet6}-net {r['cidr']} gw {r['gateway']} || true"
                         for r in subnet.get("routes", [])]
    for bond in spec.get("bonds", []):
        want += [f"auto {bond['name']}", f"bond_mode {bond['mode']}", f"bond_miimon {bond['miimon']}",
                 f"bond_xmit_hash_policy {bond['hash_policy']}", f"bond-master {bond['name']}"]
    if _dns(spec):
        want.append(f"dns-nameservers {' '.join(_dns(spec))}")
    return [f"ENI lacks {w!r}" for w in want if w not in _lines(text)]


def netplan_problems(spec: dict[str, Any], text: str) -> list[str]:
    doc = (yaml.safe_load(text) or {}).get("network", {})
    problems = []

    def check(what: str, got: Any, want: Any) -> None:
        if got != want:
            problems.append(f"netplan {what}: {got!r}, want {want!r}")

    for item in _interfaces(spec):
        section = "vlans" if "vlan_id" in item else "ethernets"
        conf = doc.get(section, {}).get(item["name"], {})
        check(f"{item['name']} mtu", conf.get("mtu"), item.get("mtu"))
        if "vlan_id" in item:
            check(f"{item['name']} id/link", (conf.get("id"), conf.get("link")), (item["vlan_id"], item["link"]))
        else:
            check(f"{item['name']} match", conf.get("match"), {"macaddress": item["mac"]})
        statics = [(s, n) for s, n in _subnets(item) if _static(s)]
        check(f"{item['name']} addresses", conf.get("addresses"),
              [f"{s['ip']}/{n.prefixlen}" for s, n in statics] or None)
        routes = []
        for s, n in statics:
            if s.get("gateway"):
                routes.append({"to": "0.0.0.0/0" if n.version == 4 else "::/0", "via": s["gateway"]})
            routes += [{"to": r["cidr"], "via": r["gateway"]} for r in s.get("routes", [])]
        check(f"{item['name']} routes", sorted(map(str, conf.get("routes", []))), sorted(map(str, routes)))
        if statics and _dns(spec):
            check(f"{item['name']} DNS", conf.get("nameservers", {}).get("addresses"), _dns(spec))
        if any(s.get("dhcp") for s, _ in _subnets(item)):
            check(f"{item['name']} dhcp4", conf.get("dhcp4"), True)
    for bond in spec.get("bonds", []):
        conf = doc.get("bonds", {}).get(bond["name"], {})
        check(f"{bond['name']} interfaces", conf.get("interfaces"), bond["links"])
        check(f"{bond['name']} mtu", conf.get("mtu"), bond.get("mtu"))
        check(f"{bond['name']} parameters", conf.get("parameters"), {
            "mode": bond["mode"], "mii-monitor-interval": bond["miimon"], "transmit-hash-policy": bond["hash_policy"]})
    return problems


def _sysconfig(files: dict[str, str], name: str) -> dict[str, str]:
    text = files.get(f"sysconfig/etc/sysconfig/network-scripts/{name}", "")
    return dict(line.split("=", 1) for line in _lines(text) if "=" in line and not line.startswith("#"))


def sysconfig_problems(spec: dict[str, Any], files: dict[str, str]) -> list[str]:
    problems = []

    def check(what: str, got: Any, want: Any) -> None:
        if got != want:
            problems.append(f"sysconfig {what}: {got!r}, want {want!r}")

    for item in _interfaces(spec):
        name = item["name"]
        ifcfg = _sysconfig(files, f"ifcfg-{name}")
        check(f"ifcfg-{name} MTU", ifcfg.get("MTU"), str(item["mtu"]) if item.get("mtu") else None)
        if "vlan_id" in item:
            check(f"ifcfg-{name} VLAN/PHYSDEV", (ifcfg.get("VLAN"), ifcfg.get("PHYSDEV")), ("yes", item["link"]))
        else:
            check(f"ifcfg-{name} HWADDR", ifcfg.get("HWADDR"), item["mac"])
        route_file = _sysconfig(files, f"route-{name}")
        extra_routes = []
        for subnet, net in _subnets(item):
            if subnet.get("dhcp"):
                check(f"ifcfg-{name} BOOTPROTO", ifcfg.get("BOOTPROTO"), "dhcp")
            elif _static(subnet) and net.version == 4:
                check(f"ifcfg-{name} IPv4", (ifcfg.get("IPADDR"), ifcfg.get("NETMASK"), ifcfg.get("GATEWAY")),
                      (subnet["ip"], str(net.netmask), subnet.get("gateway")))
                extra_routes += [r["cidr"] for r in subnet.get("routes", [])]
            elif _static(subnet):
                check(f"ifcfg-{name} IPv6", (ifcfg.get("IPV6ADDR"), ifcfg.get("IPV6_DEFAULTGW")),
                      (f"{subnet['ip']}/{net.prefixlen}", subnet.get("gateway")))
        got_routes = [str(ipaddress.ip_network(f"{route_file[f'ADDRESS{i}']}/{route_file[f'NETMASK{i}']}"))
                      for i in range(len(extra_routes)) if f"ADDRESS{i}" in route_file]
        check(f"route-{name}", got_routes, extra_routes)
    for bond in spec.get("bonds", []):
        ifcfg = _sysconfig(files, f"ifcfg-{bond['name']}")
        check(f"ifcfg-{bond['name']} TYPE/MTU", (ifcfg.get("TYPE"), ifcfg.get("MTU")), ("Bond", str(bond["mtu"])))
        check(f"ifcfg-{bond['name']} BONDING_OPTS", sorted(ifcfg.get("BONDING_OPTS", "").strip('"').split()),
              sorted([f"mode={bond['mode']}", f"miimon={bond['miimon']}", f"xmit_hash_policy={bond['hash_policy']}"]))
        for link in bond["links"]:
            member = _sysconfig(files, f"ifcfg-{link}")
            check(f"ifcfg-{link} MASTER", (member.get("MASTER"), member.get("SLAVE")), (bond["name"], "yes"))
    resolv = files.get("sysconfig/etc/resolv.conf", "")
    check("resolv.conf", [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver ")],
          _dns(spec))
    return problems


def networkd_problems(spec: dict[str, Any], files: dict[str, str]) -> list[str]:
    problems = []
    for item in _interfaces(spec):
        path = f"networkd/etc/systemd/network/10-cloud-init-{item['name']}.network"
        # blank lines dropped: cloud-init 22.4 puts one between a route's Destination and Gateway
        text = "\n" + "\n".join(sorted(_lines(files.get(path, "")))) + "\n"
        want = [f"Name={item['name']}"]
        if item.get("mtu"):
            want.append(f"MTUBytes={item['mtu']}")
        if "mac" in item:
            want.append(f"MACAddress={item['mac']}")
        for subnet, net in _subnets(item):
            if subnet.get("dhcp"):
                want.append("DHCP=ipv4")
            elif _static(subnet):
                want.append(f"Address={subnet['ip']}/{net.prefixlen}")
                if subnet.get("gateway"):
                    want += [f"Destination={'0.0.0.0/0' if net.version == 4 else '::/0'}",
                             f"Gateway={subnet['gateway']}"]
                want += [line for r in subnet.get("routes", [])
                         for line in (f"Destination={r['cidr']}", f"Gateway={r['gateway']}")]
        if _dns(spec):
            want.append(f"DNS={' '.join(_dns(spec))}")
        problems += [f"networkd {path} lacks {w!r}" for w in want if f"\n{w}\n" not in text]
    return problems


@pytest.mark.parametrize("sample", SAMPLE_SPECS, ids=lambda p: p.stem)
def test_cloud_init_renders_the_spec_s_network(sample: Path, tmp_path: Path) -> None:
    """Our drive's network_data.json through cloud-init's convert_net_json and its
    ENI, netplan, sysconfig and networkd renderers."""
    spec = read_spec(sample)
    drive = build_drive(sample, "iso", tmp_path)
    macs = [f"--mac={nic['name']}={nic['mac']}" for nic in spec.get("nics", [])]
    files = cloudinit_render(drive / "openstack" / "latest" / "network_data.json", tmp_path / "target", *macs)["files"]
    problems = [*eni_problems(spec, files.get("eni/etc/network/interfaces", "")),
                *netplan_problems(spec, files.get("netplan/etc/netplan/50-cloud-init.yaml", "")),
                *sysconfig_problems(spec, files), *networkd_problems(spec, files)]
    assert not problems, "\n".join(problems)
