"""eBGP and policy through the engine (issue 13): AS loops with `allow_local_as`, import and export filters
(Calico's BGPFilter) per session, LOCAL_PREF from eBGP ignored, prefix advertisement communities, a policy
change by reload without a session reset, and reflection honouring NO_ADVERTISE, filters and next hop self.
Plain objects only (the engine's `Harness`); BIRD on the other side is in tests/e2e/test_ebgp.py.
"""

from __future__ import annotations

from bgpd import config
from bgpd.engine.outputs import Announce, RouteRefresh, Withdraw
from bgpd.exabgp import codec
from bgpd.model import Address, Attributes, KernelRoute, RouteAdded, RouteRemoved
from tests.unit.conftest import FAM4, Harness, address, prefix

TOR = address("192.168.100.1")  # eBGP, AS 65001
MESH = address("192.168.100.10")  # iBGP, AS 64512
BLOCK = prefix("10.20.1.0/26")  # ours
BORROWED = prefix("10.20.9.3/32")  # ours, outside our block
THEIRS = prefix("10.20.5.0/26")
OTHER = prefix("10.20.6.0/26")
MAIN = 254

FILTERS = """filters:
  - name: tor
    export_v4: [{action: Reject, match_operator: Equal, cidr: 10.20.1.0/26}]
    import_v4: [{action: Reject, match_operator: In, cidr: 10.20.6.0/24}]
"""


def started(text: str, *peers: Address) -> Harness:
    """An engine for config `text`, started, with `peers` up and their End-of-RIB received."""
    h = Harness(config.parse(text), FAM4)
    h.start()
    for peer in peers:
        h.up(peer)
        h.eor(peer)
    return h


def host(peer_extra: str = "", extra: str = "") -> Harness:
    h = Harness(config.parse(_text(peer_extra, extra)), FAM4)
    h.start()
    h.kernel(
        RouteAdded(KernelRoute(BLOCK, "blackhole", 80, MAIN, None, (), 0)),
        RouteAdded(KernelRoute(BORROWED, "unicast", 3, MAIN, "cali1234", (), 0)),
    )
    for peer in (TOR, MESH):
        h.up(peer)
        h.eor(peer)
    h.settle()
    return h


def announce(
    h: Harness, peer: object, *prefixes: object, as_path: tuple[int, ...] = (65001,), **kw: object
) -> None:
    attrs = Attributes(as_path=as_path, **kw)  # type: ignore[arg-type]
    h.feed(codec.Update(peer, 65001, tuple(codec.Announced(p, peer, attrs) for p in prefixes)))  # type: ignore[arg-type]


def rejected(h: Harness, peer: object) -> dict[str, int]:
    return dict(h.engine.peers[peer].rejected)  # type: ignore[index]


def sent_to(h: Harness, peer: object) -> set[object]:
    """Our prefixes announced to `peer` (by any Announce naming it, or every session) and not withdrawn."""
    held: set[object] = set()
    for change in h.changes:
        if isinstance(change, Announce) and (change.peers is None or peer in change.peers):
            held |= set(change.prefixes)
        elif isinstance(change, Withdraw) and (change.peers is None or peer in change.peers):
            held -= set(change.prefixes)
    return held


def test_as_loop_rejected_unless_allowed_often_enough() -> None:
    h = host()
    announce(h, TOR, THEIRS, as_path=(65001, 64512))
    assert rejected(h, TOR) == {"as_loop": 1}
    assert THEIRS not in h.engine.fib.wanted
    h = host(", allow_local_as: 1")
    announce(h, TOR, THEIRS, as_path=(65001, 64512))
    announce(h, TOR, OTHER, as_path=(65001, 64512, 64512))
    assert rejected(h, TOR) == {"as_loop": 1}
    assert h.engine.fib.wanted[THEIRS] == (TOR,) and OTHER not in h.engine.fib.wanted


