"""The pycdlib ISO writer: for trees :mod:`configdrive.images.iso9660` does not handle.

pycdlib 1.22.0 handles every ISO 9660 corner (Rock Ridge continuation areas
for long names, relocated deep directories, non-ASCII names) at ~12 ms and a
~20 ms import per drive; the direct writer gives the same bytes for plain
trees, and the tests use this module as its reference. What it fixes on top
of pycdlib, and why:

* Dates. pycdlib stamps ``time.time()`` through ``time.localtime`` into every
  directory record, Rock Ridge TF record and volume descriptor, so two builds
  differ by clock and TZ. After the tree is built we replace those date objects
  with ones made from a single epoch in UTC (pycdlib's own ``dates`` classes),
  and the volume modification date - which pycdlib re-stamps inside
  ``record()`` at write time - is rewritten in the written descriptors. Nothing
  global (``time.time``, ``TZ``) is patched.
* Size. KubeVirt rejects images that are not a 4 KiB multiple: one 2 KiB block
  is added to the volume space when needed, so the descriptors agree with the
  file size.
* Modes as ``genisoimage -r``: files 0444, directories 0555, uid/gid 0.
"""
from __future__ import annotations

import io
import time
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import pycdlib
from pycdlib import dates

# One definition for both writers (they must give the same bytes); iso9660 is cheap to import.
from configdrive.images.iso9660 import BLOCK, DIR_MODE, FILE_MODE, vd_date

# Byte offsets inside a volume descriptor (ECMA-119 8.4).
_VD_MODIFICATION = 830


def _records(vd: Any) -> Iterator[Any]:
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


def _vd_date(tm: time.struct_time) -> dates.VolumeDescriptorDate:
    """A UTC volume date; fields set directly (parse() would import _strptime)."""
    date = dates.VolumeDescriptorDate()
    date.new(0.0)  # "not specified", then filled in
    date.year, date.month, date.dayofmonth = tm.tm_year, tm.tm_mon, tm.tm_mday
    date.hour, date.minute, date.second = tm.tm_hour, tm.tm_min, tm.tm_sec
    date.date_str = vd_date(tm)
    return date


def _tree_vds(iso: pycdlib.PyCdlib) -> list:
    """The volume descriptors that own a directory tree: primaries and Joliet."""
    return [*iso.pvds] + ([iso.joliet_vd] if iso.joliet_vd is not None else [])


def _pin_dates(vds: list, tm: time.struct_time) -> None:
    """Replace every clock-derived date pycdlib created with ``tm`` (UTC)."""
    # Date objects are only read when records are serialised: one of each is shared.
    dr_date, vol_date = _dr_date(tm), _vd_date(tm)
    for vd in vds:
        vd.volume_creation_date = vol_date
        vd.volume_modification_date = vol_date
        vd.volume_effective_date = vol_date
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
                        setattr(tf, slot, vol_date if tf.time_flags & 0x80 else dr_date)


def _fix_descriptors(iso: pycdlib.PyCdlib, fileobj: BinaryIO, tm: time.struct_time) -> None:
    """Rewrite the modification date pycdlib stamps while writing each descriptor."""
    stamp = vd_date(tm)
    for vd in [*iso.pvds, *iso.svds]:
        fileobj.seek(vd.extent_location() * BLOCK + _VD_MODIFICATION)
        fileobj.write(stamp)


def write(dirs: list[tuple[str, str, str]], files: list[tuple[str, str, str, str]],
          contents: Mapping[str, bytes], tm: time.struct_time, *, volume_id: str,
          publisher: str, align: int) -> memoryview:
    """The image of the laid-out tree (see :func:`configdrive.images.iso._layout`), ``align``-padded.

    Raises pycdlib's PyCdlibException for names no reader can hold.
    """
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=volume_id, sys_ident="LINUX",
            pub_ident_str=publisher, app_ident_str="configdrive", joliet=3, rock_ridge="1.09")
    for iso_path, rr_name, joliet_path in dirs:
        iso.add_directory(iso_path, rr_name=rr_name, joliet_path=joliet_path, file_mode=DIR_MODE)
    for iso_path, rr_name, joliet_path, key in files:
        data = contents[key]
        iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=rr_name,
                   joliet_path=joliet_path, file_mode=FILE_MODE)
    iso.force_consistency()
    vds = _tree_vds(iso)
    padding = -(iso.pvd.space_size * BLOCK) % align
    if padding:
        for vd in vds:
            vd.add_to_space_size(padding)
    _pin_dates(vds, tm)
    # pycdlib writes record by record with a seek each time: into memory
    # first, then one write (an image is about the size of its files).
    buffer = io.BytesIO()
    iso.write_fp(buffer)
    _fix_descriptors(iso, buffer, tm)
    return buffer.getbuffer()[:iso.pvd.space_size * BLOCK]
