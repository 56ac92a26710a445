"""ISO 9660 config drive writer (pycdlib), with Rock Ridge, Joliet and a fixed clock.

What it fixes on top of pycdlib 1.22.0, and why:

* Dates. pycdlib stamps ``time.time()`` through ``time.localtime`` into every
  directory record, Rock Ridge TF record and volume descriptor, so two builds
  differ by clock and TZ. After the tree is built we replace those date objects
  with ones made from a single epoch in UTC (pycdlib's own ``dates`` classes),
  and the volume modification date - which pycdlib re-stamps inside
  ``record()`` at write time - is rewritten in the written descriptors. Nothing
  global (``time.time``, ``TZ``) is patched.
* Names. At interchange level 3 ISO 9660 names must be ``A-Z0-9_``; guests read
  Rock Ridge (Linux, cirros) or Joliet (Windows), which carry the exact names.
  Primary names are mangled and de-duplicated per directory here.
* Size. KubeVirt rejects images that are not a 4 KiB multiple: one 2 KiB block
  is added to the volume space when needed, so the descriptors agree with the
  file size.
* Modes as ``genisoimage -r``: files 0444, directories 0555, uid/gid 0.
* Speed. pycdlib spends ~10 ms building the records of a 51-file drive; a
  process keeps the last few image shapes and refills them (see
  :class:`_Image`), which makes every later drive of a batch ~3x faster.
"""
from __future__ import annotations

import contextlib
import io
import re
import threading
import time
from collections import OrderedDict
from typing import BinaryIO, Iterator, Mapping

import pycdlib
from pycdlib import dates
from pycdlib.pycdlibexception import PyCdlibException

VOLUME_ID = "config-2"
BLOCK = 2048
ALIGN = 4096
FILE_MODE = 0o100444
DIR_MODE = 0o040555
PUBLISHER = "configdrive"
_D1 = re.compile(r"[^A-Z0-9_]")
# Byte offsets inside a volume descriptor (ECMA-119 8.4).
_VD_MODIFICATION = 830


class IsoError(ValueError):
    """The drive files cannot be laid out as an ISO 9660 image."""


def _mangle(name: str, is_dir: bool, taken: set[str]) -> str:
    """A unique ISO 9660 level-3 identifier for ``name`` (without ``;1``)."""
    upper = name.upper()
    if is_dir:
        stem, ext, limit = _D1.sub("_", upper) or "_", None, 31
    else:
        base, dot, suffix = upper.rpartition(".")
        stem, ext = (base, suffix) if dot and base else (upper, "")
        stem, ext = _D1.sub("_", stem) or "_", _D1.sub("_", ext)[:8]
        limit = 30 - len(ext)
    for n in range(0, 100000):
        tail = f"_{n}" if n else ""
        candidate = stem[:limit - len(tail)] + tail
        full = candidate if ext is None else f"{candidate}.{ext}"
        if full not in taken:
            taken.add(full)
            return full
    raise IsoError(f"no free ISO 9660 name for {name!r}")


def _check_path(path: str) -> list[str]:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise IsoError(f"invalid path in drive files: {path!r}")
    return parts


def _layout(files: Mapping[str, bytes]) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str, str]]]:
    """Directories (iso, rr, joliet) parents-first, and files (iso, rr, joliet, key)."""
    dirs: dict[str, tuple[str, str]] = {"": ("", "")}  # rel -> (iso path, joliet path)
    taken: dict[str, set[str]] = {"": set()}
    out_dirs: list[tuple[str, str, str]] = []
    out_files: list[tuple[str, str, str, str]] = []
    for key in sorted(files):
        parts = _check_path(key)
        rel = ""
        for part in parts[:-1]:
            child = f"{rel}/{part}" if rel else part
            if child not in dirs:
                if child in files:
                    raise IsoError(f"{child!r} is both a file and a directory")
                iso_parent, joliet_parent = dirs[rel]
                iso = f"{iso_parent}/{_mangle(part, True, taken[rel])}"
                dirs[child] = (iso, f"{joliet_parent}/{part}")
                taken[child] = set()
                out_dirs.append((iso, part, dirs[child][1]))
            rel = child
        iso_parent, joliet_parent = dirs[rel]
        name = parts[-1]
        iso = f"{iso_parent}/{_mangle(name, False, taken[rel])};1"
        out_files.append((iso, name, f"{joliet_parent}/{name}", key))
    return out_dirs, out_files