def test_our_as_inside_an_as_set_is_a_loop_too() -> None:
    """RFC 4271 §9.1.2: our AS anywhere in the AS_PATH, an AS_SET's members included (found by the fuzz
    campaign: the AS_SET's first member alone was checked)."""
    h = host()
    announce(h, TOR, THEIRS, as_path=(65001, 65100), as_set=frozenset({64512, 65200}))
    announce(h, TOR, OTHER, as_path=(65001, 65100), as_set=frozenset({65200}))
    assert rejected(h, TOR) == {"as_loop": 1}
    assert THEIRS not in h.engine.fib.wanted and OTHER in h.engine.fib.wanted
    h = host(", allow_local_as: 1")  # once in a set is once
    announce(h, TOR, THEIRS, as_path=(65001, 65100), as_set=frozenset({64512}))
    announce(h, TOR, OTHER, as_path=(65001, 64512), as_set=frozenset({64512}))
    assert rejected(h, TOR) == {"as_loop": 1}
    assert THEIRS in h.engine.fib.wanted and OTHER not in h.engine.fib.wanted


def test_local_asn_is_the_as_checked_and_decides_ebgp() -> None:
    h = host(", local_asn: 65001")  # the same AS as the peer: iBGP
    announce(h, TOR, THEIRS, as_path=(64512,))  # our node.asn is not the session's AS: no loop
    assert rejected(h, TOR) == {}
    (path,) = h.engine.rib.paths(THEIRS)
    assert not path.peer.ebgp


def test_import_filter_rejects_and_counts() -> None:
    h = host(", filters: [tor]", FILTERS)
    announce(h, TOR, THEIRS, OTHER)
    assert rejected(h, TOR) == {"filter": 1}
    assert THEIRS in h.engine.fib.wanted and OTHER not in h.engine.fib.wanted
    announce(h, MESH, OTHER, as_path=())  # the mesh session has no filters
    assert OTHER in h.engine.fib.wanted


def test_local_pref_from_ebgp_is_ignored() -> None:
    h = host()
    announce(h, TOR, THEIRS, local_pref=500)
    announce(h, MESH, THEIRS, as_path=(65001,), local_pref=150)
    (tor_path,) = [p for p in h.engine.rib.paths(THEIRS) if p.peer.address == TOR]
    assert tor_path.attrs.local_pref is None and tor_path.peer.ebgp
    assert h.engine.rib.selection(THEIRS).best.peer.address == MESH  # type: ignore[union-attr]


def test_export_filters_per_session_group() -> None:
    h = host(", filters: [tor]", FILTERS)
    assert sent_to(h, TOR) == {BORROWED}  # the block is rejected by the ToR's export filter
    assert sent_to(h, MESH) == {BLOCK, BORROWED}
    # a new local route: each group gets what its filters let through
    h.changes.clear()
    h.kernel(RouteAdded(KernelRoute(prefix("10.20.2.0/26"), "blackhole", 80, MAIN, None, (), 0)))
    assert sent_to(h, TOR) == {prefix("10.20.2.0/26")} == sent_to(h, MESH)


def test_prefix_advertisements_attach_communities() -> None:
    extra = (
        "  communities: [{name: rack-a, value: '64512:100'}, {name: big, value: '64512:1:2'}]\n"
        "  prefix_advertisements:\n"
        "    - {cidr: 10.20.1.0/24, communities: [rack-a, big]}\n"
        "    - {cidr: 10.20.0.0/16, communities: ['64512:300']}\n"
    )
    text = (
        "node: {name: h, address: 192.168.100.3/24, asn: 64512}\n"
        f"bgp:\n  peers: [{{address: 192.168.100.1, asn: 65001}}]\n{extra}"
        "pools: [{cidr: 10.20.0.0/16}]\n"
    )
    h = started(text, TOR)
    h.kernel(
        RouteAdded(KernelRoute(BLOCK, "blackhole", 80, MAIN, None, (), 0)),
        RouteAdded(KernelRoute(BORROWED, "unicast", 3, MAIN, "cali1234", (), 0)),
    )
    attrs = {p: c.attrs for c in h.changes if isinstance(c, Announce) for p in c.prefixes}
    assert attrs[BLOCK].communities == ("64512:100", "64512:300")
    assert attrs[BLOCK].large_communities == ("64512:1:2",)
    assert attrs[BORROWED].communities == ("64512:300",) and not attrs[BORROWED].large_communities
    line = next(x for x in h.sent if "10.20.1.0/26" in x)
    assert "community [ 64512:100 64512:300 ]" in line and "large-community [ 64512:1:2 ]" in line


