"""RouteWatcher: the kernel's routes of one table, as a snapshot followed by change events.

This module owns the subscription to the kernel's route notifications. The watcher subscribes to
RTMGRP_IPV4_ROUTE (plus RTMGRP_LINK and RTMGRP_IPV4_IFADDR), *then* dumps the links and the routes of the
table, so no change falls between dump and stream, and delivers `Snapshot(reason="start")`, then batches
of `RouteAdded`/`RouteRemoved`. It reads the socket from the daemon's asyncio event loop (`start(loop)`:
`add_reader`; events are delivered on the loop's thread, so a single route change costs no thread
hand-off), and watches the network namespace of that thread.

That is IPv4 only unless asked for IPv6 too (`families`): then it also subscribes to RTMGRP_IPV6_ROUTE and
RTMGRP_IPV6_IFADDR, and every dump and re-read below covers both families. When the stream cannot be
trusted it re-reads the kernel:

* "overflow": the kernel dropped notifications (ENOBUFS on the socket): a fresh dump of the whole table,
  delivered as a `Snapshot` that the consumer applies as "replace everything";
* a device went down, lost carrier, was renamed or deleted, or lost an IPv4 address. Linux flushes the IPv4
  routes through a device that goes down or is deleted, or loses its last IPv4 address, without sending
  RTM_DELROUTE. Only that device's routes are re-read (a dump the kernel filters by output device):
  `RouteRemoved` for each route it carried that is gone, `RouteAdded` for each it still carries, then
  `LinkLost` naming the device, its networks and whether the kernel flushed its routes, so the
  consumer can check what it does not track (its own routes). (Linux also removes the IPv6 routes through
  a device that goes down or is deleted, but announces those; an IPv6 address leaving flushes nothing.)

An IPv6 ECMP route is a set of sibling routes in the kernel: removing one next hop (`ip -6 route del P
via G`, or a flush, which goes next hop by next hop) is announced as an RTM_DELROUTE of that next hop
alone. The watcher reports it as `RouteAdded` of the route with the next hops left, from what it last
reported at that key (for `own_protocol` routes, which it does not track, as `RouteRemoved`). Routes to
IPv6 link-local destinations (fe80::/10) are not reported: every device has its fe80::/64, all at the same
key (see `_inet6`).

Applying events in order on top of the last Snapshot always converges to the kernel's table: every event
states the whole route at its key, and a change concurrent with a dump is both in the dump and queued
behind it. There is no timer: an idle watcher costs nothing (a file descriptor in the loop's selector).

Everything runs on the loop, in bounded steps where it can be: a pass reads at most MAX_RECVS_PER_BATCH
messages. After ENOBUFS the queued notifications are discarded first (they predate the dump, and some
precede the dropped ones), at most DRAIN_RECVS_PER_CALL receives per loop turn (16,384 receives took
24-31 ms), the rest on the next turn, and only once the socket is empty is the table dumped, so the
guarantee above holds. The dumps themselves block the loop for their whole length, in one call: with
100,000 routes in the table, all through one device, the overflow re-dump took 1.3 s (IPv4 or IPv6
alone; both families: both dumps) and the re-read of that device 1.5 s (IPv4) / 1.9 s (IPv6) when the
routes were still there (measured by calling them directly on the 2-core VM, 2026-11-30, load ~2.5).

If reading fails (an OSError of the socket, a dump the kernel refuses, a message the parser cannot read),
the watcher stops: it logs one error with the reason and calls `on_failure(exception)`; `running` is then
False and `failure` holds the exception. Kernel changes are no longer seen from then on: the owner must
start a new watcher (its start Snapshot replaces everything) or exit.

Routes the daemon writes itself are not reported as they are written (a 100k-route load must not wake it
100k times): `ignore_sender` drops, inside the kernel, the notifications caused by the daemon's own
netlink socket, so the same routes changed or deleted by anybody else still arrive; `ignore_protocol`
drops every notification of a protocol (a daemon that owns no routes). Routes of `own_protocol` are
reported but not tracked per device (the daemon's own writes are invisible here, so such a record would go
stale): the daemon re-reads them itself after a `LinkLost` that flushed.

Messages are parsed with `struct` (see `_netlink`): pyroute2's full parse is far too slow for bursts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from bgpd import prefix as prefixes
from bgpd.kernel import _inet6
from bgpd.kernel import _netlink as nl
from bgpd.model import KernelRoute, LinkLost, LinkUp, Prefix, RouteAdded, RouteEvent, RouteRemoved, Snapshot

log = logging.getLogger(__name__)

MAX_RECVS_PER_BATCH = 4096  # bounds the latency and size of one on_events call during a burst
# bounds one loop turn spent discarding what was queued before an overflow's re-dump (~2 µs a receive)
DRAIN_RECVS_PER_CALL = 4 * MAX_RECVS_PER_BATCH


_Key = tuple[Prefix, int, int]


@dataclass(slots=True)
class _Loss:
    """What one pass over the socket learnt about one device's loss (merged over several messages)."""

    name: str | None
    carried: dict[_Key, KernelRoute] = field(default_factory=dict)
    networks: set[Prefix] = field(default_factory=set)
    flushed: bool = False


