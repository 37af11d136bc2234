"""SelectionDeferral (RFC 4724 §4.1) with plain objects, and a property test against a model."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st

from bgpd.rib.deferral import SelectionDeferral

A, B, C = IPv4Address("192.168.100.10"), IPv4Address("192.168.100.11"), IPv4Address("192.168.100.12")


def test_no_peers_completes_at_start() -> None:
    d = SelectionDeferral([])
    assert d.start() and d.done and d.how == "no peers"
    assert not d.expire()  # once only


def test_waits_for_end_of_rib_of_every_peer_even_one_not_connected_yet() -> None:
    """The issue's case: the restarted reflector hears from .10 first; .11 comes back later."""
    d = SelectionDeferral([A, B])
    assert not d.start()
    assert not d.opened(A, graceful=True, restarting=False)
    assert not d.end_of_rib(A)  # B has not even connected: its routes are unknown
    assert not d.done and d.waiting == {B}
    assert not d.opened(B, graceful=True, restarting=False)
    assert d.end_of_rib(B) and d.done and d.how == "end-of-rib"


def test_peer_without_graceful_restart_or_restarting_itself_is_not_waited_for() -> None:
    d = SelectionDeferral([A, B, C])
    assert not d.opened(A, graceful=False, restarting=False)  # sends no End-of-RIB to wait for
    assert not d.opened(B, graceful=True, restarting=True)  # defers its own: waiting would deadlock
    assert d.waiting == {C}
    assert d.end_of_rib(C)


def test_stale_route_wait_includes_restarting_peers() -> None:
    """The whole cluster restarts: every OPEN has the Restart State bit. End-of-RIB is not held back for
    them, but the routes through them stay until they have re-sent their tables."""
    eor, stale = SelectionDeferral([A, B]), SelectionDeferral([A, B], exclude_restarting=False)
    assert not eor.opened(A, graceful=True, restarting=True)
    assert eor.opened(B, graceful=True, restarting=True) and eor.how == "open"
    assert not stale.opened(A, graceful=True, restarting=True)
    assert not stale.opened(B, graceful=True, restarting=True) and stale.waiting == {A, B}
    assert not stale.end_of_rib(A) and stale.end_of_rib(B) and stale.how == "end-of-rib"


def test_timer_ends_the_wait() -> None:
    d = SelectionDeferral([A, B])
    d.end_of_rib(A)
    assert d.expire() and d.done and d.how == "timer"
    assert not d.end_of_rib(B)


def test_removed_peer_is_not_waited_for() -> None:
    d = SelectionDeferral([A, B])
    d.end_of_rib(A)
    assert d.forget(B) and d.done and d.how == "removed"


_events = st.lists(
    st.tuples(
        st.sampled_from(["open", "eor", "forget", "expire"]),
        st.sampled_from([A, B, C]),
        st.booleans(),
        st.booleans(),
    ),
    max_size=20,
)


@given(st.sets(st.sampled_from([A, B, C])), _events, st.booleans())
def test_completes_exactly_when_the_model_says(
    peers: set[IPv4Address],
    events: list,  # type: ignore[type-arg]
    exclude_restarting: bool,
) -> None:
    """Model: done once every peer is accounted for (eor / no GR / restarting if excluded / forgotten) or
    on expiry; True is returned exactly once, by the event that completed it."""
    d = SelectionDeferral(peers, exclude_restarting)
    completions = int(d.start())
    accounted: set[IPv4Address] = set()
    expired = False
    for kind, peer, graceful, restarting in events:
        if kind == "open":
            completed = d.opened(peer, graceful, restarting)
            if not graceful or (restarting and exclude_restarting):
                accounted.add(peer)
        elif kind == "eor":
            completed = d.end_of_rib(peer)
            accounted.add(peer)
        elif kind == "forget":
            completed = d.forget(peer)
            accounted.add(peer)
        else:
            completed = d.expire()
            expired = True
        completions += completed
        assert d.done == (expired or peers <= accounted)
    assert completions == int(d.done)


def test_ipv6_sessions_are_peers_of_their_own() -> None:
    """Dual stack (issue 11): a node's IPv4 and IPv6 sessions are two peers, each completing only itself,
    even an IPv6 address with the integer of an IPv4 one."""
    a6, twin = IPv6Address("fd00:100::10"), IPv6Address(int(A))
    d = SelectionDeferral([A, a6, twin])
    assert not d.start()
    assert not d.end_of_rib(A)
    assert d.waiting == {a6, twin}
    assert not d.opened(twin, graceful=False, restarting=False)
    assert d.waiting == {a6}
    assert d.end_of_rib(a6) and d.how == "end-of-rib"