def test_filter_change_by_reload_resets_no_session() -> None:
    h = host(", filters: [tor]", FILTERS)
    announce(h, TOR, THEIRS, OTHER)
    h.changes.clear()
    added, removed, changed = h.engine.reconfigure(config.parse(_text("")))
    assert (added, removed, changed) == ([], [], [])
    h.flush()
    assert sent_to(h, TOR) == {BLOCK}  # the block, rejected before, is announced to the ToR now
    assert RouteRefresh(TOR, 4) in h.changes  # for OTHER, rejected on import before
    assert not any(isinstance(c, RouteRefresh) and c.peer == MESH for c in h.changes)
    # and back: the block is withdrawn from the ToR only, OTHER's path goes
    h.changes.clear()
    announce(h, TOR, OTHER)
    assert OTHER in h.engine.fib.wanted
    h.engine.reconfigure(config.parse(_text(", filters: [tor]", FILTERS)))
    h.flush()
    assert Withdraw(4, [BLOCK], (TOR,)) in h.changes
    assert OTHER not in h.engine.fib.wanted


def _text(peer_extra: str, extra: str = "") -> str:
    return (
        "node: {name: h, address: 192.168.100.3/24, asn: 64512}\n"
        "bgp:\n"
        "  mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3]}\n"
        f"  peers: [{{address: 192.168.100.1, asn: 65001{peer_extra}}}]\n"
        f"{extra}"
        "pools: [{cidr: 10.20.0.0/16}]\n"
    )


# ---------------------------------------------------------------------- reflection

C1, C2, NONCLIENT = address("192.168.100.11"), address("192.168.100.12"), address("192.168.100.20")


def reflector(peer_extra: str = "", extra: str = "") -> Harness:
    text = (
        "node: {name: rr, address: 192.168.100.2/24, asn: 64512}\n"
        f"bgp:\n  peers: [{{address: 192.168.100.20, asn: 64512{peer_extra}}}]\n{extra}"
        "pools: [{cidr: 10.20.0.0/16}]\n"
        "reflector: {cluster_id: 1.0.0.1, clients: [192.168.100.11, 192.168.100.12]}\n"
    )
    return started(text, C1, C2, NONCLIENT)


def reflected_to(h: Harness, peer: object, p: object) -> Announce | None:
    found = None
    for change in h.changes:
        if isinstance(change, Announce) and p in change.prefixes and change.peers and peer in change.peers:
            found = change
    return found


def test_no_advertise_is_reflected_to_nobody() -> None:
    h = reflector()
    announce(h, C1, THEIRS, as_path=(), communities=("65535:65282",))
    announce(h, C1, OTHER, as_path=(), communities=("64512:7",))
    h.flush()
    assert reflected_to(h, C2, THEIRS) is None and reflected_to(h, NONCLIENT, THEIRS) is None
    assert reflected_to(h, C2, OTHER) is not None  # other communities are reflected unchanged
    assert reflected_to(h, C2, OTHER).attrs.communities == ("64512:7",)  # type: ignore[union-attr]


def test_reflection_honours_export_filters_and_next_hop_self() -> None:
    h = reflector(", filters: [tor], next_hop_mode: self", FILTERS)
    announce(h, C1, THEIRS, prefix("10.20.1.0/26"), as_path=())
    h.flush()
    to_nonclient = reflected_to(h, NONCLIENT, THEIRS)
    assert to_nonclient is not None and to_nonclient.next_hop == address("192.168.100.2")  # self
    assert reflected_to(h, C2, THEIRS).next_hop == C1  # type: ignore[union-attr]  # kept for the client
    assert reflected_to(h, NONCLIENT, prefix("10.20.1.0/26")) is None  # its export filter rejects it
    assert reflected_to(h, C2, prefix("10.20.1.0/26")) is not None


def test_exabgp_attaching_replays_each_group_through_its_filters() -> None:
    h = host(", filters: [tor]", FILTERS)
    h.changes.clear()
    h.engine.exabgp_attached()
    h.flush()
    assert sent_to(h, TOR) == {BORROWED} and sent_to(h, MESH) == {BLOCK, BORROWED}


# ---------------------------------------------------------------------- routes sent on (RFC 4271 §9.2)

TOR2 = address("192.168.100.5")  # a second eBGP peer, AS 65002