class RouteWatcher:
    """Reports all routes (every protocol) of routing table `table` to `on_events`, of the address
    `families`: (socket.AF_INET,) by default, AF_INET6 alone or both. IPv6 routes come as KernelRoutes
    with IPv6Network prefixes and IPv6Address gateways (link-local ones scoped with their device's name,
    `fe80::1%eth0`); a consumer that reads them as IPv4 must not ask for them.

    `on_events` is called with one list per burst of notifications (the messages read in one pass over the
    socket, at most MAX_RECVS_PER_BATCH receives); the first call holds `Snapshot(reason="start")`, before
    `start` returns. It is called on the loop's thread and should return quickly (queue the events); an
    exception it raises is logged and the watcher goes on.

    `on_failure` is called once, on the loop's thread, with the exception that stopped a started watcher
    (see the module docstring), after it stopped; an exception it raises is logged. `ignore_sender`: the
    port id of a netlink socket whose own route changes are not reported (see the module docstring);
    `ignore_protocol`: a protocol whose routes are never reported. `rcvbuf`: the subscription socket's
    receive buffer, bytes. ValueError for an empty `families` or another family.
    """

    def __init__(
        self,
        table: int,
        on_events: Callable[[list[RouteEvent]], None],
        *,
        on_failure: Callable[[Exception], None] | None = None,
        rcvbuf: int = 8 * 2**20,
        ignore_protocol: int | None = None,
        ignore_sender: int | None = None,
        own_protocol: int | None = None,
        families: Collection[int] = (socket.AF_INET,),
    ) -> None:
        unknown = set(families) - {socket.AF_INET, socket.AF_INET6}
        if unknown or not families:
            raise ValueError(f"families must be AF_INET and/or AF_INET6, not {sorted(unknown) or 'none'}")
        self.families = tuple(f for f in (socket.AF_INET, socket.AF_INET6) if f in families)
        self._inet4 = socket.AF_INET in self.families
        self._inet6 = socket.AF_INET6 in self.families
        # the IPv4 parser itself when only IPv4 is watched (the hot path stays as it was)
        self._parse_route = nl.parse_route if self.families == (socket.AF_INET,) else _inet6.parse_route_any
        self.table = table
        # routes of this protocol are dropped before parsing (a daemon that installs nothing)
        self.skip_protocol = -1 if ignore_protocol is None else ignore_protocol
        # notifications caused by this netlink port id (the daemon's own writer) are dropped
        self.skip_sender = ignore_sender
        self._sender_filtered = False  # True once the kernel drops them itself
        self.own_protocol = -1 if own_protocol is None else own_protocol
        self.rcvbuf = rcvbuf
        self.resyncs = 0  # overflow and link resyncs done (the start dump is not counted)
        self.overflows = 0
        self.failure: Exception | None = None  # what stopped the watcher, if reading failed
        self._on_events = on_events
        self._on_failure = on_failure
        self._reader_loop: asyncio.AbstractEventLoop | None = None  # the loop reading the socket, if any
        # an overflow seen, its queue not drained yet: the device losses and arrivals of that pass
        self._overflow: tuple[dict[int, _Loss], dict[int, str | None]] | None = None
        self._resume: asyncio.Handle | None = None  # the rest of a drain, on the loop's next turn
        self._events_sock: socket.socket | None = None
        self._dump_sock: socket.socket | None = None
        self._seq = 0
        self._buf = bytearray(nl.RECV_BUFSIZE)
        # ifindex -> (flags, name), from the link dump and RTM_NEWLINK/DELLINK
        self._links: dict[int, tuple[int, str | None]] = {}
        # every reported route with an output device, and the keys of the routes each ifindex carries
        self._tracked: dict[_Key, tuple[KernelRoute, tuple[int, ...]]] = {}
        self._keys_on_if: dict[int, set[_Key]] = {}
        # the IPv4 networks (network int, prefix length) of each device's addresses, and the IPv6 ones
        self._networks: dict[int, set[Prefix]] = {}

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Subscribe, dump, deliver the start Snapshot, then follow the stream from `loop`. Call it on that
        loop's thread: the sockets are opened in its network namespace (the one watched, whichever thread
        reads them later), a device missing from the link dump is named from it, and the dump blocks the
        loop meanwhile. Returns once the Snapshot is delivered; raises the OSError (or NetlinkError) of a
        failed subscription or dump, RuntimeError if it is running already."""
        if self._reader_loop is not None:
            raise RuntimeError("RouteWatcher already started")
        self._overflow = None
        self.failure = None
        try:
            self._open()
            snapshot = self._resync("start")
            assert self._events_sock is not None
            loop.add_reader(self._events_sock.fileno(), self._readable)
        except BaseException:
            self._close_sockets()
            raise
        self._reader_loop = loop
        self._deliver([snapshot])

    def _readable(self) -> None:
        """The loop's reader callback: one pass over the socket, its events to the consumer."""
        try:
            batch = self._pass()
        except Exception as exc:
            self._fail(exc)
            return
        if batch:
            self._deliver(batch)
        loop = self._reader_loop
        if self._overflow is not None and self._resume is None and loop is not None:
            # the socket may hold nothing more (no reader callback is then due): go on next turn
            self._resume = loop.call_soon(self._resume_drain)

    def _resume_drain(self) -> None:
        self._resume = None
        self._readable()

    def _fail(self, exc: Exception) -> None:
        """Reading failed: stop, say why once (error level), tell the owner."""
        self.failure = exc
        self.stop()
        bug = not isinstance(exc, OSError | nl.NetlinkError)  # an expected failure needs no traceback
        log.error(
            "kernel route watcher stopped: kernel route changes are no longer seen",
            extra={"kv": {"table": self.table, "error": f"{type(exc).__name__}: {exc}"}},
            exc_info=exc if bug else None,
        )
        if self._on_failure is not None:
            try:
                self._on_failure(exc)
            except Exception:
                log.exception("route watcher failure handler failed")

    def _close_sockets(self) -> None:
        for sock in (self._events_sock, self._dump_sock):
            if sock is not None:
                sock.close()
        self._events_sock = self._dump_sock = None

    def stop(self) -> None:
        """Stop reading (remove the loop's reader) and close the sockets. Idempotent; call it on the loop's
        thread."""
        loop, self._reader_loop = self._reader_loop, None
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if loop is not None and self._events_sock is not None and not loop.is_closed():
            loop.remove_reader(self._events_sock.fileno())
        self._close_sockets()

    @property
    def running(self) -> bool:
        """True from `start` until `stop` or a failure."""
        return self._reader_loop is not None

    # --- reading -------------------------------------------------------------------------------------
    def _open(self) -> None:
        events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_ROUTE)
        self._events_sock = events
        nl.set_rcvbuf(events, self.rcvbuf)
        # Subscribe first: everything from here on is queued, so the dumps below cannot miss a change.
        try:
            # bgpd's own writes (100k notifications in a bulk load) never reach this process; the parser
            # below still skips them should the filter not be available
            if self.skip_sender is not None:
                nl.drop_sender_filter(events, self.skip_sender)
                self._sender_filtered = True
            elif self.skip_protocol >= 0:
                nl.drop_protocol_filter(events, self.skip_protocol)
        except OSError as exc:
            log.warning("kernel-side notification filter unavailable (%s); filtering in bgpd", exc)
        groups = nl.RTMGRP_LINK
        if self._inet4:
            groups |= nl.RTMGRP_IPV4_ROUTE | nl.RTMGRP_IPV4_IFADDR
        if self._inet6:
            groups |= nl.RTMGRP_IPV6_ROUTE | nl.RTMGRP_IPV6_IFADDR
        events.bind((0, groups))
        events.setblocking(False)
        dump_sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_ROUTE)
        self._dump_sock = dump_sock
        dump_sock.bind((0, 0))
        nl.set_opt(dump_sock, nl.NETLINK_GET_STRICT_CHK)  # lets the kernel filter the dump by table
        nl.set_rcvbuf(dump_sock, 1 << 20)

    def _pass(self) -> list[RouteEvent]:
        """Read what the socket holds (at most MAX_RECVS_PER_BATCH receives) and turn it into events:
        re-reading a device that lost something, or the whole table after ENOBUFS (`_after_overflow`)."""
        if self._overflow is not None:
            return self._after_overflow()
        events = self._events_sock
        assert events is not None
        buf = self._buf
        view = memoryview(buf)
        recv_into = events.recv_into
        batch: list[RouteEvent] = []
        overflow = False
        lost: dict[int, _Loss] = {}  # devices that lost something, and what they carried then
        up: dict[int, str | None] = {}  # devices that came up or gained an address
        for _ in range(MAX_RECVS_PER_BATCH):
            try:
                n = recv_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                overflow = True
                break
            self._parse_events(view, n, batch, lost, up)
        if overflow:
            self.overflows += 1
            self.resyncs += 1
            log.warning("route notifications lost (ENOBUFS); resynchronising table %d", self.table)
            self._overflow = (lost, up)
            return self._after_overflow()
        batch += [LinkUp(index, name) for index, name in up.items()]
        for index, loss in lost.items():
            if loss.carried:
                self.resyncs += 1
                self._reread_link(index, loss.carried, batch)
            batch.append(self._link_lost(index, loss))
        return batch

    def _after_overflow(self) -> list[RouteEvent]:
        """Once the socket is drained: the whole table, then the device losses and arrivals of the pass that
        met ENOBUFS; [] while messages are left (the next call goes on)."""
        # Everything still queued predates the dump to be taken, and some of it precedes the dropped
        # messages: applying it after the dump could resurrect a stale state.
        if not self._drain():
            return []
        assert self._overflow is not None
        lost, up = self._overflow
        self._overflow = None
        # the dump supersedes the route events read before it; device losses still stand
        batch: list[RouteEvent] = [self._resync("overflow")]
        batch += [self._link_lost(index, loss) for index, loss in lost.items()]
        batch += [LinkUp(index, name) for index, name in up.items()]
        return batch

    def _drain(self) -> bool:
        """Discard at most DRAIN_RECVS_PER_CALL queued messages; True once the socket is empty."""
        events = self._events_sock
        assert events is not None
        recv_into, buf = events.recv_into, self._buf
        for _ in range(DRAIN_RECVS_PER_CALL):
            try:
                recv_into(buf)
            except BlockingIOError:
                return True
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
        return False

    def _deliver(self, batch: list[RouteEvent]) -> None:
        try:
            self._on_events(batch)
        except Exception:
            log.exception("route watcher consumer failed")

    # --- parsing -------------------------------------------------------------------------------------
    def _parse_events(
        self,
        buf: memoryview,
        length: int,
        batch: list[RouteEvent],
        lost: dict[int, _Loss],
        up: dict[int, str | None],
    ) -> None:
        """Append the route events of one receive buffer to batch; add to `lost` the devices whose routes
        must be re-read, to `up` those that came up or gained an address."""
        skip_sender = -1 if self._sender_filtered or self.skip_sender is None else self.skip_sender
        parse_route = self._parse_route
        inet6 = self._inet6
        for mtype, _flags, _seq, sender, off, end in nl.iter_messages(buf, length):
            if mtype == nl.RTM_NEWROUTE or mtype == nl.RTM_DELROUTE:
                if sender == skip_sender:
                    continue
                parsed = parse_route(buf, off, end, self.table, self._ifname, self.skip_protocol)
                if parsed is None:
                    continue
                route, oifs = parsed
                if inet6 and mtype == nl.RTM_DELROUTE and len(route.gateways) == 1:
                    remaining = self._sibling_removed(route, oifs)
                    if remaining is not None:  # one next hop of an IPv6 ECMP route: the others stay
                        route, oifs = remaining
                        mtype = nl.RTM_NEWROUTE
                if route.protocol != self.own_protocol:
                    self._track(route, oifs if mtype == nl.RTM_NEWROUTE else None)
                batch.append(RouteAdded(route) if mtype == nl.RTM_NEWROUTE else RouteRemoved(route))
            elif mtype == nl.RTM_NEWLINK or mtype == nl.RTM_DELLINK:
                index, flags, name = nl.parse_link(buf, off, end)
                old = self._links.get(index)
                if mtype == nl.RTM_DELLINK:
                    self._links.pop(index, None)
                    self._note_lost(lost, index, old[1] if old is not None else name, flushed=True)
                    self._networks.pop(index, None)
                else:
                    self._links[index] = (flags, name)
                    if old is not None and (
                        old[0] & ~flags & (nl.IFF_UP | nl.IFF_LOWER_UP) or old[1] != name
                    ):
                        down = bool(old[0] & ~flags & nl.IFF_UP)  # carrier loss alone flushes nothing
                        self._note_lost(lost, index, old[1], flushed=down)
                    if old is None or ~old[0] & flags & (nl.IFF_UP | nl.IFF_LOWER_UP):
                        up[index] = name
            elif mtype == nl.RTM_DELADDR or mtype == nl.RTM_NEWADDR:
                found = self._address_network(*nl.parse_addr(buf, off, end))
                if found is not None:
                    self._address(mtype == nl.RTM_NEWADDR, found[0], found[1], lost, up)

    def _address_network(
        self, family: int, index: int, address: IPv4Address | IPv6Address | None, plen: int
    ) -> tuple[int, Prefix] | None:
        """(ifindex, network) of an address of a watched family, from `nl.parse_addr`'s answer."""
        if address is None:
            return None
        if family == socket.AF_INET and self._inet4:
            return index, prefixes.from_int(int(address) & prefixes.mask(plen), plen)
        if family == socket.AF_INET6 and self._inet6:
            return index, _inet6.network(int(address), plen)
        return None

    def _address(
        self, added: bool, index: int, network: Prefix, lost: dict[int, _Loss], up: dict[int, str | None]
    ) -> None:
        """An address came or went: keep the device's networks. A removal re-reads the device's routes;
        the kernel flushes them when the device lost its last IPv4 address (IPv6 routes do not need an
        address of the device)."""
        name = self._links.get(index, (0, None))[1]
        if added:
            self._networks.setdefault(index, set()).add(network)
            up[index] = name
            return
        loss = self._note_lost(lost, index, name, flushed=False)
        loss.networks.add(network)
        left = self._networks.get(index, set())
        left.discard(network)
        if network.version == 4 and not any(n.version == 4 for n in left):
            loss.flushed = True

    def _sibling_removed(
        self, route: KernelRoute, oifs: tuple[int, ...]
    ) -> tuple[KernelRoute, tuple[int, ...]] | None:
        """The route left at `route.key` if this RTM_DELROUTE removed one next hop of a tracked IPv6 ECMP
        route (the kernel announces only the removed sibling), None if the route is gone."""
        tracked = self._tracked.get(route.key)
        if tracked is None or not _inet6.is_ipv6(route.prefix):
            return None
        before, before_oifs = tracked
        hops = len(before.gateways)
        if hops < 2 or len(before_oifs) != hops or before.protocol != route.protocol:
            return None
        gone = (route.gateways[0], oifs[0] if len(oifs) == 1 else 0)
        pairs = [pair for pair in zip(before.gateways, before_oifs, strict=True) if pair != gone]
        if len(pairs) != hops - 1:
            return None  # not one of its next hops: the notification says the whole route is gone
        left_oifs = tuple(oif for _, oif in pairs)
        ifname = self._ifname(left_oifs[0]) if len(set(left_oifs)) == 1 else None
        left = dataclasses.replace(before, gateways=tuple(g for g, _ in pairs), ifname=ifname)
        return left, left_oifs

    def _note_lost(self, lost: dict[int, _Loss], index: int, name: str | None, flushed: bool) -> _Loss:
        """Remember the routes and networks device `index` has now: the notifications that follow in the
        same pass (the kernel announces some of what it removes) must not hide them from `LinkLost`."""
        loss = lost.get(index)
        if loss is None:
            loss = lost[index] = _Loss(name)
        loss.flushed = loss.flushed or flushed
        loss.networks |= self._networks.get(index, set())
        for key in self._keys_on_if.get(index, ()):
            tracked = self._tracked.get(key)
            if tracked is not None:
                loss.carried[key] = tracked[0]
        return loss

    def _link_lost(self, index: int, loss: _Loss) -> LinkLost:
        networks = tuple(sorted(loss.networks, key=lambda n: (n.version, n)))  # IPv4 ones, then IPv6 ones
        return LinkLost(index, loss.name, tuple(loss.carried.values()), networks, loss.flushed)

    def _ifname(self, index: int) -> str | None:
        link = self._links.get(index)
        if link is not None and link[1] is not None:
            return link[1]
        try:
            # A link newer than the link dump whose RTM_NEWLINK is still queued: the loop's thread is in the
            # watched namespace (see `start`), so the ioctl behind if_indextoname asks the right one.
            return socket.if_indextoname(index)
        except OSError:
            return None

    def _track(self, route: KernelRoute, oifs: tuple[int, ...] | None) -> None:
        """Record (oifs) or forget (None) the route at `route.key` and the devices it goes through."""
        key = route.key
        on_if = self._keys_on_if
        old = self._tracked.pop(key, None)
        if old is not None:
            for index in old[1]:
                keys = on_if.get(index)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del on_if[index]
        if oifs:
            self._tracked[key] = (route, oifs)
            for index in oifs:
                keys = on_if.get(index)
                if keys is None:
                    keys = on_if[index] = set()
                keys.add(key)

    def _reread_link(self, index: int, carried: dict[_Key, KernelRoute], batch: list[RouteEvent]) -> None:
        """The routes of device `index` may have been flushed silently: re-read only them (a dump the
        kernel filters by output device) and report what changed against what it `carried`."""
        sock = self._dump_sock
        assert sock is not None
        before = list(carried.values())
        present: dict[_Key, tuple[KernelRoute, tuple[int, ...]]] = {}
        for family in self.families:
            for mtype, data, off, end, _flags in nl.dump_routes(
                sock, self.table, 0, self._next_seq(), index, family
            ):
                if mtype != nl.RTM_NEWROUTE:
                    continue
                parsed = self._parse_route(data, off, end, self.table, self._ifname, self.skip_protocol)
                if parsed is not None and parsed[0].protocol != self.own_protocol:
                    present[parsed[0].key] = parsed
        for route in before:
            if route.key not in present and self._tracked.get(route.key, (None,))[0] == route:
                self._track(route, None)
                batch.append(RouteRemoved(route))
        for route, oifs in present.values():
            self._track(route, oifs)
            batch.append(RouteAdded(route))

    # --- dumps ---------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _resync(self, reason: str) -> Snapshot:
        """Dump links (their events may be lost too) and the table's routes: "start" or "overflow"."""
        sock = self._dump_sock
        assert sock is not None
        links: dict[int, tuple[int, str | None]] = {}
        for mtype, data, off, end, _flags in nl.dump(
            sock, nl.RTM_GETLINK, nl.LINK_DUMP_REQUEST, self._next_seq()
        ):
            if mtype == nl.RTM_NEWLINK:
                index, flags, name = nl.parse_link(data, off, end)
                links[index] = (flags, name)
        self._links = links
        networks: dict[int, set[Prefix]] = {}
        for family in self.families:
            request = nl.ADDR_DUMP_REQUEST if family == socket.AF_INET else nl.ADDR6_DUMP_REQUEST
            for mtype, data, off, end, _flags in nl.dump(sock, nl.RTM_GETADDR, request, self._next_seq()):
                if mtype == nl.RTM_NEWADDR:
                    found = self._address_network(*nl.parse_addr(data, off, end))
                    if found is not None:
                        networks.setdefault(found[0], set()).add(found[1])
        self._networks = networks
        routes: dict[_Key, KernelRoute] = {}
        self._tracked = {}
        self._keys_on_if = {}
        for family in self.families:
            for mtype, data, off, end, _flags in nl.dump_routes(
                sock, self.table, 0, self._next_seq(), family=family
            ):
                if mtype != nl.RTM_NEWROUTE:
                    continue
                parsed = self._parse_route(data, off, end, self.table, self._ifname, self.skip_protocol)
                if parsed is not None:
                    route, oifs = parsed
                    routes[route.key] = route
                    if route.protocol != self.own_protocol:
                        self._track(route, oifs)
        return Snapshot(tuple(routes.values()), reason)
