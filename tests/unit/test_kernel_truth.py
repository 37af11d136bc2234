"""The engine's kernel bookkeeping with plain objects: what the kernel reports about bgpd's own routes is
what bgpd believes, and every difference from what it wants becomes a repair, counted by cause; for IPv4
(IPv4-only and dual-stack hosts) and IPv6.

Driven with watcher events, the kernel operations written back as successful by the test (no netlink);
the end-to-end versions of these cases are in tests/e2e/test_kernel_truth.py. The last tests drive the I/O
shell (`bgpd.speaker.Speaker`) itself: how it hands the engine's kernel operations to the kernel, and the
kernel's events to the engine."""

from __future__ import annotations

import asyncio
from collections.abc import Container, Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from bgpd import config
from bgpd.engine import KernelOp
from bgpd.engine.fib import RETRY_FAILED_AFTER, RETRY_TIMER, SETTLE_TIMER
from bgpd.exabgp import codec
from bgpd.metrics import Latency
from bgpd.model import (
    Address,
    Attributes,
    KernelRoute,
    LinkLost,
    LinkUp,
    OpResult,
    Prefix,
    RouteAdded,
    RouteRemoved,
    Snapshot,
)
from bgpd.speaker import Speaker
from tests.unit.conftest import ASN, CONFIG4, FAM4, Harness

OWN, METRIC, MAIN = 12, 32, 254


def ours(prefix: Prefix, *gateways: Address, metric: int = METRIC) -> KernelRoute:
    return KernelRoute(prefix, "unicast", OWN, MAIN, "eth0", tuple(sorted(gateways)), metric)


def learn(h: Harness, prefix: Prefix | None = None, eor: bool = True) -> Prefix:
    """The peer comes up and announces `prefix` (default: block 1); the route is installed."""
    peer = h.fam.peer
    prefix = h.fam.block(1) if prefix is None else prefix
    h.up(peer)
    h.announce(peer, prefix)
    h.settle()
    if eor:
        h.eor(peer)
    assert h.engine.fib.installed[prefix] == (peer,)
    h.applied.clear()
    return prefix


def repairs(h: Harness) -> dict[str, int]:
    return {cause: n for cause, n in h.engine.fib.repairs.items() if n}


def settle(h: Harness) -> list[KernelOp]:
    """Write what is due; every operation written so far (since `learn`)."""
    h.settle()
    return h.applied


def test_route_deleted_by_somebody_is_put_back(host: Harness) -> None:
    peer = host.fam.peer
    block = learn(host)
    host.kernel(RouteRemoved(ours(block, peer)))
    assert settle(host) == [(block, (peer,))]
    assert repairs(host) == {"deleted": 1} and host.engine.fib.installed == {block: (peer,)}


def test_route_replaced_by_somebody_is_restored(host: Harness) -> None:
    peer, other = host.fam.peer, host.fam.addr(99)
    block = learn(host)
    host.kernel(RouteAdded(ours(block, other)))
    assert host.engine.fib.installed[block] == (other,)  # what the kernel holds, until repaired
    assert settle(host) == [(block, (peer,))]
    assert host.replaced == [block]  # ours, as the kernel told: replaced directly
    assert repairs(host) == {"changed": 1} and host.engine.fib.installed == {block: (peer,)}


def test_unwanted_route_of_our_protocol_is_removed_but_not_at_another_metric(host: Harness) -> None:
    peer = host.fam.peer
    learn(host)
    stray = host.fam.block(9)
    host.kernel(RouteAdded(ours(stray, peer)), RouteAdded(ours(stray, peer, metric=50)))
    assert settle(host) == [(stray, None)]
    assert repairs(host) == {"unwanted": 1} and stray not in host.engine.fib.installed


def test_unwanted_route_before_the_deferral_ends_waits_for_it(host: Harness) -> None:
    peer = host.fam.peer
    learn(host, eor=False)  # no End-of-RIB yet: the selection deferral is not over
    stray = host.fam.block(9)
    host.kernel(RouteAdded(ours(stray, peer)))
    assert settle(host) == [] and stray in host.engine.fib.stale_kernel
    host.eor(peer)
    assert settle(host) == [(stray, None)]


