"""cloudbase-init (PyPI) reads our drives and our API, and sets its password through it.

cloudbase-init is the Windows guests' cloud-init; its OpenStack services and
password plugin are plain Python over files and requests, so they run here
on Linux. Only what reaches Windows' APIs is left out: ConfigDriveService's
load() (finding and copying the drive through Windows' disk APIs) is replaced
by pointing the service at the drive extracted by bsdtar or mtools, and the
password plugin's Windows step (setting the local account's password) by
calling its metadata step. Expectations come from the spec.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

from metadata_content.spec import read_spec
from tests.conftest import SAMPLE_SPECS, SAMPLES
from tests.support.readers import build_drive, direct_api, loopback_spec, probe


def _hostname(spec: dict[str, Any]) -> str:
    name = spec["hostname"]
    return name if "." in name else f"{name}.{spec.get('dhcp_domain', 'novalocal')}"


def _user_data(spec: dict[str, Any]) -> bytes | None:
    data = spec.get("user_data")
    if data is None:
        return None
    return data["text"].encode() if "text" in data else base64.b64decode(data["base64"])


def _network(spec: dict[str, Any]) -> dict[str, Any]:
    """What get_network_details_v2() must return, as the probe's JSON shows it."""
    links: dict[str, Any] = {}
    for nic in spec.get("nics", []):
        links[nic["name"]] = {"type": "physical", "mac_address": nic["mac"], "mtu": nic.get("mtu"),
                              "bond": None, "vlan_link": None, "vlan_id": None}
    for bond in spec.get("bonds", []):
        links[bond["name"]] = {"type": "bond", "mtu": bond.get("mtu"), "vlan_link": None, "vlan_id": None,
                               "bond": {"members": bond["links"], "type": bond["mode"],
                                        "lb_algorithm": bond["hash_policy"], "lacp_rate": None}}
    for vlan in spec.get("vlans", []):
        links[vlan["name"]] = {"type": "vlan", "mtu": vlan.get("mtu"), "bond": None,
                               "vlan_link": vlan["link"], "vlan_id": vlan["vlan_id"]}
    networks = []
    for item in (*spec.get("nics", []), *spec.get("vlans", [])):
        for subnet in item.get("subnets", []):
            if subnet.get("dhcp") or subnet.get("ipv6_address_mode") in ("slaac", "dhcpv6-stateless"):
                continue  # cloudbase-init configures static networks only
            net = ipaddress.ip_network(subnet["cidr"])
            default = "0.0.0.0/0" if net.version == 4 else "::/0"
            routes = [{"network_cidr": default, "gateway": subnet["gateway"]}] if subnet.get("gateway") else []
            routes += [{"network_cidr": r["cidr"], "gateway": r["gateway"]} for r in subnet.get("routes", [])]
            networks.append({"link": item["name"], "address_cidr": f"{subnet['ip']}/{net.prefixlen}",
                             "dns_nameservers": subnet.get("dns", []), "routes": routes})
    dns = [d for n in networks for d in n["dns_nameservers"]]
    dns += [d for item in spec.get("nics", []) for s in item.get("subnets", []) if s.get("dhcp")
            for d in s.get("dns", [])]
    return {"links": links, "networks": networks, "dns": dns}


