"""`configdrive proxy config|start|stop`: haproxy in a namespace, by pid file, reloaded
gracefully when its configuration changes."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from metadata_content.chain import haproxy, netns, processes
from tests.conftest import ROOT
from tests.support.chainlab import require_chain_tools

CLI = [sys.executable, "-m", "configdrive", "proxy"]


def proxy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_config_command() -> None:
    out = proxy("config", "--network-id", "net-9", "--socket", "/run/x.sock", "--rate-limit", "20/10")
    assert out.returncode == 0, out.stderr
    assert "set-header X-Neutron-Network-ID net-9" in out.stdout and "deny_status 429" in out.stdout
    assert proxy("config", "--network-id", "a", "--router-id", "b").returncode == 2
    assert proxy("config", "--router-id", "r", "--rate-limit", "fast").returncode == 2


def test_start_reload_stop_in_a_namespace(tmp_path: Path) -> None:
    require_chain_tools()
    net = f"cdtest-{secrets.token_hex(3)}"
    ns = f"qdhcp-{net}"
    state = tmp_path / "proxy"
    netns.ns_add(ns)
    try:
        netns.add_address(ns, "lo", "169.254.169.254/32")
        common = ["--network-id", net, "--socket", str(tmp_path / "agent.sock"), "--state-dir", str(state)]
        first = proxy("start", *common)
        assert first.returncode == 0 and "started" in first.stdout, first.stderr
        files = haproxy.ProxyFiles(state, net)
        pid = haproxy.read_pid(files.pid)
        assert pid is not None and pid in netns.ns_pids(ns)
        assert "169.254.169.254:80" in netns.run("ss", "-Hltn", netns=ns).stdout
        again = proxy("start", *common)
        assert "unchanged" in again.stdout and haproxy.read_pid(files.pid) == pid
        reloaded = proxy("start", *common, "--rate-limit", "5/10")
        assert "reloaded" in reloaded.stdout, reloaded.stderr
        new_pid = haproxy.read_pid(files.pid)
        assert new_pid not in (None, pid) and "deny_status 429" in files.config.read_text()
        # with no agent behind it, a request is answered 503 (not a hang)
        out = netns.run("curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
                        "http://169.254.169.254/openstack", netns=ns, check=False).stdout
        assert out == "503"
        stopped = proxy("stop", "--network-id", net, "--state-dir", str(state))
        assert "stopped" in stopped.stdout
        assert haproxy.read_pid(files.pid) is None and not files.pid.exists()
        assert processes.alive(new_pid) is False
        assert "was not running" in proxy("stop", "--network-id", net, "--state-dir", str(state)).stdout
        assert proxy("start", "--network-id", "no-such-ns", "--state-dir", str(state)).returncode == 1
    finally:
        netns.ns_del(ns)
    assert not os.path.exists(f"/run/netns/{ns}")


def test_rate_limit_counts_ipv4_and_ipv6_sources(tmp_path: Path) -> None:
    """One stick table holds both families (IPv4 as ::ffff:a.b.c.d): a guest reaching
    the proxy over IPv6 is limited too. No agent behind it: 503 until the limit, then 429."""
    require_chain_tools()
    net = f"cdtest-{secrets.token_hex(3)}"
    ns = f"qdhcp-{net}"
    netns.ns_add(ns)
    files = haproxy.ProxyFiles(tmp_path / "proxy", net)
    try:
        netns.add_address(ns, "lo", "169.254.169.254/32")
        text = haproxy.render(str(tmp_path / "agent.sock"), network_id=net, bind_v6="[::1]:80",
                              rate_limit=haproxy.RateLimit(3, 30))
        haproxy.start(ns, files, text)
        for url in ("http://169.254.169.254/", "http://[::1]/"):
            codes = [netns.run("curl", "-g", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
                               url, netns=ns, check=False).stdout for _ in range(5)]
            assert codes[:3] == ["503"] * 3 and codes[3:] == ["429"] * 2, (url, codes)
    finally:
        haproxy.stop(files)
        netns.ns_del(ns)