def test_route_deleted_then_withdrawn_is_not_put_back(host: Harness) -> None:
    peer = host.fam.peer
    block = learn(host)
    stray = host.fam.block(9)
    host.kernel(RouteAdded(ours(stray, peer)))
    settle(host)
    host.applied.clear()
    host.kernel(RouteRemoved(ours(block, peer)))
    host.withdraw(peer, block)  # and withdrawn meanwhile
    assert settle(host) == [(block, None)]  # the report may be stale: one delete makes sure (ESRCH)
    assert host.engine.fib.installed == {} and repairs(host) == {"unwanted": 1, "deleted": 1}


def test_overflow_snapshot_is_the_truth(host: Harness) -> None:
    peer = host.fam.peer
    block = learn(host)
    stray = host.fam.block(9)
    host.kernel(Snapshot((ours(stray, peer),), "overflow"))
    assert sorted(settle(host), key=str) == sorted([(block, (peer,)), (stray, None)], key=str)
    assert repairs(host) == {"overflow": 1, "unwanted": 1}


def test_link_loss_audits_only_when_it_flushed_a_network_of_our_next_hops(host: Harness) -> None:
    learn(host)
    fib = host.engine.fib
    workload = KernelRoute(host.fam.host(5, 5), "unicast", 3, MAIN, "cali1", (), 0)
    host.kernel(LinkLost(7, "cali1", (workload,), (), flushed=True))  # a pod's veth went
    assert fib.audit_cause is None and SETTLE_TIMER not in host.timers.armed
    underlay = (host.fam.underlay(),)
    host.kernel(LinkLost(2, "eth0", (), underlay, flushed=False))  # a VIP left, or carrier
    assert fib.audit_cause is None and SETTLE_TIMER not in host.timers.armed
    host.kernel(LinkLost(2, "eth0", (), underlay, flushed=True))
    assert fib.audit_cause == "link" and SETTLE_TIMER in host.timers.armed
    assert fib.take_audit() == "link" and fib.audit_cause is None
    host.fire(SETTLE_TIMER)  # the second look, when the kernel's flush is surely over
    assert fib.audit_cause == "link"


def test_audit_repairs_what_vanished_silently(host: Harness) -> None:
    peer = host.fam.peer
    block = learn(host)
    fib = host.engine.fib
    fib.request_audit("link")
    cause = fib.take_audit()  # the shell's kernel writer: dump our routes, in the background
    assert cause == "link"
    fib.begin_background()
    host.engine.kernel_reread({}, cause)  # flushed by the kernel without a word
    assert repairs(host) == {"link": 1} and fib.installed == {}
    assert settle(host) == [(block, (peer,))]


def test_change_by_somebody_during_a_background_write_leaves_the_route_unknown(host: Harness) -> None:
    """A route deleted by somebody after the writer thread wrote it, reported before the write's results:
    the results must not make bgpd believe it is installed."""
    peer = host.fam.peer
    block = learn(host)
    fib = host.engine.fib
    fib.begin_background()  # the writer thread is writing a batch that includes the block
    host.kernel(RouteRemoved(ours(block, peer)))
    host.engine.kernel_written([(block, (peer,))], [OpResult(block, ok=True)])
    assert block not in fib.installed and block in fib.unknown
    assert settle(host) == [(block, (peer,))]  # written again although `want` equals the record
    assert host.replaced == []  # unknown: created, with the installer's ownership check
    assert fib.installed == {block: (peer,)} and not fib.unknown


def test_end_of_rib_waits_for_the_selection_deferral(host: Harness) -> None:
    peer = host.fam.peer
    host.up(peer)
    assert host.eors() == []
    host.eor(peer)
    assert host.eors() == [host.fam.eor_line(peer)]


def test_a_restarting_peer_is_not_waited_for(host: Harness) -> None:
    peer = host.fam.peer
    host.up(peer, restarting=True)
    assert host.eors() == [host.fam.eor_line(peer)]


