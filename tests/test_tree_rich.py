"""Every path of both trees for samples/rich.yaml, against expectations written
by hand from SPEC.md sections 2-5 (listings, leaves, 404s, paths into leaves,
trailing slashes, ``//``, unknown versions, every version's listing)."""
from __future__ import annotations

import base64
import json
from datetime import date

import pytest

from metadata_content import MetadataTree, load_instance
from tests.conftest import SAMPLES

ALICE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpLnqtlLpQehMSV8X8CH+gml0Nmc9dH5Q/2haAxA8eB alice@laptop\n"  # a .pub line
DEPLOY_PREFIX = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDWROZsqrFYTLoq"
SEED = "Y29uZmlnZHJpdmUgcGlubmVkIHJhbmRvbSBzZWVkIGZvciByZXByb2R1Y2libGUgYnVpbGRz"
UUID = "fbe3b826-7673-4446-8f4c-ede1d2abd0e2"
PROJECT = "2a1f6a4e1c7b4a2f9a3d5e6f70819203"
USER_DATA = b'#!/bin/sh\necho "db-1 first boot" > /var/log/first-boot.log\n'
OS_VERSIONS = ["2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30",
               "2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14", "2025-04-04"]
EC2_VERSIONS = ["1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10",
                "2007-12-15", "2008-02-01", "2008-09-01", "2009-04-04"]


@pytest.fixture(scope="module")
def rich():
    return load_instance(SAMPLES / "rich.yaml")


@pytest.fixture(scope="module")
def http(rich):
    return MetadataTree(rich, delivery="http", password="enc-pass", today=date(2026, 11, 22))


@pytest.fixture(scope="module")
def drive(rich):
    return MetadataTree(rich, delivery="drive", today=date(2026, 11, 22))


def text(tree, path, method="GET"):
    answer = tree.lookup(path, method)
    assert answer.status == 200, (path, answer)
    return answer.body.decode()


def status(tree, path, method="GET"):
    return tree.lookup(path, method).status


# -- EC2 ----------------------------------------------------------------------

META_DATA_2009 = """ami-id
ami-launch-index
ami-manifest-path
block-device-mapping/
hostname
instance-action
instance-id
instance-type
kernel-id
local-hostname
local-ipv4
placement/
public-hostname
public-ipv4
public-keys/
ramdisk-id
reservation-id
security-groups"""

EC2_LEAVES = {
    "ami-id": "ami-0000000a",
    "ami-launch-index": "0",
    "ami-manifest-path": "FIXME",
    "hostname": "db-1.example.org",
    "instance-action": "none",
    "instance-id": "i-0000002a",
    "instance-type": "m1.large",
    "kernel-id": "aki-0000000b",
    "local-hostname": "db-1.example.org",
    "local-ipv4": "192.0.2.10",
    "public-hostname": "db-1.example.org",
    "public-ipv4": "198.51.100.10",
    "ramdisk-id": "ari-0000000c",
    "reservation-id": "r-3k9x2mqp",
    "security-groups": "default\ndb",
    "placement/availability-zone": "az-east-1",
    "public-keys/0/openssh-key": ALICE,
    "block-device-mapping/ami": "vda",
    "block-device-mapping/root": "/dev/vda",
    "block-device-mapping/ephemeral0": "/dev/vdb",
    "block-device-mapping/swap": "/dev/vdc",
    "block-device-mapping/ebs0": "/dev/vdd",
    "block-device-mapping/ebs1": "/dev/vde",
}


@pytest.mark.parametrize("path", ["/", "", "/ec2", "/ec2/", "//", "/ec2//", "/?x=1", "/latest/.."])
def test_ec2_root_lists_versions(http, path):
    assert text(http, path) == "\n".join([*EC2_VERSIONS, "latest"])


@pytest.mark.parametrize("version", [*EC2_VERSIONS, "latest"])
def test_ec2_version_listing(http, version):
    assert text(http, f"/{version}") == "meta-data/\nuser-data"
    assert text(http, f"/ec2/{version}/") == "meta-data/\nuser-data"


@pytest.mark.parametrize("prefix", ["/latest", "/2009-04-04", "/ec2/latest", "//latest", "/latest/"])
def test_ec2_meta_data_listing_2009(http, prefix):
    assert text(http, f"{prefix}/meta-data") == META_DATA_2009
    assert text(http, f"{prefix}/meta-data/") == META_DATA_2009


