"""Fixtures shared by the unit tests: the route decision engine (`bgpd.engine.Engine`) driven by hand.

`Harness` feeds the engine decoded ExaBGP events (as `bgpd.speaker.Speaker.on_event` translates them) and
kernel events, and carries its two outputs out as the shell would, with no ExaBGP and no kernel: the
Adj-RIB-Out changes become ExaBGP command lines (`bgpd.speaker.commands`, recorded in `sent`), the kernel
operations are recorded and written back as successful (`settle`). Timers are `ManualTimers`: armed keys
are inspected in `timers.armed` and fired with `fire(key)`.

`Fam` is one family's version of a scenario: the old IPv4-only host (192.168.100.3, mesh with
192.168.100.10, pool 10.20.0.0/16), and the dual-stack host (also fd00:100::3, mesh with fd00:100::10,
pool fd00:10:20::/48) carrying the same scenario over IPv4 or over IPv6 (blocks of /122, next hops of the
peer's family). Sessions of the dual-stack config that are not part of the scenario (`others`) come up and
send End-of-RIB before it starts, so the start's selection deferral waits for the scenario's peers only.
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Literal

import pytest

from bgpd import config
from bgpd.config import Config
from bgpd.engine import Engine, KernelOp, OutChange
from bgpd.engine.fib import Hops
from bgpd.engine.timers import ManualTimers
from bgpd.exabgp import codec
from bgpd.model import Address, Attributes, KernelRoute, OpResult, Prefix, RouteEvent, Snapshot
from bgpd.prefix import Address as Address4
from bgpd.prefix import Address6, parse_any
from bgpd.speaker import commands, feed

ASN = 64512

CONFIG4 = (
    "node: {name: h, address: 192.168.100.3, asn: 64512}\n"
    "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3]}}\n"
    "pools: [{cidr: 10.20.0.0/16}]\n"
)
CONFIG_DUAL = (
    "node: {name: h, address: 192.168.100.3, address6: 'fd00:100::3', asn: 64512}\n"
    "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3, 'fd00:100::3', 'fd00:100::10']}}\n"
    "pools: [{cidr: 10.20.0.0/16}, {cidr: 'fd00:10:20::/48'}]\n"
)


def source_changed(monkeypatch: pytest.MonkeyPatch, function: object, old: str, new: str) -> None:
    """From now on (for the test), `inspect.getsource` gives `function`'s source with `old` replaced by
    `new`, as another ExaBGP version could have it; every other object's source is left as it is. For the
    tests that an ExaBGP change's version check refuses another version."""
    source = inspect.getsource(function)  # type: ignore[arg-type]
    assert old in source, old
    real = inspect.getsource

    def getsource(obj: object) -> str:
        text = real(obj)  # type: ignore[arg-type]
        return text.replace(old, new) if text == source else text

    monkeypatch.setattr(inspect, "getsource", getsource)


def address(text: str) -> Address:
    """An address as the codec and the config build it (either family)."""
    return Address6(text) if ":" in text else Address4(text)


def prefix(text: str) -> Prefix:
    """A prefix as the codec builds it (either family)."""
    return parse_any(text)


@dataclass(frozen=True)
class Fam:
    """One family's version of a scenario: its config, the peers it drives, the sessions left aside."""

    name: str
    version: Literal[4, 6]
    config: str
    peer_texts: tuple[str, ...]
    other_texts: tuple[str, ...] = ()

    @property
    def peers(self) -> tuple[Address, ...]:
        return tuple(address(t) for t in self.peer_texts)

    @property
    def peer(self) -> Address:
        return self.peers[0]

    @property
    def others(self) -> tuple[Address, ...]:
        return tuple(address(t) for t in self.other_texts)

    def addr(self, n: int) -> Address:
        """Host `n` of the underlay: 192.168.100.n, or fd00:100::n (the digits read as hex)."""
        return address(f"192.168.100.{n}" if self.version == 4 else f"fd00:100::{n}")

    def underlay(self) -> Prefix:
        return prefix("192.168.100.0/24" if self.version == 4 else "fd00:100::/64")

    def block(self, i: int) -> Prefix:
        """The i-th IPAM block of the pool: 10.20.i.0/26, or fd00:10:20:i::/122."""
        return prefix(f"10.20.{i}.0/26" if self.version == 4 else f"fd00:10:20:{i}::/122")

    def host(self, i: int, j: int) -> Prefix:
        """Workload j of block i: 10.20.i.j/32, or fd00:10:20:i::j/128."""
        return prefix(f"10.20.{i}.{j}/32" if self.version == 4 else f"fd00:10:20:{i}::{j}/128")

    def open(
        self,
        peer: Address,
        restart_time: int | None = 120,
        forwarding: bool = True,
        restarting: bool = False,
        router_id: IPv4Address | None = None,
    ) -> codec.PeerOpen[Address]:
        """The peer's OPEN, with its Graceful Restart Capability for the session's family only."""
        rid = router_id if router_id is not None else IPv4Address(f"10.0.0.{int(peer) & 0xFF}")
        if peer.version == 4:
            return codec.PeerOpen(peer, ASN, rid, 9, restart_time, forwarding, restarting)
        return codec.PeerOpen(
            peer, ASN, rid, 9, restarting=restarting, restart_time6=restart_time, forwarding_kept6=forwarding
        )

    def eor_line(self, peer: Address) -> str:
        return codec.eor_line(peer, 4 if peer.version == 4 else 6)


