"""Settings: one TOML file for every component, then environment variables, then options.

Each component declares its settings as a dataclass whose fields say which
``[section]`` of the file they belong to (:func:`setting`); :func:`load` fills
one in: defaults < TOML file < ``CONFIGDRIVE_<SECTION>_<KEY>`` < command-line
options. A component checks every key of its own sections (a typo is refused,
not ignored) and leaves the other sections to theirs. This module knows no
component, so the services and ``hypervisor/`` read the file the same way
without importing each other.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from metadata_content.errors import BadInput

CONFIG_ENV = "CONFIGDRIVE_CONFIG"
DATA_ENV = "CONFIGDRIVE_DATA"
# Every section the file may have; each belongs to one component.
SECTIONS = ("store", "api", "agent", "vendordata", "libvirt")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")

S = TypeVar("S", bound="Settings")


class ConfigError(BadInput):
    """A configuration a command must not run with; ``str()`` says why (exit status 2)."""


def setting(section: str, default: Any = None, *, factory: Callable[[], Any] | None = None,
            key: str | None = None, at_least: float | None = None, at_most: float | None = None,
            parse: Callable[[str], Any] | None = None, aliases: tuple[str, ...] = ()) -> Any:
    """A field of a settings dataclass: its section, its name in the file (*key*,
    else the field's), the bounds every source is held to, a *parse* for text
    values (the environment's, a quoted TOML value) and other variables that set
    it (``CONFIGDRIVE_DATA``), which the section's own variable overrides."""
    meta = {"section": section, "key": key, "at_least": at_least, "at_most": at_most,
            "parse": parse, "aliases": aliases}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class Settings:
    """Base of the settings dataclasses: the parent process resolves them once
    and hands them to its workers as JSON."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]  # each subclass is a dataclass

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls: type[S], text: str) -> S:
        return cls(**json.loads(text))


@dataclass
class StoreSettings(Settings):
    """[store]: where the instances are, for every command that opens the store."""

    store_url: str | None = setting("store", key="url")
    data_dir: str | None = setting("store", aliases=(DATA_ENV,))


def file_key(field: dataclasses.Field[Any]) -> str:
    return field.metadata["key"] or field.name


def env_name(field: dataclasses.Field[Any]) -> str:
    """``CONFIGDRIVE_<SECTION>_<KEY>``: the variable that sets *field*."""
    return f"CONFIGDRIVE_{field.metadata['section']}_{file_key(field)}".upper()


def field_of(cls: type[Settings], name: str) -> dataclasses.Field[Any]:
    return next(f for f in dataclasses.fields(cls) if f.name == name)


def default_of(cls: type[Settings], name: str) -> Any:
    """The default of setting *name* (for a command's help: never a second copy)."""
    return _default(field_of(cls, name))


def variables(field: dataclasses.Field[Any]) -> tuple[str, ...]:
    """Every environment variable that sets *field*; the last one wins."""
    return (*field.metadata["aliases"], env_name(field))


def load(cls: type[S], path: str | Path | None = None, env: Mapping[str, str] | None = None,
         **overrides: Any) -> S:
    """*cls* from its defaults < the TOML file (*path*, else ``$CONFIGDRIVE_CONFIG``)
    < the environment < *overrides* (None values ignored)."""
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    path = path or env.get(CONFIG_ENV)
    if path:
        by_key = {(f.metadata["section"], file_key(f)): f for f in fields.values()}
        mine = {section for section, _key in by_key}
        for section, table in read_file(path).items():
            if section not in mine:
                continue
            for key, value in table.items():
                if (section, key) not in by_key:
                    raise ConfigError(f"config {path}: unknown key {key!r} in [{section}]")
                field = by_key[(section, key)]
                values[field.name] = _value(field, value, f"config {path}: [{section}] {key}")
    for field in fields.values():
        for alias in field.metadata["aliases"]:
            if env.get(alias):
                values[field.name] = _value(field, env[alias], alias)
        if env_name(field) in env:
            values[field.name] = _value(field, env[env_name(field)], env_name(field))
    for name, value in overrides.items():
        if value is not None:
            values[name] = _value(fields[name], value, name)
    return cls(**values)


def read_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """The file's sections; ConfigError for an unreadable file, an unknown section
    or a top-level key outside any section."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: {exc}") from None
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise ConfigError(f"config {path}: top-level key {section!r} must be a [section]")
        if section not in SECTIONS:
            raise ConfigError(f"config {path}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
    return doc


def _value(field: dataclasses.Field[Any], value: Any, where: str) -> Any:
    """*value* as the field's type, within its bounds; ConfigError naming *where* otherwise."""
    default = _default(field)
    parse = field.metadata["parse"]
    try:
        if parse is None:
            value = _convert(value, default)
        elif isinstance(value, str):
            value = parse(value)
        elif isinstance(value, bool) or not isinstance(value, int):  # a mode given as 1.5 or true
            raise ValueError(f"{value!r} is not {_kind(default)} (write it as text, e.g. \"0660\")")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value!r} is not a finite number")
    except (TypeError, ValueError) as exc:
        reason = str(exc) if parse is not None else f"{value!r} is not {_kind(default)}"
        raise ConfigError(f"{where}: {reason}") from None
    low, high = field.metadata["at_least"], field.metadata["at_most"]
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{where}: {value} is out of range (must be {span})")
    return value


def _convert(value: Any, default: Any) -> Any:
    """*value* (text from the environment, a TOML value, an option's) as *default*'s type."""
    if isinstance(default, bool):
        return _boolean(value)
    if isinstance(default, list):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return [str(item) for item in value]
    if isinstance(default, int):
        if isinstance(value, float):
            raise ValueError
        return int(value)
    if isinstance(default, float):
        return float(value)
    return None if value in (None, "") else str(value)


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    return "valid"