def two_tors_text(peer_extra: str = "", extra: str = "") -> str:
    """A mesh host with two eBGP peers (the second with `peer_extra`), top-level `extra` before its pools."""
    return (
        "node: {name: h, address: 192.168.100.3/24, asn: 64512}\n"
        "bgp:\n"
        "  mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3]}\n"
        "  peers:\n"
        "    - {address: 192.168.100.1, asn: 65001}\n"
        f"    - {{address: 192.168.100.5, asn: 65002{peer_extra}}}\n"
        f"{extra}"
        "pools: [{cidr: 10.20.0.0/16}]\n"
    )


def two_tors(peer_extra: str = "") -> Harness:
    return started(two_tors_text(peer_extra), TOR, TOR2, MESH)


def test_ebgp_learned_routes_go_to_ibgp_and_other_ebgp_sessions() -> None:
    h = two_tors()
    announce(h, TOR, THEIRS, as_path=(65001,), med=7, communities=("65001:7",))
    h.flush()
    to_mesh, to_tor2 = reflected_to(h, MESH, THEIRS), reflected_to(h, TOR2, THEIRS)
    assert reflected_to(h, TOR, THEIRS) is None  # never back to its source
    assert to_mesh is not None and to_mesh.next_hop == TOR  # iBGP: next hop and attributes kept
    assert to_mesh.attrs.as_path == (65001,) and to_mesh.attrs.med == 7
    assert to_tor2 is not None
    assert to_tor2.attrs.as_path == (64512, 65001)  # our AS prepended
    assert to_tor2.attrs.med is None and to_tor2.attrs.local_pref is None
    assert to_tor2.attrs.communities == ("65001:7",)
    assert to_tor2.next_hop == TOR  # auto: the next hop is on the subnet shared with TOR2: kept


def test_ibgp_learned_routes_go_to_ebgp_sessions_only() -> None:
    h = two_tors(", next_hop_mode: self")
    announce(h, MESH, THEIRS, as_path=(), local_pref=200)
    announce(h, MESH, OTHER, as_path=(), communities=("65535:65281",))  # NO_EXPORT
    h.flush()
    assert reflected_to(h, TOR, THEIRS).next_hop == MESH  # type: ignore[union-attr]
    assert reflected_to(h, TOR2, THEIRS).next_hop == address("192.168.100.3")  # type: ignore[union-attr]
    assert reflected_to(h, TOR, THEIRS).attrs.as_path == (64512,)  # type: ignore[union-attr]
    assert reflected_to(h, TOR, OTHER) is None and reflected_to(h, TOR2, OTHER) is None
    h.changes.clear()
    h.withdraw(MESH, THEIRS)
    h.flush()
    assert any(isinstance(c, Withdraw) and THEIRS in c.prefixes and TOR in (c.peers or ()) for c in h.changes)


def test_a_next_hop_off_the_shared_subnet_is_replaced_by_ours_on_ebgp() -> None:
    h = two_tors()
    announce(h, MESH, THEIRS, as_path=())
    h.feed(codec.Update(MESH, 64512, (codec.Announced(OTHER, address("10.99.0.1"), Attributes()),)))
    h.flush()
    assert reflected_to(h, TOR, THEIRS).next_hop == MESH  # type: ignore[union-attr]
    assert reflected_to(h, TOR, OTHER).next_hop == address("192.168.100.3")  # type: ignore[union-attr]


def test_a_mesh_host_without_ebgp_sessions_sends_nothing_on() -> None:
    h = host()
    h.engine.reconfigure(
        config.parse(
            "node: {name: h, address: 192.168.100.3/24, asn: 64512}\n"
            "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3]}}\n"
            "pools: [{cidr: 10.20.0.0/16}]\n"
        )
    )
    h.changes.clear()
    announce(h, MESH, THEIRS, as_path=())
    h.flush()
    assert not any(THEIRS in getattr(c, "prefixes", ()) for c in h.changes)


