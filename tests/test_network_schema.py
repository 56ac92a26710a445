"""network_data.json validation: the schema plus the cross-reference checks.

Positive documents mirror what producers really write (Nova's netutils, the
bond/VLAN shape cloud-init's unit tests feed convert_net_json); every
negative case names the exact path the problem must be reported at.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from metadata_content.spec.network_schema import network_data_schema, validate_network_data

NOVA_DOC: dict[str, Any] = {
    "links": [
        {"id": "tap1a2b3c4d-5e", "vif_id": "1a2b3c4d-5e6f-4a5b-8c9d-0e1f2a3b4c5d", "type": "ovs",
         "mtu": 1450, "ethernet_mac_address": "fa:16:3e:00:00:01"},
        {"id": "tap2b3c4d5e-6f", "vif_id": "2b3c4d5e-6f70-4a5b-8c9d-0e1f2a3b4c5d", "type": "phy",
         "mtu": None, "ethernet_mac_address": "FA:16:3E:00:00:02"},
    ],
    "networks": [
        {"id": "network0", "type": "ipv4", "link": "tap1a2b3c4d-5e", "ip_address": "10.0.0.5",
         "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"},
                    {"network": "172.16.0.0", "netmask": "255.255.0.0", "gateway": "10.0.0.254"}],
         "network_id": "6a1f2c3d-0000-4000-8000-000000000001",
         "services": [{"type": "dns", "address": "10.0.0.2"}]},
        {"id": "network1", "type": "ipv6", "link": "tap1a2b3c4d-5e", "ip_address": "2001:db8::5",
         "netmask": "ffff:ffff:ffff:ffff:0000:0000:0000:0000",
         "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8::1"}],
         "network_id": "6a1f2c3d-0000-4000-8000-000000000001",
         "services": [{"type": "dns", "address": "2001:db8::2"}]},
        {"id": "network2", "type": "ipv4_dhcp", "link": "tap2b3c4d5e-6f",
         "network_id": "6a1f2c3d-0000-4000-8000-000000000002"},
        {"id": "network3", "type": "ipv6_slaac", "link": "tap2b3c4d5e-6f",
         "network_id": "6a1f2c3d-0000-4000-8000-000000000002"},
    ],
    "services": [{"type": "dns", "address": "10.0.0.2"}, {"type": "dns", "address": "2001:db8::2"}],
}

BOND_VLAN_DOC: dict[str, Any] = {
    "links": [
        {"id": "eth0", "type": "phy", "mtu": 1500, "ethernet_mac_address": "0c:c4:7a:34:6e:3c"},
        {"id": "eth1", "type": "phy", "mtu": 1500, "ethernet_mac_address": "0c:c4:7a:34:6e:3d"},
        {"id": "bond0", "type": "bond", "bond_links": ["eth0", "eth1"], "bond_mode": "802.3ad",
         "bond_miimon": 100, "bond_xmit_hash_policy": "layer3+4",
         "ethernet_mac_address": "fa:16:3e:b3:72:36"},
        {"id": "vlan2", "type": "vlan", "vlan_link": "bond0", "vlan_id": 602,
         "vlan_mac_address": "fa:16:3e:b3:72:30", "ethernet_mac_address": "fa:16:3e:b3:72:30"},
        {"id": "vlan3", "type": "vlan", "vlan_link": "bond0", "vlan_id": 612, "vlan_mac_address": None},
    ],
    "networks": [
        {"id": "network2-ipv4", "type": "ipv4", "link": "vlan2", "ip_address": "2.2.2.13",
         "netmask": "255.255.255.248", "network_id": "4daf5ce8-38cf-4240-9f1a-04e86d7c6117",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "2.2.2.9"}]},
        {"id": "network3-ipv4", "type": "ipv4", "link": "vlan3", "ip_address": "10.0.1.5",
         "netmask": "255.255.255.248",
         "routes": [{"network": "192.168.1.0", "netmask": "255.255.255.255", "gateway": "10.0.1.1"}]},
    ],
    "services": [{"type": "dns", "address": "1.1.1.191"}],
}


def test_schema_is_valid_draft_2020_12() -> None:
    Draft202012Validator.check_schema(network_data_schema())
    assert network_data_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("doc", [NOVA_DOC, BOND_VLAN_DOC, {}, {"links": [], "networks": [], "services": []}],
                         ids=["nova", "bond-vlan", "empty", "empty-arrays"])
def test_valid_documents(doc: dict[str, Any]) -> None:
    assert validate_network_data(doc) == []


def test_extra_keys_from_other_producers_are_allowed() -> None:
    doc = copy.deepcopy(BOND_VLAN_DOC)
    doc["links"][0]["name"] = "eno1"
    del doc["links"][0]["ethernet_mac_address"]  # a name suffices for cloud-init
    doc["links"][2]["bond_hash_policy"] = "layer2"
    doc["links"][2]["bond_mode"] = "4"  # kernel alias, as cloud-init's tests use
    doc["networks"][0]["neutron_port_id"] = "x"
    assert validate_network_data(doc) == []


Mutation = Callable[[dict[str, Any]], None]


def _append_copy(array: str, index: int) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc[array].append(copy.deepcopy(doc[array][index]))
    return mutate


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = doc
        for p in parents:
            target = target[int(p) if p.isdigit() else p]
        target[int(last) if last.isdigit() else last] = value
    return mutate


def _delete(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target: Any = doc
        for p in parents:
            target = target[int(p) if p.isdigit() else p]
        del target[last]
    return mutate


NEGATIVE: list[tuple[str, dict[str, Any], Mutation, str]] = [
    # schema
    ("links-not-array", NOVA_DOC, _set("links", {}), "links"),
    ("link-type-unknown", NOVA_DOC, _set("links/0/type", "ethernet"), "links[0].type"),
    ("link-id-missing", NOVA_DOC, _delete("links/1/id"), "links[1].id"),
    ("link-mac-bad", NOVA_DOC, _set("links/0/ethernet_mac_address", "fa-16-3e-00-00-01"),
     "links[0].ethernet_mac_address"),
    ("phy-without-mac-or-name", NOVA_DOC, _delete("links/1/ethernet_mac_address"), "links[1].ethernet_mac_address"),
    ("mtu-string", NOVA_DOC, _set("links/0/mtu", "1500"), "links[0].mtu"),
    ("mtu-too-small", NOVA_DOC, _set("links/0/mtu", 0), "links[0].mtu"),
    ("bond-without-links", BOND_VLAN_DOC, _delete("links/2/bond_links"), "links[2].bond_links"),
    ("bond-without-mode", BOND_VLAN_DOC, _delete("links/2/bond_mode"), "links[2].bond_mode"),
    ("bond-mode-unknown", BOND_VLAN_DOC, _set("links/2/bond_mode", "lacp"), "links[2].bond_mode"),
    ("bond-links-empty", BOND_VLAN_DOC, _set("links/2/bond_links", []), "links[2].bond_links"),
    ("bond-member-not-string", BOND_VLAN_DOC, _set("links/2/bond_links/1", 1), "links[2].bond_links[1]"),
    ("bond-miimon-negative", BOND_VLAN_DOC, _set("links/2/bond_miimon", -1), "links[2].bond_miimon"),
    ("bond-hash-unknown", BOND_VLAN_DOC, _set("links/2/bond_xmit_hash_policy", "layer4"),
     "links[2].bond_xmit_hash_policy"),
    ("vlan-without-link", BOND_VLAN_DOC, _delete("links/3/vlan_link"), "links[3].vlan_link"),
    ("vlan-without-id", BOND_VLAN_DOC, _delete("links/3/vlan_id"), "links[3].vlan_id"),
    ("vlan-without-mac-key", BOND_VLAN_DOC, _delete("links/4/vlan_mac_address"), "links[4].vlan_mac_address"),
    ("vlan-id-4095", BOND_VLAN_DOC, _set("links/3/vlan_id", 4095), "links[3].vlan_id"),
    ("vlan-id-negative", BOND_VLAN_DOC, _set("links/3/vlan_id", -1), "links[3].vlan_id"),
    ("network-type-unknown", NOVA_DOC, _set("networks/2/type", "dhcp4"), "networks[2].type"),
    ("network-link-missing", NOVA_DOC, _delete("networks/2/link"), "networks[2].link"),
    ("ipv4-without-address", NOVA_DOC, _delete("networks/0/ip_address"), "networks[0].ip_address"),
    ("ipv4-without-netmask", NOVA_DOC, _delete("networks/0/netmask"), "networks[0].netmask"),
    ("ipv6-without-netmask", NOVA_DOC, _delete("networks/1/netmask"), "networks[1].netmask"),
    ("ipv4-address-is-v6", NOVA_DOC, _set("networks/0/ip_address", "2001:db8::5"), "networks[0].ip_address"),
    ("ipv6-address-is-v4", NOVA_DOC, _set("networks/1/ip_address", "10.0.0.5"), "networks[1].ip_address"),
    ("ipv4-address-cidr", NOVA_DOC, _set("networks/0/ip_address", "10.0.0.5/24"), "networks[0].ip_address"),
    ("route-gateway-missing", NOVA_DOC, _delete("networks/0/routes/1/gateway"), "networks[0].routes[1].gateway"),
    ("route-family-wrong", NOVA_DOC, _set("networks/1/routes/0/gateway", "10.0.0.1"), "networks[1].routes[0].gateway"),
    ("network-service-type", NOVA_DOC, _set("networks/0/services/0/type", "ntp"), "networks[0].services[0].type"),
    ("service-address-bad", NOVA_DOC, _set("services/1/address", "dns.example"), "services[1].address"),
    ("service-address-missing", NOVA_DOC, _delete("services/0/address"), "services[0].address"),
    # cross references
    ("duplicate-link-id", NOVA_DOC, _append_copy("links", 0), "links[2].id"),
    ("duplicate-network-id", NOVA_DOC, _append_copy("networks", 2), "networks[4].id"),
    ("network-link-dangling", NOVA_DOC, _set("networks/1/link", "tap-gone"), "networks[1].link"),
    ("bond-member-dangling", BOND_VLAN_DOC, _set("links/2/bond_links/1", "eth9"), "links[2].bond_links[1]"),
    ("bond-member-self", BOND_VLAN_DOC, _set("links/2/bond_links/0", "bond0"), "links[2].bond_links[0]"),
    ("vlan-link-dangling", BOND_VLAN_DOC, _set("links/4/vlan_link", "bond1"), "links[4].vlan_link"),
    ("netmask-not-contiguous", NOVA_DOC, _set("networks/0/netmask", "255.0.255.0"), "networks[0].netmask"),
    ("v6-netmask-not-contiguous", NOVA_DOC, _set("networks/1/netmask", "ffff::ffff"), "networks[1].netmask"),
    ("route-netmask-not-contiguous", NOVA_DOC, _set("networks/0/routes/1/netmask", "0.255.0.0"),
     "networks[0].routes[1].netmask"),
]


@pytest.mark.parametrize(("base", "mutate", "path"), [case[1:] for case in NEGATIVE], ids=[c[0] for c in NEGATIVE])
def test_invalid_documents_report_exact_path(base: dict[str, Any], mutate: Mutation, path: str) -> None:
    doc = copy.deepcopy(base)
    mutate(doc)
    problems = validate_network_data(doc)
    assert [p for p, _ in problems] == [path], problems
    assert all(reason for _, reason in problems)


@pytest.mark.parametrize("doc", [[], "x", None])
def test_top_level_must_be_object(doc: Any) -> None:
    assert [p for p, _ in validate_network_data(doc)] == [""]


def test_schema_comes_from_the_shared_package_loader() -> None:
    from metadata_content.errors import json_path
    from metadata_content.schemas import load_schema

    assert network_data_schema() is load_schema("network_data.schema.json")
    assert json_path(["links", 0, "bond_links", 1]) == "links[0].bond_links[1]"
