"""Read any config drive back (ISO 9660 or FAT) and check what guests rely on.

Independent of how the image was made (ours, Nova's genisoimage recipe,
mkfs.vfat + mcopy): names come from Rock Ridge, else Joliet, else ISO 9660 on
CD-ROMs, and from long names, else 8.3 names with the NT lower-case flags, on
FAT. Validation mirrors the readers: cloud-init picks the newest dated
OpenStack directory it knows, so a file that a newer directory has and that
directory lacks is lost; a broken file is lost to every reader.
"""
from __future__ import annotations

import io
import json
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from metadata_content.render import openstack
from metadata_content.render import versions as v

LABEL = "config-2"

# Images are untrusted: reading one is bounded by the image's own size, so a
# crafted image cannot make us walk, hold or extract more than it really holds.
MAX_ENTRIES = 10_000  # files and directories on one drive (config drives have ~50)
MAX_DEPTH = 32  # directory levels below the root (config drives use 3)
SIZE_FACTOR = 4  # the files may total at most this many times the image (hard links share extents)
MAX_JSON_DEPTH = 100  # nesting levels of a JSON file (metadata nests 4 or 5)
MAX_DIR_RECORDS = 50_000  # ISO 9660 directory records pycdlib may be handed


class NotADrive(Exception):
    """The file is missing, unreadable, or neither ISO 9660 nor FAT."""


@dataclass
class Drive:
    path: Path
    format: str
    label: str
    files: dict[str, bytes]
    notes: list[str] = field(default_factory=list)  # facts found while reading
    problems: list[str] = field(default_factory=list)  # label faults found while reading


