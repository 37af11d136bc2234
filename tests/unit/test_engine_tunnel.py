"""IP-in-IP through the engine (issue 12): the kernel form of learned routes per pool mode, next hop inside or
outside the local subnet, single path or ECMP; VXLAN pools left to Felix; a mode change on reload rewritten
in place; routes waiting for a missing or down `tunl0` and written when it comes up; `tunl0` routes never
exported. Plain objects only (the engine's `Harness`); the kernel side is in tests/kernel and tests/e2e.
"""

from __future__ import annotations

import pytest

from bgpd import config
from bgpd.config import EncapMode
from bgpd.engine.fib import RETRY_FAILED_AFTER, RETRY_MAX, RETRY_TIMER
from bgpd.model import Hop, KernelRoute, LinkLost, LinkUp, OpResult, RouteAdded
from tests.unit.conftest import FAM4, Harness, address, prefix

INSIDE = address("192.168.100.10")  # same rack: inside 192.168.100.0/24
OUTSIDE = address("192.168.200.10")  # other rack: behind a router
BLOCK_IN = prefix("10.20.1.0/26")
BLOCK_OUT = prefix("10.20.2.0/26")
ECMP = prefix("10.20.9.9/32")
VXLAN_BLOCK = prefix("10.30.1.0/26")
PROTO = 12


def config_text(mode: EncapMode, address: str = "192.168.100.3/24") -> str:
    return (
        f"node: {{name: h, address: {address}, asn: 64512}}\n"
        "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3, 192.168.200.10]}}\n"
        f"pools: [{{cidr: 10.20.0.0/16, ipip: {mode}}}, {{cidr: 10.30.0.0/16, vxlan: always}}]\n"
        "kernel: {protocol: bird}\n"
    )


def started(mode: EncapMode, address: str = "192.168.100.3/24", subnet: str | None = None) -> Harness:
    h = Harness(config.parse(config_text(mode, address)), FAM4)
    h.start(subnet=None if subnet is None else prefix(subnet))
    for peer in (INSIDE, OUTSIDE):
        h.up(peer)
    h.announce(INSIDE, BLOCK_IN, ECMP, VXLAN_BLOCK)
    h.announce(OUTSIDE, BLOCK_OUT, ECMP)
    for peer in (INSIDE, OUTSIDE):
        h.eor(peer)
    return h


def tunnel(gateway: object) -> Hop:
    return Hop(gateway, "tunl0", True)  # type: ignore[arg-type]


EXPECTED = {
    # mode: (inside next hop, outside next hop, ECMP over both)
    "never": ((INSIDE,), (OUTSIDE,), (INSIDE, OUTSIDE)),
    "always": ((tunnel(INSIDE),), (tunnel(OUTSIDE),), (tunnel(INSIDE), tunnel(OUTSIDE))),
    "cross-subnet": ((INSIDE,), (tunnel(OUTSIDE),), (INSIDE, tunnel(OUTSIDE))),
}


@pytest.mark.parametrize("mode", ["never", "always", "cross-subnet"])
def test_route_form_per_mode_next_hop_place_and_ecmp(mode: EncapMode) -> None:
    h = started(mode)
    ops = dict(h.settle())
    inside, outside, ecmp = EXPECTED[mode]
    assert ops[BLOCK_IN] == inside
    assert ops[BLOCK_OUT] == outside
    assert ops[ECMP] == ecmp  # every next hop that needs the tunnel gets it (not Calico issue 4462)
    assert VXLAN_BLOCK not in ops  # Felix's: nothing installed
    assert h.engine.fib.installed[BLOCK_OUT] == outside


def test_subnet_from_the_kernel_when_the_address_has_no_length() -> None:
    # 192.168.100.3 without a length: the interface holds it as /16, so 192.168.200.10 is inside too
    h = started("cross-subnet", "192.168.100.3", subnet="192.168.0.0/16")
    ops = dict(h.settle())
    assert ops[BLOCK_OUT] == (OUTSIDE,)
    assert h.engine.subnet == prefix("192.168.0.0/16")


def test_no_subnet_known_tunnels_every_next_hop() -> None:
    h = started("cross-subnet", "192.168.100.3")
    ops = dict(h.settle())
    assert (ops[BLOCK_IN], ops[BLOCK_OUT]) == ((tunnel(INSIDE),), (tunnel(OUTSIDE),))


