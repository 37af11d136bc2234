"""Graceful restart helper (RFC 4724 §4.2) in the engine: driven with decoded events, no ExaBGP, no kernel;
for IPv4 (IPv4-only and dual-stack hosts) and IPv6 (an IPv6 peer sending /122 blocks).

A peer that advertised graceful restart and drops its session without a NOTIFICATION keeps its paths
(stale) until it is back and sends End-of-RIB, or its restart time passes; otherwise they go at once."""

from __future__ import annotations

from bgpd.exabgp import codec
from bgpd.model import Address, Attributes, Origin, Prefix
from tests.unit.conftest import ASN, Harness

ATTRS = Attributes(origin=Origin.IGP, local_pref=100)


def deadline(peer: Address) -> tuple[str, Address]:
    return ("stale", peer)


def blocks(h: Harness) -> tuple[Prefix, Prefix]:
    return h.fam.block(1), h.fam.block(2)


def up_with(h: Harness, *prefixes: Prefix, restart_time: int | None = 120) -> None:
    peer = h.fam.peer
    h.feed(h.fam.open(peer, restart_time))
    h.feed(codec.PeerState(peer, ASN, "up"))
    announced = tuple(codec.Announced(p, peer, ATTRS) for p in prefixes)
    h.feed(codec.Update(peer, ASN, announced))


def down(h: Harness) -> None:
    h.feed(codec.PeerState(h.fam.peer, ASN, "down", "peer reset"))


def fib(h: Harness) -> set[Prefix]:
    """The prefixes the decision process wants in the kernel."""
    return set(h.engine.fib.wanted)


def test_session_drop_keeps_paths_until_end_of_rib_then_removes_the_ones_not_resent(host: Harness) -> None:
    peer, (p1, p2) = host.fam.peer, blocks(host)
    up_with(host, p1, p2)
    assert fib(host) == {p1, p2}
    assert host.engine.fib.wanted[p1] == (peer,)
    down(host)
    assert fib(host) == {p1, p2} and host.engine.stale_paths_of(peer) == {p1, p2}
    up_with(host, p1)  # back; re-sends only P1
    assert host.engine.stale_paths_of(peer) == {p2} and fib(host) == {p1, p2}
    host.feed(codec.EndOfRib(peer, host.fam.version))
    assert fib(host) == {p1} and not host.engine.stale_paths_of(peer)
    assert deadline(peer) not in host.timers.armed


def test_restart_time_passing_withdraws_the_stale_paths(host: Harness) -> None:
    peer, (p1, _) = host.fam.peer, blocks(host)
    up_with(host, p1)
    down(host)
    assert fib(host) == {p1} and host.timers.armed[deadline(peer)] == 120
    host.fire(deadline(peer))  # the deadline passing
    assert fib(host) == set() and not host.engine.stale_paths_of(peer)
    assert deadline(peer) not in host.timers.armed


def test_notification_means_no_graceful_restart(host: Harness) -> None:
    peer, (p1, _) = host.fam.peer, blocks(host)
    up_with(host, p1)
    host.feed(codec.Notification(peer, 6, 2))
    down(host)
    assert fib(host) == set() and deadline(peer) not in host.timers.armed


def test_peer_without_the_capability_loses_its_paths_at_once(host: Harness) -> None:
    up_with(host, blocks(host)[0], restart_time=None)
    down(host)
    assert fib(host) == set()


def test_capability_for_the_other_family_only_is_no_graceful_restart(host: Harness) -> None:
    """The Graceful Restart Capability counts for the session's own family (RFC 4724 §3: per AFI/SAFI)."""
    peer, (p1, _) = host.fam.peer, blocks(host)
    rid = host.fam.open(peer).router_id
    opened: codec.PeerOpen[Address]
    if peer.version == 4:  # the capability lists IPv6 unicast only
        opened = codec.PeerOpen(peer, ASN, rid, 9, restart_time6=120, forwarding_kept6=True)
    else:  # IPv4 unicast only
        opened = codec.PeerOpen(peer, ASN, rid, 9, restart_time=120, forwarding_kept=True)
    host.feed(opened, codec.PeerState(peer, ASN, "up"))
    host.feed(codec.Update(peer, ASN, (codec.Announced(p1, peer, ATTRS),)))
    down(host)
    assert fib(host) == set() and deadline(peer) not in host.timers.armed


