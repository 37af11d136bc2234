"""Fast IPv4 prefixes for the data path.

`ipaddress.IPv4Network` is the project's prefix type, but profiles of 100k-route bulk loads showed it
costing more than the rest of the receive path: parsing text (~3 µs), and `__hash__`, which rebuilds two
integers through a cached property on every dict or set lookup (bgpd does about six per route); and at
560 bytes once hashed it was most of bgpd's memory per route.

`Prefix` is an `IPv4Network` (equal to, and hashing like, a plain one, so both mix in the same dicts)
built from two ints. `parse` and `from_int` build one without the general-purpose parser, and `bits` /
`network_int` give the integers the policy checks and the netlink encoder use.

`Address` does the same for `IPv4Address` (whose hash formats a hex string on every lookup): peers, next
hops and router ids are dict and set keys on the reflector's fan-out path, once per route per client.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from typing import Any

_MASK_INTS = [(0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33)]
_MASKS = [IPv4Address(m) for m in _MASK_INTS]


class Prefix(IPv4Network):
    """An IPv4Network that is lean and hashes fast: the network address is kept as an int and made an
    IPv4Address only when asked for; the hash (IPv4Network's value) and equality come from the ints; and
    `hosts` is a method rather than a closure stored in every /31 and /32. bgpd holds one per route: this
    layout takes 168 bytes against 560 for an IPv4Network that has been hashed."""

    _net: int
    _prefixlen: int

    @property
    def network_address(self) -> IPv4Address:
        return IPv4Address(self._net)

    @network_address.setter
    def network_address(self, value: IPv4Address) -> None:
        self._net = int(value)

    def __hash__(self) -> int:
        # IPv4Network's value, from ints (no address objects): storing it would cost 32 bytes per route
        return hash(self._net ^ _MASK_INTS[self._prefixlen])

    def hosts(self) -> Iterator[IPv4Address]:
        if self._prefixlen == 32:
            return iter([IPv4Address(self._net)])
        if self._prefixlen == 31:
            return self.__iter__()
        return super().hosts()

    def __str__(self) -> str:
        a = self._net
        return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/{self._prefixlen}"

    def __reduce__(self) -> tuple[Any, ...]:
        return from_int, (self._net, self._prefixlen)

    # IPv4Network compares network_address and netmask objects; between two Prefixes the ints say the same
    def __eq__(self, other: object) -> bool:
        if type(other) is Prefix:
            return self._net == other._net and self._prefixlen == other._prefixlen
        return IPv4Network.__eq__(self, other)

    def __lt__(self, other: IPv4Network) -> bool:
        if type(other) is Prefix:
            return (self._net, self._prefixlen) < (other._net, other._prefixlen)
        return IPv4Network.__lt__(self, other)


class Address(IPv4Address):
    """An IPv4Address with a cached hash (the same value IPv4Address.__hash__ computes)."""

    __slots__ = ("_hash",)

    def __init__(self, address: object) -> None:
        super().__init__(address)
        self._hash = IPv4Address.__hash__(self)

    def __hash__(self) -> int:
        return self._hash


def from_int(address: int, length: int) -> Prefix:
    """The prefix `address/length`; ValueError if the length is out of range or host bits are set."""
    if not 0 <= length <= 32 or not 0 <= address <= 0xFFFFFFFF:
        raise ValueError(f"invalid prefix {address}/{length}")
    if address & ~_MASK_INTS[length] & 0xFFFFFFFF:
        raise ValueError(f"{IPv4Address(address)}/{length} has host bits set")
    net: Any = object.__new__(Prefix)
    # what IPv4Network.__init__ sets (CPython 3.11-3.13 ipaddress; tests/unit/test_prefix.py), with the
    # network address as an int
    net._net = address
    net.netmask = _MASKS[length]
    net._prefixlen = length
    result: Prefix = net
    return result


_OCTET = "(0|[1-9][0-9]{0,2})"
_PREFIX_TEXT = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/([0-9]{{1,2}}))?")


def parse(text: str) -> Prefix:
    """Parse "a.b.c.d/len" (or "a.b.c.d" for a /32) strictly, as IPv4Network(text) does."""
    match = _PREFIX_TEXT.fullmatch(text)
    if match is not None:
        a, b, c, d, length = match.groups()
        a, b, c, d = int(a), int(b), int(c), int(d)
        if a <= 255 and b <= 255 and c <= 255 and d <= 255:
            return from_int((a << 24) | (b << 16) | (c << 8) | d, 32 if length is None else int(length))
    general = IPv4Network(text)  # anything unusual: the standard parser, with its errors
    return from_int(int(general.network_address), general.prefixlen)


def bits(prefix: IPv4Network) -> tuple[int, int]:
    """(network address as int, prefix length)."""
    return network_int(prefix), prefix.prefixlen


def network_int(prefix: IPv4Network) -> int:
    """The network address as an int."""
    return prefix._net if type(prefix) is Prefix else int(prefix.network_address)


def mask(length: int) -> int:
    return _MASK_INTS[length]


def covers(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    """Is prefix `inner` (network, length) inside prefix `outer` (or equal to it)?"""
    return inner[1] >= outer[1] and (inner[0] & _MASK_INTS[outer[1]]) == outer[0]