@pytest.mark.parametrize(
    ("old", "new"), [("never", "always"), ("always", "cross-subnet"), ("always", "never")]
)
def test_mode_change_on_reload_replaces_the_routes_in_place(old: EncapMode, new: EncapMode) -> None:
    h = started(old)
    h.settle()
    h.replaced.clear()
    h.engine.reconfigure(config.parse(config_text(new)))
    ops = dict(h.settle())
    changed = {p for p in (BLOCK_IN, BLOCK_OUT, ECMP) if EXPECTED[old][i(p)] != EXPECTED[new][i(p)]}
    assert set(ops) == changed  # only routes whose form changes are written
    assert all(ops[p] == EXPECTED[new][i(p)] for p in changed)
    assert set(h.replaced) == changed  # replaced (NLM_F_REPLACE), never deleted and added again
    assert all(hops is not None for hops in ops.values())


def i(p: object) -> int:
    return {BLOCK_IN: 0, BLOCK_OUT: 1, ECMP: 2}[p]  # type: ignore[index]


def test_missing_tunnel_device_waits_without_retries_and_installs_when_it_comes_up() -> None:
    h = started("always")
    ops = h.engine.take_kernel_ops()
    results = [OpResult(p, ok=False, error="No such device", device="tunl0") for p, _ in ops]
    h.engine.kernel_written(ops, results)
    fib = h.engine.fib
    assert set(fib.waiting) == {BLOCK_IN, BLOCK_OUT, ECMP}
    assert fib.waiting_by_device() == {"tunl0": 3}
    assert RETRY_TIMER not in h.timers.armed  # no polling: a link event brings them back
    assert not h.engine.kernel_work
    h.kernel(LinkUp(7, "cali1234"))  # another device: nothing to do
    assert not h.engine.kernel_work
    h.kernel(LinkUp(9, "tunl0"))
    assert dict(h.settle()) == {
        BLOCK_IN: EXPECTED["always"][0],
        BLOCK_OUT: EXPECTED["always"][1],
        ECMP: EXPECTED["always"][2],
    }
    assert not fib.waiting and fib.waiting_by_device() == {}


def test_a_waiting_route_withdrawn_meanwhile_is_not_written_when_the_device_comes_up() -> None:
    h = started("always")
    ops = h.engine.take_kernel_ops()
    h.engine.kernel_written(ops, [OpResult(p, ok=False, device="tunl0") for p, _ in ops])
    h.withdraw(OUTSIDE, BLOCK_OUT)
    assert BLOCK_OUT not in h.engine.fib.waiting
    h.kernel(LinkUp(9, "tunl0"))
    assert set(dict(h.settle())) == {BLOCK_IN, ECMP}


def test_tunnel_device_lost_rereads_our_routes() -> None:
    h = started("cross-subnet")
    h.settle()
    fib = h.engine.fib
    h.kernel(LinkLost(5, "eth1", (), (prefix("172.16.0.0/24"),), flushed=True))
    assert fib.take_audit() is None  # nothing of ours through it
    h.kernel(LinkLost(9, "tunl0", (), (prefix("10.20.1.0/32"),), flushed=True))
    assert fib.take_audit() == "link"  # the kernel flushed our tunl0 routes without a word


def test_own_route_reported_through_tunl0_matches_what_is_wanted() -> None:
    # the watcher reports our onlink routes as Hops: nothing to repair
    h = started("cross-subnet")
    h.settle()
    route = KernelRoute(BLOCK_OUT, "unicast", PROTO, 254, "tunl0", (tunnel(OUTSIDE),), 32)
    h.kernel(RouteAdded(route))
    assert not h.engine.kernel_work and sum(h.engine.fib.repairs.values()) == 0
    # somebody rewrote it plain: repaired back to the tunnel
    h.kernel(RouteAdded(KernelRoute(BLOCK_OUT, "unicast", PROTO, 254, "eth0", (OUTSIDE,), 32)))
    assert dict(h.settle()) == {BLOCK_OUT: (tunnel(OUTSIDE),)}
    assert h.engine.fib.repairs["changed"] == 1