def check_openstack_view(spec: dict[str, Any], got: dict[str, Any], on_drive: bool) -> list[str]:
    """Differences between what cloudbase-init's service read and what the spec says."""
    problems = []

    def check(what: str, value: Any, want: Any) -> None:
        if value != want:
            problems.append(f"{what}: {value!r}, want {want!r}")

    keys = spec.get("keys", [])
    ssh = [k for k in keys if k.get("type", "ssh") == "ssh"]
    check("instance id", got["instance_id"], spec["uuid"])
    check("host name", got["host_name"], _hostname(spec))
    # SSH keys only (Nova would add an x509 keypair's certificate, which cloudbase-init could
    # then pick to encrypt the password with); get_public_keys strips them
    check("public keys", got["public_keys"], sorted({k["data"].strip() for k in ssh}))
    check("client auth certs", got["client_auth_certs"],
          sorted(k["data"].strip() for k in keys if k.get("type") == "x509"))
    # Nova's public_keys values end with a newline, as ssh-keygen writes a .pub file
    check("public_keys values end with a newline", {n: v.endswith("\n") for n, v in got["raw_public_keys"].items()},
          {k["name"]: True for k in ssh})
    user_data = _user_data(spec)
    check("user data", got["user_data_b64"], None if user_data is None else base64.b64encode(user_data).decode())
    check("admin password", got["admin_password"], spec.get("admin_pass") if on_drive else None)
    check("admin username", got["admin_username"], spec.get("meta", {}).get("admin_username"))

    want = _network(spec)
    network = got["network"]
    if not spec.get("nics"):
        check("network", network, {"links": [], "networks": [], "services": []})
        return problems
    links = {link.pop("id"): link for link in network["links"]}
    for name, link in links.items():
        check(f"link {name} name/enabled", (link.pop("name"), link.pop("enabled")), (name, True))
    for name, link in want["links"].items():
        got_link = links.get(name, {})
        if "mac_address" not in link:
            got_link.pop("mac_address", None)  # bonds and VLANs: the first member's, Nova's choice
        check(f"link {name}", got_link, link)
    check("links", sorted(links), sorted(want["links"]))
    check("networks", network["networks"], want["networks"])
    check("DNS service", [a for s in network["services"] for a in s["addresses"]], want["dns"])
    return problems


@pytest.mark.parametrize("fmt", ["iso", "vfat"])
@pytest.mark.parametrize("sample", SAMPLE_SPECS, ids=lambda p: p.stem)
def test_config_drive_service_reads_our_drive(sample: Path, fmt: str, tmp_path: Path) -> None:
    """ConfigDriveService over each sample's drive: identity, keys, certificates, user
    data, admin password and the network details its NetworkConfigPlugin applies."""
    spec = read_spec(sample)
    got = probe("cloudbase-drive", str(build_drive(sample, fmt, tmp_path)))
    problems = check_openstack_view(spec, got, on_drive=True)
    assert not problems, "\n".join(problems)


def test_http_service_reads_our_api(tmp_path: Path) -> None:
    """HttpService against the real API in direct mode (the rich sample on 127.0.0.1):
    the same view as from the drive, without admin_pass (Nova: drive only)."""
    spec_path = loopback_spec(SAMPLES / "rich.yaml", tmp_path)
    spec = json.loads(spec_path.read_text())
    with direct_api(tmp_path, spec_path) as api:
        got = probe("cloudbase-http", api.url)
    assert got["loaded"] and got["can_post_password"]
    problems = check_openstack_view(spec, got, on_drive=False)
    assert not problems, "\n".join(problems)


def test_password_is_posted_once(tmp_path: Path) -> None:
    """SetUserPasswordPlugin encrypts the password with the instance's SSH RSA key and
    POSTs it; it reads back (decrypted with the private key) as posted; a second POST
    gets 409 and changes nothing."""
    key = tmp_path / "id_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "admin@test", "-f", str(key)],
                   check=True, timeout=60)
    # windows.yaml as it is (its RSA key and its WinRM certificate), with a key whose private
    # half the test holds in place of the sample's: the plugin must pick the RSA key every time
    spec = loopback_spec(SAMPLES / "windows.yaml", tmp_path,
                         keys=[{"name": "admin", "data": key.with_suffix(".pub").read_text().strip()},
                               {"name": "winrm-cert", "type": "x509",
                                "data": (SAMPLES / "files" / "winrm-cert.pem").read_text().strip()}])
    password = "Cb-" + secrets.token_urlsafe(12)
    with direct_api(tmp_path, spec) as api:
        got = probe("cloudbase-password", api.url, password, str(key))
        stored = api.request("GET", "/openstack/latest/password").body
    assert got["can_post_password"] and not got["set_before"]
    assert got["first"] is True and got["set_after"] is True
    assert got["decrypted"] == password
    assert stored and base64.b64decode(stored)  # what a user's `nova get-password` decrypts
    assert got["again"] is True  # the plugin sees the password set and posts nothing
    # cloudbase-init 1.1.9 catches urllib's HTTPError for 409, but requests raises its own
    assert got["second_post"] in ({"raised": "HTTPError", "status": 409}, {"returned": False})
    assert got["stored_after_second"]
