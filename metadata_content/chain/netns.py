"""Network wiring of the chain: namespaces, veths, a bridge, addresses, routes, router iptables.

Thin wrappers over ``ip`` and ``iptables-restore`` (the tools an operator
would type), so what the lab builds can be reproduced or inspected by hand.
Every function raises :class:`NetError` with the failing command and its
stderr. dnsmasq, the DHCP side, is :mod:`metadata_content.chain.dnsmasq`.
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from metadata_content.chain.processes import stop_pids

METADATA_V4 = "169.254.169.254"
METADATA_V6 = "fe80::a9fe:a9fe"
ROUTER_PORT = 9697
MARK = "0x1/0xffff"


class NetError(RuntimeError):
    """A wiring command failed; ``str()`` names it and what it said."""


def run(*cmd: str, netns: str | None = None, check: bool = True, timeout: float = 30,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run *cmd* (inside *netns* if given) and return it; NetError on failure."""
    full = ["ip", "netns", "exec", netns, *cmd] if netns else list(cmd)
    try:
        proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=stdin)
    except FileNotFoundError:
        raise NetError(f"{full[0]} is not installed (see scripts/debian-packages.txt)") from None
    if check and proc.returncode != 0:
        raise NetError(f"{' '.join(full)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    """``ip [-n NS] ARGS`` -> stdout."""
    pre = ["ip", "-n", netns] if netns else ["ip"]
    return run(*pre, *args, check=check).stdout


def ip_json(*args: str, netns: str | None = None) -> Any:
    out = ip("-j", *args, netns=netns, check=False)
    return json.loads(out) if out.strip() else []


# -- namespaces and links -------------------------------------------------------


def namespaces() -> list[str]:
    return [entry["name"] for entry in ip_json("netns", "list")]


def ns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def ns_add(name: str) -> None:
    """Create namespace *name* with its loopback up."""
    ip("netns", "add", name)
    ip("link", "set", "lo", "up", netns=name)


def ns_pids(name: str) -> list[int]:
    out = run("ip", "netns", "pids", name, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def ns_del(name: str) -> None:
    """Kill what still runs in *name*, then delete it (its links go with it)."""
    if not ns_exists(name):
        return
    stop_pids(ns_pids(name), wait=2.0)
    ip("netns", "del", name, check=False)


def bridge(netns: str, name: str) -> None:
    ip("link", "add", name, "type", "bridge", netns=netns)
    ip("link", "set", name, "up", netns=netns)


def veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mac_b: str | None = None) -> None:
    """A veth pair with one end in each namespace, both up (names <= 15 chars)."""
    for name in (name_a, name_b):
        if len(name) > 15:
            raise NetError(f"interface name {name!r} is longer than 15 characters")
    extra = ["address", mac_b] if mac_b else []
    ip("link", "add", name_a, "type", "veth", "peer", "name", name_b, *extra, "netns", ns_b, netns=ns_a)
    ip("link", "set", name_a, "up", netns=ns_a)
    ip("link", "set", name_b, "up", netns=ns_b)


def enslave(netns: str, dev: str, bridge_name: str) -> None:
    ip("link", "set", dev, "master", bridge_name, netns=netns)


def add_address(netns: str, dev: str, cidr: str) -> None:
    ip("addr", "add", cidr, "dev", dev, *(["nodad"] if ":" in cidr else []), netns=netns)


def add_addresses(netns: str, dev: str, cidrs: list[str]) -> None:
    """Many addresses at once (``ip -batch``): the mass-boot identities."""
    batch = "".join(f"addr add {c} dev {dev}\n" for c in cidrs)
    run("ip", "-n", netns, "-batch", "-", stdin=batch)


def route_get(netns: str, dest: str = METADATA_V4) -> dict[str, Any] | None:
    """The route *netns* would take to *dest*, or None when it has none."""
    proc = run("ip", "-n", netns, "-j", "route", "get", dest, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    found = json.loads(proc.stdout)
    return found[0] if found else None


def addresses(netns: str, family: str = "inet") -> list[tuple[str, str]]:
    """(interface, address) of every global address of *family* in *netns*."""
    found = []
    for link in ip_json("addr", "show", netns=netns):
        for info in link.get("addr_info", []):
            if info.get("family") == family and info.get("scope") != "host":
                found.append((link["ifname"], info["local"]))
    return found


def sysctl(netns: str, key: str, value: str) -> None:
    run("sysctl", "-q", "-w", f"{key}={value}", netns=netns)


# -- the router side ------------------------------------------------------------


def router_rules(port_prefix: str = "qr-", port: int = ROUTER_PORT) -> str:
    """iptables-restore input for a qrouter namespace (SPEC section 6): mark metadata
    packets arriving on router ports, never forward marked packets, accept them on
    INPUT, drop anything else for the proxy port, REDIRECT the marked ones to it."""
    match = f"-i {port_prefix}+ -d {METADATA_V4}/32 -p tcp -m tcp --dport 80"
    return "\n".join([
        "*mangle",
        ":cd-meta-mark - [0:0]",
        f"-A PREROUTING {match} -j cd-meta-mark",
        f"-A cd-meta-mark -j MARK --set-xmark {MARK}",
        "COMMIT",
        "*filter",
        ":cd-meta-input - [0:0]",
        ":cd-meta-forward - [0:0]",
        "-A INPUT -j cd-meta-input",
        "-A FORWARD -j cd-meta-forward",
        f"-A cd-meta-input -m mark --mark {MARK} -j ACCEPT",
        f"-A cd-meta-input -p tcp -m tcp --dport {port} -j DROP",
        f"-A cd-meta-forward -m mark --mark {MARK} -j DROP",
        "COMMIT",
        "*nat",
        ":cd-meta-redirect - [0:0]",
        f"-A PREROUTING {match} -j cd-meta-redirect",
        f"-A cd-meta-redirect -p tcp -j REDIRECT --to-ports {port}",
        "COMMIT",
        "",
    ])


def apply_router_rules(netns: str, port_prefix: str = "qr-", port: int = ROUTER_PORT) -> None:
    run("iptables-restore", "--noflush", netns=netns, stdin=router_rules(port_prefix, port))


def router_rules_present(netns: str, port: int = ROUTER_PORT) -> list[str]:
    """The SPEC rules missing from *netns* (empty when all are there)."""
    needles = {"nat": [f"REDIRECT --to-ports {port}"],
               "mangle": [f"MARK --set-xmark {MARK}"],
               "filter": [f"--mark {MARK} -j ACCEPT", f"--dport {port} -j DROP"]}
    missing = []
    for table, wanted in needles.items():
        out = run("iptables", "-t", table, "-S", netns=netns, check=False).stdout
        missing += [f"{table}: {w}" for w in wanted if w not in out]
    return missing