@pytest.mark.parametrize("version,keys", [
    ("1.0", "ami-id ami-launch-index ami-manifest-path hostname instance-id local-ipv4 "
            "public-keys/ reservation-id security-groups"),
    ("2007-01-19", "ami-id ami-launch-index ami-manifest-path hostname instance-id local-hostname "
                   "local-ipv4 public-hostname public-ipv4 public-keys/ reservation-id security-groups"),
    ("2007-08-29", "ami-id ami-launch-index ami-manifest-path hostname instance-id instance-type "
                   "local-hostname local-ipv4 public-hostname public-ipv4 public-keys/ reservation-id "
                   "security-groups"),
    ("2007-12-15", "ami-id ami-launch-index ami-manifest-path block-device-mapping/ hostname instance-id "
                   "instance-type kernel-id local-hostname local-ipv4 public-hostname public-ipv4 "
                   "public-keys/ ramdisk-id reservation-id security-groups"),
    ("2008-02-01", "ami-id ami-launch-index ami-manifest-path block-device-mapping/ hostname instance-id "
                   "instance-type kernel-id local-hostname local-ipv4 placement/ public-hostname "
                   "public-ipv4 public-keys/ ramdisk-id reservation-id security-groups"),
])
def test_ec2_keys_by_version(http, version, keys):
    assert text(http, f"/{version}/meta-data").split("\n") == keys.split()


@pytest.mark.parametrize("leaf,value", sorted(EC2_LEAVES.items()))
def test_ec2_leaves(http, leaf, value):
    assert text(http, f"/latest/meta-data/{leaf}") == value
    assert text(http, f"/latest/meta-data/{leaf}/") == value  # a trailing slash does not matter


def test_ec2_directories(http):
    assert text(http, "/latest/meta-data/public-keys") == "0=alice\n1=deploy"
    assert text(http, "/latest/meta-data/public-keys/0") == "openssh-key"
    assert text(http, "/latest/meta-data/public-keys/1/").startswith("openssh-key")
    assert text(http, "/latest/meta-data/public-keys/1/openssh-key").startswith(DEPLOY_PREFIX)
    assert text(http, "/latest/meta-data/placement") == "availability-zone"
    assert text(http, "/latest/meta-data/block-device-mapping") == "ami\nebs0\nebs1\nephemeral0\nroot\nswap"


def test_ec2_user_data_is_raw(http):
    assert http.lookup("/latest/user-data").body == USER_DATA
    assert http.lookup("/2009-04-04/user-data").body == USER_DATA


@pytest.mark.parametrize("path", [
    "/1999-01-01/meta-data", "/LATEST/meta-data", "/latest/meta-data/nope",
    "/latest/meta-data/hostname/x",                 # into a leaf (Nova: 500)
    "/latest/meta-data/public-keys/0/_name",        # Nova leaks it
    "/latest/meta-data/public-keys/2", "/latest/meta-data/placement/x",
    "/latest/user-data/x", "/latest/meta-data/security-groups/0",
    "/1.0/meta-data/placement", "/2008-02-01/meta-data/instance-action",
])
def test_ec2_404(http, path):
    assert status(http, path) == 404


# -- OpenStack ------------------------------------------------------------------

LISTINGS = {
    "2012-08-10": ["meta_data.json", "user_data"],
    "2013-04-04": ["meta_data.json", "user_data", "password"],
    "2013-10-17": ["meta_data.json", "user_data", "password", "vendor_data.json"],
    "2015-10-15": ["meta_data.json", "user_data", "password", "vendor_data.json", "network_data.json"],
    "2016-06-30": ["meta_data.json", "user_data", "password", "vendor_data.json", "network_data.json"],
}
FULL = ["meta_data.json", "user_data", "password", "vendor_data.json", "network_data.json", "vendor_data2.json"]


def test_openstack_root_lists_versions_then_latest(http):
    assert text(http, "/openstack") == "\n".join([*OS_VERSIONS, "latest"])
    assert text(http, "/openstack/") == "\n".join([*OS_VERSIONS, "latest"])


def test_openstack_root_hides_future_versions(rich):
    early = MetadataTree(rich, today=date(2020, 1, 1))
    assert early.lookup("/openstack").body.decode().split("\n")[-2:] == ["2018-08-27", "latest"]
    assert early.lookup("/openstack/2025-04-04").status == 200  # still reachable by name


