"""The I/O shell of the host speaker and the reflector: feeds events into the route decision engine
(`bgpd.engine.Engine`) and carries its two outputs out.

In: ExaBGP's lines (decoded by `bgpd.exabgp.codec`), the kernel watcher's events (`bgpd.kernel`, read
from the event loop itself: a single route change costs no thread hand-off), the results of the kernel
writer, timers (on the asyncio loop), reloads. Out: the engine's Adj-RIB-Out
changes as ExaBGP commands, and its kernel operations through the `RouteInstaller`: a few at once from
the event loop (a netlink round trip costs less than a thread hand-off), bursts in slices on a writer
thread, so the loop keeps answering bgpctl and reading ExaBGP. And the engine's session operations: a
`Teardown` as ExaBGP's `teardown` command, a `HoldDown` as ExaBGP's config reloaded without the sessions
held down after a maximum-prefixes reset.

Nothing here decides anything about routes; `bgpd.daemon` builds this shell with the control socket and
the metrics endpoint around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from ipaddress import IPv4Network
from pathlib import Path as FsPath
from socket import AF_INET, AF_INET6

from bgpd import config as config_mod
from bgpd.config import Config
from bgpd.engine import (
    Announce,
    EndOfRib,
    Engine,
    HoldDown,
    KernelOp,
    OutChange,
    RouteRefresh,
    Teardown,
    Withdraw,
)
from bgpd.exabgp import codec, confgen
from bgpd.exabgp.supervisor import ExaBGP
from bgpd.kernel import InstallError, OpResult, RouteEvent, RouteInstaller, RouteWatcher
from bgpd.kernel import local_addresses as kernel_local_addresses
from bgpd.metrics import Latency
from bgpd.model import Address, Hop, Prefix

log = logging.getLogger("bgpd.speaker")

KERNEL_EVENTS_PER_TURN = 2048  # kernel events handled per event-loop turn (others run in between)
# the kernel watcher's socket buffer (bytes; the kernel doubles it and charges only what is queued): the
# loop reads it between two turns, so a burst (100k routes added by Felix at once) must fit in what
# arrives during the longest turn on a loaded host
KERNEL_RCVBUF = 32 * 2**20
INLINE_KERNEL_OPS = 16  # batches up to this size are written from the event loop itself
KERNEL_SLICE = 2048  # larger batches go to the kernel writer thread this many operations at a time
WATCHER_RETRY_FIRST = 1.0  # seconds before a failed kernel watcher is started again, doubling up to
WATCHER_RETRY_MAX = 30.0
AUDIT_OFF_RECHECK = 60.0  # seconds: with kernel.audit_interval 0, how often a reload turning it on is seen


def _apply_safely(
    installer: RouteInstaller, ops: list[KernelOp], ours: frozenset[Prefix] = frozenset()
) -> list[OpResult]:
    """installer.apply, with a failure of the netlink socket itself reported as every operation failing
    (they are retried like any failed change) instead of an exception that would stop the writer."""
    try:
        return installer.apply(ops, ours)
    except InstallError as exc:
        log.error("kernel route writer failed", extra={"kv": {"error": str(exc), "operations": len(ops)}})
        return [OpResult(prefix, ok=False, error=str(exc)) for prefix, _ in ops]


def sessions_of(cfg: Config, held: frozenset[Address] = frozenset()) -> list[confgen.Session]:
    """ExaBGP's neighbors: one per configured session but those `held` down (maximum prefixes), carrying the
    family of its address and its keepalive time (for the keepalive file next to ExaBGP's config)."""
    return [
        confgen.Session(
            address=p.address,
            asn=p.asn,
            port=p.port,
            passive=p.passive,
            hold_time=p.hold_time if p.hold_time is not None else cfg.bgp.hold_time,
            password=p.password,
            description=p.description,
            families=(p.family,),
            local_asn=p.local_asn,
            keepalive_time=p.keepalive_time,
            ttl_security=p.ttl_security,
        )
        for p in cfg.sessions()
        if p.address not in held
    ]


def _kernel_families(cfg: Config) -> tuple[int, ...]:
    return (AF_INET, AF_INET6) if 6 in cfg.families else (AF_INET,)


def commands(change: OutChange, cfg: Config) -> list[str]:
    """ExaBGP command lines for one Adj-RIB-Out change."""
    if isinstance(change, Announce):
        return codec.announce_lines(change.prefixes, change.next_hop, change.attrs, change.peers)
    if isinstance(change, Withdraw):
        # BGP withdrawals carry no next hop; ExaBGP's text wants one of the prefixes' family
        hop = cfg.local_address(change.family)
        if hop is None:
            return []
        return codec.withdraw_lines(change.prefixes, hop, change.peers)
    if isinstance(change, EndOfRib):
        return [codec.eor_line(change.peer, change.family)]
    assert isinstance(change, RouteRefresh)
    return [codec.route_refresh_line(change.peer, change.family)]


def feed(engine: Engine, event: codec.AnyEvent) -> None:
    """One decoded ExaBGP event into the engine (the translation from ExaBGP's view of a session to the
    engine's inputs)."""
    if isinstance(event, codec.Update):
        engine.update(event.peer, event.withdrawn, event.announced, event.malformed)
    elif isinstance(event, codec.PeerOpen):
        status = engine.peers.get(event.peer)
        if status is not None:
            graceful = event.graceful_restart(status.family)
            engine.peer_open(
                event.peer, event.router_id, graceful, event.restarting, event.graceful_capability
            )
    elif isinstance(event, codec.PeerState):
        # a session closed by a NOTIFICATION (ours, e.g. a hold timer expiry, or the peer's) is no
        # graceful restart
        engine.peer_state(event.peer, event.state, event.reason, codec.notified(event.reason), event.peer_asn)
    elif isinstance(event, codec.EndOfRib):
        engine.end_of_rib(event.peer)
    elif isinstance(event, codec.Notification):
        engine.notification(event.peer, event.code, event.subcode)


class LoopTimers:
    """The engine's `Timers` on the running asyncio loop."""

    def __init__(self, fire: Callable[[Hashable], None]) -> None:
        self._fire = fire
        self.handles: dict[Hashable, asyncio.TimerHandle] = {}

    def arm(self, key: Hashable, delay: float) -> None:
        self.cancel(key)
        with contextlib.suppress(RuntimeError):  # no running loop (tools, tests driving the engine)
            loop = asyncio.get_running_loop()
            self.handles[key] = loop.call_later(delay, self._fired, key)

    def cancel(self, key: Hashable) -> None:
        handle = self.handles.pop(key, None)
        if handle is not None:
            handle.cancel()

    def cancel_all(self) -> None:
        for handle in self.handles.values():
            handle.cancel()
        self.handles.clear()

    def _fired(self, key: Hashable) -> None:
        self.handles.pop(key, None)
        self._fire(key)


class Speaker:
    """One host's routing daemon: the engine and its I/O."""

    def __init__(
        self, cfg: Config, latency: Latency, node_interface: tuple[str, IPv4Network] | None = None
    ) -> None:
        self.cfg = cfg
        self.node_interface = node_interface  # (name, network) of node.address, if already looked up
        self.started = time.time()
        self.latency = latency
        self.timers = LoopTimers(self._on_timer)
        self.engine = Engine(cfg, self.timers)
        self.commands_sent: Counter[str] = Counter()
        self.families = tuple(cfg.families)
        # kernel event batches not handled yet: (events, next index, when received)
        self._kernel_queue: deque[tuple[list[RouteEvent], int, float]] = deque()
        self._kernel_queue_scheduled = False
        self._kernel_wakeup = asyncio.Event()
        self._out_scheduled = False
        self._tasks: list[asyncio.Task[None]] = []
        self._kexec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bgpd-kernel")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.exabgp = ExaBGP(
            str(FsPath(cfg.runtime.dir)),
            confgen.Speaker(
                router_id=cfg.node.router_id,
                local_address=cfg.node.address,
                asn=cfg.node.asn,
                listen_port=cfg.bgp.port,
                graceful_restart=cfg.bgp.graceful_restart,
                local_address6=cfg.node.address6,
            ),
            sessions_of(cfg),
            on_line=self._on_exabgp_line,
            on_connect=self._on_exabgp_connect,
            on_disconnect=self._on_exabgp_disconnect,
            log_level="WARNING" if cfg.runtime.log_level != "debug" else "INFO",
        )
        self.installer: RouteInstaller | None = None
        self.watcher: RouteWatcher | None = None
        self._closed = False  # close() began: no watcher is restarted
        self._export_since: float | None = None  # oldest kernel change not exported yet
        self._install_since: float | None = None  # oldest change not written to the kernel yet

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop ExaBGP (sessions close) and keep installed routes (persist)."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.close()

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        cfg = self.cfg
        families = _kernel_families(cfg)
        own: dict[Prefix, tuple[Address | Hop, ...]] = {}
        if cfg.kernel.install:
            self.installer = installer = RouteInstaller(
                cfg.kernel.protocol, cfg.kernel.table, cfg.kernel.metric
            )
            own = await loop.run_in_executor(
                self._kexec, lambda: installer.dump_own(families=families, hops=True)
            )
        addresses = await loop.run_in_executor(self._kexec, lambda: kernel_local_addresses(families=families))
        subnet = None
        found = self.node_interface  # `bgpd run` refuses to start without it
        if cfg.node.subnet is None and found is not None:  # node.address without its length
            subnet = found[1]
            log.info("node subnet from interface", extra={"kv": {"interface": found[0], "subnet": subnet}})
        self.engine.start(own, addresses, subnet)
        if not cfg.pools:
            log.warning(
                "no pools configured: nothing is announced or installed (only prefixes in a pool are)"
            )
        self.watcher = self._new_watcher()
        self.watcher.start(loop)  # read from this loop: no thread hand-off per kernel change
        await self.exabgp.start()
        self._tasks.append(asyncio.create_task(self._kernel_loop(), name="kernel-writer"))
        if self.installer is not None:
            self._tasks.append(asyncio.create_task(self._audit_loop(), name="kernel-audit"))
        self._after()
        log.info(
            "bgpd started",
            extra={
                "kv": {
                    "node": cfg.node.name,
                    "router_id": cfg.node.router_id,
                    "sessions": len(self.engine.peers),
                    "families": "+".join(f"ipv{f}" for f in cfg.families),
                }
            },
        )

    async def close(self) -> None:
        self._closed = True
        if self.watcher is not None:
            self.watcher.stop()
        await self.exabgp.stop()
        self.timers.cancel_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._kexec.shutdown(wait=True)
        if self.installer is not None:
            self.installer.close()
        kv = {"installed": len(self.engine.fib.installed)}
        log.info("bgpd stopped; installed routes kept", extra={"kv": kv})

    # ------------------------------------------------------------------ after every event: carry outputs

    def _after(self, event_time: float | None = None) -> None:
        """Carry the engine's outputs: Adj-RIB-Out changes now if urgent or few (else on the next loop turn,
        so a burst coalesces), kernel operations now if few and the writer idle (else to the writer)."""
        engine = self.engine
        if engine.session_work:
            self._session_ops()
        if engine.out_pending:
            if engine.out_urgent:
                self._flush_out()
            elif not self._out_scheduled and self._loop is not None:
                self._out_scheduled = True
                self._loop.call_soon(self._flush_out)
        if engine.kernel_work and self.installer is not None:
            if self._install_since is None:
                self._install_since = event_time or time.monotonic()
            if not self._install_inline():
                self._kernel_wakeup.set()

    def _session_ops(self) -> None:
        """Carry the engine's session operations: NOTIFICATIONs as ExaBGP commands, the held-down sessions
        as ExaBGP's neighbor set (its config reloaded; an unchanged session stays up)."""
        for op in self.engine.take_session_ops():
            if isinstance(op, Teardown):
                self.exabgp.send([codec.teardown_line(op.peer, op.subcode)])
            elif isinstance(op, HoldDown):
                self.exabgp.reload(sessions_of(self.cfg, op.peers))

    def _flush_out(self) -> None:
        self._out_scheduled = False
        changes = self.engine.take_adj_rib_out()
        if not changes:
            return
        cfg, sent, all_peers = self.cfg, self.commands_sent, self.engine.peers
        lines: list[str] = []
        for change in changes:
            more = commands(change, cfg)
            if not more:
                continue
            lines += more
            if isinstance(change, Announce | Withdraw):
                targets: Iterable[Address] = (
                    change.peers
                    if change.peers is not None
                    else (a for a in all_peers if a.version == change.family)
                )
            else:
                targets = (change.peer,)
            for peer in targets:
                sent[str(peer)] += len(more)
        self.exabgp.send(lines)
        # every local change queued so far was taken: sample it if something was exported (a change of a
        # family without sessions exports nothing, and must not be charged to the next export)
        if self.engine.exported_in_last_take and self._export_since is not None:
            self.latency.export.observe(time.monotonic() - self._export_since)
        self._export_since = None

    def _on_timer(self, key: Hashable) -> None:
        self.engine.on_timer(key)
        self._after()

    # ------------------------------------------------------------------ kernel -> engine

    def _new_watcher(self) -> RouteWatcher:
        cfg = self.cfg
        if self.installer is not None:
            # our writer's own changes never reach us; anybody else's changes to our routes do
            return RouteWatcher(
                cfg.kernel.table,
                self._on_kernel_events,
                ignore_sender=self.installer.portid,
                rcvbuf=KERNEL_RCVBUF,
                own_protocol=cfg.kernel.protocol,
                families=_kernel_families(cfg),
                on_failure=self._on_watcher_failed,
            )
        return RouteWatcher(  # nothing installed: routes of our protocol are none of our business
            cfg.kernel.table,
            self._on_kernel_events,
            ignore_protocol=cfg.kernel.protocol,
            rcvbuf=KERNEL_RCVBUF,
            families=_kernel_families(cfg),
            on_failure=self._on_watcher_failed,
        )

    def _on_watcher_failed(self, exc: Exception) -> None:
        """The watcher stopped reading (it logged why): bgpd no longer sees the kernel. A new watcher starts
        WATCHER_RETRY_FIRST s later (doubling to WATCHER_RETRY_MAX while starts fail); its start Snapshot
        replaces the engine's view of the kernel, so nothing missed while blind stays wrong. Counted
        (`bgpd_kernel_watcher_restarts`)."""
        self.engine.counters["kernel_watcher_failures"] += 1
        self._restart_watcher(WATCHER_RETRY_FIRST)

    def _restart_watcher(self, delay: float) -> None:
        loop = self._loop
        if loop is None or self._closed:
            return

        def attempt() -> None:
            if self._closed:
                return
            watcher = self._new_watcher()
            try:
                watcher.start(loop)
            except Exception as exc:  # OSError, NetlinkError: the kernel refused the subscription or dump
                later = min(delay * 2, WATCHER_RETRY_MAX)
                log.error(
                    "kernel watcher restart failed", extra={"kv": {"error": str(exc), "retry_in": later}}
                )
                self._restart_watcher(later)
                return
            self.watcher = watcher
            log.warning("kernel watcher restarted: the kernel's routes were read again")

        loop.call_later(delay, attempt)

    def _on_kernel_events(self, events: list[RouteEvent]) -> None:
        """The watcher's batches, on the loop's thread (it reads the netlink socket from this loop)."""
        self._queue_kernel_events(events, time.monotonic())

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
        if self.engine.kernel_events(events) and self._export_since is None:
            self._export_since = received if received is not None else time.monotonic()
        self._after(received)

    async def _audit_loop(self) -> None:
        """The last resort: re-read our own routes every `kernel.audit_interval` seconds."""
        while True:
            interval = self.cfg.kernel.audit_interval  # a reload may change it
            await asyncio.sleep(interval or AUDIT_OFF_RECHECK)
            if interval and self.cfg.kernel.audit_interval:
                self.engine.fib.request_audit("audit")
                self._kernel_wakeup.set()

    async def _audit(self, installer: RouteInstaller, cause: str) -> None:
        """Dump our routes (the kernel filters by protocol) and let the engine repair every difference. Runs
        on the kernel writer's turn, so no write of ours is in flight meanwhile."""
        assert self._loop is not None
        families = _kernel_families(self.cfg)
        self.engine.fib.begin_background()
        try:
            held = await self._loop.run_in_executor(
                self._kexec, lambda: installer.dump_own(families=families, hops=True)
            )
        except InstallError as exc:
            self.engine.fib.end_background()
            log.error("kernel audit failed", extra={"kv": {"error": str(exc)}})
            return
        self.engine.kernel_reread(held, cause)
        self._after()

    # ------------------------------------------------------------------ engine -> kernel

    def _install_inline(self) -> bool:
        """A few changed routes and the writer idle: write them now, from the event loop, instead of on the
        kernel loop's next turn (a netlink round trip costs tens of µs; a loop turn and a thread hand-off
        cost more, and this is the tail of every single-route change's latency). False: not done here."""
        fib = self.engine.fib
        dirty = len(fib.dirty)
        if self.installer is None or fib.busy or not dirty or dirty > INLINE_KERNEL_OPS:
            return False
        if fib.audit_cause is not None or (fib.retrying and not fib.retrying.isdisjoint(fib.dirty)):
            return False  # a retried change may fail again, and the installer's retries sleep
        ops, since = self._take_ops()
        if ops:
            results = _apply_safely(self.installer, ops, fib.ours(ops))
            self._kernel_done(ops, results, since)
        return True

    def _take_ops(self) -> tuple[list[KernelOp], float | None]:
        """The engine's kernel operations, and when the oldest change behind them arrived (the stamp goes
        with them: changes that need no write leave no stamp behind for the next one)."""
        since, self._install_since = self._install_since, None
        return self.engine.take_kernel_ops(), since

    async def _kernel_loop(self) -> None:
        loop = asyncio.get_running_loop()
        installer = self.installer
        if installer is None:
            return
        fib = self.engine.fib
        while True:
            await self._kernel_wakeup.wait()
            self._kernel_wakeup.clear()
            cause = fib.take_audit()
            if cause is not None:
                await self._audit(installer, cause)
            ops, since = self._take_ops()
            if not ops:
                continue
            if len(ops) <= INLINE_KERNEL_OPS and fib.retrying.isdisjoint(p for p, _ in ops):
                # a few routes: one netlink round trip (~tens of µs) costs less than two thread hand-offs
                results = _apply_safely(installer, ops, fib.ours(ops))
            else:
                # in slices: the per-operation bookkeeping of a 100k-route burst, allocated while routes
                # keep arriving, would otherwise stay in the process as fragmented heap after it is freed
                results = []
                fib.begin_background()
                try:
                    for start in range(0, len(ops), KERNEL_SLICE):
                        part = ops[start : start + KERNEL_SLICE]
                        ours = fib.ours(part)  # as of now: events keep arriving between slices
                        results += await loop.run_in_executor(
                            self._kexec,
                            _apply_safely,
                            installer,
                            part,
                            ours,
                        )
                except BaseException:
                    fib.end_background()
                    raise
            self._kernel_done(ops, results, since)

    def _kernel_done(self, ops: list[KernelOp], results: list[OpResult], since: float | None) -> None:
        if since is not None:
            self.latency.install.observe(time.monotonic() - since)
        self.engine.kernel_written(ops, results)
        engine = self.engine
        if engine.out_pending and not self._out_scheduled and self._loop is not None:
            self._out_scheduled = True
            self._loop.call_soon(self._flush_out)
        if engine.kernel_work:
            self._kernel_wakeup.set()

    # ------------------------------------------------------------------ ExaBGP -> engine

    def _on_exabgp_connect(self) -> None:
        """A (new) ExaBGP attached: it knows nothing; the engine replays our table and what we reflected."""
        self.engine.exabgp_attached()
        self._after()

    def _on_exabgp_disconnect(self) -> None:
        self.engine.exabgp_lost()
        self._after()

    def _on_exabgp_line(self, line: str) -> None:
        received = time.monotonic()  # stamps the kernel changes this line causes (install latency)
        try:
            event = codec.decode(line, self.families)
        except codec.DecodeError as exc:
            self.engine.counters["exabgp_decode_errors"] += 1
            log.warning("undecodable line from exabgp", extra={"kv": {"error": str(exc)}})
            return
        if event is not None:
            self.on_event(event)
            self._after(received)

    def on_event(self, event: codec.AnyEvent) -> None:
        """One decoded ExaBGP event, handed to the engine."""
        feed(self.engine, event)

    # ------------------------------------------------------------------ reload (SIGHUP, bgpctl reload)

    async def reload(self) -> dict[str, object]:
        """Re-read the config file and apply it without resetting sessions whose settings did not change.
        An invalid or non-reloadable new config changes nothing."""
        try:
            new = config_mod.load(self.cfg.source)
        except config_mod.ConfigError as exc:
            return self._reload_done(False, f"invalid config, nothing changed: {exc}")
        return self.apply(new, "reloaded")

    def apply(self, new: Config, what: str) -> dict[str, object]:
        """Apply ``new`` as a reload does (the file's, or one derived from the datastore: ``what`` says
        which, e.g. ``"reloaded"``, ``"datastore revision 42"``): sessions whose settings did not change are
        not touched. Settings that need a restart (`restart_required`) refuse the whole change. The result
        (``ok``, ``message``, ``time``) is also `Engine.last_reload`."""
        blocked = restart_required(self.cfg, new)
        if blocked:
            return self._reload_done(
                False, f"{what}: {', '.join(blocked)} changed: restart bgpd to apply; nothing changed"
            )
        old_count = len(self.cfg.sessions())
        old_sessions = sessions_of(self.cfg, self.engine.held_down)
        self.cfg = new
        logging.getLogger().setLevel(logging.getLevelName(new.runtime.log_level.upper()))
        added, removed, changed = self.engine.reconfigure(new)
        sessions = sessions_of(new, self.engine.held_down)
        if removed or added or changed or sessions != old_sessions:
            # a changed keepalive time alone rewrites the keepalive file and applies at once, no reset
            self.exabgp.reload(sessions, reconfigure=bool(removed or added or changed))
        self._after()
        summary = (
            f"{what}: {len(added)} peers added, {len(removed)} removed, {len(changed)} changed, "
            f"{old_count - len(removed) - len(changed)} unchanged"
        )
        return self._reload_done(True, summary)

    def refuse(self, message: str) -> dict[str, object]:
        """A reload refused before it reached `apply` (counted and logged as a failed reload)."""
        return self._reload_done(False, message)

    def _reload_done(self, ok: bool, message: str) -> dict[str, object]:
        self.engine.counters["reloads_ok" if ok else "reloads_failed"] += 1
        self.engine.last_reload = {"ok": ok, "message": message, "time": time.time()}
        log.log(
            logging.INFO if ok else logging.ERROR,
            "config reload",
            extra={"kv": {"ok": ok, "result": message}},
        )
        return dict(self.engine.last_reload)


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
        "address families": (tuple(old.families), tuple(new.families)),
    }
    return [name for name, (a, b) in checks.items() if a != b]
