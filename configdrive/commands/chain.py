"""The HTTP chain's commands: `serve agent`, `proxy`, `lab` and `doctor`.

`agent` is registered as `configdrive serve agent` (SERVE_COMMANDS in
service.py); the others in cli.py. Heavy imports (granian, SQLAlchemy)
happen inside the commands.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from configdrive.commands.common import EXIT_BAD_INPUT, EXIT_FAILURE, fail, store_settings_or_exit
from configdrive.commands.service import setting_option, with_store_options
from metadata_content.server.config import AgentConfig
from metadata_content.settings import default_of

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.chain.labstate import LabState

LAB_DIR_HELP = "Lab directory (state, logs, store) [env CONFIGDRIVE_LAB_DIR or $TMPDIR/configdrive-lab]."


@click.command("agent")
@with_store_options
@setting_option(AgentConfig, "socket", "--socket", type=click.Path(dir_okay=False),
                help="UNIX socket haproxy forwards to.")
@setting_option(AgentConfig, "api", "--api", help="Metadata API URL.")
@setting_option(AgentConfig, "secret_file", "--secret-file", type=click.Path(dir_okay=False),
                help="Shared secret with the API (X-Instance-ID-Signature).")
@setting_option(AgentConfig, "workers", "--workers", type=int, help="Worker processes.")
@setting_option(AgentConfig, "threads", "--threads", type=int,
                help="Threads per worker for store lookups the cache cannot answer (requests "
                     "waiting on the API need none: each worker is one event loop).")
@setting_option(AgentConfig, "backlog", "--backlog", type=int,
                help="Listen backlog of the socket (Neutron's stays 5).")
@setting_option(AgentConfig, "socket_mode", "--socket-mode", shown=f"{default_of(AgentConfig, 'socket_mode'):04o}",
                help="Permissions of the socket file (octal).")
@setting_option(AgentConfig, "timeout", "--timeout", type=float,
                help="Seconds to wait for the API before answering 504.")
@setting_option(AgentConfig, "cache_ttl", "--cache-ttl", type=float,
                help="Seconds a port lookup is reused (dropped at once when the store changes).")
@setting_option(AgentConfig, "access_log", "--access-log", help="'-' (stderr), a file, or 'off'.")
def agent(config_file: str | None, **opts: Any) -> None:
    """Run the metadata agent: find the guest's instance, sign, forward to the API."""
    from metadata_content.server.agent import serve_agent
    from metadata_content.server.config import ConfigError, load_agent_config

    try:
        config = load_agent_config(config_file, **opts)
        config.check()
    except ConfigError as err:
        fail(err.exit_code, str(err))
    click.echo(f"metadata agent on unix:{config.socket} (mode {config.socket_mode:04o}, backlog "
               f"{config.backlog}) -> {config.api}, {config.workers} worker(s)", err=True)
    try:
        serve_agent(config)
    except RuntimeError as err:
        fail(EXIT_FAILURE, str(err))
    except OSError as err:  # e.g. no permission to create the socket's directory
        fail(EXIT_FAILURE, f"cannot serve on {config.socket}: {err.strerror or err}")


# -- proxy -------------------------------------------------------------------------


@click.group()
def proxy() -> None:
    """The namespace proxy (haproxy) in front of the agent."""


