"""Service configuration: a TOML file, then ``CONFIGDRIVE_*`` environment
variables, then command-line options, each overriding the one before.

Every key of section ``[api]`` (or ``[store]``, ``[vendordata]``) can be set
from the environment as ``CONFIGDRIVE_<SECTION>_<KEY>`` (lists comma-separated,
booleans 1/0/true/false); ``CONFIGDRIVE_DATA`` is the data directory. The
secret itself is only ever read from ``secret_file``, never from the
environment or the config, so it does not leak into process listings.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

MODES = ("proxy", "direct")
IMDS_MODES = ("optional", "required")
# Sections of the same file read by other components (hypervisor/policy.py).
OTHER_SECTIONS = frozenset({"libvirt"})
RESOLVED_ENV = "CONFIGDRIVE_API_RESOLVED"  # the parent hands workers the resolved config here


class ConfigError(Exception):
    """A configuration a service must not start with; ``str()`` says why."""


@dataclass
class ApiConfig:
    # [store]
    store_url: str | None = None
    data_dir: str | None = None
    # [api]
    bind: str = "0.0.0.0:8775"
    admin_bind: str = "127.0.0.1:8776"
    workers: int = 2
    threads: int = 2
    mode: str = "proxy"
    secret_file: str | None = None
    cache_ttl: float = 15.0
    cache_max_instances: int = 20_000
    trusted_proxies: list[str] = field(default_factory=list)
    imds_v2: str = "optional"
    access_log: str = "-"
    # [vendordata]
    vendordata_file: str | None = None
    vendordata_dynamic_targets: list[str] = field(default_factory=list)
    vendordata_dynamic_failure_fatal: bool = False
    vendordata_dynamic_timeout: float = 5.0

    SECTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "store": ("store_url", "data_dir"),
        "vendordata": ("vendordata_file", "vendordata_dynamic_targets",
                       "vendordata_dynamic_failure_fatal", "vendordata_dynamic_timeout")}

    def check(self) -> None:
        """Refuse settings the service cannot run safely with."""
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.imds_v2 not in IMDS_MODES:
            raise ConfigError(f"imds_v2 must be one of {', '.join(IMDS_MODES)}, not {self.imds_v2!r}")
        if self.workers < 1 or self.threads < 1:
            raise ConfigError("workers and threads must be at least 1")
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

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ApiConfig:
        return cls(**json.loads(text))


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


def _coerce(name: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(value, str):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{name}: {value!r} is not a boolean")
        return bool(value)
    if isinstance(default, list):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return list(value)
    try:
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: {value!r} is not a number") from None
    return None if value in (None, "") else str(value)


def _section_of(key: str) -> str:
    for section, keys in ApiConfig.SECTIONS.items():
        if key in keys:
            return section
    return "api"


def _file_key(key: str) -> str:
    """The key's name inside its TOML section (``store_url`` -> ``url`` in [store])."""
    section = _section_of(key)
    if section == "api":
        return key
    return key[len(section) + 1:] if key.startswith(section + "_") else key


def load_config(path: str | Path | None = None, env: dict[str, str] | None = None,
                **overrides: Any) -> ApiConfig:
    """Defaults < TOML file < environment < *overrides* (None values ignored)."""
    env = dict(os.environ if env is None else env)
    config = ApiConfig()
    defaults = dataclasses.asdict(config)
    path = path or env.get("CONFIGDRIVE_CONFIG")
    if path:
        try:
            doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path}: {exc}") from None
        known = {(_section_of(k), _file_key(k)): k for k in defaults}
        for section, table in doc.items():
            if not isinstance(table, dict):
                raise ConfigError(f"config {path}: top-level key {section!r} must be a [section]")
            if section in OTHER_SECTIONS:
                continue
            for key, value in table.items():
                if (section, key) not in known:
                    raise ConfigError(f"config {path}: unknown key {key!r} in [{section}]")
                attr = known[(section, key)]
                setattr(config, attr, _coerce(f"[{section}] {key}", value, defaults[attr]))
    if env.get("CONFIGDRIVE_DATA"):
        config.data_dir = env["CONFIGDRIVE_DATA"]
    for attr, default in defaults.items():
        name = f"CONFIGDRIVE_{_section_of(attr).upper()}_{_file_key(attr).upper()}"
        if name in env:
            setattr(config, attr, _coerce(name, env[name], default))
    for attr, value in overrides.items():
        if value is not None:
            setattr(config, attr, _coerce(attr, value, defaults[attr]))
    return config