@pytest.mark.parametrize("version", [*OS_VERSIONS, "latest"])
def test_openstack_version_listing(http, version):
    expected = LISTINGS.get(version, FULL)
    assert text(http, f"/openstack/{version}") == "\n".join(expected)
    assert text(http, f"/openstack/{version}/") == "\n".join(expected)


def expected_meta_data(version: str, *, drive: bool) -> list[tuple[str, object]]:
    doc: list[tuple[str, object]] = [("uuid", UUID), ("meta", {"role": "database", "owner": "team-data"})]
    if drive:
        doc.append(("files", [{"path": "/etc/motd", "content_path": "/content/0000"},
                              {"path": "/etc/db/replica.conf", "content_path": "/content/0001"}]))
        doc.append(("admin_pass", "S3cret-Pa55"))
    doc += [("public_keys", "<keys>"), ("keys", "<keys>"), ("hostname", "db-1.example.org"),
            ("name", "db-1 (primary)"), ("launch_index", 0), ("availability_zone", "az-east-1")]
    if version >= "2013-04-04":
        doc.append(("random_seed", SEED))
    if version >= "2015-10-15":
        doc.append(("project_id", PROJECT))
    if version >= "2016-06-30":
        nic0 = {"type": "nic", "mac": "fa:16:3e:aa:00:01", "bus": "pci", "address": "0000:00:03.0",
                "tags": ["public"]}
        nic1 = {"type": "nic", "mac": "fa:16:3e:aa:00:03", "bus": "pci", "address": "0000:00:05.0"}
        if version >= "2018-08-27":
            nic0 = {"vf_trusted": False, **nic0}
            nic1 = {"vf_trusted": True, **nic1}
        if version >= "2017-02-22":
            nic1 = {"vlan": 100, **nic1}
        devices = [nic0] + ([nic1] if version >= "2017-02-22" else [])  # untagged, nothing to say before
        devices.append({"type": "disk", "serial": "vol-data-0001", "path": "/dev/sdb", "bus": "scsi",
                        "address": "0:0:1:0", "tags": ["data"]})
        if version >= "2025-04-04":
            devices.append({"type": "share", "share_id": "da09b42c-adfb-4a4a-acd9-9e99c9ebb0d8",
                            "tag": "shared-config", "bus": "none", "address": "none"})
        doc.append(("devices", devices))
    if version >= "2020-10-14":
        doc.append(("dedicated_cpus", [2, 3]))
    return doc


@pytest.mark.parametrize("version", [*OS_VERSIONS, "latest"])
@pytest.mark.parametrize("delivery", ["http", "drive"])
def test_meta_data_json(http, drive, version, delivery):
    tree = http if delivery == "http" else drive
    answer = tree.lookup(f"/openstack/{version}/meta_data.json")
    assert (answer.status, answer.content_type) == (200, "application/json")
    body = answer.body.decode()
    assert not body.endswith("\n") and '": ' in body and '", "' in body  # json.dumps defaults
    pairs = json.loads(body, object_pairs_hook=list)
    dated = OS_VERSIONS[-1] if version == "latest" else version
    expected = expected_meta_data(dated, drive=delivery == "drive")
    assert [k for k, _ in pairs] == [k for k, _ in expected]
    doc = json.loads(body)
    for key, value in expected:
        if value != "<keys>":
            assert doc[key] == value, key
    assert doc["public_keys"]["alice"] == ALICE
    assert list(doc["public_keys"]) == ["alice", "deploy"]
    assert [k["name"] for k in doc["keys"]] == ["alice", "deploy"]
    assert doc["keys"][0] == {"name": "alice", "type": "ssh", "data": ALICE}
    assert [list(d) for d in doc.get("devices", [])] == [list(d) for d in dict(expected).get("devices", [])]


def test_random_seed_is_fresh_unless_pinned(rich):
    from metadata_content.model import replace

    unpinned = replace(rich, random_seed=None)
    seeds = {json.loads(MetadataTree(unpinned).lookup("/openstack/latest/meta_data.json").body)["random_seed"]
             for _ in range(3)}
    assert len(seeds) == 3
    assert all(len(base64.b64decode(s)) == 512 for s in seeds)


