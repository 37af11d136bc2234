"""bgpd.engine.tunnel: the kernel form of a learned route (plain, or via tunl0 onlink) for each pool ipip
mode × next hop inside/outside the local subnet × single/ECMP × IPv4/IPv6, checked against a from-scratch
model written with ipaddress, and the export rule for bgpd's own tunnel routes."""

from __future__ import annotations

from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_interface,
)

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import prefix
from bgpd.engine.tunnel import IPIP_MODES, TUNNEL_DEVICE, Hop, IpipMode, TunnelPlan, is_own_tunnel_route
from bgpd.model import Address, KernelRoute

LOCAL = IPv4Interface("192.168.100.10/24")
POOL4 = IPv4Network("10.20.0.0/16")
POOL6 = IPv6Network("fd00:10:20::/48")
ROUTE4 = prefix.parse("10.20.2.0/26")
ROUTE6 = prefix.parse6("fd00:10:20:2::/122")
INSIDE4 = prefix.Address("192.168.100.3")  # same rack: same subnet as LOCAL
OUTSIDE4 = prefix.Address("192.168.200.3")  # other rack: behind a router
INSIDE6 = prefix.Address6("fd00:100::3")
OUTSIDE6 = prefix.Address6("fd00:200::3")


def plan(mode: IpipMode) -> TunnelPlan:
    return TunnelPlan([(POOL4, mode), (POOL6, mode)], LOCAL)


def plain(gateway: Address) -> Address:
    return gateway


def tunnelled(gateway: Address) -> Hop:
    return Hop(gateway, "tunl0", True)


# (mode, family, gateways) -> expected hops: the whole table of the issue
P, T = plain, tunnelled
TABLE: list[tuple[IpipMode, int, tuple[Address, ...], tuple[Hop, ...]]] = [
    # IPv4, single next hop
    ("never", 4, (INSIDE4,), (P(INSIDE4),)),
    ("never", 4, (OUTSIDE4,), (P(OUTSIDE4),)),
    ("always", 4, (INSIDE4,), (T(INSIDE4),)),  # Calico's Always tunnels inside the subnet too
    ("always", 4, (OUTSIDE4,), (T(OUTSIDE4),)),
    ("cross-subnet", 4, (INSIDE4,), (P(INSIDE4),)),
    ("cross-subnet", 4, (OUTSIDE4,), (T(OUTSIDE4),)),
    # IPv4, ECMP: all inside, all outside, mixed (decided per next hop, unlike Calico's BIRD)
    ("never", 4, (INSIDE4, OUTSIDE4), (P(INSIDE4), P(OUTSIDE4))),
    ("always", 4, (INSIDE4, OUTSIDE4), (T(INSIDE4), T(OUTSIDE4))),
    ("cross-subnet", 4, (INSIDE4, OUTSIDE4), (P(INSIDE4), T(OUTSIDE4))),
    (
        "cross-subnet",
        4,
        (INSIDE4, prefix.Address("192.168.100.4")),
        (P(INSIDE4), P(prefix.Address("192.168.100.4"))),
    ),
    (
        "cross-subnet",
        4,
        (OUTSIDE4, prefix.Address("192.168.201.3")),
        (T(OUTSIDE4), T(prefix.Address("192.168.201.3"))),
    ),
    (
        "always",
        4,
        (INSIDE4, prefix.Address("192.168.100.4")),
        (T(INSIDE4), T(prefix.Address("192.168.100.4"))),
    ),
    # IPv6: never tunnelled, whatever the pool says
    ("never", 6, (INSIDE6,), (P(INSIDE6),)),
    ("never", 6, (OUTSIDE6,), (P(OUTSIDE6),)),
    ("always", 6, (INSIDE6,), (P(INSIDE6),)),
    ("always", 6, (OUTSIDE6,), (P(OUTSIDE6),)),
    ("cross-subnet", 6, (INSIDE6,), (P(INSIDE6),)),
    ("cross-subnet", 6, (OUTSIDE6,), (P(OUTSIDE6),)),
    ("never", 6, (INSIDE6, OUTSIDE6), (P(INSIDE6), P(OUTSIDE6))),
    ("always", 6, (INSIDE6, OUTSIDE6), (P(INSIDE6), P(OUTSIDE6))),
    ("cross-subnet", 6, (INSIDE6, OUTSIDE6), (P(INSIDE6), P(OUTSIDE6))),
]