def test_our_route_displaced_by_a_foreign_one_and_back(host: Harness) -> None:
    """An event replaces whatever sat at its key (prefix, table, metric), whatever the protocol."""
    peer, other = host.fam.peer, host.fam.addr(99)
    block = learn(host)
    fib = host.engine.fib
    static = KernelRoute(block, "unicast", 4, MAIN, "eth0", (other,), METRIC)
    host.kernel(RouteAdded(static))  # `ip route replace ... proto static metric 32`
    assert block not in fib.installed and block in fib.collisions | set(fib.foreign)
    assert settle(host) == [(block, None)]  # ours is not there: the delete names our protocol (ESRCH)
    assert block not in host.replaced
    host.kernel(RouteAdded(ours(block, peer)))  # `ip route replace ... proto bird` over it
    assert block not in fib.foreign and fib.installed == {block: (peer,)}


def test_changes_for_prefixes_held_by_a_foreign_route_are_never_plain_replacements(host: Harness) -> None:
    peer, other = host.fam.peer, host.fam.addr(99)
    block = learn(host)
    host.kernel(RouteAdded(KernelRoute(block, "unicast", 4, MAIN, "eth0", (other,), 50)))
    assert host.engine.fib.ours([(block, (peer,))]) == frozenset()


def test_failed_changes_have_one_retry_timer_and_link_up_retries_at_most_once_a_second(
    host: Harness,
) -> None:
    peer = host.fam.peer
    block = learn(host)
    p2 = host.fam.block(2)
    fib = host.engine.fib
    for prefix in (block, p2):
        host.engine.kernel_written([(prefix, (peer,))], [OpResult(prefix, ok=False, error="ENETUNREACH")])
    assert host.timers.armed == {RETRY_TIMER: RETRY_FAILED_AFTER} and fib.retry_pending == {block, p2}
    host.kernel(LinkUp(3, "eth0"))
    assert RETRY_TIMER not in host.timers.armed and not fib.retry_pending
    assert fib.retrying == {block, p2} and {block, p2} <= fib.dirty  # for the writer thread
    host.engine.kernel_written([(block, (peer,))], [OpResult(block, ok=False, error="ENETUNREACH")])
    host.kernel(LinkUp(3, "eth0"))  # within a second of the last retry: the timer waits
    assert fib.retry_pending == {block} and RETRY_TIMER in host.timers.armed
    host.fire(RETRY_TIMER)
    assert not fib.retry_pending and fib.retrying == {block, p2} and RETRY_TIMER not in host.timers.armed


# ---------------------------------------------------------------------- the I/O shell


class RecordingInstaller:
    """Stands in for RouteInstaller: every change succeeds and is recorded."""

    portid = 1234

    def __init__(self) -> None:
        self.applied: list[KernelOp] = []

    def apply(self, ops: Sequence[KernelOp], ours: Container[Prefix] = ()) -> list[OpResult]:
        self.applied += ops
        return [OpResult(prefix, ok=True) for prefix, _ in ops]


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[tuple[Speaker, RecordingInstaller]]:
    """The IPv4 host's I/O shell with a recording installer and an event loop run by the test, no ExaBGP,
    the kernel's start snapshot read."""
    cfg = config.parse(CONFIG4 + f"runtime: {{dir: {tmp_path / 'run'}}}\n")
    sp = Speaker(cfg, Latency(CollectorRegistry()))
    installer = RecordingInstaller()
    sp.installer = installer  # type: ignore[assignment]
    loop = asyncio.new_event_loop()
    sp._loop = loop
    sp.on_kernel_events([Snapshot((), "start")])
    try:
        yield sp, installer
    finally:
        sp._kexec.shutdown(wait=True)
        loop.close()


