"""The addresses and networks of one spec, each text parsed once.

ipaddress parses in pure Python (5-15 µs a value on these machines), and a
spec names the same address in several checks and again in its model: a
fixed IP is checked for its form, its version, its subnet and its
uniqueness, then built. One :class:`Addresses` serves one spec load, from the
checks to the model, and is never shared between specs.
"""
from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Addresses:
    """``ipaddress.ip_address`` and strict ``ip_network``, remembering each answer.

    Errors are not remembered: they raise ValueError, worded by ipaddress,
    every time (a bad spec is not a hot path).
    """

    __slots__ = ("_ips", "_networks")

    def __init__(self) -> None:
        self._ips: dict[str, IPAddress] = {}
        self._networks: dict[str, IPNetwork] = {}

    def ip(self, text: str) -> IPAddress:
        found = self._ips.get(text)
        if found is None:
            found = self._ips[text] = ipaddress.ip_address(text)
        return found

    def network(self, text: str) -> IPNetwork:
        """A network without host bits (``10.0.0.1/24`` raises ValueError)."""
        found = self._networks.get(text)
        if found is None:
            found = self._networks[text] = ipaddress.ip_network(text, strict=True)
        return found