def _proxy_options(fn: Any) -> Any:
    options = [
        click.option("--network-id", help="Serve a network (qdhcp namespace): sets X-Neutron-Network-ID."),
        click.option("--router-id", help="Serve a router (qrouter namespace): sets X-Neutron-Router-ID."),
        click.option("--socket", "socket_path", default=default_of(AgentConfig, "socket"), show_default=True,
                     help="The agent's UNIX socket."),
        click.option("--bind", help="ADDR:PORT [169.254.169.254:80 for a network, 0.0.0.0:9697 for a router]."),
        click.option("--bind-v6", help="Extra IPv6 bind, e.g. [fe80::a9fe:a9fe]:80."),
        click.option("--rate-limit", help="N/SECONDS per source address; beyond it 429."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _render(network_id: str | None, router_id: str | None, socket_path: str, bind: str | None,
            bind_v6: str | None, rate_limit: str | None) -> str:
    from metadata_content.chain import haproxy

    try:
        limit = haproxy.RateLimit.parse(rate_limit) if rate_limit else None
        return haproxy.render(socket_path, network_id=network_id, router_id=router_id, bind=bind,
                              bind_v6=bind_v6, rate_limit=limit)
    except ValueError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)


@proxy.command("config")
@_proxy_options
def proxy_config(**opts: Any) -> None:
    """Print the haproxy configuration for one network or router."""
    click.echo(_render(**opts), nl=False)


@proxy.command("start")
@click.option("--netns", help="Namespace to run in (default: qdhcp-<network> or qrouter-<router>).")
@click.option("--state-dir", default="/run/configdrive/proxy", show_default=True, type=click.Path(),
              help="Where the configuration, pid file and log go.")
@_proxy_options
def proxy_start(netns: str | None, state_dir: str, **opts: Any) -> None:
    """Start haproxy in a namespace, or reload it gracefully if its configuration changed."""
    from metadata_content.chain import haproxy
    from metadata_content.chain.netns import ns_exists

    text = _render(**opts)
    ident = opts["network_id"] or opts["router_id"]
    ns = netns or (f"qdhcp-{ident}" if opts["network_id"] else f"qrouter-{ident}")
    if not ns_exists(ns):
        click.echo(f"error: no network namespace {ns}", err=True)
        sys.exit(EXIT_FAILURE)
    try:
        pid, what = haproxy.start(ns, haproxy.ProxyFiles(Path(state_dir), ident), text)
    except (ValueError, RuntimeError, OSError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(f"haproxy {what} in {ns} (pid {pid})")


@proxy.command("stop")
@click.option("--network-id")
@click.option("--router-id")
@click.option("--state-dir", default="/run/configdrive/proxy", show_default=True, type=click.Path())
def proxy_stop(network_id: str | None, router_id: str | None, state_dir: str) -> None:
    """Stop the haproxy of a network or router by its pid file."""
    from metadata_content.chain import haproxy

    ident = network_id or router_id
    if not ident or (network_id and router_id):
        click.echo("error: give exactly one of --network-id or --router-id", err=True)
        sys.exit(EXIT_BAD_INPUT)
    stopped = haproxy.stop(haproxy.ProxyFiles(Path(state_dir), ident))
    click.echo(f"haproxy for {ident} " + ("stopped" if stopped else "was not running"))


# -- lab ----------------------------------------------------------------------------


def _lab_dir(value: str | None) -> Path:
    from metadata_content.chain.lab import default_dir

    return Path(value) if value else default_dir()


@click.group()
def lab() -> None:
    """A whole metadata chain on this host: guests, dnsmasq, haproxy, agent, API."""


@lab.command("up")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False), help=LAB_DIR_HELP)
@click.option("--guests", default=2, show_default=True, type=click.IntRange(0, 200))
@click.option("--mode", type=click.Choice(["dhcp", "router", "both"]), default="both", show_default=True,
              help="Which proxies run; in 'both' odd guests reach metadata through the router.")
@click.option("--specs", "specs_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Register these specs (one guest each, NICs moved onto the lab network).")
@click.option("--cidr", default="10.99.0.0/24", show_default=True, help="The lab network (inside namespaces).")
@click.option("--agent-timeout", default=30.0, show_default=True, type=float)
def lab_up(lab_dir: str | None, guests: int, mode: str, specs_dir: Path | None, cidr: str,
           agent_timeout: float) -> None:
    """Build the lab and give every guest a DHCP lease."""
    from metadata_content.chain.lab import LabError, up
    from metadata_content.chain.netns import NetError
    from metadata_content.errors import SpecError

    try:
        state = up(_lab_dir(lab_dir), guests=guests, mode=mode, cidr=cidr, specs_dir=specs_dir,
                   agent_timeout=agent_timeout)
    except SpecError as err:
        click.echo(err.render(), err=True)
        sys.exit(EXIT_BAD_INPUT)
    except (LabError, NetError, OSError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(f"lab {state.id} up in {state.dir} ({mode}): network {state.network_id}, "
               f"router {state.router_id}")
    for g in state.guests:
        click.echo(f"  {g.name}  {g.ns}  {g.ip}  {g.uuid}  via {g.path}")
    click.echo("try: configdrive lab exec g0 -- curl -s http://169.254.169.254/openstack/latest/meta_data.json")


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False), help=LAB_DIR_HELP)
@click.argument("guest")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def lab_exec(lab_dir: str | None, guest: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside GUEST's namespace (g0, 0, or its instance uuid)."""
    from metadata_content.chain.labstate import LabError, load

    try:
        g = load(_lab_dir(lab_dir)).guest(guest)
    except LabError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_FAILURE)
    os.execvp("ip", ["ip", "netns", "exec", g.ns, *command])


