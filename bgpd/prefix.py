"""Lean IPv4 and IPv6 prefixes and addresses for the data path, and the family-safe integer keys.

`ipaddress.IPv4Network` is the project's prefix type, but profiles of 100k-route bulk loads showed it
costing more than the rest of the receive path: parsing text (~3 µs), and `__hash__`, which rebuilds two
integers through a cached property on every dict or set lookup (bgpd does about six per route); and at
560 bytes once hashed it was most of bgpd's memory per route.

`Prefix` is an `IPv4Network` (equal to, and hashing like, a plain one, so both mix in the same dicts)
built from two ints. `parse` and `from_int` build one without the general-purpose parser, and `bits` /
`network_int` give the integers the policy checks and the netlink encoder use.

`Address` does the same for `IPv4Address` (whose hash formats a hex string on every lookup): peers, next
hops and router ids are dict and set keys on the reflector's fan-out path, once per route per client.

IPv6 (dual stack, issue 11) has the same costs, larger: an `IPv6Network` /128 takes ~450 bytes (a closure
for `hosts` in every /127 and /128, an address object around a 128-bit int), parsing takes ~4 µs, and
`IPv6Address` hashes a tuple on every lookup. `Prefix6`, `from_int6`, `parse6` and `Address6` are the
IPv6 twins of the above, with the same guarantees (equal to, hashing and ordering like, printing as the
plain `ipaddress` objects). `parse_any` and `family` take either family.

Keys. The policy checks work on integer keys, `(network, length)` tuples, compared by `covers` and used
as dict keys and sort keys. IPv4 and IPv6 integers overlap (`::10.20.0.0/112` and `10.20.0.0/16` share
the int 0x0A140000), so the IPv6 key is tagged: `bits` gives an IPv4 prefix the key it always had,
`(network, length)` with length 0..32, and an IPv6 prefix `(network | 1 << 128, length - 129)`, length
-129..-1 (`key6` builds one from ints, `host_key` one for an address of either family). A key's family
is the sign of its length (`key_family`) and an IPv6 key's network is above every IPv4 int, so keys of
the two families are never equal, sort IPv4 first, and `covers` (the same two operations as before,
through one table of masks indexed by the key's length) answers False across families without a family
test on the IPv4 path. `network_int` stays the plain network int of either family (netlink needs it),
so it is not a key; `mask` takes the family.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from ipaddress import AddressValueError, IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Literal

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


_ALL_ONES6 = (1 << 128) - 1
_MASK6_INTS = [(_ALL_ONES6 << (128 - n)) & _ALL_ONES6 for n in range(129)]
_HOST6_INTS = [_ALL_ONES6 ^ m for m in _MASK6_INTS]
_MASKS6 = [IPv6Address(m) for m in _MASK6_INTS]


class Prefix6(IPv6Network):
    """An IPv6Network laid out as `Prefix` is: the network address kept as an int (an IPv6Address made
    only when asked for), the hash (IPv6Network's value) and equality with another Prefix6 from the ints,
    `hosts` a method rather than a closure stored in every /127 and /128, nothing cached in the instance
    by use, and `str` formatted from the int: 144 bytes against 448 for an IPv6Network /128. It equals,
    hashes, orders and prints as the plain IPv6Network with the same network and length (so both mix in
    the same dicts and sets), and never has a zone id. Built by `from_int6` and `parse6`."""

    _net: int
    _prefixlen: int

    @property
    def network_address(self) -> IPv6Address:
        return IPv6Address(self._net)

    @network_address.setter
    def network_address(self, value: IPv6Address) -> None:
        self._net = int(value)

    # IPv6Network caches these two in the instance; besides the bytes, that grows the attribute layout
    # every later instance of the class is given (CPython shares one key table per class)
    @property
    def broadcast_address(self) -> IPv6Address:
        return IPv6Address(self._net | _HOST6_INTS[self._prefixlen])

    @property
    def hostmask(self) -> IPv6Address:
        return IPv6Address(_HOST6_INTS[self._prefixlen])

    def __hash__(self) -> int:
        # IPv6Network's value, from ints; not stored (it would cost 40 bytes per route)
        return hash(self._net ^ _MASK6_INTS[self._prefixlen])

    def hosts(self) -> Iterator[IPv6Address]:
        if self._prefixlen == 128:
            return iter([IPv6Address(self._net)])
        if self._prefixlen == 127:
            return self.__iter__()
        return super().hosts()

    def __str__(self) -> str:
        a = self._net
        if a >> 32 == 0xFFFF:  # IPv4-mapped: Python 3.13 prints it dotted, earlier versions in hex
            return f"{IPv6Address(a)}/{self._prefixlen}"
        # RFC 5952, as ipaddress writes it: hextets in lowercase hex without leading zeros, and the
        # leftmost longest run of two or more zero hextets written "::"
        hextets = _HEXTETS.unpack(a.to_bytes(16, "big"))
        text = ":%x:%x:%x:%x:%x:%x:%x:%x:" % hextets  # noqa: UP031 (str.format takes 60% longer)
        if ":0:0:" in text:
            for run in _ZERO_RUNS:
                start = text.find(run)
                if start >= 0:
                    return f"{text[1:start]}::{text[start + len(run) : -1]}/{self._prefixlen}"
        return f"{text[1:-1]}/{self._prefixlen}"

    def __reduce__(self) -> tuple[Any, ...]:
        return from_int6, (self._net, self._prefixlen)

    # IPv6Network compares network_address and netmask objects; between two Prefix6 the ints say the same
    def __eq__(self, other: object) -> bool:
        if type(other) is Prefix6:
            return self._net == other._net and self._prefixlen == other._prefixlen
        return IPv6Network.__eq__(self, other)

    def __lt__(self, other: IPv6Network) -> bool:
        if type(other) is Prefix6:
            return (self._net, self._prefixlen) < (other._net, other._prefixlen)
        return IPv6Network.__lt__(self, other)


_HEXTETS = struct.Struct(">8H")
# ":0:0:...:0:" for runs of 8 down to 2 zero hextets, in the ":"-framed text Prefix6.__str__ builds
_ZERO_RUNS = [":" + "0:" * n for n in range(8, 1, -1)]


class Address6(IPv6Address):
    """An IPv6Address with a cached hash (the same value IPv6Address.__hash__ computes, from the address
    and its zone id, which is kept as IPv6Address keeps it). Built and failing as IPv6Address."""

    __slots__ = ("_hash",)

    def __init__(self, address: object) -> None:
        super().__init__(address)
        self._hash = IPv6Address.__hash__(self)

    def __hash__(self) -> int:
        return self._hash


def from_int6(address: int, length: int) -> Prefix6:
    """The IPv6 prefix `address/length` (address a 128-bit int); ValueError if the length is not 0..128,
    the address is out of range, or host bits are set."""
    if not 0 <= length <= 128 or not 0 <= address <= _ALL_ONES6:
        raise ValueError(f"invalid IPv6 prefix {address}/{length}")
    if address & _HOST6_INTS[length]:
        raise ValueError(f"{IPv6Address(address)}/{length} has host bits set")
    return _new6(address, length)


def _new6(address: int, length: int) -> Prefix6:
    net: Any = object.__new__(Prefix6)
    # what IPv6Network.__init__ sets (CPython 3.11-3.13 ipaddress; tests/unit/test_prefix6.py), with the
    # network address as an int and no `hosts` closure
    net._net = address
    net.netmask = _MASKS6[length]
    net._prefixlen = length
    result: Prefix6 = net
    return result


_PREFIX6_TEXT = re.compile(r"([0-9A-Fa-f:]{2,39})(?:/([0-9]{1,3}))?")


def parse6(text: str) -> Prefix6:
    """Parse an IPv6 prefix ("fd00:10:20::/48"; "fd00::1" for a /128) as strictly as IPv6Network(text):
    any case, zero compression, leading zeros in hextets and length, an embedded IPv4 address. ValueError
    (the standard parser's AddressValueError or NetmaskValueError) for anything IPv6Network rejects,
    host bits set, or a zone id ("fe80::1%eth0", which IPv6Network accepts: a route has none)."""
    match = _PREFIX6_TEXT.fullmatch(text)
    if match is not None:
        address, length_text = match.groups()
        value = _hextets_value(address)
        length = 128 if length_text is None else int(length_text)
        if value is not None and length <= 128 and not value & _HOST6_INTS[length]:
            return _new6(value, length)
    general = IPv6Network(text)  # anything unusual, or wrong: the standard parser, with its errors
    if general.network_address.scope_id is not None:
        raise AddressValueError(f"zone id not permitted in a prefix: {text!r}")
    return _new6(int(general.network_address), general.prefixlen)


def _hextets_value(text: str) -> int | None:
    """The value of `text` (hex digits and colons) if it is an IPv6 address as ipaddress reads it: eight
    hextets of 1 to 4 digits, or fewer around one "::" that stands for at least one; else None."""
    head, compressed, tail = text.partition("::")
    if compressed:
        high = head.split(":") if head else []
        low = tail.split(":") if tail else []
        missing = 8 - len(high) - len(low)
        if missing < 1:
            return None
        parts = high + ["0"] * missing + low
    else:
        parts = text.split(":")
        if len(parts) != 8:
            return None
    digits = _PAD_HEXTETS.format(*parts)  # each part left-padded with zeros to 4 digits (longer stay long)
    if len(digits) != 32 or "" in parts:
        return None
    return int(digits, 16)


_PAD_HEXTETS = "{:0>4}" * 8


def parse_any(text: str) -> Prefix | Prefix6:
    """`parse6(text)` if the text has a colon, else `parse(text)`: a Prefix or a Prefix6, ValueError as
    they raise it."""
    return parse6(text) if ":" in text else parse(text)


def family(obj: IPv4Network | IPv6Network | IPv4Address | IPv6Address) -> Literal[4, 6]:
    """4 or 6: the address family of a prefix or an address (lean or plain)."""
    return 4 if obj.version == 4 else 6


# IPv6 keys: the network int tagged with bit 128, and the length moved to -129..-1 (module docstring)
_V6_TAG = 1 << 128
_V6_LENGTH = 129
# covers' masks by key length: IPv4 lengths 0..32 index the first 33 (the IPv4 masks), IPv6 ones
# -129..-1 the last 129 (the IPv6 masks, with the tag, so only tagged networks can match them)
_KEY_MASKS = _MASK_INTS + [m | _V6_TAG for m in _MASK6_INTS]


def bits(prefix: IPv4Network | IPv6Network) -> tuple[int, int]:
    """The prefix's key: (network address as int, prefix length) for IPv4; for IPv6 the family-tagged
    (network address | 1 << 128, prefix length - 129), see `key6`. Keys of the two families never equal
    each other, IPv4 ones sort first, and within a family they sort as the prefixes do."""
    if type(prefix) is Prefix:
        return prefix._net, prefix._prefixlen
    if type(prefix) is Prefix6:
        return prefix._net | _V6_TAG, prefix._prefixlen - _V6_LENGTH
    plain: Any = prefix  # ipaddress's own attributes: int(network_address) would cost 60 ns more
    if plain._version == 4:
        return plain.network_address._ip, plain._prefixlen
    return plain.network_address._ip | _V6_TAG, plain._prefixlen - _V6_LENGTH


def key6(address: int, length: int) -> tuple[int, int]:
    """The key of the IPv6 prefix (or, with length 128, the address) `address/length` (a 128-bit int),
    as `bits` gives it; ValueError if either is out of range. (An IPv4 key is just `(address, length)`.)"""
    if not 0 <= length <= 128 or not 0 <= address <= _ALL_ONES6:
        raise ValueError(f"invalid IPv6 key {address}/{length}")
    return address | _V6_TAG, length - _V6_LENGTH


def host_key(address: IPv4Address | IPv6Address) -> tuple[int, int]:
    """The key of an address as a host prefix (/32 or /128), to test with `covers(bits(net), ...)`."""
    if address.version == 4:
        return int(address), 32
    return int(address) | _V6_TAG, 128 - _V6_LENGTH


def key_family(key: tuple[int, int]) -> Literal[4, 6]:
    """4 or 6: the family of a key from `bits`, `key6` or `host_key`."""
    return 4 if key[1] >= 0 else 6


def from_key(key: tuple[int, int]) -> Prefix | Prefix6:
    """The prefix a key stands for: `bits(from_key(k)) == k`; ValueError as from_int / from_int6."""
    if key[1] >= 0:
        return from_int(key[0], key[1])
    if key[0] >> 128 != 1:
        raise ValueError(f"not an IPv6 key: {key}")
    return from_int6(key[0] ^ _V6_TAG, key[1] + _V6_LENGTH)


def network_int(prefix: IPv4Network | IPv6Network) -> int:
    """The network address as an int (32-bit for IPv4, 128-bit for IPv6). Not a key: the two families'
    ints overlap, use `bits` to tell them apart."""
    if type(prefix) is Prefix or type(prefix) is Prefix6:
        return prefix._net
    plain: Any = prefix
    value: int = plain.network_address._ip
    return value


def mask(length: int, family: int = 4) -> int:
    """The netmask of a /length as an int: 32 bits for family 4 (length 0..32), 128 for family 6 (0..128);
    IndexError for a length above the range (a negative one is not checked)."""
    return _MASK_INTS[length] if family == 4 else _MASK6_INTS[length]


def covers(outer: tuple[int, int], inner: tuple[int, int]) -> bool:
    """Is the prefix with key `inner` inside the one with key `outer` (or equal to it)? Keys as `bits`,
    `key6` and `host_key` give them (an IPv4 key may also be written `(network, length)`); False if they
    are of different families."""
    return inner[1] >= outer[1] and (inner[0] & _KEY_MASKS[outer[1]]) == outer[0]