NETWORK_DATA = {
    "links": [
        {"id": "eth0", "vif_id": "8fdda84a-9075-45ca-b0ef-0b2ee65e12c2", "type": "ovs", "mtu": 1500,
         "ethernet_mac_address": "fa:16:3e:aa:00:01"},
        {"id": "eth1", "vif_id": "1b3f7c1e-7d4f-4c55-9e61-3a2f6b0c9d11", "type": "hw_veb", "mtu": 9000,
         "ethernet_mac_address": "fa:16:3e:aa:00:02"},
        {"id": "eth2", "type": "bridge", "mtu": 9000, "ethernet_mac_address": "fa:16:3e:aa:00:03"},
        {"id": "eth3", "type": "bridge", "mtu": 9000, "ethernet_mac_address": "fa:16:3e:aa:00:04"},
        {"id": "bond0", "type": "bond", "bond_links": ["eth2", "eth3"], "bond_mode": "802.3ad",
         "bond_miimon": 100, "bond_xmit_hash_policy": "layer3+4", "mtu": 9000,
         "ethernet_mac_address": "fa:16:3e:aa:00:03"},
        {"id": "bond0.100", "type": "vlan", "vlan_link": "bond0", "vlan_id": 100,
         "vlan_mac_address": "fa:16:3e:aa:00:03", "mtu": 9000},
    ],
    "networks": [
        {"id": "network0", "type": "ipv4", "link": "eth0", "ip_address": "192.0.2.10",
         "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "192.0.2.1"},
                    {"network": "203.0.113.0", "netmask": "255.255.255.0", "gateway": "192.0.2.254"}],
         "network_id": "0e0a8a3c-5b0d-4a6e-9d3e-3c2f1b0a9e01",
         "services": [{"type": "dns", "address": "192.0.2.53"}, {"type": "dns", "address": "198.51.100.53"}]},
        {"id": "network1", "type": "ipv6", "link": "eth0", "ip_address": "2001:db8:1::10",
         "netmask": "ffff:ffff:ffff:ffff::",
         "routes": [{"network": "::", "netmask": "::", "gateway": "2001:db8:1::1"}],
         "network_id": "0e0a8a3c-5b0d-4a6e-9d3e-3c2f1b0a9e01",
         "services": [{"type": "dns", "address": "2001:db8:1::53"}]},
        {"id": "network2", "type": "ipv4_dhcp", "link": "eth1",
         "network_id": "5c1e2a9d-8f3b-4b7a-a6c0-2d4e6f8a0b12"},
        {"id": "network3", "type": "ipv6_slaac", "link": "eth1", "ip_address": "2001:db8:2:0:f816:3eff:feaa:2",
         "netmask": "ffff:ffff:ffff:ffff::", "routes": [],
         "network_id": "5c1e2a9d-8f3b-4b7a-a6c0-2d4e6f8a0b12", "services": []},
        {"id": "network4", "type": "ipv4", "link": "bond0.100", "ip_address": "172.16.100.10",
         "netmask": "255.255.255.0",
         "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "172.16.100.1"},
                    {"network": "172.17.0.0", "netmask": "255.255.0.0", "gateway": "172.16.100.254"}],
         "network_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "services": []},
    ],
    "services": [{"type": "dns", "address": "192.0.2.53"}, {"type": "dns", "address": "198.51.100.53"},
                 {"type": "dns", "address": "2001:db8:1::53"}],
}


@pytest.mark.parametrize("version", [*OS_VERSIONS[3:], "latest"])
def test_network_data_json(http, version):
    body = http.lookup(f"/openstack/{version}/network_data.json").body
    assert json.loads(body, object_pairs_hook=list) == json.loads(json.dumps(NETWORK_DATA), object_pairs_hook=list)


def test_vendor_data(http):
    static = {"cloud-init": "#cloud-config\ntimezone: UTC\n", "site": "east"}
    assert json.loads(text(http, "/openstack/latest/vendor_data.json")) == static
    assert json.loads(text(http, "/openstack/latest/vendor_data2.json")) == {"static": static}


def test_user_data_and_password(http, drive):
    assert http.lookup("/openstack/latest/user_data").body == USER_DATA
    answer = http.lookup("/openstack/latest/password")
    assert (answer.status, answer.body, answer.password) == (200, b"enc-pass", True)
    assert http.lookup("/openstack/latest/password", "POST").status == 200
    assert http.lookup("/openstack/2012-08-10/password").status == 404  # before 2013-04-04
    assert drive.lookup("/openstack/latest/password").status == 404     # HTTP only