FAM4 = Fam("ipv4", 4, CONFIG4, ("192.168.100.10",))
FAM4_DUAL = Fam("ipv4-dual", 4, CONFIG_DUAL, ("192.168.100.10",), ("fd00:100::10",))
FAM6 = Fam("ipv6", 6, CONFIG_DUAL, ("fd00:100::10",), ("192.168.100.10",))
FAMS = (FAM4, FAM4_DUAL, FAM6)


@dataclass
class Harness:
    """An Engine with ManualTimers, its outputs carried out by hand."""

    cfg: Config
    fam: Fam
    timers: ManualTimers = field(default_factory=ManualTimers)
    sent: list[str] = field(default_factory=list)  # ExaBGP command lines
    changes: list[OutChange] = field(default_factory=list)  # the Adj-RIB-Out changes they came from
    applied: list[KernelOp] = field(default_factory=list)  # kernel operations written
    replaced: list[Prefix] = field(default_factory=list)  # of those, the ones known to be ours (replaced)

    def __post_init__(self) -> None:
        self.engine = Engine(self.cfg, self.timers)

    def start(
        self,
        own: dict[Prefix, Hops] | None = None,
        local: Iterable[Address] = (),
        subnet: Prefix | None = None,
    ) -> None:
        """The shell's start: our routes of an earlier run, the host's addresses and the subnet of the
        node's address are read, then the kernel watcher's start snapshot (with those routes) arrives."""
        own = own or {}
        self.engine.start(own, local, subnet)  # type: ignore[arg-type]
        metric, protocol, table = self.cfg.kernel.metric, self.cfg.kernel.protocol, self.cfg.kernel.table
        routes = tuple(KernelRoute(p, "unicast", protocol, table, "eth0", h, metric) for p, h in own.items())
        self.kernel(Snapshot(routes, "start"))

    def feed(self, *events: codec.AnyEvent) -> list[str]:
        """Decoded ExaBGP events (one read's worth: no output is carried out in between); the lines sent."""
        for event in events:
            feed(self.engine, event)
        return self.flush()

    def kernel(self, *events: RouteEvent) -> list[str]:
        self.engine.kernel_events(list(events))
        return self.flush()

    def fire(self, key: Hashable) -> list[str]:
        """The timer `key` fires (it must be armed; once fired, it is not any more)."""
        assert key in self.timers.armed, f"{key!r} is not armed: {sorted(map(repr, self.timers.armed))}"
        del self.timers.armed[key]
        self.engine.on_timer(key)
        return self.flush()

    def flush(self) -> list[str]:
        """Carry the Adj-RIB-Out changes due to ExaBGP."""
        changes = self.engine.take_adj_rib_out()
        self.changes += changes
        lines = [line for change in changes for line in commands(change, self.cfg)]
        self.sent += lines
        return lines

    def settle(self) -> list[KernelOp]:
        """Write the kernel operations due, every one successfully; the operations written."""
        ops = self.engine.take_kernel_ops()
        ours = self.engine.fib.ours(ops)
        self.replaced += [p for p, hops in ops if hops is not None and p in ours]
        self.engine.kernel_written(ops, [OpResult(p, ok=True) for p, _ in ops])
        self.applied += ops
        return ops

    def up(self, peer: Address, restart_time: int | None = 120, restarting: bool = False) -> list[str]:
        return self.feed(
            self.fam.open(peer, restart_time, restarting=restarting), codec.PeerState(peer, ASN, "up")
        )

    def announce(
        self, peer: Address, *prefixes: Prefix, next_hop: Address | None = None, local_pref: int = 100
    ) -> list[str]:
        hop = peer if next_hop is None else next_hop
        attrs = Attributes(local_pref=local_pref)
        announced = tuple(codec.Announced(p, hop, attrs) for p in prefixes)
        return self.feed(codec.Update(peer, ASN, announced))

    def withdraw(self, peer: Address, *prefixes: Prefix) -> list[str]:
        return self.feed(codec.Update(peer, ASN, (), tuple(prefixes)))

    def eor(self, peer: Address) -> list[str]:
        return self.feed(codec.EndOfRib(peer, 4 if peer.version == 4 else 6))

    def eors(self, peers: Sequence[Address] | None = None) -> list[str]:
        """The End-of-RIB lines sent to `peers` (default: the scenario's)."""
        peers = self.fam.peers if peers is None else peers
        return [line for line in self.sent if " eor " in line and any(_to(line, p) for p in peers)]

    def lines_to(self, peer: Address) -> list[str]:
        return [line for line in self.sent if _to(line, peer)]


def _to(line: str, peer: Address) -> bool:
    return line.startswith(f"neighbor {peer} ") or f", neighbor {peer} " in line


def make_harness(fam: Fam, own: dict[Prefix, Hops] | None = None) -> Harness:
    """A started engine for `fam`; the sessions outside the scenario are up and have sent End-of-RIB."""
    h = Harness(config.parse(fam.config), fam)
    h.start(own)
    for other in fam.others:
        h.up(other)
        h.eor(other)
    h.sent.clear()
    h.changes.clear()
    return h


@pytest.fixture(params=FAMS, ids=[f.name for f in FAMS])
def fam(request: pytest.FixtureRequest) -> Fam:
    result: Fam = request.param
    return result


@pytest.fixture
def host(fam: Fam) -> Harness:
    """The host engine of `fam`, started, with no route anywhere yet."""
    return make_harness(fam)
