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
in the ``[libvirt]`` section of the configuration file, else off: read as
every section is (:mod:`metadata_content.settings`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from metadata_content.settings import Settings, load, setting

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.model import Instance

MANDATORY = "mandatory"


@dataclass
class LibvirtSettings(Settings):
    """[libvirt] of the configuration file."""

    force_config_drive: bool = setting("libvirt", False)


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
    """force_config_drive from the flag, the environment or the config file
    (ConfigError, exit status 2, for a bad value or an unknown key)."""
    return load(LibvirtSettings, config_file, environ, force_config_drive=flag).force_config_drive
