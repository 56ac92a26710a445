"""`instances`, `serve`, `sign` and `query`: the instance store and the metadata API.

Heavy imports (SQLAlchemy, Flask, granian) happen inside the commands. The
settings' definitions are imported here: an option that sets one shows its
default from there (:func:`setting_option`).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from configdrive.commands.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    _redacted,
    config_or_exit,
    fail,
    store_or_exit,
    store_settings_or_exit,
)
from configdrive.lazy_group import LazyGroup
from metadata_content.server.config import IMDS_MODES, MODES, AgentConfig, ApiConfig
from metadata_content.settings import Settings, StoreSettings, default_of, field_of, variables

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.store import Store

CONFIG_HELP = "TOML configuration file (see the README); env CONFIGDRIVE_CONFIG."


def _store(ctx: click.Context) -> Store:
    """The store of the group's configuration (loaded once, when the group runs)."""
    return store_or_exit(ctx.obj["config"])


def _read_specs(paths: tuple[Path, ...]) -> list[tuple[dict[str, Any], Any]]:
    """Validate every spec first (as `configdrive validate`); exit 2 on any problem."""
    from metadata_content.errors import SpecError
    from metadata_content.spec import load_spec

    loaded, bad = [], False
    for path in paths:
        try:
            loaded.append(load_spec(path))
        except SpecError as err:
            click.echo(err.render(), err=True)
            bad = True
    if bad:
        click.echo("nothing was changed", err=True)
        sys.exit(EXIT_BAD_INPUT)
    return loaded


def _store_call(fn: Any, *args: Any) -> Any:
    from metadata_content.store import StoreError, unavailable_reason

    try:
        return fn(*args)
    except StoreError as err:
        click.echo(f"error: {err}; nothing was changed", err=True)
        sys.exit(EXIT_FAILURE)
    except Exception as err:  # locked past the busy timeout, disk full, corrupt: one line, no traceback
        reason = unavailable_reason(err)
        if reason is None:
            raise
        click.echo(f"error: the store is unavailable ({reason}); nothing was changed", err=True)
        sys.exit(EXIT_FAILURE)


