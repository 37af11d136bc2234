"""The engine's Adj-RIB-Out on a dual-stack host, as ExaBGP command lines: each family's routes go to that
family's sessions with this node's address of that family as next hop (Calico: IPv6 routes over IPv6
sessions); End-of-RIB and route refresh name the session's family; a new ExaBGP is handed both tables."""

from __future__ import annotations

from bgpd import config
from bgpd.engine import Announce, Engine, RouteRefresh, Withdraw
from bgpd.engine.timers import ManualTimers
from bgpd.exabgp import codec
from bgpd.model import Attributes, KernelRoute, Prefix, RouteAdded, RouteRemoved, Snapshot
from bgpd.speaker import commands, feed
from tests.unit.conftest import CONFIG_DUAL, FAM4_DUAL, FAM6, Harness, address, make_harness, prefix

V4, V6 = FAM4_DUAL.peer, FAM6.peer  # 192.168.100.10, fd00:100::10
MAIN = 254


def workload(p: Prefix) -> KernelRoute:
    return KernelRoute(p, "unicast", 3, MAIN, "cali1", (), 0)


def block(p: Prefix) -> KernelRoute:
    return KernelRoute(p, "blackhole", 80, MAIN, None, (), 0)


def dual() -> Harness:
    h = make_harness(FAM6)  # the IPv4 session is up and sent End-of-RIB
    h.up(V6)
    h.eor(V6)
    h.sent.clear()
    h.changes.clear()
    return h


def test_each_family_goes_to_its_sessions_with_its_next_hop() -> None:
    h = dual()
    w4, w6 = prefix("10.20.1.5/32"), prefix("fd00:10:20:1::5/128")
    lines = h.kernel(RouteAdded(workload(w4)), RouteAdded(workload(w6)))
    assert lines == [
        "neighbor 192.168.100.10 announce attributes next-hop 192.168.100.3 origin igp nlri 10.20.1.5/32",
        "neighbor fd00:100::10 announce attributes next-hop fd00:100::3 origin igp nlri fd00:10:20:1::5/128",
    ]
    lines = h.kernel(RouteRemoved(workload(w6)))
    assert lines == [
        "neighbor fd00:100::10 withdraw attributes next-hop fd00:100::3 nlri fd00:10:20:1::5/128"
    ]
    for change in h.changes:
        assert isinstance(change, Announce | Withdraw)
        assert {p.version for p in change.prefixes} == {change.family}
        assert change.peers is not None and {a.version for a in change.peers} == {change.family}


def test_a_block_hides_its_workloads_in_its_own_family_only() -> None:
    h = dual()
    b4, b6 = prefix("10.20.1.0/26"), prefix("fd00:10:20:1::/122")
    w4, w6 = prefix("10.20.1.5/32"), prefix("fd00:10:20:1::5/128")
    h.kernel(RouteAdded(workload(w4)), RouteAdded(workload(w6)), RouteAdded(block(b6)))
    assert h.engine.export.announced == {w4, b6}
    h.kernel(RouteAdded(block(b4)))
    assert h.engine.export.announced == {b4, b6}
    assert h.sent[-2:] == [
        "neighbor 192.168.100.10 withdraw attributes next-hop 192.168.100.3 nlri 10.20.1.5/32",
        "neighbor 192.168.100.10 announce attributes next-hop 192.168.100.3 origin igp nlri 10.20.1.0/26",
    ]


def test_a_learned_copy_of_a_prefix_announced_here_is_never_installed_in_either_family() -> None:
    h = dual()
    b4, b6 = prefix("10.20.1.0/26"), prefix("fd00:10:20:1::/122")
    h.kernel(RouteAdded(block(b6)))
    h.announce(V4, b4)
    h.announce(V6, b6)
    assert h.engine.fib.wanted == {b4: (V4,)}
    h.kernel(RouteRemoved(block(b6)))  # no longer announced here: the learned path is used
    assert h.engine.fib.wanted == {b4: (V4,), b6: (V6,)}


def test_end_of_rib_names_the_family_of_the_session() -> None:
    h = make_harness(FAM6)
    h.up(V6)
    assert h.eor(V6) == [
        "neighbor 192.168.100.10 announce eor ipv4 unicast",
        "neighbor fd00:100::10 announce eor ipv6 unicast",
    ]