@pytest.mark.parametrize(("mode", "family", "gateways", "expected"), TABLE)
def test_route_form_table(
    mode: IpipMode, family: int, gateways: tuple[Address, ...], expected: tuple[Hop, ...]
) -> None:
    route = ROUTE4 if family == 4 else ROUTE6
    tunnels = plan(mode)
    assert tunnels.hops(route, gateways) == expected
    assert tunnels.hops(route, gateways) == expected  # memoized: the same answer again
    # plain ipaddress prefixes and addresses give the same answer as the lean ones
    plain_route = IPv4Network(str(route)) if family == 4 else IPv6Network(str(route))
    plain_gateways = tuple(ip_address(str(g)) for g in gateways)
    assert plan(mode).hops(plain_route, plain_gateways) == tuple(
        Hop(ip_address(str(h.gateway)), h.device, h.onlink) if isinstance(h, Hop) else ip_address(str(h))
        for h in expected
    )
    assert tunnels.mode(route) == (mode if family == 4 else "never")


def test_tunnelled_hop_shape() -> None:
    (hop,) = plan("always").hops(ROUTE4, (OUTSIDE4,))
    assert (hop.gateway, hop.device, hop.onlink) == (OUTSIDE4, TUNNEL_DEVICE, True)
    assert plan("never").hops(ROUTE4, (OUTSIDE4,)) == (OUTSIDE4,)  # plain: the gateway itself
    gateways = (INSIDE4,)
    assert plan("never").hops(ROUTE4, gateways) is gateways  # nothing built for a plain route


def test_vxlan_pool_is_felix_s_nothing_installed() -> None:
    pool6 = prefix.parse6("fd00:10:30::/48")
    tunnels = TunnelPlan([(POOL4, "always")], LOCAL, vxlan=[prefix.parse("10.30.0.0/16"), pool6])
    assert tunnels.active
    assert tunnels.hops(prefix.parse("10.30.1.0/26"), (INSIDE4,)) is None
    assert tunnels.mode(prefix.parse("10.30.1.0/26")) == "vxlan"
    assert tunnels.hops(prefix.parse6("fd00:10:30:1::/122"), (INSIDE6,)) is None
    assert tunnels.hops(prefix.parse6("fd00:10:31:1::/122"), (INSIDE6,)) == (INSIDE6,)
    assert tunnels.hops(ROUTE4, (INSIDE4,)) == (T(INSIDE4),)
    assert not TunnelPlan([(POOL4, "never")], LOCAL).active
    assert TunnelPlan([(POOL4, "never")], LOCAL) == TunnelPlan([(POOL4, "never")], LOCAL)
    assert TunnelPlan([(POOL4, "always")], LOCAL) != TunnelPlan([(POOL4, "cross-subnet")], LOCAL)


def test_other_device_name() -> None:
    tunnels = TunnelPlan([(POOL4, "always")], LOCAL, device="ipip0")
    assert tunnels.device == "ipip0"
    assert tunnels.hops(ROUTE4, (INSIDE4,)) == (Hop(INSIDE4, "ipip0", True),)


def test_prefix_in_no_pool_is_plain() -> None:
    tunnels = plan("always")
    for route in (prefix.parse("10.30.1.0/26"), prefix.parse("10.0.0.0/8"), prefix.parse("0.0.0.0/0")):
        assert tunnels.hops(route, (OUTSIDE4,)) == (P(OUTSIDE4),)
        assert tunnels.mode(route) == "never"
    assert tunnels.hops(prefix.parse("10.20.0.0/16"), (OUTSIDE4,)) == (T(OUTSIDE4),)  # the pool itself
    assert tunnels.hops(prefix.parse("10.20.255.255/32"), (OUTSIDE4,)) == (T(OUTSIDE4),)
    assert TunnelPlan([], LOCAL).hops(ROUTE4, (OUTSIDE4,)) == (P(OUTSIDE4),)


def test_embedded_ipv6_prefix_is_not_the_ipv4_pool() -> None:
    # ::10.20.2.0/122 has the same int as 10.20.2.0/26: the family-tagged key keeps it out of the IPv4 pool
    route = prefix.parse6("::10.20.2.0/122")
    assert plan("always").hops(route, (OUTSIDE6,)) == (P(OUTSIDE6),)


