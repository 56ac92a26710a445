"""The cloud-init harness against hand-written trees: proves the harness, not the renderer.

Trees here are written by hand (drive layout, Nova's EC2 listing rules) so a
failure points at the harness or at cloud-init's expectations, never at
metadata_content. The network_data.json documents of test_network_schema are
also fed to cloud-init, so the schema accepts what cloud-init can convert.
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import cloudinit_consumer as cc
from tests.support.cloudinit_consumer import (
    CloudInitError,
    CloudInitUnavailable,
    b64decode_field,
    crawl_ec2,
    read_config_drive_dir,
    read_http_openstack,
    static_http_server,
)
from tests.test_network_schema import BOND_VLAN_DOC, NOVA_DOC

UUID = "0b1c9a3e-5f7d-4e2a-9c1b-7d8e6f5a4b3c"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEQQZHMXZzcK mykey"
USER_DATA = b"#cloud-config\n# not UTF-8: \xff\xfe\n"
MOTD = b"hello from the config drive\n"
MAC = "fa:16:3e:12:34:56"

META_DATA: dict[str, Any] = {
    "uuid": UUID,
    "files": [{"path": "/etc/motd", "content_path": "/content/0000"}],
    "public_keys": {"mykey": SSH_KEY},
    "keys": [{"name": "mykey", "type": "ssh", "data": SSH_KEY}],
    "hostname": "vm1.novalocal",
    "name": "vm1",
    "launch_index": 0,
    "availability_zone": "nova",
}
NETWORK_DATA: dict[str, Any] = {
    "links": [{"id": "tap12345678-9a", "vif_id": "12345678-9abc-4def-8123-456789abcdef", "type": "ovs",
               "mtu": 1450, "ethernet_mac_address": MAC}],
    "networks": [{"id": "network0", "type": "ipv4", "link": "tap12345678-9a", "ip_address": "10.0.0.5",
                  "netmask": "255.255.255.0",
                  "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}],
                  "network_id": "6a1f2c3d-0000-4000-8000-000000000001",
                  "services": [{"type": "dns", "address": "10.0.0.2"}]}],
    "services": [{"type": "dns", "address": "10.0.0.2"}],
}
EC2_META: dict[str, Any] = {
    "ami-id": "ami-00000001",
    "ami-launch-index": "0",
    "block-device-mapping": {"ami": "vda", "root": "/dev/vda"},
    "hostname": "vm1.novalocal",
    "instance-id": "i-00000001",
    "local-ipv4": "10.0.0.5",
    "placement": {"availability-zone": "nova"},
    "public-keys": {"0": {"openssh-key": SSH_KEY}},
    "security-groups": "default",
}


def _dump(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def write_drive(root: Path, meta: dict[str, Any] = META_DATA, network: dict[str, Any] | None = NETWORK_DATA) -> Path:
    files = {
        "openstack/latest/meta_data.json": _dump(meta),
        "openstack/latest/user_data": USER_DATA,
        "openstack/content/0000": MOTD,
        "ec2/latest/meta-data.json": _dump(EC2_META),
    }
    if network is not None:
        files["openstack/latest/network_data.json"] = _dump(network)
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    return root


def ec2_paths(prefix: str, tree: dict[str, Any]) -> dict[str, bytes]:
    """Nova's EC2 listing rules: sorted keys, sub-dicts as ``key/``, public-keys as ``N=name``, no trailing newline."""
    out: dict[str, bytes] = {}
    listing = []
    for key in sorted(tree):
        value = tree[key]
        if key == "public-keys":
            listing.append("public-keys/")
            names = {str(i): entry["openssh-key"].split()[-1] for i, entry in value.items()}
            out[f"{prefix}public-keys/"] = "\n".join(f"{i}={n}" for i, n in sorted(names.items())).encode()
            for i, entry in value.items():
                out.update(ec2_paths(f"{prefix}public-keys/{i}/", entry))
        elif isinstance(value, dict):
            listing.append(f"{key}/")
            out.update(ec2_paths(f"{prefix}{key}/", value))
        else:
            listing.append(key)
            out[f"{prefix}{key}"] = str(value).encode()
    out[prefix] = "\n".join(listing).encode()
    return out