@lab.command("status")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False), help=LAB_DIR_HELP)
@click.option("--json", "as_json", is_flag=True)
def lab_status(lab_dir: str | None, as_json: bool) -> None:
    """What the lab made and whether it still runs (exit 1 when something is missing)."""
    from metadata_content.chain.lab import status
    from metadata_content.chain.labstate import LabError, load

    try:
        info = status(load(_lab_dir(lab_dir)))
    except LabError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_FAILURE)
    healthy = all(info["namespaces"].values()) and all(p["running"] for p in info["processes"].values())
    if as_json:
        click.echo(json.dumps({**info, "healthy": healthy}, indent=1))
    else:
        click.echo(f"lab in {info['dir']} ({info['mode']}), API {info['api']}, agent {info['socket']}")
        for name, proc in info["processes"].items():
            orphans = f" (orphaned, still alive: {' '.join(map(str, proc['orphans']))})" if proc["orphans"] else ""
            click.echo(f"  {name:14} pid {proc['pid']:<8} {'running' if proc['running'] else 'NOT RUNNING'}{orphans}")
        for ns, exists in info["namespaces"].items():
            click.echo(f"  netns {ns} {'' if exists else 'MISSING'}")
        for g in info["guests"]:
            click.echo(f"  {g['name']}  {g['ip']}  {g['uuid']}  path {g['path']}  "
                       f"route 169.254.169.254 via {g['route'] or 'NONE'}")
    sys.exit(0 if healthy else EXIT_FAILURE)


@lab.command("down")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False), help=LAB_DIR_HELP)
def lab_down(lab_dir: str | None) -> None:
    """Remove every namespace, link, file and process the lab made (also after a crash)."""
    from metadata_content.chain.lab import down

    removed = down(_lab_dir(lab_dir))
    click.echo(f"removed {len(removed)} item(s)")
    for item in removed:
        click.echo(f"  {item}")


# -- doctor ---------------------------------------------------------------------------


def _doctor_store(config_file: str | None, data_dir: str | None, store_url: str | None,
                  lab: LabState | None) -> tuple[str | None, str | None]:
    """(store URL, data dir) for a --netns walk. Options win; without any, the *lab*'s
    own store comes before the environment's, which describes a deployment, not the lab
    ((None, None) lets diagnose_netns take it)."""
    if not (config_file or data_dir or store_url) and lab is not None:
        return None, None
    config = store_settings_or_exit(config_file, data_dir=data_dir, store_url=store_url)
    return config.store_url, config.data_dir


@click.command()
@click.option("--netns", help="A guest namespace to walk the chain from.")
@click.option("--lab", "use_lab", is_flag=True, help="Check every guest of the lab.")
@click.option("--dir", "lab_dir", type=click.Path(file_okay=False), help=LAB_DIR_HELP)
@click.option("--socket", "socket_path", help="The agent's socket (default: the lab's).")
@with_store_options
def doctor(netns: str | None, use_lab: bool, lab_dir: str | None, socket_path: str | None,
           config_file: str | None, data_dir: str | None, store_url: str | None) -> None:
    """Walk the metadata chain hop by hop and name the first broken one, with the fix.

    With --netns the store is the options' (or --config's), else the lab's, else the
    environment's: it must be the agent's, or the instance hop reports a wrong answer."""
    from metadata_content.chain.doctor import diagnose_lab, diagnose_netns, lab_state

    if bool(netns) == bool(use_lab):
        click.echo("error: give --netns NAME or --lab", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if use_lab:
        results = diagnose_lab(_lab_dir(lab_dir))
    else:
        assert netns is not None  # exactly one of --netns and --lab, checked above
        state = lab_state(_lab_dir(lab_dir))
        url, where = _doctor_store(config_file, data_dir, store_url, state)
        results = [diagnose_netns(netns, socket_path=socket_path, data_dir=where, lab=state, store_url=url)]
    ok = True
    for name, steps in results:
        click.echo(f"{name}:")
        for step in steps:
            click.echo(f"  [{'ok' if step.ok else 'FAIL'}] {step.what}: {step.detail}")
            if not step.ok:
                ok = False
                if step.fix:
                    click.echo(f"         fix: {step.fix}")
    sys.exit(0 if ok else EXIT_FAILURE)

