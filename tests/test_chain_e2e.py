"""The whole chain in real namespaces: DHCP lease -> route -> haproxy -> agent -> API.

One lab (mode both, 2 guests) for the module: g0 reaches 169.254.169.254 via
the DHCP port's proxy, g1 via the router's REDIRECT. Root, haproxy, dnsmasq,
busybox, curl and Debian's cloud-init are required (missing ones fail).
"""
from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from metadata_content.chain import dnsmasq, haproxy, netns, processes
from metadata_content.chain import lab as labmod
from metadata_content.chain.labstate import LabState
from tests.support.chainlab import running_lab
from tests.support.cloudinit_consumer import b64decode_field, crawl_ec2, read_http_openstack


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    with running_lab(tmp_path_factory.mktemp("chain") / "lab") as state:
        yield state


def test_guests_took_a_dhcp_lease_with_the_metadata_route(lab: LabState) -> None:
    g0, g1 = lab.guests
    for g, hop in ((g0, lab.dhcp_ip), (g1, lab.gateway)):
        assert [a for _, a in netns.addresses(g.ns)] == [g.ip]
        route = netns.route_get(g.ns)
        assert route is not None and route["gateway"] == hop, route
        shown = netns.ip("route", "show", netns=g.ns)
        assert f"169.254.169.254 via {hop} dev eth0" in shown
        assert f"default via {lab.gateway}" in shown
    log = (lab.dir / f"dnsmasq-{lab.network_id}.log").read_text()
    assert "option:121" in log and "option:249" in log
    # each guest is named by its spec hostname (what meta_data says), tagged with its path
    hosts = dnsmasq.DnsmasqFiles(lab.dir, lab.network_id).path("hosts").read_text()
    assert hosts.splitlines() == [f"{g0.mac},set:meta,{g0.ip},{g0.hostname}",
                                  f"{g1.mac},set:router,{g1.ip},{g1.hostname}"]


@pytest.mark.parametrize("index", [0, 1])
def test_each_guest_reads_its_own_metadata(lab: LabState, index: int) -> None:
    g = lab.guests[index]
    status, body, _ = labmod.fetch(lab, g.name, "/openstack/latest/meta_data.json")
    assert status == 200
    meta = json.loads(body)
    assert meta["uuid"] == g.uuid and meta["name"] == g.hostname
    status, body, _ = labmod.fetch(lab, g.name, "/openstack/latest/network_data.json")
    assert status == 200
    links = json.loads(body)["links"]
    assert [link["ethernet_mac_address"] for link in links] == [g.mac]
    assert labmod.fetch(lab, g.name, "/openstack/latest/user_data")[:2] == \
        (200, f"#!/bin/sh\necho {g.hostname} {lab.id}\n".encode())
    assert labmod.fetch(lab, g.name, "/latest/meta-data/local-ipv4")[:2] == (200, g.ip.encode())
    status, body, _ = labmod.fetch(lab, g.name, "/latest/meta-data/instance-id")
    assert status == 200 and body.startswith(b"i-")
    assert labmod.fetch(lab, g.name, "/2009-04-04/user-data")[1].startswith(b"#!/bin/sh\necho " +
                                                                         g.hostname.encode())
    status, body, _ = labmod.fetch(lab, g.name, "/latest/meta-data/")
    assert status == 200 and b"instance-id" in body.split(b"\n")


def test_both_paths_are_used(lab: LabState) -> None:
    """g0's requests show in the qdhcp proxy's log, g1's in the qrouter proxy's."""
    for g, ident in ((lab.guests[0], lab.network_id), (lab.guests[1], lab.router_id)):
        labmod.fetch(lab, g.name, "/openstack/latest/meta_data.json?path-probe")
        log = haproxy.ProxyFiles(lab.dir, ident).log.read_text()
        assert f"{g.ip}:" in log and "path-probe" in log
    # the same guest through the other path: still itself
    g0 = lab.guests[0]
    netns.ip("route", "replace", "169.254.169.254/32", "via", lab.gateway, netns=g0.ns)
    try:
        status, body, _ = labmod.fetch(lab, "g0", "/openstack/latest/meta_data.json?router-probe")
        assert status == 200 and json.loads(body)["uuid"] == g0.uuid
        log = haproxy.ProxyFiles(lab.dir, lab.router_id).log.read_text()
        assert f"{g0.ip}:" in log and "router-probe" in log
    finally:
        netns.ip("route", "replace", "169.254.169.254/32", "via", lab.dhcp_ip, netns=g0.ns)


