"""IPv6 route messages packed and parsed without a kernel (no root needed): `_inet6` against itself and
against hand-built bytes, and the IPv4 requests unchanged by the family parameter."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from hypothesis import given
from hypothesis import strategies as st

from bgpd.kernel import _inet6
from bgpd.kernel import _netlink as nl
from bgpd.model import KernelRoute

NAMES = {2: "up0", 3: "up1"}


def names(index: int) -> str | None:
    return NAMES.get(index)


def parse(message: bytes, table: int = 254) -> tuple[KernelRoute, tuple[int, ...]] | None:
    return _inet6.parse_route(message, nl.NLMSGHDR_LEN, len(message), table, names)


hop_addresses = st.one_of(
    st.integers(0, 2**128 - 1)
    .map(IPv6Address)
    .filter(lambda a: not a.is_link_local),  # global ones: no device needed
    st.integers(0, 2**64 - 1).map(lambda i: IPv6Address((0xFE80 << 112) | i)),  # link-local
)


@given(
    st.integers(0, 128).flatmap(
        lambda length: st.integers(0, 2**128 - 1).map(lambda a: IPv6Network((a, length), strict=False))
    ),
    st.lists(st.tuples(hop_addresses, st.sampled_from([2, 3])), max_size=4, unique=True),
    st.sampled_from([254, 100, 1000]),
    st.integers(0, 2**32 - 1),
)
def test_pack_then_parse_round_trip(
    prefix: IPv6Network, hops: list[tuple[IPv6Address, int]], table: int, metric: int
) -> None:
    message = _inet6.pack_route(
        nl.RTM_NEWROUTE, 0, 1, prefix=prefix, table=table, protocol=12, metric=metric, hops=tuple(hops)
    )
    assert struct.unpack_from("=I", message)[0] == len(message)
    parsed = parse(message, table)
    if prefix.is_link_local and prefix.prefixlen >= 10:
        assert parsed is None  # link-local destinations are not reported
        return
    assert parsed is not None
    route, oifs = parsed
    assert route.prefix == prefix and route.protocol == 12 and route.priority == metric
    expected = sorted(
        {(IPv6Address(f"{a}%{NAMES[i]}") if a.is_link_local else a, i) for a, i in hops},
        key=lambda hop: (int(hop[0]), hop[0].scope_id or "", hop[1]),
    )
    assert list(zip(route.gateways, oifs, strict=True)) == expected
    devices = {i for _, i in hops}
    assert route.ifname == (NAMES[devices.pop()] if len(devices) == 1 else None)


def test_hand_built_multipath_and_via() -> None:
    """A kernel-style notification: RTA_MULTIPATH with one RTA_GATEWAY and one RTA_VIA next hop."""
    dst = IPv6Address("fd00:1::").packed
    nh1 = (
        nl.RTNEXTHOP.pack(8 + 20, 0, 0, 2)
        + nl.RTATTR.pack(20, nl.RTA_GATEWAY)
        + IPv6Address("fd00::2").packed
    )
    via = struct.pack("=H", socket.AF_INET6) + IPv6Address("fe80::3").packed
    nh2 = (
        nl.RTNEXTHOP.pack(8 + 4 + len(via) + 2, 0, 0, 3)
        + nl.RTATTR.pack(4 + len(via), nl.RTA_VIA)
        + via
        + b"\0\0"
    )
    body = (
        nl.RTMSG.pack(socket.AF_INET6, 64, 0, 0, 254, 4, 0, nl.RTN_UNICAST, 0)
        + nl.RTATTR.pack(8, nl.RTA_TABLE)
        + nl.U32.pack(254)
        + nl.RTATTR.pack(20, nl.RTA_DST)
        + dst
        + nl.RTATTR.pack(8, nl.RTA_PRIORITY)
        + nl.U32.pack(1024)
        + nl.RTATTR.pack(4 + len(nh1) + len(nh2), nl.RTA_MULTIPATH)
        + nh1
        + nh2
    )
    message = nl.NLMSGHDR.pack(nl.NLMSGHDR_LEN + len(body), nl.RTM_NEWROUTE, 0, 0, 0) + body
    parsed = parse(message)
    assert parsed is not None
    route, oifs = parsed
    assert route.gateways == (IPv6Address("fd00::2"), IPv6Address("fe80::3%up1"))
    assert oifs == (2, 3) and route.ifname is None and route.priority == 1024
    # the dispatcher reads IPv4 bodies with the IPv4 parser and skips cloned entries
    assert _inet6.parse_route_any(message, nl.NLMSGHDR_LEN, len(message), 254, names) == parsed
    cloned = bytearray(message)
    struct.pack_into("=I", cloned, nl.NLMSGHDR_LEN + 8, nl.RTM_F_CLONED)
    assert parse(bytes(cloned)) is None


def test_reject_route_has_no_device() -> None:
    """The kernel reports IPv6 blackhole routes with `dev lo`; like IPv4 ones they have no device here."""
    body = (
        nl.RTMSG.pack(socket.AF_INET6, 122, 0, 0, 254, 80, 0, 6, 0)
        + nl.RTATTR.pack(20, nl.RTA_DST)
        + IPv6Address("fd00:20::").packed
        + nl.RTATTR.pack(8, nl.RTA_OIF)
        + nl.U32.pack(1)
    )
    message = nl.NLMSGHDR.pack(nl.NLMSGHDR_LEN + len(body), nl.RTM_NEWROUTE, 0, 0, 0) + body
    parsed = parse(message)
    assert parsed is not None
    route, oifs = parsed
    assert route.kind == "blackhole" and route.ifname is None and oifs == ()


def test_ipv4_requests_are_unchanged() -> None:
    """The family parameter of the dump request defaults to what the IPv4-only code sent."""
    expected = (
        nl.RTMSG.pack(socket.AF_INET, 0, 0, 0, 254, 12, 0, 0, 0)
        + nl.RTATTR.pack(8, nl.RTA_TABLE)
        + nl.U32.pack(254)
        + nl.RTATTR.pack(8, nl.RTA_OIF)
        + nl.U32.pack(3)
    )
    assert nl.route_dump_request(254, 12, 3) == expected
    assert nl.route_dump_request(254, 12, 3, socket.AF_INET6)[0] == socket.AF_INET6
    message = nl.pack_route(
        nl.RTM_NEWROUTE,
        0,
        7,
        prefix=IPv4Network("10.1.0.0/16"),
        table=254,
        protocol=12,
        metric=32,
        gateways=(IPv4Address("192.168.77.2"),),
    )
    assert message.endswith(nl.RTATTR.pack(8, nl.RTA_GATEWAY) + IPv4Address("192.168.77.2").packed)
    assert message[nl.NLMSGHDR_LEN] == socket.AF_INET


def test_parse_addr_both_families() -> None:
    for family, address in (
        (socket.AF_INET, IPv4Address("10.0.0.1")),
        (socket.AF_INET6, IPv6Address("fd00::1")),
    ):
        size = len(address.packed)
        body = (
            nl.IFADDRMSG.pack(family, 24, 0, 0, 5) + nl.RTATTR.pack(4 + size, nl.IFA_ADDRESS) + address.packed
        )
        assert nl.parse_addr(body, 0, len(body)) == (family, 5, address, 24)
