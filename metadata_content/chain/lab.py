"""A complete metadata chain on one host, for operators to try and for the tests.

Topology (every link lives inside namespaces the lab made, none on the host)::

    <p>-g0 eth0 ─┐
    <p>-g1 eth0 ─┼─ <p>-sw: bridge br0 ─┬─ qdhcp-<net>: tap-dhcp  (dnsmasq, haproxy 169.254.169.254:80)
       ...       ┘                      └─ qrouter-<rtr>: qr-lab  (iptables REDIRECT, haproxy :9697)
    haproxy ─► agent (UNIX socket) ─► API 127.0.0.1:<port> (host loopback)

The state file (``lab.json`` in the lab directory, :mod:`.labstate`) records
every resource *before* it is created, and every process the lab starts
carries ``CONFIGDRIVE_LAB=<dir>`` in its environment, so :func:`down` removes
exactly what this lab made, also after a crash half-way through ``up``.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metadata_content.chain import dnsmasq, haproxy, netns
from metadata_content.chain.labstate import MODES, STATE, Guest, GuestPath, LabError, LabState, load
from metadata_content.chain.processes import stop_pids

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.store import Store

LAB_ENV = "CONFIGDRIVE_LAB"


def default_dir() -> Path:
    return Path(os.environ.get("CONFIGDRIVE_LAB_DIR") or Path(tempfile.gettempdir()) / "configdrive-lab")


# -- processes ------------------------------------------------------------------


def _lab_env(state: LabState) -> dict[str, str]:
    return {**os.environ, LAB_ENV: str(state.dir)}


def _spawn(state: LabState, name: str, cmd: list[str], log: str) -> int:
    with open(state.dir / log, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=_lab_env(state), start_new_session=True)
    state.record_process(name, proc.pid)
    return proc.pid


def lab_pids(lab_dir: str | Path) -> list[int]:
    """Every live process started by the lab in *lab_dir* (found by its environment)."""
    marker = f"{LAB_ENV}={lab_dir}".encode()
    found = []
    spare = {str(os.getpid()), str(os.getppid())}  # never the caller (its shell may carry the marker)
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry in spare:
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            found.append(int(entry))
    return found


def stop_process(state: LabState, name: str) -> None:
    """Stop one of the lab's services (its whole process group) by its recorded pid."""
    pid = state.processes.get(name)
    if pid is None:
        raise LabError(f"the lab has no process {name!r}")
    members = [p for p in lab_pids(state.dir) if _pgid(p) == pid]
    stop_pids(members)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(check: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise LabError(f"{what} did not come up within {seconds:.0f} s")


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _unix_open(path: str | Path) -> bool:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(0.5)
    try:
        sock.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        sock.close()


# -- instances -------------------------------------------------------------------


def guest_spec(state: LabState, index: int, ip: str, mac: str,
               base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A spec for guest *index* on the lab network (a generated one, or *base* re-homed:
    its NICs replaced by one on the lab network)."""
    net = ipaddress.ip_network(state.cidr)
    nic = {"name": "eth0", "mac": mac, "network_id": state.network_id,
           "port_id": str(uuid.uuid4()),
           "subnets": [{"cidr": str(net), "ip": ip, "gateway": state.gateway, "dhcp": True}]}
    if base is not None:
        spec = {k: v for k, v in base.items() if k not in ("nics", "bonds", "vlans", "network_data")}
        spec["devices"] = [d for d in spec.get("devices", []) if d.get("type") != "nic"]
        spec.setdefault("project_id", state.project_id)
        spec["nics"] = [nic]
        return spec
    name = f"lab-g{index}"
    return {"uuid": str(uuid.uuid4()), "hostname": name, "name": name,
            "project_id": state.project_id, "flavor": "m1.small",
            "image": {"id": "17a8c8f5-f389-4e8e-b500-d51d75bd1c3e", "ec2_id": 10},
            "user_data": {"text": f"#!/bin/sh\necho {name} {state.id}\n"},
            "meta": {"lab": state.id, "guest": str(index)},
            "nics": [nic]}


def _mac(state: LabState, index: int) -> str:
    lab = bytes.fromhex(state.id)
    return f"fa:16:3e:{lab[0] ^ lab[1]:02x}:{index >> 8 & 0xff:02x}:{index & 0xff:02x}"


@contextmanager
def _lab_store(state: LabState) -> Iterator[Store]:
    """The lab's own store (SQLite in its directory), closed however the block ends."""
    from metadata_content.store import Store

    store = Store(data_dir=state.data_dir)
    try:
        yield store
    finally:
        store.close()


def _register(state: LabState, specs: list[dict[str, Any]]) -> None:
    from metadata_content.spec import instance_from_data

    with _lab_store(state) as store:
        store.add([(s, instance_from_data(s, f"lab guest {s.get('hostname')}"))
                   for s in specs])
        store.set_router_networks(state.router_id, [state.network_id])


def _load_specs(specs_dir: Path) -> list[dict[str, Any]]:
    from metadata_content.spec import read_spec

    paths = sorted([*specs_dir.glob("*.yaml"), *specs_dir.glob("*.yml"), *specs_dir.glob("*.json")])
    if not paths:
        raise LabError(f"no *.yaml, *.yml or *.json specs in {specs_dir}")
    return [read_spec(p) for p in paths]


# -- up ---------------------------------------------------------------------------


def up(lab_dir: Path, guests: int = 2, mode: str = "both", cidr: str = "10.99.0.0/24",
       specs_dir: Path | None = None, api_workers: int = 1, agent_workers: int = 1,
       agent_timeout: float = 30.0) -> LabState:
    """Build the whole chain and return its state. On failure everything is removed."""
    chosen = next((m for m in MODES if m == mode), None)
    if chosen is None:
        raise LabError(f"mode must be one of {', '.join(MODES)}")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, iptables)")
    _require_tools()
    lab_dir = lab_dir.resolve()
    if (lab_dir / STATE).exists():
        raise LabError(f"a lab already exists in {lab_dir} (run 'configdrive lab down' first)")
    net = ipaddress.ip_network(cidr)
    hosts = list(net.hosts())
    bases = _load_specs(specs_dir) if specs_dir else None
    if bases is not None:
        guests = len(bases)
    if len(hosts) < guests + 10:
        raise LabError(f"{cidr} is too small for {guests} guests")
    owned = not lab_dir.exists()
    lab_dir.mkdir(parents=True, exist_ok=True)
    lab_id = secrets.token_hex(2)
    prefix = f"cd{lab_id}"
    network_id, router_id = str(uuid.uuid4()), str(uuid.uuid4())
    state = LabState(
        id=lab_id, dir=lab_dir, owned_dir=owned, mode=chosen, cidr=str(net), prefix=prefix,
        network_id=network_id, router_id=router_id, project_id=secrets.token_hex(16),
        gateway=str(hosts[0]), dhcp_ip=str(hosts[1]), data_dir=lab_dir / "data",
        socket=lab_dir / "agent.sock", secret_file=lab_dir / "secret", switch_ns=f"{prefix}-sw",
        dhcp_ns=f"qdhcp-{network_id}", router_ns=f"qrouter-{router_id}", created=time.time())
    state.save()
    try:
        _build(state, [str(h) for h in hosts[10:10 + guests]], bases, api_workers, agent_workers, agent_timeout)
    except BaseException:
        down(lab_dir)
        raise
    return state


def _require_tools() -> None:
    import shutil

    missing = [t for t in ("ip", "haproxy", "dnsmasq", "iptables-restore", "busybox")
               if shutil.which(t) is None]
    if missing:
        raise LabError(f"missing tools: {', '.join(missing)} (scripts/install-debian-packages.sh)")


def _build(state: LabState, guest_ips: list[str], bases: list[dict[str, Any]] | None,
           api_workers: int, agent_workers: int, agent_timeout: float) -> None:
    lab_dir = state.dir
    prefix_len = ipaddress.ip_network(state.cidr).prefixlen
    # created 0600 (never readable by others, not even between write and chmod)
    fd = os.open(state.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    os.chmod(state.secret_file, 0o600)
    # instances
    specs = []
    for i, ip in enumerate(guest_ips):
        spec = guest_spec(state, i, ip, _mac(state, i), bases[i] if bases else None)
        specs.append(spec)
        path: GuestPath = "router" if state.mode == "router" or (state.mode == "both" and i % 2) else "dhcp"
        state.guests.append(Guest(name=f"g{i}", ns=f"{state.prefix}-g{i}", ip=ip,
                                  mac=_mac(state, i), uuid=spec["uuid"], hostname=spec["hostname"],
                                  path=path))
    state.save()
    _register(state, specs)
    # services on the host side
    api_port, admin_port = _free_port(), _free_port()
    state.api = f"http://127.0.0.1:{api_port}"
    state.admin = f"http://127.0.0.1:{admin_port}"
    state.api_cmd = [sys.executable, "-m", "configdrive", "serve", "api",
                     "--data-dir", str(state.data_dir), "--bind", f"127.0.0.1:{api_port}",
                     "--admin-bind", f"127.0.0.1:{admin_port}", "--secret-file", str(state.secret_file),
                     "--workers", str(api_workers), "--access-log", str(lab_dir / "api-access.log")]
    start_api(state, wait=False)
    start_agent(state, agent_workers, agent_timeout)
    # the switch
    sw = state.switch_ns
    state.record_namespace(sw)
    netns.ns_add(sw)
    netns.bridge(sw, "br0")
    # DHCP namespace: port and dnsmasq in every mode (every guest takes a lease);
    # the metadata addresses and haproxy only where guests reach metadata through it
    ns = state.dhcp_ns
    _plug(state, ns, "dhcp", "tap-dhcp")
    netns.add_address(ns, "tap-dhcp", f"{state.dhcp_ip}/{prefix_len}")
    write_dhcp(state)
    files = dnsmasq.DnsmasqFiles(lab_dir, state.network_id)
    state.record_process("dnsmasq", dnsmasq.start(ns, "tap-dhcp", state.cidr, files,
                                                  env={LAB_ENV: str(state.dir)}))
    if state.mode in ("dhcp", "both"):
        netns.add_address(ns, "tap-dhcp", f"{netns.METADATA_V4}/32")
        netns.add_address(ns, "tap-dhcp", f"{netns.METADATA_V6}/128")
        start_proxy(state, "dhcp")
    # router namespace: gateway port, iptables, haproxy
    ns = state.router_ns
    _plug(state, ns, "rtr", "qr-lab")
    netns.add_address(ns, "qr-lab", f"{state.gateway}/{prefix_len}")
    netns.sysctl(ns, "net.ipv4.ip_forward", "1")
    if state.mode in ("router", "both"):
        netns.apply_router_rules(ns)
        start_proxy(state, "router")
    # guests
    for i, guest in enumerate(state.guests):
        _plug(state, guest.ns, f"g{i}", "eth0", mac=guest.mac)
    _wait(lambda: _tcp_open(api_port), "the metadata API")
    _wait(lambda: _unix_open(state.socket), "the metadata agent")
    leases(state)
    state.save()


def _plug(state: LabState, ns: str, switch_end: str, ns_end: str, mac: str | None = None) -> None:
    """A new namespace *ns* wired to the lab's bridge; recorded before it exists,
    so that down() removes it even after a crash half-way."""
    sw = state.switch_ns
    state.record_namespace(ns)
    netns.ns_add(ns)
    netns.veth(sw, switch_end, ns, ns_end, mac_b=mac)
    netns.enslave(sw, switch_end, "br0")


def write_dhcp(state: LabState) -> None:
    """dnsmasq's hosts from the store (MAC -> IP) for the lab's guests, named by their
    spec hostname (what meta_data says) and tagged with their metadata path."""
    guests = {g.uuid: g for g in state.guests}
    with _lab_store(state) as store:
        ports = store.ports_on(state.network_id)
    hosts = [dnsmasq.DhcpHost(mac, ip, guests[uid].hostname, "router" if guests[uid].path == "router" else "meta")
             for mac, ip, uid in ports if uid in guests]
    gateway = state.gateway
    dhcp_ip = state.dhcp_ip if state.mode in ("dhcp", "both") else None
    options = dnsmasq.dhcp_options(dhcp_ip or gateway, gateway)
    dnsmasq.write_files(dnsmasq.DnsmasqFiles(state.dir, state.network_id), hosts, options)


def start_api(state: LabState, wait: bool = True) -> int:
    """(Re)start the metadata API with the command line recorded at `up`."""
    pid = _spawn(state, "api", state.api_cmd, "api.log")
    if wait:
        port = int(_api_url(state).rsplit(":", 1)[1])
        _wait(lambda: _tcp_open(port), "the metadata API")
    return pid


def _api_url(state: LabState) -> str:
    if state.api is None:
        raise LabError("the lab has no metadata API yet ('lab up' did not get that far)")
    return state.api


def start_agent(state: LabState, workers: int = 1, timeout: float = 30.0) -> int:
    """(Re)start the agent; its command line is recorded so a restart is identical."""
    state.agent_cmd = state.agent_cmd or [
        sys.executable, "-m", "configdrive", "serve", "agent", "--socket", str(state.socket),
        "--api", _api_url(state), "--secret-file", str(state.secret_file), "--data-dir", str(state.data_dir),
        "--workers", str(workers), "--timeout", str(timeout),
        "--access-log", str(state.dir / "agent-access.log")]
    pid = _spawn(state, "agent", state.agent_cmd, "agent.log")
    _wait(lambda: _unix_open(state.socket), "the metadata agent")
    return pid


def start_proxy(state: LabState, kind: GuestPath, rate_limit: haproxy.RateLimit | None = None,
                socket_path: str | None = None, maxconn: int = haproxy.MAXCONN) -> int:
    """(Re)start haproxy for the DHCP namespace (network id) or the router namespace
    (router id); a running one is reloaded gracefully when its configuration changes."""
    sock = socket_path or str(state.socket)
    if kind == "dhcp":
        text = haproxy.render(sock, network_id=state.network_id, rate_limit=rate_limit, maxconn=maxconn,
                              bind_v6=f"[{netns.METADATA_V6}]:80", bind_v6_interface="tap-dhcp")
        ns, ident = state.dhcp_ns, state.network_id
    else:
        text = haproxy.render(sock, router_id=state.router_id, rate_limit=rate_limit, maxconn=maxconn)
        ns, ident = state.router_ns, state.router_id
    files = haproxy.ProxyFiles(state.dir, ident)
    pid, _ = haproxy.start(ns, files, text, env={LAB_ENV: str(state.dir)})
    state.record_process(f"haproxy-{kind}", pid)
    return pid


UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc event script: address, then option 121 (or 249) routes, else option 3.
IP={ip}
case "$1" in
  deconfig) $IP -4 addr flush dev "$interface"; $IP link set "$interface" up ;;
  bound|renew)
    $IP -4 addr flush dev "$interface"
    $IP addr add "$ip/$mask" dev "$interface"
    routes="$staticroutes"; [ -n "$routes" ] || routes="$msstaticroutes"
    if [ -n "$routes" ]; then
      set -- $routes
      while [ $# -ge 2 ]; do $IP route replace "$1" via "$2" dev "$interface"; shift 2; done
    elif [ -n "$router" ]; then
      $IP route replace default via "${{router%% *}}" dev "$interface"
    fi ;;
esac
exit 0
"""


def leases(state: LabState) -> None:
    """Every guest takes a DHCP lease with busybox udhcpc (-O staticroutes), in parallel."""
    import shutil

    script = state.dir / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT.format(ip=shutil.which("ip")))
    script.chmod(0o755)
    procs = []
    for guest in state.guests:
        cmd = ["ip", "netns", "exec", guest.ns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f",
               "-t", "10", "-T", "1", "-A", "1", "-O", "staticroutes", "-O", "msstaticroutes",
               "-s", str(script)]
        procs.append((guest, subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                              stderr=subprocess.STDOUT, env=_lab_env(state))))
    failed = []
    for guest, proc in procs:
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if proc.returncode != 0:
            failed.append(f"{guest.name}: {out.decode(errors='replace').strip()[-300:]}")
    if failed:
        raise LabError("DHCP failed for " + "; ".join(failed))


# -- use -------------------------------------------------------------------------------


def _orphans(pid: int, live: set[int]) -> list[int]:
    """Live members of the process group of a service whose recorded process is gone
    (workers that outlived their main process). They may still answer on the service's
    address, which `doctor` would then find up while the service is not running."""
    if pid in live:
        return []
    return sorted(p for p in live if _pgid(p) == pid)


def status(state: LabState) -> dict[str, Any]:
    """What exists and what runs, for `lab status` and the tests (a JSON document)."""
    live = set(lab_pids(state.dir))
    procs = {name: {"pid": pid, "running": pid in live, "orphans": _orphans(pid, live)}
             for name, pid in state.processes.items()}
    return {"dir": str(state.dir), "mode": state.mode, "network_id": state.network_id,
            "router_id": state.router_id, "api": state.api, "socket": str(state.socket),
            "namespaces": {ns: netns.ns_exists(ns) for ns in state.namespaces},
            "processes": procs,
            "guests": [{**vars(g), "route": (netns.route_get(g.ns) or {}).get("gateway")
                        if netns.ns_exists(g.ns) else None} for g in state.guests]}


def add_identities(state: LabState, count: int, ns_name: str | None = None) -> dict[str, Any]:
    """Many more instances in one extra namespace, one address each (the mass boot):
    registered in the store and on the bridge; returns {namespace, identities}."""
    net = ipaddress.ip_network(state.cidr)
    hosts = list(net.hosts())
    start = 10 + len(state.guests)
    if len(hosts) < start + count:
        raise LabError(f"{state.cidr} has no room for {count} more identities")
    ns = ns_name or f"{state.prefix}-m"
    base = len(state.guests) + 1000
    specs = [guest_spec(state, base + i, str(hosts[start + i]), _mac(state, base + i)) for i in range(count)]
    for spec in specs:
        spec["hostname"] = spec["name"] = f"mass-{spec['nics'][0]['subnets'][0]['ip'].replace('.', '-')}"
    from metadata_content.spec import instance_from_data

    with _lab_store(state) as store:
        store.add([(s, instance_from_data(s, "mass boot")) for s in specs])
    _plug(state, ns, "mass", "eth0")
    netns.add_addresses(ns, "eth0", [f"{s['nics'][0]['subnets'][0]['ip']}/{net.prefixlen}" for s in specs])
    via = state.dhcp_ip if state.mode != "router" else state.gateway
    netns.ip("route", "add", f"{netns.METADATA_V4}/32", "via", via, netns=ns)
    identities = [{"ip": s["nics"][0]["subnets"][0]["ip"], "uuid": s["uuid"], "hostname": s["hostname"]}
                  for s in specs]
    return {"namespace": ns, "identities": identities}


# -- down ------------------------------------------------------------------------------


def down(lab_dir: Path) -> list[str]:
    """Remove every process, namespace and file the lab in *lab_dir* made; what was removed."""
    import shutil

    lab_dir = lab_dir.resolve()
    try:
        state: LabState | None = load(lab_dir)
    except LabError:
        state = None  # none, or unreadable: its processes are still found by their marker
    done = []
    pids = lab_pids(lab_dir)
    stop_pids(pids)
    done += [f"process {p}" for p in pids]
    for ns in reversed(state.namespaces if state else []):
        if netns.ns_exists(ns):
            netns.ns_del(ns)
            done.append(f"namespace {ns}")
    if state and state.owned_dir:
        shutil.rmtree(lab_dir, ignore_errors=True)
        done.append(f"directory {lab_dir}")
    else:
        for name in ["data", STATE, "agent.sock", "secret", "udhcpc.sh"]:
            path = lab_dir / name
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for pattern in ("haproxy-*", "dnsmasq-*", "*.log"):
            for path in lab_dir.glob(pattern):
                path.unlink(missing_ok=True)
        done.append(f"files in {lab_dir}")
    return done


def fetch(state: LabState, name: str, path: str, headers: dict[str, str] | None = None,
          method: str = "GET", url: str | None = None, data: bytes | None = None,
          timeout: float = 10.0, interface: str | None = None) -> tuple[int, bytes, float]:
    """(status, body, seconds) of one curl from inside guest *name*; status 0 when the
    connection failed or timed out. What `lab exec GUEST -- curl ...` does, for scripts."""
    ns = state.guest(name).ns if not name.startswith(("qdhcp-", "qrouter-", state.prefix)) else name
    target = url or f"http://{netns.METADATA_V4}{path}"
    cmd = ["curl", "-g", "-s", "-m", str(timeout), "-X", method, "-o", "-", "-w", "\n%{http_code}"]
    # headers go through a private file, never curl's command line: a forged
    # X-Instance-ID-Signature would otherwise show in every process listing
    with tempfile.NamedTemporaryFile("w", prefix="lab-headers-", encoding="latin-1") as hfile:
        if headers:
            hfile.write("".join(f"{key}: {value}\n" for key, value in headers.items()))
            hfile.flush()
            cmd += ["-H", f"@{hfile.name}"]
        if interface:
            cmd += ["--interface", interface]
        if data is not None:
            cmd += ["--data-binary", "@-"]
        cmd.append(target)
        began = time.monotonic()
        proc = subprocess.run(["ip", "netns", "exec", ns, *cmd], input=data, capture_output=True,
                              timeout=timeout + 10)
    body, _, code = proc.stdout.rpartition(b"\n")
    return int(code or 0), body, time.monotonic() - began
