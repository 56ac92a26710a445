"""Opening libvirt and finding a domain, with messages that say what to do.

libvirt's own errors name a socket path and an errno; an operator wants to
know that the daemon is not running, or that they lack the rights.
"""
from __future__ import annotations

import os
import uuid as uuidlib
from typing import TYPE_CHECKING, Any

from hypervisor import NEEDS_LIBVIRT_PYTHON, ConnectError, DomainNotFound

if TYPE_CHECKING:  # pragma: no cover
    import libvirt

DEFAULT_URI = "qemu:///system"


def resolve_uri(connect: str | None) -> str:
    """--connect, then LIBVIRT_DEFAULT_URI, then qemu:///system."""
    return connect or os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI


def _libvirt() -> Any:
    try:
        import libvirt
    except ImportError as err:
        raise ConnectError(f"libvirt-python is not installed; this command {NEEDS_LIBVIRT_PYTHON}") from err
    # libvirt prints every error to stderr by default; ours are reported once, clearly.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def open_connection(connect: str | None = None) -> libvirt.virConnect:
    """A read-write connection, or ConnectError explaining why there is none."""
    lv = _libvirt()
    uri = resolve_uri(connect)
    try:
        conn = lv.open(uri)
    except lv.libvirtError as err:
        raise ConnectError(explain_connect_error(uri, err.get_error_message() or str(err))) from None
    if conn is None:  # pragma: no cover - old bindings returned None
        raise ConnectError(f"cannot connect to libvirt at {uri}")
    return conn


def explain_connect_error(uri: str, message: str) -> str:
    """A connection failure in operator terms."""
    low = message.lower()
    if "no such file or directory" in low or "connection refused" in low:
        return (f"cannot connect to libvirt at {uri}: no daemon is listening ({message}). "
                f"Start libvirtd (e.g. 'libvirtd -d', or 'systemctl start libvirtd') "
                f"or give the right URI with --connect / LIBVIRT_DEFAULT_URI")
    if "permission denied" in low or "authentication" in low or "access denied" in low \
            or "polkit" in low:
        return (f"permission denied connecting to libvirt at {uri} ({message}): run as root "
                f"or as a member of the 'libvirt' group")
    return f"cannot connect to libvirt at {uri}: {message}"


def lookup_domain(conn: libvirt.virConnect, ref: str) -> libvirt.virDomain:
    """A domain by UUID or by name; DomainNotFound lists neither guessing nor partial matches."""
    lv = _libvirt()
    try:
        uuid = str(uuidlib.UUID(ref))
    except ValueError:
        uuid = None
    try:
        if uuid is not None:
            try:
                return conn.lookupByUUIDString(uuid)
            except lv.libvirtError as err:
                if err.get_error_code() != lv.VIR_ERR_NO_DOMAIN:
                    raise
        return conn.lookupByName(ref)
    except lv.libvirtError as err:
        if err.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
            raise DomainNotFound(f"no domain named {ref!r} or with that UUID on "
                                 f"{conn.getURI()} ('virsh -c {conn.getURI()} list --all' "
                                 f"shows the defined ones); nothing was changed") from None
        raise ConnectError(f"cannot look up domain {ref!r}: {err.get_error_message()}") from None
