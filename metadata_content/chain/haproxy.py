"""The namespace proxy: haproxy in a qdhcp or qrouter namespace, in front of the agent.

It is the only hop that knows which network (or router) a guest came from,
so it *sets* that header and *deletes* the other one on every request
(LP#1865036: a guest must not be able to name a network or router itself;
header names are case-insensitive in haproxy, so every spelling goes), and
appends the guest's address to X-Forwarded-For (``option forwardfor``), the
entry the agent trusts.

Differences from Neutron's template: logs go to stdout (``/dev/log`` does
not exist on such hosts), which we redirect to a file; haproxy runs in the
foreground under our pid file instead of daemonising; connections to the
agent are kept alive between requests (``http-reuse safe``) instead of
``http-server-close``, since each request carries its own identity headers.
"""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from metadata_content.chain.processes import stop_pids

# http-request 10 s, not Neutron's 30 s: a request head (and a body of at most
# BODY_MAX) is sent at once by every metadata client, and a half-sent one holds
# one of the MAXCONN slots until this expires.
TIMEOUTS = {"http-request": 10, "connect": 30, "client": 32, "server": 32, "http-keep-alive": 30}
MAXCONN = 1024
RETRIES = 3
# Concurrent connections one source address may hold (more are closed at once).
# A guest's readers (cloud-init, cloudbase-init, glean) use one connection at a
# time, so 16 leaves room for several processes behind one address and their
# kept-alive connections, while one guest takes at most 16 of the MAXCONN slots:
# a mass boot of hundreds of guests on one network still finds free slots, and
# half-sent request heads from one guest no longer stall the others.
PER_SOURCE_CONNECTIONS = 16
# The largest request body the API accepts (store.PASSWORD_MAX, a password;
# not imported: the store loads SQLAlchemy); larger ones get 413 here, before
# haproxy forwards a byte of them. A test keeps the two equal.
BODY_MAX = 1020


