"""Graceful restart helper (RFC 4724 §4.2) in the speaker: driven with decoded events, no ExaBGP, no kernel.

A peer that advertised graceful restart and drops its session without a NOTIFICATION keeps its paths
(stale) until it is back and sends End-of-RIB, or its restart time passes; otherwise they go at once."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from bgpd.exabgp import codec
from bgpd.model import Attributes, Origin
from bgpd.speaker import Speaker

PEER = IPv4Address("192.168.100.10")
ASN = 64512
P1, P2 = IPv4Network("10.20.1.0/26"), IPv4Network("10.20.2.0/26")
ATTRS = Attributes(origin=Origin.IGP, local_pref=100)


def opened(restart_time: int | None, forwarding: bool = True) -> codec.PeerOpen:
    return codec.PeerOpen(PEER, ASN, IPv4Address("10.0.0.10"), 9, restart_time, forwarding)


def up_with(sp: Speaker, *prefixes: IPv4Network, restart_time: int | None = 120) -> None:
    sp._on_event(opened(restart_time))
    sp._on_event(codec.PeerState(PEER, ASN, "up"))
    announced = tuple(codec.Announced(p, PEER, ATTRS) for p in prefixes)
    sp._on_event(codec.Update(PEER, ASN, announced))


def down(sp: Speaker) -> None:
    sp._on_event(codec.PeerState(PEER, ASN, "down", "peer reset"))


def fire_restart_timer(sp: Speaker) -> None:
    handle = sp._restart_timers[PEER]
    handle._callback(*handle._args)  # type: ignore[attr-defined]  # the deadline passing


def test_session_drop_keeps_paths_until_end_of_rib_then_removes_the_ones_not_resent(speaker: Speaker) -> None:
    up_with(speaker, P1, P2)
    assert set(speaker.fib) == {P1, P2}
    down(speaker)
    assert set(speaker.fib) == {P1, P2} and speaker.stale_paths_of(PEER) == {P1, P2}
    up_with(speaker, P1)  # back; re-sends only P1
    assert speaker.stale_paths_of(PEER) == {P2} and set(speaker.fib) == {P1, P2}
    speaker._on_event(codec.EndOfRib(PEER))
    assert set(speaker.fib) == {P1} and not speaker.stale_paths_of(PEER)
    assert PEER not in speaker._restart_timers


def test_restart_time_passing_withdraws_the_stale_paths(speaker: Speaker) -> None:
    up_with(speaker, P1)
    down(speaker)
    assert set(speaker.fib) == {P1}
    fire_restart_timer(speaker)
    assert speaker.fib == {} and not speaker.stale_paths_of(PEER)


def test_notification_means_no_graceful_restart(speaker: Speaker) -> None:
    up_with(speaker, P1)
    speaker._on_event(codec.Notification(PEER, 6, 2))
    down(speaker)
    assert speaker.fib == {} and PEER not in speaker._restart_timers


def test_peer_without_the_capability_loses_its_paths_at_once(speaker: Speaker) -> None:
    up_with(speaker, P1, restart_time=None)
    down(speaker)
    assert speaker.fib == {}


def test_peer_back_without_its_forwarding_state_loses_the_stale_paths_at_once(speaker: Speaker) -> None:
    up_with(speaker, P1, P2)
    down(speaker)
    speaker._on_event(opened(120, forwarding=False))
    assert speaker.fib == {} and PEER not in speaker._restart_timers


def test_consecutive_restart_deletes_what_was_already_stale(speaker: Speaker) -> None:
    """RFC 4724 §4.2: "a route (from the peer) previously marked as stale MUST be deleted"."""
    up_with(speaker, P1)
    down(speaker)
    up_with(speaker, P2)  # back, sends a new prefix, then drops again before End-of-RIB
    down(speaker)
    assert set(speaker.fib) == {P2} and speaker.stale_paths_of(PEER) == {P2}
    fire_restart_timer(speaker)  # P2's restart time (armed afresh by the second drop)
    assert speaker.fib == {}


def test_a_notification_we_sent_means_no_graceful_restart(speaker: Speaker) -> None:
    """Our hold timer expired (a host lost power): ExaBGP sends a NOTIFICATION and reports it only in
    the reason of the state change."""
    up_with(speaker, P1)
    speaker._on_event(codec.PeerState(PEER, ASN, "down", "peer reset, message [notification sent (4,0)]"))
    assert speaker.fib == {} and PEER not in speaker._restart_timers


def test_failed_attempts_while_restarting_keep_the_stale_paths(speaker: Speaker) -> None:
    up_with(speaker, P1)
    down(speaker)
    speaker._on_event(codec.PeerState(PEER, ASN, "connected"))
    down(speaker)  # the reconnection failed before the session came up: still the same restart
    assert set(speaker.fib) == {P1} and speaker.stale_paths_of(PEER) == {P1}


def test_exabgp_restart_deadline_is_per_peer_and_a_later_peer_restart_keeps_its_own(speaker: Speaker) -> None:
    up_with(speaker, P1)
    speaker._on_exabgp_disconnect()  # bgpd's own ExaBGP died: stale until the sessions are back
    assert set(speaker.fib) == {P1} and PEER in speaker._restart_timers
    up_with(speaker, P1)
    speaker._on_event(codec.EndOfRib(PEER))
    assert PEER not in speaker._restart_timers and not speaker.stale_paths_of(PEER)
    down(speaker)  # later, the peer restarts: its own restart time, not a leftover deadline
    (handle,) = [speaker._restart_timers[PEER]]
    assert set(speaker.fib) == {P1} and handle.when() - speaker._loop.time() > 60  # type: ignore[union-attr]


def test_reload_that_resets_a_changed_peer_is_not_a_graceful_restart(speaker: Speaker) -> None:
    up_with(speaker, P1)
    speaker.peers[PEER].ungraceful = True  # what reload sets for a session ExaBGP is about to reset
    down(speaker)
    assert speaker.fib == {}
