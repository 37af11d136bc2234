"""Tests for bgpd.policy.importer.ImportPolicy: each static reject reason, and what is accepted, for IPv4
and IPv6 (issue 11: every IPv6 rejection counted with the IPv4 reason), with plain `ipaddress` objects and
bgpd's lean ones, and against a reference written with `ipaddress` alone."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import prefix as lean
from bgpd.model import Address, Attributes, Prefix
from bgpd.policy.importer import ImportPolicy, Reject

NODE = IPv4Address("192.168.100.10")
NODE6 = IPv6Address("fd00:100::10")
ROUTER_ID = IPv4Address("192.168.100.10")
PEER_NH = IPv4Address("192.168.100.3")
PEER_NH6 = IPv6Address("fd00:100::3")
POOLS = ["10.20.0.0/16", "192.168.96.0/19", "fd00:10:20::/48", "fd00:100::/56"]
LOCAL = ["10.20.7.1", "172.17.0.1", "fd00:10:20::7:1", "fd00:172:17::1"]


def N(text: str) -> Prefix:
    return ip_network(text)


def A(text: str) -> Address:
    return ip_address(text)


def policy(cluster_id: str | None = None) -> ImportPolicy:
    return ImportPolicy(
        pools=[N(p) for p in POOLS],
        node_addresses=[NODE, NODE6],
        local_addresses=[A(a) for a in LOCAL],
        router_id=ROUTER_ID,
        cluster_id=None if cluster_id is None else IPv4Address(cluster_id),
    )


# The prefix and address makers a test runs with: the plain ipaddress types, and bgpd's lean ones (what the
# codec hands the policy on the receive path); they must give the same answers.
MAKERS: list[tuple[Callable[[str], Prefix], Callable[[str], Address]]] = [
    (ip_network, ip_address),
    (lean.parse_any, lambda t: lean.Address6(t) if ":" in t else lean.Address(t)),
]
makers = pytest.mark.parametrize(("mkn", "mka"), MAKERS, ids=["plain", "lean"])


def nh_for(prefix: str) -> Address:
    """A valid peer next hop of the prefix's family."""
    return PEER_NH6 if ":" in prefix else PEER_NH


def test_signature_node_and_local_addresses_of_both_families() -> None:
    p = policy()
    assert p.node_addresses == {NODE, NODE6}
    assert p.own_addresses == {NODE, NODE6, *(A(a) for a in LOCAL)}
    assert p.pools == tuple(N(x) for x in POOLS)
    assert p.router_id == ROUTER_ID and p.cluster_id is None


@makers
@pytest.mark.parametrize("prefix", ["10.20.1.3/32", "fd00:10:20::3/128"])
def test_borrowed_host_route_inside_pool_accepted(
    mkn: Callable[[str], Prefix], mka: Callable[[str], Address], prefix: str
) -> None:
    assert policy().check(mkn(prefix), mka(str(nh_for(prefix))), Attributes()) is None


@pytest.mark.parametrize(
    "prefix",
    [
        "10.20.1.0/26",
        "10.20.0.0/16",
        "10.20.255.255/32",
        "fd00:10:20::40/122",
        "fd00:10:20::/48",
        "fd00:10:20:ffff:ffff:ffff:ffff:ffff/128",
        "fd00:10:20:1::/64",
    ],
)
def test_block_inside_pool_accepted(prefix: str) -> None:
    assert policy().check(N(prefix), nh_for(prefix), Attributes(local_pref=100)) is None


@makers
@pytest.mark.parametrize("prefix", ["0.0.0.0/0", "::/0"])
def test_default_route_rejected(
    mkn: Callable[[str], Prefix], mka: Callable[[str], Address], prefix: str
) -> None:
    assert policy().check(mkn(prefix), mka(str(nh_for(prefix))), Attributes()) is Reject.DEFAULT_ROUTE


@pytest.mark.parametrize("prefix", ["0.0.0.0/0", "::/0"])
def test_default_route_rejected_even_if_a_pool_is_everything(prefix: str) -> None:
    everything = ImportPolicy([N("0.0.0.0/0"), N("::/0")], [NODE, NODE6], [], ROUTER_ID)
    assert everything.check(N(prefix), nh_for(prefix), Attributes()) is Reject.DEFAULT_ROUTE


