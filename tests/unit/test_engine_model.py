"""The route decision engine against a model written from scratch (issue 11, "Tests (CI)"): random
sequences of events, in any order, for IPv4 and IPv6 at once.

Events: sessions opening (with or without graceful restart, forwarding state kept or not, Restart State
bit), failing before established, dropping (plainly, after a NOTIFICATION received or sent); UPDATEs
announcing and withdrawing prefixes of both families from 2 or 3 peers per family, rejected ones included
(outside the pools, default routes, own / local / link-local / multicast / unspecified next hops, a next
hop of the other family); End-of-RIB; local workload routes and IPAM blocks coming and going in the kernel,
foreign routes at learned prefixes, routes of our protocol deleted or added by somebody else, routes of
an earlier run; timers firing; ExaBGP dying and coming back; the kernel operations written back
successfully and the Adj-RIB-Out changes carried to ExaBGP, each at any point.

The model is a few dicts: per peer its accepted paths and which of them are stale; the wanted FIB is, per
prefix, the next hops of the best paths (highest LOCAL_PREF; the rest is equal) among the paths of peers
that are established or stale, minus the prefixes this host announces itself; what may be installed is
that minus the prefixes a foreign kernel route holds; the Adj-RIB-Out of each session is this host's
exported routes of the session's family (blocks hiding the workloads inside them).

Invariants checked on the way: no Announce or Withdraw mixes families or goes to a session of the other
family, no IPv6 route is announced with an IPv4 next hop (ExaBGP's command text is built for every
change), every route installed is inside a configured pool, End-of-RIB only to established sessions once
the deferral is over and once per session, the stale paths and their deadlines, and after the kernel
operations are written back, the kernel holds exactly what the model says (routes of an earlier run or
added by somebody else excepted until the start's deferral ends).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import config
from bgpd.config import Config
from bgpd.engine import Announce, EndOfRib, Engine, OutChange, Withdraw
from bgpd.engine.core import DEFER_TIMER
from bgpd.engine.timers import ManualTimers
from bgpd.exabgp import codec
from bgpd.model import (
    Address,
    Attributes,
    KernelRoute,
    OpResult,
    Prefix,
    RouteAdded,
    RouteEvent,
    RouteRemoved,
    Snapshot,
)
from bgpd.speaker import commands, feed
from tests.unit.conftest import ASN, address, prefix

POOLS = "pools: [{cidr: 10.20.0.0/16}, {cidr: 'fd00:10:20::/48'}]\n"
KERNEL = "kernel: {stale_timeout: 300}\n"  # not a restart time a peer sends: the deadlines tell apart
CONFIGS = {
    # two sessions per family
    "dual": (
        "node: {name: h, address: 192.168.100.3, address6: 'fd00:100::3', asn: 64512}\n"
        "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.11, 192.168.100.3, "
        "'fd00:100::3', 'fd00:100::10', 'fd00:100::11']}}\n" + POOLS + KERNEL
    ),
    # three IPv4 sessions, no IPv6 at all
    "ipv4": (
        "node: {name: h, address: 192.168.100.3, asn: 64512}\n"
        "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.11, 192.168.100.12, "
        "192.168.100.3]}}\npools: [{cidr: 10.20.0.0/16}]\n" + KERNEL
    ),
    # a dual-stack node with three IPv6 sessions only: its IPv4 routes go nowhere
    "ipv6": (
        "node: {name: h, address: 192.168.100.3, address6: 'fd00:100::3', asn: 64512}\n"
        "bgp: {mesh: {enabled: true, nodes: [192.168.100.3, 'fd00:100::3', 'fd00:100::10', "
        "'fd00:100::11', 'fd00:100::12']}}\n" + POOLS + KERNEL
    ),
}
OWN_PROTOCOL, METRIC, MAIN = 12, 32, 254
LOCAL_ADDRESSES = (address("192.168.100.4"), address("fd00:100::4"))  # the host's other addresses

# Prefixes peers announce (either family, to any session), and routes of our protocol are added at
PREFIX_TEXTS = (
    "10.20.1.0/26",  # a local block's prefix (then announced here: suppressed)
    "10.20.2.0/26",  # held by a foreign (static) route
    "10.20.1.5/32",  # a local workload's, inside the local block
    "10.20.3.7/32",  # a local workload's, borrowed (no block)
    "10.20.4.0/26",
    "10.20.5.0/26",
    "10.99.0.0/26",  # outside every pool
    "0.0.0.0/0",
    "fd00:10:20:1::/122",
    "fd00:10:20:2::/122",
    "fd00:10:20:1::5/128",
    "fd00:10:20:3::7/128",
    "fd00:10:20:4::/122",
    "fd00:10:20:5::/122",
    "fd00:99::/122",
    "::/0",
)
PREFIXES = tuple(prefix(t) for t in PREFIX_TEXTS)


def _local(text: str, kind: str, protocol: int, ifname: str | None, priority: int = 0) -> KernelRoute:
    gateways: tuple[Address, ...] = ()
    if kind == "unicast" and protocol == 4:  # a static route via the underlay's router
        gateways = (address("192.168.100.1" if "." in text else "fd00:100::1"),)
    return KernelRoute(prefix(text), kind, protocol, MAIN, ifname, gateways, priority)


# Kernel routes of other protocols (all foreign to bgpd; some exported)
LOCAL_ROUTES = (
    _local("10.20.1.5/32", "unicast", 3, "cali1"),  # workloads
    _local("fd00:10:20:1::5/128", "unicast", 3, "cali1"),
    _local("10.20.3.7/32", "unicast", 3, "cali2"),
    _local("fd00:10:20:3::7/128", "unicast", 3, "cali2"),
    _local("10.20.1.5/32", "unicast", 80, "cali1", 100),  # a second route at a workload's prefix
    _local("fd00:10:20:1::5/128", "unicast", 80, "cali1", 100),
    _local("10.20.1.0/26", "blackhole", 80, None),  # IPAM blocks
    _local("fd00:10:20:1::/122", "blackhole", 80, None),
    _local("10.20.2.0/26", "unicast", 4, "eth0"),  # static routes: foreign, not exported
    _local("fd00:10:20:2::/122", "unicast", 4, "eth0"),
    _local("10.99.0.5/32", "unicast", 3, "cali9"),  # outside every pool: not exported
    _local("fd00:99::5/128", "unicast", 3, "cali9"),
    _local("10.20.6.9/32", "unicast", 4, "cali3"),  # selected by its device name alone
    _local("fd00:10:20:6::9/128", "unicast", 4, "cali3"),
)

HOP_KINDS = (
    "peer",
    "peer",
    "peer",
    "third",
    "third",
    "own",
    "local",
    "invalid",
    "multicast",
    "zero",
    "other",
)

# ---------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Connect:
    peer: int
    restart_time: int | None
    forwarding: bool
    restarting: bool


@dataclass(frozen=True)
class Attempt:
    """TCP connected, closed before the session was established."""

    peer: int


@dataclass(frozen=True)
class Down:
    peer: int
    how: str  # "reset", "notification" (received first), "sent" (ours, in the reason)


@dataclass(frozen=True)
class Send:
    peer: int
    prefix: int
    hop: str
    local_pref: int | None


@dataclass(frozen=True)
class Unsend:
    peer: int
    prefix: int


@dataclass(frozen=True)
class Eor:
    peer: int


@dataclass(frozen=True)
class LocalAdd:
    route: int


@dataclass(frozen=True)
class LocalRemove:
    route: int


@dataclass(frozen=True)
class OwnDeleted:
    """Somebody deletes one of our routes in the kernel."""

    index: int


@dataclass(frozen=True)
class Stray:
    """Somebody adds a route of our protocol, at our metric."""

    prefix: int


@dataclass(frozen=True)
class Fire:
    index: int


@dataclass(frozen=True)
class Flush:
    """The shell carries the Adj-RIB-Out changes to ExaBGP."""


@dataclass(frozen=True)
class Settle:
    """The shell writes the kernel operations due; each succeeds."""


@dataclass(frozen=True)
class ExabgpLost:
    pass


@dataclass(frozen=True)
class ExabgpBack:
    pass


Event = (
    Connect
    | Attempt
    | Down
    | Send
    | Unsend
    | Eor
    | LocalAdd
    | LocalRemove
    | OwnDeleted
    | Stray
    | Fire
    | Flush
    | Settle
    | ExabgpLost
    | ExabgpBack
)

_peer = st.integers(0, 3)
_prefix = st.integers(0, len(PREFIXES) - 1)
# in-pool prefixes of both families more often than the rejected ones
_learned = st.sampled_from(
    [i for i, t in enumerate(PREFIX_TEXTS) for _ in range(1 if t[-2:] == "/0" or "99" in t else 4)]
)
_route = st.integers(0, len(LOCAL_ROUTES) - 1)
_send = st.builds(Send, _peer, _learned, st.sampled_from(HOP_KINDS), st.sampled_from([None, 100, 100, 200]))
# (weight, events): each kind drawn with about that weight
_KINDS: tuple[tuple[int, st.SearchStrategy[Event]], ...] = (
    (12, _send),
    (3, st.builds(Unsend, _peer, _learned)),
    (3, st.builds(Connect, _peer, st.sampled_from([None, 120, 5]), st.booleans(), st.booleans())),
    (2, st.builds(Connect, _peer, st.just(120), st.just(True), st.just(False))),
    (1, st.builds(Attempt, _peer)),
    (2, st.builds(Down, _peer, st.sampled_from(["reset", "reset", "notification", "sent"]))),
    (2, st.builds(Eor, _peer)),
    (3, st.builds(LocalAdd, _route)),
    (2, st.builds(LocalRemove, _route)),
    (1, st.builds(OwnDeleted, st.integers(0, 20))),
    (1, st.builds(Stray, _prefix)),
    (2, st.builds(Fire, st.integers(0, 20))),
    (2, st.just(Flush())),
    (3, st.just(Settle())),
    (1, st.just(ExabgpLost())),
    (5, st.just(ExabgpBack())),
)
EVENTS: st.SearchStrategy[Event] = st.sampled_from(
    [kind for weight, kind in _KINDS for _ in range(weight)]
).flatmap(lambda kind: kind)

# Graceful restarts in depth: two sessions (the first and the last: one of each family on the dual-stack
# host), one prefix of each family, sessions dropping and coming back
_peer2 = st.sampled_from([0, -1])
_few = st.sampled_from([PREFIX_TEXTS.index("10.20.4.0/26"), PREFIX_TEXTS.index("fd00:10:20:4::/122")])
_RESTART_KINDS: tuple[tuple[int, st.SearchStrategy[Event]], ...] = (
    (8, st.builds(Send, _peer2, _few, st.sampled_from(["peer", "peer", "third", "other"]), st.just(None))),
    (2, st.builds(Unsend, _peer2, _few)),
    (4, st.builds(Connect, _peer2, st.just(120), st.sampled_from([True, True, False]), st.booleans())),
    (1, st.builds(Connect, _peer2, st.just(None), st.just(False), st.just(False))),
    (1, st.builds(Attempt, _peer2)),
    (3, st.builds(Down, _peer2, st.sampled_from(["reset", "reset", "reset", "notification", "sent"]))),
    (1, st.builds(Eor, _peer2)),
    (1, st.builds(Fire, st.integers(0, 20))),
    (1, st.just(Settle())),
    (1, st.just(Flush())),
    (1, st.just(ExabgpLost())),
    (3, st.just(ExabgpBack())),
)
RESTART_EVENTS: st.SearchStrategy[Event] = st.sampled_from(
    [kind for weight, kind in _RESTART_KINDS for _ in range(weight)]
).flatmap(lambda kind: kind)


@pytest.fixture(autouse=True, scope="module")
def _quiet() -> Iterator[None]:
    """Thousands of runs log their warnings (sessions down, stale routes): not worth capturing."""
    engine_log = logging.getLogger("bgpd")
    level = engine_log.level
    engine_log.setLevel(logging.CRITICAL)
    yield
    engine_log.setLevel(level)


# ---------------------------------------------------------------------------- the model

Hops = tuple[str, ...]
Net = IPv4Network | IPv6Network
Ip = IPv4Address | IPv6Address


@cache
def net(text: str) -> Net:
    return ip_network(text)


def hop_sort_key(hop: str) -> tuple[int, int]:
    a = ip_address(hop)
    return a.version, int(a)


@dataclass
class PeerModel:
    state: str = "idle"
    restart_time: int | None = None
    forwarding: bool = False
    paths: dict[str, tuple[str, int]] = field(default_factory=dict)  # prefix -> (next hop, LOCAL_PREF)
    stale: set[str] | None = None  # None: not restarting
    deadline: float | None = None  # seconds the stale paths are kept for, from the last (re)start of it


class Model:
    """What the engine should do, from the RFCs and the issue, with plain dicts."""

    def __init__(self, cfg: Config, peers: Iterable[Ip], own: dict[str, Hops]) -> None:
        self.pools = [net(str(p.cidr)) for p in cfg.pools]
        self.stale_timeout = cfg.kernel.stale_timeout
        self.node = [a for a in (cfg.node.address, cfg.node.address6) if a is not None]
        self.own_hops = {ip_address(str(a)) for a in (*self.node, *LOCAL_ADDRESSES)}
        self.peers = {a: PeerModel() for a in peers}
        self.local: dict[int, KernelRoute] = {}  # present, by index in LOCAL_ROUTES
        # RFC 4724 §4.1: End-of-RIB waits for these peers (restarting ones excluded); the routes of an
        # earlier run for these (restarting ones included)
        self.defer_wait = set(self.peers)
        self.stale_wait = set(self.peers)
        self.defer_done = not self.defer_wait
        self.reconciled = not self.stale_wait
        self.kernel: dict[str, Hops] = dict(own)  # our routes in the kernel
        self.strays: set[str] = set() if self.reconciled else set(own)  # kept until the deferral ends
        self.attached = True
        self.held: dict[Ip, set[str]] = {a: set() for a in self.peers}  # what ExaBGP was told
        self.eor_due: set[Ip] = set()

    # --------------------------------------------------------------- import

    def accepts(self, text: str, hop: Ip) -> bool:
        n = net(text)
        if n.prefixlen == 0:
            return False
        if not any(p.version == n.version and n.subnet_of(p) for p in self.pools):  # type: ignore[arg-type]
            return False
        if any(a.version == n.version and a in n for a in self.node):
            return False
        if hop.version != n.version or hop in self.own_hops:
            return False
        if isinstance(hop, IPv4Address):
            return hop.packed[0] not in (0, 127) and hop.packed[0] < 224
        unusable = hop.is_unspecified or hop.is_loopback or hop.is_link_local or hop.is_multicast
        return not unusable and hop.ipv4_mapped is None

    # --------------------------------------------------------------- export

    def selected(self, route: KernelRoute) -> bool:
        n = net(str(route.prefix))
        if route.protocol == OWN_PROTOCOL:
            return False
        if not any(p.version == n.version and n.subnet_of(p) for p in self.pools):  # type: ignore[arg-type]
            return False
        if route.kind in ("blackhole", "unreachable", "prohibit"):
            return route.protocol in (3, 80)
        return route.kind == "unicast" and (
            route.protocol in (3, 80) or (route.ifname or "").startswith("cali")
        )

    def announced(self) -> set[str]:
        chosen = [r for r in self.local.values() if self.selected(r)]
        blocks = [net(str(r.prefix)) for r in chosen if r.kind != "unicast"]
        out = set()
        for r in chosen:
            n = net(str(r.prefix))
            if not any(b.version == n.version and n != b and n.subnet_of(b) for b in blocks):  # type: ignore[arg-type]
                out.add(str(n))
        return out

    def foreign(self) -> set[str]:
        return {str(r.prefix) for r in self.local.values()}

    # --------------------------------------------------------------- decision

    def wanted(self) -> dict[str, Hops]:
        candidates: dict[str, list[tuple[str, int]]] = {}
        for peer in self.peers.values():
            for text, path in peer.paths.items():
                candidates.setdefault(text, []).append(path)
        mine = self.announced()
        fib: dict[str, Hops] = {}
        for text, paths in candidates.items():
            if text in mine:
                continue
            best = max(pref for _, pref in paths)
            fib[text] = tuple(sorted({hop for hop, pref in paths if pref == best}, key=hop_sort_key))
        return fib

    def installable(self) -> dict[str, Hops]:
        foreign = self.foreign()
        return {p: h for p, h in self.wanted().items() if p not in foreign}

    # --------------------------------------------------------------- sessions

    def flush_stale(self, peer: PeerModel) -> None:
        for text in peer.stale or ():
            peer.paths.pop(text, None)
        peer.stale = peer.deadline = None

    def _deferral(self) -> None:
        if not self.defer_wait:
            self.defer_done = True
        if not self.stale_wait and not self.reconciled:
            self.reconciled = True
            self.strays.clear()

    def opened(self, a: Ip, restart_time: int | None, forwarding: bool, restarting: bool) -> None:
        peer = self.peers[a]
        peer.restart_time, peer.forwarding = restart_time, forwarding
        if restart_time is None or restarting:
            self.defer_wait.discard(a)
        if restart_time is None:
            self.stale_wait.discard(a)
        self._deferral()
        if peer.stale is not None and not (restart_time and forwarding):
            self.flush_stale(peer)

    def up(self, a: Ip) -> None:
        peer = self.peers[a]
        peer.state = "up"
        self.eor_due.add(a)
        if peer.stale is not None:  # back in time: End-of-RIB is awaited within stale_timeout
            peer.deadline = self.stale_timeout

    def down(self, a: Ip, graceful_allowed: bool) -> None:
        peer = self.peers[a]
        was_up = peer.state == "up"
        peer.state = "down"
        self.eor_due.discard(a)
        if peer.stale is not None and not was_up:
            return  # a restart in progress
        if peer.stale is not None:
            self.flush_stale(peer)  # RFC 4724 §4.2: consecutive restarts
        if was_up and peer.restart_time and graceful_allowed:
            peer.stale, peer.deadline = set(peer.paths), peer.restart_time
        else:
            peer.paths.clear()

    def update(self, a: Ip, text: str, path: tuple[str, int] | None) -> None:
        """`path` None: withdrawn, or announced and rejected (treat-as-withdraw of the earlier path)."""
        peer = self.peers[a]
        if peer.stale is not None:
            peer.stale.discard(text)
        if path is None:
            peer.paths.pop(text, None)
        else:
            peer.paths[text] = path

    def end_of_rib(self, a: Ip) -> None:
        self.flush_stale(self.peers[a])
        self.defer_wait.discard(a)
        self.stale_wait.discard(a)
        self._deferral()

    def timer_expired(self) -> None:
        self.defer_wait.clear()
        self.stale_wait.clear()
        self._deferral()

    def exabgp_lost(self) -> None:
        for a, peer in self.peers.items():
            peer.state = "down"
            self.eor_due.discard(a)
            if peer.paths:
                peer.stale = (peer.stale or set()) | set(peer.paths)
                peer.deadline = self.stale_timeout
        self.attached = False
        self.held = {a: set() for a in self.peers}  # the next ExaBGP knows nothing


# ---------------------------------------------------------------------------- the run


def _strs(hops: Iterable[Address]) -> Hops:
    return tuple(str(h) for h in hops)


class Run:
    """The engine and the model side by side."""

    def __init__(self, cfg: Config, own: dict[Prefix, tuple[Address, ...]], local: set[int]) -> None:
        self.cfg = cfg
        self.timers = ManualTimers()
        self.engine = Engine(cfg, self.timers)
        self.peer_list = sorted(self.engine.peers, key=lambda a: (a.version, int(a)))
        self.model = Model(
            cfg, (ip_address(str(a)) for a in self.peer_list), {str(p): _strs(h) for p, h in own.items()}
        )
        self.ever_ours = {str(p) for p in own}  # prefixes where a route of our protocol was
        self.engine.start(own, LOCAL_ADDRESSES)
        routes = [KernelRoute(p, "unicast", OWN_PROTOCOL, MAIN, "eth0", h, METRIC) for p, h in own.items()]
        for i in sorted(local):
            self.model.local[i] = LOCAL_ROUTES[i]
            routes.append(LOCAL_ROUTES[i])
        self.engine.kernel_events([Snapshot(tuple(routes), "start")])
        self.before = self.model.wanted()
        self.check()

    def peer(self, i: int) -> tuple[Address, PeerModel]:
        a = self.peer_list[i % len(self.peer_list)]
        return a, self.model.peers[ip_address(str(a))]

    def kernel(self, *events: RouteEvent) -> None:
        self.engine.kernel_events(list(events))

    # --------------------------------------------------------------- events

    def apply(self, event: Event) -> None:
        m, engine = self.model, self.engine
        if isinstance(event, Connect | Attempt | Down | Send | Unsend | Eor):
            a, pm = self.peer(event.peer)
            key = ip_address(str(a))
            established = pm.state == "up"
            if not m.attached:
                return  # sessions run in ExaBGP
            if isinstance(event, Connect) and not established:
                rid = IPv4Address(f"10.0.0.{int(a) & 0xFF}")
                rt, fwd = event.restart_time, event.forwarding
                opened: codec.PeerOpen[Address]
                if a.version == 4:
                    opened = codec.PeerOpen(a, ASN, rid, 9, rt, fwd, event.restarting)
                else:
                    opened = codec.PeerOpen(
                        a, ASN, rid, 9, restarting=event.restarting, restart_time6=rt, forwarding_kept6=fwd
                    )
                feed(engine, opened)
                m.opened(key, rt, fwd, event.restarting)
                feed(engine, codec.PeerState(a, ASN, "up"))
                m.up(key)
            elif isinstance(event, Attempt) and not established:
                feed(engine, codec.PeerState(a, ASN, "connected"))
                pm.state = "connected"
                feed(engine, codec.PeerState(a, ASN, "down", "connection refused"))
                m.down(key, graceful_allowed=False)
            elif isinstance(event, Down) and established:
                if event.how == "notification":
                    feed(engine, codec.Notification(a, 6, 2))
                reason = (
                    "peer reset, message [notification sent (4,0)]" if event.how == "sent" else "peer reset"
                )
                feed(engine, codec.PeerState(a, ASN, "down", reason))
                m.down(key, graceful_allowed=event.how == "reset")
            elif isinstance(event, Send) and established:
                target = PREFIXES[event.prefix]
                hop = self.hop(a, target.version, event.hop)
                attrs = Attributes(local_pref=event.local_pref)
                feed(engine, codec.Update(a, ASN, (codec.Announced(target, hop, attrs),)))
                text = PREFIX_TEXTS[event.prefix]
                ok = m.accepts(text, ip_address(str(hop)))
                pref = 100 if event.local_pref is None else event.local_pref
                m.update(key, text, (str(hop), pref) if ok else None)
            elif isinstance(event, Unsend) and established:
                feed(engine, codec.Update(a, ASN, (), (PREFIXES[event.prefix],)))
                m.update(key, PREFIX_TEXTS[event.prefix], None)
            elif isinstance(event, Eor) and established:
                feed(engine, codec.EndOfRib(a, 4 if a.version == 4 else 6))
                m.end_of_rib(key)
        elif isinstance(event, LocalAdd):
            m.local[event.route] = LOCAL_ROUTES[event.route]
            self.kernel(RouteAdded(LOCAL_ROUTES[event.route]))
        elif isinstance(event, LocalRemove):
            if event.route in m.local:
                del m.local[event.route]
                self.kernel(RouteRemoved(LOCAL_ROUTES[event.route]))
        elif isinstance(event, OwnDeleted):
            if m.kernel:
                text = sorted(m.kernel)[event.index % len(m.kernel)]
                gateways = tuple(address(h) for h in m.kernel.pop(text))
                route = KernelRoute(prefix(text), "unicast", OWN_PROTOCOL, MAIN, "eth0", gateways, METRIC)
                self.kernel(RouteRemoved(route))
        elif isinstance(event, Stray):
            target = PREFIXES[event.prefix]
            hops = (address("192.168.100.99" if target.version == 4 else "fd00:100::99"),)
            text = PREFIX_TEXTS[event.prefix]
            if m.kernel.get(text) != _strs(hops):
                m.kernel[text] = _strs(hops)
                self.ever_ours.add(text)
                if not m.reconciled and text not in m.installable():
                    m.strays.add(text)
            self.kernel(RouteAdded(KernelRoute(target, "unicast", OWN_PROTOCOL, MAIN, "eth0", hops, METRIC)))
        elif isinstance(event, Fire):
            if self.timers.armed:
                keys = sorted(self.timers.armed, key=repr)
                self.fire(keys[event.index % len(keys)])
        elif isinstance(event, Flush):
            self.flush()
        elif isinstance(event, Settle):
            self.settle()
        elif isinstance(event, ExabgpLost) and m.attached:
            engine.exabgp_lost()
            m.exabgp_lost()
        elif isinstance(event, ExabgpBack) and not m.attached:
            m.attached = True
            engine.exabgp_attached()
        self.track_strays()
        self.check()

    def hop(self, peer: Address, version: int, kind: str) -> Address:
        """A next hop of `kind` for a prefix of `version`, sent by `peer`."""
        n = int(peer) & 0xFF
        n = int(f"{n:x}") if peer.version == 6 else n  # fd00:100::10 is host 10 as 192.168.100.10 is
        v4 = {
            "peer": f"192.168.100.{n}",
            "third": "192.168.100.50",
            "own": "192.168.100.3",
            "local": "192.168.100.4",
            "invalid": "127.0.0.1",
            "multicast": "224.0.0.5",
            "zero": "0.0.0.0",
        }
        v6 = {
            "peer": f"fd00:100::{n}",
            "third": "fd00:100::50",
            "own": "fd00:100::3",
            "local": "fd00:100::4",
            "invalid": "fe80::10",  # link-local: RFC 2545's second next hop left alone
            "multicast": "ff02::5",
            "zero": "::",
        }
        if kind == "other":
            return address((v6 if version == 4 else v4)["peer"])
        return address((v4 if version == 4 else v6)[kind])

    def fire(self, key: Hashable) -> None:
        del self.timers.armed[key]  # fired: no longer armed
        self.engine.on_timer(key)
        if key == DEFER_TIMER:
            self.model.timer_expired()
        elif isinstance(key, tuple) and key[0] == "stale":
            self.model.flush_stale(self.model.peers[ip_address(str(key[1]))])

    def track_strays(self) -> None:
        """A prefix newly wanted (or wanted with other next hops) is no earlier run's route any more."""
        now = self.model.wanted()
        for text, hops in now.items():
            if self.before.get(text) != hops:
                self.model.strays.discard(text)
        self.before = now

    # --------------------------------------------------------------- outputs

    def flush(self) -> None:
        m = self.model
        for change in self.engine.take_adj_rib_out():
            self.check_change(change)
            if not m.attached:
                continue  # nobody to send it to
            if isinstance(change, Announce | Withdraw):
                targets = change.peers if change.peers is not None else self.peer_list
                for t in targets:
                    held = m.held[ip_address(str(t))]
                    texts = {str(p) for p in change.prefixes}
                    if isinstance(change, Announce):
                        held |= texts
                    else:
                        held -= texts

    def check_change(self, change: OutChange) -> None:
        m = self.model
        commands(change, self.cfg)  # ExaBGP's text: ValueError for a next hop of the wrong family
        if isinstance(change, Announce | Withdraw):
            assert change.prefixes and {p.version for p in change.prefixes} == {change.family}, change
            if change.peers is None:
                assert all(a.version == change.family for a in self.peer_list), change
            else:
                assert change.peers and all(a.version == change.family for a in change.peers), change
            if isinstance(change, Announce):
                assert change.next_hop.version == change.family, change
                assert change.next_hop == self.cfg.local_address(change.family), change
        elif isinstance(change, EndOfRib):
            peer = ip_address(str(change.peer))
            assert change.family == peer.version
            assert m.peers[peer].state == "up" and m.defer_done, change
            assert peer in m.eor_due, f"a second End-of-RIB for one session: {change}"
            m.eor_due.discard(peer)
        else:
            raise AssertionError(f"unexpected {change}")

    def settle(self) -> None:
        m = self.model
        ops = self.engine.take_kernel_ops()
        for target, hops in ops:
            text = str(target)
            inside = any(p.version == target.version and net(text).subnet_of(p) for p in m.pools)  # type: ignore[arg-type]
            if hops is not None:
                assert inside, f"installed outside every pool: {target}"
                assert all(h.version == target.version for h in hops), (target, hops)
            else:
                assert inside or text in self.ever_ours, f"deleted outside every pool: {target}"
        self.engine.kernel_written(ops, [OpResult(p, ok=True) for p, _ in ops])
        for target, written in ops:
            if written is None:
                m.kernel.pop(str(target), None)
            else:
                m.kernel[str(target)] = _strs(written)
                self.ever_ours.add(str(target))
        installed = {str(p): _strs(h) for p, h in self.engine.fib.installed.items()}
        assert installed == m.kernel, "the engine's record differs from the kernel"
        want = m.installable()
        for text, expected in want.items():
            assert m.kernel.get(text) == expected, (text, m.kernel.get(text), expected)
        for text in m.kernel:
            if text not in want:
                assert text in m.strays and not m.reconciled, f"{text} installed, not wanted"

    # --------------------------------------------------------------- state

    def check(self) -> None:
        m, engine = self.model, self.engine
        wanted = {str(p): _strs(h) for p, h in engine.fib.wanted.items()}
        assert wanted == m.wanted()
        for a in self.peer_list:
            pm = m.peers[ip_address(str(a))]
            stale = {str(p) for p in engine.stale_paths_of(a)}
            assert stale == (pm.stale or set()), a
            assert self.timers.armed.get(("stale", a)) == pm.deadline, a
        assert engine.deferral.done == m.defer_done
        # the per-family counts the metrics read are kept as the tables change; they equal a full walk
        assert engine.fib.installed_by_family == Counter(p.version for p in engine.fib.installed)
        assert engine.export.selected_by_family == Counter(r.prefix.version for r in engine.export.selected())
        assert engine.export.announced_by_family == Counter(p.version for p in engine.export.announced)
        for family in (4, 6):
            paths = sum(len(engine.rib.paths(p)) for p in engine.rib.prefixes() if p.version == family)
            assert engine.rib.path_count(family) == paths
        assert engine.fib.reconciled == m.reconciled
        assert (DEFER_TIMER in self.timers.armed) == (not m.reconciled)

    def check_adj_rib_out(self) -> None:
        """After a flush: every session's Adj-RIB-Out is this host's routes of its family."""
        m = self.model
        mine = m.announced()
        for a in self.peer_list:
            family = {t for t in mine if net(t).version == a.version}
            assert m.held[ip_address(str(a))] == family, a

    def finish(self) -> None:
        """ExaBGP back, the start's deferral over, everything carried out: the final state is exact."""
        if not self.model.attached:
            self.apply(ExabgpBack())
        if DEFER_TIMER in self.timers.armed:
            self.fire(DEFER_TIMER)
            self.track_strays()
            self.check()
        self.flush()
        self.check_adj_rib_out()
        self.settle()
        m = self.model
        assert m.kernel == m.installable()
        assert {str(p): _strs(h) for p, h in self.engine.fib.installed.items()} == m.installable()
        up = {a for a, pm in m.peers.items() if pm.state == "up"}
        assert not (up & m.eor_due), "established sessions without End-of-RIB"