@dataclass
class Report:
    drive: Drive
    openstack_versions: list[str]
    ec2_versions: list[str]
    uuid: str | None
    hostname: str | None
    problems: list[str]
    warnings: list[str]

    @property
    def valid(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"image": str(self.drive.path), "format": self.drive.format,
                "label": self.drive.label, "openstack_versions": self.openstack_versions,
                "ec2_versions": self.ec2_versions, "uuid": self.uuid,
                "hostname": self.hostname, "files": sorted(self.drive.files),
                "notes": self.drive.notes, "valid": self.valid,
                "problems": self.problems, "warnings": self.warnings}

    def render(self) -> str:
        lines = [f"image:      {self.drive.path}",
                 f"format:     {self.drive.format}"
                 + (f" ({', '.join(self.drive.notes)})" if self.drive.notes else ""),
                 f"label:      {self.drive.label}",
                 f"openstack:  {' '.join(self.openstack_versions) or '-'}",
                 f"ec2:        {' '.join(self.ec2_versions) or '-'}",
                 f"uuid:       {self.uuid or '-'}",
                 f"hostname:   {self.hostname or '-'}",
                 f"files:      {len(self.drive.files)}",
                 f"valid:      {'yes' if self.valid else 'NO'}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def read_drive(path: Path) -> Drive:
    """Detect the format and read every file of the image."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(0x8006)
    except OSError as err:
        raise NotADrive(f"{path}: cannot read: {err.strerror}") from None
    if len(head) >= 0x8006 and head[0x8001:0x8006] == b"CD001":
        kind, reader = "ISO 9660", _read_iso
    elif _looks_fat(head):
        kind, reader = "FAT", _read_fat
    else:
        raise NotADrive(f"{path}: not a config drive image (neither ISO 9660 nor FAT)")
    try:
        return reader(path)
    except NotADrive:
        raise
    except Exception as err:  # pycdlib and pyfatfs fail on hostile images in any way
        raise NotADrive(f"{path}: unreadable {kind} image: {_reason(err)}") from None


def _reason(err: BaseException) -> str:
    """One line for a library's failure; bare KeyError(28) and the like get their type named."""
    from pycdlib.pycdlibexception import PyCdlibException
    from pyfatfs._exceptions import PyFATException
    if isinstance(err, MemoryError):
        return "structures too large to hold in memory"
    if isinstance(err, RecursionError):
        return "structures nested too deeply"
    text = " ".join(str(err).split())
    if isinstance(err, (PyCdlibException, PyFATException, _Malformed)) and text:
        return text
    return f"malformed structure ({type(err).__name__}: {text or '-'})"


class _Malformed(ValueError):
    """A structural fault we found ourselves; read_drive turns it into NotADrive."""


class _Budget:
    """What reading one image may cost: entries, depth and bytes, from the image's size."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size
        self.entries = 0
        self.bytes = 0

    def entry(self, rel: str, depth: int) -> None:
        self.entries += 1
        if self.entries > MAX_ENTRIES:
            raise _Malformed(f"more than {MAX_ENTRIES} files and directories")
        if depth > MAX_DEPTH:
            raise _Malformed(f"{rel}: directories nested more than {MAX_DEPTH} levels deep")
        name = rel.rsplit("/", 1)[-1]
        if name in ("", ".", "..") or "\0" in name:
            raise _Malformed(f"bad file name {rel!r}")

    def take(self, size: int, rel: str) -> None:
        self.bytes += size
        if self.bytes > SIZE_FACTOR * self.image_size:
            raise _Malformed(f"{rel}: the files add up to more than {SIZE_FACTOR} times the "
                             f"image's {self.image_size} bytes (records sharing extents or clusters)")


# ---------------------------------------------------------------- ISO 9660

def _read_iso(path: Path) -> Drive:
    import pycdlib
    with open(path, "rb") as fh:
        size = _iso_prescan(fh)
    budget = _Budget(size)
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        label = iso.pvd.volume_identifier.decode("ascii", "replace").rstrip(" \0")
        notes = []
        if iso.has_rock_ridge():
            notes.append("Rock Ridge")
        if iso.has_joliet():
            notes.append("Joliet")
        if iso.has_rock_ridge():
            key = "rr_path"
        elif iso.has_joliet():
            key = "joliet_path"
        else:
            key = "iso_path"
        files: dict[str, bytes] = {}
        extents: dict[tuple[int, int], bytes] = {}  # records sharing an extent share its bytes
        with open(path, "rb") as fh:
            for rel, record in _iso_files(iso, key, budget):
                if rel in files:
                    raise _Malformed(f"{rel}: two records of that name")
                where = (record.extent_location() * iso.logical_block_size, record.get_data_length())
                budget.take(where[1], rel)
                if where not in extents:
                    extents[where] = _read_at(fh, *where, size, rel)
                files[rel] = extents[where]
    finally:
        iso.close()
    return Drive(path, "iso9660", label, files, notes)


def _read_at(fh: BinaryIO, offset: int, length: int, size: int, rel: str) -> bytes:
    if offset + length > size:
        raise _Malformed(f"{rel}: its data ({length} bytes at {offset}) lies beyond the image's end")
    fh.seek(offset)
    return fh.read(length)


def _iso_prescan(fh: BinaryIO) -> int:
    """Walk the directory extents of every volume descriptor before pycdlib does: each
    directory once, all of them inside the image and within MAX_DIR_RECORDS, so that
    pycdlib's own parse is bounded by the image's size. Returns the image's size."""
    size = fh.seek(0, io.SEEK_END)
    records = 0
    for number in range(16, 16 + 64):
        fh.seek(number * 2048)
        vd = fh.read(2048)
        if len(vd) < 2048 or vd[1:6] != b"CD001" or vd[0] == 255:
            break
        if vd[0] not in (1, 2):
            continue
        block = struct.unpack_from("<H", vd, 128)[0] or 2048
        seen: set[int] = set()
        pending = [struct.unpack_from("<I", vd, 156 + 2)[0]]
        lengths = {pending[0]: struct.unpack_from("<I", vd, 156 + 10)[0]}
        walked = 0
        while pending:
            extent = pending.pop()
            seen.add(extent)
            data = _read_at(fh, extent * block, lengths[extent], size, f"directory at block {extent}")
            walked += len(data)
            if walked > size:
                raise _Malformed("directories overlap (their extents add up to more than the image)")
            at = 0
            while at < len(data):
                length = data[at]
                if length == 0:  # padding up to the next block
                    at = (at // block + 1) * block
                    continue
                if length < 34 or at + length > len(data):
                    raise _Malformed(f"directory at block {extent}: bad record at byte {at}")
                records += 1
                if records > MAX_DIR_RECORDS:
                    raise _Malformed(f"more than {MAX_DIR_RECORDS} directory records")
                child, child_length = struct.unpack_from("<I4xI", data, at + 2)
                is_dot = data[at + 32] == 1 and data[at + 33] in (0, 1)
                if data[at + 25] & 0x02 and not is_dot and child not in seen:
                    seen.add(child)
                    lengths[child] = child_length
                    pending.append(child)
                at += length
    return size


def _iso_name(record: Any, key: str) -> str:
    rr = record.rock_ridge if key == "rr_path" else None
    if rr is not None and rr.name():
        return bytes(rr.name()).decode("utf-8", "replace")
    if key == "joliet_path":
        return bytes(record.file_identifier()).decode("utf-16_be", "replace").split(";")[0]
    name = bytes(record.file_identifier()).decode("ascii", "replace")
    return name.split(";")[0].rstrip(".").lower() if key == "iso_path" else name.split(";")[0]


def _parent_link(directory: Any) -> int | None:
    """Block that a relocated directory's PL entry names as its parent, if it has one."""
    for child in directory.children:
        if child.is_dotdot():
            rr = child.rock_ridge
            if rr is not None and rr.parent_link_record_exists() and rr.parent_link is not None:
                return int(rr.parent_link.extent_location())
            return None
    return None


def _iso_files(iso: Any, key: str, budget: _Budget) -> Any:
    """(relative name, record) of every file, walking records ourselves: pycdlib's walk
    rebuilds each path by following Rock Ridge parent links, which a crafted PL loop
    turns into an endless loop. Relocated directories are listed where their CL entry is;
    every directory is entered once."""
    vd = iso.joliet_vd if key == "joliet_path" else iso.pvd
    root = vd.root_directory_record()
    seen = {root.extent_location()}
    stack: list[tuple[str, Any, int]] = [("", root, 0)]
    while stack:
        prefix, directory, depth = stack.pop()
        for child in directory.children:
            if child.is_dot() or child.is_dotdot():
                continue
            rr = child.rock_ridge if key == "rr_path" else None
            if rr is not None and rr.relocated_record():
                continue
            rel = prefix + _iso_name(child, key)
            budget.entry(rel, depth)
            target = child
            if rr is not None and rr.child_link_record_exists():
                target = rr.cl_to_moved_dr
                if target is None or _parent_link(target) not in (None, directory.extent_location()):
                    raise _Malformed(f"{rel}: its Rock Ridge relocation (CL/PL) is inconsistent")
            if target.is_dir():
                if target.extent_location() in seen:
                    raise _Malformed(f"directory {rel} loops back to block {target.extent_location()}")
                seen.add(target.extent_location())
                stack.append((rel + "/", target, depth + 1))
            elif rr is None or not rr.is_symlink():
                yield rel, child


# ---------------------------------------------------------------- FAT

def _looks_fat(head: bytes) -> bool:
    if len(head) < 512 or head[510:512] != b"\x55\xaa" or head[0] not in (0xEB, 0xE9):
        return False
    bps, spc = struct.unpack_from("<HB", head, 11)
    return bps in (512, 1024, 2048, 4096) and spc in (1, 2, 4, 8, 16, 32, 64, 128)


def _fat_name(entry: Any) -> str:
    """Long name, else the 8.3 name with the NT lower-case flags applied."""
    from pyfatfs._exceptions import NotAnLFNEntryException
    try:
        return entry.get_long_name()
    except NotAnLFNEntryException:
        pass
    raw = bytes(entry.name.name)
    base = raw[:8].decode("ibm437").rstrip()
    ext = raw[8:].decode("ibm437").rstrip()
    if entry.ntres & 0x08:
        base = base.lower()
    if entry.ntres & 0x10:
        ext = ext.lower()
    return f"{base}.{ext}" if ext else base


def _check_fat_geometry(path: Path) -> int:
    """The boot sector's FAT size and counts, checked against the image before pyfatfs
    allocates its FAT table from them. Returns the image's size."""
    with open(path, "rb") as fh:
        size = fh.seek(0, io.SEEK_END)
        fh.seek(0)
        boot = fh.read(512)
    bps, _spc, reserved, fats, root_entries = struct.unpack_from("<HBHBH", boot, 11)
    fat_sectors = struct.unpack_from("<H", boot, 22)[0] or struct.unpack_from("<I", boot, 36)[0]
    if not fats or not fat_sectors:
        raise _Malformed("the boot sector gives no FAT")
    needed = (reserved + fats * fat_sectors) * bps + root_entries * 32
    if needed > size:
        raise _Malformed(f"the boot sector's FATs and root directory ({needed} bytes) do not fit "
                         f"in the image ({size} bytes)")
    return size


def _read_fat(path: Path) -> Drive:
    from pyfatfs.PyFat import PyFat
    budget = _Budget(_check_fat_geometry(path))
    pf = PyFat()
    pf.get_cluster_chain = _claiming(pf.get_cluster_chain)  # loops and cross-links are refused
    files: dict[str, bytes] = {}
    problems: list[str] = []
    with warnings.catch_warnings():  # pyfatfs warns of broken long names, also while we walk
        warnings.simplefilter("ignore")
        try:
            pf.open(str(path), read_only=True)
            boot_label = bytes(pf.bpb_header["BS_VolLab"]).decode("ascii", "replace").rstrip()
            root_label = None
            stack = [("", pf.root_dir, 0)]
            # FAT12/16 roots live outside the data area: their "cluster" is no cluster at all
            seen_dirs = {pf.root_dir.get_cluster()} if pf.fat_type == pf.FAT_TYPE_FAT32 else set()
            while stack:
                prefix, directory, depth = stack.pop()
                for entry in directory._get_entries_raw():
                    if entry.is_volume_id():
                        if not prefix:
                            root_label = bytes(entry.name.name).decode("ascii", "replace").rstrip()
                        continue
                    if entry.is_special():
                        continue
                    rel = f"{prefix}{_fat_name(entry)}"
                    budget.entry(rel, depth)
                    if entry.is_directory():
                        if entry.get_cluster() in seen_dirs:  # a directory inside itself
                            raise _Malformed(f"directory {rel} loops back to cluster "
                                             f"{entry.get_cluster()}")
                        seen_dirs.add(entry.get_cluster())
                        stack.append((rel + "/", entry, depth + 1))
                    else:
                        if rel in files:
                            raise _Malformed(f"{rel}: two entries of that name")
                        files[rel] = _read_chain(pf, entry)
                        budget.take(len(files[rel]), rel)
        finally:
            if pf.initialized:
                pf.close()
    label = root_label if root_label is not None else boot_label
    if root_label is not None and root_label != boot_label:
        problems.append(f"boot sector label {boot_label!r} differs from the root directory "
                        f"label {root_label!r} (fsck.vfat reports this)")
    return Drive(path, "vfat", label, files, [f"FAT{pf.fat_type}"], problems)


def _claiming(follow: Any) -> Any:
    """pyfatfs's cluster-chain walk, where every cluster may belong to one chain once:
    a chain that comes back on itself or runs into another file's (cross-linked clusters,
    which would multiply what we read) is refused."""
    claimed: set[int] = set()

    def chain(first_cluster: int) -> Any:
        for cluster in follow(first_cluster):
            if cluster in claimed:
                raise _Malformed(f"cluster {cluster} is reached twice (from the chain at "
                                 f"{first_cluster}): a looped or cross-linked FAT")
            claimed.add(cluster)
            yield cluster
    return chain


def _read_chain(pf: Any, entry: Any) -> bytes:
    size = entry.filesize
    if size == 0:
        return b""
    chunks = []
    for cluster in pf.get_cluster_chain(entry.get_cluster()):
        chunks.append(pf.read_cluster_contents(cluster))
        if len(chunks) * pf.bytes_per_cluster >= size:
            break
    return b"".join(chunks)[:size]


# ---------------------------------------------------------------- validation

def _json(files: dict[str, bytes], name: str, problems: list[str]) -> Any:
    try:
        doc = json.loads(files[name])
    except (ValueError, UnicodeDecodeError) as err:
        problems.append(f"{name}: invalid JSON: {err}")
        return None
    except RecursionError:
        problems.append(f"{name}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
        return None
    if _depth(doc) > MAX_JSON_DEPTH:  # the schema checks after us recurse as deep as the data
        problems.append(f"{name}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
        return None
    return doc


def _depth(doc: Any) -> int:
    """Nesting depth of a parsed JSON document, without recursion."""
    deepest = 0
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _network_problems(parsed: dict[str, Any]) -> list[str]:
    """Every network_data.json checked as the spec checker does: schema with formats, then links and netmasks."""
    docs = [n for n in parsed if n.endswith("/" + openstack.NETWORK_DATA) and parsed[n] is not None]
    if not docs:
        return []
    # Imported here: network_schema imports jsonschema, which a drive without network_data never needs.
    from metadata_content.spec.network_schema import validate_network_data

    return [f"{name}: {where or '<top>'}: {reason}"
            for name in docs for where, reason in validate_network_data(parsed[name])]


# What cloud-init reads from the one openstack/<version>/ directory it picks.
READ_FILES = (openstack.META_DATA, openstack.USER_DATA, openstack.VENDOR_DATA, openstack.VENDOR_DATA2,
              openstack.NETWORK_DATA)
# The newest version Debian 12's cloud-init (22.4) knows; it picks the newest
# dated directory up to it, else latest. Later releases may know later versions.
CLOUD_INIT_KNOWS = "2018-08-27"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _picked(dated: list[str]) -> list[str]:
    """Every dated directory some cloud-init (22.4 or later) would read everything from."""
    known = [d for d in dated if d <= CLOUD_INIT_KNOWS]
    return known[-1:] + [d for d in dated if d > CLOUD_INIT_KNOWS]


def _losses(files: dict[str, bytes], dated: list[str]) -> list[str]:
    """Files a reader would lose: present in a newer directory (or latest), absent from a
    dated directory cloud-init picks. Nothing else is required of a dated directory (other
    builders write none, or leave out files nobody wrote anywhere)."""
    order = [*dated, v.LATEST]
    problems = []
    for picked in _picked(dated):
        newer = order[order.index(picked) + 1:]
        for name in READ_FILES:
            have = [d for d in newer if f"openstack/{d}/{name}" in files]
            if have and f"openstack/{picked}/{name}" not in files:
                problems.append(f"openstack/{picked}/ has no {name}, which openstack/{have[-1]}/ has: "
                                f"cloud-init reads {picked} (the newest dated version it knows) and "
                                f"would lose it")
    return problems


def validate(drive: Drive) -> Report:
    files = drive.files
    problems = list(drive.problems)
    warns: list[str] = []
    if drive.label != LABEL:
        problems.append(f"label is {drive.label!r}, not {LABEL!r} (guests find the drive "
                        "by this label; cirros matches it case-sensitively)")
    parsed = {name: _json(files, name, problems) for name in files if name.endswith(".json")}
    os_dirs = sorted({n.split("/")[1] for n in files if n.startswith("openstack/")
                      and n.count("/") == 2 and n.split("/")[1] != openstack.CONTENT_DIR})
    ec2_dirs = sorted({n.split("/")[1] for n in files if n.startswith("ec2/") and n.count("/") >= 2})
    dated = [name for name in os_dirs if _DATE.match(name)]
    latest = f"openstack/{v.LATEST}/{openstack.META_DATA}"
    if latest not in files:
        problems.append(f"{latest} is missing (cloud-init requires it)")
    uuid = hostname = None
    meta = parsed.get(latest)
    if isinstance(meta, dict):
        uuid, hostname = meta.get("uuid"), meta.get("hostname")
        if not uuid:
            problems.append(f"{latest} has no uuid (cloud-init requires it)")
        injected = meta.get("files") or []
        if not isinstance(injected, list) or not all(isinstance(i, dict) for i in injected):
            problems.append(f"{latest}: files is not a list of objects")
            injected = []
        for item in injected:
            content = "openstack" + str(item.get("content_path", ""))
            if content not in files:
                problems.append(f"{latest} refers to {content}, which is missing")
    elif meta is not None:
        problems.append(f"{latest} is not a JSON object")
    problems += _losses(files, dated)
    for version in dated:
        other = parsed.get(f"openstack/{version}/{openstack.META_DATA}")
        if isinstance(other, dict) and uuid and other.get("uuid") != uuid:
            problems.append(f"openstack/{version}/meta_data.json has uuid {other.get('uuid')!r}, not {uuid!r}")
    if ec2_dirs and "ec2/latest/meta-data.json" not in files:
        warns.append("ec2/latest/meta-data.json is missing")
    problems += _network_problems(parsed)
    return Report(drive, os_dirs, ec2_dirs, uuid, hostname, problems, warns)


def extract(drive: Drive, dest: Path) -> None:
    """Copy the drive's files under dest; names that would escape dest are refused."""
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    for rel, data in drive.files.items():
        target = (root / rel).resolve()
        if root not in target.parents:
            raise ValueError(f"refusing to write {rel!r} outside {dest}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
