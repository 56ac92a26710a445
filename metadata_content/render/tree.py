"""MetadataTree: one instance's metadata as paths -> bytes.

The single interface both deliveries use:

* :meth:`MetadataTree.lookup` answers a request path with a status, a content
  type and a body: the HTTP services are thin adapters over it;
* :meth:`MetadataTree.drive_files` lists every file of a config drive with its
  bytes: the ISO and VFAT writers only pack them.

Path semantics follow Nova (``posixpath.normpath``, trailing slash ignored,
a first segment other than ``ec2``/``openstack`` means ``ec2/``), with fixes:
repeated slashes collapse (Nova turns ``//x`` into the version list), a path
into a leaf is a 404 (Nova: 500), and methods other than GET/HEAD get 405
(Nova answers them like GET), except POST on ``password``.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from functools import cached_property
from typing import Any, Literal, NamedTuple

from metadata_content.model import Instance
from metadata_content.render import ec2, openstack
from metadata_content.render import versions as v
from metadata_content.render.network import network_data

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
OCTETS = "application/octet-stream"
READ_METHODS = frozenset({"GET", "HEAD"})
Delivery = Literal["http", "drive"]


class Answer(NamedTuple):
    """What a path resolves to. ``password`` marks ``openstack/<v>/password``:
    the service owns that state (GET gives the stored value, POST sets it).

    A named tuple, not a dataclass: one is made per request, and importing
    dataclasses costs about as much as rendering a whole drive.
    """

    status: int
    body: bytes = b""
    content_type: str = TEXT
    password: bool = False
    allow: str = ""  # for a 405: the methods the path does take (RFC 9110's Allow header)
    requester: bool = False  # the body is the asking guest's address, which the service fills in

    @property
    def ok(self) -> bool:
        return self.status == 200


NOT_FOUND = Answer(404, b"Not Found")
NOT_ALLOWED = Answer(405, b"Method Not Allowed", allow="GET, HEAD")
PASSWORD_NOT_ALLOWED = NOT_ALLOWED._replace(allow="GET, HEAD, POST")
TOKEN_NOT_ALLOWED = NOT_ALLOWED._replace(allow="PUT")


def dumps(doc: Any) -> bytes:
    """Nova's JSON: ``json.dumps`` defaults (ASCII, ", " and ": "), no newline."""
    return json.dumps(doc).encode("ascii")


def normalise(path: str) -> list[str]:
    """Request path -> segments, the first being ``ec2`` or ``openstack``."""
    path = re.sub("/+", "/", "/" + path.split("?", 1)[0])
    parts = [p for p in posixpath.normpath(path).split("/") if p]
    if not parts or parts[0] not in ("ec2", "openstack"):
        parts.insert(0, "ec2")
    return parts


def ec2_versions_listing() -> bytes:
    return "\n".join((*v.EC2_VERSIONS, v.LATEST)).encode()


def lookup_without_instance(path: str, method: str = "GET") -> Answer | None:
    """Answer paths that do not depend on who asks (``/``, ``/ec2``), else None.

    Services call this before identifying the instance, as Nova does for ``/``.
    """
    if normalise(path) == ["ec2"]:
        return Answer(200, ec2_versions_listing()) if method in READ_METHODS else NOT_ALLOWED
    return None