def test_ipv6_next_hop_of_ipv4_route_is_plain() -> None:
    # RFC 8950: an IPv4 route via an IPv6 next hop cannot be wrapped in IPv4
    assert plan("always").hops(ROUTE4, (OUTSIDE4, OUTSIDE6)) == (T(OUTSIDE4), P(OUTSIDE6))
    assert plan("cross-subnet").hops(ROUTE4, (OUTSIDE6,)) == (P(OUTSIDE6),)


def test_longest_pool_decides() -> None:
    tunnels = TunnelPlan(
        [(IPv4Network("10.0.0.0/8"), "always"), (IPv4Network("10.20.0.0/16"), "never")], LOCAL
    )
    assert tunnels.hops(ROUTE4, (OUTSIDE4,)) == (P(OUTSIDE4),)
    assert tunnels.hops(prefix.parse("10.30.0.0/26"), (OUTSIDE4,)) == (T(OUTSIDE4),)
    assert tunnels.mode(ROUTE4) == "never"
    assert tunnels.mode(prefix.parse("10.30.0.0/26")) == "always"


def test_pools_of_different_modes() -> None:
    tunnels = TunnelPlan(
        [(IPv4Network("10.20.0.0/16"), "cross-subnet"), (IPv4Network("10.40.0.0/16"), "always")], LOCAL
    )
    both = (INSIDE4, OUTSIDE4)
    assert tunnels.hops(ROUTE4, both) == (P(INSIDE4), T(OUTSIDE4))
    assert tunnels.hops(prefix.parse("10.40.1.0/26"), both) == (T(INSIDE4), T(OUTSIDE4))
    assert tunnels.hops(prefix.parse("10.30.1.0/26"), both) == (P(INSIDE4), P(OUTSIDE4))


def test_local_subnet_edges() -> None:
    tunnels = TunnelPlan([(POOL4, "cross-subnet")], IPv4Interface("192.168.100.10/23"))
    inside = tuple(prefix.Address(a) for a in ("192.168.100.0", "192.168.101.255"))
    outside = tuple(prefix.Address(a) for a in ("192.168.99.255", "192.168.102.0"))
    assert tunnels.hops(ROUTE4, inside) == tuple(P(g) for g in inside)
    assert tunnels.hops(ROUTE4, outside) == tuple(T(g) for g in outside)
    # a /32 underlay (no shared subnet): every other next hop is behind a router
    lonely = TunnelPlan([(POOL4, "cross-subnet")], IPv4Interface("192.168.100.10/32"))
    assert lonely.hops(ROUTE4, (INSIDE4,)) == (T(INSIDE4),)


def test_no_next_hops() -> None:
    assert plan("always").hops(ROUTE4, ()) == ()


def test_unknown_mode_rejected() -> None:
    with pytest.raises(ValueError, match="unknown ipip mode"):
        TunnelPlan([(POOL4, "sometimes")], LOCAL)  # type: ignore[list-item]


def test_modes() -> None:
    assert IPIP_MODES == ("never", "always", "cross-subnet")


def kernel_route(protocol: int, ifname: str | None, gateways: tuple[prefix.Address, ...] = ()) -> KernelRoute:
    return KernelRoute(ROUTE4, "unicast", protocol, 254, ifname, gateways)


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (kernel_route(12, "tunl0", (OUTSIDE4,)), True),  # ours, via the tunnel: never exported again
        (kernel_route(12, "eth0", (INSIDE4,)), False),
        (kernel_route(12, None, (INSIDE4, OUTSIDE4)), False),
        (kernel_route(80, "tunl0", (OUTSIDE4,)), False),  # Felix's: not ours (a foreign route, left alone)
        (kernel_route(3, "cali1234", ()), False),
    ],
)
def test_is_own_tunnel_route(route: KernelRoute, expected: bool) -> None:
    assert is_own_tunnel_route(route, 12) is expected


def test_is_own_tunnel_route_other_protocol_and_device() -> None:
    assert is_own_tunnel_route(kernel_route(186, "ipip0"), 186, device="ipip0")
    assert not is_own_tunnel_route(kernel_route(186, "tunl0"), 186, device="ipip0")
    assert not is_own_tunnel_route(kernel_route(12, "tunl0"), 186)


