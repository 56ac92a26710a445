"""Who is asking: the one place the API decides which instance a request is for.

* proxy mode (the Neutron path): the agent vouches with X-Instance-ID,
  X-Tenant-ID and X-Instance-ID-Signature = HMAC-SHA256(secret, instance id);
* direct mode: the client address, taken from X-Forwarded-For only when the
  peer is a configured trusted proxy (OSSN-0074);
* IMDSv2 tokens: stateless HMAC tokens bound to one instance, so any worker
  (or host sharing the store) can check a token another one issued.

Functions take the WSGI environ so the cached fast path and the Flask view
share them byte for byte.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from metadata_content.server.runtime import Refusal

TOKEN_PATH = "/latest/api/token"
TOKEN_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN"
TOKEN_TTL_HEADER = "HTTP_X_AWS_EC2_METADATA_TOKEN_TTL_SECONDS"
TOKEN_TTL_MAX = 21600


def undecodable_header(headers: Any, names: Collection[str]) -> str | None:
    """The first of *names* (lower-case) that arrived with a value granian's RSGI
    headers cannot hand over as text (non-ASCII bytes): ``items()`` leaves such
    a value out while ``keys()`` still names it. Dropping it silently would
    turn a bad token into no token, or shorten the X-Forwarded-For chain that
    IMDSv2's relay check counts, so both the agent and the API refuse it (400).

    ``keys()`` names a header once however many lines carried it, so a name
    whose every value is undecodable is caught; one bad line beside good ones
    of the same name is not visible through RSGI and is left out (the good
    values stand, which the sender could have sent alone)."""
    named = Counter(name for name in headers.keys() if name in names)  # noqa: SIM118 - RSGIHeaders is not iterable
    if not named:
        return None
    given = Counter(name for name, _ in headers.items() if name in names)
    for name, count in named.items():
        if given[name] < count:
            return name
    return None


def sign_instance_id(secret: bytes | str, instance_id: str) -> str:
    """X-Instance-ID-Signature for *instance_id*: hex HMAC-SHA256 (what the agent sends)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, instance_id.encode("utf-8"), hashlib.sha256).hexdigest()


def proxy_headers(secret: bytes | str, instance_id: str, tenant_id: str) -> dict[str, str]:
    """The three headers by which the agent vouches for *instance_id* (proxy_claim checks them)."""
    return {"X-Instance-ID": instance_id, "X-Tenant-ID": tenant_id,
            "X-Instance-ID-Signature": sign_instance_id(secret, instance_id)}


@dataclass(frozen=True)
class Claim:
    """An identity the proxy vouched for (signature already checked)."""

    instance_id: str
    tenant_id: str


def proxy_claim(environ: dict[str, Any], secret: bytes) -> Claim:
    """Check the agent's headers; 400 when one is missing, 403 on a bad signature."""
    instance_id = environ.get("HTTP_X_INSTANCE_ID")
    signature = environ.get("HTTP_X_INSTANCE_ID_SIGNATURE")
    tenant_id = environ.get("HTTP_X_TENANT_ID")
    if instance_id is None:
        raise Refusal(400, "X-Instance-ID header is missing from request.")
    if signature is None:
        raise Refusal(400, "X-Instance-ID-Signature header is missing from request.")
    if tenant_id is None:
        raise Refusal(400, "X-Tenant-ID header is missing from request.")
    # Computed exactly as the agent signs (one function); compared as bytes so
    # that any header content (latin-1 decoded text in WSGI) goes through the
    # constant-time path without a TypeError.
    expected = sign_instance_id(secret, instance_id).encode()
    if not hmac.compare_digest(expected, signature.encode("latin-1")):
        raise Refusal(403, "Invalid proxy request signature.", log=f"claimed={instance_id!r}")
    return Claim(instance_id, tenant_id)


def forwarded_chain(environ: dict[str, Any]) -> list[str]:
    """The X-Forwarded-For addresses, leftmost first (WSGI joins repeated headers with commas)."""
    value = environ.get("HTTP_X_FORWARDED_FOR")
    if not value:
        return []
    return [part.strip() for part in value.split(",") if part.strip()]


def plain_address(text: str) -> str:
    """*text* as a guest would write its own address: an IPv4-mapped IPv6 address as
    IPv4, an interface zone (``%eth0``) dropped; anything unparsable as it came."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(address)


class TrustedProxies:
    """Addresses or networks whose X-Forwarded-For is believed (direct mode)."""

    def __init__(self, entries: list[str]):
        self.networks = [ipaddress.ip_network(e, strict=False) for e in entries]

    def __contains__(self, address: str) -> bool:
        try:
            addr = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)

    def client_address(self, environ: dict[str, Any]) -> str:
        """The guest's address: the peer, or, behind trusted proxies, the rightmost
        X-Forwarded-For entry that is not itself a trusted proxy."""
        peer = environ.get("REMOTE_ADDR") or ""
        if not self.networks or peer not in self:
            return peer
        client = peer
        for hop in reversed(forwarded_chain(environ)):
            client = hop
            if hop not in self:
                break
        return client


def token_put_refused(environ: dict[str, Any], mode: str, trusted: TrustedProxies) -> bool:
    """IMDSv2: a token request that was forwarded by something inside the guest
    (an SSRF relay) is refused. Our own chain adds exactly one X-Forwarded-For
    entry (haproxy's ``option forwardfor``, or a trusted proxy in direct mode);
    more entries, or any entry from an untrusted peer, came from the guest."""
    chain = forwarded_chain(environ)
    if not chain:
        return False
    if mode == "direct" and environ.get("REMOTE_ADDR", "") not in trusted:
        return True
    return len(chain) > 1


class Tokens:
    """IMDSv2 session tokens: ``<expiry>.<nonce>.<hmac>``; the HMAC binds the
    instance, so a token is useless to any other instance and needs no storage."""

    def __init__(self, key: bytes):
        self.key = key

    def _mac(self, instance_id: str, expiry: str, nonce: str) -> str:
        msg = f"{instance_id}|{expiry}|{nonce}".encode("latin-1", "replace")
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()

    def issue(self, instance_id: str, ttl: int) -> str:
        expiry = str(int(time.time()) + ttl)
        nonce = os.urandom(12).hex()
        return f"{expiry}.{nonce}.{self._mac(instance_id, expiry, nonce)}"

    def valid(self, token: str, instance_id: str) -> bool:
        parts = token.split(".")
        if len(parts) != 3 or not (parts[0].isascii() and parts[0].isdigit()) or len(parts[0]) > 12:
            return False
        expiry, nonce, mac = parts
        if int(expiry) < time.time():
            return False
        return hmac.compare_digest(self._mac(instance_id, expiry, nonce).encode(),
                                   mac.encode("latin-1"))


def parse_token_ttl(environ: dict[str, Any]) -> int:
    """The requested token lifetime; 400 when missing or outside 1..21600 seconds."""
    raw = environ.get(TOKEN_TTL_HEADER)
    if raw is None:
        raise Refusal(400, "X-aws-ec2-metadata-token-ttl-seconds header is missing.")
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 6 or not 1 <= int(raw) <= TOKEN_TTL_MAX:
        raise Refusal(400, f"X-aws-ec2-metadata-token-ttl-seconds must be 1 to {TOKEN_TTL_MAX}.")
    return int(raw)