class MetadataTree:
    """Renders one :class:`Instance` for one delivery.

    *password* is the value stored for the instance (HTTP only); *vendor_data2*
    holds the answers of dynamic vendor-data targets, or a callable that asks
    them, called only when vendor_data2.json is rendered (targets are slow);
    *random_seed* overrides the spec's pin or a fresh ``os.urandom(512)``,
    drawn once per tree; *today* hides future OpenStack versions in listings.
    """

    def __init__(self, instance: Instance, *, delivery: Delivery = "http",
                 password: str | None = None,
                 vendor_data2: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
                 random_seed: bytes | None = None, today: date | None = None):
        self.instance = instance
        self.delivery = delivery
        self.password = password
        self.dynamic_vendor_data = vendor_data2
        self.random_seed = random_seed or instance.random_seed or os.urandom(512)
        self.today = today or datetime.now(UTC).date()
        self._meta_data: dict[str, bytes] = {}
        self._members: dict[str, tuple[Any, bytes]] = {}  # meta_data key -> (value, its JSON member)

    # -- documents -----------------------------------------------------------

    def meta_data_json(self, version: str) -> bytes:
        """``dumps(openstack.meta_data(...))``, encoding each member once per tree.

        The versions' documents share most members (keys, random_seed...), so
        a member equal to the one last encoded under its key reuses those
        bytes: a drive holds ten versions, and encoding was half of rendering.
        Equal values under one key come from one model field, so they have
        the same types and key order and encode alike.
        """
        if version not in self._meta_data:
            doc = openstack.meta_data(self.instance, version, on_drive=self.delivery == "drive",
                                      random_seed=self.random_seed)
            members = []
            for key, value in doc.items():
                known = self._members.get(key)
                if known is None or known[0] != value:
                    known = self._members[key] = (value, dumps({key: value})[1:-1])
                members.append(known[1])
            self._meta_data[version] = b"{" + b", ".join(members) + b"}"
        return self._meta_data[version]

    @cached_property
    def network_data_json(self) -> bytes:
        return dumps(network_data(self.instance))

    @cached_property
    def vendor_data_json(self) -> bytes:
        return dumps(self.instance.vendor_data)

    @cached_property
    def vendor_data2_json(self) -> bytes:
        dynamic = self.dynamic_vendor_data
        if callable(dynamic):
            dynamic = dynamic()
        return dumps(openstack.vendor_data2(self.instance.vendor_data, dynamic))

    # -- lookup --------------------------------------------------------------

    def lookup(self, path: str, method: str = "GET") -> Answer:
        """Resolve a request *path* for *method* (the body of HEAD is the caller's to drop)."""
        parts = normalise(path)
        answer = self._openstack(parts[1:]) if parts[0] == "openstack" else self._ec2(parts[1:])
        if not answer.ok:
            return answer
        if method in READ_METHODS or (method == "POST" and answer.password):
            return answer
        return PASSWORD_NOT_ALLOWED if answer.password else NOT_ALLOWED

    def _openstack(self, parts: list[str]) -> Answer:
        if not parts:
            shown = [ver for ver in v.OPENSTACK_VERSIONS if ver <= self.today.isoformat()]
            return Answer(200, "\n".join((*shown, v.LATEST)).encode())
        if parts[0] == openstack.CONTENT_DIR:
            return self._content(parts[1:])
        version = v.resolve(parts[0], v.OPENSTACK_VERSIONS)
        if version is None:
            return NOT_FOUND
        listing = openstack.version_listing(self.instance, version)
        if len(parts) == 1:
            return Answer(200, "\n".join(listing).encode())
        # Nova serves network_data.json under every version (listed from 2015-10-15 only);
        # the drive keeps Nova's layout, which writes it from that version on
        unlisted = parts[1] == openstack.NETWORK_DATA and self.delivery == "http"
        if len(parts) > 2 or (parts[1] not in listing and not unlisted):
            return NOT_FOUND
        return self._openstack_file(version, parts[1])

    def _openstack_file(self, version: str, name: str) -> Answer:
        if name == openstack.META_DATA:
            return Answer(200, self.meta_data_json(version), JSON)
        if name == openstack.USER_DATA:
            return Answer(200, self.instance.user_data or b"", OCTETS)
        if name == openstack.PASSWORD:
            if self.delivery == "drive":
                return NOT_FOUND
            return Answer(200, (self.password or "").encode(), TEXT, password=True)
        if name == openstack.NETWORK_DATA:
            return Answer(200, self.network_data_json, JSON)
        if name == openstack.VENDOR_DATA:
            return Answer(200, self.vendor_data_json, JSON)
        return Answer(200, self.vendor_data2_json, JSON)

    def _content(self, parts: list[str]) -> Answer:
        """Injected files: on the drive only, as in Nova; never listed."""
        if self.delivery != "drive" or len(parts) != 1:
            return NOT_FOUND
        names = {openstack.content_name(i): f for i, f in enumerate(self.instance.files)}
        found = names.get(parts[0])
        return Answer(200, found.content, OCTETS) if found else NOT_FOUND

    def _ec2(self, parts: list[str]) -> Answer:
        if not parts:
            return Answer(200, ec2_versions_listing())
        version = v.resolve(parts[0], v.EC2_VERSIONS)
        if version is None:
            return NOT_FOUND
        node = ec2.find(ec2.version_root(self.instance, version, http=self.delivery == "http"), parts[1:])
        if node is None:
            return NOT_FOUND
        if node is ec2.REQUESTER:
            return Answer(200, b"", TEXT, requester=True)
        if parts[1:] == ["user-data"]:  # raw bytes, typed as the OpenStack user_data is
            return Answer(200, ec2.render(node), OCTETS)
        return Answer(200, ec2.render(node))

    # -- the drive -----------------------------------------------------------

    def drive_files(self) -> dict[str, bytes]:
        """Every file of the config drive, path (relative, POSIX) -> bytes, in a stable order."""
        if self.delivery != "drive":
            raise ValueError("drive_files() needs a tree built with delivery='drive'")
        files: dict[str, bytes] = {}
        ec2_files: dict[str, dict[str, bytes]] = {}  # dated version -> its files ("latest" is one)
        for version in v.EC2_DRIVE_VERSIONS:
            dated = v.resolve(version, v.EC2_VERSIONS)
            assert dated is not None
            if dated not in ec2_files:
                root = ec2.version_root(self.instance, dated)
                ec2_files[dated] = {"meta-data.json": dumps(ec2.as_json_dict(root["meta-data"]))}
                if "user-data" in root:
                    ec2_files[dated]["user-data"] = root["user-data"]
            for name, body in ec2_files[dated].items():
                files[f"ec2/{version}/{name}"] = body
        for version in (*v.OPENSTACK_VERSIONS, v.LATEST):
            dated = v.resolve(version, v.OPENSTACK_VERSIONS)
            assert dated is not None
            for name in openstack.version_listing(self.instance, dated):
                answer = self._openstack_file(dated, name)
                if answer.ok and not answer.password:
                    files[f"openstack/{version}/{name}"] = answer.body
        for i, injected in enumerate(self.instance.files):
            files[f"openstack/{openstack.CONTENT_DIR}/{openstack.content_name(i)}"] = injected.content
        return files
