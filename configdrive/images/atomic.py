"""Atomic image output: the destination holds a complete image or nothing.

Linux first: the image is written to an unnamed ``O_TMPFILE`` inode in the
target directory and only linked into place once complete (``linkat`` through
``/proc/self/fd``), so even SIGKILL or a power cut mid-write leaves no file at
all (the kernel frees the inode). Without ``--force`` the final ``link()``
refuses to replace a file that appeared meanwhile (no check-then-write race).
Where ``O_TMPFILE`` is unavailable (other kernels or file systems) or that link
is refused (no /proc; probed once per file system) a named temporary file
``.<name>.<random>.cfgdrv-tmp`` in the same directory is used and removed on
error, Ctrl-C and SIGTERM; only SIGKILL can leave it behind, under that
recognisable name.

Either way the file is fsynced before it is named and the directory after,
so the name never outlives a power cut without the bytes, nor the other way round.
"""
from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".cfgdrv-tmp"


class Terminated(SystemExit):
    """SIGTERM turned into an exception so that ``finally`` blocks run."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _link_via_proc(fd: int, target: Path) -> None:
    """linkat(AT_FDCWD, "/proc/self/fd/N", AT_FDCWD, target, AT_SYMLINK_FOLLOW).

    ``src_dir_fd`` (ignored for an absolute path) makes CPython 3.11 call
    linkat with AT_SYMLINK_FOLLOW; without it, it calls link(), which links
    the /proc symlink itself and fails with EXDEV.
    """
    os.link(f"/proc/self/fd/{fd}", target, src_dir_fd=fd, follow_symlinks=True)


_LINKABLE: dict[int, bool] = {}  # st_dev -> whether _link_via_proc works there (probed once)


def _open_unnamed(directory: Path) -> int | None:
    """An O_TMPFILE descriptor in ``directory`` that :func:`_link_via_proc` can name, or None."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag:
        return None
    try:
        fd = os.open(directory, flag | os.O_RDWR | os.O_CLOEXEC, 0o644)
    except OSError as err:
        if err.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None
        raise
    device = os.fstat(fd).st_dev
    if device not in _LINKABLE:
        _LINKABLE[device] = _probe(directory)
    if not _LINKABLE[device]:
        os.close(fd)
        return None
    return fd


def _probe(directory: Path) -> bool:
    """Whether an unnamed file can be linked into ``directory``, tried with an empty one."""
    fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    probe = directory / f".probe.{os.urandom(4).hex()}{TEMP_SUFFIX}"
    try:
        _link_via_proc(fd, probe)
    except OSError:
        return False
    finally:
        os.close(fd)
    os.unlink(probe)
    return True


def _temp_name(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.urandom(4).hex()}{TEMP_SUFFIX}")


def _link_unnamed(fd: int, dest: Path, force: bool) -> None:
    if not force:
        _link_via_proc(fd, dest)  # EEXIST if a file appeared meanwhile: never clobbered
        return
    temp = _temp_name(dest)
    _link_via_proc(fd, temp)
    try:
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def atomic_output(dest: os.PathLike | str, *, force: bool = False) -> Iterator[BinaryIO]:
    """Yield a binary file; on clean exit it becomes ``dest``, otherwise nothing does.

    Raises FileExistsError when ``dest`` exists and ``force`` is false, before
    anything is written.
    """
    dest = Path(dest)
    if not force and os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "file exists (use --force to replace it)", str(dest))
    if dest.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(dest))
    directory = dest.parent if str(dest.parent) else Path(".")
    fd = _open_unnamed(directory)
    if fd is not None:
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            _sync(fh)
            _link_unnamed(fh.fileno(), dest, force)
        _sync_directory(directory)
        return
    temp = _temp_name(dest)
    tfd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(tfd, "w+b") as fh:
            yield fh
            _sync(fh)
        if force:
            os.replace(temp, dest)
        else:
            os.link(temp, dest)
    finally:  # after link or replace alike: the temporary name goes
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
    _sync_directory(directory)


def _sync(fh: BinaryIO) -> None:
    """The image's bytes on disk before it gets its name: without this a power cut
    can leave the name pointing at an empty or partial file (ext4 and XFS commit the
    link before delayed allocation writes the data)."""
    fh.flush()
    os.fsync(fh.fileno())


def _sync_directory(directory: Path) -> None:
    """The new name itself on disk, so an image reported written survives a power cut."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