def test_injected_files_on_the_drive_only(http, drive):
    assert drive.lookup("/openstack/content/0000").body.startswith(b"Welcome to db-1.")
    assert drive.lookup("/openstack/content/0001").body == b"primary=true\nreplicas=2\n"
    assert http.lookup("/openstack/content/0000").status == 404
    assert drive.lookup("/openstack/content").status == 404  # never listed
    assert drive.lookup("/openstack/content/0002").status == 404


@pytest.mark.parametrize("path", [
    "/openstack/2011-01-01", "/openstack/2011-01-01/meta_data.json", "/openstack/LATEST",
    "/openstack/latest/nope", "/openstack/latest/meta_data.json/x", "/openstack/latest/user_data/x",
    "/openstack/2013-04-04/vendor_data.json", "/openstack/2015-10-14/network_data.json",
    "/openstack/2016-06-30/vendor_data2.json", "/openstack/version",
])
def test_openstack_404(http, path):
    assert status(http, path) == 404


def test_path_normalisation(http):
    body = http.lookup("/openstack/latest/meta_data.json").body
    for variant in ["openstack/latest/meta_data.json", "//openstack//latest//meta_data.json",
                    "/openstack/latest/meta_data.json/", "/openstack/./latest/x/../meta_data.json",
                    "/openstack/latest/meta_data.json?foo=bar"]:
        assert http.lookup(variant).body == body, variant


@pytest.mark.parametrize("method,expected", [("HEAD", 200), ("POST", 405), ("PUT", 405), ("DELETE", 405)])
def test_methods(http, method, expected):
    assert status(http, "/openstack/latest/meta_data.json", method) == expected
    assert status(http, "/latest/meta-data/hostname", method) == expected
    assert status(http, "/latest/meta-data/nope", method) == 404


# -- the drive --------------------------------------------------------------------

def test_drive_files(drive):
    files = drive.drive_files()
    assert len(files) == 51  # as the golden Nova drive for a rich instance
    expected = {"ec2/2009-04-04/meta-data.json", "ec2/2009-04-04/user-data",
                "ec2/latest/meta-data.json", "ec2/latest/user-data",
                "openstack/content/0000", "openstack/content/0001"}
    for version in [*OS_VERSIONS, "latest"]:
        dated = OS_VERSIONS[-1] if version == "latest" else version
        expected |= {f"openstack/{version}/{n}" for n in LISTINGS.get(dated, FULL) if n != "password"}
    assert set(files) == expected
    for name, body in files.items():
        if name.endswith(".json"):
            json.loads(body)
        assert files[name] == drive.lookup(name).body if not name.startswith("ec2/") else True


def test_drive_ec2_meta_data_json(drive):
    doc = json.loads(drive.drive_files()["ec2/latest/meta-data.json"])
    assert list(doc) == ["ami-id", "ami-launch-index", "ami-manifest-path", "instance-id", "hostname",
                         "local-ipv4", "reservation-id", "security-groups", "public-keys", "local-hostname",
                         "public-hostname", "public-ipv4", "instance-type", "block-device-mapping",
                         "kernel-id", "ramdisk-id", "placement", "instance-action"]
    second = doc["public-keys"]["1"]["openssh-key"]
    assert doc["public-keys"] == {"0": {"openssh-key": ALICE}, "1": {"openssh-key": second}}
    assert "_name" not in json.dumps(doc)
    assert doc["ami-launch-index"] == 0
    assert doc["security-groups"] == ["default", "db"]
    assert doc["placement"] == {"availability-zone": "az-east-1"}


def test_drive_needs_drive_delivery(http):
    with pytest.raises(ValueError):
        http.drive_files()


