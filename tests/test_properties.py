"""Property tests: any valid spec renders; every listed path resolves; every
JSON document parses; no listing names a path that 404s."""
from __future__ import annotations

import ipaddress
import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metadata_content.render.tree import MetadataTree, lookup_without_instance
from metadata_content.spec import instance_from_data

label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)
printable = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@st.composite
def subnet(draw, version: int, index: int) -> dict:
    if version == 4:
        net = ipaddress.ip_network(f"10.{index}.{draw(st.integers(0, 255))}.0/24")
    else:
        net = ipaddress.ip_network(f"2001:db8:{index:x}:{draw(st.integers(0, 0xffff)):x}::/64")
    hosts = [net.network_address + i for i in range(2, 200)]
    ip, gateway = draw(st.lists(st.sampled_from(hosts), min_size=2, max_size=2, unique=True))
    out: dict = {"cidr": str(net), "ip": str(ip)}
    if draw(st.booleans()):
        out["gateway"] = str(gateway)
    if draw(st.booleans()):
        out["dns"] = [str(h) for h in draw(st.lists(st.sampled_from(hosts), max_size=3))]
    if version == 6 and draw(st.booleans()):
        out["ipv6_address_mode"] = draw(st.sampled_from(["slaac", "dhcpv6-stateful", "dhcpv6-stateless"]))
    elif draw(st.booleans()):
        out["dhcp"] = True
    if draw(st.booleans()):
        out["routes"] = [{"cidr": f"192.168.{draw(st.integers(0, 255))}.0/24" if version == 4
                          else "2001:db8:ffff::/48", "gateway": str(gateway)}]
    return out


@st.composite
def specs(draw) -> dict:
    spec: dict = {"uuid": str(draw(st.uuids())), "hostname": draw(label)}
    if draw(st.booleans()):
        spec["dhcp_domain"] = draw(st.sampled_from(["", "novalocal", "example.org"]))
    if draw(st.booleans()):
        spec["name"] = draw(printable)
    if draw(st.booleans()):
        spec["meta"] = draw(st.dictionaries(label, printable, max_size=3))
    if draw(st.booleans()):
        spec["user_data"] = draw(st.one_of(printable, st.builds(lambda b: {"base64": b},
                                 st.binary(max_size=64).map(lambda b: __import__("base64").b64encode(b).decode()))))
    names = draw(st.lists(label, max_size=3, unique=True))
    keys = [{"name": n, "data": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpLnqtlLpQehMSV8X8CH+gml0Nmc9dH5Q/2haAxA8eB"}
            for n in names]
    if keys:
        spec["keys"] = keys
    if draw(st.booleans()):
        spec["files"] = [{"path": f"/etc/f{i}", "content": draw(printable)} for i in range(draw(st.integers(0, 3)))]
    nics = []
    for i in range(draw(st.integers(0, 3))):
        nic: dict = {"name": f"eth{i}", "mac": f"fa:16:3e:00:00:{i:02x}"}
        if draw(st.booleans()):
            nic["mtu"] = draw(st.integers(1280, 9000))
        nic["network_id"] = str(draw(st.uuids()))
        families = draw(st.sampled_from([[], [4], [6], [4, 6]]))
        nic["subnets"] = [draw(subnet(v, i)) for v in families]
        nics.append(nic)
    if nics:
        spec["nics"] = nics
    if len(nics) >= 2 and draw(st.booleans()):
        spec["bonds"] = [{"name": "bond0", "links": [nics[0]["name"], nics[1]["name"]]}]
        if draw(st.booleans()):
            spec["vlans"] = [{"name": "bond0.7", "link": "bond0", "vlan_id": 7}]
    if draw(st.booleans()):
        spec["devices"] = [{"type": "disk", "bus": "scsi", "address": "0:0:0:0", "tags": ["x"]},
                           {"type": "nic", "mac": "fa:16:3e:00:00:00", "bus": "pci", "address": "0000:00:03.0"}]
    if draw(st.booleans()):
        spec["block_devices"] = {"root": "/dev/vda", "volumes": ["/dev/vdc", "/dev/vdb"]}
    return spec


def crawl(tree: MetadataTree) -> dict[str, bytes]:
    """Follow every listing from ``/`` and ``/openstack/``; return every leaf.

    Directories are queued with a trailing slash: the version lists, lines
    ending in ``/``, and ``N=name`` public-key lines. Anything else is a leaf.
    """
    leaves: dict[str, bytes] = {}
    todo = ["/", "/openstack/"]
    while todo:
        path = todo.pop()
        answer = tree.lookup(path)
        assert answer.status == 200, (path, answer)
        if not path.endswith("/"):
            leaves[path] = answer.body
            if path.endswith(".json"):
                json.loads(answer.body)
            continue
        for line in answer.body.decode().split("\n") if answer.body else []:
            if line.endswith("/"):
                todo.append(path + line)
            elif "=" in line:
                todo.append(path + line.split("=", 1)[0] + "/")
            elif path in ("/", "/openstack/"):
                todo.append(path + line + "/")
            else:
                todo.append(path + line)
    return leaves


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_any_valid_spec_renders_and_every_listed_path_resolves(spec):
    instance = instance_from_data(spec, "<generated>")
    tree = MetadataTree(instance)
    leaves = crawl(tree)
    assert "/openstack/latest/meta_data.json" in leaves
    assert json.loads(leaves["/openstack/latest/meta_data.json"])["uuid"] == spec["uuid"]
    drive = MetadataTree(instance, delivery="drive").drive_files()
    for name, body in drive.items():
        if name.endswith(".json"):
            json.loads(body)
    assert lookup_without_instance("/") is not None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=string.printable, max_size=60), st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE"]))
def test_any_path_gets_a_status_never_an_exception(path, method):
    answer = _TREE.lookup(path, method)
    assert answer.status in (200, 404, 405)


def _rich_tree() -> MetadataTree:
    from metadata_content import load_instance
    from tests.conftest import SAMPLES

    return MetadataTree(load_instance(SAMPLES / "rich.yaml"))


_TREE = _rich_tree()
