"""RouteWatcher: the kernel's IPv4 routes of one table, as a snapshot followed by change events.

This module owns the subscription to the kernel's route notifications. A dedicated thread subscribes to
RTMGRP_IPV4_ROUTE (plus RTMGRP_LINK and RTMGRP_IPV4_IFADDR), *then* dumps the links and the routes of the
table, so no change falls between dump and stream, and delivers `Snapshot(reason="start")`, then batches
of `RouteAdded`/`RouteRemoved`. It resynchronises with a fresh dump, delivered as a `Snapshot` that the
consumer applies as "replace everything", whenever the stream cannot be trusted:

* "overflow": the kernel dropped notifications (ENOBUFS on the socket);
* "link": a device that carries routes went down, lost carrier, was renamed or deleted, or lost an IPv4
  address. Linux flushes the IPv4 routes of such a device without sending RTM_DELROUTE.

Applying events in order on top of the last Snapshot always converges to the kernel's table: every event
states the whole route at its key, and a change concurrent with a dump is both in the dump and queued
behind it. There is no timer: an idle watcher sleeps in poll().

Messages are parsed with `struct` (see `_netlink`): pyroute2's full parse is far too slow for bursts.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from bgpd.kernel import _netlink as nl
from bgpd.model import KernelRoute, Prefix

log = logging.getLogger(__name__)

MAX_RECVS_PER_BATCH = 4096  # bounds the latency and size of one on_events call during a burst
START_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every route of the table: replaces the consumer's whole view. reason: "start" | "overflow" | "link"."""

    routes: tuple[KernelRoute, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class RouteAdded:
    """A route was added or changed (it replaces whatever the consumer had at `route.key`)."""

    route: KernelRoute


@dataclass(frozen=True, slots=True)
class RouteRemoved:
    """The route at `route.key` is gone."""

    route: KernelRoute


RouteEvent = Snapshot | RouteAdded | RouteRemoved

_Key = tuple[Prefix, int, int]


class RouteWatcher:
    """Reports all IPv4 routes (every protocol) of routing table `table` to `on_events`.

    `on_events` is called on the watcher's own thread with one list per burst of notifications (the
    messages read in one pass over the socket); the first call holds `Snapshot(reason="start")`. It should
    return quickly, e.g. by handing the list to an event loop with `loop.call_soon_threadsafe`; an exception
    it raises is logged and the watcher goes on.

    `netns` (tests only) makes the watcher's thread enter that network namespace before opening its
    sockets; production leaves it None and watches the daemon's own namespace.
    """

    def __init__(
        self,
        table: int,
        on_events: Callable[[list[RouteEvent]], None],
        *,
        netns: str | None = None,
        rcvbuf: int = 8 * 2**20,
        ignore_protocol: int | None = None,
    ) -> None:
        self.table = table
        # routes of this protocol (bgpd's own installs) are dropped before parsing: the daemon knows them
        self.skip_protocol = -1 if ignore_protocol is None else ignore_protocol
        self.netns = netns
        self.rcvbuf = rcvbuf
        self.resyncs = 0  # overflow and link resyncs done (the start dump is not counted)
        self.overflows = 0
        self._on_events = on_events
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping = False
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._events_sock: socket.socket | None = None
        self._dump_sock: socket.socket | None = None
        self._seq = 0
        self._buf = bytearray(nl.RECV_BUFSIZE)
        # ifindex -> (flags, name), from the link dump and RTM_NEWLINK/DELLINK
        self._links: dict[int, tuple[int, str | None]] = {}
        # output ifindexes of every route in the table, and how many routes each ifindex carries
        self._oifs: dict[_Key, tuple[int, ...]] = {}
        self._routes_per_if: dict[int, int] = {}

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread; return once subscribed and the start Snapshot is delivered (raise on failure)."""
        if self._thread is not None:
            raise RuntimeError("RouteWatcher already started")
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._thread = threading.Thread(target=self._run, name=f"route-watcher-{self.table}", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            self.stop()
            raise TimeoutError("route watcher did not start")
        if self._start_error is not None:
            error = self._start_error
            self.stop()
            raise error

    def stop(self) -> None:
        """Stop the thread, join it and close the sockets. Idempotent."""
        self._stopping = True
        thread, self._thread = self._thread, None
        if self._wake_w is not None:
            with contextlib.suppress(OSError):  # already closed, or already woken
                self._wake_w.send(b"x")
        if thread is not None and thread is not threading.current_thread():
            thread.join()
            self._close_wake()

    def _close_wake(self) -> None:
        for wake in (self._wake_r, self._wake_w):
            if wake is not None:
                wake.close()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    # --- thread --------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            try:
                if self.netns is not None:
                    nl.enter_netns(self.netns)
                self._open()
                snapshot = self._resync("start")
            except BaseException as exc:
                self._start_error = exc
                return
            finally:
                self._ready.set()
            self._deliver([snapshot])
            self._loop()
        except Exception:
            log.exception("route watcher for table %d failed", self.table)
        finally:
            for sock in (self._events_sock, self._dump_sock):
                if sock is not None:
                    sock.close()
            self._events_sock = self._dump_sock = None
            if self._stopping:
                self._close_wake()

    def _open(self) -> None:
        events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_ROUTE)
        self._events_sock = events
        nl.set_rcvbuf(events, self.rcvbuf)
        # Subscribe first: everything from here on is queued, so the dumps below cannot miss a change.
        if self.skip_protocol >= 0:
            # bgpd's own installs (100k notifications in a bulk load) never reach this process; the
            # parser below still skips them should the filter not be available
            try:
                nl.drop_protocol_filter(events, self.skip_protocol)
            except OSError as exc:
                log.warning("kernel-side notification filter unavailable (%s); filtering in bgpd", exc)
        events.bind((0, nl.RTMGRP_IPV4_ROUTE | nl.RTMGRP_LINK | nl.RTMGRP_IPV4_IFADDR))
        events.setblocking(False)
        dump_sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nl.NETLINK_ROUTE)
        self._dump_sock = dump_sock
        dump_sock.bind((0, 0))
        nl.set_opt(dump_sock, nl.NETLINK_GET_STRICT_CHK)  # lets the kernel filter the dump by table
        nl.set_rcvbuf(dump_sock, 1 << 20)

    def _loop(self) -> None:
        events = self._events_sock
        assert events is not None
        poller = select.poll()
        poller.register(events.fileno(), select.POLLIN)
        assert self._wake_r is not None
        poller.register(self._wake_r.fileno(), select.POLLIN)
        buf = self._buf
        view = memoryview(buf)
        recv_into = events.recv_into
        while not self._stopping:
            poller.poll()
            if self._stopping:
                return
            batch: list[RouteEvent] = []
            resync: str | None = None
            for _ in range(MAX_RECVS_PER_BATCH):
                try:
                    n = recv_into(buf)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    resync = "overflow"
                    break
                if self._parse_events(view, n, batch):
                    resync = resync or "link"
            if resync == "overflow":
                # Everything still queued predates the dump about to be taken, and some of it precedes
                # the dropped messages: applying it after the dump could resurrect a stale state.
                self.overflows += 1
                self._drain()
                log.warning("route notifications lost (ENOBUFS); resynchronising table %d", self.table)
            if resync is not None:
                self.resyncs += 1
                batch = [self._resync(resync)]  # the dump supersedes the events read before it
            if batch:
                self._deliver(batch)

    def _drain(self) -> None:
        events = self._events_sock
        assert events is not None
        while True:
            try:
                events.recv_into(self._buf)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise

    def _deliver(self, batch: list[RouteEvent]) -> None:
        try:
            self._on_events(batch)
        except Exception:
            log.exception("route watcher consumer failed")

    # --- parsing -------------------------------------------------------------------------------------
    def _parse_events(self, buf: memoryview, length: int, batch: list[RouteEvent]) -> bool:
        """Append the route events of one receive buffer to batch; True if a link event needs a resync."""
        need_resync = False
        for mtype, _flags, _seq, off, end in nl.iter_messages(buf, length):
            if mtype == nl.RTM_NEWROUTE or mtype == nl.RTM_DELROUTE:
                parsed = nl.parse_route(buf, off, end, self.table, self._ifname, self.skip_protocol)
                if parsed is None:
                    continue
                route, oifs = parsed
                if mtype == nl.RTM_NEWROUTE:
                    self._track(route.key, oifs)
                    batch.append(RouteAdded(route))
                else:
                    self._track(route.key, None)
                    batch.append(RouteRemoved(route))
            elif mtype == nl.RTM_NEWLINK or mtype == nl.RTM_DELLINK:
                index, flags, name = nl.parse_link(buf, off, end)
                old = self._links.get(index)
                if mtype == nl.RTM_DELLINK:
                    self._links.pop(index, None)
                    lost = True
                else:
                    self._links[index] = (flags, name)
                    lost = old is not None and (
                        bool(old[0] & ~flags & (nl.IFF_UP | nl.IFF_LOWER_UP)) or old[1] != name
                    )
                if lost and self._routes_per_if.get(index):
                    need_resync = True
            elif mtype == nl.RTM_DELADDR:
                family, index, _address = nl.parse_addr(buf, off, end)
                if family == socket.AF_INET and self._routes_per_if.get(index):
                    need_resync = True
        return need_resync

    def _ifname(self, index: int) -> str | None:
        link = self._links.get(index)
        if link is not None and link[1] is not None:
            return link[1]
        try:
            # A link newer than the link dump whose RTM_NEWLINK is still queued; this thread is in the
            # watched namespace, so the ioctl behind if_indextoname asks the right kernel namespace.
            return socket.if_indextoname(index)
        except OSError:
            return None

    def _track(self, key: _Key, oifs: tuple[int, ...] | None) -> None:
        counts = self._routes_per_if
        old = self._oifs.pop(key, None)
        if old:
            for index in old:
                left = counts.get(index, 0) - 1
                if left > 0:
                    counts[index] = left
                else:
                    counts.pop(index, None)
        if oifs is not None:
            self._oifs[key] = oifs
            for index in oifs:
                counts[index] = counts.get(index, 0) + 1

    # --- dumps ---------------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    def _resync(self, reason: str) -> Snapshot:
        """Dump links (start/overflow: their events may be lost too) and the table's routes."""
        sock = self._dump_sock
        assert sock is not None
        if reason != "link":
            links: dict[int, tuple[int, str | None]] = {}
            for mtype, data, off, end, _flags in nl.dump(
                sock, nl.RTM_GETLINK, nl.LINK_DUMP_REQUEST, self._next_seq()
            ):
                if mtype == nl.RTM_NEWLINK:
                    index, flags, name = nl.parse_link(data, off, end)
                    links[index] = (flags, name)
            self._links = links
        routes: dict[_Key, KernelRoute] = {}
        self._oifs = {}
        self._routes_per_if = {}
        for mtype, data, off, end, _flags in nl.dump_routes(sock, self.table, 0, self._next_seq()):
            if mtype != nl.RTM_NEWROUTE:
                continue
            parsed = nl.parse_route(data, off, end, self.table, self._ifname, self.skip_protocol)
            if parsed is not None:
                route, oifs = parsed
                routes[route.key] = route
                self._track(route.key, oifs)
        return Snapshot(tuple(routes.values()), reason)