def _records(vd) -> Iterator:
    """Every directory record below a volume descriptor's root, dot entries included."""
    stack = [vd.root_dir_record]
    while stack:
        record = stack.pop()
        yield record
        for child in record.children:
            if child is record:
                continue
            if child.is_dir() and not child.is_dot() and not child.is_dotdot():
                stack.append(child)
            else:
                yield child


def _dr_date(tm: time.struct_time) -> dates.DirectoryRecordDate:
    return dates.DirectoryRecordDate.from_fields(tm.tm_year - 1900, tm.tm_mon, tm.tm_mday,
                                                 tm.tm_hour, tm.tm_min, tm.tm_sec, 0)


def _vd_date_bytes(tm: time.struct_time) -> bytes:
    return time.strftime("%Y%m%d%H%M%S", tm).encode("ascii") + b"00\x00"


def _vd_date(tm: time.struct_time) -> dates.VolumeDescriptorDate:
    """A UTC volume date; fields set directly (parse() would import _strptime)."""
    date = dates.VolumeDescriptorDate()
    date.new(0.0)  # "not specified", then filled in
    date.year, date.month, date.dayofmonth = tm.tm_year, tm.tm_mon, tm.tm_mday
    date.hour, date.minute, date.second = tm.tm_hour, tm.tm_min, tm.tm_sec
    date.date_str = _vd_date_bytes(tm)
    return date


def _pin_dates(iso: pycdlib.PyCdlib, tm: time.struct_time) -> None:
    """Replace every clock-derived date pycdlib created with ``tm`` (UTC)."""
    vds = [*iso.pvds] + ([iso.joliet_vd] if iso.joliet_vd is not None else [])
    # Date objects are only read when records are serialised: one of each is shared.
    dr_date, vd_date = _dr_date(tm), _vd_date(tm)
    for vd in vds:
        vd.volume_creation_date = vd_date
        vd.volume_modification_date = vd_date
        vd.volume_effective_date = vd_date
        for record in _records(vd):
            record.date = dr_date
            rr = record.rock_ridge
            if rr is None:
                continue
            for holder in (rr.dr_entries, rr.ce_entries):
                tf = getattr(holder, "tf_record", None)
                if tf is None:
                    continue
                for slot in ("creation_time", "access_time", "modification_time",
                             "attribute_change_time", "backup_time", "expiration_time",
                             "effective_time"):
                    if getattr(tf, slot) is not None:
                        setattr(tf, slot, vd_date if tf.time_flags & 0x80 else dr_date)


def _fix_descriptors(iso: pycdlib.PyCdlib, fileobj: BinaryIO, tm: time.struct_time) -> None:
    """Rewrite the modification date pycdlib stamps while writing each descriptor."""
    stamp = _vd_date_bytes(tm)
    for vd in [*iso.pvds, *iso.svds]:
        fileobj.seek(vd.extent_location() * BLOCK + _VD_MODIFICATION)
        fileobj.write(stamp)