def test_peer_back_without_its_forwarding_state_loses_the_stale_paths_at_once(host: Harness) -> None:
    peer = host.fam.peer
    up_with(host, *blocks(host))
    down(host)
    host.feed(host.fam.open(peer, 120, forwarding=False))
    assert fib(host) == set() and deadline(peer) not in host.timers.armed


def test_consecutive_restart_deletes_what_was_already_stale(host: Harness) -> None:
    """RFC 4724 §4.2: "a route (from the peer) previously marked as stale MUST be deleted"."""
    peer, (p1, p2) = host.fam.peer, blocks(host)
    up_with(host, p1)
    down(host)
    up_with(host, p2)  # back, sends a new prefix, then drops again before End-of-RIB
    down(host)
    assert fib(host) == {p2} and host.engine.stale_paths_of(peer) == {p2}
    host.fire(deadline(peer))  # P2's restart time (armed afresh by the second drop)
    assert fib(host) == set()


def test_a_notification_we_sent_means_no_graceful_restart(host: Harness) -> None:
    """Our hold timer expired (a host lost power): ExaBGP sends a NOTIFICATION and reports it only in
    the reason of the state change."""
    peer = host.fam.peer
    up_with(host, blocks(host)[0])
    host.feed(codec.PeerState(peer, ASN, "down", "peer reset, message [notification sent (4,0)]"))
    assert fib(host) == set() and deadline(peer) not in host.timers.armed


def test_failed_attempts_while_restarting_keep_the_stale_paths(host: Harness) -> None:
    peer, (p1, _) = host.fam.peer, blocks(host)
    up_with(host, p1)
    down(host)
    host.feed(codec.PeerState(peer, ASN, "connected"))
    down(host)  # the reconnection failed before the session came up: still the same restart
    assert fib(host) == {p1} and host.engine.stale_paths_of(peer) == {p1}


def test_exabgp_restart_deadline_is_per_peer_and_a_later_peer_restart_keeps_its_own(host: Harness) -> None:
    peer, (p1, _) = host.fam.peer, blocks(host)
    up_with(host, p1, restart_time=90)
    host.engine.exabgp_lost()  # bgpd's own ExaBGP died: stale until the sessions are back
    assert fib(host) == {p1}
    assert host.timers.armed[deadline(peer)] == host.cfg.kernel.stale_timeout == 120
    up_with(host, p1, restart_time=90)
    host.feed(codec.EndOfRib(peer, host.fam.version))
    assert deadline(peer) not in host.timers.armed and not host.engine.stale_paths_of(peer)
    down(host)  # later, the peer restarts: its own restart time, not a leftover deadline
    assert fib(host) == {p1} and host.timers.armed[deadline(peer)] == 90


def test_reload_that_resets_a_changed_peer_is_not_a_graceful_restart(host: Harness) -> None:
    up_with(host, blocks(host)[0])
    host.engine.peers[host.fam.peer].ungraceful = True  # what reload sets for a session ExaBGP resets
    down(host)
    assert fib(host) == set()


def test_stale_paths_stay_installed_through_the_restart(host: Harness) -> None:
    """The kernel keeps the routes of a restarting peer (no kernel operation) and loses only those it did
    not re-send, at its End-of-RIB."""
    peer, (p1, p2) = host.fam.peer, blocks(host)
    up_with(host, p1, p2)
    assert sorted(host.settle(), key=str) == sorted([(p1, (peer,)), (p2, (peer,))], key=str)
    down(host)
    assert host.settle() == []
    up_with(host, p1)
    assert host.settle() == []
    host.feed(codec.EndOfRib(peer, host.fam.version))
    assert host.settle() == [(p2, None)] and host.engine.fib.installed == {p1: (peer,)}