@makers
@pytest.mark.parametrize(
    "prefix",
    [
        *("10.21.0.0/26", "10.0.0.0/8", "10.20.0.0/15", "8.8.8.8/32"),
        *("fd00:10:21::/122", "fd00::/8", "fd00:10:20::/47", "2001:db8::1/128", "fd00:101::/64"),
        # IPv6 prefixes whose integers are those of an IPv4 pool (::10.20.0.0/112 is 0x0a140000/112):
        # never inside an IPv4 pool
        *("::a14:0/112", "::a14:100/122", "::a14:103/128", "::ffff:10.20.1.3/128"),
    ],
)
def test_outside_pool_rejected(
    mkn: Callable[[str], Prefix], mka: Callable[[str], Address], prefix: str
) -> None:
    assert policy().check(mkn(prefix), mka(str(nh_for(prefix))), Attributes()) is Reject.NOT_IN_POOL


def test_pools_of_one_family_never_admit_the_other() -> None:
    v6_only = ImportPolicy([N("::/1")], [NODE6], [], ROUTER_ID)
    assert v6_only.check(N("10.20.1.0/26"), PEER_NH, Attributes()) is Reject.NOT_IN_POOL
    assert v6_only.check(N("::a14:100/122"), PEER_NH6, Attributes()) is None
    v4_only = ImportPolicy([N("0.0.0.0/1")], [NODE], [], ROUTER_ID)
    assert v4_only.check(N("::a14:100/122"), PEER_NH6, Attributes()) is Reject.NOT_IN_POOL
    assert v4_only.check(N("10.20.1.0/26"), PEER_NH, Attributes()) is None


@makers
@pytest.mark.parametrize(
    "prefix",
    [
        *("192.168.100.10/32", "192.168.100.0/24", "192.168.96.0/19"),
        *("fd00:100::10/128", "fd00:100::/64", "fd00:100::/56", "fd00:100::/123"),
    ],
)
def test_prefix_containing_node_address_rejected(
    mkn: Callable[[str], Prefix], mka: Callable[[str], Address], prefix: str
) -> None:
    assert policy().check(mkn(prefix), mka(str(nh_for(prefix))), Attributes()) is Reject.CONTAINS_OWN_ADDRESS


@pytest.mark.parametrize("prefix", ["192.168.100.11/32", "fd00:100::11/128", "fd00:100::20/123"])
def test_prefix_next_to_node_address_accepted(prefix: str) -> None:
    assert policy().check(N(prefix), nh_for(prefix), Attributes()) is None


def test_node_address_of_the_other_family_is_not_contained() -> None:
    # ::192.168.100.10 has the int of NODE: an IPv6 prefix holding it contains no address of this node
    p = ImportPolicy([N("::/64")], [NODE], [], ROUTER_ID)
    assert p.check(N("::c0a8:6400/120"), PEER_NH6, Attributes()) is None
    assert p.check(N("::c0a8:640a/128"), PEER_NH6, Attributes()) is None
    # and an IPv4 prefix with the int of NODE6's low bits contains nothing of it
    p6 = ImportPolicy([N("0.0.0.0/1")], [IPv6Address("::10.20.1.3")], [], ROUTER_ID)
    assert p6.check(N("10.20.1.0/24"), PEER_NH, Attributes()) is None


@makers
@pytest.mark.parametrize(
    ("prefix", "next_hop"),
    [("10.20.1.0/26", a) for a in (str(NODE), "10.20.7.1", "172.17.0.1")]
    + [("fd00:10:20::40/122", a) for a in (str(NODE6), "fd00:10:20::7:1", "fd00:172:17::1")],
)
def test_own_next_hop_rejected(
    mkn: Callable[[str], Prefix], mka: Callable[[str], Address], prefix: str, next_hop: str
) -> None:
    assert policy().check(mkn(prefix), mka(next_hop), Attributes()) is Reject.OWN_NEXT_HOP


@pytest.mark.parametrize(
    "next_hop",
    ["0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.5", "239.255.255.255", "240.0.0.1", "255.255.255.255"],
)
def test_invalid_next_hop_rejected(next_hop: str) -> None:
    assert policy().check(N("10.20.1.0/26"), IPv4Address(next_hop), Attributes()) is Reject.INVALID_NEXT_HOP


