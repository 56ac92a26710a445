"""Atomic image output: the destination holds a complete image or nothing.

Linux first: the image is written to an unnamed ``O_TMPFILE`` inode in the
target directory and only linked into place once complete (``linkat`` through
``/proc/self/fd``, or ``AT_EMPTY_PATH`` where that path is refused - probed
once per file system), so even SIGKILL or
a power cut mid-write leaves no file at all (the kernel frees the inode).
Without ``--force`` the final ``link()`` refuses to replace a file that appeared
meanwhile (no check-then-write race). Where ``O_TMPFILE`` is unavailable (other
kernels or file systems) a named temporary file ``.<name>.<random>.cfgdrv-tmp``
in the same directory is used and removed on error, Ctrl-C and SIGTERM; only
SIGKILL can leave it behind, under that recognisable name.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

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


@functools.cache
def _libc() -> Any:
    import ctypes
    return ctypes.CDLL(None, use_errno=True)


def _link_via_empty_path(fd: int, target: Path) -> None:
    """linkat(fd, "", AT_FDCWD, target, AT_EMPTY_PATH): works where /proc is odd."""
    import ctypes
    if _libc().linkat(fd, b"", -100, os.fsencode(target), 0x1000) != 0:  # AT_FDCWD, AT_EMPTY_PATH
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(target))


Linker = Callable[[int, Path], None]
_LINKERS: dict[int, Linker | None] = {}  # st_dev -> how to link there (probed once)


def _open_unnamed(directory: Path) -> tuple[int, Linker] | None:
    """An O_TMPFILE descriptor in ``directory`` and a way to link it, or None."""
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
    if device not in _LINKERS:
        _LINKERS[device] = _probe(directory)
    linker = _LINKERS[device]
    if linker is None:
        os.close(fd)
        return None
    return fd, linker


def _probe(directory: Path) -> Linker | None:
    """Find a linking method that works here, with an empty unnamed file."""
    fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        for linker in (_link_via_proc, _link_via_empty_path):
            probe = directory / f".probe.{os.urandom(4).hex()}{TEMP_SUFFIX}"
            try:
                linker(fd, probe)
            except OSError:
                continue
            os.unlink(probe)
            return linker
        return None
    finally:
        os.close(fd)


def _temp_name(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.urandom(4).hex()}{TEMP_SUFFIX}")


def _link_unnamed(fd: int, linker: Linker, dest: Path, force: bool) -> None:
    if not force:
        linker(fd, dest)  # EEXIST if a file appeared meanwhile: never clobbered
        return
    temp = _temp_name(dest)
    linker(fd, temp)
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
    unnamed = _open_unnamed(directory)
    if unnamed is not None:
        fd, linker = unnamed
        with os.fdopen(fd, "w+b") as fh:
            yield fh
            fh.flush()
            _link_unnamed(fh.fileno(), linker, dest, force)
        return
    temp = _temp_name(dest)
    tfd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(tfd, "w+b") as fh:
            yield fh
        if force:
            os.replace(temp, dest)
        else:
            os.link(temp, dest)
    finally:  # after link or replace alike: the temporary name goes
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