def setting_option(cls: type[Settings], name: str, *decls: str, help: str,
                   shown: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
    """A click option for setting *name* of *cls*. It has no click default, so the
    file and the environment still count when it is not given; its help shows the
    definition's default (or *shown*) and the variables."""
    default = default_of(cls, name) if shown is None else shown
    if isinstance(default, bool):
        default = "on" if default else "off"
    hint = f"env {' or '.join(variables(field_of(cls, name)))}"
    if default not in (None, "", []):
        hint = f"default {default}; {hint}"
    return click.option(*decls, name, help=f"{help} [{hint}]", **kwargs)


store_options = [
    click.option("--config", "config_file", type=click.Path(dir_okay=False), help=CONFIG_HELP),
    setting_option(StoreSettings, "data_dir", "--data-dir", type=click.Path(file_okay=False),
                   help="Directory of the SQLite store."),
    setting_option(StoreSettings, "store_url", "--store-url",
                   help="Database URL (sqlite:///... or postgresql://...). A password in it is visible "
                        "to every local user (ps): give such a URL in the config file or "
                        "CONFIGDRIVE_STORE_URL instead."),
]


def with_store_options(fn: Any) -> Any:
    for option in reversed(store_options):
        fn = option(fn)
    return fn


@click.group()
@with_store_options
@click.pass_context
def instances(ctx: click.Context, config_file: str | None, data_dir: str | None,
              store_url: str | None) -> None:
    """Register instances with the metadata store (SQLite under the data dir, or PostgreSQL)."""
    ctx.obj = {"config": store_settings_or_exit(config_file, data_dir=data_dir, store_url=store_url)}


@instances.command("add")
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def instances_add(ctx: click.Context, specs: tuple[Path, ...]) -> None:
    """Register instance SPECS (all or none)."""
    loaded = _read_specs(specs)
    _store_call(_store(ctx).add, loaded)
    for _data, instance in loaded:
        click.echo(f"added {instance.uuid} ({instance.fqdn})")


@instances.command("update")
@click.argument("spec", type=click.Path(path_type=Path))
@click.pass_context
def instances_update(ctx: click.Context, spec: Path) -> None:
    """Replace a registered instance's spec; API caches drop it at once."""
    ((data, instance),) = _read_specs((spec,))
    version = _store_call(_store(ctx).update, data, instance)
    click.echo(f"updated {instance.uuid} (version {version})")


@instances.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def instances_list(ctx: click.Context, as_json: bool) -> None:
    """List registered instances: uuid, project, version, name."""
    for rec in _store(ctx).list():
        if as_json:
            click.echo(json.dumps({"uuid": rec.uuid, "project_id": rec.project_id,
                                   "name": rec.name, "version": rec.version}))
        else:
            click.echo(f"{rec.uuid}  {rec.project_id or '-':32}  v{rec.version}  {rec.name}")


@instances.command("show")
@click.argument("instance_id")
@click.pass_context
def instances_show(ctx: click.Context, instance_id: str) -> None:
    """Print the stored (self-contained) spec of INSTANCE_ID as JSON."""
    rec = _store(ctx).get(instance_id)
    if rec is None:
        click.echo(f"error: instance {instance_id} is not registered", err=True)
        sys.exit(EXIT_FAILURE)
    click.echo(json.dumps(rec.spec, indent=2))


@instances.command("remove")
@click.argument("instance_ids", nargs=-1, required=True)
@click.pass_context
def instances_remove(ctx: click.Context, instance_ids: tuple[str, ...]) -> None:
    """Unregister instances, all or none (their password goes with them)."""
    _store_call(_store(ctx).remove, *instance_ids)
    for instance_id in dict.fromkeys(instance_ids):
        click.echo(f"removed {instance_id}")


@instances.command("clear-password")
@click.argument("instance_id")
@click.pass_context
def instances_clear_password(ctx: click.Context, instance_id: str) -> None:
    """Forget the password a guest posted, so it may post a new one (Nova's clear-password)."""
    _store(ctx).clear_password(instance_id)
    click.echo(f"password cleared for {instance_id}")


@instances.command("router")
@click.argument("router_id")
@click.argument("network_ids", nargs=-1)
@click.pass_context
def instances_router(ctx: click.Context, router_id: str, network_ids: tuple[str, ...]) -> None:
    """Set the networks ROUTER_ID serves (the agent's router-side lookup); none clears."""
    _store(ctx).set_router_networks(router_id, list(network_ids))
    click.echo(f"router {router_id}: {', '.join(network_ids) or 'no networks'}")


# `configdrive serve NAME`: one line per service, imported only when run
# (issue 4 adds "agent" here).
SERVE_COMMANDS = {
    "api": "configdrive.commands.service:serve_api",
    "agent": "configdrive.commands.chain:agent",
}


@click.group(cls=LazyGroup, lazy_commands=SERVE_COMMANDS)
def serve() -> None:
    """Run the metadata services."""


@click.command("api")
@with_store_options
@setting_option(ApiConfig, "bind", "--bind", help="Address of the metadata API.")
@setting_option(ApiConfig, "admin_bind", "--admin-bind", help="Address of /healthz and /metrics.")
@setting_option(ApiConfig, "workers", "--workers", type=int, help="Worker processes.")
@setting_option(ApiConfig, "threads", "--threads", type=int, help="Threads per worker.")
@setting_option(ApiConfig, "mode", "--mode", type=click.Choice(MODES), help="Identify guests by signed "
                "headers from the agent (proxy) or by their address (direct).")
@setting_option(ApiConfig, "secret_file", "--secret-file", type=click.Path(dir_okay=False),
                help="Shared secret (proxy mode).")
@setting_option(ApiConfig, "trusted_proxies", "--trusted-proxy", multiple=True,
                help="Peer whose X-Forwarded-For is believed in direct mode (repeatable; CIDR allowed).")
@setting_option(ApiConfig, "imds_v2", "--imds-v2", type=click.Choice(IMDS_MODES), help="IMDSv2 tokens.")
@setting_option(ApiConfig, "cache_ttl", "--cache-ttl", type=float, help="Seconds a rendered instance is reused.")
@setting_option(ApiConfig, "access_log", "--access-log", help="'-' (stderr), a file, or 'off'.")
def serve_api(config_file: str | None, data_dir: str | None, store_url: str | None, **opts: Any) -> None:
    """Serve instance metadata over HTTP (granian workers: RSGI front, Flask app).

    \b
    To run two APIs on one host, give each its own --bind and --admin-bind
    (e.g. 127.0.0.1:8775/8776 and 127.0.0.1:8785/8786): an address in use
    ends the start with an error, it is never shared.
    """
    from metadata_content.server.config import ConfigError

    if not opts["trusted_proxies"]:
        opts["trusted_proxies"] = None
    config = config_or_exit(config_file, data_dir=data_dir, store_url=store_url, **opts)
    try:
        config.check()
    except ConfigError as err:
        fail(err.exit_code, str(err))
    # The store must answer before any worker starts: a worker that cannot open
    # it dies, and granian would respawn it forever, each with a traceback.
    _store_or_exit_pinged(config)
    from metadata_content.server.serve import StartError
    from metadata_content.server.serve import serve_api as run

    click.echo(f"metadata API ({config.mode} mode) on {config.bind}, admin on {config.admin_bind}, "
               f"{config.workers} worker(s)", err=True)
    try:
        run(config)
    except StartError as err:
        fail(EXIT_FAILURE, str(err))


def _store_or_exit_pinged(config: Any) -> None:
    """Open and ping the configured store; one line and exit 1 when it cannot be used."""
    from metadata_content.store import unavailable_reason

    store = store_or_exit(config)
    try:
        store.ping()
    except Exception as err:
        where, reason = _redacted(config.store_url, config.data_dir, unavailable_reason(err) or str(err))
        click.echo(f"error: the store {where} is unavailable: {reason}", err=True)
        sys.exit(EXIT_FAILURE)
    finally:
        store.close()


@click.command()
@click.argument("instance_id")
@click.option("--secret-file", required=True, type=click.Path(dir_okay=False), help="Shared secret.")
def sign(instance_id: str, secret_file: str) -> None:
    """Print X-Instance-ID-Signature for INSTANCE_ID (hex HMAC-SHA256 of the id)."""
    from metadata_content.server.config import ConfigError, read_secret
    from metadata_content.server.identity import sign_instance_id

    try:
        secret = read_secret(secret_file)
    except ConfigError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(sign_instance_id(secret, instance_id))


@click.command()
@with_store_options
@click.option("--instance", "instance_id", required=True, help="Instance uuid to ask as.")
@click.option("--api", default=default_of(AgentConfig, "api"), show_default=True, help="Metadata API URL.")
@click.option("--secret-file", type=click.Path(dir_okay=False), help="Shared secret [from config].")
@click.option("--method", default="GET", show_default=True)
@click.option("--data", help="Request body (for POST on password).")
@click.argument("path")
def query(config_file: str | None, data_dir: str | None, store_url: str | None, instance_id: str,
          api: str, secret_file: str | None, method: str, data: str | None, path: str) -> None:
    """Fetch PATH from a running API exactly as the agent would (signed, with the tenant).

    The body goes to stdout, the status to stderr; exit 0 for 200, 1 otherwise.
    """
    import urllib.error
    import urllib.request

    from metadata_content.server.config import ConfigError, read_secret
    from metadata_content.server.identity import proxy_headers

    config = config_or_exit(config_file, data_dir=data_dir, store_url=store_url, secret_file=secret_file)
    if not config.secret_file:
        click.echo("error: give --secret-file (or secret_file in the config)", err=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        secret = read_secret(config.secret_file)
    except ConfigError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    rec = store_or_exit(config).get(instance_id)
    if rec is None:
        click.echo(f"error: instance {instance_id} is not registered", err=True)
        sys.exit(EXIT_FAILURE)
    headers = proxy_headers(secret, instance_id, rec.project_id or "")
    url = api.rstrip("/") + "/" + path.lstrip("/")
    req = urllib.request.Request(url, data=data.encode() if data is not None else None,
                                 method=method.upper(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    except OSError as err:
        click.echo(f"error: cannot reach {api}: {err}", err=True)
        sys.exit(EXIT_FAILURE)
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()
    click.echo(f"{status}", err=True)
    sys.exit(0 if status == 200 else EXIT_FAILURE)
