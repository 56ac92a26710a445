"""`configdrive doctor`: walk the chain from a guest the way an operator debugs it.

Route -> proxy namespace -> haproxy listening -> (router rules) -> agent socket
-> agent reaches the API -> signature accepted -> an instance for this IP ->
the guest's own meta_data.json. The walk stops at the first broken hop and
says what to do about it.
"""
from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metadata_content.chain import netns
from metadata_content.chain.labstate import LabError, LabState, load

META_URL = f"http://{netns.METADATA_V4}/openstack/latest/meta_data.json"
DEFAULT_SOCKET = "/run/configdrive/agent.sock"


@dataclass(frozen=True)
class Step:
    what: str
    ok: bool
    detail: str
    fix: str = ""


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 5.0):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def agent_health(path: str) -> dict[str, Any]:
    """The agent's own health report (only reachable on its socket)."""
    conn = _UnixHTTP(path)
    try:
        conn.request("GET", "/healthz")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _owner(ip: str) -> str | None:
    """The qdhcp-/qrouter- namespace that holds *ip*."""
    for ns in netns.namespaces():
        if ns.startswith(("qdhcp-", "qrouter-")) and any(a == ip for _, a in netns.addresses(ns)):
            return ns
    return None


def _listening(ns: str, port: int) -> bool:
    out = netns.run("ss", "-Hltn", f"sport = :{port}", netns=ns, check=False).stdout
    return bool(out.strip())


