"""glean (OpenStack's own config-drive reader, from PyPI) on our ISO and VFAT drives.

glean writes a guest's network files from network_data.json and root's
authorized_keys from meta_data.json; it was written by others, against
Nova's drives. Each sample is built by the real CLI, extracted by bsdtar or
mtools (we cannot mount), and glean runs `--noop --ssh` on a scratch root
whose mnt/config is that directory: what it prints is what it would write.
The expectations come from the spec, not from our renderer.
"""
from __future__ import annotations

import ipaddress
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from metadata_content.spec import read_spec
from tests.conftest import SAMPLE_SPECS
from tests.support.readers import build_drive, glean_probe, physical_nics

ENI_D = "/etc/network/interfaces.d"
NETWORKD = "/etc/systemd/network"


def _dns(spec: dict[str, Any]) -> list[str]:
    subnets = [s for item in (*spec.get("nics", []), *spec.get("vlans", [])) for s in item.get("subnets", [])]
    return [d for s in subnets for d in s.get("dns", [])]


def _static(subnet: dict[str, Any]) -> bool:
    """A fixed address glean configures (DHCP and SLAAC subnets are left to the guest)."""
    return not subnet.get("dhcp") and subnet.get("ipv6_address_mode") not in ("slaac", "dhcpv6-stateless")


def _eni_subnets(name: str, subnets: list[dict[str, Any]]) -> list[str]:
    lines = []
    for subnet in subnets:
        net = ipaddress.ip_network(subnet["cidr"])
        if net.version == 4 and subnet.get("dhcp"):
            lines.append(f"iface {name} inet dhcp")
        if not _static(subnet):
            continue
        family, mask = ("inet", str(net.netmask)) if net.version == 4 else ("inet6", str(net.prefixlen))
        lines += [f"iface {name} {family} static", f"address {subnet['ip']}", f"netmask {mask}"]
        if subnet.get("gateway"):
            lines.append(f"gateway {subnet['gateway']}")
        for route in subnet.get("routes", []):
            dest = ipaddress.ip_network(route["cidr"])
            assert dest.version == 4, "glean's ENI words IPv6 routes otherwise; no sample has one"
            lines.append(f"up route add -net {dest.network_address} netmask {dest.netmask} "
                         f"gw {route['gateway']} || true")
    return lines


def eni_expected(spec: dict[str, Any]) -> dict[str, list[str]]:
    """{file: lines it must hold} for glean's Debian flavour; the keys are all its interface files."""
    expected: dict[str, list[str]] = defaultdict(list)
    bonded = {link: bond["name"] for bond in spec.get("bonds", []) for link in bond["links"]}
    for nic in spec.get("nics", []):
        lines = expected[f"{ENI_D}/{nic['name']}.cfg"]
        lines.append(f"auto {nic['name']}")
        if nic["name"] in bonded:
            lines += [f"iface {nic['name']} inet manual", f"bond-master {bonded[nic['name']]}"]
        lines += _eni_subnets(nic["name"], nic.get("subnets", []))
    for bond in spec.get("bonds", []):
        expected[f"{ENI_D}/{bond['name']}.cfg"] += [
            f"iface {bond['name']} inet manual", f"bond-mode {bond['mode']}", f"bond-miimon {bond['miimon']}",
            f"bond-xmit_hash_policy {bond['hash_policy']}",
            f"post-up ifenslave {bond['name']} {' '.join(bond['links'])}"]
    for vlan in spec.get("vlans", []):
        name = f"{vlan['link']}.{vlan['vlan_id']}"
        expected[f"{ENI_D}/{name}.cfg"] += [f"vlan-raw-device {vlan['link']}",
                                            *_eni_subnets(name, vlan.get("subnets", []))]
    return expected


def _networkd_subnets(subnets: list[dict[str, Any]]) -> list[str]:
    lines = []
    for subnet in subnets:
        net = ipaddress.ip_network(subnet["cidr"])
        if net.version == 4 and subnet.get("dhcp"):
            lines.append("DHCP=ipv4")
        if not _static(subnet):
            continue
        lines.append(f"Address={subnet['ip']}/{net.prefixlen}")
        if subnet.get("gateway"):
            lines.append(f"[Route]\nDestination={'0.0.0.0/0' if net.version == 4 else '::/0'}\n"
                         f"Gateway={subnet['gateway']}")
        lines += [f"[Route]\nDestination={r['cidr']}\nGateway={r['gateway']}" for r in subnet.get("routes", [])]
        lines += [f"DNS={d}" for d in subnet.get("dns", [])]
    return lines


