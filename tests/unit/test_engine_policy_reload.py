"""Policy through reloads and kernel changes (issue 13): a filter's rules changed under the same name,
withdrawals pending during a reload, the last eBGP session removed, a local AS change, a device change
under an interface rule. Each case failed before its fix (found by review)."""

from __future__ import annotations

from bgpd import config
from bgpd.engine.outputs import RouteRefresh, Withdraw
from bgpd.exabgp import codec
from bgpd.model import KernelRoute, RouteAdded, RouteRemoved
from tests.unit.conftest import FAM4, Harness
from tests.unit.test_engine_policy import (
    BLOCK,
    BORROWED,
    FILTERS,
    MAIN,
    MESH,
    THEIRS,
    TOR,
    TOR2,
    _text,
    announce,
    host,
    reflected_to,
    sent_to,
    two_tors,
    two_tors_text,
)


def withdrawn_from(h: Harness, peer: object, p: object) -> bool:
    return any(
        isinstance(c, Withdraw) and p in c.prefixes and (c.peers is None or peer in c.peers)
        for c in h.changes
    )


# 1 ------------------------------------------------------------------------------------------------
# A filter's rules changed by reload (same filter name on the peer): nothing is re-evaluated.

FILTERS_CHANGED = """filters:
  - name: tor
    export_v4: [{action: Reject, match_operator: Equal, cidr: 10.20.9.3/32}]
    import_v4: []
"""


def test_filter_rules_changed_by_reload_reevaluate_export_and_import() -> None:
    h = host(", filters: [tor]", FILTERS)
    assert sent_to(h, TOR) == {BORROWED}
    h.engine.reconfigure(config.parse(_text(", filters: [tor]", FILTERS_CHANGED)))
    h.flush()
    # the new rules reject BORROWED and no longer reject BLOCK
    assert sent_to(h, TOR) == {BLOCK}, sent_to(h, TOR)


def test_filter_rules_changed_by_reload_ask_route_refresh() -> None:
    h = host(", filters: [tor]", FILTERS)
    h.changes.clear()
    h.engine.reconfigure(config.parse(_text(", filters: [tor]", FILTERS_CHANGED)))
    h.flush()
    # import_v4 no longer rejects 10.20.6.0/24: the peer must be asked for its table again
    assert RouteRefresh(TOR, 4) in h.changes, h.changes


def test_filter_rules_changed_by_reload_reevaluate_routes_sent_on() -> None:
    h = Harness(config.parse(_two(FILTERS_NONE)), FAM4)  # TOR2's filter rejects nothing
    h.start()
    for peer in (TOR, TOR2, MESH):
        h.up(peer)
        h.eor(peer)
    announce(h, MESH, THEIRS, as_path=())
    h.flush()
    assert reflected_to(h, TOR2, THEIRS) is not None
    h.changes.clear()
    h.engine.reconfigure(config.parse(_two(FILTERS_THEIRS)))  # now it rejects THEIRS
    h.flush()
    assert withdrawn_from(h, TOR2, THEIRS), h.changes


FILTERS_NONE = """filters:
  - name: tor
    export_v4: []
"""
FILTERS_THEIRS = """filters:
  - name: tor
    export_v4: [{action: Reject, match_operator: Equal, cidr: 10.20.5.0/26}]
"""


def _two(filters: str) -> str:
    return two_tors_text(", filters: [tor]", filters)


# 2 ------------------------------------------------------------------------------------------------
# A withdrawal of our own route queued when a reload runs never reaches the filtered group.


def test_reload_with_export_rule_change_withdraws_from_filtered_sessions() -> None:
    h = host(", filters: [tor]", FILTERS)
    assert sent_to(h, TOR) == {BORROWED}
    # the pool stops being exported: every route of ours goes, from every session
    text = _text(", filters: [tor]", FILTERS).replace(
        "pools: [{cidr: 10.20.0.0/16}]", "pools: [{cidr: 10.20.0.0/16, export: false}]"
    )
    h.engine.reconfigure(config.parse(text))
    h.flush()
    assert sent_to(h, MESH) == set()  # the unfiltered group is told
    assert sent_to(h, TOR) == set(), sent_to(h, TOR)  # the filtered one is not


def test_kernel_withdrawal_pending_at_reload_reaches_filtered_sessions() -> None:
    h = host(", filters: [tor]", FILTERS)
    assert sent_to(h, TOR) == {BORROWED}
    # the kernel route goes; before the Adj-RIB-Out is handed over, an unchanged config is reloaded
    h.engine.kernel_events([RouteRemoved(KernelRoute(BORROWED, "unicast", 3, MAIN, "cali1234", (), 0))])
    h.engine.reconfigure(config.parse(_text(", filters: [tor]", FILTERS)))
    h.flush()
    assert sent_to(h, MESH) == {BLOCK}
    assert sent_to(h, TOR) == set(), sent_to(h, TOR)


# 3 ------------------------------------------------------------------------------------------------
# The last eBGP session removed by reload: the iBGP sessions keep the routes learned from it.


def test_removing_the_only_ebgp_peer_withdraws_its_routes_from_ibgp_peers() -> None:
    h = host()
    announce(h, TOR, THEIRS)
    h.flush()
    assert reflected_to(h, MESH, THEIRS) is not None  # sent on to the mesh
    h.changes.clear()
    h.engine.reconfigure(
        config.parse(
            "node: {name: h, address: 192.168.100.3/24, asn: 64512}\n"
            "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3]}}\n"
            "pools: [{cidr: 10.20.0.0/16}]\n"
        )
    )
    h.flush()
    assert THEIRS not in h.engine.fib.wanted  # we no longer route it ...
    assert withdrawn_from(h, MESH, THEIRS), h.changes  # ... but MESH is never told
    assert THEIRS not in h.engine.adjout.sent(MESH)


# 5 ------------------------------------------------------------------------------------------------
# local_asn changed by reload (the session resets, eBGP stays eBGP): routes sent on keep the old AS.


def test_local_asn_change_prepends_the_new_as_on_routes_sent_on() -> None:
    h = two_tors()
    announce(h, MESH, THEIRS, as_path=())
    h.flush()
    assert reflected_to(h, TOR2, THEIRS).attrs.as_path == (64512,)  # type: ignore[union-attr]
    h.engine.reconfigure(config.parse(two_tors_text(", local_asn: 64999")))
    h.flush()
    h.feed(codec.PeerState(TOR2, 65002, "down", "reconfigured"))
    h.up(TOR2)
    h.eor(TOR2)
    assert reflected_to(h, TOR2, THEIRS).attrs.as_path == (64999,), reflected_to(h, TOR2, THEIRS)  # type: ignore[union-attr]


# 6 ------------------------------------------------------------------------------------------------
# An `interface` export rule is not re-evaluated when the route's device changes in place.

IFACE = """filters:
  - name: tor
    export_v4: [{action: Reject, interface: 'cali*'}]
"""


def test_interface_export_filter_follows_a_device_change() -> None:
    h = host(", filters: [tor]", IFACE)
    assert BORROWED not in sent_to(h, TOR)  # on cali1234: rejected
    # `ip route replace 10.20.9.3/32 dev eth1`: same kernel key, another device
    h.kernel(RouteAdded(KernelRoute(BORROWED, "unicast", 3, MAIN, "eth1", (), 0)))
    assert BORROWED in sent_to(h, TOR), sent_to(h, TOR)
