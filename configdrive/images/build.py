"""Build layer: spec -> drive files (metadata_content) -> image file, atomically.

The one place that reads SOURCE_DATE_EPOCH, picks a writer and names outputs.
Writers are imported on demand so an ISO build never imports pyfatfs.
"""
from __future__ import annotations

import errno
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from configdrive.images.formats import DEFAULT_VFAT_SIZE, FORMATS, MAX_EPOCH
from metadata_content.errors import BadInput, Failure

if TYPE_CHECKING:  # pragma: no cover
    from metadata_content.model import Instance

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


class OutputError(Failure, OSError):
    """The image could not be written where asked (exit status 1); ``strerror`` says why."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def parse_size(text: str) -> int:
    """``64M``, ``65536K``, ``1G`` or plain bytes (binary units) -> bytes."""
    match = _SIZE.match(text)
    if not match:
        raise BadInput(f"invalid size {text!r}: use bytes or a K/M/G/T suffix, e.g. 64M")
    number, unit = int(match.group(1)), match.group(2).lower()
    return number * 1024 ** " kmgt".index(unit or " ")


def source_date_epoch(environ: Mapping[str, str] = os.environ) -> int | None:
    """SOURCE_DATE_EPOCH (reproducible-builds.org) as an int, or None when unset."""
    raw = environ.get("SOURCE_DATE_EPOCH")
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise BadInput(f"SOURCE_DATE_EPOCH must be a non-negative integer, not {raw!r}")
    if int(raw) > MAX_EPOCH:
        raise BadInput(f"SOURCE_DATE_EPOCH {raw} is after 2155-12-31, the last date an "
                       f"ISO 9660 image can record (at most {MAX_EPOCH})")
    return int(raw)


def write_image(files: Mapping[str, bytes], fileobj: BinaryIO, fmt: str, *,
                size: int | None = None, epoch: int | None = None) -> None:
    """Write ``files`` as a ``fmt`` image into an empty binary file."""
    if fmt == "iso9660":
        if size is not None:
            raise BadInput("--size applies to vfat images only")
        from configdrive.images.iso import write_iso
        write_iso(files, fileobj, epoch=epoch)
    elif fmt == "vfat":
        from configdrive.images.vfat import write_vfat
        write_vfat(files, fileobj, size=size or DEFAULT_VFAT_SIZE, epoch=epoch)
    else:
        raise BadInput(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def write_image_file(files: Mapping[str, bytes], path: Path, fmt: str, *, force: bool,
                     size: int | None = None, epoch: int | None = None,
                     mode: int | None = None) -> int:
    """Write ``files`` as an image at ``path`` atomically; return its size in bytes.

    The one write path of `build` and `attach`, so both leave either a whole
    image or nothing. ``mode`` is forced with fchmod (the umask does not apply).
    """
    from configdrive.images.atomic import atomic_output
    with atomic_output(path, force=force) as fh:
        write_image(files, fh, fmt, size=size, epoch=epoch)
        if mode is not None:
            os.fchmod(fh.fileno(), mode)
        fh.seek(0, os.SEEK_END)
        return fh.tell()


def drive_files(instance: Instance) -> dict[str, bytes]:
    """The drive tree of a loaded instance: every image renders through the content model."""
    from metadata_content import MetadataTree
    return MetadataTree(instance, delivery="drive").drive_files()


def render_drive_files(spec: Path) -> dict[str, bytes]:
    """Load and validate a spec, then let the content model render the drive tree."""
    from metadata_content import load_instance
    return drive_files(load_instance(spec))


def expand_specs(paths: list[Path]) -> list[Path]:
    """Spec files as given, directories expanded to their spec files (sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir()
                            if p.suffix.lower() in SPEC_SUFFIXES and p.is_file())
        else:
            found.append(path)
    return found


class Job(NamedTuple):
    """One image to build: which spec, and where the image goes."""

    spec: Path
    output: Path


def plan(specs: list[Path], output: Path | None, fmt: str, batch: bool) -> list[Job]:
    """Output paths: -o is the image for one spec, the directory for a batch."""
    suffix = FORMATS[fmt]
    if not batch:
        spec = specs[0]
        if output is None or output.is_dir():
            return [Job(spec, (output or Path(".")) / (spec.stem + suffix))]
        return [Job(spec, output)]
    outdir = output if output is not None else Path(".")
    if outdir.exists() and not outdir.is_dir():
        raise BadInput(f"{outdir}: -o must be a directory when building several images")
    jobs = [Job(spec, outdir / (spec.stem + suffix)) for spec in specs]
    seen: dict[Path, Path] = {}
    for job in jobs:
        if job.output in seen:
            raise BadInput(f"{job.spec} and {seen[job.output]} would both write {job.output}")
        seen[job.output] = job.spec
    return jobs


def build_one(job: Job, fmt: str, *, size: int | None, epoch: int | None,
              force: bool) -> int:
    """Render and write one image atomically; return its size in bytes."""
    if not force and os.path.lexists(job.output):
        raise FileExistsError(errno.EEXIST, "file exists (use --force to replace it)",
                              str(job.output))
    files = render_drive_files(job.spec)
    parent = job.output.parent
    if not parent.is_dir():
        raise BadInput(f"cannot write {job.output}: directory {parent} does not exist")
    try:
        return write_image_file(files, job.output, fmt, force=force, size=size, epoch=epoch)
    except (FileExistsError, IsADirectoryError):
        raise
    except OSError as err:
        raise OutputError(err.errno, f"cannot write {job.output}: {err.strerror}") from err