# The property: TunnelPlan against a model written from scratch with ipaddress


def model(
    pools: list[tuple[IPv4Network | IPv6Network, IpipMode]],
    local: str,
    route: IPv4Network | IPv6Network,
    gateways: tuple[Address, ...],
) -> tuple[Hop, ...]:
    covering = [
        (cidr, mode)
        for cidr, mode in pools
        if (isinstance(route, IPv4Network) and isinstance(cidr, IPv4Network) and route.subnet_of(cidr))
        or (isinstance(route, IPv6Network) and isinstance(cidr, IPv6Network) and route.subnet_of(cidr))
    ]
    mode: IpipMode = max(covering, key=lambda pool: pool[0].prefixlen)[1] if covering else "never"
    hops = []
    for g in gateways:
        if route.version == 6 or g.version == 6 or mode == "never":
            tunnel = False
        elif mode == "always":
            tunnel = True
        else:
            tunnel = ip_address(g) not in ip_interface(local).network
        hops.append(Hop(g, "tunl0", True) if tunnel else g)
    return tuple(hops)


near = st.integers(0xC0A86000, 0xC0A86FFF)  # 192.168.96.0/20: around the local subnets drawn below
gateways4 = st.one_of(near, st.integers(0, 2**32 - 1)).map(IPv4Address)
gateways6 = st.integers(0, 2**128 - 1).map(IPv6Address)
modes = st.sampled_from(IPIP_MODES)


@st.composite
def networks4(draw: st.DrawFn, lengths: st.SearchStrategy[int]) -> IPv4Network:
    # addresses inside 10.0.0.0/8 mostly, so routes land in pools often
    address = draw(st.one_of(st.integers(0x0A000000, 0x0AFFFFFF), st.integers(0, 2**32 - 1)))
    return IPv4Network((address, draw(lengths)), strict=False)


@st.composite
def networks6(draw: st.DrawFn, lengths: st.SearchStrategy[int]) -> IPv6Network:
    address = draw(st.one_of(st.integers(0, 2**32 - 1), st.integers(0, 2**128 - 1)))  # ::a.b.c.d too
    return IPv6Network((address, draw(lengths)), strict=False)


pools_strategy = st.lists(
    st.tuples(st.one_of(networks4(st.integers(6, 24)), networks6(st.integers(8, 120))), modes), max_size=4
)
routes = st.one_of(networks4(st.integers(8, 32)), networks6(st.integers(8, 128)))
locals_ = st.tuples(near, st.integers(16, 32)).map(lambda al: f"{IPv4Address(al[0])}/{al[1]}")


@settings(max_examples=500, deadline=None)
@given(
    pools=pools_strategy,
    local=locals_,
    route=routes,
    gateways=st.lists(st.one_of(gateways4, gateways4, gateways6), max_size=4, unique=True).map(
        lambda gs: tuple(sorted(gs, key=lambda g: (g.version, int(g))))
    ),
    lean=st.booleans(),
)
def test_matches_ipaddress_model(
    pools: list[tuple[IPv4Network | IPv6Network, IpipMode]],
    local: str,
    route: IPv4Network | IPv6Network,
    gateways: tuple[Address, ...],
    lean: bool,
) -> None:
    tunnels = TunnelPlan(pools, IPv4Interface(local))
    subject: IPv4Network | IPv6Network = prefix.parse_any(str(route)) if lean else route
    expected = model(pools, local, route, gateways)
    assert tunnels.hops(subject, gateways) == expected
    assert tunnels.hops(subject, gateways) == expected  # from the memo


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from bgpd.engine import tunnel

    monkeypatch.setattr(tunnel, "_MEMO_LIMIT", 4)
    tunnels = plan("cross-subnet")
    for last in range(1, 20):
        gateway = prefix.Address(f"192.168.{100 + last % 2}.{last}")
        assert tunnels.hops(ROUTE4, (gateway,)) == ((P if last % 2 == 0 else T)(gateway),)
        assert len(tunnels._memo[2]) <= 4  # cross-subnet's memo
    assert tunnels.hops(ROUTE4, (INSIDE4, OUTSIDE4)) == (P(INSIDE4), T(OUTSIDE4))