def walk(ns: str, socket_path: str, data_dir: str | None, store_url: str | None = None) -> list[Step]:
    """Every hop from guest namespace *ns*, up to and including the first failure.
    The store (*store_url*, else *data_dir*) must be the agent's, or the instance hop lies."""
    steps: list[Step] = []

    def fail(what: str, detail: str, fix: str) -> list[Step]:
        steps.append(Step(what, False, detail, fix))
        return steps

    if not netns.ns_exists(ns):
        return fail("guest", f"no network namespace {ns}", "check the name with 'ip netns list'")
    addrs = [a for _, a in netns.addresses(ns)]
    if not addrs:
        return fail("address", "the guest has no IPv4 address",
                    "did DHCP run? dnsmasq must list the guest's MAC (its hosts file comes from the store)")
    guest_ip = addrs[0]
    steps.append(Step("address", True, guest_ip))
    route = netns.route_get(ns)
    if route is None:
        return fail("route", f"no route to {netns.METADATA_V4}",
                    "DHCP options 121/249 must carry 169.254.169.254/32; busybox udhcpc needs "
                    "'-O staticroutes', dhclient needs rfc3442-classless-static-routes")
    hop = route.get("gateway") or netns.METADATA_V4
    steps.append(Step("route", True, f"via {hop} dev {route.get('dev')}"))
    owner = _owner(hop)
    if owner is None:
        return fail("proxy namespace", f"next hop {hop} is in no qdhcp-/qrouter- namespace here",
                    "the route points at the wrong host, or the DHCP/router namespace is missing")
    kind, ident = owner.split("-", 1)
    steps.append(Step("proxy namespace", True, owner))
    if kind == "qdhcp":
        network_ids = [ident]
        if not any(a == netns.METADATA_V4 for _, a in netns.addresses(owner)):
            return fail("metadata address", f"{owner} does not carry {netns.METADATA_V4}/32",
                        f"ip -n {owner} addr add {netns.METADATA_V4}/32 dev <dhcp port>")
        if not _listening(owner, 80):
            return fail("proxy", f"no metadata proxy for network {ident}: nothing listens on port 80 in "
                        f"{owner} (the network has no router and isolated metadata is off?)",
                        f"configdrive proxy start --network-id {ident} --socket {socket_path}")
        steps.append(Step("proxy", True, "haproxy listens on 169.254.169.254:80"))
    else:
        missing = netns.router_rules_present(owner)
        if missing:
            return fail("router rules", f"{owner} lacks: {'; '.join(missing)}",
                        "apply the REDIRECT/mark rules (metadata_content.chain.netns.apply_router_rules)")
        steps.append(Step("router rules", True, "mark, INPUT accept, 9697 drop, REDIRECT"))
        if not _listening(owner, netns.ROUTER_PORT):
            return fail("proxy", f"no metadata proxy for router {ident}: nothing listens on 9697",
                        f"configdrive proxy start --router-id {ident} --socket {socket_path}")
        steps.append(Step("proxy", True, "haproxy listens on 9697"))
        network_ids = None
    try:
        health = agent_health(socket_path)
    except OSError as exc:
        return fail("agent", f"the agent socket {socket_path} does not answer: {exc}",
                    f"configdrive serve agent --socket {socket_path} ... (is the path in haproxy's "
                    "'server' line the same?)")
    steps.append(Step("agent", True, f"socket {socket_path} answers"))
    if health.get("store") != "ok":
        return fail("store", f"the agent cannot read the store: {health.get('store')}",
                    "give the agent the same --data-dir/--store-url as the API")
    if health.get("api") != "ok":
        return fail("API", f"the agent cannot reach the metadata API: {health.get('api')}",
                    "start 'configdrive serve api' or fix the agent's --api URL")
    steps.append(Step("API", True, "the agent reaches the API"))
    if health.get("signature") != "ok":
        return fail("signature", f"the API {health.get('signature')}",
                    "give the agent and the API the same --secret-file")
    steps.append(Step("signature", True, "accepted by the API"))
    from metadata_content.store import Store

    store = Store(store_url, data_dir)
    try:
        if network_ids is None:
            network_ids = store.router_networks(ident)
            if not network_ids:
                return fail("instance", f"router {ident} serves no networks in the store",
                            f"configdrive instances router {ident} NETWORK_ID...")
        found = store.find_by_address(guest_ip, network_ids)
    finally:
        store.close()
    if len(found) != 1:
        detail = (f"no instance has {guest_ip} on {', '.join(network_ids)}" if not found else
                  f"{guest_ip} is claimed by {len(found)} instances: {', '.join(u for u, _ in found)}")
        return fail("instance", detail, "configdrive instances add/update SPEC with this port's address")
    uuid = found[0][0]
    steps.append(Step("instance", True, uuid))
    proc = netns.run("curl", "-s", "-m", "10", "-w", "\n%{http_code}", META_URL, netns=ns, check=False)
    body, _, code = proc.stdout.rpartition("\n")
    if code != "200":
        return fail("end to end", f"GET meta_data.json from the guest answered {code or proc.returncode}",
                    "see the haproxy, agent and API logs for this request")
    try:
        got = json.loads(body).get("uuid")
    except ValueError:
        got = None
    if got != uuid:
        return fail("end to end", f"the guest received instance {got}, expected {uuid}",
                    "identity is wrong: report this")
    steps.append(Step("end to end", True, f"meta_data.json is instance {uuid}"))
    return steps


def lab_state(lab_dir: Path | None) -> LabState | None:
    """The lab in *lab_dir*, if there is one: its socket and store are the defaults."""
    if lab_dir is None:
        return None
    try:
        return load(lab_dir)
    except LabError:
        return None


def diagnose_netns(ns: str, socket_path: str | None, data_dir: str | None,
                   lab: LabState | None = None, store_url: str | None = None) -> tuple[str, list[Step]]:
    """One guest namespace; the socket and store default to the *lab*'s (its state), if given."""
    if lab is not None:
        socket_path = socket_path or str(lab.socket)
        if not (data_dir or store_url):
            data_dir = str(lab.data_dir)
    return ns, walk(ns, socket_path or DEFAULT_SOCKET, data_dir, store_url)


def diagnose_lab(lab_dir: Path) -> list[tuple[str, list[Step]]]:
    state = load(lab_dir)
    return [(f"{g.name} ({g.ns}, {g.ip})", walk(g.ns, str(state.socket), str(state.data_dir)))
            for g in state.guests]