def test_tunl0_routes_are_never_exported_whatever_their_protocol() -> None:
    h = started("always")
    h.settle()
    h.sent.clear()
    felix = KernelRoute(prefix("10.20.5.0/26"), "unicast", 80, 254, "tunl0", (tunnel(OUTSIDE),), 0)
    ecmp = KernelRoute(prefix("10.20.6.0/26"), "unicast", 80, 254, None, (INSIDE, tunnel(OUTSIDE)), 0)
    workload = KernelRoute(prefix("10.20.7.5/32"), "unicast", 3, 254, "cali12345", (), 0)
    h.kernel(RouteAdded(felix), RouteAdded(ecmp), RouteAdded(workload))
    announced = " ".join(h.sent)
    assert "10.20.7.5/32" in announced
    assert "10.20.5.0/26" not in announced and "10.20.6.0/26" not in announced


def test_felix_tunl0_route_for_a_learned_prefix_is_a_collision() -> None:
    h = started("always")
    h.settle()
    felix = KernelRoute(BLOCK_OUT, "unicast", 80, 254, "tunl0", (tunnel(OUTSIDE),), 32)
    h.kernel(RouteAdded(felix))
    h.settle()
    assert BLOCK_OUT in h.engine.fib.collisions


def test_back_to_never_removes_the_tunnel_route_the_kernel_cannot_replace() -> None:
    """A pool back to `never` for a node behind a router: the plain form is refused by the kernel (its
    gateway is not directly reachable); the tunnel form must not stay (as BIRD removes a route whose next
    hop is unreachable). Retried with a growing interval; only the first failure is logged as an error."""
    h = started("always")
    h.settle()
    fib = h.engine.fib
    h.engine.reconfigure(config.parse(config_text("never")))
    ops = h.engine.take_kernel_ops()
    results = [
        OpResult(p, ok=False, error="ENETUNREACH", refused=True)
        if OUTSIDE in (hops or ())
        else OpResult(p, ok=True)
        for p, hops in ops
    ]
    h.engine.kernel_written(ops, results)
    assert fib.installed[BLOCK_IN] == (INSIDE,)
    assert fib.refused == {BLOCK_OUT, ECMP}
    assert h.timers.armed[RETRY_TIMER] == RETRY_FAILED_AFTER
    # the older tunnel forms are removed, not replaced
    assert dict(h.settle()) == {BLOCK_OUT: None, ECMP: None}
    assert BLOCK_OUT not in fib.installed and ECMP not in fib.installed
    assert fib.retry_pending == {BLOCK_OUT, ECMP}  # still retried
    # the retry writes the wanted form again; refused again: nothing to remove, the interval doubles
    h.fire(RETRY_TIMER)
    ops = h.engine.take_kernel_ops()
    assert dict(ops) == {BLOCK_OUT: (OUTSIDE,), ECMP: (INSIDE, OUTSIDE)}
    h.engine.kernel_written(ops, [OpResult(p, ok=False, error="ENETUNREACH", refused=True) for p, _ in ops])
    assert h.engine.take_kernel_ops() == []
    assert h.timers.armed[RETRY_TIMER] == 2 * RETRY_FAILED_AFTER
    for _ in range(10):
        h.fire(RETRY_TIMER)
        ops = h.engine.take_kernel_ops()
        h.engine.kernel_written(ops, [OpResult(p, ok=False, refused=True) for p, _ in ops])
    assert h.timers.armed[RETRY_TIMER] == RETRY_MAX
    # the pool goes back to always: written at once through the tunnel
    h.engine.reconfigure(config.parse(config_text("always")))
    assert dict(h.settle()) == {p: EXPECTED["always"][i(p)] for p in (BLOCK_IN, BLOCK_OUT, ECMP)}
    assert not fib.refused and not fib.retry_pending


def test_a_refused_route_is_only_removed_if_ours_differs() -> None:
    # nothing of ours there (a first install refused): nothing to remove
    h = started("never")
    ops = h.engine.take_kernel_ops()
    h.engine.kernel_written(ops, [OpResult(p, ok=False, refused=True) for p, _ in ops])
    assert not h.engine.fib.refused and h.engine.take_kernel_ops() == []