def test_retried_changes_go_through_the_writer_thread_never_inline(
    shell: tuple[Speaker, RecordingInstaller],
) -> None:
    """A retried change may fail again, and the installer's retries sleep: not on the event loop."""
    sp, installer = shell
    peer, block = FAM4.peer, FAM4.block(1)
    sp.on_event(FAM4.open(peer))
    sp.on_event(codec.PeerState(peer, ASN, "up"))
    sp.on_event(codec.Update(peer, ASN, (codec.Announced(block, peer, Attributes()),)))
    assert sp._install_inline() and installer.applied == [(block, (peer,))]  # a few changes: inline
    installer.applied.clear()
    sp.engine.kernel_written([(block, (peer,))], [OpResult(block, ok=False, error="ENETUNREACH")])
    sp.on_kernel_events([LinkUp(3, "eth0")])  # retried now, by the writer
    assert sp.engine.fib.retrying == {block}
    assert not sp._install_inline() and installer.applied == []


def test_kernel_events_are_handled_in_order_a_slice_per_loop_turn(
    shell: tuple[Speaker, RecordingInstaller], monkeypatch: pytest.MonkeyPatch
) -> None:
    import bgpd.speaker as speaker_module

    sp, _ = shell
    monkeypatch.setattr(speaker_module, "KERNEL_EVENTS_PER_TURN", 2)
    seen: list[list[object]] = []
    original = sp.on_kernel_events

    def record(events: list[object], received: float | None = None) -> None:
        seen.append(list(events))
        if len(seen) == 2:
            raise RuntimeError("a bug in one slice")
        original(events, received)  # type: ignore[arg-type]

    monkeypatch.setattr(sp, "on_kernel_events", record)
    routes = [KernelRoute(FAM4.host(9, i), "unicast", 3, MAIN, "cali1", (), 0) for i in range(5)]
    sp._queue_kernel_events([RouteAdded(r) for r in routes[:3]], 0.0)
    sp._queue_kernel_events([RouteAdded(r) for r in routes[3:]], 0.0)
    assert sp._loop is not None
    sp._loop.call_soon(sp._loop.stop)
    sp._loop.run_forever()  # one turn: the first slice only
    assert len(seen) == 1
    for _ in range(4):
        sp._loop.call_soon(sp._loop.stop)
        sp._loop.run_forever()
    flat = [event.route for batch in seen for event in batch]  # type: ignore[attr-defined]
    assert flat == routes  # in order, each once, although the second slice raised


def test_a_failed_watcher_is_started_again_with_growing_pauses_while_starts_fail(
    shell: tuple[Speaker, RecordingInstaller], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher stopped reading (bgpd blind to the kernel): a new one starts after WATCHER_RETRY_FIRST,
    the pause doubling while starts fail; the one that starts is the speaker's, and the restarts count."""
    import bgpd.speaker as speaker_module

    sp, _ = shell
    loop = sp._loop
    assert loop is not None
    starts: list[float] = []

    class Watcher:
        def __init__(self, *_args: object, **kwargs: object) -> None:
            self.on_failure = kwargs["on_failure"]

        def start(self, _loop: asyncio.AbstractEventLoop) -> None:
            starts.append(loop.time())
            if len(starts) < 3:
                raise OSError("ENOBUFS")  # the subscription or its dump refused

        def stop(self) -> None:
            pass

    monkeypatch.setattr(speaker_module, "RouteWatcher", Watcher)
    monkeypatch.setattr(speaker_module, "WATCHER_RETRY_FIRST", 0.01)
    sp._on_watcher_failed(OSError("the netlink socket failed"))
    t0 = loop.time()
    end = t0 + 10.0
    while len(starts) < 3:
        assert loop.time() < end, "the watcher was not started again"
        loop.run_until_complete(asyncio.sleep(0.005))
    gaps = [starts[0] - t0, starts[1] - starts[0], starts[2] - starts[1]]
    assert gaps[1] >= 0.02 and gaps[2] >= 0.04  # 0.01 s, then doubling while starts failed
    assert isinstance(sp.watcher, Watcher) and sp.watcher.on_failure == sp._on_watcher_failed
    assert sp.engine.counters["kernel_watcher_failures"] == 1
    loop.run_until_complete(asyncio.sleep(0.1))
    assert len(starts) == 3  # started: no more attempts
