"""Failures along the chain give guests a clear status quickly, and `lab down`
removes everything, also after a crash."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metadata_content.chain import haproxy, labstate, netns
from metadata_content.chain import lab as labmod
from metadata_content.chain.labstate import LabState
from metadata_content.spec import instance_from_data
from metadata_content.store import Store
from tests.conftest import ROOT, SAMPLES
from tests.support.chainlab import assert_gone, require_chain_tools, running_lab

META = "/openstack/latest/meta_data.json"
WEB_UUID = "1281168b-3d3b-4ab0-b2db-115fb02e8d1f"
AGENT_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabState]:
    with running_lab(tmp_path_factory.mktemp("faults") / "lab", agent_timeout=AGENT_TIMEOUT) as state:
        yield state


def proxies(lab: LabState) -> list[int | None]:
    return [haproxy.read_pid(haproxy.ProxyFiles(lab.dir, i).pid)
            for i in (lab.network_id, lab.router_id)]


def test_agent_stopped_then_restarted(lab: LabState) -> None:
    before = proxies(lab)
    assert None not in before
    labmod.stop_process(lab, "agent")
    for g in lab.guests:
        status, _, took = labmod.fetch(lab, g.name, META)
        assert status == 503 and took < 5, (status, took)
    labmod.start_agent(lab)
    for g in lab.guests:
        status, body, _ = labmod.fetch(lab, g.name, META)
        assert status == 200 and json.loads(body)["uuid"] == g.uuid
    assert proxies(lab) == before  # haproxy was not restarted


def test_api_stopped_gives_503(lab: LabState) -> None:
    labmod.stop_process(lab, "api")
    try:
        for g in lab.guests:
            status, body, took = labmod.fetch(lab, g.name, META)
            assert status == 503 and took < 5 and b"temporarily unavailable" in body
    finally:
        labmod.start_api(lab)
    assert labmod.fetch(lab, "g0", META)[0] == 200


def test_slow_api_gives_a_timeout_status_within_the_bound(lab: LabState) -> None:
    """The API frozen (SIGSTOP): connections are accepted, nothing answers."""
    members = [p for p in labmod.lab_pids(lab.dir) if labmod._pgid(p) == lab.processes["api"]]
    assert members
    for pid in members:
        os.kill(pid, signal.SIGSTOP)
    try:
        status, _, took = labmod.fetch(lab, "g1", "/latest/meta-data/instance-id", timeout=20)
        assert status == 504 and AGENT_TIMEOUT - 0.5 < took < AGENT_TIMEOUT + 3, (status, took)
    finally:
        for pid in members:
            os.kill(pid, signal.SIGCONT)
    for _ in range(50):
        if labmod.fetch(lab, "g1", META)[0] == 200:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the API did not recover after SIGCONT")


def test_unknown_address_is_404(lab: LabState) -> None:
    g0 = lab.guests[0]
    netns.add_address(g0.ns, "eth0", "10.99.0.250/24")
    try:
        status, body, _ = labmod.fetch(lab, "g0", META, interface="10.99.0.250")
        assert status == 404 and b"not found" in body
    finally:
        netns.ip("addr", "del", "10.99.0.250/24", "dev", "eth0", netns=g0.ns)


def test_duplicated_address_is_404_and_logged(lab: LabState) -> None:
    """g1's address also registered on a second network the router serves."""
    g1 = lab.guests[1]
    store = Store(data_dir=lab.data_dir)
    dup = labmod.guest_spec(lab, 99, g1.ip, "fa:16:3e:99:99:99")
    dup["nics"][0]["network_id"] = other = "6b1f1f5e-0000-4000-8000-00000000d0b1"
    try:
        store.set_router_networks(lab.router_id, [lab.network_id, other])
        store.add([(dup, instance_from_data(json.loads(json.dumps(dup)), "dup"))])
        status, body, _ = labmod.fetch(lab, "g1", META)
        assert status == 404 and b"not found" in body
        log = (lab.dir / "agent.log").read_text()
        assert f"address {g1.ip}" in log and "matches 2 instances" in log
        assert labmod.fetch(lab, "g0", META)[0] == 200  # the DHCP path names its network
    finally:
        store.set_router_networks(lab.router_id, [lab.network_id])
        store.remove(dup["uuid"])
        store.close()
    status, body, _ = labmod.fetch(lab, "g1", META)
    assert status == 200 and json.loads(body)["uuid"] == g1.uuid