@makers
@pytest.mark.parametrize(
    "next_hop",
    [
        *("::", "::1"),  # unspecified, loopback
        *("fe80::1", "fe80::ecee:eeff:feee:eeee", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),  # link-local
        *("ff02::1", "ff00::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),  # multicast
        *("::ffff:192.168.100.3", "::ffff:0:0"),  # IPv4-mapped
    ],
)
def test_invalid_ipv6_next_hop_rejected(
    mkn: Callable[[str], Prefix], mka: Callable[[str], Address], next_hop: str
) -> None:
    assert policy().check(mkn("fd00:10:20::40/122"), mka(next_hop), Attributes()) is Reject.INVALID_NEXT_HOP


@makers
@pytest.mark.parametrize(
    ("prefix", "next_hop"),
    [
        ("fd00:10:20::40/122", "192.168.100.3"),  # an IPv4 next hop for an IPv6 prefix
        ("fd00:10:20::3/128", "10.20.1.1"),
        ("fd00:10:20::40/122", str(NODE)),  # even our own (the family is checked first)
        ("10.20.1.0/26", "fd00:100::3"),  # and the reverse
        ("10.20.1.0/26", "::c0a8:6403"),  # whose int is a valid IPv4 next hop
    ],
)
def test_next_hop_of_the_other_family_rejected_as_invalid(
    mkn: Callable[[str], Prefix], mka: Callable[[str], Address], prefix: str, next_hop: str
) -> None:
    assert policy().check(mkn(prefix), mka(next_hop), Attributes()) is Reject.INVALID_NEXT_HOP


@pytest.mark.parametrize("next_hop", ["1.0.0.1", "126.255.255.255", "128.0.0.1", "223.255.255.254"])
def test_valid_next_hop_edges_accepted(next_hop: str) -> None:
    assert policy().check(N("10.20.1.0/26"), IPv4Address(next_hop), Attributes()) is None


@pytest.mark.parametrize(
    "next_hop",
    [
        *("::2", "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fec0::1", "feff::1", "::fffe:ffff:ffff"),
        *("::1:0:0:0", "::ffff:0:0:0", "2001:db8::1", "fdff::1", "fd00:100::3"),
    ],
)
def test_valid_ipv6_next_hop_edges_accepted(next_hop: str) -> None:
    assert policy().check(N("fd00:10:20::40/122"), IPv6Address(next_hop), Attributes()) is None


@pytest.mark.parametrize("prefix", ["10.20.1.0/26", "fd00:10:20::40/122"])
def test_own_originator_rejected(prefix: str) -> None:
    attrs = Attributes(originator_id=ROUTER_ID)
    assert policy().check(N(prefix), nh_for(prefix), attrs) is Reject.OWN_ORIGINATOR


@pytest.mark.parametrize("prefix", ["10.20.1.0/26", "fd00:10:20::40/122"])
def test_foreign_originator_accepted(prefix: str) -> None:
    attrs = Attributes(originator_id=IPv4Address("192.168.100.3"))
    assert policy().check(N(prefix), nh_for(prefix), attrs) is None


@pytest.mark.parametrize("prefix", ["10.20.1.0/26", "fd00:10:20::40/122"])
def test_cluster_loop_rejected(prefix: str) -> None:
    attrs = Attributes(cluster_list=(IPv4Address("1.0.0.2"), IPv4Address("1.0.0.1")))
    assert policy("1.0.0.1").check(N(prefix), nh_for(prefix), attrs) is Reject.CLUSTER_LOOP


def test_cluster_list_without_own_cluster_accepted() -> None:
    attrs = Attributes(cluster_list=(IPv4Address("1.0.0.2"),))
    assert policy("1.0.0.1").check(N("10.20.1.0/26"), PEER_NH, attrs) is None
    # without a cluster id of our own, no cluster list loops
    assert (
        policy().check(N("10.20.1.0/26"), PEER_NH, Attributes(cluster_list=(IPv4Address("1.0.0.1"),))) is None
    )


def test_first_reason_wins() -> None:
    bad = Attributes(originator_id=ROUTER_ID, cluster_list=(IPv4Address("1.0.0.1"),))
    p = policy("1.0.0.1")
    assert p.check(N("0.0.0.0/0"), IPv4Address("127.0.0.1"), bad) is Reject.DEFAULT_ROUTE
    assert p.check(N("11.0.0.0/8"), IPv4Address("127.0.0.1"), bad) is Reject.NOT_IN_POOL
    assert p.check(N("192.168.100.0/24"), NODE, bad) is Reject.CONTAINS_OWN_ADDRESS
    assert p.check(N("10.20.1.0/26"), NODE, bad) is Reject.OWN_NEXT_HOP
    assert p.check(N("10.20.1.0/26"), IPv4Address("127.0.0.1"), bad) is Reject.INVALID_NEXT_HOP
    assert p.check(N("10.20.1.0/26"), PEER_NH, bad) is Reject.OWN_ORIGINATOR
    assert (
        p.check(N("10.20.1.0/26"), PEER_NH, Attributes(cluster_list=bad.cluster_list)) is Reject.CLUSTER_LOOP
    )


def test_first_reason_wins_ipv6() -> None:
    bad = Attributes(originator_id=ROUTER_ID, cluster_list=(IPv4Address("1.0.0.1"),))
    p = policy("1.0.0.1")
    assert p.check(N("::/0"), A("::1"), bad) is Reject.DEFAULT_ROUTE
    assert p.check(N("fd00:11::/48"), A("::1"), bad) is Reject.NOT_IN_POOL
    assert p.check(N("fd00:100::/64"), NODE6, bad) is Reject.CONTAINS_OWN_ADDRESS
    assert p.check(N("fd00:10:20::40/122"), NODE, bad) is Reject.INVALID_NEXT_HOP  # family first
    assert p.check(N("fd00:10:20::40/122"), NODE6, bad) is Reject.OWN_NEXT_HOP
    assert p.check(N("fd00:10:20::40/122"), A("fe80::1"), bad) is Reject.INVALID_NEXT_HOP
    assert p.check(N("fd00:10:20::40/122"), PEER_NH6, bad) is Reject.OWN_ORIGINATOR
    attrs = Attributes(cluster_list=bad.cluster_list)
    assert p.check(N("fd00:10:20::40/122"), PEER_NH6, attrs) is Reject.CLUSTER_LOOP


def test_reject_values_are_metric_labels() -> None:
    assert {r.value for r in Reject} == {
        "malformed",
        "not_in_pool",
        "default_route",
        "contains_own_address",
        "own_prefix",
        "own_next_hop",
        "invalid_next_hop",
        "own_originator",
        "cluster_loop",
        "as_loop",
        "filter",
    }
    assert str(Reject.NOT_IN_POOL) == "not_in_pool"


# ------------------------------------------------------------------ against a reference

# Prefixes and next hops around the pools, the node's addresses and the invalid ranges of both families,
# with integers that collide across the families (10.20.x.y and ::10.20.x.y).
_V4 = ["10.20.1.0", "10.20.1.3", "192.168.100.10", "192.168.100.3", "172.17.0.1", "0.0.0.0", "127.0.0.1"]
_V4 += ["224.0.0.5", "255.255.255.255", "10.21.0.0"]
_V6 = ["fd00:10:20::40", "fd00:10:20::7:1", "fd00:100::10", "fd00:100::3", "::", "::1", "::a14:103"]
_V6 += ["fe80::1", "ff02::1", "::ffff:192.168.100.3", "::c0a8:640a", "fd00:10:21::", "2001:db8::1"]
_NH = [IPv4Address(a) for a in _V4] + [IPv6Address(a) for a in _V6]


@st.composite
def _prefix(draw: st.DrawFn) -> Prefix:
    text = draw(st.sampled_from(_V4 + _V6))
    top = 128 if ":" in text else 32
    length = draw(st.one_of(st.integers(0, top), st.sampled_from([top, top, top - 6, top // 2])))
    return ip_network(f"{text}/{length}", strict=False)


def _reference(
    pools: list[Prefix], node: list[Address], local: list[Address], route: Prefix, next_hop: Address
) -> Reject | None:
    """The static checks again, from ipaddress's own predicates (no integer keys)."""
    if route.prefixlen == 0:
        return Reject.DEFAULT_ROUTE
    if not any(pool.version == route.version and route.subnet_of(pool) for pool in pools):  # type: ignore[arg-type]
        return Reject.NOT_IN_POOL
    if any(a.version == route.version and a in route for a in node):
        return Reject.CONTAINS_OWN_ADDRESS
    if next_hop.version != route.version:
        return Reject.INVALID_NEXT_HOP
    if next_hop in set(node) | set(local):
        return Reject.OWN_NEXT_HOP
    if isinstance(next_hop, IPv4Address):
        bad = next_hop in IPv4Network("0.0.0.0/8") or next_hop.is_loopback or int(next_hop) >= 0xE0000000
    else:
        bad = (
            next_hop.is_unspecified
            or next_hop.is_loopback
            or next_hop.is_link_local
            or next_hop.is_multicast
            or next_hop.ipv4_mapped is not None
        )
    return Reject.INVALID_NEXT_HOP if bad else None


@settings(max_examples=400, deadline=None)
@given(
    pools=st.lists(_prefix(), max_size=4),
    node=st.lists(st.sampled_from(_NH), max_size=2),
    local=st.lists(st.sampled_from(_NH), max_size=3),
    route=_prefix(),
    next_hop=st.sampled_from(_NH),
    lean_types=st.booleans(),
)
def test_checks_match_a_reference(
    pools: list[Prefix],
    node: list[Address],
    local: list[Address],
    route: Prefix,
    next_hop: Address,
    lean_types: bool,
) -> None:
    policy = ImportPolicy(pools, node, local, ROUTER_ID)
    if lean_types:
        route = lean.parse_any(str(route))
        next_hop = lean.Address6(str(next_hop)) if next_hop.version == 6 else lean.Address(str(next_hop))
    assert policy.check(route, next_hop, Attributes()) == _reference(pools, node, local, route, next_hop)
