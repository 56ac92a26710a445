"""`attach`, `detach` and `sync`: config drives for libvirt domains.

libvirt, the image writers and the store are imported inside the commands,
so `configdrive build` and `--help` never load libvirt.
Exit status: 0 done, 1 failure (no daemon, permission, libvirt refused),
2 bad input (unknown domain, bad spec or instance ID, target in use).
"""
from __future__ import annotations

import inspect
import os
import sys
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from configdrive.commands.common import EXIT_BAD_INPUT, EXIT_FAILURE, ImageFormat, fail, load_or_exit, open_store
from configdrive.commands.service import setting_option, with_store_options
from hypervisor import NEEDS_LIBVIRT_PYTHON
from hypervisor.policy import LibvirtSettings
from metadata_content.errors import Failure
from metadata_content.settings import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.model import Instance
    from metadata_content.store import Store

IMAGES_ENV = "CONFIGDRIVE_LIBVIRT_IMAGES_DIR"


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--connect and --images-dir, shared by all three commands."""
    fn = click.option("--images-dir", type=click.Path(file_okay=False, path_type=Path),
                      help=f"Where drive images are kept (default <data dir>/images, "
                           f"/var/lib/configdrive/images for root); env {IMAGES_ENV}.")(fn)
    return click.option("--connect", "-c", metavar="URI",
                        help="libvirt URI (default: LIBVIRT_DEFAULT_URI, then qemu:///system).")(fn)


def _images_dir(given: Path | None, data_dir: str | None) -> Path:
    """--images-dir, its env, else <data dir>/images (default_images_dir reads CONFIGDRIVE_DATA)."""
    from hypervisor.attach import default_images_dir, prepare_images_dir
    path = given or (Path(os.environ[IMAGES_ENV]) if os.environ.get(IMAGES_ENV) else None)
    if path is None:
        path = Path(data_dir) / "images" if data_dir else default_images_dir()
    return prepare_images_dir(path)


def _epoch() -> int | None:
    """SOURCE_DATE_EPOCH, read before anything is touched: a bad one is bad input (2), as in build."""
    from configdrive.images.build import source_date_epoch
    from metadata_content.errors import BadInput
    try:
        return source_date_epoch()
    except BadInput as err:
        fail(EXIT_BAD_INPUT, str(err))


def _is_file(ref: str) -> bool:
    """Path.is_file, except that a name the OS refuses (e.g. too long) is simply not a file."""
    try:
        return Path(ref).is_file()
    except OSError:
        return False


def _resolve_instance(ref: str, store: Callable[[], Store]) -> Instance:
    """A spec file path, else the uuid of an instance registered in the store."""
    from metadata_content.errors import SpecError
    if _is_file(ref):
        return load_or_exit(Path(ref))
    try:
        uuid = str(uuidlib.UUID(ref))
    except ValueError:
        fail(EXIT_BAD_INPUT, f"--instance {ref}: no such spec file, and not an instance ID")
    from hypervisor.sync import store_lookup
    try:
        instance = store_lookup(store())(uuid)
    except SpecError as err:
        fail(EXIT_BAD_INPUT, f"registered instance {uuid} is invalid: {err}")
    if instance is None:
        fail(EXIT_BAD_INPUT, f"--instance {ref}: no such spec file, and no instance with "
                             f"that ID in the store ('configdrive instances list')")
    return instance


def _run(fn: Callable[[], Any]) -> Any:
    """Call into hypervisor/, turning its refusals into a message and exit status."""
    from hypervisor import HypervisorError
    try:
        return fn()
    except HypervisorError as err:
        fail(err.exit_code, str(err))
    except Exception as err:  # libvirt refused mid-way (e.g. the domain went away): one line
        lv = sys.modules.get("libvirt")
        if lv is not None and isinstance(err, lv.libvirtError):
            fail(EXIT_FAILURE, f"libvirt: {err.get_error_message()}")
        raise


@click.command()
@click.option("--domain", "-d", required=True, metavar="NAME|UUID", help="The libvirt domain.")
@click.option("--instance", "-i", "instance_ref", required=True, metavar="SPEC|ID",
              help="Instance spec file, or the ID of an instance registered in the store.")
@click.option("--format", "-f", "fmt", type=ImageFormat(), default="iso9660", show_default=True,
              help="iso9660 (or iso): read-only cdrom; vfat (or fat): read-only disk (virtio-scsi).")
@click.option("--target", metavar="DEV",
              help="Target device name (e.g. hdc, sdb); default: the first free one.")
@_common
@with_store_options
def attach(domain: str, instance_ref: str, fmt: str, target: str | None, connect: str | None,
           images_dir: Path | None, config_file: str | None, data_dir: str | None,
           store_url: str | None) -> None:
    """Build the instance's config drive and attach it to a domain.

    The persistent definition gets the drive (exactly one: running this again
    refreshes the content in place); a running domain also gets the new media
    where the bus allows (cdrom media change, SCSI hot-plug), otherwise at its
    next boot.
    """

    from hypervisor import attach as attaching
    from hypervisor.connection import lookup_domain, open_connection

    epoch = _epoch()
    instance = _resolve_instance(instance_ref, lambda: open_store(config_file, data_dir, store_url))
    conn = _run(lambda: open_connection(connect))
    dom = _run(lambda: lookup_domain(conn, domain))
    folder = _run(lambda: _images_dir(images_dir, data_dir))
    if dom.UUIDString() != instance.uuid:
        click.echo(f"note: instance {instance.uuid} differs from domain uuid {dom.UUIDString()}; "
                   f"'configdrive sync' matches them by uuid", err=True)
    try:
        outcome = _run(lambda: attaching.attach(dom, instance, fmt, folder, target, epoch=epoch))
    except (OSError, Failure) as err:  # the image could not be built or written
        fail(EXIT_FAILURE, f"cannot build the drive: {err}; nothing was changed")
    click.echo(outcome.line())


@click.command()
@click.option("--domain", "-d", required=True, metavar="NAME|UUID", help="The libvirt domain.")
@_common
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="The data dir given to attach or sync (its images/ is where the drive is); "
                   "env CONFIGDRIVE_DATA.")
def detach(domain: str, connect: str | None, images_dir: Path | None, data_dir: str | None) -> None:
    """Remove the config drive from a domain and delete its image."""
    from hypervisor import attach as attaching
    from hypervisor.connection import lookup_domain, open_connection

    conn = _run(lambda: open_connection(connect))
    dom = _run(lambda: lookup_domain(conn, domain))
    folder = _run(lambda: _images_dir(images_dir, data_dir))
    click.echo(_run(lambda: attaching.detach(dom, folder)).line())


@click.command()
@click.option("--format", "-f", "fmt", type=ImageFormat(), default="iso9660", show_default=True,
              help="Format of new drives, iso9660 or vfat (also: iso, fat); existing drives keep theirs.")
@setting_option(LibvirtSettings, "force_config_drive", "--force-config-drive/--no-force-config-drive",
                default=None, help="Nova's force_config_drive, for domains not yet running "
                                   "(else [libvirt] force_config_drive in --config).")
@click.option("--dry-run", is_flag=True, help="Report what would be done; change nothing.")
@_common
@with_store_options
def sync(fmt: str, force_config_drive: bool | None, dry_run: bool, connect: str | None,
         images_dir: Path | None, config_file: str | None, data_dir: str | None,
         store_url: str | None) -> None:
    """Give drives to the domains of registered instances that need one.

    Each domain whose uuid is a registered instance gets a fresh drive when
    the instance asks for one (config_drive), its image demands one
    (img_config_drive: mandatory), it already has one, or force_config_drive
    is on and it is not running yet; the others are left to HTTP metadata.
    Domains without a registered instance are not touched. One line per
    domain; exit status 1 if any domain failed.
    """
    from hypervisor import policy
    from hypervisor.connection import open_connection
    from hypervisor.sync import store_lookup
    from hypervisor.sync import sync as run_sync

    epoch = _epoch()
    try:
        forced = policy.force_setting(force_config_drive, config_file)
    except ConfigError as err:
        fail(err.exit_code, str(err))
    store = open_store(config_file, data_dir, store_url)
    conn = _run(lambda: open_connection(connect))
    folder = _run(lambda: _images_dir(images_dir, data_dir))
    results = _run(lambda: run_sync(conn, store_lookup(store), force=forced, images_dir=folder,
                                    fmt=fmt, dry_run=dry_run, epoch=epoch))
    for result in results:
        click.echo(result.line())
    counts = {s: sum(r.status == s for r in results) for s in ("drive", "http", "ignored", "failed")}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
    sys.exit(EXIT_FAILURE if counts["failed"] else 0)


for _command in (attach, detach, sync):  # the same words as the error and the README
    _command.help = f"{inspect.cleandoc(_command.help or '')}\n\nThis command {NEEDS_LIBVIRT_PYTHON}."