def test_status_and_down_by_cli(tmp_path: Path) -> None:
    """The operator's commands, as processes: up (with a sample spec), status, exec,
    doctor, down; nothing left."""
    import shutil

    require_chain_tools()
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(SAMPLES / "webserver.yaml", specs)
    shutil.copytree(SAMPLES / "files", specs / "files")
    lab_dir = tmp_path / "cli-lab"
    cli = [sys.executable, "-m", "configdrive", "lab"]
    up = subprocess.run([*cli, "up", "--dir", str(lab_dir), "--specs", str(specs), "--mode", "router",
                         "--cidr", "10.97.0.0/24"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    state = labstate.load(lab_dir) if (lab_dir / labstate.STATE).exists() else None
    try:
        assert up.returncode == 0, up.stderr
        assert state is not None
        st = subprocess.run([*cli, "status", "--dir", str(lab_dir), "--json"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
        assert st.returncode == 0, st.stdout + st.stderr
        info = json.loads(st.stdout)
        assert info["healthy"] and info["guests"][0]["route"] == state.gateway
        ex = subprocess.run([*cli, "exec", "--dir", str(lab_dir), "g0", "--", "curl", "-s", "-m", "10",
                             f"http://169.254.169.254{META}"], cwd=ROOT, capture_output=True, timeout=60)
        assert json.loads(ex.stdout)["uuid"] == state.guests[0].uuid == WEB_UUID
        ex = subprocess.run([*cli, "exec", "--dir", str(lab_dir), "0", "--", "curl", "-s", "-m", "10",
                             "http://169.254.169.254/latest/user-data"], cwd=ROOT, capture_output=True, timeout=60)
        assert ex.stdout == (SAMPLES / "files" / "webserver-cloud-config.yaml").read_bytes()
        doc = subprocess.run([sys.executable, "-m", "configdrive", "doctor", "--lab", "--dir", str(lab_dir)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert doc.returncode == 0 and "[ok] end to end" in doc.stdout, doc.stdout
    finally:
        down = subprocess.run([*cli, "down", "--dir", str(lab_dir)], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert state is not None
    assert_gone(state)


def test_doctor_names_the_broken_hop(lab: LabState) -> None:
    from metadata_content.chain.doctor import diagnose_netns

    g0 = lab.guests[0]
    labmod.stop_process(lab, "haproxy-dhcp")
    try:
        _, steps = diagnose_netns(g0.ns, str(lab.socket), str(lab.data_dir))
        assert not steps[-1].ok and steps[-1].what == "proxy"
        assert f"no metadata proxy for network {lab.network_id}" in steps[-1].detail
        assert "configdrive proxy start" in steps[-1].fix
    finally:
        labmod.start_proxy(lab, "dhcp")
    # without the metadata route the default route still reaches it, through the router
    netns.ip("route", "del", "169.254.169.254/32", netns=g0.ns)
    _, steps = diagnose_netns(g0.ns, str(lab.socket), str(lab.data_dir))
    assert steps[1].detail == f"via {lab.gateway} dev eth0" and steps[-1].ok
    netns.ip("route", "del", "default", netns=g0.ns)
    try:
        _, steps = diagnose_netns(g0.ns, str(lab.socket), str(lab.data_dir))
        assert steps[-1].what == "route" and "staticroutes" in steps[-1].fix
    finally:
        netns.ip("route", "add", "169.254.169.254/32", "via", lab.dhcp_ip, netns=g0.ns)
        netns.ip("route", "add", "default", "via", lab.gateway, netns=g0.ns)
    assert all(s.ok for s in diagnose_netns(g0.ns, str(lab.socket), str(lab.data_dir))[1])


def test_down_after_a_crash_leaves_nothing(tmp_path: Path) -> None:
    """`lab up` killed half-way (SIGKILL): `lab down` still removes all it made."""
    require_chain_tools()
    lab_dir = tmp_path / "crash-lab"
    proc = subprocess.Popen([sys.executable, "-m", "configdrive", "lab", "up", "--dir", str(lab_dir),
                             "--guests", "2", "--cidr", "10.96.0.0/24"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until it has made namespaces and processes
        if (lab_dir / labstate.STATE).exists():
            state = labstate.load(lab_dir)
            if len(state.namespaces) >= 3 and labmod.lab_pids(str(lab_dir)):
                break
        time.sleep(0.02)
    assert proc.poll() is None, "lab up ended before it could be killed half-way"
    proc.kill()
    proc.wait(timeout=10)
    state = labstate.load(lab_dir)
    assert labmod.lab_pids(str(lab_dir)) and any(netns.ns_exists(n) for n in state.namespaces)
    labmod.down(lab_dir)
    assert_gone(state)