def test_export_filtered_counts_and_a_peer_added_by_reload_gets_withdrawals() -> None:
    h = host(", filters: [tor]", FILTERS)
    assert h.engine.exported_to(TOR) == (1, 1) and h.engine.exported_to(MESH) == (2, 0)
    text = _text(", filters: [tor]}, {address: 192.168.100.5, asn: 65002, filters: [tor]", FILTERS)
    h.engine.reconfigure(config.parse(text))
    h.flush()
    h.up(TOR2)
    h.eor(TOR2)  # its table is replayed at its End-of-RIB (a neighbor new to ExaBGP)
    assert sent_to(h, TOR2) == {BORROWED}
    h.changes.clear()
    h.kernel(RouteRemoved(KernelRoute(BORROWED, "unicast", 3, MAIN, "cali1234", (), 0)))
    assert sent_to(h, TOR2) == set() and any(
        isinstance(c, Withdraw) and BORROWED in c.prefixes and TOR2 in (c.peers or ()) for c in h.changes
    )


def test_new_prefix_advertisements_by_reload_reannounce_with_the_new_communities() -> None:
    h = host()
    h.changes.clear()
    extra = "  prefix_advertisements: [{cidr: 10.20.0.0/16, communities: ['64512:42']}]\n"
    h.engine.reconfigure(config.parse(_text("", "").replace("pools:", extra + "pools:")))
    h.flush()
    announced = {p: c.attrs.communities for c in h.changes if isinstance(c, Announce) for p in c.prefixes}
    assert announced == {BLOCK: ("64512:42",), BORROWED: ("64512:42",)}


def test_ipv6_ebgp_works_the_same() -> None:
    """The same rules over an IPv6 eBGP session: AS loop, v6 filters both ways, communities, routes sent on
    (the IPv6 next hop kept or replaced by node.address6), nothing crossing families."""
    text = (
        "node: {name: h, address: 192.168.100.3/24, address6: 'fd00:100::3', asn: 64512}\n"
        "bgp:\n"
        "  mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3, 'fd00:100::3', 'fd00:100::10']}\n"
        "  peers:\n"
        "    - {address: 'fd00:100::1', asn: 65001, filters: [v6]}\n"
        "    - {address: 'fd00:100::5', asn: 65002}\n"
        "  prefix_advertisements: [{cidr: 'fd00:10:20::/48', communities: ['64512:6']}]\n"
        "filters:\n  - name: v6\n"
        "    import_v6: [{action: Reject, match_operator: In, cidr: 'fd00:10:20:6::/64'}]\n"
        "    export_v6: [{action: Reject, match_operator: Equal, cidr: 'fd00:10:20:1::/122'}]\n"
        "pools: [{cidr: 10.20.0.0/16}, {cidr: 'fd00:10:20::/48'}]\n"
    )
    tor6, tor6b, mesh6 = address("fd00:100::1"), address("fd00:100::5"), address("fd00:100::10")
    h = started(text, tor6, tor6b, mesh6, MESH)
    block6, borrowed6 = prefix("fd00:10:20:1::/122"), prefix("fd00:10:20:9::3/128")
    h.kernel(
        RouteAdded(KernelRoute(block6, "blackhole", 80, MAIN, None, (), 1024)),
        RouteAdded(KernelRoute(borrowed6, "unicast", 3, MAIN, "cali1234", (), 1024)),
    )
    assert sent_to(h, tor6) == {borrowed6} and sent_to(h, tor6b) == {block6, borrowed6}
    assert not any(isinstance(c, Announce) and c.family == 6 and MESH in (c.peers or ()) for c in h.changes)
    attrs = {p: c.attrs for c in h.changes if isinstance(c, Announce) for p in c.prefixes}
    assert attrs[block6].communities == ("64512:6",)
    theirs6, other6 = prefix("fd00:10:20:5::/122"), prefix("fd00:10:20:6::/122")
    announce(h, tor6, theirs6, other6)
    announce(h, tor6, prefix("fd00:10:20:7::/122"), as_path=(65001, 64512))
    assert rejected(h, tor6) == {"filter": 1, "as_loop": 1}
    assert h.engine.fib.wanted[theirs6] == (tor6,) and other6 not in h.engine.fib.wanted
    h.flush()
    to_mesh6, to_tor6b = reflected_to(h, mesh6, theirs6), reflected_to(h, tor6b, theirs6)
    assert to_mesh6 is not None and to_mesh6.next_hop == tor6  # iBGP: kept
    assert to_tor6b is not None and to_tor6b.attrs.as_path == (64512, 65001)
    assert to_tor6b.next_hop == address("fd00:100::3")  # auto: no IPv6 subnet is known: ours
    assert reflected_to(h, MESH, theirs6) is None  # never over the IPv4 session
