"""Every sample, read by its real consumers: Debian's cloud-init (read_v2 and
convert_net_json on the drive files) and the published network_data.json
schema."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from metadata_content import MetadataTree, load_instance
from metadata_content.render.network import network_data
from metadata_content.spec.network_schema import validate_network_data
from tests.conftest import SAMPLE_SPECS, run_cli
from tests.support.cloudinit_consumer import b64decode_field, read_config_drive_dir
from tests.support.imagetools import write_tree


@pytest.mark.parametrize("spec", SAMPLE_SPECS, ids=[p.stem for p in SAMPLE_SPECS])
def test_sample_is_valid(spec):
    proc = run_cli("validate", str(spec))
    assert proc.returncode == 0, proc.stderr
    assert b": ok (" in proc.stdout


@pytest.mark.parametrize("spec", SAMPLE_SPECS, ids=[p.stem for p in SAMPLE_SPECS])
def test_network_data_matches_published_schema(spec):
    doc = network_data(load_instance(spec))
    assert validate_network_data(doc) == []


@pytest.mark.parametrize("spec", SAMPLE_SPECS, ids=[p.stem for p in SAMPLE_SPECS])
def test_cloud_init_reads_the_drive(spec, tmp_path):
    instance = load_instance(spec)
    files = MetadataTree(instance, delivery="drive").drive_files()
    known_macs = {nic.mac: nic.name for nic in instance.nics if nic.name}
    result = read_config_drive_dir(write_tree(files, tmp_path), known_macs=known_macs)

    md = result["metadata"]
    assert md["uuid"] == instance.uuid
    assert md["hostname"] == instance.fqdn
    assert md.get("public_keys", {}) == {k.name: k.data for k in instance.keys if k.type == "ssh"}
    assert [k["name"] for k in md.get("keys", [])] == [k.name for k in instance.keys]
    if instance.user_data is None:
        assert not result.get("userdata")
    else:
        assert b64decode_field(result, "userdata") == instance.user_data
    for injected in instance.files:
        assert b64decode_field(result, "files", injected.path) == injected.content
    assert result["ec2-metadata"]["instance-id"] == instance.ec2_ids.instance_id
    assert "_name" not in json.dumps(result["ec2-metadata"])

    converted = result.get("converted_network")
    if not instance.nics:
        assert not converted or not converted.get("config")
        return
    physical = {c["name"]: c for c in converted["config"] if c["type"] == "physical"}
    for nic in instance.nics:
        if nic.subnets or nic.name in {m for b in instance.bonds for m in b.links}:
            assert physical[nic.name]["mac_address"] == nic.mac
            if nic.mtu:
                assert physical[nic.name]["mtu"] == nic.mtu
    addresses = {s.get("address") for c in converted["config"] for s in c.get("subnets", [])}
    for port in instance.ports():
        static = any(s.ip is not None and str(s.ip) == port.ip and not s.dhcp and not s.ipv6_address_mode
                     for h in (*instance.nics, *instance.vlans, *instance.bonds) for s in h.subnets)
        if static:
            assert any(a and a.split("/")[0] == port.ip for a in addresses), port


def test_rich_sample_network_config_by_cloud_init(tmp_path):
    """The bond, the VLAN on it, routes and DNS, as cloud-init's network config v1."""
    instance = load_instance(Path(__file__).parent.parent / "samples" / "rich.yaml")
    files = MetadataTree(instance, delivery="drive").drive_files()
    result = read_config_drive_dir(write_tree(files, tmp_path),
                                   known_macs={n.mac: n.name for n in instance.nics})
    config = result["converted_network"]["config"]
    by_name = {c.get("name"): c for c in config}
    assert by_name["bond0"]["type"] == "bond"
    assert sorted(by_name["bond0"]["bond_interfaces"]) == ["eth2", "eth3"]
    assert by_name["bond0"]["params"] == {"bond_mode": "802.3ad", "bond_miimon": 100,
                                          "bond_xmit_hash_policy": "layer3+4"}
    assert by_name["bond0"]["mac_address"] == "fa:16:3e:aa:00:03"  # its first member's
    vlan = next(c for c in config if c["type"] == "vlan")
    assert (vlan["vlan_id"], vlan["vlan_link"]) == (100, "bond0")
    assert vlan["subnets"][0]["address"] == "172.16.100.10"
    eth0 = by_name["eth0"]
    v4 = next(s for s in eth0["subnets"] if s["type"] == "static")
    assert v4["address"] == "192.0.2.10"
    assert {"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"} in v4["routes"]
    assert {"network": "203.0.113.0", "netmask": "255.255.255.0", "gateway": "192.0.2.254"} in v4["routes"]
    assert [s["type"] for s in by_name["eth1"]["subnets"]] == ["dhcp4", "ipv6_slaac"]
    assert by_name["eth1"]["mtu"] == 9000  # Nova would write null on a DHCP network
    nameservers = [c["address"] for c in config if c["type"] == "nameserver"]
    assert nameservers == ["192.0.2.53", "198.51.100.53", "2001:db8:1::53"]