class _Image:
    """A pycdlib ISO for one tree shape (the set of paths) whose contents can be swapped.

    Building the directory records, Rock Ridge and Joliet entries is most of
    pycdlib's cost; drives rendered from one content model mostly share their
    shape, so a batch refills the same records with new contents through
    pycdlib's public ``update_file_contents_fp`` instead of rebuilding them.
    The tests assert that a refilled image is byte-identical to a fresh one.
    """

    def __init__(self, files: Mapping[str, bytes], volume_id: str, publisher: str):
        self.lock = threading.Lock()
        self.padding = 0
        self.iso = pycdlib.PyCdlib()
        self.iso.new(interchange_level=3, vol_ident=volume_id, sys_ident="LINUX",
                     pub_ident_str=publisher, app_ident_str="configdrive",
                     joliet=3, rock_ridge="1.09")
        dirs, self.entries = _layout(files)
        for iso_path, rr_name, joliet_path in dirs:
            self.iso.add_directory(iso_path, rr_name=rr_name, joliet_path=joliet_path,
                                   file_mode=DIR_MODE)
        for iso_path, rr_name, joliet_path, key in self.entries:
            data = files[key]
            self.iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=rr_name,
                            joliet_path=joliet_path, file_mode=FILE_MODE)

    def refill(self, files: Mapping[str, bytes]) -> None:
        for iso_path, _rr, _joliet, key in self.entries:
            data = files[key]
            self.iso.update_file_contents_fp(io.BytesIO(data), len(data), iso_path=iso_path)

    def _descriptors(self) -> list:
        return [*self.iso.pvds] + ([self.iso.joliet_vd] if self.iso.joliet_vd is not None else [])

    def render(self, tm: time.struct_time) -> memoryview:
        iso = self.iso
        for vd in self._descriptors():  # undo the previous rendering's 4 KiB padding
            if self.padding:
                vd.remove_from_space_size(self.padding)
        iso.force_consistency()
        self.padding = BLOCK if (iso.pvd.space_size * BLOCK) % ALIGN else 0
        for vd in self._descriptors():
            if self.padding:
                vd.add_to_space_size(self.padding)
        _pin_dates(iso, tm)
        # pycdlib writes record by record with a seek each time: into memory
        # first, then one write (an image is about the size of its files).
        buffer = io.BytesIO()
        iso.write_fp(buffer)
        _fix_descriptors(iso, buffer, tm)
        return buffer.getbuffer()[:iso.pvd.space_size * BLOCK]


_CACHE: OrderedDict[tuple, _Image] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 8


@contextlib.contextmanager
def _image_for(files: Mapping[str, bytes], volume_id: str, publisher: str,
               reuse: bool) -> Iterator[_Image]:
    """A cached image of this shape refilled with ``files``, or a fresh one."""
    key = (volume_id, publisher, *sorted(files))
    image = None
    if reuse:
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
            if cached is not None and cached.lock.acquire(blocking=False):
                _CACHE.move_to_end(key)
                image = cached
    if image is not None:
        try:
            image.refill(files)
            yield image
        except BaseException:
            with _CACHE_LOCK:  # state unknown after a failure: never reuse it
                if _CACHE.get(key) is image:
                    del _CACHE[key]
            raise
        finally:
            image.lock.release()
        return
    image = _Image(files, volume_id, publisher)
    with image.lock:
        yield image
    if reuse:
        with _CACHE_LOCK:
            _CACHE.setdefault(key, image)
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)


def clear_cache() -> None:
    """Forget every cached image shape (benchmarks of cold builds, tests)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def write_iso(files: Mapping[str, bytes], fileobj: BinaryIO, *, epoch: int | None = None,
              volume_id: str = VOLUME_ID, publisher: str = PUBLISHER, reuse: bool = True) -> int:
    """Write an ISO 9660 + Rock Ridge + Joliet image of ``files``; return its size.

    The image is written at the current position of ``fileobj`` (one write).
    The same files and epoch give the same bytes in any time zone. Without an
    epoch the current time is used. ``reuse`` lets later images with the same
    paths refill this one's records (see :class:`_Image`); it never changes bytes.
    """
    tm = time.gmtime(int(time.time()) if epoch is None else int(epoch))
    try:
        with _image_for(files, volume_id, publisher, reuse) as image:
            data = image.render(tm)
            fileobj.write(data)
    except PyCdlibException as err:  # e.g. a Joliet name over 64 characters
        raise IsoError(str(err)) from None
    fileobj.flush()
    return len(data)
