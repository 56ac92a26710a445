"""The API's and the agent's settings: sections ``[api]``, ``[vendordata]`` and
``[agent]`` of the configuration file, beside ``[store]``.

Loaded as every section is (:mod:`metadata_content.settings`): defaults < TOML
file < ``CONFIGDRIVE_<SECTION>_<KEY>`` (lists comma-separated, booleans
1/0/true/false; ``CONFIGDRIVE_DATA`` is the data directory) < options. The
secret itself is only ever read from ``secret_file``, never from the
environment or the config, so it does not leak into process listings.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metadata_content.settings import ConfigError, StoreSettings, load, setting

__all__ = ["AgentConfig", "ApiConfig", "ConfigError", "load_agent_config", "load_config"]

MODES = ("proxy", "direct")
IMDS_MODES = ("optional", "required")
RESOLVED_ENV = "CONFIGDRIVE_API_RESOLVED"  # the parent hands workers the resolved config here
AGENT_RESOLVED_ENV = "CONFIGDRIVE_AGENT_RESOLVED"


@dataclass
class ApiConfig(StoreSettings):
    bind: str = setting("api", "0.0.0.0:8775")
    admin_bind: str = setting("api", "127.0.0.1:8776")
    workers: int = setting("api", 2, at_least=1)
    threads: int = setting("api", 2, at_least=1)
    mode: str = setting("api", "proxy")
    secret_file: str | None = setting("api")
    cache_ttl: float = setting("api", 15.0, at_least=0)
    cache_max_instances: int = setting("api", 20_000, at_least=1)
    trusted_proxies: list[str] = setting("api", factory=list)  # noqa: RUF009 - a field()
    imds_v2: str = setting("api", "optional")
    access_log: str = setting("api", "-")
    vendordata_file: str | None = setting("vendordata", key="file")
    vendordata_dynamic_targets: list[str] = setting(  # noqa: RUF009 - a field()
        "vendordata", factory=list, key="dynamic_targets")
    vendordata_dynamic_failure_fatal: bool = setting("vendordata", False, key="dynamic_failure_fatal")
    vendordata_dynamic_timeout: float = setting("vendordata", 5.0, key="dynamic_timeout", at_least=0)

    def check(self) -> None:
        """Refuse settings the service cannot run safely with."""
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.imds_v2 not in IMDS_MODES:
            raise ConfigError(f"imds_v2 must be one of {', '.join(IMDS_MODES)}, not {self.imds_v2!r}")
        if self.mode == "proxy":
            if not self.secret_file:
                raise ConfigError("proxy mode needs the shared secret: give --secret-file "
                                  "(or secret_file in [api], or CONFIGDRIVE_API_SECRET_FILE)")
            read_secret(self.secret_file)
        for target in self.vendordata_dynamic_targets:
            name, _, url = target.partition("@")
            if not name or not url.startswith(("http://", "https://")):
                raise ConfigError(f"vendor data target {target!r} is not NAME@http(s)://URL")
        check_vendordata_file(self.vendordata_file)
        for text in (self.bind, self.admin_bind):
            split_bind(text)


def octal_mode(text: str) -> int:
    """A permission mode written in octal, such as ``0660``."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise ValueError(f"{text!r} is not an octal mode such as 0660") from None
    if not 0 <= mode <= 0o777:
        raise ValueError("a mode is between 000 and 777")
    return mode


@dataclass
class AgentConfig(StoreSettings):
    socket: str = setting("agent", "/run/configdrive/agent.sock")
    api: str = setting("agent", "http://127.0.0.1:8775")
    secret_file: str | None = setting("agent")
    workers: int = setting("agent", 1, at_least=1, at_most=64)
    threads: int = setting("agent", 4, at_least=1, at_most=256)  # per worker, for store lookups
    backlog: int = setting("agent", 4096, at_least=128, at_most=65535)
    socket_mode: int = setting("agent", 0o660, at_least=0, at_most=0o777, parse=octal_mode)
    # SPEC's Neutron value is 60 s, but haproxy gives up after its 32 s server
    # timeout, so 60 could never be seen by a guest: 30 s answers first, logged.
    timeout: float = setting("agent", 30.0, at_least=0.1, at_most=3600)
    cache_ttl: float = setting("agent", 5.0, at_least=0, at_most=3600)
    pool_size: int = setting("agent", 16, at_least=1)
    access_log: str = setting("agent", "-")

    def check(self) -> None:
        """Refuse settings the agent cannot run with: it never signs with an empty key."""
        from metadata_content.server.upstream import parse_api_url

        if not self.secret_file:
            raise ConfigError("the agent needs the shared secret: give --secret-file "
                              "(or secret_file in [agent], or CONFIGDRIVE_AGENT_SECRET_FILE)")
        read_secret(self.secret_file)
        try:
            parse_api_url(self.api)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None,
                **overrides: Any) -> ApiConfig:
    """The API's (and the store's) settings: defaults < TOML file < environment < *overrides*."""
    return load(ApiConfig, path, env, **overrides)


def load_agent_config(path: str | Path | None = None, env: dict[str, str] | None = None,
                      **overrides: Any) -> AgentConfig:
    """The agent's (and the store's) settings, in the same order."""
    return load(AgentConfig, path, env, **overrides)


def read_secret(path: str) -> bytes:
    """The shared secret from *path* (surrounding whitespace dropped); empty is an error."""
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the secret file {path}: {exc.strerror or exc}") from None
    if not secret:
        raise ConfigError(f"the secret file {path} is empty: refusing to accept unsigned "
                          "requests (Nova only warns; see SPEC section 6)")
    return secret


def check_vendordata_file(path: str | None) -> None:
    """Load the static vendor data file once, as every worker will at start, so a
    missing or malformed one is a clean error here rather than crashing workers."""
    from metadata_content.server.vendordata import load_static

    try:
        load_static(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the vendor data file {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # bad JSON, not UTF-8, or not an object
        reason = str(exc).removeprefix(f"{path}: ")  # load_static's own message names the file
        raise ConfigError(f"the vendor data file {path} is unusable: {reason}") from None


def split_bind(text: str) -> tuple[str, int]:
    """``host:port`` (IPv6 as ``[::1]:8775``) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"bind address {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)