def cloudinit_ec2_view(tree: dict[str, Any]) -> dict[str, Any]:
    """What cloud-init's crawler makes of EC2_META: public-keys keyed by key name."""
    view = dict(tree)
    view["public-keys"] = {e["openssh-key"].split()[-1]: e["openssh-key"] for e in tree["public-keys"].values()}
    return view


def test_config_drive_dir(tmp_path: Path) -> None:
    result = read_config_drive_dir(write_drive(tmp_path), known_macs={MAC: "ens3"})

    md = result["metadata"]
    assert md["uuid"] == md["instance-id"] == UUID
    assert md["hostname"] == md["local-hostname"] == "vm1.novalocal"
    assert md["public_keys"] == {"mykey": SSH_KEY}
    assert md["keys"] == META_DATA["keys"]
    assert b64decode_field(result, "userdata") == USER_DATA
    assert b64decode_field(result, "files", "/etc/motd") == MOTD
    assert result["ec2-metadata"] == EC2_META
    assert result["networkdata"] == NETWORK_DATA
    assert result["converted_network"] == {"version": 1, "config": [
        {"name": "ens3", "type": "physical", "mac_address": MAC, "mtu": 1450,
         "subnets": [{"type": "static", "address": "10.0.0.5", "netmask": "255.255.255.0", "ipv4": True,
                      "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}]}]},
        {"type": "nameserver", "address": "10.0.0.2"},
    ]}
    assert "vendordata" not in result
    assert result["cloudinit_version"] == "22.4.2"
    assert result["log"] == []


def test_config_drive_without_network_data_has_no_conversion(tmp_path: Path) -> None:
    result = read_config_drive_dir(write_drive(tmp_path, network=None))
    assert "networkdata" not in result and "converted_network" not in result


def test_cloudinit_errors_carry_its_traceback(tmp_path: Path) -> None:
    meta = {k: v for k, v in META_DATA.items() if k != "uuid"}
    with pytest.raises(CloudInitError, match="No 'uuid' entry in metadata") as info:
        read_config_drive_dir(write_drive(tmp_path, meta=meta))
    assert "cloudinit/sources/helpers/openstack.py" in info.value.traceback


def test_unknown_mac_is_cloudinits_error(tmp_path: Path) -> None:
    with pytest.raises(CloudInitError, match="Unable to find a system nic"):
        read_config_drive_dir(write_drive(tmp_path), known_macs={"fa:16:3e:00:00:00": "ens9"})


@pytest.mark.parametrize("doc", [NOVA_DOC, BOND_VLAN_DOC], ids=["nova", "bond-vlan"])
def test_schema_examples_convert_in_cloudinit(tmp_path: Path, doc: dict[str, Any]) -> None:
    macs = {link["ethernet_mac_address"].lower(): f"nic{i}"
            for i, link in enumerate(doc["links"]) if link["type"] not in ("bond", "vlan")}
    config = read_config_drive_dir(write_drive(tmp_path, network=doc), known_macs=macs)["converted_network"]["config"]
    by_name = {c["name"]: c for c in config if "name" in c}
    if doc is BOND_VLAN_DOC:
        assert by_name["bond0"]["bond_interfaces"] == ["nic0", "nic1"]
        assert by_name["bond0"]["params"]["bond_mode"] == "802.3ad"
        assert by_name["bond0.602"]["vlan_link"] == "bond0"
        assert by_name["bond0.612"]["mac_address"] is None
    else:
        assert [s["type"] for s in by_name["nic0"]["subnets"]] == ["static", "static6"]
        assert [s["type"] for s in by_name["nic1"]["subnets"]] == ["dhcp4", "ipv6_slaac"]


def openstack_http_paths() -> dict[str, bytes]:
    paths = {
        "/openstack": b"2012-08-10\n2013-04-04\n2013-10-17\n2015-10-15\nlatest",
        "/openstack/latest/meta_data.json": _dump({k: v for k, v in META_DATA.items() if k != "files"}),
        "/openstack/latest/user_data": USER_DATA,
        "/openstack/latest/vendor_data.json": b"{}",
        "/openstack/latest/network_data.json": _dump(NETWORK_DATA),
        "/openstack/latest/password": b"",
    }
    for version in ("2015-10-15",):  # cloud-init prefers the newest dated version it knows
        for name in ("meta_data.json", "user_data", "vendor_data.json", "network_data.json"):
            paths[f"/openstack/{version}/{name}"] = paths[f"/openstack/latest/{name}"]
    paths.update(ec2_paths("/latest/meta-data/", EC2_META))
    return paths


def test_http_openstack() -> None:
    with static_http_server(openstack_http_paths()) as url:
        result = read_http_openstack(url)

    assert result["metadata"]["instance-id"] == UUID
    assert result["metadata"]["public_keys"] == {"mykey": SSH_KEY}
    assert b64decode_field(result, "userdata") == USER_DATA
    assert result["vendordata"] == {}
    assert result["networkdata"] == NETWORK_DATA
    assert result["files"] == {}
    assert result["ec2-metadata"] == cloudinit_ec2_view(EC2_META)
    assert all(r.startswith(url) for r in result["requests"])
    assert f"{url}/openstack/2015-10-15/meta_data.json" in result["requests"]
    assert result["log"] == []


def test_crawl_ec2() -> None:
    paths = ec2_paths("/2009-04-04/meta-data/", EC2_META)
    paths["/2009-04-04/user-data"] = USER_DATA
    with static_http_server(paths) as url:
        result = crawl_ec2(url)

    assert result["meta-data"] == cloudinit_ec2_view(EC2_META)
    assert b64decode_field(result, "user-data") == USER_DATA
    # One GET per directory listing and per leaf, plus user-data; cloud-init
    # never lists public-keys/0/ itself but goes straight to 0/openssh-key.
    dirs = ["", "block-device-mapping/", "placement/", "public-keys/"]
    leaves = ["block-device-mapping/ami", "block-device-mapping/root", "placement/availability-zone",
              "public-keys/0/openssh-key", "ami-id", "ami-launch-index", "hostname", "instance-id",
              "local-ipv4", "security-groups"]
    expected = [f"{url}/2009-04-04/meta-data/{p}" for p in dirs + leaves] + [f"{url}/2009-04-04/user-data"]
    assert sorted(result["requests"]) == sorted(expected)
    assert result["log"] == []


def test_crawl_ec2_reports_swallowed_failures() -> None:
    with static_http_server({}) as url:
        result = crawl_ec2(url)
    assert result["meta-data"] == {}
    assert any("Failed fetching meta-data/" in line for line in result["log"])


def test_missing_debian_python_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cc, "DEBIAN_PYTHON", "/nonexistent/python3")
    with pytest.raises(CloudInitUnavailable, match="apt-get install cloud-init"):
        read_config_drive_dir("/nonexistent")


def test_python_without_cloudinit_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # The venv's interpreter does not see Debian's dist-packages.
    monkeypatch.setattr(cc, "DEBIAN_PYTHON", sys.executable)
    with pytest.raises(CloudInitUnavailable, match="cloud-init"):
        read_config_drive_dir("/nonexistent")


def test_netns_runs_the_probe_inside_the_namespace() -> None:
    """127.0.0.1 inside a fresh namespace is not ours: the crawl must fail there and work outside."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root (ip netns), as CI has")
    name = f"cfgd-probe-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        paths = ec2_paths("/2009-04-04/meta-data/", EC2_META)
        with static_http_server(paths) as url:
            assert crawl_ec2(url)["meta-data"] == cloudinit_ec2_view(EC2_META)
            inside = crawl_ec2(url, netns=name)
        assert inside["meta-data"] == {}
        assert any("Connection refused" in line or "Failed fetching" in line for line in inside["log"])
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def test_base64_fields_list_only_bytes(tmp_path: Path) -> None:
    result = read_config_drive_dir(write_drive(tmp_path), known_macs={MAC: "ens3"})
    assert sorted(result["base64_fields"]) == [["files", "/etc/motd"], ["userdata"]]
    assert base64.b64decode(result["userdata"]) == USER_DATA
