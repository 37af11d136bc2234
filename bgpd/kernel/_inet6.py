"""IPv6 route messages of rtnetlink: parsing AF_INET6 RTM_NEWROUTE/DELROUTE bodies and packing AF_INET6
route requests, with `struct`, as `_netlink` does for IPv4 (whose constants, structs and dumps it uses).

Where IPv6 differs from IPv4 on the wire and in the kernel (Linux 6.x, checked by tests/kernel):

* RTA_DST and RTA_GATEWAY are 16 bytes; an ECMP route is RTA_MULTIPATH with 16-byte gateways. The kernel
  keeps it as sibling routes: deleting one next hop (`ip -6 route del P via G`, and `ip -6 route flush`,
  which deletes next hop by next hop) is notified as an RTM_DELROUTE carrying only that next hop while
  the others stay (the watcher accounts for it). Adding, appending, replacing or deleting a whole route
  is notified once, with every next hop.
* A link-local gateway (fe80::/10) means nothing without its device: requests carry RTA_OIF (or the
  rtnh_ifindex of its next hop), without which the kernel refuses them (EINVAL, "Egress device not
  specified"). bgpd spells the device as the address's scope: `IPv6Address("fe80::1%eth0")`, in what it
  parses and in what it is asked to install. Other gateways are reported without scope.
* RTA_VIA (a gateway of another family) is refused for IPv6 routes (EINVAL, "IPv6 does not support
  RTA_VIA attribute"); it is parsed should a kernel report one, never sent.
* Blackhole, unreachable and prohibit routes are reported by the kernel with `dev lo`: like their IPv4
  counterparts they are reported here without a device.
* A metric of 0 is stored by the kernel as 1024 (IP6_RT_PRIO_USER).
* Several IPv6 routes without gateway may share one (prefix, table, metric) on different devices (the
  kernel adds them so when asked without NLM_F_EXCL, e.g. `ip -6 route append`): they share a
  `KernelRoute.key`. Every device has such a route, fe80::/64 (proto kernel, metric 256): routes to
  link-local destinations (fe80::/10) are therefore not reported; they never cross hosts anyway.

`network` and `gateway` are the only places that choose the Python types of IPv6 prefixes and addresses
(`ipaddress`'s today). `KernelRoute` is typed with the IPv4 types until the model has a dual-stack prefix
type, hence the casts there.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from bgpd import prefix as prefixes
from bgpd.kernel import _netlink as nl
from bgpd.model import Address, KernelRoute, Prefix

_REJECT_TYPES = frozenset({6, 7, 8, 9})  # blackhole, unreachable, prohibit, throw: the kernel says `dev lo`
_LINK_LOCAL_TOP10 = 0x3FA  # fe80::/10


def network(value: int, length: int) -> Prefix:
    """The prefix of an IPv6 route (network address as int, prefix length), as bgpd's lean `Prefix6`
    (a re-read of 100k IPv6 routes builds 100k of them)."""
    return prefixes.from_int6(value & prefixes.mask(length, 6), length)


def gateway(value: int, scope: str | None = None) -> Address:
    """An IPv6 gateway (as int); `scope` (the device name) is set on link-local ones only."""
    if scope is not None and value >> 118 == _LINK_LOCAL_TOP10:
        return IPv6Address(f"{IPv6Address(value)}%{scope}")
    return prefixes.Address6(value)


def is_ipv6(prefix: object) -> bool:
    """Is this prefix (of a KernelRoute) an IPv6 one?"""
    return isinstance(prefix, IPv6Network)


def is_link_local(address: IPv6Address) -> bool:
    return int(address) >> 118 == _LINK_LOCAL_TOP10


def parse_route(
    buf: bytes | bytearray | memoryview,
    off: int,
    end: int,
    table: int,
    ifname_of: Callable[[int], str | None],
    skip_protocol: int = -1,
) -> tuple[KernelRoute, tuple[int, ...]] | None:
    """KernelRoute and its output ifindexes from an AF_INET6 RTM_NEWROUTE/DELROUTE body, or None if not
    wanted (another family, RTM_F_CLONED cache entries, routes of `skip_protocol`, another table, or a
    link-local destination: see the module docstring).

    Gateways are sorted (link-local ones scoped with their device's name from `ifname_of`, or its index
    if unknown). When every next hop has a gateway, the ifindexes are aligned with the gateways
    (`oifs[i]` is the device of `gateways[i]`; a device may repeat); otherwise they are the distinct
    output devices, sorted, as `_netlink.parse_route` gives them.
    """
    family, dst_len, _src_len, _tos, rtm_table, protocol, _scope, rtype, rtm_flags = nl.RTMSG.unpack_from(
        buf, off
    )
    if family != socket.AF_INET6 or rtm_flags & nl.RTM_F_CLONED or protocol == skip_protocol:
        return None
    dst = 0
    oif = 0
    via: int | IPv4Address | None = None
    priority = 0
    hops: list[tuple[int | IPv4Address | None, int]] | None = None
    route_table = rtm_table
    pos = off + nl.RTMSG_LEN
    unpack_attr = nl.RTATTR.unpack_from
    u32 = nl.U32.unpack_from
    while pos + 4 <= end:
        alen, atype = unpack_attr(buf, pos)
        if alen < 4:
            break
        atype &= nl.NLA_TYPE_MASK
        if atype == nl.RTA_DST and alen >= 20:
            dst = int.from_bytes(buf[pos + 4 : pos + 20], "big")
        elif atype == nl.RTA_OIF:
            (oif,) = u32(buf, pos + 4)
        elif atype == nl.RTA_GATEWAY and alen >= 20:
            via = int.from_bytes(buf[pos + 4 : pos + 20], "big")
        elif atype == nl.RTA_VIA:
            via = _parse_via(buf, pos + 4, pos + alen)
        elif atype == nl.RTA_PRIORITY:
            (priority,) = u32(buf, pos + 4)
        elif atype == nl.RTA_TABLE:
            (route_table,) = u32(buf, pos + 4)
        elif atype == nl.RTA_MULTIPATH:
            hops = _parse_multipath(buf, pos + 4, pos + alen)
        pos += nl.align4(alen)
    if route_table != table or (dst_len >= 10 and dst >> 118 == _LINK_LOCAL_TOP10):
        return None
    if hops is None:
        hops = [(via, oif)] if via is not None or oif else []
    if rtype in _REJECT_TYPES:
        hops = [(g, 0) for g, _ in hops if g is not None]
    gateways: tuple[Address, ...]
    oifs: tuple[int, ...]
    routed = [(g, i) for g, i in hops if g is not None]
    if routed and len(routed) == len(hops):
        pairs = {(_gateway(g, i, ifname_of), i) for g, i in routed}
        ordered = sorted(pairs, key=_hop_order)
        gateways = tuple(g for g, _ in ordered)
        oifs = tuple(i for _, i in ordered if i)
        if len(oifs) != len(gateways):
            oifs = tuple(sorted(set(oifs)))
    else:
        gateways = tuple(sorted({_gateway(g, i, ifname_of) for g, i in routed}, key=_order))
        oifs = tuple(sorted({i for _, i in hops if i}))
    devices = set(oifs)
    ifname = ifname_of(oifs[0]) if len(devices) == 1 else None
    route = KernelRoute(
        prefix=network(dst, dst_len),
        kind=nl.RTN_NAMES.get(rtype, str(rtype)),
        protocol=protocol,
        table=route_table,
        ifname=ifname,
        gateways=gateways,
        priority=priority,
    )
    return route, oifs


def parse_route_any(
    buf: bytes | bytearray | memoryview,
    off: int,
    end: int,
    table: int,
    ifname_of: Callable[[int], str | None],
    skip_protocol: int = -1,
) -> tuple[KernelRoute, tuple[int, ...]] | None:
    """`parse_route` for an AF_INET6 body, `_netlink.parse_route` for any other (IPv4, or None)."""
    if buf[off] == socket.AF_INET6:
        return parse_route(buf, off, end, table, ifname_of, skip_protocol)
    return nl.parse_route(buf, off, end, table, ifname_of, skip_protocol)


def _gateway(value: int | IPv4Address, oif: int, ifname_of: Callable[[int], str | None]) -> Address:
    if isinstance(value, IPv4Address):
        return value
    if oif and value >> 118 == _LINK_LOCAL_TOP10:
        return gateway(value, ifname_of(oif) or str(oif))
    return gateway(value)


def _order(address: Address) -> tuple[int, int, str]:
    return address.version, int(address), getattr(address, "scope_id", None) or ""


def _hop_order(hop: tuple[Address, int]) -> tuple[int, int, str, int]:
    return (*_order(hop[0]), hop[1])


def _parse_via(buf: bytes | bytearray | memoryview, pos: int, end: int) -> int | IPv4Address | None:
    """The gateway of an RTA_VIA attribute (struct rtvia: u16 family, then the address)."""
    if pos + 2 > end:
        return None
    (family,) = nl.U16.unpack_from(buf, pos)
    if family == socket.AF_INET6 and pos + 18 <= end:
        return int.from_bytes(buf[pos + 2 : pos + 18], "big")
    if family == socket.AF_INET and pos + 6 <= end:
        return IPv4Address(bytes(buf[pos + 2 : pos + 6]))
    return None


def _parse_multipath(
    buf: bytes | bytearray | memoryview, pos: int, end: int
) -> list[tuple[int | IPv4Address | None, int]]:
    """(gateway or None, ifindex) per struct rtnexthop of an AF_INET6 RTA_MULTIPATH attribute."""
    hops: list[tuple[int | IPv4Address | None, int]] = []
    size = nl.RTNEXTHOP.size
    while pos + size <= end:
        nh_len, _flags, _hops, ifindex = nl.RTNEXTHOP.unpack_from(buf, pos)
        if nh_len < size:
            break
        via: int | IPv4Address | None = None
        apos = pos + size
        nh_end = min(pos + nh_len, end)
        while apos + 4 <= nh_end:
            alen, atype = nl.RTATTR.unpack_from(buf, apos)
            if alen < 4:
                break
            atype &= nl.NLA_TYPE_MASK
            if atype == nl.RTA_GATEWAY and alen >= 20:
                via = int.from_bytes(buf[apos + 4 : apos + 20], "big")
            elif atype == nl.RTA_VIA:
                via = _parse_via(buf, apos + 4, apos + alen)
            apos += nl.align4(alen)
        hops.append((via, ifindex))
        pos += nl.align4(nh_len)
    return hops


def pack_route(
    msg_type: int,
    flags: int,
    seq: int,
    *,
    prefix: IPv6Network,
    table: int,
    protocol: int,
    metric: int,
    hops: tuple[tuple[IPv6Address, int], ...] = (),
    rtype: int = nl.RTN_UNICAST,
    scope: int = nl.RT_SCOPE_UNIVERSE,
) -> bytes:
    """One complete RTM_NEWROUTE/RTM_DELROUTE message (header included) for an IPv6 route.

    `hops`: (gateway, output ifindex or 0) per next hop; one is a plain next hop (RTA_GATEWAY, and
    RTA_OIF if the index is not 0), several an ECMP route (RTA_MULTIPATH). A link-local gateway needs its
    device's index."""
    parts = [
        nl.RTMSG.pack(
            socket.AF_INET6,
            prefix.prefixlen,
            0,
            0,
            table if table < 256 else nl.RT_TABLE_UNSPEC,
            protocol,
            scope,
            rtype,
            0,
        ),
        nl.RTATTR.pack(8, nl.RTA_TABLE),
        nl.U32.pack(table),
        nl.RTATTR.pack(8, nl.RTA_PRIORITY),
        nl.U32.pack(metric),
    ]
    if prefix.prefixlen:
        parts += (nl.RTATTR.pack(20, nl.RTA_DST), prefix.network_address.packed)
    if len(hops) == 1:
        address, oif = hops[0]
        parts += (nl.RTATTR.pack(20, nl.RTA_GATEWAY), address.packed)
        if oif:
            parts += (nl.RTATTR.pack(8, nl.RTA_OIF), nl.U32.pack(oif))
    elif hops:
        nh_len = nl.RTNEXTHOP.size + 20
        parts.append(nl.RTATTR.pack(4 + nh_len * len(hops), nl.RTA_MULTIPATH))
        for address, oif in hops:
            parts += (
                nl.RTNEXTHOP.pack(nh_len, 0, 0, oif),
                nl.RTATTR.pack(20, nl.RTA_GATEWAY),
                address.packed,
            )
    body = b"".join(parts)
    return nl.NLMSGHDR.pack(nl.NLMSGHDR_LEN + len(body), msg_type, flags, seq, 0) + body