def _own(indices: Iterable[int], cfg: Config) -> dict[Prefix, tuple[Address, ...]]:
    """Routes of ours from an earlier run, at in-pool prefixes of the config's families."""
    own: dict[Prefix, tuple[Address, ...]] = {}
    for i in indices:
        target = PREFIXES[i]
        if target.version in cfg.families and not PREFIX_TEXTS[i].startswith(
            ("10.99", "fd00:99", "0.", "::")
        ):
            own[target] = (address("192.168.100.10" if target.version == 4 else "fd00:100::10"),)
    return own


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(max_examples=250, deadline=None, derandomize=True, database=None)
@given(
    connected=st.lists(st.builds(Connect, _peer, st.sampled_from([None, 120]), st.just(True), st.booleans())),
    events=st.lists(EVENTS, min_size=10, max_size=80),
    own=st.sets(_prefix, max_size=3),
    local=st.sets(_route, max_size=4),
)
def test_engine_agrees_with_the_model(
    name: str, connected: list[Connect], events: list[Event], own: set[int], local: set[int]
) -> None:
    cfg = config.parse(CONFIGS[name])
    run = Run(cfg, _own(own, cfg), local)
    for event in [*connected, *events]:
        run.apply(event)
        if isinstance(event, Flush) and run.model.attached:
            run.check_adj_rib_out()
    run.finish()


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(events=st.lists(RESTART_EVENTS, min_size=20, max_size=80))
def test_graceful_restarts_agree_with_the_model(name: str, events: list[Event]) -> None:
    run = Run(config.parse(CONFIGS[name]), {}, set())
    for event in [Connect(0, 120, True, False), Connect(-1, 120, True, False), *events]:
        run.apply(event)
        if isinstance(event, Flush) and run.model.attached:
            run.check_adj_rib_out()
    run.finish()


@pytest.mark.parametrize("name", sorted(CONFIGS))
@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_the_selection_does_not_depend_on_the_order_updates_arrive_in(name: str, data: st.DataObject) -> None:
    """One UPDATE per peer and prefix, in two orders: the same FIB, the same kernel (the model is checked
    after each event of both runs)."""
    cfg = config.parse(CONFIGS[name])
    sessions = len(cfg.sessions())
    sends = data.draw(
        st.lists(_send, min_size=1, max_size=16, unique_by=lambda s: (s.peer % sessions, s.prefix)),
        label="sends",
    )
    order = data.draw(st.permutations(sends), label="order")
    withdrawals = data.draw(st.lists(st.builds(Unsend, _peer, _prefix), max_size=4), label="withdrawals")
    results = []
    for updates in (sends, order):
        run = Run(cfg, {}, set())
        for i in range(sessions):
            run.apply(Connect(i, 120, True, False))
        events: list[Event] = [*updates, *withdrawals]
        for event in events:
            run.apply(event)
        run.settle()
        results.append((dict(run.engine.fib.wanted), dict(run.engine.fib.installed)))
    assert results[0] == results[1]
