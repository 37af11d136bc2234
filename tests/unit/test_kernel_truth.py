"""The speaker's kernel bookkeeping with plain objects: what the kernel reports about bgpd's own routes is
what bgpd believes, and every difference from what it wants becomes a repair, counted by cause.

Driven with watcher events and a recording installer (no netlink); the end-to-end versions of these cases
are in tests/e2e/test_kernel_truth.py."""

from __future__ import annotations

from collections.abc import Container, Sequence
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest

from bgpd.exabgp import codec
from bgpd.kernel import LinkLost, LinkUp, OpResult, RouteAdded, RouteRemoved, Snapshot
from bgpd.model import Attributes, KernelRoute
from bgpd.speaker import Speaker

PEER = IPv4Address("192.168.100.10")
OTHER = IPv4Address("192.168.100.99")
ASN = 64512
BLOCK = IPv4Network("10.20.1.0/26")
OWN, METRIC, MAIN = 12, 32, 254


class RecordingInstaller:
    """Stands in for RouteInstaller: every change succeeds and is recorded."""

    portid = 1234

    def __init__(self) -> None:
        self.applied: list[tuple[IPv4Network, tuple[IPv4Address, ...] | None]] = []
        self.held: dict[IPv4Network, tuple[IPv4Address, ...]] = {}
        self.replaced: list[IPv4Network] = []  # changes sent as replacements of a route known to be ours

    def apply(
        self,
        ops: Sequence[tuple[IPv4Network, tuple[IPv4Address, ...] | None]],
        ours: Container[IPv4Network] = (),
    ) -> list[OpResult]:
        self.applied += ops
        self.replaced += [p for p, hops in ops if hops is not None and p in ours]
        return [OpResult(prefix, ok=True) for prefix, _ in ops]

    def dump_own(self) -> dict[IPv4Network, tuple[IPv4Address, ...]]:
        return dict(self.held)


@pytest.fixture
def truth(speaker: Speaker) -> Speaker:
    """The shared hand-driven speaker with a recording installer, a recorded ExaBGP pipe, and the kernel's
    start snapshot read."""
    speaker.installer = RecordingInstaller()  # type: ignore[assignment]
    sent: list[str] = []
    speaker.exabgp.send = sent.extend  # type: ignore[method-assign]
    speaker.sent = sent  # type: ignore[attr-defined]
    speaker.on_kernel_events([Snapshot((), "start")])
    return speaker


def installer(sp: Speaker) -> RecordingInstaller:
    assert isinstance(sp.installer, RecordingInstaller)
    return sp.installer


def ours(prefix: IPv4Network, *gateways: IPv4Address, metric: int = METRIC) -> KernelRoute:
    return KernelRoute(prefix, "unicast", OWN, MAIN, "eth0", tuple(sorted(gateways)), metric)


def learn(sp: Speaker, prefix: IPv4Network = BLOCK, eor: bool = True) -> None:
    """The peer comes up and announces `prefix`; the route is installed (the installer records it)."""
    sp._on_event(codec.PeerOpen(PEER, ASN, PEER, 9, 120, True, restarting=False))
    sp._on_event(codec.PeerState(PEER, ASN, "up"))
    sp._on_event(codec.Update(PEER, ASN, (codec.Announced(prefix, PEER, Attributes(local_pref=100)),)))
    sp._install_inline()
    if eor:
        sp._on_event(codec.EndOfRib(PEER))
    assert sp.installed[prefix] == (PEER,)
    installer(sp).applied.clear()


def repairs(sp: Speaker) -> dict[str, int]:
    return {cause: n for cause, n in sp.repairs.items() if n}


def settle(sp: Speaker) -> list[Any]:
    sp._install_inline()
    return installer(sp).applied


def test_route_deleted_by_somebody_is_put_back(truth: Speaker) -> None:
    learn(truth)
    truth.on_kernel_events([RouteRemoved(ours(BLOCK, PEER))])
    assert settle(truth) == [(BLOCK, (PEER,))]
    assert repairs(truth) == {"deleted": 1} and truth.installed == {BLOCK: (PEER,)}


def test_route_replaced_by_somebody_is_restored(truth: Speaker) -> None:
    learn(truth)
    truth.on_kernel_events([RouteAdded(ours(BLOCK, OTHER))])
    assert truth.installed[BLOCK] == (OTHER,)  # what the kernel holds, until repaired
    assert settle(truth) == [(BLOCK, (PEER,))]
    assert installer(truth).replaced == [BLOCK]  # ours, as the kernel told: replaced directly
    assert repairs(truth) == {"changed": 1} and truth.installed == {BLOCK: (PEER,)}