@dataclass(frozen=True)
class RateLimit:
    """At most *requests* per *seconds* from one source address; beyond that 429."""

    requests: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``N/SECONDS``, e.g. ``100/10``."""
        count, sep, window = text.partition("/")
        if not sep or not count.isdigit() or not window.isdigit() or int(count) < 1 or int(window) < 1:
            raise ValueError(f"rate limit {text!r} is not N/SECONDS (for example 100/10)")
        return cls(int(count), int(window))


def render(socket_path: str, *, network_id: str | None = None, router_id: str | None = None,
           bind: str | None = None, bind_v6: str | None = None, bind_v6_interface: str | None = None,
           rate_limit: RateLimit | None = None, maxconn: int = MAXCONN) -> str:
    """The haproxy configuration for one network's or router's proxy.

    *bind* defaults to 169.254.169.254:80 for a network, 0.0.0.0:9697 for a router.
    The stick tables are ``type ipv6`` whatever the binds: they also keep IPv4
    sources (as ::ffff:a.b.c.d), while a ``type ip`` table never tracks IPv6 guests.
    Always present: at most PER_SOURCE_CONNECTIONS connections per source (the
    rate limit counts only complete requests, so it cannot stop half-sent ones)
    and bodies of at most BODY_MAX bytes, by Content-Length and, for a chunked
    body, by what arrived (``wait-for-body`` waits for one byte beyond the limit).
    *maxconn* is for tests that need the slots to run out sooner.
    """
    if bool(network_id) == bool(router_id):
        raise ValueError("give exactly one of a network id or a router id")
    for value in (network_id, router_id, socket_path, bind or ""):
        if value and any(c.isspace() or c in "\"'#\\" for c in value):
            raise ValueError(f"{value!r} cannot be written into an haproxy configuration")
    if network_id:
        own, other, ident = "Network", "Router", network_id
        bind = bind or "169.254.169.254:80"
    else:
        assert router_id is not None  # exactly one of the two, checked above
        own, other, ident = "Router", "Network", router_id
        bind = bind or "0.0.0.0:9697"
    lines = [
        "global",
        "    log stdout format raw local0 info",
        f"    maxconn {maxconn}",
        "",
        "defaults",
        "    log global",
        "    mode http",
        "    option httplog",
        "    option dontlognull",
        "    option forwardfor",
        "    http-reuse safe",
        f"    retries {RETRIES}",
        *(f"    timeout {name:<15} {seconds}s" for name, seconds in TIMEOUTS.items()),
        "",
    ]
    lines += [
        "backend per_source",
        "    stick-table type ipv6 size 100k expire 60s store conn_cur",
        "",
    ]
    if rate_limit:
        lines += [
            "backend rate_limiter",
            f"    stick-table type ipv6 size 10k expire {rate_limit.seconds}s "
            f"store http_req_rate({rate_limit.seconds}s)",
            "",
        ]
    lines += ["listen metadata", f"    bind {bind}"]
    if bind_v6:
        lines.append(f"    bind {bind_v6}" + (f" interface {bind_v6_interface}" if bind_v6_interface else ""))
    lines += [
        f"    tcp-request connection reject if {{ src_conn_cur(per_source) ge {PER_SOURCE_CONNECTIONS} }}",
        "    tcp-request connection track-sc1 src table per_source",
    ]
    if rate_limit:
        lines += [
            "    http-request track-sc0 src table rate_limiter",
            "    http-request deny deny_status 429 if "
            f"{{ sc_http_req_rate(0,rate_limiter) gt {rate_limit.requests} }}",
        ]
    lines += [
        f"    http-request deny deny_status 413 if {{ req.hdr_val(content-length) gt {BODY_MAX} }}",
        f"    http-request wait-for-body time {TIMEOUTS['http-request']}s at-least {BODY_MAX + 1}",
        f"    http-request deny deny_status 413 if {{ req.body_size gt {BODY_MAX} }}",
        f"    http-request del-header X-Neutron-{other}-ID",
        f"    http-request set-header X-Neutron-{own}-ID {ident}",
        f"    server metadata {socket_path}",
        "",
    ]
    return "\n".join(lines)


# -- running it in a namespace -------------------------------------------------


@dataclass(frozen=True)
class ProxyFiles:
    """Where one proxy keeps its configuration, pid and log (under *state_dir*)."""

    state_dir: Path
    ident: str

    @property
    def config(self) -> Path:
        return self.state_dir / f"haproxy-{self.ident}.cfg"

    @property
    def pid(self) -> Path:
        return self.state_dir / f"haproxy-{self.ident}.pid"

    @property
    def log(self) -> Path:
        return self.state_dir / f"haproxy-{self.ident}.log"


def read_pid(path: Path) -> int | None:
    """The pid in *path* if that process is alive and is an haproxy, else None."""
    try:
        pid = int(path.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"haproxy" in cmdline else None


def check_config(config: Path) -> None:
    """Let haproxy itself validate the file (``-c``); ValueError with its words."""
    proc = subprocess.run(["haproxy", "-c", "-q", "-f", str(config)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ValueError(f"haproxy rejects {config}: {proc.stderr.strip() or proc.stdout.strip()}")


def start(netns: str | None, files: ProxyFiles, text: str, wait: float = 5.0,
          env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run haproxy with *text* inside *netns* (None: here): (pid, "started" | "reloaded" |
    "unchanged"). A running proxy with other configuration is replaced gracefully
    (``-sf``: the new process takes the port, the old one finishes its requests)."""
    files.state_dir.mkdir(parents=True, exist_ok=True)
    old = read_pid(files.pid)
    if old is not None and files.config.exists() and files.config.read_text() == text:
        return old, "unchanged"
    tmp = files.config.with_suffix(".new")
    tmp.write_text(text)
    check_config(tmp)
    os.replace(tmp, files.config)
    cmd = ["haproxy", "-db", "-f", str(files.config)]
    if old is not None:
        cmd += ["-sf", str(old)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    with open(files.log, "ab") as logf:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, env={**os.environ, **(env or {})})
    files.pid.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"haproxy exited at once ({proc.returncode}); see {files.log}:\n"
                               + _tail(files.log))
        if _listening(proc.pid):
            break
        time.sleep(0.02)
    return proc.pid, "reloaded" if old is not None else "started"


def _listening(pid: int) -> bool:
    """Whether the process has a listening TCP socket yet (its bind has succeeded)."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        tables = Path(f"/proc/{pid}/net/tcp").read_text() + Path(f"/proc/{pid}/net/tcp6").read_text()
    except OSError:
        return False
    for row in tables.splitlines()[1:]:
        cols = row.split()
        if len(cols) > 9 and cols[3] == "0A" and f"socket:[{cols[9]}]" in inodes:
            return True
    return False


def stop(files: ProxyFiles, wait: float = 5.0) -> bool:
    """Stop the proxy by its pid file (SIGTERM, then SIGKILL); True if one was running."""
    pid = read_pid(files.pid)
    if pid is None:
        files.pid.unlink(missing_ok=True)
        return False
    stop_pids([pid], wait)
    files.pid.unlink(missing_ok=True)
    return True


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