def test_a_new_exabgp_is_handed_both_tables() -> None:
    h = dual()
    w4, w6 = prefix("10.20.1.5/32"), prefix("fd00:10:20:1::5/128")
    h.kernel(RouteAdded(workload(w4)), RouteAdded(workload(w6)))
    h.engine.exabgp_lost()
    h.engine.exabgp_attached()
    assert h.flush() == [
        "neighbor 192.168.100.10 announce attributes next-hop 192.168.100.3 origin igp nlri 10.20.1.5/32",
        "neighbor fd00:100::10 announce attributes next-hop fd00:100::3 origin igp nlri fd00:10:20:1::5/128",
    ]


def test_an_import_policy_change_asks_each_session_for_its_own_family() -> None:
    """A reload that widens the pools: paths rejected before may be accepted now (RFC 2918)."""
    h = dual()
    wider = CONFIG_DUAL.replace("fd00:10:20::/48", "fd00:10::/32")
    added, removed, changed = h.engine.reconfigure(config.parse(wider))
    assert (added, removed, changed) == ([], [], [])
    assert h.flush() == [
        "neighbor 192.168.100.10 announce route-refresh ipv4 unicast",
        "neighbor fd00:100::10 announce route-refresh ipv6 unicast",
    ]
    assert {(c.peer, c.family) for c in h.changes if isinstance(c, RouteRefresh)} == {(V4, 4), (V6, 6)}


def test_an_ipv6_path_outside_the_new_pools_is_dropped_on_reload() -> None:
    h = dual()
    inside, outside = prefix("fd00:10:20:1::/122"), prefix("fd00:10:21:1::/122")
    h.announce(V6, inside, outside)
    assert set(h.engine.fib.wanted) == {inside}  # outside the pool: rejected
    h.settle()
    narrower = CONFIG_DUAL.replace("fd00:10:20::/48", "fd00:10:21::/48")
    h.engine.reconfigure(config.parse(narrower))
    assert h.engine.fib.wanted == {} and h.settle() == [(inside, None)]
    h.announce(V6, outside)  # the peer answers the route refresh
    assert h.engine.fib.wanted == {outside: (V6,)}


def test_ipv6_next_hops_that_are_not_usable_are_rejected() -> None:
    """Link-local (the RFC 2545 second next hop left alone), multicast, unspecified, IPv4-mapped, an IPv4
    next hop, this node's own address: rejected and counted, as for IPv4."""
    h = dual()
    b = prefix("fd00:10:20:1::/122")
    for hop in ("fe80::10", "ff02::5", "::", "::ffff:192.168.100.10", "192.168.100.10", "fd00:100::3"):
        h.announce(V6, b, next_hop=address(hop))
        assert h.engine.fib.wanted == {}, hop
    h.announce(V6, b, next_hop=address("fd00:100::50"))
    assert h.engine.fib.wanted == {b: (address("fd00:100::50"),)}
    rejected = h.engine.peers[V6].rejected
    assert rejected["invalid_next_hop"] == 5 and rejected["own_next_hop"] == 1


def test_a_reflector_that_starts_exporting_a_reflected_prefix_withdraws_before_it_announces() -> None:
    """ExaBGP keeps one route per prefix and neighbor: the reflected withdrawal of a prefix the reflector
    now announces itself must go first, or it takes the announcement back from the other client."""
    cfg = config.load("configs/reflector1.yaml")
    engine = Engine(cfg, ManualTimers())
    engine.start({}, [])
    engine.kernel_events([Snapshot((), "start")])
    a, b = address("192.168.100.10"), address("192.168.100.11")
    for peer in cfg.sessions():
        feed(engine, codec.PeerState(peer.address, 64512, "up"))
        feed(engine, codec.EndOfRib(peer.address))
    p = prefix("10.20.1.0/26")
    feed(engine, codec.Update(a, 64512, (codec.Announced(p, a, Attributes(local_pref=100)),)))
    first = [line for c in engine.take_adj_rib_out() for line in commands(c, cfg)]
    assert any(f"neighbor {b}" in line and "announce" in line and str(p) in line for line in first), first
    engine.kernel_events([RouteAdded(block(p))])
    lines = [line for c in engine.take_adj_rib_out() for line in commands(c, cfg)]
    withdraw = [i for i, line in enumerate(lines) if "withdraw" in line and str(p) in line]
    announce = [i for i, line in enumerate(lines) if "announce" in line and str(p) in line]
    assert withdraw and announce and max(withdraw) < min(announce), lines
