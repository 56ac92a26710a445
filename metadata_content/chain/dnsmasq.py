"""dnsmasq in a qdhcp namespace: static leases from the store, and the DHCP
options that give guests their route to 169.254.169.254.

Its hosts and options files are separate from the command line so that
they can be rewritten (atomically) while dnsmasq runs. Failures raise
:class:`~metadata_content.chain.netns.NetError`, like the rest of the wiring.
"""
from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from metadata_content.chain.netns import METADATA_V4, NetError


@dataclass(frozen=True)
class DhcpHost:
    """One static lease: the guest's port, named by its spec hostname."""

    mac: str
    ip: str
    hostname: str
    tag: str = "meta"  # "meta": metadata route via the DHCP port; "router": via the gateway


def dhcp_options(dhcp_ip: str, gateway: str | None) -> list[str]:
    """dnsmasq option lines: 121 and 249 carry the metadata route and the default
    route (clients ignore option 3 when 121 is present, so both go in); hosts
    tagged ``router`` reach 169.254.169.254 through the gateway instead."""
    lines = []
    for tag, hop in (("meta", dhcp_ip), ("router", gateway)):
        if hop is None:
            continue
        routes = f"{METADATA_V4}/32,{hop}" + (f",0.0.0.0/0,{gateway}" if gateway else "")
        lines += [f"tag:{tag},option:classless-static-route,{routes}", f"tag:{tag},249,{routes}"]
        if gateway:
            lines.append(f"tag:{tag},option:router,{gateway}")
    return lines


@dataclass(frozen=True)
class DnsmasqFiles:
    """Where one network's dnsmasq keeps its hosts, options, leases, pid and log."""

    state_dir: Path
    ident: str

    def path(self, kind: str) -> Path:
        return self.state_dir / f"dnsmasq-{self.ident}.{kind}"


# dnsmasq reads a dhcp-host field as its keyword or a lease time before it
# takes it as a name: "ignore" (no lease), "infinite", "3600", "12h", "1w".
_KEYWORD = re.compile(r"ignore|infinite|[0-9 ]*[0-9][0-9 ]*[wdhmsWDHMS]?")
_FIELD = {"mac": re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}"), "tag": re.compile(r"meta|router"),
          "hostname": re.compile(r"[A-Za-z0-9.-]{1,253}")}


def host_line(host: DhcpHost) -> str:
    """One dhcp-hostsfile line; no value can add a line or a field, or be read as syntax.

    The store's values were validated already; this is the last guard before a
    file dnsmasq parses. A host name dnsmasq would take for a keyword or a lease
    time is left out: the guest still gets its lease (its name comes from metadata).
    """
    for field, pattern in _FIELD.items():
        if not pattern.fullmatch(getattr(host, field)):
            raise NetError(f"refusing {field} {getattr(host, field)!r} for dnsmasq's hosts file")
    ip = str(ipaddress.ip_address(host.ip))
    name = "" if _KEYWORD.fullmatch(host.hostname) else f",{host.hostname}"
    return f"{host.mac},set:{host.tag},{ip}{name}"


def write_files(files: DnsmasqFiles, hosts: list[DhcpHost], options: list[str]) -> None:
    """The hosts and options files, each replaced atomically (never read half-written)."""
    files.state_dir.mkdir(parents=True, exist_ok=True)
    text = "".join(host_line(h) + "\n" for h in hosts)
    for kind, body in (("hosts", text), ("opts", "".join(o + "\n" for o in options))):
        tmp = files.path(kind + ".new")
        tmp.write_text(body)
        os.replace(tmp, files.path(kind))


def start(netns: str, dev: str, cidr: str, files: DnsmasqFiles,
          env: dict[str, str] | None = None) -> int:
    """dnsmasq serving only the hosts file (static leases), no DNS; returns its pid."""
    net = ipaddress.ip_network(cidr, strict=False)
    for kind in ("leases", "log"):
        files.path(kind).touch()
    cmd = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-hosts", "--no-resolv",
           "--port=0", f"--interface={dev}", "--bind-interfaces", "--except-interface=lo",
           f"--dhcp-range={net.network_address},static,{net.netmask},12h",
           f"--dhcp-hostsfile={files.path('hosts')}", f"--dhcp-optsfile={files.path('opts')}",
           f"--dhcp-leasefile={files.path('leases')}", f"--pid-file={files.path('pid')}",
           "--dhcp-authoritative", "--log-dhcp", f"--log-facility={files.path('log')}", "--user=root"]
    with open(files.path("log"), "ab") as log:
        proc = subprocess.Popen(["ip", "netns", "exec", netns, *cmd], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})})
    for _ in range(100):
        if proc.poll() is not None:
            raise NetError(f"dnsmasq exited ({proc.returncode}); see {files.path('log')}")
        if files.path("pid").exists() and files.path("pid").read_text().strip():
            break
        time.sleep(0.02)
    return proc.pid