def test_ipv6_link_local_guests_are_found_by_mac(lab: LabState) -> None:
    """fe80::a9fe:a9fe on the DHCP port; the agent maps the EUI-64 source to the port's MAC."""
    import time

    for g in lab.guests:
        for _ in range(100):  # wait for duplicate address detection (bounded: 5 s)
            shown = netns.ip("-6", "addr", "show", "dev", "eth0", netns=g.ns)
            if "scope link" in shown and "tentative" not in shown:
                break
            time.sleep(0.05)
        status, body, _ = labmod.fetch(lab, g.name, "",
                                       url=f"http://[{netns.METADATA_V6}%eth0]/openstack/latest/meta_data.json")
        assert status == 200 and json.loads(body)["uuid"] == g.uuid
    log, deadline = lab.dir / "agent-access.log", time.monotonic() + 5
    while "xff='fe80::f816:3eff:fe" not in log.read_text():  # flushed twice a second
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)


@pytest.mark.parametrize("index", [0, 1])
def test_cloud_init_readers_in_the_guest(lab: LabState, index: int) -> None:
    """Debian's cloud-init, run inside the guest namespace against 169.254.169.254."""
    g = lab.guests[index]
    result = read_http_openstack("http://169.254.169.254", netns=g.ns)
    assert result["metadata"]["uuid"] == g.uuid
    assert b64decode_field(result, "userdata").startswith(b"#!/bin/sh\necho " + g.hostname.encode())
    assert result["networkdata"]["links"][0]["ethernet_mac_address"] == g.mac
    ec2 = crawl_ec2("http://169.254.169.254", netns=g.ns)
    assert ec2["meta-data"]["local-ipv4"] == g.ip
    assert ec2["meta-data"]["hostname"].startswith(g.hostname)
    assert len(ec2["requests"]) >= 10


def test_a_whole_body_reaches_the_api(lab: LabState) -> None:
    """The largest body the API takes (1020 bytes) arrives whole; a larger one is
    refused with 413 before it reaches the API."""
    status, body, _ = labmod.fetch(lab, "g0", "/openstack/latest/password", method="POST",
                                   data=b"x" * 10_000)
    assert status == 413, (status, body)
    status, _, _ = labmod.fetch(lab, "g0", "/openstack/latest/password", method="POST", data=b"p" * 1020)
    assert status == 200
    assert labmod.fetch(lab, "g0", "/openstack/latest/password")[:2] == (200, b"p" * 1020)
    assert labmod.fetch(lab, "g1", "/openstack/latest/password")[:2] == (200, b"")


def test_rate_limit_answers_429(lab: LabState) -> None:
    """The router proxy reloaded gracefully with a limit (same pid file); restored afterwards."""
    before = lab.processes["haproxy-router"]
    labmod.start_proxy(lab, "router", rate_limit=haproxy.RateLimit(3, 30))
    assert lab.processes["haproxy-router"] != before
    assert not processes.alive(before) or _wait_dead(before)
    try:
        codes = [labmod.fetch(lab, "g1", "/latest/meta-data/instance-id")[0] for _ in range(6)]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
    finally:
        limited = lab.processes["haproxy-router"]
        labmod.start_proxy(lab, "router")
        assert _wait_dead(limited)  # the limited process hands over and finishes
    assert labmod.fetch(lab, "g1", "/latest/meta-data/instance-id")[0] == 200


def _wait_dead(pid: int) -> bool:
    import time

    for _ in range(100):
        if not processes.alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_doctor_walks_every_hop(lab: LabState) -> None:
    from metadata_content.chain.doctor import diagnose_lab

    results = diagnose_lab(lab.dir)
    assert lab.guests and len(results) == len(lab.guests), results
    for name, steps in results:
        assert all(s.ok for s in steps), (name, [s for s in steps if not s.ok])
        assert [s.what for s in steps][-1] == "end to end"
