"""RouteInstaller: writes the routes bgpd owns into the kernel FIB, and never touches anybody else's.

This module owns bgpd's writes to the routing table. A route is *ours* when it carries our
`rtm_protocol` at our key (prefix, table, metric). The rules:

* install: RTM_NEWROUTE with NLM_F_CREATE|NLM_F_EXCL. If the kernel answers EEXIST, the route at our key
  is replaced (NLM_F_REPLACE) only if a fresh protocol-filtered dump shows it is ours; otherwise it is a
  foreign route: `OpResult(collision=True)` and nothing is changed.
* change: a route the caller knows to be ours (`apply(..., ours=...)`: the daemon's view of the kernel,
  kept by the kernel's own notifications) is replaced directly; ENOENT (it vanished) makes it a create.
* delete: RTM_DELROUTE carrying our protocol, table and metric; the kernel (fib_table_delete) matches
  the protocol, so a foreign route is never removed. ESRCH means already gone, which is success.
* any other error is retried `retries` times with a short backoff, then reported in `OpResult.error`;
  `apply` never raises for a route that fails.

Requests are packed by hand and batched: up to CHUNK messages per sendmsg, each with NLM_F_ACK and its
own sequence number, and the ACKs are mapped back to the operations by sequence number.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Container, Sequence
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv4Network

from bgpd.kernel import _netlink as nl

log = logging.getLogger(__name__)

CHUNK = 256  # messages per sendmsg
CHUNK_BYTES = 96 * 1024  # and at most this many bytes (well below the default netlink sndbuf)
ACK_TIMEOUT = 5.0  # seconds without any ACK before the rest of a chunk is treated as failed (retried)
BACKOFF = 0.01  # seconds before the first retry pass; doubles each pass


class InstallError(Exception):
    """The installer cannot work at all (socket or dump failure); single route failures are OpResults."""


@dataclass(frozen=True, slots=True)
class OpResult:
    """Outcome of one change passed to `RouteInstaller.apply`."""

    prefix: IPv4Network
    ok: bool
    collision: bool = False  # a route of another protocol sits at our key; it was left alone
    error: str | None = None


class _Op(Enum):
    CREATE = "create"
    REPLACE = "replace"
    DELETE = "delete"


# Route requests ask for no ACK: the kernel answers only the ones that fail, and each chunk ends with a
# NLMSG_NOOP that does ask for one. rtnetlink handles a socket's requests in order, so once that barrier's
# ACK is read, every request of the chunk without an error answer succeeded. (A 100k-route load no longer
# makes the kernel queue, and bgpd read, 100k ACKs.)
_CREATE_FLAGS = nl.NLM_F_REQUEST | nl.NLM_F_CREATE | nl.NLM_F_EXCL
_REPLACE_FLAGS = nl.NLM_F_REQUEST | nl.NLM_F_REPLACE
_DELETE_FLAGS = nl.NLM_F_REQUEST
_BARRIER_FLAGS = nl.NLM_F_REQUEST | nl.NLM_F_ACK


class RouteInstaller:
    """Installs, replaces and deletes bgpd's routes (protocol `protocol`, table `table`, metric `metric`).

    Not thread-safe: call `apply`/`dump_own` from a single worker thread (they block on netlink).
    `netns` (tests only) opens the socket inside that network namespace.
    """

    def __init__(
        self,
        protocol: int,
        table: int,
        metric: int = 32,
        *,
        netns: str | None = None,
        retries: int = 3,
    ) -> None:
        if not 0 < protocol < 256:
            raise ValueError(f"protocol must be 1..255, not {protocol}")
        self.protocol = protocol
        self.table = table
        self.metric = metric
        self.retries = retries
        self.errors = 0  # operations that failed after all retries
        self.retried = 0  # retry attempts (one per operation per extra pass)
        self.collisions = 0
        self._seq = 0
        try:
            self._sock = nl.open_socket(netns, rcvbuf=4 * 2**20)
        except OSError as exc:
            raise InstallError(f"cannot open netlink socket: {exc}") from exc
        nl.set_opt(self._sock, nl.NETLINK_CAP_ACK)  # ACKs do not echo our requests back
        nl.set_opt(self._sock, nl.NETLINK_EXT_ACK)  # ... but do carry the kernel's error text
        nl.set_opt(self._sock, nl.NETLINK_GET_STRICT_CHK)  # dumps filtered by table and protocol
        self._sock.settimeout(ACK_TIMEOUT)

    def close(self) -> None:
        self._sock.close()

    @property
    def portid(self) -> int:
        """The netlink port id of this installer's socket: the kernel stamps it on the notifications of
        the changes it makes (`RouteWatcher(ignore_sender=...)` drops those)."""
        return nl.portid(self._sock)

    def __enter__(self) -> RouteInstaller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF or 1
        return self._seq

    # --- reading -------------------------------------------------------------------------------------
    def dump_own(self) -> dict[IPv4Network, tuple[IPv4Address, ...]]:
        """Our routes in the kernel: our protocol, table and metric; prefix -> sorted gateways.

        Routes of ours without a gateway (blackhole, device routes) map to an empty tuple.
        """
        own: dict[IPv4Network, tuple[IPv4Address, ...]] = {}
        try:
            for mtype, data, off, end, _flags in nl.dump_routes(
                self._sock, self.table, self.protocol, self._next_seq()
            ):
                if mtype != nl.RTM_NEWROUTE:
                    continue
                parsed = nl.parse_route(data, off, end, self.table, _no_ifname)
                if parsed is None:
                    continue
                route = parsed[0]
                if route.protocol == self.protocol and route.priority == self.metric:
                    own[route.prefix] = route.gateways
        except (OSError, nl.NetlinkError) as exc:
            raise InstallError(f"cannot dump table {self.table}: {exc}") from exc
        return own

    # --- writing -------------------------------------------------------------------------------------
    def apply(
        self,
        changes: Sequence[tuple[IPv4Network, tuple[IPv4Address, ...] | None]],
        ours: Container[IPv4Network] = (),
    ) -> list[OpResult]:
        """Install/replace (gateways) or delete (None) our route for each prefix; one OpResult per change.

        `ours`: prefixes where the caller knows the kernel holds a route of ours at our key; their changes
        are sent as replacements at once (no create, EEXIST and ownership dump, which cost a dump of every
        route of ours per call).

        One gateway installs a plain next hop, several an ECMP route (RTA_MULTIPATH). The gateway must be
        reachable through a directly connected network. An empty tuple is refused (no next hop). Give each
        prefix at most once per call (the operations of one call are not ordered against each other).
        Blocks until the kernel has answered every operation (retries included).
        """
        results: list[OpResult | None] = [None] * len(changes)
        # index -> (operation, gateways); gateways sorted so the kernel sees a canonical order
        pending: dict[int, tuple[_Op, tuple[IPv4Address, ...]]] = {}
        for index, (prefix, gateways) in enumerate(changes):
            if gateways is None:
                pending[index] = (_Op.DELETE, ())
            elif not gateways:
                results[index] = OpResult(prefix, ok=False, error="no next hop")
                self.errors += 1
            else:
                op = _Op.REPLACE if prefix in ours else _Op.CREATE
                pending[index] = (op, tuple(sorted(set(gateways))))
        tries: dict[int, int] = {}  # failed attempts per change
        # Which prefixes hold a route of ours is asked of the kernel only when a create meets an existing
        # route (at most one dump per call), then kept up to date for the rest of the call. Nothing is
        # remembered between calls: that would cost a set entry per installed route.
        owned: set[IPv4Network] | None = None
        while pending:
            answers = self._send(changes, pending)
            retry: dict[int, tuple[_Op, tuple[IPv4Address, ...]]] = {}
            exists: list[int] = []
            backoff = 0
            for index, (op, gateways) in pending.items():
                prefix = changes[index][0]
                code, message = answers.get(index, (errno.ETIMEDOUT, "no answer from the kernel"))
                if code == 0:
                    results[index] = OpResult(prefix, ok=True)
                    if owned is not None:
                        if op is _Op.DELETE:
                            owned.discard(prefix)
                        else:
                            owned.add(prefix)
                elif op is _Op.DELETE and code == errno.ESRCH:
                    results[index] = OpResult(prefix, ok=True)  # already gone (or only a foreign route)
                    if owned is not None:
                        owned.discard(prefix)
                elif op is _Op.CREATE and code == errno.EEXIST:
                    exists.append(index)
                else:
                    if op is _Op.REPLACE and code == errno.ENOENT:
                        op = _Op.CREATE  # our route vanished meanwhile: create it (counts as a retry)
                    error = f"{nl.strerror(code)}: {message}" if message else nl.strerror(code)
                    tries[index] = tries.get(index, 0) + 1
                    if tries[index] > self.retries:
                        results[index] = OpResult(prefix, ok=False, error=error)
                        self.errors += 1
                        log.warning("route %s %s failed: %s", op.value, prefix, error)
                    else:
                        retry[index] = (op, gateways)
                        self.retried += 1
                        backoff = max(backoff, tries[index])
            if exists:
                # Who holds the key? Ask the kernel rather than trust memory: someone may have replaced
                # our route since. At most one dump per apply, filtered by the kernel to our protocol.
                unverified: str | None = None
                if owned is None:
                    try:
                        owned = set(self.dump_own())
                    except InstallError as exc:
                        unverified = f"route exists, ownership unknown: {exc}"
                        log.warning("%s", unverified)
                for index in exists:
                    prefix = changes[index][0]
                    if unverified is not None or owned is None:
                        results[index] = OpResult(prefix, ok=False, error=unverified or "ownership unknown")
                        self.errors += 1
                    elif prefix in owned:
                        retry[index] = (_Op.REPLACE, pending[index][1])
                    else:
                        results[index] = OpResult(prefix, ok=False, collision=True, error="foreign route")
                        self.collisions += 1
            if backoff:
                time.sleep(BACKOFF * 2 ** (backoff - 1))
            pending = retry
        return [
            result if result is not None else OpResult(changes[i][0], ok=False, error="not attempted")
            for i, result in enumerate(results)
        ]

    def _send(
        self,
        changes: Sequence[tuple[IPv4Network, tuple[IPv4Address, ...] | None]],
        pending: dict[int, tuple[_Op, tuple[IPv4Address, ...]]],
    ) -> dict[int, tuple[int, str | None]]:
        """Send the pending operations in chunks; index -> (errno or 0, extended ACK message)."""
        answers: dict[int, tuple[int, str | None]] = {}
        chunk: list[bytes] = []
        by_seq: dict[int, int] = {}
        size = 0
        for index, (op, gateways) in pending.items():
            seq = self._next_seq()
            prefix = changes[index][0]
            if op is _Op.DELETE:
                msg = nl.pack_route(
                    nl.RTM_DELROUTE,
                    _DELETE_FLAGS,
                    seq,
                    prefix=prefix,
                    table=self.table,
                    protocol=self.protocol,
                    metric=self.metric,
                    rtype=nl.RTN_UNSPEC,
                    scope=nl.RT_SCOPE_NOWHERE,
                )
            else:
                msg = nl.pack_route(
                    nl.RTM_NEWROUTE,
                    _CREATE_FLAGS if op is _Op.CREATE else _REPLACE_FLAGS,
                    seq,
                    prefix=prefix,
                    table=self.table,
                    protocol=self.protocol,
                    metric=self.metric,
                    gateways=gateways,
                )
            if chunk and (len(chunk) >= CHUNK or size + len(msg) > CHUNK_BYTES):
                self._exchange(chunk, by_seq, answers)
                chunk, by_seq, size = [], {}, 0
            chunk.append(msg)
            by_seq[seq] = index
            size += len(msg)
        if chunk:
            self._exchange(chunk, by_seq, answers)
        return answers

    def _exchange(
        self, chunk: list[bytes], by_seq: dict[int, int], answers: dict[int, tuple[int, str | None]]
    ) -> None:
        """sendmsg one chunk and its barrier, collect the error answers; once the barrier is acknowledged
        the other operations count as done. Unanswered operations are left out of `answers`."""
        barrier = self._next_seq()
        try:
            self._sock.sendall(
                b"".join(chunk)
                + nl.NLMSGHDR.pack(nl.NLMSGHDR.size, nl.NLMSG_NOOP, _BARRIER_FLAGS, barrier, 0)
            )
        except OSError as exc:
            code = exc.errno or errno.EIO
            for index in by_seq.values():
                answers[index] = (code, "sendmsg failed")
            return
        # rtnetlink handles the requests synchronously inside sendmsg, so every answer is queued (or dropped
        # if our receive buffer overflowed) by now; the timeout is only a safety net.
        buf = bytearray(64 * 1024)
        lost = done = False
        failed: dict[int, tuple[int, str | None]] = {}
        while True:
            try:
                n = self._sock.recv_into(buf, 0, socket.MSG_DONTWAIT if lost else 0)
            except (BlockingIOError, TimeoutError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    lost = True  # some answers were dropped: read what is left; the rest is retried
                    continue
                raise InstallError(f"netlink receive failed: {exc}") from exc
            for mtype, mflags, seq, _pid, off, end in nl.iter_messages(buf, n):
                if mtype != nl.NLMSG_ERROR:
                    continue
                if seq == barrier:
                    done = True
                elif seq in by_seq:
                    failed[by_seq[seq]] = nl.parse_error(buf, off, end, mflags)
            if done:
                break
        answers.update(failed)
        if done and not lost:
            for index in by_seq.values():
                if index not in failed:
                    answers[index] = (0, None)


def _no_ifname(index: int) -> str | None:
    return None
