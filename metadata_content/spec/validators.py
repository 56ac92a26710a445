"""Checks of single values (UUIDs, host names, MACs, addresses, base64) and
the :class:`Checker` that collects their problems, shared by the spec's
checks and the network checks.

Each check returns the problem's text, or None when the value is fine.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import uuid as uuidlib
from collections.abc import Callable
from typing import Any

from metadata_content.errors import Problem
from metadata_content.spec.addresses import Addresses

# Whole values only, with fullmatch: "$" would also pass a final newline ("web\n").
LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
PCI = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]")
IFNAME = re.compile(r"[^\s/:]{1,15}")


class Checker:
    """Collects problems while walking one spec."""

    def __init__(self, data: dict[str, Any], addresses: Addresses):
        self.data = data
        self.addresses = addresses
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def check(self, path: str, value: Any, test: Callable[[Any], str | None]) -> None:
        """Run *test* on *value* (when present); it returns an error text or None."""
        if value is not None:
            message = test(value)
            if message:
                self.add(path, message)


def uuid_error(value: str) -> str | None:
    try:
        parsed = uuidlib.UUID(value)
    except ValueError:
        return f"{value!r} is not a UUID"
    if str(parsed) != value.lower():
        return f"{value!r} is not in canonical form (use {str(parsed)!r})"
    return None


def hostname_error(value: str) -> str | None:
    if not value:
        return "must not be empty"
    bad = [label for label in value.split(".") if not LABEL.fullmatch(label)]
    if bad:
        return (f"{value!r} is not a valid host name: label {bad[0]!r} must be 1-63 letters, "
                "digits or hyphens, not starting or ending with a hyphen")
    return None


def ec2_id_error(value: str | int, prefix: str) -> str | None:
    if isinstance(value, int):
        return None if 0 <= value <= 0xFFFFFFFF else f"{value} does not fit {prefix}-%08x"
    if not re.fullmatch(rf"{prefix}-[0-9a-f]{{8,17}}", value):
        return f"{value!r} is not an EC2 id like {prefix}-0000000a"
    return None


def mac_error(value: str) -> str | None:
    if not MAC.fullmatch(value):
        return f"{value!r} is not a MAC address like fa:16:3e:12:34:56"
    if int(value[:2], 16) & 1:
        return f"{value!r} is a multicast MAC address"
    return None


def ip_error(value: str, version: int | None, addresses: Addresses) -> str | None:
    try:
        address = addresses.ip(value)
    except ValueError:
        return f"{value!r} is not an IP address"
    if version and address.version != version:
        return f"{value} is IPv{address.version}, expected IPv{version}"
    return None


def cidr_error(value: str, addresses: Addresses) -> str | None:
    try:
        addresses.network(value)
    except ValueError:
        try:  # valid once the host bits are dropped?
            fixed = ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f"{value!r} is not a CIDR like 10.0.0.0/24"
        return f"{value!r} has host bits set (did you mean {str(fixed)!r}?)"
    if "/" not in value:
        return f"{value!r} needs a prefix length, like {value}/24"
    return None


def decode_base64(value: str) -> bytes | None:
    """Strict base64 (whitespace allowed), or None when it is not base64."""
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def nonempty_base64(value: str) -> bytes | None:
    """The decoded bytes, or None when *value* is not base64 or decodes to nothing."""
    return decode_base64(value) or None