@pytest.mark.parametrize("spec", sorted(SAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
@pytest.mark.parametrize("order", ["oldest first", "newest first"])
def test_meta_data_members_reused_across_versions_encode_as_a_whole(spec, order):
    """meta_data.json reuses members encoded for another version: the bytes must
    be exactly those of encoding the whole document, whatever order versions render in."""
    from metadata_content.render import openstack
    from metadata_content.render.tree import dumps

    instance = load_instance(spec)
    versions = OS_VERSIONS if order == "oldest first" else OS_VERSIONS[::-1]
    for delivery in ("http", "drive"):
        tree = MetadataTree(instance, delivery=delivery, random_seed=b"seed")
        for version in versions:
            whole = dumps(openstack.meta_data(instance, version, on_drive=delivery == "drive",
                                              random_seed=b"seed"))
            assert tree.meta_data_json(version) == whole, (spec.name, delivery, version)


def test_keys_concatenated_stay_one_per_line():
    """A reader that writes each public_keys value to a file and concatenates the
    files (as an authorized_keys builder does) gets every key on its own line."""
    instance = load_instance(SAMPLES / "rich.yaml")
    doc = json.loads(MetadataTree(instance).lookup("/openstack/latest/meta_data.json").body)
    lines = "".join(doc["public_keys"].values()).splitlines()
    assert len(lines) == len(doc["public_keys"]) == 2 and all(line.startswith("ssh-") for line in lines)
    ec2 = MetadataTree(instance)
    assert "".join(ec2.lookup(f"/latest/meta-data/public-keys/{i}/openssh-key").body.decode()
                   for i in range(2)).splitlines() == lines


def test_network_data_is_served_under_every_version_as_nova_does(http, drive):
    """Nova 34 answers network_data.json under every OpenStack version over HTTP (it lists it
    from 2015-10-15 on); the drive keeps Nova's layout, which writes it from that version."""
    whole = http.lookup("/openstack/latest/network_data.json").body
    for version in OS_VERSIONS:
        answer = http.lookup(f"/openstack/{version}/network_data.json")
        assert answer.status == 200 and answer.body == whole and answer.content_type == "application/json"
    assert b"network_data.json" not in http.lookup("/openstack/2013-10-17").body
    assert "openstack/2013-10-17/network_data.json" not in drive.drive_files()
    assert drive.lookup("/openstack/2013-10-17/network_data.json").status == 404


def test_no_availability_zone(tmp_path):
    """``availability_zone: null``: Nova's null in meta_data.json, and no EC2 placement (absent: nova)."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("uuid: dc7c8e7d-a420-45fd-bc9f-ae0a16177f73\nhostname: h\navailability_zone: null\n")
    tree = MetadataTree(load_instance(spec))
    assert json.loads(tree.lookup("/openstack/latest/meta_data.json").body)["availability_zone"] is None
    assert tree.lookup("/latest/meta-data/placement/availability-zone").status == 404
    assert b"placement" not in tree.lookup("/latest/meta-data/").body
    spec.write_text("uuid: dc7c8e7d-a420-45fd-bc9f-ae0a16177f73\nhostname: h\n")
    assert MetadataTree(load_instance(spec)).lookup("/latest/meta-data/placement/availability-zone").body == b"nova"


def test_ec2_user_data_is_bytes_typed_like_openstack_s(http):
    ec2, openstack = http.lookup("/latest/user-data"), http.lookup("/openstack/latest/user_data")
    assert ec2.body == openstack.body and ec2.content_type == openstack.content_type == "application/octet-stream"
    assert http.lookup("/latest/meta-data/hostname").content_type == "text/plain; charset=utf-8"


@pytest.mark.parametrize("method,allow", [("PUT", "GET, HEAD"), ("DELETE", "GET, HEAD")])
def test_a_405_names_the_methods_the_path_takes(http, method, allow):
    answer = http.lookup("/openstack/latest/meta_data.json", method)
    assert (answer.status, answer.allow) == (405, allow)
    assert http.lookup("/openstack/latest/password", "PUT").allow == "GET, HEAD, POST"


def test_certificates_are_keys_not_public_keys():
    """An x509 key is listed in ``keys`` (cloudbase-init's WinRM certificates), never among the
    SSH keys a reader installs or encrypts the password with (``public_keys``, EC2 public-keys)."""
    windows = MetadataTree(load_instance(SAMPLES / "windows.yaml"))
    doc = json.loads(windows.lookup("/openstack/latest/meta_data.json").body)
    assert [(k["name"], k["type"]) for k in doc["keys"]] == [("admin", "ssh"), ("winrm-cert", "x509")]
    assert list(doc["public_keys"]) == ["admin"] and doc["public_keys"]["admin"].startswith("ssh-rsa ")
    assert windows.lookup("/latest/meta-data/public-keys").body == b"0=admin"
