"""The host speaker: wires the kernel watcher, the export table, ExaBGP, the RIB and the kernel installer.

Two inputs, two outputs (as OpenBGPD's decision engine):
- kernel route events -> `ExportTable` -> announcements to ExaBGP (to every session; next hop = underlay);
- ExaBGP UPDATEs -> import policy -> `Rib` -> best path / ECMP -> the kernel installer (our protocol only).

Ownership: bgpd changes only routes of its own protocol in its table (`RouteInstaller` enforces it in the
netlink request itself). A learned prefix that a foreign route already holds is not installed (counted as a
collision). Routes of ours found at start (an earlier run) are kept until every session has sent End-of-RIB
or `kernel.stale_timeout` passed, then those no longer wanted are removed. When ExaBGP dies, its paths are
kept (and so the kernel routes) until the restarted sessions have re-sent their tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path as FsPath

from bgpd.config import Config
from bgpd.exabgp import codec, confgen
from bgpd.exabgp.supervisor import ExaBGP
from bgpd.kernel import RouteAdded, RouteEvent, RouteInstaller, RouteRemoved, RouteWatcher, Snapshot
from bgpd.kernel import local_addresses as kernel_local_addresses
from bgpd.model import Attributes, KernelRoute, Path, Peer
from bgpd.policy.export import Delta, ExportRules, ExportTable
from bgpd.policy.importer import ImportPolicy, Reject
from bgpd.rib.table import Rib

log = logging.getLogger("bgpd.speaker")

RETRY_FAILED_AFTER = 5.0
EXPORT_ATTRIBUTES = Attributes()


@dataclass(slots=True)
class PeerStatus:
    """What bgpd knows about one configured session."""

    address: IPv4Address
    asn: int
    state: str = "idle"
    since: float = field(default_factory=time.time)
    eor: bool = False
    updates_in: int = 0
    received: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    flaps: int = 0


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
        self.policy = ImportPolicy(
            (p.cidr for p in cfg.pools), cfg.node.address, (cfg.node.address,), cfg.node.router_id
        )
        self.peers: dict[IPv4Address, PeerStatus] = {
            s.address: PeerStatus(s.address, s.asn) for s in cfg.sessions()
        }
        self.counters: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        # kernel view: every route of our table, by kernel key, and foreign ones per prefix
        self.kernel_view: dict[tuple[IPv4Network, int, int], KernelRoute] = {}
        self._foreign: Counter[IPv4Network] = Counter()
        # forwarding state: what we want installed and what we know is installed (ours)
        self.fib: dict[IPv4Network, tuple[IPv4Address, ...]] = {}
        self.installed: dict[IPv4Network, tuple[IPv4Address, ...]] = {}
        self.collisions: set[IPv4Network] = set()
        self._stale_kernel: set[IPv4Network] = set()
        self.reconciled = False
        # paths kept across an ExaBGP restart until the peer re-sent its table
        self._stale_paths: dict[IPv4Address, set[IPv4Network]] = {}
        self._dirty: set[IPv4Network] = set()
        self._kernel_wakeup = asyncio.Event()
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
            self.installed = dict(own)
            self._stale_kernel = set(own)
            log.info("kernel routes from an earlier run", extra={"kv": {"count": len(own)}})
        addresses = await self._loop.run_in_executor(self._kexec, kernel_local_addresses)
        self.policy = ImportPolicy(
            (p.cidr for p in cfg.pools), cfg.node.address, addresses, cfg.node.router_id
        )
        self.watcher = RouteWatcher(cfg.kernel.table, self._on_kernel_events_threadsafe)
        self.watcher.start()
        await self.exabgp.start()
        self._tasks.append(asyncio.create_task(self._kernel_loop(), name="kernel-writer"))
        self._tasks.append(asyncio.create_task(self._stale_deadline(), name="stale-deadline"))
        log.info(
            "bgpd started",
            extra={
                "kv": {"node": cfg.node.name, "router_id": cfg.node.router_id, "sessions": len(self.peers)}
            },
        )

    async def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        await self.exabgp.stop()
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
                loop.call_soon_threadsafe(self.on_kernel_events, events)

    def on_kernel_events(self, events: Iterable[RouteEvent]) -> None:
        delta = Delta()
        for event in events:
            if isinstance(event, Snapshot):
                self.counters["kernel_resyncs" if event.reason != "start" else "kernel_dumps"] += 1
                self._set_kernel_view(event.routes)
                step = self.export.replace_all(event.routes)
                delta.announce |= step.announce
                delta.announce -= step.withdraw
                delta.withdraw |= step.withdraw
                delta.withdraw -= step.announce
                if event.reason != "start":
                    log.warning(
                        "kernel resync", extra={"kv": {"reason": event.reason, "routes": len(event.routes)}}
                    )
            elif isinstance(event, RouteAdded):
                self._view_add(event.route)
                self.export.add(event.route, delta)
            elif isinstance(event, RouteRemoved):
                self._view_remove(event.route)
                self.export.remove(event.route, delta)
        if not self._export_ready:
            self._export_ready = True
            log.info("kernel dump read", extra={"kv": {"exported": len(self.export.announced)}})
        if delta:
            self._queue_export(delta)
            for prefix in delta.announce | delta.withdraw:
                self.rib.suppress(prefix, prefix in self.export.announced)
                self._reselect(prefix)
        self._flush_eor()

    def _set_kernel_view(self, routes: Iterable[KernelRoute]) -> None:
        old_foreign = set(self._foreign)
        self.kernel_view = {}
        self._foreign = Counter()
        for route in routes:
            self._view_add(route, mark=False)
        for prefix in old_foreign ^ set(self._foreign):
            self._mark(prefix)

    def _view_add(self, route: KernelRoute, mark: bool = True) -> None:
        old = self.kernel_view.get(route.key)
        if old is not None:
            self._view_remove(old, mark)
        self.kernel_view[route.key] = route
        if route.protocol != self.cfg.kernel.protocol:
            self._foreign[route.prefix] += 1
            if mark and self._foreign[route.prefix] == 1:
                self._mark(route.prefix)

    def _view_remove(self, route: KernelRoute, mark: bool = True) -> None:
        old = self.kernel_view.pop(route.key, None)
        if old is not None and old.protocol != self.cfg.kernel.protocol:
            self._foreign[old.prefix] -= 1
            if self._foreign[old.prefix] <= 0:
                del self._foreign[old.prefix]
                if mark:
                    self._mark(old.prefix)

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
            lines += codec.withdraw_lines(sorted(self._out_withdraw))
        if self._out_announce:
            lines += codec.announce_lines(
                sorted(self._out_announce), self.cfg.node.address, EXPORT_ATTRIBUTES
            )
        self.counters["announced"] += len(self._out_announce)
        self.counters["withdrawn"] += len(self._out_withdraw)
        if lines:
            log.debug(
                "export",
                extra={"kv": {"announce": len(self._out_announce), "withdraw": len(self._out_withdraw)}},
            )
        self._out_announce.clear()
        self._out_withdraw.clear()
        self.exabgp.send(lines)

    def _flush_eor(self) -> None:
        """Send End-of-RIB to sessions that came up, once our table is complete (RFC 4724 §2)."""
        if not self._export_ready or not self._eor_pending:
            return
        if self._out_scheduled:
            self._flush_export()
        self.exabgp.send([codec.eor_line(peer) for peer in sorted(self._eor_pending)])
        self._eor_pending.clear()

    # ------------------------------------------------------------------ ExaBGP -> RIB

    def _on_exabgp_connect(self) -> None:
        """A (new) ExaBGP attached: it knows nothing; replay our whole table."""
        announced = sorted(self.export.announced)
        self.exabgp.send(codec.announce_lines(announced, self.cfg.node.address, EXPORT_ATTRIBUTES))

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
                self._stale_paths[peer] = set(prefixes)
        self.counters["exabgp_disconnects"] += 1
        log.error("exabgp disconnected; keeping learned routes until sessions return")
        if self._loop is not None:
            self._tasks.append(self._loop.create_task(self._expire_stale_paths(), name="stale-paths"))

    def _on_exabgp_line(self, line: str) -> None:
        try:
            event = codec.decode(line)
        except codec.DecodeError as exc:
            self.counters["exabgp_decode_errors"] += 1
            log.warning("undecodable line from exabgp", extra={"kv": {"error": str(exc)}})
            return
        if event is None:
            return
        status = self.peers.get(event.peer)
        if status is None:
            return
        if isinstance(event, codec.Update):
            self._on_update(status, event)
        elif isinstance(event, codec.PeerState):
            self._on_state(status, event)
        elif isinstance(event, codec.EndOfRib):
            self._on_eor(status)
        elif isinstance(event, codec.Notification):
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
            log.info("session established", extra={"kv": {"peer": status.address, "asn": event.peer_asn}})
            self._eor_pending.add(status.address)
            self._flush_eor()
        elif event.state == "down":
            if was_up:
                status.flaps += 1
            status.eor = False
            self._eor_pending.discard(status.address)
            if status.address in self._stale_paths:
                return  # ExaBGP restart in progress: keep the paths until the deadline or the re-sent table
            affected = self.rib.drop_peer(status.address)
            log.log(
                logging.WARNING if was_up else logging.DEBUG,
                "session down" if was_up else "connection closed before established",
                extra={"kv": {"peer": status.address, "reason": event.reason, "withdrawn": len(affected)}},
            )
            for prefix in affected:
                self._reselect(prefix)

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
        peer = Peer(peer_addr, status.asn, ebgp=status.asn != self.cfg.node.asn)
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
            if route.prefix in self.export.announced:
                self._reject(status, Reject.OWN_PREFIX, str(route.prefix))  # kept, but never selected
            else:
                status.accepted += 1
            if self.rib.add(Path(route.prefix, route.next_hop, peer, route.attrs)):
                self._reselect(route.prefix)

    def _reject(self, status: PeerStatus, reason: Reject, what: str) -> None:
        status.rejected[reason.value] += 1
        self.rejected[reason.value] += 1
        log.debug(
            "route rejected", extra={"kv": {"peer": status.address, "reason": reason.value, "what": what}}
        )

    def _on_eor(self, status: PeerStatus) -> None:
        status.eor = True
        log.info("end-of-rib received", extra={"kv": {"peer": status.address}})
        stale = self._stale_paths.pop(status.address, None)
        if stale:
            for prefix in stale:
                if self.rib.remove(status.address, prefix):
                    self._reselect(prefix)
        self._maybe_reconcile()

    async def _expire_stale_paths(self) -> None:
        await asyncio.sleep(self.cfg.kernel.stale_timeout)
        for peer, prefixes in list(self._stale_paths.items()):
            for prefix in prefixes:
                if self.rib.remove(peer, prefix):
                    self._reselect(prefix)
            del self._stale_paths[peer]

    # ------------------------------------------------------------------ RIB -> kernel

    def _reselect(self, prefix: IPv4Network) -> None:
        selection = self.rib.selection(prefix)
        want = selection.next_hops if selection is not None else None
        if self.fib.get(prefix) == want:
            return
        if want is None:
            del self.fib[prefix]
        else:
            self.fib[prefix] = want
        self._mark(prefix)

    def _mark(self, prefix: IPv4Network) -> None:
        if self.installer is None:
            return
        self._dirty.add(prefix)
        self._kernel_wakeup.set()

    def _maybe_reconcile(self) -> None:
        if self.reconciled or not all(p.eor for p in self.peers.values()):
            return
        self._reconcile("end-of-rib from every session")

    def _reconcile(self, why: str) -> None:
        self.reconciled = True
        stale = [p for p in self._stale_kernel if p not in self.fib]
        log.info(
            "reconciling kernel routes from an earlier run", extra={"kv": {"why": why, "stale": len(stale)}}
        )
        for prefix in self._stale_kernel:
            self._mark(prefix)
        self._stale_kernel.clear()

    async def _stale_deadline(self) -> None:
        if not self.peers:
            self._reconcile("no sessions configured")
            return
        await asyncio.sleep(self.cfg.kernel.stale_timeout)
        if not self.reconciled:
            self._reconcile("stale_timeout passed")

    def _ops(self) -> list[tuple[IPv4Network, tuple[IPv4Address, ...] | None]]:
        ops: list[tuple[IPv4Network, tuple[IPv4Address, ...] | None]] = []
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
            if want == have:
                continue
            if want is None and prefix in self._stale_kernel:
                continue  # an earlier run's route: kept until reconciliation
            ops.append((prefix, want))
        self._dirty.clear()
        return ops

    async def _kernel_loop(self) -> None:
        loop = asyncio.get_running_loop()
        installer = self.installer
        if installer is None:
            return
        while True:
            await self._kernel_wakeup.wait()
            self._kernel_wakeup.clear()
            ops = self._ops()
            if not ops:
                continue
            results = await loop.run_in_executor(self._kexec, installer.apply, ops)
            failed: list[IPv4Network] = []
            for (prefix, want), result in zip(ops, results, strict=True):
                if result.ok:
                    if want is None:
                        self.installed.pop(prefix, None)
                    else:
                        self.installed[prefix] = want
                elif result.collision:
                    self.collisions.add(prefix)
                    self.counters["kernel_collisions"] += 1
                else:
                    failed.append(prefix)
            self.counters["kernel_ops"] += len(ops)
            if failed:
                self.counters["kernel_failures"] += len(failed)
                log.error(
                    "kernel route changes failed; will retry",
                    extra={"kv": {"count": len(failed), "first": failed[0], "in": RETRY_FAILED_AFTER}},
                )
                loop.call_later(RETRY_FAILED_AFTER, self._retry, failed)

    def _retry(self, prefixes: list[IPv4Network]) -> None:
        for prefix in prefixes:
            self._mark(prefix)
