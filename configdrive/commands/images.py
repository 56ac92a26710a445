"""`configdrive build` and `configdrive inspect`: images in, images out.

Heavy modules (pycdlib, pyfatfs, the content model) are imported inside the
functions that use them, so `configdrive build --format iso9660` never loads
pyfatfs and `--help` loads neither.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from configdrive.commands.common import EXIT_BAD_INPUT, EXIT_FAILURE, EXIT_OK, ImageFormat, fail

if TYPE_CHECKING:  # pragma: no cover
    from configdrive.images.build import Job


def _classify(err: BaseException) -> tuple[int, str]:
    """(exit status, one-line message) for an error a user can cause or meet;
    anything else is a bug and re-raised, to be seen as one."""
    from metadata_content.errors import ConfigdriveError
    if isinstance(err, ConfigdriveError):
        return err.exit_code, str(err)
    if isinstance(err, (FileExistsError, IsADirectoryError, FileNotFoundError)):
        return EXIT_BAD_INPUT, f"{err.filename}: {err.strerror}"
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        return EXIT_FAILURE, f"{where}{err.strerror or err}"
    raise err


@click.command()
@click.option("--instance", "-i", "instances", multiple=True, required=True,
              type=click.Path(path_type=Path),
              help="Instance spec (YAML/JSON) or a directory of specs. Repeatable; "
                   "extra specs may also follow as arguments.")
@click.argument("more", nargs=-1, metavar="[SPEC]...", type=click.Path(path_type=Path))
@click.option("--format", "-f", "fmt", type=ImageFormat(), default="iso9660", show_default=True,
              help="Image format (also: iso, fat).")
@click.option("--output", "-o", type=click.Path(),
              help="Image path, or a directory for <spec stem>.iso|.img "
                   "(default: the current directory); always a directory for several specs.")
@click.option("--size", metavar="SIZE", help="VFAT image size, e.g. 64M (default 64M).")
@click.option("--force", is_flag=True, help="Replace existing images.")
def build(instances: tuple[Path, ...], more: tuple[Path, ...], fmt: str,
          output: str | None, size: str | None, force: bool) -> None:
    """Build config-drive images (label config-2) from instance specs.

    Each image is written to a temporary file in the target directory and
    renamed into place only when complete: an error, Ctrl-C or a kill leaves
    nothing at the destination. Existing files are kept unless --force.
    With SOURCE_DATE_EPOCH set, the same spec gives the same bytes.

    With several specs (or a directory) every good image is built, one line
    per image is printed (a progress bar on a terminal), then a summary.

    Exit status: 0 all built, 1 an image could not be written, 2 bad input
    (bad spec or option, output exists without --force).
    """
    from configdrive.images import build as builder
    from configdrive.images.atomic import Terminated, terminate_as_exception
    from metadata_content.errors import BadInput
    try:
        epoch = builder.source_date_epoch()
        size_bytes = builder.parse_size(size) if size is not None else None
        if size_bytes is not None:
            _check_vfat_size(fmt, size_bytes)
        if output is not None and output.endswith("/") and not Path(output).is_dir():
            # Path() drops the slash: without this, "-o new/" would write a file named "new"
            raise BadInput(f"-o {output}: no such directory")
        specs = builder.expand_specs([*instances, *more])
        batch = len(specs) != 1 or any(p.is_dir() for p in (*instances, *more))
        if not specs:
            raise BadInput("no instance specs found")
        jobs = builder.plan(specs, Path(output) if output is not None else None, fmt, batch)
    except BadInput as err:
        fail(EXIT_BAD_INPUT, str(err))
    except OSError as err:  # e.g. a spec or -o below a directory we may not search
        fail(*_classify(err))
    with terminate_as_exception():
        try:
            if not batch:
                _single(jobs[0], fmt, size_bytes, epoch, force)
            else:
                _batch(jobs, fmt, size_bytes, epoch, force)
        except KeyboardInterrupt:
            click.echo("interrupted: no partial image was left behind", err=True)
            raise SystemExit(130) from None
        except Terminated:
            click.echo("terminated: no partial image was left behind", err=True)
            raise


def _check_vfat_size(fmt: str, size: int) -> None:
    from metadata_content.errors import BadInput
    if fmt != "vfat":
        raise BadInput("--size applies to --format vfat only")
    from configdrive.images.vfat import VfatError, geometry
    try:
        geometry(size)
    except VfatError as err:
        raise BadInput(f"--size: {err}") from None


def _single(job: Job, fmt: str, size: int | None, epoch: int | None, force: bool) -> None:
    from configdrive.images.build import build_one
    try:
        written = build_one(job, fmt, size=size, epoch=epoch, force=force)
    except Exception as err:  # classified below; unknown errors re-raise
        fail(*_classify(err))
    click.echo(f"{job.output} ({fmt}, {written} bytes)")


def _batch(jobs: list[Job], fmt: str, size: int | None, epoch: int | None, force: bool) -> None:
    from configdrive.images.build import build_one
    tty = sys.stderr.isatty()
    failures: list[tuple[int, str]] = []

    def one(job: Job) -> None:
        try:
            written = build_one(job, fmt, size=size, epoch=epoch, force=force)
        except Exception as err:
            status, message = _classify(err)
            failures.append((status, message))
            where = "" if message.startswith(str(job.spec)) else f"{job.spec}: "
            click.echo(f"FAILED {where}{message}", err=True)
        else:
            if not tty:
                click.echo(f"ok {job.spec} -> {job.output} ({written} bytes)")

    if tty:
        with click.progressbar(jobs, label=f"building {len(jobs)} images", file=sys.stderr,
                               item_show_func=lambda j: str(j.spec) if j else None) as bar:
            for job in bar:
                one(job)
    else:
        for job in jobs:
            one(job)
    built = len(jobs) - len(failures)
    click.echo(f"{built} of {len(jobs)} images built, {len(failures)} failed")
    if failures:
        bad_input_only = all(status == EXIT_BAD_INPUT for status, _ in failures)
        raise SystemExit(EXIT_BAD_INPUT if bad_input_only else EXIT_FAILURE)


@click.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--extract", type=click.Path(path_type=Path), metavar="DIR",
              help="Also copy every file of the drive into DIR (created if missing).")
def inspect(image: Path, as_json: bool, extract: Path | None) -> None:
    """Read a config drive (ISO 9660 or VFAT, ours or anyone's) and validate it.

    Reports the format, label, metadata versions, instance uuid and hostname,
    then checks what guests rely on: label config-2, meta_data.json with a uuid,
    valid JSON everywhere, network_data.json against its schema, and every
    dated OpenStack version directory complete (cloud-init reads the newest).

    Exit status: 0 valid, 1 invalid (reasons printed), 2 not a readable
    config-drive image (or bad --extract directory).
    """
    import json

    from configdrive.images import inspect as reader
    try:
        drive = reader.read_drive(image)
    except reader.NotADrive as err:
        fail(EXIT_BAD_INPUT, str(err))
    report = reader.validate(drive)
    if extract is not None:
        try:
            reader.extract(drive, extract)
        except (OSError, ValueError) as err:
            fail(EXIT_BAD_INPUT, f"cannot extract to {extract}: {err}")
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(report.render())
    raise SystemExit(EXIT_OK if report.valid else EXIT_FAILURE)