def networkd_expected(spec: dict[str, Any]) -> dict[str, list[str]]:
    """{file: lines (or blocks) it must hold} for glean's systemd-networkd flavour."""
    expected: dict[str, list[str]] = defaultdict(list)
    bonded = {link: bond["name"] for bond in spec.get("bonds", []) for link in bond["links"]}
    for nic in spec.get("nics", []):
        lines = expected[f"{NETWORKD}/{nic['name']}.network"]
        lines += [f"MACAddress={nic['mac']}", f"Name={nic['name']}", *_networkd_subnets(nic.get("subnets", []))]
        if nic["name"] in bonded:
            lines.append(f"Bond={bonded[nic['name']]}")
    for bond in spec.get("bonds", []):
        expected[f"{NETWORKD}/{bond['name']}.netdev"] += [
            f"Name={bond['name']}", "Kind=bond", f"Mode={bond['mode']}", f"MIIMonitorSec={bond['miimon']}",
            f"TransmitHashPolicy={bond['hash_policy']}"]
    for vlan in spec.get("vlans", []):
        name = f"{vlan['link']}-vlan{vlan['vlan_id']}"  # glean's own naming
        expected[f"{NETWORKD}/{name}.netdev"] += [f"Name={name}", "Kind=vlan", f"Id={vlan['vlan_id']}"]
        expected[f"{NETWORKD}/{name}.network"] += _networkd_subnets(vlan.get("subnets", []))
        expected[f"{NETWORKD}/{vlan['link']}.network"].append(f"VLAN={name}")
    return expected


def _missing(text: str, wanted: list[str]) -> list[str]:
    """The wanted lines (or blocks of lines) that are not whole lines of *text*."""
    padded = "\n" + "\n".join(line.strip() for line in text.splitlines()) + "\n"
    return [w for w in wanted if f"\n{w}\n" not in padded]


def _problems(flavour: str, files: dict[str, str], expected: dict[str, list[str]]) -> list[str]:
    found = []
    for path, wanted in expected.items():
        missing = _missing(files[path], wanted) if path in files else ["(file not written)"]
        if missing:
            found.append(f"{flavour} {path} lacks {missing}; it wrote:\n{files.get(path, '')}")
    return found


def _keys_and_dns(spec: dict[str, Any], files: dict[str, str]) -> list[str]:
    found = []
    ssh_keys = [k["data"] for k in spec.get("keys", []) if k.get("type", "ssh") == "ssh"]
    authorized = files.get("/root/.ssh/authorized_keys", "")
    if _missing(authorized, ssh_keys) or (not ssh_keys and "ssh-" in authorized):
        found.append(f"authorized_keys should hold exactly the ssh keys {ssh_keys}:\n{authorized}")
    dns = _dns(spec)
    # glean writes resolv.conf, or resolved.conf where systemd-resolved is enabled on the host
    resolv = files.get("/etc/resolv.conf", "") or files.get("/etc/systemd/resolved.conf", "")
    if dns != [line.split()[1] for line in resolv.splitlines() if line.startswith("nameserver ")] \
            and f"DNS={' '.join(dns)}" not in resolv.splitlines():
        found.append(f"DNS should be {dns}:\n{resolv}")
    return found


@pytest.mark.parametrize("fmt", ["iso", "vfat"])
@pytest.mark.parametrize("sample", SAMPLE_SPECS, ids=lambda p: p.stem)
def test_glean_writes_the_spec_s_network_and_keys(sample: Path, fmt: str, tmp_path: Path) -> None:
    """glean's Debian (ENI) and networkd files for each sample's drive: addresses,
    routes, DNS, bonds with mode, miimon and hash policy, VLANs; and root's keys."""
    spec = read_spec(sample)
    drive = build_drive(sample, fmt, tmp_path)
    result = glean_probe(str(drive), str(tmp_path / "root"), *(f"--nic={n}" for n in physical_nics(spec)))
    eni, networkd = result["files"]["debian"], result["files"]["networkd"]

    expected = eni_expected(spec)
    written = {p for p in eni if p.startswith(ENI_D + "/")}
    assert written == set(expected), f"interface files: {sorted(written)}"
    problems = [*_problems("debian", eni, expected), *_problems("networkd", networkd, networkd_expected(spec)),
                *_keys_and_dns(spec, eni), *_keys_and_dns(spec, networkd)]
    assert not problems, "\n".join(problems)
