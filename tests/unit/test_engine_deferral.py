"""Selection deferral in the engine (RFC 4724 §4.1), driven with decoded ExaBGP events: End-of-RIB waits
for the peers' tables, goes after everything reflected, and stale kernel routes wait for restarting peers;
for IPv4 (IPv4-only and dual-stack nodes) and IPv6 (IPv6 sessions, IPv6 blocks, End-of-RIB for IPv6)."""

from __future__ import annotations

import dataclasses

import pytest

from bgpd.engine.core import DEFER_TIMER
from bgpd.exabgp import codec
from bgpd.model import Attributes
from tests.unit.conftest import ASN, Fam, Harness, make_harness

REFLECTOR4 = (
    "node: {name: rr, address: 192.168.100.2, asn: 64512}\n"
    "reflector: {cluster_id: 1.0.0.1, clients: [192.168.100.10, 192.168.100.11]}\n"
    "pools: [{cidr: 10.20.0.0/16}]\n"
)
REFLECTOR_DUAL = (
    "node: {name: rr, address: 192.168.100.2, address6: 'fd00:100::2', asn: 64512}\n"
    "reflector: {cluster_id: 1.0.0.1, clients: [192.168.100.10, 192.168.100.11, 'fd00:100::10', "
    "'fd00:100::11']}\n"
    "pools: [{cidr: 10.20.0.0/16}, {cidr: 'fd00:10:20::/48'}]\n"
)
HOST4 = (
    "node: {name: h, address: 192.168.100.3, asn: 64512}\n"
    "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.11, 192.168.100.3]}}\n"
    "pools: [{cidr: 10.20.0.0/16}]\n"
)
HOST_DUAL = (
    "node: {name: h, address: 192.168.100.3, address6: 'fd00:100::3', asn: 64512}\n"
    "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.11, 192.168.100.3, 'fd00:100::3', "
    "'fd00:100::10', 'fd00:100::11']}}\n"
    "pools: [{cidr: 10.20.0.0/16}, {cidr: 'fd00:10:20::/48'}]\n"
)
V4 = ("192.168.100.10", "192.168.100.11")
V6 = ("fd00:100::10", "fd00:100::11")


def variants(v4_only: str, dual: str) -> list[Fam]:
    return [
        Fam("ipv4", 4, v4_only, V4),
        Fam("ipv4-dual", 4, dual, V4, V6),
        Fam("ipv6", 6, dual, V6, V4),
    ]


@pytest.fixture(params=variants(REFLECTOR4, REFLECTOR_DUAL), ids=lambda f: f.name)
def reflector(request: pytest.FixtureRequest) -> Harness:
    return make_harness(request.param)


@pytest.fixture(params=variants(HOST4, HOST_DUAL), ids=lambda f: f.name)
def host_fam(request: pytest.FixtureRequest) -> Fam:
    result: Fam = request.param
    return result


def test_reflector_holds_end_of_rib_until_the_late_client_sent_its_table(reflector: Harness) -> None:
    """The issue's case: .10 is back, .11 not yet: .10 gets no End-of-RIB (it keeps .11's routes)."""
    h = reflector
    c10, c11 = h.fam.peers
    h.up(c10)
    h.eor(c10)
    assert h.eors() == [] and h.engine.deferral.waiting == {c11}
    h.up(c11)
    block = h.fam.block(11)
    update = codec.Update(c11, ASN, (codec.Announced(block, c11, Attributes(local_pref=100)),))
    h.feed(update, codec.EndOfRib(c11, h.fam.version))  # in the same read: no output carried in between
    to_c10 = h.lines_to(c10)
    assert str(block) in to_c10[0] and f"next-hop {c11} " in to_c10[0]  # reflected, its next hop kept
    assert to_c10[-1] == h.fam.eor_line(c10)  # the route, then End-of-RIB
    assert h.eors() == [h.fam.eor_line(c10), h.fam.eor_line(c11)]


def test_whole_cluster_restart_sends_end_of_rib_but_keeps_stale_routes(host_fam: Fam) -> None:
    """Every peer restarts too (Restart State bit): End-of-RIB is not held back for them (they wait for
    ours), but the kernel routes through them stay until they have re-sent their tables."""
    c10, c11 = host_fam.peers
    stale = host_fam.block(10)
    h = make_harness(host_fam, own={stale: (c10,)})  # a route of our earlier run
    fib = h.engine.fib
    h.up(c10, restarting=True)
    h.up(c11, restarting=True)
    assert sorted(h.eors()) == sorted([h.fam.eor_line(c10), h.fam.eor_line(c11)])
    assert not fib.reconciled and h.engine.stale_wait.waiting == {c10, c11}
    assert h.settle() == [] and fib.installed == {stale: (c10,)}
    h.eor(c10)
    assert not fib.reconciled and h.settle() == []
    h.eor(c11)
    assert fib.reconciled and fib.stale_kernel == set()
    assert h.settle() == [(stale, None)] and fib.installed == {}
    assert DEFER_TIMER not in h.timers.armed


def test_stale_kernel_route_learned_again_is_kept(host_fam: Fam) -> None:
    c10, c11 = host_fam.peers
    stale, gone = host_fam.block(10), host_fam.block(12)
    h = make_harness(host_fam, own={stale: (c10,), gone: (c11,)})
    h.up(c10)
    h.announce(c10, stale)
    h.eor(c10)
    h.up(c11)
    h.eor(c11)
    assert h.engine.fib.reconciled and h.settle() == [(gone, None)]
    assert h.engine.fib.installed == {stale: (c10,)}


def test_deferral_timer_ends_both_waits(host_fam: Fam) -> None:
    h = make_harness(host_fam)
    c10, _ = h.fam.peers
    assert h.timers.armed[DEFER_TIMER] == h.cfg.bgp.select_defer_time
    h.up(c10)
    assert h.eors() == []
    h.fire(DEFER_TIMER)
    assert h.eors() == [h.fam.eor_line(c10)] and h.engine.fib.reconciled


def test_a_graceful_restart_aware_peer_is_waited_for(host_fam: Fam) -> None:
    """A peer with the Graceful Restart Capability but no families (BIRD's default, "aware") sends
    End-of-RIB (RFC 4724 §3): the routes of our earlier run stay until it has (a kill -9 against BIRD
    removed them at its OPEN and wrote them again a moment later); without the capability, they go at once."""
    c10, c11 = host_fam.peers
    stale = host_fam.block(10)
    h = make_harness(host_fam, own={stale: (c10,)})
    aware = dataclasses.replace(h.fam.open(c10, None), graceful_capability=True)
    h.feed(aware, codec.PeerState(c10, ASN, "up"))
    h.feed(h.fam.open(c11, None), codec.PeerState(c11, ASN, "up"))  # no capability: not waited for
    assert not h.engine.fib.reconciled and h.engine.stale_wait.waiting == {c10}
    assert h.settle() == [] and h.engine.fib.installed == {stale: (c10,)}
    h.announce(c10, stale)
    h.eor(c10)
    assert h.engine.fib.reconciled and h.settle() == []
    assert h.engine.fib.installed == {stale: (c10,)}
