"""The Engine: sessions, Adj-RIBs-In, import policy, the decision process, export, reflection and the
start's selection deferral, for IPv4 and IPv6 alike. No I/O (see the package docstring for its inputs
and outputs).

Two flows (as OpenBGPD's RDE):
- kernel route events -> `ExportTable` -> Adj-RIB-Out changes to every session of the route's family
  (next hop: this node's address of that family; Calico's meaning: IPv6 routes over IPv6 sessions);
- UPDATEs -> import policy -> `Rib` -> best path / ECMP -> `Fib` (kernel operations, our protocol only),
  and on a reflector, RFC 4456 reflection -> Adj-RIB-Out changes.

Session protection (issue 14): a peer sending more prefixes than its `max_prefixes` is warned about or reset
and held down (`limits`); a session that does not reach Established in time gets a reason (`establish`).

Graceful restart: our End-of-RIB waits for the peers' tables at start (RFC 4724 §4.1, `deferral`); the
kernel routes of an earlier run wait for every peer's table (`stale_wait`), then unwanted ones go. When a
peer that advertised graceful restart for the session's family drops without a NOTIFICATION, bgpd is the
helper of RFC 4724 §4.2 (`restart.StalePaths`); when ExaBGP itself dies, every peer's paths are kept the
same way until the sessions are back and have re-sent their tables, or `kernel.stale_timeout` passes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Protocol, TypeVar

from bgpd.config import Config, PeerConfig
from bgpd.config_policy import is_large
from bgpd.engine import establish, limits
from bgpd.engine.establish import EstablishWatch
from bgpd.engine.fib import Fib, Hops
from bgpd.engine.limits import HoldDowns
from bgpd.engine.notification import CEASE, CEASE_MAX_PREFIXES, describe
from bgpd.engine.outputs import (
    Announce,
    EndOfRib,
    Family,
    KernelOp,
    OutChange,
    RouteRefresh,
    SessionOp,
    Withdraw,
)
from bgpd.engine.peers import PeerStatus
from bgpd.engine.restart import StalePaths
from bgpd.engine.timers import Timers
from bgpd.engine.tunnel import TunnelPlan
from bgpd.model import (
    Address,
    Attributes,
    LinkLost,
    LinkUp,
    OpResult,
    Path,
    Peer,
    Prefix,
    RouteAdded,
    RouteEvent,
    RouteRemoved,
    Snapshot,
)
from bgpd.policy.export import Delta, ExportRules, ExportTable
from bgpd.policy.filters import BGPFilter, RouteFacts, evaluate
from bgpd.policy.importer import ImportPolicy, Reject
from bgpd.prefix import bits as prefix_bits
from bgpd.prefix import covers, host_key
from bgpd.prefix import family as family_of
from bgpd.rib.deferral import SelectionDeferral
from bgpd.rib.table import Rib
from reflector.adjout import AdjRibOut, Advert, Batch
from reflector.rules import reflected_attributes, targets

log = logging.getLogger("bgpd.engine")

INLINE_CHANGES = 16  # Adj-RIB-Out changes up to this many are handed over at once (else a loop turn later)
ADVERT_CACHE_SIZE = 4096  # reflected (source, next hop, attributes) kept; cleared when full
EXPORT_ATTRIBUTES = Attributes()
DEFER_TIMER = "select-defer"
NO_EXPORT = "65535:65281"  # RFC 1997 well-known communities
NO_ADVERTISE = "65535:65282"
NO_EXPORT_SUBCONFED = "65535:65283"
FAMILIES: tuple[Family, ...] = (4, 6)
HELD_DOWN = "held-down"  # PeerStatus.state of a session held down after a maximum-prefixes reset
# a NOTIFICATION that ended a session: ("sent" or "received", code, subcode)
Notified = tuple[str, int, int]


class Announcement(Protocol):
    """One received NLRI (the codec's `Announced`): prefix, next hop (the global one for IPv6; a link-local
    one beside it, RFC 2545, is not a second path) and attributes."""

    @property
    def prefix(self) -> Prefix: ...
    @property
    def next_hop(self) -> Address: ...
    @property
    def attrs(self) -> Attributes: ...


def export_rules(cfg: Config) -> ExportRules:
    return ExportRules(
        protocols=frozenset(cfg.export.protocols),
        interfaces=tuple(cfg.export.interfaces),
        pools=tuple(p.cidr for p in cfg.pools if p.export),
        own_protocol=cfg.kernel.protocol,
    )


def _by_family(prefixes: Iterable[Prefix]) -> dict[Family, list[Prefix]]:
    """Sorted, split by family (an IPv4 and an IPv6 prefix do not compare)."""
    split: dict[Family, list[Prefix]] = {}
    for prefix in prefixes:
        split.setdefault(family_of(prefix), []).append(prefix)
    for items in split.values():
        items.sort()  # one family per list: the types' own fast ordering
    return split


class Engine:
    """One host's (or reflector's) routing decisions."""

    def __init__(self, cfg: Config, timers: Timers) -> None:
        self.cfg = cfg
        self.timers = timers
        self.counters: Counter[str] = Counter()
        self.rib = Rib()
        self.export = ExportTable(export_rules(cfg))
        self.fib = Fib(cfg.kernel.protocol, cfg.kernel.metric, cfg.kernel.install, timers, self.counters)
        self.stale = StalePaths(timers)
        self.holds = HoldDowns(timers)
        self.watch = EstablishWatch(timers)
        self.local_addresses: frozenset[Address] = frozenset(
            a for a in (cfg.local_address(4), cfg.local_address(6)) if a is not None
        )
        # the node's underlay subnet as the kernel has it (for a node.address written without its length)
        self.kernel_subnet: IPv4Network | None = None
        self.peers: dict[Address, PeerStatus] = {}
        self._configure(cfg)
        self.policy = self._import_policy()
        # Route reflection (RFC 4456): what each peer was sent
        self.adjout = AdjRibOut()
        self._targets: dict[Address, frozenset[Address]] = {}  # per source, for _ibgp_roles
        self._adverts: dict[tuple[IPv4Address | Address, Address, Attributes], Advert] = {}
        self._reflect_pending = False
        self._stripped: dict[Attributes, Attributes] = {}  # eBGP paths' attributes without LOCAL_PREF
        self._self_adverts: dict[tuple[Advert, Address], Advert] = {}  # reflected with next hop self
        self._ebgp_adverts: dict[tuple[int, Address, Attributes], Advert] = {}  # sent on over eBGP
        # per distinct export filter list: our prefixes its sessions were sent
        self._filtered_sent: dict[tuple[Family, tuple[BGPFilter, ...]], set[Prefix]] = {}
        # RFC 4724 §4.1: our End-of-RIB waits for the peers' tables (restarting peers excepted), and the
        # removal of stale kernel routes for every peer's table (restarting peers included)
        self.deferral = SelectionDeferral(self.peers)
        self.stale_wait = SelectionDeferral(self.peers, exclude_restarting=False)
        # Adj-RIB-Out changes not handed over yet
        self._out_announce: set[Prefix] = set()
        self._out_withdraw: set[Prefix] = set()
        self._out: list[OutChange] = []  # replays and route refreshes, in order, before the rest
        self._eor_pending: set[Address] = set()
        self._added_by_reload: set[Address] = set()
        self.export_ready = False  # the kernel's routes are read
        self.exported_in_last_take = False
        self._warned_no_next_hop: set[Family] = set()
        self.last_reload: dict[str, object] | None = None

    def _configure(self, cfg: Config) -> None:
        """Settings derived from the config (at start and on reload)."""
        self.cluster_id = cfg.reflector.cluster_id if cfg.reflector else None
        self.mesh_nodes = frozenset(cfg.bgp.mesh.nodes) if cfg.bgp.mesh.enabled else frozenset()
        for p in cfg.sessions():
            if p.address not in self.peers:
                self.peers[p.address] = PeerStatus(p.address, p.asn, p.rr_client)
            self.peers[p.address].prefix_limit = p.prefix_limit
        self._sessions = {p.address: p for p in cfg.sessions()}
        # per session: our AS towards it (Calico's localASNumber), how often it may appear in a received
        # AS_PATH, and its filters (Calico's BGPFilter, in the order listed)
        by_name = {f.name: f for f in cfg.filters}
        self._local_as: dict[Address, int] = {}
        self._allow_local_as: dict[Address, int] = {}
        self._filters: dict[Address, tuple[BGPFilter, ...]] = {}
        self._next_hop_self: frozenset[Address] = frozenset(
            p.address for p in cfg.sessions() if p.next_hop_mode == "self"
        )
        self._next_hop_mode: dict[Address, str] = {p.address: p.next_hop_mode for p in cfg.sessions()}
        self._interface_filters = any(
            r.interface is not None
            for f in cfg.filters
            for rules in (f.export_v4, f.export_v6)
            for r in rules
        )
        for p in cfg.sessions():
            self._local_as[p.address] = p.local_asn or cfg.node.asn
            self._allow_local_as[p.address] = p.allow_local_as
            if p.filters:
                self._filters[p.address] = tuple(by_name[n] for n in p.filters)
        self._ibgp_roles = {
            a: p.rr_client for a, p in self.peers.items() if p.asn == self._local_as.get(a, cfg.node.asn)
        }
        self._ebgp_peers = frozenset(a for a in self.peers if a not in self._ibgp_roles)
        # learned routes are sent on by a reflector, and by any node with an eBGP session (RFC 4271 §9.2)
        self._readvertise = self.cluster_id is not None or bool(self._ebgp_peers)
        # the sessions of each family; None where that is every session (commands then name no neighbor)
        self._family_peers: dict[Family, tuple[Address, ...] | None] = {}
        for family in FAMILIES:
            members = tuple(sorted(a for a in self.peers if a.version == family))
            self._family_peers[family] = None if len(members) == len(self.peers) else members
        self._next_hop: dict[Family, Address | None] = {4: cfg.local_address(4), 6: cfg.local_address(6)}
        self.tunnel = self._tunnel_plan(cfg)
        # export groups (as FRR's update groups): the sessions of a family with the same filters get the
        # same routes; without filters, every session of the family (`_family_peers`)
        self._groups: dict[Family, list[tuple[tuple[Address, ...] | None, tuple[BGPFilter, ...]]]] = {}
        for family in FAMILIES:
            by_filters: dict[tuple[BGPFilter, ...], list[Address]] = {}
            for address in sorted((a for a in self.peers if a.version == family), key=host_key):
                by_filters.setdefault(self._filters.get(address, ()), []).append(address)
            if set(by_filters) <= {()}:
                self._groups[family] = [(self._family_peers[family], ())]
            else:
                self._groups[family] = [(tuple(members), f) for f, members in by_filters.items()]
        # Calico's prefixAdvertisements: (cidr key, standard, large) communities for exported routes
        self._advertisements = [
            (
                prefix_bits(a.cidr),
                tuple(c for c in a.communities if not is_large(c)),
                tuple(c for c in a.communities if is_large(c)),
            )
            for a in cfg.bgp.prefix_advertisements
        ]
        self._export_attrs: dict[tuple[tuple[str, ...], tuple[str, ...]], Attributes] = {}

    @property
    def subnet(self) -> IPv4Network | None:
        """The local subnet that decides `cross-subnet`: node.address's length if written, else the one of
        the interface that holds the address (known after `start`); None if neither."""
        return self.cfg.node.subnet or self.kernel_subnet

    def _tunnel_plan(self, cfg: Config) -> TunnelPlan:
        subnet = cfg.node.subnet or self.kernel_subnet
        length = subnet.prefixlen if subnet is not None else 32  # unknown: every other node is remote
        return TunnelPlan(
            ((p.cidr, p.ipip) for p in cfg.pools),
            IPv4Interface(f"{cfg.node.address}/{length}"),
            vxlan=(p.cidr for p in cfg.pools if p.vxlan != "never"),
        )

    def _import_policy(self) -> ImportPolicy:
        cfg = self.cfg
        own = [a for a in (cfg.local_address(4), cfg.local_address(6)) if a is not None]
        return ImportPolicy(
            (p.cidr for p in cfg.pools), own, self.local_addresses, cfg.node.router_id, self.cluster_id
        )

    # ------------------------------------------------------------------ start

    def start(
        self, own: dict[Prefix, Hops], local_addresses: Iterable[Address], subnet: IPv4Network | None = None
    ) -> None:
        """The kernel's routes of ours from an earlier run (`own`) and this host's addresses are read;
        `subnet`: the network of the interface address that is node.address (None: not on any interface)."""
        self.kernel_subnet = subnet
        self.tunnel = self._tunnel_plan(self.cfg)
        self.fib.start(own)
        if own:
            log.info("kernel routes from an earlier run", extra={"kv": {"count": len(own)}})
        self.local_addresses = frozenset(local_addresses) | self.local_addresses
        self.policy = self._import_policy()
        self._deferral_step(self.deferral.start(), self.stale_wait.start())
        if not self.stale_wait.done:
            self.timers.arm(DEFER_TIMER, self.cfg.bgp.select_defer_time)
        for address, status in self.peers.items():
            if status.state != "up":
                self.watch.wait(address, self._establish_bound(address))

    # ------------------------------------------------------------------ outputs

    def take_kernel_ops(self) -> list[KernelOp]:
        """Output 1: the kernel FIB operations due (bgpd's own routes only)."""
        return self.fib.take_ops()

    @property
    def kernel_work(self) -> bool:
        return self.fib.has_work

    def take_session_ops(self) -> list[SessionOp]:
        """Beside the two outputs: the session operations due (`Teardown`, `HoldDown`), in order."""
        return self.holds.take()

    @property
    def session_work(self) -> bool:
        return self.holds.pending

    @property
    def held_down(self) -> frozenset[Address]:
        """Sessions held down after a maximum-prefixes reset: the speaker leaves them out of ExaBGP."""
        return self.holds.held

    @property
    def out_pending(self) -> bool:
        return bool(
            self._out
            or self._out_announce
            or self._out_withdraw
            or self._reflect_pending
            or self._eor_ready()
        )

    @property
    def out_urgent(self) -> bool:
        """Hand the Adj-RIB-Out changes over now rather than a loop turn later (so bursts coalesce): an
        End-of-RIB is due, or a few local changes alone."""
        if self._out or self._eor_ready():
            return True
        if self._reflect_pending:
            return False
        pending = len(self._out_announce) + len(self._out_withdraw)
        return 0 < pending <= INLINE_CHANGES

    def take_adj_rib_out(self) -> list[OutChange]:
        """Output 2: the Adj-RIB-Out changes due, in the order they must be sent: replays and route
        refreshes, withdrawals (local, reflected), announcements (local, reflected), then the End-of-RIBs that
        say the table is complete."""
        out, self._out = self._out, []
        changes = self._take_export()
        self.exported_in_last_take = bool(changes)
        if self._reflect_pending:
            self._reflect_pending = False
            changes += self._batches(self.adjout.flush())
        # every withdrawal before every announcement: ExaBGP keeps one route per prefix and neighbor, so a
        # reflected withdrawal sent after a local announcement of the same prefix (a reflector starting to
        # export what it reflected) would take the announcement back
        out += [c for c in changes if isinstance(c, Withdraw)]
        out += [c for c in changes if not isinstance(c, Withdraw)]
        if self._eor_ready():
            for peer in sorted(self._eor_pending, key=host_key):
                if peer in self._added_by_reload:  # ExaBGP learnt this neighbor by a reload: our table now
                    self._added_by_reload.discard(peer)
                    out += self._table_for(peer)
                out.append(EndOfRib(peer, self.peers[peer].family))
            self._eor_pending.clear()
        return out

    def _take_export(self) -> list[OutChange]:
        out: list[OutChange] = []
        withdraw, announce = self._out_withdraw, self._out_announce
        if not withdraw and not announce:
            return out
        log.debug("export", extra={"kv": {"announce": len(announce), "withdraw": len(withdraw)}})
        withdrawn, announced = _by_family(withdraw), _by_family(announce)
        for family in FAMILIES:
            gone, new = withdrawn.get(family, []), announced.get(family, [])
            for peers, filters in self._groups[family]:
                if peers == ():
                    continue
                if not filters:
                    if gone:
                        out.append(Withdraw(family, gone, peers))
                    out += self._announce_local(family, new, peers)
                    continue
                # a filtered group: what its filters let through, and what they no longer do
                sent = self._filtered_sent.setdefault((family, filters), set())
                passing = self._passing(filters, new)
                let_out = set(passing)
                dropped = [p for p in gone if p in sent] + [p for p in new if p in sent and p not in let_out]
                sent.difference_update(dropped)
                sent.update(passing)
                if dropped:
                    dropped.sort()
                    out.append(Withdraw(family, dropped, peers))
                out += self._announce_local(family, passing, peers)
        self._out_withdraw, self._out_announce = set(), set()
        return out

    def exported_to(self, peer: Address) -> tuple[int, int]:
        """(our own prefixes sent to `peer`, those its export filters hold back), of its family."""
        family = self.peers[peer].family
        total = self.export.announced_by_family[family]
        filters = self._filters.get(peer)
        if not filters:
            return total, 0
        sent = len(self._filtered_sent.get((family, filters), ()))
        return sent, total - sent

    def _passing(self, filters: tuple[BGPFilter, ...], prefixes: Iterable[Prefix]) -> list[Prefix]:
        """Our own `prefixes` (in order) that a session's export filters let out (no rule matched: out)."""
        device = self.export.device
        return [
            p for p in prefixes if evaluate(filters, "export", RouteFacts(p, False, device(p))) != "Reject"
        ]

    def _announce_local(
        self, family: Family, prefixes: Sequence[Prefix], peers: tuple[Address, ...] | None
    ) -> list[OutChange]:
        if peers == () or not prefixes:
            return []
        next_hop = self._next_hop[family]
        if next_hop is None:
            if family not in self._warned_no_next_hop:
                self._warned_no_next_hop.add(family)
                log.warning(
                    "IPv6 routes to export but no node.address6 to announce them from; not exported",
                    extra={"kv": {"routes": len(prefixes)}},
                )
            return []
        if not self._advertisements:
            return [Announce(family, prefixes, next_hop, EXPORT_ATTRIBUTES, peers)]
        # Calico's prefixAdvertisements: the communities of every advertisement that covers the prefix
        buckets: dict[Attributes, list[Prefix]] = {}
        for prefix in prefixes:
            buckets.setdefault(self._attributes_for(prefix), []).append(prefix)
        return [Announce(family, items, next_hop, attrs, peers) for attrs, items in buckets.items()]

    def _attributes_for(self, prefix: Prefix) -> Attributes:
        key = prefix_bits(prefix)
        standard: list[str] = []
        large: list[str] = []
        for cidr, std, lg in self._advertisements:
            if covers(cidr, key):
                standard += [c for c in std if c not in standard]
                large += [c for c in lg if c not in large]
        pair = (tuple(standard), tuple(large))
        attrs = self._export_attrs.get(pair)
        if attrs is None:
            attrs = self._export_attrs[pair] = Attributes(communities=pair[0], large_communities=pair[1])
        return attrs

    def _table_for(self, peer: Address) -> list[OutChange]:
        """Everything `peer` should hold: our routes of its family and what we reflect to it."""
        family = self.peers[peer].family
        mine = [p for p in self.export.announced if family_of(p) == family]
        filters = self._filters.get(peer)
        if filters:
            mine = self._passing(filters, mine)
        mine.sort()
        return self._announce_local(family, mine, (peer,)) + self._batches(self.adjout.replay(peer))

    def _batches(self, batches: Iterable[Batch]) -> list[OutChange]:
        out: list[OutChange] = []
        for b in batches:
            if not b.prefixes:
                continue
            family = family_of(b.prefixes[0])
            if b.advert is None:
                out.append(Withdraw(family, b.prefixes, b.peers))
            else:
                out.append(Announce(family, b.prefixes, b.advert.next_hop, b.advert.attrs, b.peers))
        return out

    def _eor_ready(self) -> bool:
        return bool(self._eor_pending) and self.export_ready and self.deferral.done

    # ------------------------------------------------------------------ kernel -> export

    def kernel_events(self, events: Iterable[RouteEvent]) -> bool:
        """Route and link events of the kernel table, in order (bgpd's own writes are not among them).
        Returns whether they changed what this host exports."""
        delta = Delta()
        own = self.cfg.kernel.protocol
        fib, export = self.fib, self.export
        requeue: set[Prefix] = set()
        for event in events:
            if isinstance(event, Snapshot):
                self.counters[f"kernel_resyncs_{event.reason}"] += 1
                others = [r for r in event.routes if r.protocol != own]
                fib.set_view(others)
                export.replace_all(others, delta)
                fib.own_snapshot([r for r in event.routes if r.protocol == own], event.reason)
                if event.reason != "start":
                    log.warning(
                        "kernel resync", extra={"kv": {"reason": event.reason, "routes": len(event.routes)}}
                    )
            elif isinstance(event, RouteAdded):
                route = event.route
                if route.protocol == own:
                    # it replaced whatever sat at its key (prefix, table, metric), of any protocol
                    displaced = fib.view_get(route.key)
                    if displaced is not None:
                        fib.view_remove(displaced)
                        export.remove(displaced, delta)
                    fib.own_changed(route, present=True)
                    continue
                if self._interface_filters:  # a device change in place: export filters judge it again
                    old = fib.view_get(route.key)
                    if old is not None and old.ifname != route.ifname:
                        requeue.add(route.prefix)
                fib.foreign_added(route)
                export.add(route, delta)
            elif isinstance(event, RouteRemoved):
                if event.route.protocol == own:
                    fib.own_changed(event.route, present=False)
                    continue
                fib.view_remove(event.route)
                export.remove(event.route, delta)
            elif isinstance(event, LinkLost):
                fib.link_lost(event.name, event.flushed, event.networks, event.routes)
            elif isinstance(event, LinkUp):
                fib.link_up(event.name)
        if not self.export_ready:
            self.export_ready = True
            log.info("kernel dump read", extra={"kv": {"exported": self.export.announced_count}})
        for prefix in requeue:
            if export.is_announced(prefix) and prefix not in delta.announce:
                delta.announce.add(prefix)
        if delta:
            self._exported(delta)
        return bool(delta)

    def _exported(self, delta: Delta) -> None:
        for prefix in self._queue_export(delta):
            self._reselect(prefix)

    def _queue_export(self, delta: Delta) -> set[Prefix]:
        """Queue an export delta for the Adj-RIB-Out; the prefixes whose learned copies it (un)suppresses
        (to be reselected)."""
        for prefix in delta.announce:
            self._out_withdraw.discard(prefix)
            self._out_announce.add(prefix)
        for prefix in delta.withdraw:
            self._out_announce.discard(prefix)
            self._out_withdraw.add(prefix)
        changed = delta.announce | delta.withdraw
        for prefix in changed:
            self.rib.suppress(prefix, self.export.is_announced(prefix))
        return changed

    def kernel_written(self, ops: list[KernelOp], results: list[OpResult]) -> None:
        """The results of writing `ops` (`Fib.begin_background` first if the write left the loop)."""
        self.fib.written(ops, results)

    def kernel_reread(self, held: dict[Prefix, Hops], cause: str) -> None:
        """A dump of our routes asked for by `fib.take_audit()`, taken in the background."""
        touched, touched_all = self.fib.end_background()
        self.fib.reread(held, cause, touched, touched_all)

    # ------------------------------------------------------------------ ExaBGP attached / lost

    def exabgp_attached(self) -> None:
        """A (new) ExaBGP attached: it knows nothing; replay our whole table and what we reflected."""
        for family, prefixes in _by_family(self.export.announced).items():
            for peers, filters in self._groups[family]:  # each export group what its filters let through
                if filters:
                    passing = self._passing(filters, prefixes)
                    self._filtered_sent[family, filters] = set(passing)
                    self._out += self._announce_local(family, passing, peers)
                else:
                    self._out += self._announce_local(family, prefixes, peers)
        self._out += self._batches(self.adjout.replay())

    def exabgp_lost(self) -> None:
        """ExaBGP went away: all sessions are down, but keep their paths until they come back."""
        for address, status in self.peers.items():
            if status.state == HELD_DOWN:
                continue  # a restarted ExaBGP is started without it (the last neighbor set)
            if status.state == "up":
                status.flaps += 1
            status.state = "down"
            status.since = time.time()
            status.eor = False
            status.rejected_held.clear()
            self.watch.wait(address, self._establish_bound(address))
        self._eor_pending.clear()  # as for a session going down: no End-of-RIB until it is up again
        for peer in list(self.peers):
            prefixes = self.rib.peer_prefixes(peer)
            if prefixes:
                self.stale.keep(
                    peer, prefixes, self.cfg.kernel.stale_timeout, "no end-of-rib after exabgp restart"
                )
        log.error("exabgp disconnected; keeping learned routes until sessions return")

    # ------------------------------------------------------------------ sessions

    def peer_open(
        self,
        peer: Address,
        router_id: IPv4Address,
        graceful: tuple[int | None, bool],
        restarting: bool,
        sends_end_of_rib: bool = False,
    ) -> None:
        """The peer's OPEN: its router id, and RFC 4724 §3 for the session's family: (restart time or None,
        forwarding state kept), its Restart State bit, and whether it advertised the Graceful Restart
        Capability at all (`sends_end_of_rib`: a capability without families still promises End-of-RIB,
        so a starting bgpd waits for it before removing its earlier run's routes)."""
        status = self.peers.get(peer)
        if status is None or status.state == HELD_DOWN:
            return
        status.router_id = router_id
        status.restart_time, status.forwarding_kept = graceful
        waits = status.restart_time is not None or sends_end_of_rib
        self._deferral_step(
            self.deferral.opened(peer, waits, restarting),
            self.stale_wait.opened(peer, waits, restarting),
        )
        if self.stale.restarting(peer) and not (status.restart_time and status.forwarding_kept):
            # RFC 4724 §4.2: back without graceful restart, or without its forwarding state
            self._flush_stale(peer, "peer restarted without keeping its forwarding state")

    def notification(self, peer: Address, code: int, subcode: int) -> None:
        """A NOTIFICATION received from `peer` (RFC 4271 §4.5)."""
        status = self.peers.get(peer)
        if status is None:
            return
        status.ungraceful = True  # a session closed with a NOTIFICATION is not a graceful restart
        self._failed(status, ("received", code, subcode))
        log.warning(
            "notification from peer",
            extra={"kv": {"peer": peer, "code": code, "subcode": subcode, "means": describe(code, subcode)}},
        )

    def peer_state(
        self,
        peer: Address,
        state: str,
        reason: str = "",
        notified: bool | Notified = False,
        asn: int = 0,
    ) -> None:
        """The session went `state` ("up", "down", "connected", ...). `notified`: it ended with a
        NOTIFICATION (sent or received), which is no graceful restart; as ("sent" or "received", code,
        subcode) when known, which then is the session's `last_error`."""
        status = self.peers.get(peer)
        if status is None:
            return
        self.holds.seen(peer, state)
        if status.state == HELD_DOWN:
            if state == "up":
                log.info("held-down session came back; closing it again", extra={"kv": {"peer": peer}})
            return
        if state == "down" and isinstance(notified, tuple):
            # only a NOTIFICATION says what went wrong: ExaBGP 5.0.15 reports even a connect to an
            # unreachable address as "connected" then "down" (it reads SO_ERROR twice, clearing it)
            self._failed(status, notified)
        if state == status.state:
            return
        was_up = status.state == "up"
        status.state = state
        status.since = time.time()
        if state == "up":
            status.eor = False
            status.ungraceful = False
            self.watch.established(peer)
            status.reason = None
            log.info("session established", extra={"kv": {"peer": peer, "asn": asn}})
            if self.stale.restarting(peer):
                # RFC 4724 §4.2: back in time; its stale paths stay until End-of-RIB, within stale_timeout
                self.stale.rearm(peer, self.cfg.kernel.stale_timeout, "no end-of-rib in time")
            self._eor_pending.add(peer)
        elif state == "down":
            if was_up:
                status.flaps += 1
            status.eor = False
            self._eor_pending.discard(peer)
            status.rejected_held.clear()  # a graceful restart keeps the accepted paths (in the RIB) only
            self.watch.wait(peer, self._establish_bound(peer))
            if status.reason is not None:
                self._explain(status)  # past its deadline already: a new failure may change the reason
            if self.stale.restarting(peer):
                if not was_up:
                    return  # a restart in progress (ExaBGP's or the peer's): its attempts may fail meanwhile
                # RFC 4724 §4.2, consecutive restarts: the paths already marked stale are deleted
                self._flush_stale(peer, "session dropped again before end-of-rib")
            graceful = status.restart_time and not status.ungraceful and not notified
            if was_up and graceful:
                assert status.restart_time is not None
                kept = self.rib.peer_prefixes(peer)
                self.stale.keep(peer, kept, status.restart_time, "restart time passed")
                log.warning(
                    "session down; graceful restart: keeping the peer's routes",
                    extra={
                        "kv": {
                            "peer": peer,
                            "reason": reason,
                            "kept": len(kept),
                            "restart_time": status.restart_time,
                        }
                    },
                )
                return
            affected = self.rib.drop_peer(peer)
            limits.crossed(status, 0)
            log.log(
                logging.WARNING if was_up else logging.DEBUG,
                "session down" if was_up else "connection closed before established",
                extra={"kv": {"peer": peer, "reason": reason, "withdrawn": len(affected)}},
            )
            for prefix in affected:
                self._reselect(prefix)

    def _failed(self, status: PeerStatus, what: str | Notified) -> None:
        """An attempt of `status`'s session ended: `what` (a NOTIFICATION, or text) is its `last_error` and,
        until the session is Established, the likeliest reason it is not."""
        if isinstance(what, tuple):
            direction, code, subcode = what
            what = f"NOTIFICATION {direction}: {describe(code, subcode)}"
        status.last_error = what
        self.watch.failed(status.address, what)

    def _establish_bound(self, peer: Address) -> float:
        session = self._sessions.get(peer)
        hold = session.hold_time if session is not None and session.hold_time is not None else None
        return establish.bound(hold if hold is not None else self.cfg.bgp.hold_time)

    def _explain(self, status: PeerStatus) -> None:
        """`status`'s session is past its deadline without reaching Established: set its reason, logged
        once per distinct reason (not per retry)."""
        session = self._sessions.get(status.address)
        if session is None or status.state in ("up", HELD_DOWN):
            return
        why = establish.reason(session, self.watch.failure.get(status.address))
        if why != status.reason:
            status.reason = why
            log.warning(
                "session cannot be established",
                extra={"kv": {"peer": status.address, "state": status.state, "reason": why}},
            )

    # ------------------------------------------------------------------ maximum prefixes (RFC 4486)

    def prefix_count(self, peer: Address) -> int:
        """The prefixes `peer` currently announces, before import policy (`bgpd.engine.limits`)."""
        status = self.peers.get(peer)
        if status is None:
            return 0
        return self.rib.peer_count(peer) + len(status.rejected_held)

    def _check_limit(self, status: PeerStatus) -> None:
        """After an UPDATE (or a lower limit by reload): act on a crossing of the peer's limit."""
        limit = status.prefix_limit
        count = self.prefix_count(status.address)
        if limit is None or not limits.crossed(status, count):
            return
        kv: dict[str, object] = {
            "peer": status.address,
            "max_prefixes": limit.maximum,
            "count": count,
            "action": limit.action,
        }
        if limit.action == "warn":
            log.warning("maximum prefixes exceeded", extra={"kv": kv})
            return
        kv["restart_after_s"] = limit.restart_after
        log.warning("maximum prefixes exceeded; closing the session and holding it down", extra={"kv": kv})
        self._hold_down(status, limit.restart_after)

    def _hold_down(self, status: PeerStatus, seconds: int) -> None:
        """RFC 4486 §4: close the session with Cease / Maximum Number of Prefixes Reached and keep it down
        `seconds`. Its routes go at once, with no graceful restart (a deliberate reset)."""
        peer = status.address
        if status.state == "up":
            status.flaps += 1
        status.state = HELD_DOWN
        status.since = time.time()
        status.eor = False
        status.ungraceful = True
        status.held_until = status.since + seconds
        self._eor_pending.discard(peer)
        self._failed(status, ("sent", CEASE, CEASE_MAX_PREFIXES))
        limit = status.prefix_limit
        maximum = limit.maximum if limit is not None else 0
        status.reason = (
            f"held down for {seconds} s: more than {maximum} prefixes received "
            f"(max_prefixes; NOTIFICATION sent: {describe(CEASE, CEASE_MAX_PREFIXES)})"
        )
        self.watch.forget(peer)
        self.holds.start(peer, seconds)
        status.rejected_held.clear()
        self.stale.drop(peer)
        affected = self.rib.drop_peer(peer)
        status.over_limit = False  # its count is 0 now: the next crossing counts again
        # its table is refused on purpose: neither our End-of-RIB nor the kernel's cleanup waits for it
        self._deferral_step(self.deferral.forget(peer), self.stale_wait.forget(peer))
        for prefix in affected:
            self._reselect(prefix)

    def _released(self, peer: Address) -> None:
        """The hold-down of `peer` is over: its session may come back."""
        status = self.peers.get(peer)
        if status is None:
            return
        status.state = "idle"
        status.since = time.time()
        status.held_until = None
        status.reason = None
        # ExaBGP learns the neighbor anew (its Adj-RIB-Out empty): our table goes with our End-of-RIB
        self._added_by_reload.add(peer)
        self.watch.restart(peer, self._establish_bound(peer))
        log.info("maximum-prefixes hold-down over; the session may come back", extra={"kv": {"peer": peer}})

    def stale_count(self, peer: Address) -> int:
        """How many of `peer`'s paths are kept through a restart and not yet re-sent (no copy)."""
        return self.stale.count(peer)

    def stale_paths_of(self, peer: Address) -> frozenset[Prefix]:
        """Paths of `peer` kept through a restart (its own or ExaBGP's) and not yet re-sent."""
        return self.stale.paths_of(peer)

    def _drop_stale(self, peer: Address) -> int:
        """Withdraw the paths of `peer` still marked stale, end its deadline; how many there were."""
        stale = self.stale.drop(peer)
        for prefix in stale:
            if self.rib.remove(peer, prefix):
                self._reselect(prefix)
        status = self.peers.get(peer)
        if stale and status is not None and status.over_limit:
            limits.crossed(status, self.prefix_count(peer))  # back under its limit: the next crossing counts
        return len(stale)

    def _flush_stale(self, peer: Address, why: str) -> None:
        """The restart is over without the peer's End-of-RIB (or failed): its stale paths go."""
        kv = {"peer": peer, "why": why, "withdrawn": self._drop_stale(peer)}
        log.warning("stale routes withdrawn", extra={"kv": kv})

    def update(
        self,
        peer: Address,
        withdrawn: Iterable[Prefix],
        announced: Iterable[Announcement],
        malformed: Iterable[str] = (),
    ) -> None:
        """One UPDATE (RFC 4271 §9): withdrawn prefixes, announced routes, and RFC 7606 treat-as-withdraw
        reasons (those prefixes are in `withdrawn`)."""
        status = self.peers.get(peer)
        if status is None or status.state == HELD_DOWN:
            return  # a held-down session's UPDATEs still in flight after our NOTIFICATION: refused
        status.updates_in += 1
        rib = self.rib
        stale = self.stale.pending(peer)
        held = status.rejected_held
        for reason in malformed:
            self._reject(status, Reject.MALFORMED, reason)
        for prefix in withdrawn:
            if rib.remove(peer, prefix):
                self._reselect(prefix)
            if stale is not None:
                stale.discard(prefix)
            held.discard(prefix)
        source = status.source
        if source is None or source.router_id != status.router_id or source.asn != status.asn:
            # one Peer per session, not per UPDATE: a path holds it
            ebgp = status.asn != self._local_as.get(peer, self.cfg.node.asn)
            source = status.source = Peer(peer, status.asn, status.router_id, ebgp=ebgp)
        check, is_announced = self.policy.check, self.export.is_announced
        local_as = self._local_as.get(peer, self.cfg.node.asn)
        allowed = self._allow_local_as.get(peer, 0)
        filters = self._filters.get(peer)
        ebgp = source.ebgp
        for route in announced:
            prefix = route.prefix
            status.received += 1
            if stale is not None:
                stale.discard(prefix)
            attrs = route.attrs
            reject = check(prefix, route.next_hop, attrs)
            if reject is None and _occurrences(attrs, local_as) > allowed:
                reject = Reject.AS_LOOP  # RFC 4271 §9.1.2, in any segment; BIRD's `allow local as N`
            if (
                reject is None
                and filters
                and evaluate(filters, "import", RouteFacts(prefix, True)) == "Reject"
            ):
                reject = Reject.FILTER
            if reject is not None:
                self._reject(status, reject, str(prefix))
                if rib.remove(peer, prefix):  # an invalid replacement withdraws the old path
                    self._reselect(prefix)
                held.add(prefix)  # still counted against its limit
                continue
            if held:
                held.discard(prefix)
            if is_announced(prefix):
                self._reject(status, Reject.OWN_PREFIX, str(prefix))  # kept, but never selected
            else:
                status.accepted += 1
            if ebgp and attrs.local_pref is not None:
                attrs = self._without_local_pref(attrs)  # RFC 4271 §5.1.5: not from an external peer
            if rib.add(Path(prefix, route.next_hop, source, attrs)):
                self._reselect(prefix)
        if status.prefix_limit is not None:
            self._check_limit(status)

    def _without_local_pref(self, attrs: Attributes) -> Attributes:
        """`attrs` without LOCAL_PREF, one object per distinct input (the codec interns attributes)."""
        stripped = self._stripped.get(attrs)
        if stripped is None:
            stripped = _remember(self._stripped, attrs, dataclasses.replace(attrs, local_pref=None))
        return stripped

    def _reject(self, status: PeerStatus, reason: Reject, what: str) -> None:
        status.rejected[reason.value] += 1
        log.debug(
            "route rejected", extra={"kv": {"peer": status.address, "reason": reason.value, "what": what}}
        )

    def end_of_rib(self, peer: Address) -> None:
        """End-of-RIB of the session's family (RFC 4724 §2)."""
        status = self.peers.get(peer)
        if status is None or status.state == HELD_DOWN:
            return
        status.eor = True
        log.info("end-of-rib received", extra={"kv": {"peer": peer}})
        self._drop_stale(peer)  # what it did not re-send (RFC 4724 §4.2)
        self._deferral_step(self.deferral.end_of_rib(peer), self.stale_wait.end_of_rib(peer))

    # ------------------------------------------------------------------ the decision process

    def _reselect(self, prefix: Prefix) -> None:
        """The paths of `prefix` changed: run the decision process and feed both outputs."""
        selection = self.rib.selection(prefix)
        if selection is None:
            self.fib.want(prefix, None)
        elif self.tunnel.active:  # IP-in-IP or VXLAN pools: the kernel form per pool mode and next hop
            self.fib.want(prefix, self.tunnel.hops(prefix, selection.next_hops))
        else:
            self.fib.want(prefix, selection.next_hops)
        if self._readvertise:
            self._reflect(prefix, selection.best if selection is not None else None)

    def _reflect(self, prefix: Prefix, best: Path | None) -> None:
        """Re-advertise the best path of a learned prefix, and withdraw it where it no longer goes
        (RFC 4271 §9.2, RFC 4456 §6): a route learned over eBGP goes to every iBGP session; one learned over
        iBGP goes to iBGP sessions only by reflection (a reflector's rules); every route goes to the eBGP
        sessions other than its source, with the session's local AS prepended. NO_ADVERTISE: to nobody;
        NO_EXPORT / NO_EXPORT_SUBCONFED: not over eBGP (RFC 1997). Each receiver's export filters apply."""
        groups: dict[Advert, frozenset[Address]] = {}  # each advert and its receivers (adjout's form)
        communities = best.attrs.communities if best is not None else ()
        if best is not None and NO_ADVERTISE not in communities:
            source = best.peer.address
            receivers = self._targets.get(source)
            if receivers is None:
                receivers = self._targets[source] = self._ibgp_targets(source, best.peer.ebgp)
            if receivers:
                if self._filters:
                    passing = frozenset(r for r in receivers if self._reflects_to(r, prefix))
                    receivers = receivers if len(passing) == len(receivers) else passing
                advert = self._ibgp_advert(best)
                own = self._next_hop_self & receivers  # Calico's nextHopMode Self
                if own and (advert_self := self._advert_self(advert, prefix.version)) != advert:
                    if len(own) < len(receivers):
                        groups[advert] = receivers - own
                    groups[advert_self] = own
                elif receivers:
                    groups[advert] = receivers  # the cached set: one object for all of a source's routes
            if self._ebgp_peers and NO_EXPORT not in communities and NO_EXPORT_SUBCONFED not in communities:
                ebgp: dict[Advert, list[Address]] = {}
                for receiver in self._ebgp_peers:
                    if (
                        receiver != source
                        and receiver.version == source.version
                        and (not self._filters or self._reflects_to(receiver, prefix))
                    ):
                        ebgp.setdefault(self._ebgp_advert(best, receiver), []).append(receiver)
                for advert, peers in ebgp.items():  # an eBGP session is never an iBGP one: disjoint sets
                    held = groups.get(advert)
                    groups[advert] = frozenset(peers) if held is None else held.union(peers)
        self.adjout.set_adverts(prefix, groups)
        self._reflect_pending = True

    def _ibgp_targets(self, source: Address, from_ebgp: bool) -> frozenset[Address]:
        """The iBGP sessions (of the source's family) a route learned from `source` goes to."""
        roles = self._ibgp_roles
        same = {a: c for a, c in roles.items() if a.version == source.version}
        if from_ebgp:
            return frozenset(same)
        if self.cluster_id is not None:
            return targets(source, roles.get(source, False), same)
        return frozenset()  # iBGP split horizon: no reflection without a cluster id

    def _ibgp_advert(self, best: Path) -> Advert:
        """What iBGP sessions are sent: reflected attributes (RFC 4456 §8) for a route learned over iBGP,
        the path's own for one learned over eBGP (ExaBGP adds LOCAL_PREF 100); the next hop kept. One object
        per source and attributes, not per prefix."""
        source_id = best.peer.router_id or best.peer.address
        key = (source_id, best.next_hop, best.attrs)
        advert = self._adverts.get(key)
        if advert is None:
            attrs = best.attrs
            if not best.peer.ebgp and self.cluster_id is not None:
                attrs = reflected_attributes(attrs, source_id, self.cluster_id)
            advert = _remember(self._adverts, key, Advert(best.next_hop, attrs))
        return advert

    def _ebgp_advert(self, best: Path, receiver: Address) -> Advert:
        """What an eBGP session is sent (RFC 4271 §5.1): the session's local AS prepended to AS_PATH; no
        LOCAL_PREF, MED, ORIGINATOR_ID or CLUSTER_LIST; the next hop per the session's next hop mode
        (BIRD's `auto`: kept when it is on the subnet shared with the peer, else this node's address)."""
        local_as = self._local_as[receiver]
        next_hop = best.next_hop
        mode = self._next_hop_mode.get(receiver, "auto")
        if mode == "self" or (mode == "auto" and not self._on_shared_subnet(next_hop, receiver)):
            own = self._next_hop[4 if next_hop.version == 4 else 6]
            next_hop = own if own is not None else next_hop
        key = (local_as, next_hop, best.attrs)
        advert = self._ebgp_adverts.get(key)
        if advert is None:
            attrs = dataclasses.replace(
                best.attrs,
                as_path=(local_as, *best.attrs.as_path),
                local_pref=None,
                med=None,
                originator_id=None,
                cluster_list=(),
            )
            advert = _remember(self._ebgp_adverts, key, Advert(next_hop, attrs))
        return advert

    def _on_shared_subnet(self, next_hop: Address, peer: Address) -> bool:
        """Are `next_hop` and `peer` both in this node's (IPv4) subnet?"""
        subnet = self.subnet
        if subnet is None or next_hop.version != 4 or peer.version != 4:
            return False
        return next_hop in subnet and peer in subnet

    def _reflects_to(self, receiver: Address, prefix: Prefix) -> bool:
        """Do `receiver`'s export filters let a learned route to `prefix` out? (No filters or no rule
        matched: yes.)"""
        filters = self._filters.get(receiver)
        return not filters or evaluate(filters, "export", RouteFacts(prefix, True)) != "Reject"

    def _advert_self(self, advert: Advert, version: int) -> Advert:
        """`advert` with this node's address of the family as next hop (one object per advert)."""
        own = self._next_hop[4 if version == 4 else 6]
        if own is None:
            return advert
        key = (advert, own)
        found = self._self_adverts.get(key)
        if found is None:
            found = _remember(self._self_adverts, key, Advert(own, advert.attrs))
        return found

    # ------------------------------------------------------------------ timers and the start's deferral

    def on_timer(self, key: Hashable) -> None:
        """A timer armed through `timers` fired."""
        if key == DEFER_TIMER:
            self._deferral_expired()
        elif self.fib.on_timer(key):
            pass
        elif (late := self.watch.expired(key)) is not None:
            status = self.peers.get(late)
            if status is not None:
                self._explain(status)
        elif isinstance(key, tuple) and key and key[0] in limits.TIMERS:
            released = self.holds.on_timer(key)
            if released is not None:
                self._released(released)
        else:
            expired = self.stale.expired(key)
            if expired is not None:
                self._flush_stale(*expired)

    def _deferral_expired(self) -> None:
        waiting = " ".join(str(a) for a in sorted(self.stale_wait.waiting, key=host_key))
        eor_done, stale_done = self.deferral.expire(), self.stale_wait.expire()
        if eor_done or stale_done:
            log.warning(
                "selection deferral timer expired; not every peer sent end-of-rib",
                extra={"kv": {"after_s": self.cfg.bgp.select_defer_time, "waiting_for": waiting}},
            )
        self._deferral_step(eor_done, stale_done)

    def _deferral_step(self, eor_done: bool, stale_done: bool) -> None:
        """RFC 4724 §4.1. `eor_done`: the tables of the peers we wait for are in (or the timer said
        enough): the End-of-RIBs held back may go. `stale_done`: every peer's table is in: remove the
        kernel routes of an earlier run nobody re-announced."""
        if eor_done:
            log.info("selection deferral over", extra={"kv": {"how": self.deferral.how}})
        if stale_done:
            self.timers.cancel(DEFER_TIMER)
            self.fib.reconcile(self.stale_wait.how)

    # ------------------------------------------------------------------ reload

    def reconfigure(self, new: Config) -> tuple[list[Address], list[Address], list[Address]]:
        """Apply a new config (already checked by `restart_required`): (sessions added, removed, changed).
        Unchanged sessions keep their state; routes are re-checked against new export and import rules."""
        old = self.cfg
        old_sessions = {p.address: p for p in old.sessions()}
        new_sessions = {p.address: p for p in new.sessions()}
        removed = [a for a in old_sessions if a not in new_sessions]
        added = [a for a in new_sessions if a not in old_sessions]
        kept = [a for a in new_sessions if a in old_sessions]
        # a policy change (filters, next hop mode, allowed local AS) needs no session reset
        changed = [a for a in kept if _session_of(new_sessions[a]) != _session_of(old_sessions[a])]
        old_filters, old_allowed = dict(self._filters), dict(self._allow_local_as)
        old_local_as = dict(self._local_as)
        old_self = self._next_hop_self
        old_modes = dict(self._next_hop_mode)
        was_readvertising = self._readvertise
        self.cfg = new
        affected: set[Prefix] = set()
        for address in removed:
            del self.peers[address]
            self.holds.forget(address)
            self.watch.forget(address)
            self.stale.drop(address)
            self._eor_pending.discard(address)
            affected |= self.rib.drop_peer(address)
            self.adjout.forget_peer(address)
            self._deferral_step(self.deferral.forget(address), self.stale_wait.forget(address))
        for address in added:
            self._added_by_reload.add(address)
        for address in changed:
            p = new_sessions[address]
            status = self.peers[address]
            status.ungraceful = True  # ExaBGP resets the session: not a graceful restart of the peer
            status.asn, status.rr_client = p.asn, p.rr_client
            status.source = None
            old_p = old_sessions[address]
            if (p.asn, p.local_asn) != (old_p.asn, old_p.local_asn):
                # ExaBGP keys its neighbors by AS too: a new neighbor, with an empty Adj-RIB-Out
                self._added_by_reload.add(address)
        old_roles = self._ibgp_roles
        old_tunnel = self.tunnel
        had_reflector = self.cluster_id is not None
        self._configure(new)  # adds the new sessions' PeerStatus, sets every session's prefix limit
        for address in added:
            self.watch.wait(address, self._establish_bound(address))
        for address in kept:
            if new_sessions[address].prefix_limit != old_sessions[address].prefix_limit:
                self._relimit(self.peers[address])
        self._targets.clear()
        self._adverts.clear()  # the cluster id may have changed
        self._ebgp_adverts.clear()
        # export rules: re-evaluate every kernel route
        rules = export_rules(new)
        if rules != self.export.rules:
            delta = self.export.set_rules(rules, self.fib.kernel_view.values())
            if delta:
                affected |= self._queue_export(delta)
        # import policy: drop paths the new policy rejects; ask peers to resend what it may now accept
        policy = self._import_policy()
        if (policy.pools, policy.cluster_id) != (self.policy.pools, self.policy.cluster_id):
            self.policy = policy
            for prefix in list(self.rib.prefixes()):
                for path in self.rib.paths(prefix):
                    if policy.check(path.prefix, path.next_hop, path.attrs) is not None:
                        self.rib.remove(path.peer.address, prefix)
                        affected.add(prefix)
            self._out += [RouteRefresh(a, st.family) for a, st in self.peers.items() if st.state == "up"]
        # a policy change: another filter list, or other rules under the same filter names
        repolicied = [
            a
            for a in kept
            if _policy_of(new_sessions[a]) != _policy_of(old_sessions[a])
            or old_filters.get(a, ()) != self._filters.get(a, ())
        ]
        if repolicied:
            affected |= self._repolicy(repolicied, old_filters, old_allowed)
        self._regroup()
        if new.bgp.prefix_advertisements != old.bgp.prefix_advertisements:
            # the communities our routes carry changed: announce them all again (an implicit replace)
            self._out_announce |= set(self.export.announced)
            self._out_withdraw -= self._out_announce
        if was_readvertising and not self._readvertise:  # nothing is sent on any more: withdraw it all
            for prefix in self.adjout.prefixes():
                self.adjout.set_adverts(prefix, {})
            self._reflect_pending = True
        if (
            self._ibgp_roles != old_roles
            or (self.cluster_id is None and had_reflector)
            or self.tunnel != old_tunnel  # a pool's mode: routes rewritten in place (replace)
            or (
                self._readvertise
                and (repolicied or self._next_hop_self != old_self or self._next_hop_mode != old_modes)
            )
            or self._readvertise != was_readvertising
            or (self._readvertise and self._local_as != old_local_as)  # the AS prepended on eBGP
        ):
            affected |= set(self.rib.prefixes())
        for prefix in affected:
            self._reselect(prefix)
        return added, removed, changed

    def _relimit(self, status: PeerStatus) -> None:
        """A reload changed the session's prefix limit (no reset: ExaBGP's neighbor is the same). Held down
        without a `restart` limit now: released at once; over a lower limit: acted on now."""
        limit = status.prefix_limit
        if status.state == HELD_DOWN and (limit is None or limit.action != "restart"):
            self.holds.release(status.address)
            self._released(status.address)
        elif status.state == "up":
            self._check_limit(status)
        if limit is None:
            status.over_limit = False

    def _repolicy(
        self,
        peers: list[Address],
        old_filters: dict[Address, tuple[BGPFilter, ...]],
        old_allowed: dict[Address, int],
    ) -> set[Prefix]:
        """Sessions whose filters or allowed local AS changed by reload: our routes they now get or lose
        are sent at once; their paths the new import rules reject go, and each is asked for its table again
        (ROUTE-REFRESH, RFC 2918) for what they may now accept. The prefixes whose paths changed."""
        affected: set[Prefix] = set()
        for peer in peers:
            family = self.peers[peer].family
            before, after = old_filters.get(peer, ()), self._filters.get(peer, ())
            if before != after:
                mine = sorted(p for p in self.export.announced if family_of(p) == family)
                was, now = set(self._passing(before, mine)), set(self._passing(after, mine))
                gone = [p for p in mine if p in was and p not in now]
                new = [p for p in mine if p in now and p not in was]
                if gone:
                    self._out.append(Withdraw(family, gone, (peer,)))
                self._out += self._announce_local(family, new, (peer,))
            if before != after or old_allowed.get(peer, 0) != self._allow_local_as.get(peer, 0):
                local_as, allowed = self._local_as[peer], self._allow_local_as[peer]
                for prefix in self.rib.peer_prefixes(peer):
                    path = next((x for x in self.rib.paths(prefix) if x.peer.address == peer), None)
                    if path is None:
                        continue
                    loop = path.attrs.as_path.count(local_as) > allowed
                    if loop or (after and evaluate(after, "import", RouteFacts(prefix, True)) == "Reject"):
                        self.rib.remove(peer, prefix)
                        affected.add(prefix)
                if self.peers[peer].state == "up":
                    self._out.append(RouteRefresh(peer, family))
        return affected

    def _regroup(self) -> None:
        """After a reload, the filtered export groups (perhaps new ones) start again from what their
        filters let through now: that is what their sessions hold or are about to be sent."""
        self._filtered_sent = {}
        for family in FAMILIES:
            pending = {p for p in self._out_withdraw if family_of(p) == family}
            mine = [p for p in self.export.announced if family_of(p) == family]
            for _members, filters in self._groups[family]:
                if filters:
                    # what passes now, and what is about to be withdrawn (it may have been sent before)
                    self._filtered_sent[family, filters] = pending | set(self._passing(filters, mine))


K = TypeVar("K")
V = TypeVar("V")


def _occurrences(attrs: Attributes, asn: int) -> int:
    """How often `asn` appears in the AS_PATH, AS_SET members included (each set counts once)."""
    if asn not in attrs.as_path and asn not in attrs.as_set:
        return 0
    return attrs.as_path.count(asn) + (asn in attrs.as_set)


def _remember(cache: dict[K, V], key: K, value: V) -> V:
    """Store `value` in one of the engine's bounded caches (cleared when it holds ADVERT_CACHE_SIZE
    entries: only a pathological churn of distinct keys gets there) and return it."""
    if len(cache) >= ADVERT_CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def _session_of(peer: PeerConfig) -> PeerConfig:
    """What of a session's config ExaBGP's neighbor holds (a change resets the session). The keepalive
    time is not in it: ExaBGP reads it from the keepalive file and applies a change at once; nor the prefix
    limit, which only bgpd applies."""
    return dataclasses.replace(
        peer, filters=(), next_hop_mode="auto", allow_local_as=0, keepalive_time=None, prefix_limit=None
    )


def _policy_of(peer: PeerConfig) -> tuple[object, ...]:
    """What of a session's config only bgpd applies (a change needs no reset)."""
    return (peer.filters, peer.next_hop_mode, peer.allow_local_as)
