"""The host speaker: wires the kernel watcher, the export table, ExaBGP, the RIB and the kernel installer.

Two inputs, two outputs (as OpenBGPD's decision engine):
- kernel route events -> `ExportTable` -> announcements to ExaBGP (to every session; next hop = underlay);
- ExaBGP UPDATEs -> import policy -> `Rib` -> best path / ECMP -> the kernel installer (our protocol only).

Ownership: bgpd changes only routes of its own protocol in its table (`RouteInstaller` enforces it in the
netlink request itself). A learned prefix that a foreign route already holds is not installed (counted as a
collision). Routes of ours found at start (an earlier run) are kept until the start's selection deferral
ends (RFC 4724 §4.1: End-of-RIB from every peer that owes one, or `bgp.select_defer_time`), then those no
longer wanted are removed; bgpd's own End-of-RIB waits for the same moment. When ExaBGP dies, its paths are
kept (and so the kernel routes) until the restarted sessions have re-sent their tables. When a peer that
advertised graceful restart drops its session without a NOTIFICATION, bgpd is the helper of RFC 4724 §4.2:
the peer's paths stay (stale) until it is back and has sent End-of-RIB, or its restart time passes.

The kernel is the truth: `installed` is what the kernel holds of our routes, never a record of what was
written. The watcher reports every change to our routes made by anybody but our own writer (a deletion,
a replacement, a route of our protocol added by hand), and the routes of a device whose link or address
went away; a full re-read follows lost notifications, and a slow audit (`kernel.audit_interval`) re-reads
our routes as a last resort. Whatever bgpd wants and the kernel lacks is put back, whatever of our
protocol the kernel holds and bgpd does not want is removed, and each repair is counted by cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path as FsPath

from bgpd import config as config_mod
from bgpd.config import Config
from bgpd.control import ControlServer
from bgpd.exabgp import codec, confgen
from bgpd.exabgp.supervisor import ExaBGP
from bgpd.kernel import (
    InstallError,
    LinkLost,
    LinkUp,
    OpResult,
    RouteAdded,
    RouteEvent,
    RouteInstaller,
    RouteRemoved,
    RouteWatcher,
    Snapshot,
)
from bgpd.kernel import local_addresses as kernel_local_addresses
from bgpd.metrics import HttpEndpoint, registry_for
from bgpd.model import Attributes, KernelRoute, Path, Peer
from bgpd.policy.export import Delta, ExportRules, ExportTable
from bgpd.policy.importer import ImportPolicy, Reject
from bgpd.prefix import bits as prefix_bits
from bgpd.prefix import covers, host_key
from bgpd.rib.deferral import SelectionDeferral
from bgpd.rib.table import Rib
from reflector.adjout import AdjRibOut, Advert, Batch
from reflector.rules import reflected_attributes, targets

log = logging.getLogger("bgpd.speaker")

RETRY_FAILED_AFTER = 5.0
KERNEL_EVENTS_PER_TURN = 2048  # kernel events handled per event-loop turn (others run in between)
INLINE_KERNEL_OPS = 16  # batches up to this size are written from the event loop itself
KERNEL_SLICE = 2048  # larger batches go to the kernel writer thread this many operations at a time
UNREACHABLE_FIRST_REPORT = 30.0  # seconds; then every 60, 120, ... up to the maximum
UNREACHABLE_MAX_REPORT = 600.0
LINK_UP_RETRY_GAP = 1.0  # seconds: failed changes are retried on a device coming up at most this often
LINK_SETTLE = 1.0  # seconds: the second re-read of our routes after a device lost a network we route via
AUDIT_OFF_RECHECK = 60.0  # seconds: with kernel.audit_interval 0, how often a reload turning it on is seen
ADVERT_CACHE_SIZE = 4096  # reflected (source, next hop, attributes) kept; cleared when full
EXPORT_ATTRIBUTES = Attributes()
KernelOp = tuple[IPv4Network, tuple[IPv4Address, ...] | None]  # a route to install (next hops) or delete


@dataclass(slots=True)
class PeerStatus:
    """What bgpd knows about one configured session."""

    address: IPv4Address
    asn: int
    rr_client: bool = False
    router_id: IPv4Address | None = None
    state: str = "idle"
    since: float = field(default_factory=time.time)
    eor: bool = False
    updates_in: int = 0
    received: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    flaps: int = 0
    # RFC 4724, from the peer's last OPEN: its restart time for IPv4 unicast (None: no graceful restart)
    # and whether it kept its forwarding state; and whether the current session ends on purpose (a
    # NOTIFICATION received, or bgpd resetting it on reload): then it is no graceful restart
    restart_time: int | None = None
    forwarding_kept: bool = False
    ungraceful: bool = False


def _apply_safely(
    installer: RouteInstaller, ops: list[KernelOp], ours: frozenset[IPv4Network] = frozenset()
) -> list[OpResult]:
    """installer.apply, with a failure of the netlink socket itself reported as every operation failing
    (they are retried like any failed change) instead of an exception that would stop the writer."""
    try:
        return installer.apply(ops, ours)
    except InstallError as exc:
        log.error("kernel route writer failed", extra={"kv": {"error": str(exc), "operations": len(ops)}})
        return [OpResult(prefix, ok=False, error=str(exc)) for prefix, _ in ops]


def sessions_of(cfg: Config) -> list[confgen.Session]:
    return [
        confgen.Session(
            address=p.address,
            asn=p.asn,
            port=p.port,
            passive=p.passive,
            hold_time=p.hold_time if p.hold_time is not None else cfg.bgp.hold_time,
            password=p.password,
            description=p.description,
        )
        for p in cfg.sessions()
    ]


def export_rules(cfg: Config) -> ExportRules:
    return ExportRules(
        protocols=frozenset(cfg.export.protocols),
        interfaces=tuple(cfg.export.interfaces),
        pools=tuple(p.cidr for p in cfg.pools if p.export),
        own_protocol=cfg.kernel.protocol,
    )


class Speaker:
    """One host's routing daemon."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.started = time.time()
        self.rib = Rib()
        self.export = ExportTable(export_rules(cfg))
        self.cluster_id = cfg.reflector.cluster_id if cfg.reflector else None
        self.mesh_nodes = frozenset(cfg.bgp.mesh.nodes) if cfg.bgp.mesh.enabled else frozenset()
        self.last_reload: dict[str, object] | None = None
        self.policy = self._import_policy((cfg.node.address,))
        self.peers: dict[IPv4Address, PeerStatus] = {
            s.address: PeerStatus(s.address, s.asn, s.rr_client) for s in cfg.sessions()
        }
        # Route reflection (RFC 4456): what each peer was sent, and who is a client
        self.adjout = AdjRibOut()
        self._ibgp_roles = {a: p.rr_client for a, p in self.peers.items() if p.asn == cfg.node.asn}
        self._targets: dict[IPv4Address, frozenset[IPv4Address]] = {}  # per source, for _ibgp_roles
        self._adverts: dict[tuple[IPv4Address, IPv4Address, Attributes], Advert] = {}
        self._reflect_scheduled = False
        self.counters: Counter[str] = Counter()
        # kernel view: every route of our table, by kernel key, and foreign ones per prefix
        self.kernel_view: dict[tuple[IPv4Network, int, int], KernelRoute] = {}
        self._foreign: Counter[IPv4Network] = Counter()
        # forwarding state: what we want installed, and what the kernel holds of ours
        self.fib: dict[IPv4Network, tuple[IPv4Address, ...]] = {}
        self.installed: dict[IPv4Network, tuple[IPv4Address, ...]] = {}
        self._gateways: Counter[IPv4Address] = Counter()  # next hops of `installed`, with their use count
        self.collisions: set[IPv4Network] = set()
        self.stale_kernel: set[IPv4Network] = set()
        self.reconciled = False
        self.repairs: Counter[str] = Counter()  # by REPAIR_CAUSES
        # our routes whose kernel state is unknown (changed by somebody while a write of ours was in
        # flight): written again, whatever `installed` says
        self._unknown: set[IPv4Network] = set()
        self._touched: set[IPv4Network] = set()  # our routes changed by somebody during a write or audit
        self._touched_all = False  # a full re-read arrived during a write or audit
        self._audit_cause: str | None = None  # an audit of our kernel routes is due, and why
        self._retry_pending: set[IPv4Network] = set()  # failed kernel changes waiting for their retry
        self._retrying: set[IPv4Network] = set()  # retried changes: written by the writer thread only
        self._retry_timer: asyncio.TimerHandle | None = None
        self._last_retry = 0.0
        # RFC 4724 §4.1: our End-of-RIB waits for the peers' tables (restarting peers excepted), and the
        # removal of stale kernel routes for every peer's table (restarting peers included)
        self.deferral = SelectionDeferral(p.address for p in cfg.sessions())
        self.stale_wait = SelectionDeferral((p.address for p in cfg.sessions()), exclude_restarting=False)
        self._deferral_timer: asyncio.TimerHandle | None = None
        # paths kept across an ExaBGP restart until the peer re-sent its table
        self._stale_paths: dict[IPv4Address, set[IPv4Network]] = {}
        # graceful restart helper (RFC 4724 §4.2): per restarting peer, the deadline that flushes its paths
        self._restart_timers: dict[IPv4Address, asyncio.TimerHandle] = {}
        self._dirty: set[IPv4Network] = set()
        # kernel event batches not handled yet: (events, next index, when received)
        self._kernel_queue: deque[tuple[list[RouteEvent], int, float]] = deque()
        self._kernel_queue_scheduled = False
        self._kernel_wakeup = asyncio.Event()
        self._kernel_busy = False  # a batch is being written by the kernel writer thread
        self._out_announce: set[IPv4Network] = set()
        self._out_withdraw: set[IPv4Network] = set()
        self._out_scheduled = False
        self._export_ready = False
        self._eor_pending: set[IPv4Address] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._kexec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bgpd-kernel")
        self._loop: asyncio.AbstractEventLoop | None = None
        runtime = FsPath(cfg.runtime.dir)
        self.exabgp = ExaBGP(
            str(runtime),
            confgen.Speaker(
                router_id=cfg.node.router_id,
                local_address=cfg.node.address,
                asn=cfg.node.asn,
                listen_port=cfg.bgp.port,
                graceful_restart=cfg.bgp.graceful_restart,
            ),
            sessions_of(cfg),
            on_line=self._on_exabgp_line,
            on_connect=self._on_exabgp_connect,
            on_disconnect=self._on_exabgp_disconnect,
            log_level="WARNING" if cfg.runtime.log_level != "debug" else "INFO",
        )
        self.installer: RouteInstaller | None = None
        self.watcher: RouteWatcher | None = None
        # operations: metrics, control socket, latency stamps
        self.registry, self.latency = registry_for(self)
        self.commands_sent: Counter[str] = Counter()
        self.control = ControlServer(self, cfg.control_socket)
        self.http: HttpEndpoint | None = None
        self._local_addresses: frozenset[IPv4Address] = frozenset({cfg.node.address})
        self._export_since: float | None = None
        self._install_since: float | None = None
        self._event_time: float | None = None
        self._added_by_reload: set[IPv4Address] = set()

    def _import_policy(self, addresses: Iterable[IPv4Address]) -> ImportPolicy:
        cfg = self.cfg
        pools = (p.cidr for p in cfg.pools)
        return ImportPolicy(pools, cfg.node.address, addresses, cfg.node.router_id, self.cluster_id)

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop ExaBGP (sessions close) and keep installed routes (persist)."""
        self._loop = asyncio.get_running_loop()
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        cfg = self.cfg
        if cfg.kernel.install:
            self.installer = RouteInstaller(cfg.kernel.protocol, cfg.kernel.table, cfg.kernel.metric)
            own = await self._loop.run_in_executor(self._kexec, self.installer.dump_own)
            for prefix, hops in own.items():
                self._set_installed(prefix, hops)
            self.stale_kernel = set(own)
            log.info("kernel routes from an earlier run", extra={"kv": {"count": len(own)}})
        self._local_addresses = await self._loop.run_in_executor(self._kexec, kernel_local_addresses)
        self.policy = self._import_policy(self._local_addresses)
        await self.control.start()
        if cfg.metrics.listen is not None:
            self.http = HttpEndpoint(self, self.registry, *cfg.metrics.listen)
            await self.http.start()
        if self.installer is not None:
            # our writer's own changes never reach us; anybody else's changes to our routes do
            self.watcher = RouteWatcher(
                cfg.kernel.table,
                self._on_kernel_events_threadsafe,
                ignore_sender=self.installer.portid,
                own_protocol=cfg.kernel.protocol,
            )
        else:  # nothing installed: routes of our protocol are none of our business
            self.watcher = RouteWatcher(
                cfg.kernel.table, self._on_kernel_events_threadsafe, ignore_protocol=cfg.kernel.protocol
            )
        self.watcher.start()
        await self.exabgp.start()
        self._tasks.append(asyncio.create_task(self._kernel_loop(), name="kernel-writer"))
        self._deferral_step(self.deferral.start(), self.stale_wait.start())
        if not self.stale_wait.done:
            self._deferral_timer = self._loop.call_later(cfg.bgp.select_defer_time, self._deferral_expired)
        if self.installer is not None:
            self._tasks.append(asyncio.create_task(self._audit_loop(), name="kernel-audit"))
        self._tasks.append(asyncio.create_task(self._report_unreachable(), name="unreachable-peers"))
        log.info(
            "bgpd started",
            extra={
                "kv": {"node": cfg.node.name, "router_id": cfg.node.router_id, "sessions": len(self.peers)}
            },
        )

    async def close(self) -> None:
        await self.control.close()
        if self.http is not None:
            await self.http.close()
        if self.watcher is not None:
            self.watcher.stop()
        await self.exabgp.stop()
        if self._deferral_timer is not None:
            self._deferral_timer.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._kexec.shutdown(wait=True)
        if self.installer is not None:
            self.installer.close()
        log.info("bgpd stopped; installed routes kept", extra={"kv": {"installed": len(self.installed)}})

    # ------------------------------------------------------------------ kernel -> export

    def _on_kernel_events_threadsafe(self, events: list[RouteEvent]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closing during shutdown
                loop.call_soon_threadsafe(self._queue_kernel_events, events, time.monotonic())

    def _queue_kernel_events(self, events: list[RouteEvent], received: float) -> None:
        """Kernel events wait in one queue, in order, and are handled KERNEL_EVENTS_PER_TURN at a time: a
        100k-route burst must not keep the loop from answering bgpctl or reading ExaBGP for seconds."""
        self._kernel_queue.append((events, 0, received))
        if not self._kernel_queue_scheduled and self._loop is not None:
            self._kernel_queue_scheduled = True
            self._loop.call_soon(self._drain_kernel_events)

    def _drain_kernel_events(self) -> None:
        self._kernel_queue_scheduled = False
        queue = self._kernel_queue
        budget = KERNEL_EVENTS_PER_TURN
        try:
            while queue and budget > 0:
                events, start, received = queue[0]
                end = min(len(events), start + budget)
                if end < len(events):
                    queue[0] = (events, end, received)
                else:
                    queue.popleft()
                budget -= end - start
                self.on_kernel_events(events[start:end] if start or end < len(events) else events, received)
        except Exception:
            log.exception("kernel events could not be handled; continuing with the next ones")
        finally:
            if queue and self._loop is not None and not self._kernel_queue_scheduled:
                self._kernel_queue_scheduled = True
                self._loop.call_soon(self._drain_kernel_events)

    def on_kernel_events(self, events: Iterable[RouteEvent], received: float | None = None) -> None:
        if self._export_since is None:
            self._export_since = received if received is not None else time.monotonic()
        delta = Delta()
        own = self.cfg.kernel.protocol
        for event in events:
            if isinstance(event, Snapshot):
                self.counters[f"kernel_resyncs_{event.reason}"] += 1
                others = [r for r in event.routes if r.protocol != own]
                self._set_kernel_view(others)
                self.export.replace_all(others, delta)
                self._own_snapshot([r for r in event.routes if r.protocol == own], event.reason)
                if event.reason != "start":
                    log.warning(
                        "kernel resync", extra={"kv": {"reason": event.reason, "routes": len(event.routes)}}
                    )
            elif isinstance(event, RouteAdded):
                route = event.route
                if route.protocol == own:
                    # it replaced whatever sat at its key (prefix, table, metric), of any protocol
                    displaced = self.kernel_view.get(route.key)
                    if displaced is not None:
                        self._view_remove(displaced)
                        self.export.remove(displaced, delta)
                    self._own_changed(route, present=True)
                    continue
                self._view_add(route)
                self.export.add(route, delta)
                if route.priority == self.cfg.kernel.metric and route.prefix in self.installed:
                    self._own_changed(route, present=False)  # a foreign route took our route's place
            elif isinstance(event, RouteRemoved):
                if event.route.protocol == own:
                    self._own_changed(event.route, present=False)
                    continue
                self._view_remove(event.route)
                self.export.remove(event.route, delta)
            elif isinstance(event, LinkLost):
                self._on_link_lost(event)
            elif isinstance(event, LinkUp):
                self._on_link_up()
        if not self._export_ready:
            self._export_ready = True
            log.info("kernel dump read", extra={"kv": {"exported": self.export.announced_count}})
        if delta:
            self._queue_export(delta)
            for prefix in delta.announce | delta.withdraw:
                self.rib.suppress(prefix, self.export.is_announced(prefix))
                self._reselect(prefix)
            if len(self._out_announce) + len(self._out_withdraw) <= INLINE_KERNEL_OPS:
                self._flush_export()  # a few routes: now, not a loop turn later (bursts still coalesce)
        self._flush_eor()

    def _set_kernel_view(self, routes: Iterable[KernelRoute]) -> None:
        old_foreign = set(self._foreign)
        self.kernel_view = {}
        self._foreign = Counter()
        for route in routes:
            self._view_add(route, mark=False)
        for prefix in old_foreign ^ set(self._foreign):
            self._mark_if_ours(prefix)

    def _view_add(self, route: KernelRoute, mark: bool = True) -> None:
        old = self.kernel_view.get(route.key)
        if old is not None:
            self._view_remove(old, mark)
        self.kernel_view[route.key] = route
        if route.protocol != self.cfg.kernel.protocol:
            self._foreign[route.prefix] += 1
            if mark and self._foreign[route.prefix] == 1:
                self._mark_if_ours(route.prefix)

    def _view_remove(self, route: KernelRoute, mark: bool = True) -> None:
        old = self.kernel_view.pop(route.key, None)
        if old is not None and old.protocol != self.cfg.kernel.protocol:
            self._foreign[old.prefix] -= 1
            if self._foreign[old.prefix] <= 0:
                del self._foreign[old.prefix]
                if mark:
                    self._mark_if_ours(old.prefix)

    def _mark_if_ours(self, prefix: IPv4Network) -> None:
        """A foreign route appeared or went at `prefix`: that matters only where bgpd wants or holds a route
        (a collision starts or ends); a host's own 100k workload routes must not wake the kernel writer."""
        if prefix in self.fib or prefix in self.installed or prefix in self.collisions:
            self._mark(prefix)

    # ------------------------------------------------------------------ kernel: our own routes, as they are

    def _set_installed(self, prefix: IPv4Network, hops: tuple[IPv4Address, ...] | None) -> None:
        """Record what the kernel holds of our route at `prefix` (None: nothing)."""
        old = self.installed.pop(prefix, None) if hops is None else self.installed.get(prefix)
        if old == hops:
            return
        if hops is not None:
            self.installed[prefix] = hops
        gateways = self._gateways
        for gateway in old or ():
            gateways[gateway] -= 1
            if not gateways[gateway]:
                del gateways[gateway]
        for gateway in hops or ():
            gateways[gateway] += 1

    def _wanted(self, prefix: IPv4Network) -> tuple[IPv4Address, ...] | None:
        """What bgpd wants of its own at `prefix` (a foreign route there wins: nothing)."""
        want = self.fib.get(prefix)
        return None if want is not None and prefix in self._foreign else want

    def _kernel_says(
        self, prefix: IPv4Network, hops: tuple[IPv4Address, ...] | None, cause: str, tally: Counter[str]
    ) -> None:
        """The kernel holds `hops` (None: nothing) as our route at `prefix`, through nobody's fault of ours:
        record it, and queue a repair if it is not what bgpd wants (counted in `tally` by cause)."""
        if self._kernel_busy:
            self._touched.add(prefix)  # a write or audit in flight may already be out of date for it
        if self.installed.get(prefix) == hops:
            return
        self._set_installed(prefix, hops)
        # the report may be older than a write of ours handled before it: write the route again whatever
        # it says (a replace when it says ours is there, a create when nothing is: one message either way)
        self._write_again(prefix)
        want = self._wanted(prefix)
        if want == hops or cause == "start":
            return
        if want is None and (prefix in self.stale_kernel or not self.reconciled):
            # an earlier run's route, or one added while we still wait for the peers' tables: it is
            # removed (if still unwanted) when the selection deferral ends
            if hops is None:
                self.stale_kernel.discard(prefix)
            else:
                self.stale_kernel.add(prefix)
            return
        tally["unwanted" if want is None else cause] += 1

    def _own_changed(self, route: KernelRoute, present: bool) -> None:
        """A notification about a route at our key, caused by somebody else (ours are filtered): `present`
        False when our route is gone (deleted, or displaced by another protocol's route)."""
        if route.priority != self.cfg.kernel.metric or self.installer is None:
            return  # not at our key: another metric is another route
        tally: Counter[str] = Counter()
        hops, cause = (route.gateways, "changed") if present else (None, "deleted")
        self._kernel_says(route.prefix, hops, cause, tally)
        self._count_repairs(tally, route.prefix)

    def _own_snapshot(self, routes: list[KernelRoute], reason: str) -> None:
        """A full re-read of the table: its routes of our protocol are what is installed."""
        if self.installer is None:
            return
        if self._kernel_busy:
            self._touched_all = True
        held = {r.prefix: r.gateways for r in routes if r.priority == self.cfg.kernel.metric}
        self._compare_own(held, reason)

    def _compare_own(
        self,
        held: dict[IPv4Network, tuple[IPv4Address, ...]],
        cause: str,
        skip: frozenset[IPv4Network] | set[IPv4Network] = frozenset(),
    ) -> None:
        """Make `installed` equal to what a re-read found (`held`: our routes, prefix -> next hops),
        repairing the differences; prefixes in `skip` are left alone."""
        tally: Counter[str] = Counter()
        first: IPv4Network | None = None
        for prefix in [p for p in self.installed if p not in held and p not in skip]:
            self._kernel_says(prefix, None, cause, tally)
            first = first or prefix
        for prefix, hops in held.items():
            if prefix not in skip:
                self._kernel_says(prefix, hops, cause, tally)
        self._count_repairs(tally, first)

    def _count_repairs(self, tally: Counter[str], example: IPv4Network | None) -> None:
        if not tally:
            return
        self.repairs.update(tally)
        kv: dict[str, object] = dict(tally)
        if example is not None and sum(tally.values()) == 1:
            kv["prefix"] = example
        log.warning("kernel routes of ours differ from what bgpd wants; repairing", extra={"kv": kv})

    def _on_link_lost(self, event: LinkLost) -> None:
        """A device went down or was deleted, or lost its last IPv4 address: the kernel flushed, without a
        word, every route through it. If one of our next hops lies in one of its networks, re-read our
        routes (one dump of our routes; not for a workload's veth, nor for a VIP leaving the underlay)."""
        self.counters["kernel_resyncs_link"] += 1
        if self.installer is None or not event.flushed or not self._gateways:
            return
        networks = [prefix_bits(n) for n in event.networks]
        networks += [prefix_bits(r.prefix) for r in event.routes if not r.gateways and r.kind == "unicast"]
        log.debug("link lost", extra={"kv": {"device": event.name, "networks": len(networks)}})
        for gateway in self._gateways:
            host = host_key(gateway)
            if any(covers(net, host) for net in networks):
                self._request_audit("link")
                # the kernel announces an address removal before it flushes the routes that used it:
                # look once more when that is surely over (the periodic audit stays the last resort)
                if self._loop is not None:
                    self._loop.call_later(LINK_SETTLE, self._request_audit, "link")
                return

    def _write_again(self, prefix: IPv4Network) -> None:
        """The kernel's state of our route at `prefix` may be newer or older than our record: write it."""
        self._unknown.add(prefix)
        self._mark(prefix)

    def _begin_background(self) -> None:
        """A write or audit of ours leaves the event loop: note what the kernel reports meanwhile."""
        self._kernel_busy = True
        self._touched.clear()
        self._touched_all = False

    def _end_background(self) -> tuple[set[IPv4Network], bool]:
        """Back on the loop: (our routes reported changed meanwhile, whether a full re-read arrived)."""
        self._kernel_busy = False
        touched, touched_all = self._touched, self._touched_all
        self._touched, self._touched_all = set(), False
        return touched, touched_all

    def _request_audit(self, cause: str) -> None:
        """Re-read our routes on the kernel writer's next turn; what it finds is counted under `cause`
        (a specific cause wins over the periodic "audit")."""
        if self._audit_cause is None or self._audit_cause == "audit":
            self._audit_cause = cause
        self._kernel_wakeup.set()

    async def _audit_loop(self) -> None:
        """The last resort: re-read our own routes every `kernel.audit_interval` seconds."""
        while True:
            interval = self.cfg.kernel.audit_interval  # a reload may change it
            await asyncio.sleep(interval or AUDIT_OFF_RECHECK)
            if interval and self.cfg.kernel.audit_interval:
                self._request_audit("audit")

    async def _audit(self, installer: RouteInstaller) -> None:
        """Dump our routes (the kernel filters by protocol) and repair every difference. Runs on the
        kernel writer's turn, so no write of ours is in flight meanwhile."""
        assert self._loop is not None
        cause, self._audit_cause = self._audit_cause or "audit", None
        self._begin_background()
        try:
            held = await self._loop.run_in_executor(self._kexec, installer.dump_own)
        except InstallError as exc:
            log.error("kernel audit failed", extra={"kv": {"error": str(exc)}})
            return
        finally:
            touched, touched_all = self._end_background()
        if touched_all:
            return  # a full re-read arrived meanwhile and did the same comparison
        # a route somebody changed while the dump ran: which of the two is newer is unknown; write it again
        for prefix in touched:
            self._write_again(prefix)
        self._compare_own(held, cause, touched)
        self.counters["kernel_audits"] += 1
        log.debug("kernel audit", extra={"kv": {"cause": cause, "held": len(held), "touched": len(touched)}})

    def _queue_export(self, delta: Delta) -> None:
        for prefix in delta.announce:
            self._out_withdraw.discard(prefix)
            self._out_announce.add(prefix)
        for prefix in delta.withdraw:
            self._out_announce.discard(prefix)
            self._out_withdraw.add(prefix)
        if not self._out_scheduled and self._loop is not None:
            self._out_scheduled = True
            self._loop.call_soon(self._flush_export)

    def _flush_export(self) -> None:
        self._out_scheduled = False
        lines: list[str] = []
        if self._out_withdraw:
            lines += codec.withdraw_lines(sorted(self._out_withdraw), self.cfg.node.address)
        if self._out_announce:
            lines += codec.announce_lines(
                sorted(self._out_announce), self.cfg.node.address, EXPORT_ATTRIBUTES
            )
        if lines:
            log.debug(
                "export",
                extra={"kv": {"announce": len(self._out_announce), "withdraw": len(self._out_withdraw)}},
            )
        self._out_announce.clear()
        self._out_withdraw.clear()
        self._send(lines, self.peers)
        if lines and self._export_since is not None:
            self.latency.export.observe(time.monotonic() - self._export_since)
        self._export_since = None

    def _send(self, lines: list[str], peers: Iterable[IPv4Address]) -> None:
        """Hand command lines to ExaBGP, counting them per peer they target (for metrics)."""
        if not lines:
            return
        for peer in peers:
            self.commands_sent[str(peer)] += len(lines)
        self.exabgp.send(lines)

    def _flush_eor(self) -> None:
        """Send End-of-RIB to sessions that came up, once our table is complete (RFC 4724 §2): the kernel's
        routes are read, and after a start, the peers' tables are in (RFC 4724 §4.1, `self.deferral`)."""
        if not self._export_ready or not self._eor_pending or not self.deferral.done:
            return
        if self._out_scheduled:
            self._flush_export()
        if self._reflect_scheduled:
            self._flush_reflection()  # what we reflect goes before the End-of-RIB that says it is all
        for peer in sorted(self._eor_pending):
            if (
                peer in self._added_by_reload
            ):  # ExaBGP learnt this neighbor by a reload: hand it our table now
                self._added_by_reload.discard(peer)
                self._send_table_to(peer)
            self._send([codec.eor_line(peer)], [peer])
        self._eor_pending.clear()

    def _send_table_to(self, peer: IPv4Address) -> None:
        announced = sorted(self.export.announced)
        self._send(codec.announce_lines(announced, self.cfg.node.address, EXPORT_ATTRIBUTES, [peer]), [peer])
        self._send_batches(self.adjout.replay(peer))

    # ------------------------------------------------------------------ ExaBGP -> RIB

    def _on_exabgp_connect(self) -> None:
        """A (new) ExaBGP attached: it knows nothing; replay our whole table and what we reflected."""
        announced = sorted(self.export.announced)
        self._send(codec.announce_lines(announced, self.cfg.node.address, EXPORT_ATTRIBUTES), self.peers)
        self._send_batches(self.adjout.replay())

    def _on_exabgp_disconnect(self) -> None:
        """ExaBGP went away: all sessions are down, but keep their paths until they come back."""
        for status in self.peers.values():
            if status.state == "up":
                status.flaps += 1
            status.state = "down"
            status.since = time.time()
            status.eor = False
        for peer in list(self.peers):
            prefixes = self.rib.peer_prefixes(peer)
            if prefixes:
                self._stale_paths.setdefault(peer, set()).update(prefixes)
                deadline = self.cfg.kernel.stale_timeout
                self._arm_stale_deadline(peer, deadline, "no end-of-rib after exabgp restart")
        log.error("exabgp disconnected; keeping learned routes until sessions return")

    def _on_exabgp_line(self, line: str) -> None:
        self._event_time = time.monotonic()  # stamps the kernel changes this line causes (install latency)
        try:
            self._handle_exabgp_line(line)
            self._install_inline()
        finally:
            self._event_time = None

    def _handle_exabgp_line(self, line: str) -> None:
        try:
            event = codec.decode(line)
        except codec.DecodeError as exc:
            self.counters["exabgp_decode_errors"] += 1
            log.warning("undecodable line from exabgp", extra={"kv": {"error": str(exc)}})
            return
        if event is not None:
            self._on_event(event)

    def _on_event(self, event: codec.Event) -> None:
        status = self.peers.get(event.peer)
        if status is None:
            return
        if isinstance(event, codec.Update):
            self._on_update(status, event)
        elif isinstance(event, codec.PeerOpen):
            status.router_id = event.router_id
            status.restart_time, status.forwarding_kept = event.restart_time, event.forwarding_kept
            graceful, restarting = event.restart_time is not None, event.restarting
            self._deferral_step(
                self.deferral.opened(status.address, graceful, restarting),
                self.stale_wait.opened(status.address, graceful, restarting),
            )
            if status.address in self._restart_timers and not (event.restart_time and event.forwarding_kept):
                # RFC 4724 §4.2: back without graceful restart, or without its forwarding state
                self._flush_stale(status.address, "peer restarted without keeping its forwarding state")
        elif isinstance(event, codec.PeerState):
            self._on_state(status, event)
        elif isinstance(event, codec.EndOfRib):
            self._on_eor(status)
        elif isinstance(event, codec.Notification):
            status.ungraceful = True  # a session closed with a NOTIFICATION is not a graceful restart
            log.warning(
                "notification from peer",
                extra={"kv": {"peer": event.peer, "code": event.code, "subcode": event.subcode}},
            )

    def _on_state(self, status: PeerStatus, event: codec.PeerState) -> None:
        if event.state == status.state:
            return
        was_up = status.state == "up"
        status.state = event.state
        status.since = time.time()
        if event.state == "up":
            status.eor = False
            status.ungraceful = False
            log.info("session established", extra={"kv": {"peer": status.address, "asn": event.peer_asn}})
            if status.address in self._stale_paths:
                # RFC 4724 §4.2: back in time; its stale paths stay until End-of-RIB, within stale_timeout
                deadline = self.cfg.kernel.stale_timeout
                self._arm_stale_deadline(status.address, deadline, "no end-of-rib in time")
            self._eor_pending.add(status.address)
            self._flush_eor()
        elif event.state == "down":
            if was_up:
                status.flaps += 1
            status.eor = False
            self._eor_pending.discard(status.address)
            if status.address in self._stale_paths:
                if not was_up:
                    return  # a restart in progress (ExaBGP's or the peer's): its attempts may fail meanwhile
                # RFC 4724 §4.2, consecutive restarts: the paths already marked stale are deleted
                self._flush_stale(status.address, "session dropped again before end-of-rib")
            graceful = (
                status.restart_time
                and not status.ungraceful
                and "notification sent" not in event.reason  # e.g. our hold timer expired
                and "notification received" not in event.reason
            )
            if was_up and graceful and self._loop is not None:
                self._start_helping(status, event.reason)
                return
            affected = self.rib.drop_peer(status.address)
            log.log(
                logging.WARNING if was_up else logging.DEBUG,
                "session down" if was_up else "connection closed before established",
                extra={"kv": {"peer": status.address, "reason": event.reason, "withdrawn": len(affected)}},
            )
            for prefix in affected:
                self._reselect(prefix)

    def _start_helping(self, status: PeerStatus, reason: str) -> None:
        """RFC 4724 §4.2: the peer advertised graceful restart and its session ended without a NOTIFICATION:
        keep its paths, marked stale, for its restart time (the kernel keeps forwarding meanwhile)."""
        assert self._loop is not None and status.restart_time
        kept = self.rib.peer_prefixes(status.address)
        self._stale_paths[status.address] = set(kept)
        self._arm_stale_deadline(status.address, status.restart_time, "restart time passed")
        log.warning(
            "session down; graceful restart: keeping the peer's routes",
            extra={
                "kv": {
                    "peer": status.address,
                    "reason": reason,
                    "kept": len(kept),
                    "restart_time": status.restart_time,
                }
            },
        )

    def stale_count(self, peer: IPv4Address) -> int:
        """How many of `peer`'s paths are kept through a restart and not yet re-sent (no copy)."""
        return len(self._stale_paths.get(peer, ()))

    def stale_paths_of(self, peer: IPv4Address) -> frozenset[IPv4Network]:
        """Paths of `peer` kept through a restart (its own or ExaBGP's) and not yet re-sent."""
        return frozenset(self._stale_paths.get(peer, ()))

    def _arm_stale_deadline(self, peer: IPv4Address, seconds: float, why: str) -> None:
        """(Re)start the one deadline that withdraws the stale paths of `peer`."""
        self._cancel_stale_deadline(peer)
        if self._loop is not None:
            self._restart_timers[peer] = self._loop.call_later(seconds, self._flush_stale, peer, why)

    def _cancel_stale_deadline(self, peer: IPv4Address) -> None:
        timer = self._restart_timers.pop(peer, None)
        if timer is not None:
            timer.cancel()

    def _drop_stale(self, peer: IPv4Address) -> int:
        """Withdraw the paths of `peer` still marked stale, end its deadline; how many there were."""
        self._cancel_stale_deadline(peer)
        stale = self._stale_paths.pop(peer, None) or set()
        for prefix in stale:
            if self.rib.remove(peer, prefix):
                self._reselect(prefix)
        return len(stale)

    def _flush_stale(self, peer: IPv4Address, why: str) -> None:
        """The restart is over without the peer's End-of-RIB (or failed): its stale paths go."""
        kv = {"peer": peer, "why": why, "withdrawn": self._drop_stale(peer)}
        log.warning("stale routes withdrawn", extra={"kv": kv})

    def _on_update(self, status: PeerStatus, update: codec.Update) -> None:
        status.updates_in += 1
        peer_addr = status.address
        stale = self._stale_paths.get(peer_addr)
        for reason in update.malformed:
            self._reject(status, Reject.MALFORMED, reason)
        for prefix in update.withdrawn:
            if self.rib.remove(peer_addr, prefix):
                self._reselect(prefix)
            if stale is not None:
                stale.discard(prefix)
        peer = Peer(peer_addr, status.asn, status.router_id, ebgp=status.asn != self.cfg.node.asn)
        for route in update.announced:
            status.received += 1
            if stale is not None:
                stale.discard(route.prefix)
            reject = self.policy.check(route.prefix, route.next_hop, route.attrs)
            if reject is not None:
                self._reject(status, reject, str(route.prefix))
                if self.rib.remove(peer_addr, route.prefix):  # an invalid replacement withdraws the old path
                    self._reselect(route.prefix)
                continue
            if self.export.is_announced(route.prefix):
                self._reject(status, Reject.OWN_PREFIX, str(route.prefix))  # kept, but never selected
            else:
                status.accepted += 1
            if self.rib.add(Path(route.prefix, route.next_hop, peer, route.attrs)):
                self._reselect(route.prefix)

    def _reject(self, status: PeerStatus, reason: Reject, what: str) -> None:
        status.rejected[reason.value] += 1
        log.debug(
            "route rejected", extra={"kv": {"peer": status.address, "reason": reason.value, "what": what}}
        )

    def _on_eor(self, status: PeerStatus) -> None:
        status.eor = True
        log.info("end-of-rib received", extra={"kv": {"peer": status.address}})
        self._drop_stale(status.address)  # what it did not re-send (RFC 4724 §4.2)
        self._deferral_step(
            self.deferral.end_of_rib(status.address), self.stale_wait.end_of_rib(status.address)
        )

    # ------------------------------------------------------------------ RIB -> kernel

    def _reselect(self, prefix: IPv4Network) -> None:
        """The paths of `prefix` changed: run the decision process and feed both outputs (kernel, peers)."""
        selection = self.rib.selection(prefix)
        want = selection.next_hops if selection is not None else None
        if self.fib.get(prefix) != want:
            if want is None:
                del self.fib[prefix]
            else:
                self.fib[prefix] = want
                self.stale_kernel.discard(prefix)  # learned again: a later withdrawal removes it at once
            self._mark(prefix)
        if self.cluster_id is not None:
            self._reflect(prefix, selection.best if selection is not None else None)

    # ------------------------------------------------------------------ RIB -> peers (reflector)

    def _reflect(self, prefix: IPv4Network, best: Path | None) -> None:
        """RFC 4456: send the best path to the peers the reflection rules name, withdraw it elsewhere."""
        assert self.cluster_id is not None
        wanted: dict[IPv4Address, Advert] = {}
        if best is not None:
            source = best.peer.address
            source_id = best.peer.router_id or source
            # one Advert object and one receiver set per source and attributes, not per prefix
            key = (source_id, best.next_hop, best.attrs)
            advert = self._adverts.get(key)
            if advert is None:
                if len(self._adverts) >= ADVERT_CACHE_SIZE:
                    self._adverts.clear()
                attrs = reflected_attributes(best.attrs, source_id, self.cluster_id)
                advert = self._adverts[key] = Advert(best.next_hop, attrs)
            receivers = self._targets.get(source)
            if receivers is None:
                roles = self._ibgp_roles
                receivers = self._targets[source] = targets(source, roles.get(source, False), roles)
            wanted = dict.fromkeys(receivers, advert)
        self.adjout.set(prefix, wanted)
        if not self._reflect_scheduled and self._loop is not None:
            self._reflect_scheduled = True
            self._loop.call_soon(self._flush_reflection)

    def _flush_reflection(self) -> None:
        self._reflect_scheduled = False
        self._send_batches(self.adjout.flush())

    def _send_batches(self, batches: Iterable[Batch]) -> None:
        """Adj-RIB-Out batches as commands, each counted per command line for each peer it targets."""
        for b in batches:
            if b.advert is None:
                lines = codec.withdraw_lines(b.prefixes, self.cfg.node.address, b.peers)
            else:
                lines = codec.announce_lines(b.prefixes, b.advert.next_hop, b.advert.attrs, b.peers)
            self._send(lines, b.peers)

    def _mark(self, prefix: IPv4Network) -> None:
        if self.installer is None:
            return
        if self._install_since is None:
            self._install_since = self._event_time or time.monotonic()
        self._dirty.add(prefix)
        self._kernel_wakeup.set()

    def _deferral_expired(self) -> None:
        self._deferral_timer = None
        waiting = " ".join(str(a) for a in sorted(self.stale_wait.waiting))
        eor_done, stale_done = self.deferral.expire(), self.stale_wait.expire()
        if eor_done or stale_done:
            log.warning(
                "selection deferral timer expired; not every peer sent end-of-rib",
                extra={"kv": {"after_s": self.cfg.bgp.select_defer_time, "waiting_for": waiting}},
            )
        self._deferral_step(eor_done, stale_done)

    def _deferral_step(self, eor_done: bool, stale_done: bool) -> None:
        """RFC 4724 §4.1. `eor_done`: the tables of the peers we wait for are in (or the timer said
        enough): send the End-of-RIBs held back. `stale_done`: every peer's table is in: remove the kernel
        routes of an earlier run nobody re-announced."""
        if eor_done:
            log.info("selection deferral over", extra={"kv": {"how": self.deferral.how}})
            self._flush_eor()
        if stale_done:
            if self._deferral_timer is not None:
                self._deferral_timer.cancel()
                self._deferral_timer = None
            self._reconcile(self.stale_wait.how)

    def _reconcile(self, why: str) -> None:
        self.reconciled = True
        stale = [p for p in self.stale_kernel if p not in self.fib]
        log.info(
            "reconciling kernel routes from an earlier run", extra={"kv": {"why": why, "stale": len(stale)}}
        )
        for prefix in self.stale_kernel:
            self._mark(prefix)
        self.stale_kernel.clear()

    async def _report_unreachable(self) -> None:
        """ExaBGP retries connecting forever; say so in the log, with a growing interval (never fatal)."""
        interval = UNREACHABLE_FIRST_REPORT
        while True:
            await asyncio.sleep(interval)
            now = time.time()
            for status in self.peers.values():
                if status.state != "up" and now - status.since >= interval:
                    log.warning(
                        "peer not established; still retrying",
                        extra={
                            "kv": {
                                "peer": status.address,
                                "state": status.state,
                                "for_s": round(now - status.since),
                            }
                        },
                    )
            interval = min(interval * 2, UNREACHABLE_MAX_REPORT)

    def _ops(self) -> tuple[list[KernelOp], float | None]:
        """The kernel changes the dirty prefixes need, and when the first of them was asked for."""
        ops: list[KernelOp] = []
        unknown = self._unknown
        for prefix in self._dirty:
            want = self.fib.get(prefix)
            have = self.installed.get(prefix)
            if want is not None and prefix in self._foreign:
                if prefix not in self.collisions:
                    self.collisions.add(prefix)
                    self.counters["kernel_collisions"] += 1
                    log.warning(
                        "learned prefix held by a foreign kernel route; not installed",
                        extra={"kv": {"prefix": prefix}},
                    )
                want = None
            elif prefix in self.collisions and (want is None or prefix not in self._foreign):
                self.collisions.discard(prefix)
            if want == have and prefix not in unknown:  # unknown: written whatever `have` says
                continue
            if want is None and prefix in self.stale_kernel:
                continue  # an earlier run's route: kept until reconciliation
            ops.append((prefix, want))
        self._dirty.clear()
        since, self._install_since = self._install_since, None
        return ops, since

    def _ours(self, ops: list[KernelOp]) -> frozenset[IPv4Network]:
        """The changed routes the kernel holds as ours (as its notifications told us): the installer
        replaces them directly, instead of a create that fails and a dump of our routes to check who owns
        the existing one."""
        installed, foreign, collisions = self.installed, self._foreign, self.collisions
        return frozenset(
            p
            for p, want in ops
            if want is not None and p in installed and p not in foreign and p not in collisions
        )

    def _install_inline(self) -> None:
        """A few changed routes and the writer idle: write them now, from the event loop, instead of on the
        kernel loop's next turn (a netlink round trip costs tens of µs; a loop turn and a thread hand-off
        cost more, and this is the tail of every single-route change's latency)."""
        dirty = len(self._dirty)
        if self.installer is None or self._kernel_busy or not dirty or dirty > INLINE_KERNEL_OPS:
            return
        if self._retrying and not self._retrying.isdisjoint(self._dirty):
            self._kernel_wakeup.set()  # a retried change may fail again, and the installer's retries sleep
            return
        ops, since = self._ops()
        if ops:
            self._kernel_results(ops, _apply_safely(self.installer, ops, self._ours(ops)), since)

    async def _kernel_loop(self) -> None:
        loop = asyncio.get_running_loop()
        installer = self.installer
        if installer is None:
            return
        while True:
            await self._kernel_wakeup.wait()
            self._kernel_wakeup.clear()
            if self._audit_cause is not None:
                await self._audit(installer)
            ops, since = self._ops()
            if not ops:
                continue
            if len(ops) <= INLINE_KERNEL_OPS and self._retrying.isdisjoint(p for p, _ in ops):
                # a few routes: one netlink round trip (~tens of µs) costs less than two thread hand-offs
                results = _apply_safely(installer, ops, self._ours(ops))
            else:
                # in slices: the per-operation bookkeeping of a 100k-route burst, allocated while routes
                # keep arriving, would otherwise stay in the process as fragmented heap after it is freed
                results = []
                self._begin_background()
                try:
                    for start in range(0, len(ops), KERNEL_SLICE):
                        part = ops[start : start + KERNEL_SLICE]
                        ours = self._ours(part)  # as of now: events keep arriving between slices
                        results += await loop.run_in_executor(
                            self._kexec, _apply_safely, installer, part, ours
                        )
                finally:
                    self._kernel_busy = False  # what it noted is taken by _kernel_results
            self._kernel_results(ops, results, since)

    def _kernel_results(
        self,
        ops: list[KernelOp],
        results: list[OpResult],
        since: float | None,
    ) -> None:
        if since is not None:
            self.latency.install.observe(time.monotonic() - since)
        failed: list[IPv4Network] = []
        # our routes somebody changed while this batch was written (by the writer thread): the result may
        # already be out of date for them; what the kernel reported stands, and they are written again
        touched, touched_all = self._end_background()  # nothing noted for a write on the loop itself
        if touched_all:  # a full re-read arrived meanwhile: one audit settles the whole batch
            self._request_audit("overflow")
        retried_ok = 0
        for (prefix, want), result in zip(ops, results, strict=True):
            was_retried = prefix in self._retrying
            self._retrying.discard(prefix)
            if prefix in touched:
                self._write_again(prefix)
            elif result.ok:
                self._set_installed(prefix, want)
                self._unknown.discard(prefix)
                self._retry_pending.discard(prefix)
                retried_ok += was_retried
            elif result.collision:
                self.collisions.add(prefix)
                self.counters["kernel_collisions"] += 1
            else:
                failed.append(prefix)
        self.counters["kernel_ops"] += len(ops)
        if retried_ok:
            log.info("kernel route changes written on retry", extra={"kv": {"count": retried_ok}})
        if failed:
            self.counters["kernel_failures"] += len(failed)
            log.error(
                "kernel route changes failed; will retry",
                extra={"kv": {"count": len(failed), "first": failed[0], "in": RETRY_FAILED_AFTER}},
            )
            self._retry_pending.update(failed)
            if self._retry_timer is None and self._loop is not None:
                self._retry_timer = self._loop.call_later(RETRY_FAILED_AFTER, self._retry_now)

    def _on_link_up(self) -> None:
        """A next hop may be reachable again: retry failed changes now, not at their timer (at most once a
        second: every new workload veth is a LinkUp)."""
        if self._retry_pending and time.monotonic() - self._last_retry >= LINK_UP_RETRY_GAP:
            self._retry_now()

    def _retry_now(self) -> None:
        """Write the failed changes again: one timer for all of them, re-armed by the next failure. They go
        through the writer thread (the installer's own retries sleep, which the loop must not)."""
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        self._last_retry = time.monotonic()
        for prefix in self._retry_pending:
            self._retrying.add(prefix)
            self._mark(prefix)
        self._retry_pending.clear()

    # ------------------------------------------------------------------ reload (SIGHUP, bgpctl reload)

    async def reload(self) -> dict[str, object]:
        """Re-read the config file and apply it without resetting sessions whose settings did not change.
        An invalid or non-reloadable new config changes nothing."""
        try:
            new = config_mod.load(self.cfg.source)
        except config_mod.ConfigError as exc:
            return self._reload_done(False, f"invalid config, nothing changed: {exc}")
        blocked = restart_required(self.cfg, new)
        if blocked:
            return self._reload_done(
                False, f"{', '.join(blocked)} changed: restart bgpd to apply; nothing changed"
            )
        old = self.cfg
        old_sessions = {p.address: p for p in old.sessions()}
        new_sessions = {p.address: p for p in new.sessions()}
        removed = [a for a in old_sessions if a not in new_sessions]
        added = [a for a in new_sessions if a not in old_sessions]
        changed = [a for a in new_sessions if a in old_sessions and new_sessions[a] != old_sessions[a]]
        self.cfg = new
        self.cluster_id = new.reflector.cluster_id if new.reflector else None
        self.mesh_nodes = frozenset(new.bgp.mesh.nodes) if new.bgp.mesh.enabled else frozenset()
        logging.getLogger().setLevel(logging.getLevelName(new.runtime.log_level.upper()))
        affected: set[IPv4Network] = set()
        for address in removed:
            del self.peers[address]
            self._stale_paths.pop(address, None)
            self._cancel_stale_deadline(address)
            self._eor_pending.discard(address)
            affected |= self.rib.drop_peer(address)
            self.adjout.forget_peer(address)
            self._deferral_step(self.deferral.forget(address), self.stale_wait.forget(address))
        for address in added:
            p = new_sessions[address]
            self.peers[address] = PeerStatus(address, p.asn, p.rr_client)
            self._added_by_reload.add(address)
        for address in changed:
            p = new_sessions[address]
            status = self.peers[address]
            status.ungraceful = True  # ExaBGP resets the session: not a graceful restart of the peer
            status.asn, status.rr_client = p.asn, p.rr_client
        roles = {a: p.rr_client for a, p in self.peers.items() if p.asn == new.node.asn}
        roles_changed = roles != self._ibgp_roles
        self._ibgp_roles = roles
        self._targets.clear()
        self._adverts.clear()  # the cluster id may have changed
        if removed or added or changed:
            self.exabgp.reload(sessions_of(new))
        # export rules: re-evaluate every kernel route
        if export_rules(new) != self.export.rules:
            delta = self.export.set_rules(export_rules(new), self.kernel_view.values())
            if delta:
                self._queue_export(delta)
                for prefix in delta.announce | delta.withdraw:
                    self.rib.suppress(prefix, self.export.is_announced(prefix))
                    affected.add(prefix)
        # import policy: drop paths the new policy rejects; ask peers to resend what it may now accept
        policy = self._import_policy(self._local_addresses)
        if (policy.pools, policy.cluster_id) != (self.policy.pools, self.policy.cluster_id):
            self.policy = policy
            for prefix in list(self.rib.prefixes()):
                for path in self.rib.paths(prefix):
                    if policy.check(path.prefix, path.next_hop, path.attrs) is not None:
                        self.rib.remove(path.peer.address, prefix)
                        affected.add(prefix)
            refresh = [codec.route_refresh_line(a) for a, st in self.peers.items() if st.state == "up"]
            self.exabgp.send(refresh)
        if roles_changed or (self.cluster_id is None and old.reflector is not None):
            affected |= set(self.rib.prefixes())
        for prefix in affected:
            self._reselect(prefix)
        summary = (
            f"reloaded: {len(added)} peers added, {len(removed)} removed, {len(changed)} changed, "
            f"{len(old_sessions) - len(removed) - len(changed)} unchanged"
        )
        return self._reload_done(True, summary)

    def _reload_done(self, ok: bool, message: str) -> dict[str, object]:
        self.counters["reloads_ok" if ok else "reloads_failed"] += 1
        self.last_reload = {"ok": ok, "message": message, "time": time.time()}
        log.log(
            logging.INFO if ok else logging.ERROR,
            "config reload",
            extra={"kv": {"ok": ok, "result": message}},
        )
        return dict(self.last_reload)


def restart_required(old: Config, new: Config) -> list[str]:
    """Settings a running bgpd cannot change in place (the kernel side, identity, listeners)."""
    checks = {
        "node": (old.node, new.node),
        "runtime.dir": (old.runtime.dir, new.runtime.dir),
        "kernel.protocol": (old.kernel.protocol, new.kernel.protocol),
        "kernel.table": (old.kernel.table, new.kernel.table),
        "kernel.metric": (old.kernel.metric, new.kernel.metric),
        "kernel.install": (old.kernel.install, new.kernel.install),
        "bgp.port": (old.bgp.port, new.bgp.port),
        "bgp.graceful_restart": (old.bgp.graceful_restart, new.bgp.graceful_restart),
        "control.socket": (old.control_socket, new.control_socket),
        "metrics.listen": (old.metrics.listen, new.metrics.listen),
    }
    return [name for name, (a, b) in checks.items() if a != b]
