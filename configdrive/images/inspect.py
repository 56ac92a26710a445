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
import posixpath
import re
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metadata_content.render import openstack
from metadata_content.render import versions as v

LABEL = "config-2"


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
        return _read_iso(path)
    if _looks_fat(head):
        return _read_fat(path)
    raise NotADrive(f"{path}: not a config drive image (neither ISO 9660 nor FAT)")


# ---------------------------------------------------------------- ISO 9660

def _read_iso(path: Path) -> Drive:
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(path))
    except (PyCdlibException, OSError, struct.error, ValueError) as err:
        raise NotADrive(f"{path}: unreadable ISO 9660 image: {err}") from None
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
        for root, _dirs, leaves in iso.walk(**{key: "/"}):
            for name in leaves:
                full = posixpath.join(root, name)
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, **{key: full})
                rel = full.lstrip("/")
                if key == "iso_path":
                    rel = rel.split(";")[0].rstrip(".").lower()
                files[rel] = out.getvalue()
    except (PyCdlibException, struct.error, ValueError) as err:
        raise NotADrive(f"{path}: unreadable ISO 9660 image: {err}") from None
    finally:
        iso.close()
    return Drive(path, "iso9660", label, files, notes)


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


def _read_fat(path: Path) -> Drive:
    from pyfatfs._exceptions import PyFATException
    from pyfatfs.PyFat import PyFat
    pf = PyFat()
    pf.get_cluster_chain = _acyclic(pf.get_cluster_chain)  # a looped FAT would never end
    files: dict[str, bytes] = {}
    problems: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pf.open(str(path), read_only=True)
        boot_label = bytes(pf.bpb_header["BS_VolLab"]).decode("ascii", "replace").rstrip()
        root_label = None
        stack = [("", pf.root_dir)]
        seen_dirs = {pf.root_dir.get_cluster()}
        while stack:
            prefix, directory = stack.pop()
            for entry in directory._get_entries_raw():
                if entry.is_volume_id():
                    if not prefix:
                        root_label = bytes(entry.name.name).decode("ascii", "replace").rstrip()
                    continue
                if entry.is_special():
                    continue
                rel = f"{prefix}{_fat_name(entry)}"
                if entry.is_directory():
                    if entry.get_cluster() in seen_dirs:  # a directory inside itself
                        raise ValueError(f"directory {rel} loops back to cluster "
                                         f"{entry.get_cluster()}")
                    seen_dirs.add(entry.get_cluster())
                    stack.append((rel + "/", entry))
                else:
                    files[rel] = _read_chain(pf, entry)
    except (PyFATException, OSError, struct.error, ValueError, IndexError) as err:
        raise NotADrive(f"{path}: unreadable FAT image: {err}") from None
    finally:
        if pf.initialized:
            pf.close()
    label = root_label if root_label is not None else boot_label
    if root_label is not None and root_label != boot_label:
        problems.append(f"boot sector label {boot_label!r} differs from the root directory "
                        f"label {root_label!r} (fsck.vfat reports this)")
    return Drive(path, "vfat", label, files, [f"FAT{pf.fat_type}"], problems)


def _acyclic(follow):
    """pyfatfs's cluster-chain walk, refusing a chain that comes back on itself."""
    def chain(first_cluster):
        seen = set()
        for cluster in follow(first_cluster):
            if cluster in seen:
                raise ValueError(f"cluster chain from {first_cluster} loops at cluster {cluster}")
            seen.add(cluster)
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
        return json.loads(files[name])
    except (ValueError, UnicodeDecodeError) as err:
        problems.append(f"{name}: invalid JSON: {err}")
        return None


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