def test_unwanted_route_of_our_protocol_is_removed_but_not_at_another_metric(truth: Speaker) -> None:
    learn(truth)
    stray = IPv4Network("10.20.9.0/24")
    truth.on_kernel_events([RouteAdded(ours(stray, PEER)), RouteAdded(ours(stray, PEER, metric=50))])
    assert settle(truth) == [(stray, None)]
    assert repairs(truth) == {"unwanted": 1} and stray not in truth.installed


def test_unwanted_route_before_the_deferral_ends_waits_for_it(truth: Speaker) -> None:
    learn(truth, eor=False)  # no End-of-RIB yet: the selection deferral is not over
    stray = IPv4Network("10.20.9.0/24")
    truth.on_kernel_events([RouteAdded(ours(stray, PEER))])
    assert settle(truth) == [] and stray in truth.stale_kernel
    truth._on_event(codec.EndOfRib(PEER))
    assert settle(truth) == [(stray, None)]


def test_route_deleted_then_withdrawn_is_not_put_back(truth: Speaker) -> None:
    learn(truth)
    stray = IPv4Network("10.20.9.0/24")
    truth.on_kernel_events([RouteAdded(ours(stray, PEER))])
    settle(truth)
    installer(truth).applied.clear()
    truth.on_kernel_events([RouteRemoved(ours(BLOCK, PEER))])
    truth._on_event(codec.Update(PEER, ASN, (), (BLOCK,)))  # and withdrawn meanwhile
    assert settle(truth) == [(BLOCK, None)]  # the report may be stale: one delete makes sure (ESRCH)
    assert truth.installed == {} and repairs(truth) == {"unwanted": 1, "deleted": 1}


def test_overflow_snapshot_is_the_truth(truth: Speaker) -> None:
    learn(truth)
    stray = IPv4Network("10.20.9.0/24")
    truth.on_kernel_events([Snapshot((ours(stray, PEER),), "overflow")])
    assert sorted(settle(truth), key=str) == sorted([(BLOCK, (PEER,)), (stray, None)], key=str)
    assert repairs(truth) == {"overflow": 1, "unwanted": 1}


def test_link_loss_audits_only_when_it_flushed_a_network_of_our_next_hops(truth: Speaker) -> None:
    learn(truth)
    workload = KernelRoute(IPv4Network("10.20.5.5/32"), "unicast", 3, MAIN, "cali1", (), 0)
    truth.on_kernel_events([LinkLost(7, "cali1", (workload,), (), flushed=True)])  # a pod's veth went
    assert truth._audit_cause is None
    underlay = (IPv4Network("192.168.100.0/24"),)
    truth.on_kernel_events([LinkLost(2, "eth0", (), underlay, flushed=False)])  # a VIP left, or carrier
    assert truth._audit_cause is None
    truth.on_kernel_events([LinkLost(2, "eth0", (), underlay, flushed=True)])
    assert truth._audit_cause == "link"


def test_audit_repairs_what_vanished_silently(truth: Speaker) -> None:
    learn(truth)
    assert truth._loop is not None
    installer(truth).held = {}  # flushed by the kernel without a word
    truth._audit_cause = "link"
    truth._loop.run_until_complete(truth._audit(installer(truth)))
    assert repairs(truth) == {"link": 1} and truth.installed == {}
    assert settle(truth) == [(BLOCK, (PEER,))]


def test_change_by_somebody_during_a_background_write_leaves_the_route_unknown(truth: Speaker) -> None:
    """A route deleted by somebody after the writer thread wrote it, reported before the write's results:
    the results must not make bgpd believe it is installed."""
    learn(truth)
    truth._kernel_busy = True  # the writer thread is writing a batch that includes BLOCK
    truth.on_kernel_events([RouteRemoved(ours(BLOCK, PEER))])
    truth._kernel_busy = False
    truth._kernel_results([(BLOCK, (PEER,))], [OpResult(BLOCK, ok=True)], None)
    assert BLOCK not in truth.installed and BLOCK in truth._unknown
    assert settle(truth) == [(BLOCK, (PEER,))]  # written again although `want` equals the record
    assert installer(truth).replaced == []  # unknown: created, with the installer's ownership check
    assert truth.installed == {BLOCK: (PEER,)} and not truth._unknown


