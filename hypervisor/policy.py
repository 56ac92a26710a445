"""Does a domain get a config drive, or does its guest use HTTP metadata?

Nova's ``nova.virt.configdrive.required_by``: the instance asks for one
(``config_drive``), or the image demands one (``img_config_drive:
mandatory``), or the operator forces drives with ``force_config_drive`` -
which, as in Nova, applies only to instances not yet launched: a running
guest that was set up over HTTP metadata needs no drive. A domain that
already carries our drive keeps getting it refreshed (Nova's
``update_instance`` records ``config_drive = True`` once a drive is made).

``force_config_drive`` comes from ``--force-config-drive`` / ``--no-force-config-drive``,
else ``CONFIGDRIVE_LIBVIRT_FORCE_CONFIG_DRIVE``, else ``force_config_drive``
in the ``[libvirt]`` section of the configuration file, else off.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hypervisor import HypervisorError

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.model import Instance

MANDATORY = "mandatory"
FORCE_ENV = "CONFIGDRIVE_LIBVIRT_FORCE_CONFIG_DRIVE"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Decision:
    """Whether a drive is required, and the reason shown to the operator."""

    required: bool
    reason: str


def required_by(instance: Instance, *, force: bool, launched: bool,
                has_drive: bool = False) -> Decision:
    """Nova's rule, with the reasons spelled out (first matching reason wins)."""
    if instance.config_drive:
        return Decision(True, "instance config_drive is set")
    if instance.image_properties.get("img_config_drive") == MANDATORY:
        return Decision(True, "image property img_config_drive=mandatory")
    if has_drive:
        return Decision(True, "the domain already has a config drive")
    if force and not launched:
        return Decision(True, "force_config_drive (domain not yet launched)")
    if force:
        return Decision(False, "force_config_drive does not apply: the domain is already running")
    return Decision(False, "no config drive requested: HTTP metadata")


def force_setting(flag: bool | None, config_file: str | Path | None = None,
                  environ: Mapping[str, str] = os.environ) -> bool:
    """force_config_drive from the flag, the environment or the config file."""
    if flag is not None:
        return flag
    if FORCE_ENV in environ:
        return _boolean(environ[FORCE_ENV], FORCE_ENV)
    path = config_file or environ.get("CONFIGDRIVE_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                section = tomllib.load(fh).get("libvirt", {})
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise HypervisorError(f"cannot read configuration {path}: {err}") from None
        if not isinstance(section, dict):
            raise HypervisorError(f"{path}: [libvirt] must be a table, not {section!r}")
        value = section.get("force_config_drive", False)
        return value if isinstance(value, bool) else _boolean(str(value), f"{path} [libvirt]")
    return False


def _boolean(text: str, where: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise HypervisorError(f"{where}: force_config_drive must be true or false, not {text!r}")
