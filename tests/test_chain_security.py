"""A guest can never read another instance's metadata, whatever it sends.

Two guests in one lab (g0 through the DHCP port's proxy, g1 through the
router's REDIRECT); every forgery is tried from both, and every answer must
be the asking guest's own instance (or a refusal, never the other's data).
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from metadata_content.chain import lab as labmod
from metadata_content.chain import netns
from metadata_content.chain.labstate import Guest, LabState
from metadata_content.server.config import read_secret
from metadata_content.server.identity import sign_instance_id
from tests.support.chainlab import running_lab

META = "/openstack/latest/meta_data.json"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    with running_lab(tmp_path_factory.mktemp("sec") / "lab") as state:
        yield state


def forgeries(lab: LabState, other: Guest) -> list[dict[str, str]]:
    """Header sets a guest might send to pass as *other* or pick a network/router."""
    secret = read_secret(str(lab.secret_file))
    signature = sign_instance_id(secret, other.uuid)
    identity = {"X-Instance-ID": other.uuid, "X-Instance-ID-Signature": signature,
                "X-Tenant-ID": lab.project_id}
    cases: list[dict[str, str]] = [
        identity,
        {k.lower(): v for k, v in identity.items()},
        {"X-Tenant-ID": "another-project"},
        {"X-Forwarded-For": other.ip},
        {"X-Forwarded-For": f"{other.ip}, {other.ip}"},
        {"X-Forwarded-For": "::ffff:" + other.ip},
        {"X-Forwarded-For": "not-an-address"},
        {"Forwarded": f"for={other.ip}"},
        {"X-Real-IP": other.ip},
    ]
    for name in ("X-Neutron-Network-ID", "x-neutron-network-id", "X-NEUTRON-NETWORK-ID", "x-NeUtRoN-nEtWoRk-Id"):
        cases += [{name: lab.network_id}, {name: "00000000-0000-0000-0000-000000000000"}]
    for name in ("X-Neutron-Router-ID", "x-neutron-router-id", "X-NEUTRON-ROUTER-ID", "X-nEuTrOn-RoUtEr-Id"):
        cases += [{name: lab.router_id}, {name: "00000000-0000-0000-0000-000000000000"}]
    everything: dict[str, str] = {**identity, "X-Forwarded-For": other.ip,
                                  "X-Neutron-Network-ID": lab.network_id,
                                  "X-Neutron-Router-ID": lab.router_id}
    cases.append(everything)
    return cases


@pytest.mark.parametrize("index", [0, 1])
def test_forged_headers_never_reach_another_instance(lab: LabState, index: int) -> None:
    me, other = lab.guests[index], lab.guests[1 - index]
    for headers in forgeries(lab, other):
        status, body, _ = labmod.fetch(lab, me.name, META, headers=headers)
        assert status == 200, (headers, status, body)
        assert json.loads(body)["uuid"] == me.uuid, headers
        status, body, _ = labmod.fetch(lab, me.name, "/latest/meta-data/local-ipv4", headers=headers)
        assert (status, body) == (200, me.ip.encode()), headers


def test_repeated_forwarded_for_lines_do_not_choose(lab: LabState) -> None:
    """Two X-Forwarded-For lines from the guest: haproxy's own entry still comes last."""
    me, other = lab.guests
    g = lab.guest(me.name)
    out = subprocess.run(["ip", "netns", "exec", g.ns, "curl", "-s", "-m", "10",
                          "-H", f"X-Forwarded-For: {other.ip}", "-H", f"X-Forwarded-For: {other.ip}",
                          f"http://169.254.169.254{META}"], capture_output=True, timeout=20).stdout
    assert json.loads(out)["uuid"] == me.uuid


def test_direct_connections_are_refused(lab: LabState) -> None:
    assert lab.api is not None
    api_port = lab.api.rsplit(":", 1)[1]
    for g in lab.guests:
        # the router's proxy port, reached without the REDIRECT: dropped (timeout, no answer)
        status, _, took = labmod.fetch(lab, g.name, "", url=f"http://{lab.gateway}:9697{META}",
                                       timeout=2)
        assert status == 0 and took >= 1.5
        # the API and any other port on the proxies' addresses: nothing listens
        for host in (lab.gateway, lab.dhcp_ip, netns.METADATA_V4, "127.0.0.1"):
            for port in (api_port, "8775", "9697" if host != lab.gateway else "8775"):
                status, _, _ = labmod.fetch(lab, g.name, "", url=f"http://{host}:{port}{META}", timeout=2)
                assert status == 0, (host, port)
    # the only TCP listeners in the proxy namespaces are haproxy's
    dhcp = netns.run("ss", "-Hltn", netns=lab.dhcp_ns).stdout.split("\n")
    assert sorted(line.split()[3] for line in dhcp if line.strip()) == \
        ["169.254.169.254:80", "[fe80::a9fe:a9fe]%tap-dhcp:80"]
    router = netns.run("ss", "-Hltn", netns=lab.router_ns).stdout.split("\n")
    assert [line.split()[3] for line in router if line.strip()] == ["0.0.0.0:9697"]


def test_agent_socket_is_not_open_to_others(lab: LabState) -> None:
    """The agent has no network address; its socket file is 0660 root:root, so an
    unprivileged process (even one that shares the host's file system) cannot connect."""
    mode = stat.S_IMODE(os.stat(lab.socket).st_mode)
    assert mode == 0o660
    g0 = lab.guests[0]
    probe = ("import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1]); print('connected')\nexcept PermissionError: print('denied')\n")
    out = subprocess.run(["ip", "netns", "exec", g0.ns, "setpriv", "--reuid=nobody", "--regid=nogroup",
                          "--clear-groups", "/usr/bin/python3", "-c", probe, str(lab.socket)],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == "denied", out.stderr


def test_two_guests_each_only_see_themselves(lab: LabState) -> None:
    """Interleaved, concurrent requests from both guests, over both paths."""
    jobs = [(g, path) for _ in range(8) for g in lab.guests
            for path in (META, "/latest/meta-data/local-ipv4", "/openstack/latest/user_data")]

    def ask(job: tuple[Guest, str]) -> tuple[Guest, str, int, bytes]:
        g, path = job
        status, body, _ = labmod.fetch(lab, g.name, path)
        return g, path, status, body

    with ThreadPoolExecutor(max_workers=8) as pool:
        for g, path, status, body in pool.map(ask, jobs):
            assert status == 200
            if path == META:
                assert json.loads(body)["uuid"] == g.uuid
            elif path.endswith("local-ipv4"):
                assert body == g.ip.encode()
            else:
                assert g.hostname.encode() in body
