"""The forwarding state of bgpd's own routes: what the engine wants in the kernel against what the kernel
holds, and the repairs between the two. No I/O: the shell writes `take_ops()` and reports the results
(`written`), and feeds every kernel report (`own_changed`, `own_snapshot`, `reread`).

The kernel is the truth: `installed` is what the kernel reported of our routes (at our table, protocol
and metric), never a record of what was written. Whatever is wanted and missing is put back, whatever of
our protocol the kernel holds unwanted is removed, and each repair is counted by cause (`REPAIR_CAUSES`).
A prefix held by a foreign route (any other protocol) is never installed: a collision, counted.

Routes of an earlier run (`stale_kernel`) are kept until `reconcile()` (the end of the start's selection
deferral, RFC 4724 §4.1). A write or re-read that runs away from the event loop is bracketed by
`begin_background`/`end_background`: what the kernel reported meanwhile for a route wins over the write's
result, and such a route is written again.

IPv6 routes with metric 0 are stored by the kernel with metric 1024 (as `ip -6 route` shows them).

Next hops through a device (Calico's IP-in-IP, `via G dev tunl0 onlink`, decided by `tunnel.TunnelPlan`)
are `Hop`s among the plain addresses. A change whose device is missing or down (`OpResult.device`) is not
retried on a timer: it waits in `waiting` (counted, shown by `bgpctl show kernel` with its device) and is
written again when a link event says that device came up (`link_up`). When a device that routes of ours
use goes down or away, the kernel flushes them without a word: `link_lost` re-reads our routes.

A change the kernel refuses for its next hops (`OpResult.refused`: a gateway not directly reachable, e.g.
after an IP-in-IP pool went back to `never` for a node behind a router) removes our older route at that
prefix, as BIRD withdraws a route whose next hop is unreachable: the kernel never keeps a form of ours that
the configuration no longer wants. It is retried like every failed change: on a link event (at most once
a second) and on a timer that starts at 5 s and doubles while only retried changes fail (up to 300 s);
only new failures are logged at error level.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable

from bgpd.engine.outputs import KernelOp
from bgpd.engine.timers import Timers
from bgpd.model import Address, Hop, KernelRoute, OpResult, Prefix
from bgpd.prefix import bits as prefix_bits
from bgpd.prefix import covers, host_key

log = logging.getLogger("bgpd.fib")

RETRY_FAILED_AFTER = 5.0  # seconds before failed kernel changes are written again
RETRY_MAX = 300.0  # the retry interval doubles while only retried changes fail, up to this
LINK_UP_RETRY_GAP = 1.0  # seconds: failed changes are retried on a device coming up at most this often
LINK_SETTLE = 1.0  # seconds: the second re-read of our routes after a device lost a network we route via

RETRY_TIMER = "fib-retry"
SETTLE_TIMER = "fib-link-settle"

Hops = tuple[Address | Hop, ...]  # a route's next hops: plain addresses and onlink `Hop`s, sorted


def kernel_metric(metric: int, prefix: Prefix) -> int:
    """The metric the kernel stores for a route of ours at `prefix` written with `metric`."""
    return 1024 if metric == 0 and prefix.version == 6 else metric


class Fib:
    """Wanted against installed, for bgpd's routes in its kernel table (`enabled` False: bgpd installs
    nothing and only keeps the view of foreign routes)."""

    def __init__(
        self, protocol: int, metric: int, enabled: bool, timers: Timers, counters: Counter[str] | None = None
    ) -> None:
        self.protocol = protocol
        self.metric = metric
        self.enabled = enabled
        self.timers = timers
        self.counters: Counter[str] = Counter() if counters is None else counters
        # kernel view: every foreign route of the table by kernel key, and how many per prefix
        self.kernel_view: dict[tuple[Prefix, int, int], KernelRoute] = {}
        self.foreign: Counter[Prefix] = Counter()
        # what the engine wants installed, and what the kernel holds of ours
        self.wanted: dict[Prefix, Hops] = {}
        self.installed: dict[Prefix, Hops] = {}
        self.installed_by_family: Counter[int] = Counter()  # len(installed) per family (4, 6)
        # next hops of `installed` (addresses and Hops), with their use count
        self.gateways: Counter[Address | Hop] = Counter()
        # changes waiting for their device (missing or down) to come up: prefix -> device, and by device
        self.waiting: dict[Prefix, str] = {}
        self._waiting_on: dict[str, set[Prefix]] = {}
        self.collisions: set[Prefix] = set()
        self.stale_kernel: set[Prefix] = set()
        self.reconciled = False
        self.repairs: Counter[str] = Counter()  # by REPAIR_CAUSES
        # our routes whose kernel state is unknown (changed by somebody while a write of ours was in
        # flight): written again, whatever `installed` says
        self.unknown: set[Prefix] = set()
        self.touched: set[Prefix] = set()  # our routes changed by somebody during a write or audit
        self.touched_all = False  # a full re-read arrived during a write or audit
        self.busy = False  # a write or re-read of ours is away from the event loop
        self.audit_cause: str | None = None  # a re-read of our kernel routes is due, and why
        self.retry_pending: set[Prefix] = set()  # failed kernel changes waiting for their retry
        self.refusals: dict[Prefix, str] = {}  # the kernel's answer to a failing change, until one succeeds
        self.retrying: set[Prefix] = set()  # retried changes: written by the writer thread only
        self._retry_armed = False
        self._last_retry = 0.0
        self._retry_delay = RETRY_FAILED_AFTER
        # wanted forms the kernel refused (next hop unreachable): our older route there is removed
        self.refused: set[Prefix] = set()
        self.dirty: set[Prefix] = set()

    # ------------------------------------------------------------------ what is wanted

    def start(self, own: dict[Prefix, Hops]) -> None:
        """Our routes found at start (an earlier run's): installed, kept until `reconcile`."""
        for prefix, hops in own.items():
            self._set_installed(prefix, hops)
        self.stale_kernel = set(own)

    def want(self, prefix: Prefix, hops: Hops | None) -> None:
        """The decision process wants `hops` (None: nothing) installed at `prefix`."""
        if self.wanted.get(prefix) == hops:
            return
        if self.waiting:
            self._stop_waiting(prefix)  # the new change is written (and may wait) on its own
        if self.refused:
            self.refused.discard(prefix)
        if hops is None:
            del self.wanted[prefix]
        else:
            self.wanted[prefix] = hops
            self.stale_kernel.discard(prefix)  # learned again: a later withdrawal removes it at once
        self.mark(prefix)

    def reconcile(self, why: str) -> None:
        """The start's selection deferral is over: routes of an earlier run nobody re-announced go."""
        self.reconciled = True
        stale = [p for p in self.stale_kernel if p not in self.wanted]
        log.info(
            "reconciling kernel routes from an earlier run", extra={"kv": {"why": why, "stale": len(stale)}}
        )
        for prefix in self.stale_kernel:
            self.mark(prefix)
        self.stale_kernel.clear()

    def mark(self, prefix: Prefix) -> None:
        if self.enabled:
            self.dirty.add(prefix)

    @property
    def has_work(self) -> bool:
        """Something to write, or a re-read due."""
        return bool(self.dirty) or self.audit_cause is not None

    # ------------------------------------------------------------------ the kernel view (foreign routes)

    def set_view(self, routes: Iterable[KernelRoute]) -> None:
        old_foreign = set(self.foreign)
        self.kernel_view = {}
        self.foreign = Counter()
        for route in routes:
            self.view_add(route, mark=False)
        for prefix in old_foreign ^ set(self.foreign):
            self._mark_if_ours(prefix)

    def view_get(self, key: tuple[Prefix, int, int]) -> KernelRoute | None:
        return self.kernel_view.get(key)

    def view_add(self, route: KernelRoute, mark: bool = True) -> None:
        old = self.kernel_view.get(route.key)
        if old is not None:
            self.view_remove(old, mark)
        self.kernel_view[route.key] = route
        if route.protocol != self.protocol:
            self.foreign[route.prefix] += 1
            if mark and self.foreign[route.prefix] == 1:
                self._mark_if_ours(route.prefix)

    def foreign_added(self, route: KernelRoute) -> None:
        """A route of another protocol was added or changed (it replaces what sat at its key)."""
        self.view_add(route)
        if route.priority == kernel_metric(self.metric, route.prefix) and route.prefix in self.installed:
            self.own_changed(route, present=False)  # a foreign route took our route's place

    def view_remove(self, route: KernelRoute, mark: bool = True) -> None:
        old = self.kernel_view.pop(route.key, None)
        if old is not None and old.protocol != self.protocol:
            self.foreign[old.prefix] -= 1
            if self.foreign[old.prefix] <= 0:
                del self.foreign[old.prefix]
                if mark:
                    self._mark_if_ours(old.prefix)

    def _mark_if_ours(self, prefix: Prefix) -> None:
        """A foreign route appeared or went at `prefix`: that matters only where bgpd wants or holds a route
        (a collision starts or ends); a host's own 100k workload routes must not wake the kernel writer."""
        if prefix in self.wanted or prefix in self.installed or prefix in self.collisions:
            self.mark(prefix)

    # ------------------------------------------------------------------ our own routes, as they are

    def _set_installed(self, prefix: Prefix, hops: Hops | None) -> None:
        """Record what the kernel holds of our route at `prefix` (None: nothing)."""
        old = self.installed.pop(prefix, None) if hops is None else self.installed.get(prefix)
        if old == hops:
            return
        if hops is not None:
            self.installed[prefix] = hops
        if (old is None) != (hops is None):
            self.installed_by_family[prefix.version] += 1 if old is None else -1
        gateways = self.gateways
        for gateway in old or ():
            gateways[gateway] -= 1
            if not gateways[gateway]:
                del gateways[gateway]
        for gateway in hops or ():
            gateways[gateway] += 1

    def _wanted(self, prefix: Prefix) -> Hops | None:
        """What bgpd wants of its own at `prefix` (a foreign route there wins: nothing)."""
        want = self.wanted.get(prefix)
        return None if want is not None and prefix in self.foreign else want

    def _kernel_says(self, prefix: Prefix, hops: Hops | None, cause: str, tally: Counter[str]) -> None:
        """The kernel holds `hops` (None: nothing) as our route at `prefix`, through nobody's fault of ours:
        record it, and queue a repair if it is not what bgpd wants (counted in `tally` by cause)."""
        if self.busy:
            self.touched.add(prefix)  # a write or audit in flight may already be out of date for it
        if self.installed.get(prefix) == hops:
            return
        self._set_installed(prefix, hops)
        # the report may be older than a write of ours handled before it: write the route again whatever
        # it says (a replace when it says ours is there, a create when nothing is: one message either way)
        self.write_again(prefix)
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

    def own_changed(self, route: KernelRoute, present: bool) -> None:
        """A notification about a route at our key, caused by somebody else (ours are filtered): `present`
        False when our route is gone (deleted, or displaced by another protocol's route)."""
        if not self.enabled or route.priority != kernel_metric(self.metric, route.prefix):
            return  # not at our key: another metric is another route
        tally: Counter[str] = Counter()
        hops, cause = (route.gateways, "changed") if present else (None, "deleted")
        self._kernel_says(route.prefix, hops, cause, tally)
        self._count_repairs(tally, route.prefix)

    def own_snapshot(self, routes: list[KernelRoute], reason: str) -> None:
        """A full re-read of the table: its routes of our protocol are what is installed."""
        if not self.enabled:
            return
        if self.busy:
            self.touched_all = True
        held = {r.prefix: r.gateways for r in routes if r.priority == kernel_metric(self.metric, r.prefix)}
        self._compare_own(held, reason)

    def _compare_own(
        self, held: dict[Prefix, Hops], cause: str, skip: frozenset[Prefix] | set[Prefix] = frozenset()
    ) -> None:
        """Make `installed` equal to what a re-read found (`held`: our routes, prefix -> next hops),
        repairing the differences; prefixes in `skip` are left alone."""
        tally: Counter[str] = Counter()
        first: Prefix | None = None
        for prefix in [p for p in self.installed if p not in held and p not in skip]:
            self._kernel_says(prefix, None, cause, tally)
            first = first or prefix
        for prefix, hops in held.items():
            if prefix not in skip:
                self._kernel_says(prefix, hops, cause, tally)
        self._count_repairs(tally, first)

    def _count_repairs(self, tally: Counter[str], example: Prefix | None) -> None:
        if not tally:
            return
        self.repairs.update(tally)
        kv: dict[str, object] = dict(tally)
        if example is not None and sum(tally.values()) == 1:
            kv["prefix"] = example
        log.warning("kernel routes of ours differ from what bgpd wants; repairing", extra={"kv": kv})

    def link_lost(
        self, name: str | None, flushed: bool, networks: Iterable[Prefix], routes: Iterable[KernelRoute]
    ) -> None:
        """A device went down or was deleted, or lost its last IPv4 address: the kernel flushed, without a
        word, every route through it. If one of our next hops lies in one of its networks, re-read our
        routes (one dump of our routes; not for a workload's veth, nor for a VIP leaving the underlay)."""
        self.counters["kernel_resyncs_link"] += 1
        if not self.enabled or not flushed or not self.gateways:
            return
        keys = [prefix_bits(n) for n in networks]
        keys += [prefix_bits(r.prefix) for r in routes if not r.gateways and r.kind == "unicast"]
        log.debug("link lost", extra={"kv": {"device": name, "networks": len(keys)}})
        for gateway in self.gateways:
            if isinstance(gateway, Hop):  # through a named device (onlink): lost with it
                if gateway.device == name:
                    self.request_audit("link")
                    return
                gateway = gateway.gateway
            host = host_key(gateway)
            if any(covers(net, host) for net in keys):
                self.request_audit("link")
                # the kernel announces an address removal before it flushes the routes that used it:
                # look once more when that is surely over (the periodic audit stays the last resort)
                self.timers.arm(SETTLE_TIMER, LINK_SETTLE)
                return

    def write_again(self, prefix: Prefix) -> None:
        """The kernel's state of our route at `prefix` may be newer or older than our record: write it."""
        self.unknown.add(prefix)
        self.mark(prefix)

    def begin_background(self) -> None:
        """A write or re-read of ours leaves the event loop: note what the kernel reports meanwhile."""
        self.busy = True
        self.touched.clear()
        self.touched_all = False

    def end_background(self) -> tuple[set[Prefix], bool]:
        """Back on the loop: (our routes reported changed meanwhile, whether a full re-read arrived)."""
        self.busy = False
        touched, touched_all = self.touched, self.touched_all
        self.touched, self.touched_all = set(), False
        return touched, touched_all

    def request_audit(self, cause: str) -> None:
        """Re-read our routes on the kernel writer's next turn; what it finds is counted under `cause`
        (a specific cause wins over the periodic "audit")."""
        if self.audit_cause is None or self.audit_cause == "audit":
            self.audit_cause = cause

    def take_audit(self) -> str | None:
        """The cause of the re-read due (None: none); the shell dumps our routes, then calls `reread`."""
        cause, self.audit_cause = self.audit_cause, None
        return cause

    def reread(self, held: dict[Prefix, Hops], cause: str, touched: set[Prefix], touched_all: bool) -> None:
        """A dump of our routes (`held`), taken in the background (`touched`, `touched_all` from
        `end_background`): repair every difference."""
        if touched_all:
            return  # a full re-read arrived meanwhile and did the same comparison
        # a route somebody changed while the dump ran: which of the two is newer is unknown; write it again
        for prefix in touched:
            self.write_again(prefix)
        self._compare_own(held, cause, touched)
        self.counters["kernel_audits"] += 1
        log.debug("kernel audit", extra={"kv": {"cause": cause, "held": len(held), "touched": len(touched)}})

    # ------------------------------------------------------------------ writes

    def take_ops(self) -> list[KernelOp]:
        """The kernel changes the dirty prefixes need (and the collisions they start or end)."""
        ops: list[KernelOp] = []
        unknown, foreign, collisions = self.unknown, self.foreign, self.collisions
        for prefix in self.dirty:
            want = self.wanted.get(prefix)
            have = self.installed.get(prefix)
            if want is not None and prefix in foreign:
                if prefix not in collisions:
                    collisions.add(prefix)
                    self.counters["kernel_collisions"] += 1
                    log.warning(
                        "learned prefix held by a foreign kernel route; not installed",
                        extra={"kv": {"prefix": prefix}},
                    )
                want = None
            elif prefix in collisions and (want is None or prefix not in foreign):
                collisions.discard(prefix)
            if want is not None and prefix in self.refused and prefix not in self.retrying:
                want = None  # the kernel refused it: our older form goes until a retry succeeds
            if want == have and prefix not in unknown:  # unknown: written whatever `have` says
                continue
            if want is None and prefix in self.stale_kernel:
                continue  # an earlier run's route: kept until reconciliation
            ops.append((prefix, want))
        self.dirty.clear()
        return ops

    def ours(self, ops: list[KernelOp]) -> frozenset[Prefix]:
        """The changed routes the kernel holds as ours (as its notifications told us): the installer
        replaces them directly, instead of a create that fails and a dump of our routes to check who owns
        the existing one."""
        installed, foreign, collisions = self.installed, self.foreign, self.collisions
        return frozenset(
            p
            for p, want in ops
            if want is not None and p in installed and p not in foreign and p not in collisions
        )

    def written(self, ops: list[KernelOp], results: list[OpResult]) -> None:
        """The results of writing `ops` (in order). Call `end_background` first if it ran in the background:
        its `touched` routes are written again whatever the result says."""
        failed: list[Prefix] = []
        fresh_failures = 0  # failed changes that were not retries
        waiting: list[tuple[Prefix, str]] = []
        touched, touched_all = self.end_background()  # nothing noted for a write on the loop itself
        if touched_all:  # a full re-read arrived meanwhile: one audit settles the whole batch
            self.request_audit("overflow")
        retried_ok = 0
        for (prefix, want), result in zip(ops, results, strict=True):
            was_retried = prefix in self.retrying
            self.retrying.discard(prefix)
            if prefix in touched:
                self.write_again(prefix)
            elif result.ok:
                self._set_installed(prefix, want)
                self.unknown.discard(prefix)
                if self.refusals:
                    self.refusals.pop(prefix, None)
                if want is None and prefix in self.refused:
                    continue  # the refused route's older form removed: its retry stays due
                self.refused.discard(prefix)
                self.retry_pending.discard(prefix)
                retried_ok += was_retried
                if self.waiting:
                    self._stop_waiting(prefix)
            elif result.device is not None:
                waiting.append((prefix, result.device))
            elif result.collision:
                self.collisions.add(prefix)
                self.counters["kernel_collisions"] += 1
            else:
                failed.append(prefix)
                fresh_failures += not was_retried
                self.refusals[prefix] = result.error or "refused"
                if result.refused and want is not None and self.installed.get(prefix) not in (None, want):
                    self.refused.add(prefix)
                    self.mark(prefix)
        self.counters["kernel_ops"] += len(ops)
        if retried_ok:
            log.info("kernel route changes written on retry", extra={"kv": {"count": retried_ok}})
        if waiting:
            fresh = [(p, d) for p, d in waiting if p not in self.waiting]
            for prefix, device in waiting:
                self._stop_waiting(prefix)
                self.waiting[prefix] = device
                self._waiting_on.setdefault(device, set()).add(prefix)
            if fresh:
                log.warning(
                    "kernel routes wait for their device (missing or down); written when it comes up",
                    extra={"kv": {"count": len(fresh), "first": fresh[0][0], "device": fresh[0][1]}},
                )
        if retried_ok or fresh_failures:
            self._retry_delay = RETRY_FAILED_AFTER
        elif failed:  # only retries failed: the condition lasts (a next hop behind a router): back off
            self._retry_delay = min(self._retry_delay * 2, RETRY_MAX)
        if failed:
            self.counters["kernel_failures"] += len(failed)
            kv = {
                "count": len(failed),
                "first": failed[0],
                "error": self.refusals[failed[0]],
                "in": self._retry_delay,
            }
            if fresh_failures:
                log.error("kernel route changes failed; will retry", extra={"kv": kv})
            else:
                log.debug("kernel route changes failed again; will retry", extra={"kv": kv})
            self.retry_pending.update(failed)
            if not self._retry_armed:
                self._retry_armed = True
                self.timers.arm(RETRY_TIMER, self._retry_delay)

    def link_up(self, name: str | None = None) -> None:
        """Device `name` came up, or appeared: the changes waiting for it are written now; and a next hop
        may be reachable again: retry failed changes now, not at their timer (at most once a second: every
        new workload veth is a LinkUp)."""
        if self.waiting and name is not None:
            for prefix in self._waiting_on.pop(name, ()):
                del self.waiting[prefix]
                self.write_again(prefix)
        if self.retry_pending and time.monotonic() - self._last_retry >= LINK_UP_RETRY_GAP:
            self.retry_now()

    def waiting_by_device(self) -> dict[str, int]:
        """How many changes wait for each device (missing or down)."""
        return {device: len(prefixes) for device, prefixes in self._waiting_on.items()}

    def _stop_waiting(self, prefix: Prefix) -> None:
        device = self.waiting.pop(prefix, None)
        if device is not None:
            on = self._waiting_on[device]
            on.discard(prefix)
            if not on:
                del self._waiting_on[device]

    def retry_now(self) -> None:
        """Write the failed changes again: one timer for all of them, re-armed by the next failure. They go
        through the writer thread (the installer's own retries sleep, which the loop must not)."""
        if self._retry_armed:
            self.timers.cancel(RETRY_TIMER)
            self._retry_armed = False
        self._last_retry = time.monotonic()
        for prefix in self.retry_pending:
            self.retrying.add(prefix)
            self.mark(prefix)
        self.retry_pending.clear()

    def on_timer(self, key: object) -> bool:
        """A timer of ours fired; False if the key is not ours."""
        if key == RETRY_TIMER:
            self._retry_armed = False
            self.retry_now()
        elif key == SETTLE_TIMER:
            self.request_audit("link")
        else:
            return False
        return True