def test_end_of_rib_waits_for_the_selection_deferral(truth: Speaker) -> None:
    sent: list[str] = truth.sent  # type: ignore[attr-defined]
    truth._on_event(codec.PeerOpen(PEER, ASN, PEER, 9, 120, True, restarting=False))
    truth._on_event(codec.PeerState(PEER, ASN, "up"))
    assert not [line for line in sent if "eor" in line]
    truth._on_event(codec.EndOfRib(PEER))
    assert [line for line in sent if "eor" in line] == [codec.eor_line(PEER)]


def test_a_restarting_peer_is_not_waited_for(truth: Speaker) -> None:
    sent: list[str] = truth.sent  # type: ignore[attr-defined]
    truth._on_event(codec.PeerOpen(PEER, ASN, PEER, 9, 120, True, restarting=True))
    truth._on_event(codec.PeerState(PEER, ASN, "up"))
    assert [line for line in sent if "eor" in line] == [codec.eor_line(PEER)]


def test_our_route_displaced_by_a_foreign_one_and_back(truth: Speaker) -> None:
    """An event replaces whatever sat at its key (prefix, table, metric), whatever the protocol."""
    learn(truth)
    static = KernelRoute(BLOCK, "unicast", 4, MAIN, "eth0", (OTHER,), METRIC)
    truth.on_kernel_events([RouteAdded(static)])  # `ip route replace ... proto static metric 32`
    assert BLOCK not in truth.installed and BLOCK in truth.collisions | set(truth._foreign)
    assert settle(truth) == [(BLOCK, None)]  # ours is not there: the delete names our protocol (ESRCH)
    assert BLOCK not in installer(truth).replaced
    truth.on_kernel_events([RouteAdded(ours(BLOCK, PEER))])  # `ip route replace ... proto bird` over it
    assert BLOCK not in truth._foreign and truth.installed == {BLOCK: (PEER,)}


def test_changes_for_prefixes_held_by_a_foreign_route_are_never_plain_replacements(truth: Speaker) -> None:
    learn(truth)
    truth.on_kernel_events([RouteAdded(KernelRoute(BLOCK, "unicast", 4, MAIN, "eth0", (OTHER,), 50))])
    assert truth._ours([(BLOCK, (PEER,))]) == frozenset()


def test_failed_changes_have_one_retry_timer_and_link_up_retries_at_most_once_a_second(
    truth: Speaker,
) -> None:
    learn(truth)
    p2 = IPv4Network("10.20.2.0/26")
    for prefix in (BLOCK, p2):
        truth._kernel_results([(prefix, (PEER,))], [OpResult(prefix, ok=False, error="ENETUNREACH")], None)
    timer = truth._retry_timer
    assert timer is not None and truth._retry_pending == {BLOCK, p2}
    truth.on_kernel_events([LinkUp(3, "eth0")])
    assert timer.cancelled() and truth._retry_timer is None and not truth._retry_pending
    assert truth._retrying == {BLOCK, p2}
    assert settle(truth) == []  # retried changes go through the writer thread, never inline
    truth._kernel_results([(BLOCK, (PEER,))], [OpResult(BLOCK, ok=False, error="ENETUNREACH")], None)
    truth.on_kernel_events([LinkUp(3, "eth0")])  # within a second of the last retry: the timer waits
    assert truth._retry_pending == {BLOCK} and truth._retry_timer is not None


def test_kernel_events_are_handled_in_order_a_slice_per_loop_turn(
    truth: Speaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bgpd.speaker as speaker_module

    monkeypatch.setattr(speaker_module, "KERNEL_EVENTS_PER_TURN", 2)
    seen: list[list[object]] = []
    original = truth.on_kernel_events

    def record(events: list[object], received: float | None = None) -> None:
        seen.append(list(events))
        if len(seen) == 2:
            raise RuntimeError("a bug in one slice")
        original(events, received)  # type: ignore[arg-type]

    monkeypatch.setattr(truth, "on_kernel_events", record)
    routes = [
        KernelRoute(IPv4Network(f"10.20.9.{i}/32"), "unicast", 3, MAIN, "cali1", (), 0) for i in range(5)
    ]
    truth._queue_kernel_events([RouteAdded(r) for r in routes[:3]], 0.0)
    truth._queue_kernel_events([RouteAdded(r) for r in routes[3:]], 0.0)
    assert truth._loop is not None
    truth._loop.call_soon(truth._loop.stop)
    truth._loop.run_forever()  # one turn: the first slice only
    assert len(seen) == 1
    for _ in range(4):
        truth._loop.call_soon(truth._loop.stop)
        truth._loop.run_forever()
    flat = [event.route for batch in seen for event in batch]  # type: ignore[attr-defined]
    assert flat == routes  # in order, each once, although the second slice raised
