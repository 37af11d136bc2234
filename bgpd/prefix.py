"""Fast IPv4 prefixes for the data path.

`ipaddress.IPv4Network` is the project's prefix type, but profiles of 100k-route bulk loads showed it
costing more than the rest of the receive path: parsing text (~3 µs), and `__hash__`, which rebuilds two
integers through a cached property on every dict or set lookup (bgpd does about six per route).

`Prefix` is an `IPv4Network` (equal to, and hashing like, a plain one, so both mix in the same dicts)
that computes its hash once. `parse` and `from_int` build one without the general-purpose parser, and
`bits` gives the (network, length) integers the policy checks compare.

`Address` does the same for `IPv4Address` (whose hash formats a hex string on every lookup): peers, next
hops and router ids are dict and set keys on the reflector's fan-out path, once per route per client.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

_MASK_INTS = [(0xFFFFFFFF << (32 - n)) & 0xFFFFFFFF for n in range(33)]
_MASKS = [IPv4Address(m) for m in _MASK_INTS]


class Prefix(IPv4Network):
    """An IPv4Network with a cached hash (the same value IPv4Network.__hash__ computes)."""

    def __hash__(self) -> int:
        cache: dict[str, Any] = self.__dict__
        try:
            return int(cache["_hash"])
        except KeyError:
            value = cache["_hash"] = hash(int(self.network_address) ^ int(self.netmask))
            return value

    __eq__ = IPv4Network.__eq__


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
    # the attributes IPv4Network.__init__ sets (CPython 3.11-3.13 ipaddress; tests/unit/test_prefix.py)
    net.network_address = IPv4Address(address)
    net.netmask = _MASKS[length]
    net._prefixlen = length
    if length == 31:
        net.hosts = net.__iter__
    elif length == 32:
        net.hosts = lambda: [IPv4Address(address)]
    result: Prefix = net
    return result


def parse(text: str) -> Prefix:
    """Parse "a.b.c.d/len" (or "a.b.c.d" for a /32) strictly, as IPv4Network(text) does."""
    address, slash, length_text = text.partition("/")
    octets = address.split(".")
    if (
        len(octets) == 4
        and all(o.isascii() and o.isdigit() and len(o) <= 3 and (o == "0" or o[0] != "0") for o in octets)
        and (not slash or (length_text.isascii() and length_text.isdigit() and len(length_text) <= 2))
    ):
        a, b, c, d = (int(o) for o in octets)
        if a <= 255 and b <= 255 and c <= 255 and d <= 255:
            return from_int((a << 24) | (b << 16) | (c << 8) | d, int(length_text) if slash else 32)
    general = IPv4Network(text)  # anything unusual: the standard parser, with its errors
    return from_int(int(general.network_address), general.prefixlen)


def bits(prefix: IPv4Network) -> tuple[int, int]:
    """(network address as int, prefix length)."""
    return int(prefix.network_address), prefix.prefixlen


def mask(length: int) -> int:
    return _MASK_INTS[length]


def covers(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    """Is prefix `inner` (network, length) inside prefix `outer` (or equal to it)?"""
    return inner[1] >= outer[1] and (inner[0] & _MASK_INTS[outer[1]]) == outer[0]
