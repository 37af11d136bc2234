"""RouteInstaller: writes the routes bgpd owns into the kernel FIB, and never touches anybody else's.

This module owns bgpd's writes to the routing table. A route is *ours* when it carries our
`rtm_protocol` at our key (prefix, table, metric). The rules, the same for IPv4 and IPv6 (the family of
each change is its prefix's; one call may mix them):

* install: RTM_NEWROUTE with NLM_F_CREATE|NLM_F_EXCL. If the kernel answers EEXIST, the route at our key
  is replaced (NLM_F_REPLACE) only if a fresh protocol-filtered dump shows it is ours; otherwise it is a
  foreign route: `OpResult(collision=True)` and nothing is changed.
* change: a route the caller knows to be ours (`apply(..., ours=...)`: the daemon's view of the kernel,
  kept by the kernel's own notifications) is replaced directly; ENOENT (it vanished) makes it a create.
* delete: RTM_DELROUTE carrying our protocol, table and metric; the kernel (fib_table_delete) matches
  the protocol, so a foreign route is never removed. ESRCH means already gone, which is success.
* any other error is retried `retries` times with a short backoff, then reported in `OpResult.error`
  (`OpResult.refused` when the kernel refused the route's next hops: ENETUNREACH, EINVAL); `apply` never
  raises for a route that fails, and logs it at debug level only (the caller counts and logs failures).

Requests are packed by hand and batched: up to CHUNK messages per sendmsg, each with its own sequence
number, and the error answers are mapped back to the operations by sequence number.

IPv6 next hops: a link-local gateway names its device as its scope (`IPv6Address("fe80::1%eth0")`; the
kernel refuses one without a device), resolved to an ifindex once per `apply`; a scope on another gateway
pins its device too. IPv4 next hops for IPv6 routes (and the reverse) are refused without asking the
kernel, which does not take them for IPv6 (RTA_VIA).

IPv4 next hops through a device, onlink (Calico's IP-in-IP: `via G dev tunl0 onlink`): a `Hop(G, "tunl0",
onlink=True)` in the gateway tuple, beside plain addresses (an ECMP route may mix both: each next hop is
sent with its own device and RTNH_F_ONLINK, or none). The device is resolved to an ifindex once per pass
of `apply`; a device that does not exist (ENODEV) or is down (ENETDOWN) fails that change at once, without
retries, its OpResult naming the device (`OpResult.device`), and the same change succeeds once the device
exists and is up. `dump_own(hops=True)` reports them as the
same `Hop`s (any next hop the kernel flags RTNH_F_ONLINK, its device by name), the others as addresses.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable, Collection, Container, Iterator, Sequence
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Literal, cast, overload

from bgpd.kernel import _inet6
from bgpd.kernel import _netlink as nl
from bgpd.model import Hop, OpResult

log = logging.getLogger(__name__)

CHUNK = 256  # messages per sendmsg
CHUNK_BYTES = 96 * 1024  # and at most this many bytes (well below the default netlink sndbuf)
ACK_TIMEOUT = 5.0  # seconds without any ACK before the rest of a chunk is treated as failed (retried)
BACKOFF = 0.01  # seconds before the first retry pass; doubles each pass


class InstallError(Exception):
    """The installer cannot work at all (socket or dump failure); single route failures are OpResults."""


Network = IPv4Network | IPv6Network
Gateway = IPv4Address | IPv6Address
NextHop = Gateway | Hop  # a plain address keeps its meaning; a Hop names its device (IPv4 only)
Change = tuple[Network, tuple[NextHop, ...] | None]


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
    @overload
    def dump_own(self) -> dict[IPv4Network, tuple[IPv4Address, ...]]: ...
    @overload
    def dump_own(self, *, families: Collection[int]) -> dict[Network, tuple[Gateway, ...]]: ...
    @overload
    def dump_own(self, *, hops: Literal[True]) -> dict[IPv4Network, tuple[IPv4Address | Hop, ...]]: ...
    @overload
    def dump_own(
        self, *, families: Collection[int], hops: Literal[True]
    ) -> dict[Network, tuple[NextHop, ...]]: ...
    def dump_own(
        self, *, families: Collection[int] = (socket.AF_INET,), hops: bool = False
    ) -> dict[Any, tuple[Any, ...]]:
        """Our routes in the kernel: our protocol, table and metric; prefix -> sorted gateways.

        `families`: AF_INET (the default), AF_INET6 or both (one dump each). Routes of ours without a
        gateway (blackhole, device routes) map to an empty tuple; link-local IPv6 gateways carry their
        device's name as scope (`fe80::1%eth0`; its ifindex if the device went away meanwhile), and the
        gateways are sorted by (address, scope). An IPv4 next hop the kernel flags RTNH_F_ONLINK is a
        `Hop(gateway, device name, onlink=True)` (as `apply` takes it), sorted by (address, device) among
        the plain ones, if `hops` (the daemon's form, to compare with what it wants); without `hops`, as
        before there were `Hop`s, every next hop is its address. ValueError for another family.
        """
        for family in families:
            if family not in (socket.AF_INET, socket.AF_INET6):
                raise ValueError(f"address family {family} is neither AF_INET nor AF_INET6")
        own: dict[Any, tuple[Any, ...]] = {}
        scoped: list[IPv6Network] = []  # IPv6 prefixes with a link-local gateway (named after the dump)
        onlink: list[IPv4Network] = []  # IPv4 prefixes with an onlink next hop (named after the dump)
        try:
            for family in families:
                parse = nl.parse_route if family == socket.AF_INET else _inet6.parse_route
                for mtype, data, off, end, _flags in nl.dump_routes(
                    self._sock, self.table, self.protocol, self._next_seq(), family=family
                ):
                    if mtype != nl.RTM_NEWROUTE:
                        continue
                    parsed = parse(data, off, end, self.table, _no_ifname)
                    if parsed is None:
                        continue
                    route = parsed[0]
                    if route.protocol == self.protocol and route.priority == self._metric(route.prefix):
                        own[route.prefix] = route.gateways
                        if family == socket.AF_INET6:
                            if any(_scope(cast(Gateway, g)) for g in route.gateways):
                                scoped.append(cast(IPv6Network, route.prefix))
                        elif Hop in map(type, route.gateways):  # an onlink next hop (parse_route's Hop)
                            if hops:
                                onlink.append(cast(IPv4Network, route.prefix))
                            else:
                                own[route.prefix] = _addresses(route.gateways)
            if scoped or onlink:
                names = nl.link_names(self._sock, self._next_seq())
                for prefix in scoped:
                    own[prefix] = _named(own[prefix], names)
                for prefix4 in onlink:
                    own[prefix4] = _named_hops(own[prefix4], names)
        except (OSError, nl.NetlinkError) as exc:
            raise InstallError(f"cannot dump table {self.table}: {exc}") from exc
        return own

    # --- writing -------------------------------------------------------------------------------------
    def apply(self, changes: Sequence[Change], ours: Container[Network] = ()) -> list[OpResult]:
        """Install/replace (gateways) or delete (None) our route for each prefix; one OpResult per change.

        `ours`: prefixes where the caller knows the kernel holds a route of ours at our key; their changes
        are sent as replacements at once (no create, EEXIST and ownership dump, which cost a dump of every
        route of ours per call).

        One gateway installs a plain next hop, several an ECMP route (RTA_MULTIPATH), for IPv4 and IPv6
        prefixes alike. An IPv4 next hop may be a `Hop(gateway, device, onlink=True)` (`via G dev D
        onlink`), alone or beside plain addresses; a missing or down device fails the change at once
        (ENODEV, ENETDOWN), `OpResult.device` naming it. The gateway must be reachable through a directly
        connected network; a link-local IPv6 gateway must name its device as its scope (`fe80::1%eth0`).
        Refused without asking the kernel: an empty tuple (no next hop), gateways of another family than
        the prefix, a link-local gateway without device, a `Hop` for an IPv6 route or with a device but
        not onlink (or onlink without a device). Give each prefix at most once per call (the operations
        of one call are not ordered against each other). Blocks until the kernel has answered every
        operation (retries included).
        """
        results: list[OpResult | None] = [None] * len(changes)
        # index -> (operation, gateways); gateways sorted so the kernel sees a canonical order
        pending: dict[int, tuple[_Op, tuple[NextHop, ...]]] = {}
        for index, (prefix, gateways) in enumerate(changes):
            if gateways is None:
                pending[index] = (_Op.DELETE, ())
                continue
            hops, problem = _canonical(prefix, gateways)
            if problem is not None:
                results[index] = OpResult(prefix, ok=False, error=problem)
                self.errors += 1
            else:
                pending[index] = (_Op.REPLACE if prefix in ours else _Op.CREATE, hops)
        tries: dict[int, int] = {}  # failed attempts per change
        # Which prefixes hold a route of ours is asked of the kernel only when a create meets an existing
        # route (at most one dump per call), then kept up to date for the rest of the call. Nothing is
        # remembered between calls: that would cost a set entry per installed route.
        owned: set[Network] | None = None
        devices: dict[str, int | None] = {}  # next hops' named devices: name -> ifindex, this call
        while pending:
            answers = self._send(changes, pending, devices)
            retry: dict[int, tuple[_Op, tuple[NextHop, ...]]] = {}
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
                    device = _device_of(gateways) if code in (errno.ENODEV, errno.ENETDOWN) else None
                    if device is not None:  # its device is missing or down: retrying now cannot help
                        results[index] = OpResult(prefix, ok=False, error=error, device=device)
                        self.errors += 1
                    elif tries[index] > self.retries:
                        refused = op is not _Op.DELETE and code in (errno.ENETUNREACH, errno.EINVAL)
                        results[index] = OpResult(prefix, ok=False, error=error, refused=refused)
                        self.errors += 1
                        log.debug("route %s %s failed: %s", op.value, prefix, error)
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
                        owned = set(self.dump_own(families=_families(changes[i][0] for i in exists)))
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
        changes: Sequence[Change],
        pending: dict[int, tuple[_Op, tuple[NextHop, ...]]],
        devices: dict[str, int | None],
    ) -> dict[int, tuple[int, str | None]]:
        """Send the pending operations in chunks; index -> (errno or 0, extended ACK message).

        `devices` caches the ifindex of the devices named by IPv6 gateways and `Hop`s (None: not found,
        asked again on the next pass)."""
        answers: dict[int, tuple[int, str | None]] = {}
        chunk: list[bytes] = []
        by_seq: dict[int, int] = {}
        size = 0
        for name in [name for name, index in devices.items() if index is None]:
            del devices[name]
        for index, (op, gateways) in pending.items():
            prefix = changes[index][0]
            if prefix.version == 6:
                hops = self._hops6(cast(tuple[Gateway, ...], gateways), devices)
                if isinstance(hops, str):
                    answers[index] = (errno.ENODEV, hops)
                    continue
                seq = self._next_seq()
                msg = self._pack(_inet6.pack_route, op, seq, prefix, {"hops": hops})
            elif Hop in map(type, gateways):
                hops4 = self._hops4(gateways, devices)
                if isinstance(hops4, str):
                    answers[index] = (errno.ENODEV, hops4)
                    continue
                seq = self._next_seq()
                msg = self._pack(nl.pack_route, op, seq, prefix, hops4)
            else:
                seq = self._next_seq()
                msg = self._pack(nl.pack_route, op, seq, prefix, {"gateways": gateways})
            if chunk and (len(chunk) >= CHUNK or size + len(msg) > CHUNK_BYTES):
                self._exchange(chunk, by_seq, answers)
                chunk, by_seq, size = [], {}, 0
            chunk.append(msg)
            by_seq[seq] = index
            size += len(msg)
        if chunk:
            self._exchange(chunk, by_seq, answers)
        return answers

    def _hops6(
        self, gateways: tuple[Gateway, ...], devices: dict[str, int | None]
    ) -> tuple[tuple[IPv6Address, int], ...] | str:
        """(gateway, ifindex of its scope or 0) per IPv6 gateway, or why a device cannot be found."""
        hops: list[tuple[IPv6Address, int]] = []
        for gateway in cast(tuple[IPv6Address, ...], gateways):
            name = gateway.scope_id
            oif = 0
            if name:
                if name not in devices:
                    devices[name] = self._ifindex(name)
                found = devices[name]
                if found is None:
                    return f"no device {name} for next hop {gateway}"
                oif = found
            hops.append((gateway, oif))
        return tuple(hops)

    def _hops4(self, gateways: tuple[NextHop, ...], devices: dict[str, int | None]) -> dict[str, Any] | str:
        """`nl.pack_route`'s next-hop keywords for IPv4 next hops some of which are `Hop`s (canonical:
        onlink with a device), or why a device cannot be found."""
        addresses: list[IPv4Address] = []
        oifs: list[int] = []
        flags: list[int] = []
        for hop in gateways:
            if isinstance(hop, Hop) and hop.device:
                if hop.device not in devices:
                    devices[hop.device] = self._ifindex(hop.device)
                found = devices[hop.device]
                if found is None:
                    return f"no device {hop.device} for next hop {hop.gateway}"
                addresses.append(cast(IPv4Address, hop.gateway))  # refused for IPv6 routes before
                oifs.append(found)
                flags.append(nl.RTNH_F_ONLINK if hop.onlink else 0)
            else:
                addresses.append(cast(IPv4Address, hop))
                oifs.append(0)
                flags.append(0)
        return {"gateways": tuple(addresses), "oifs": tuple(oifs), "nh_flags": tuple(flags)}

    def _pack(
        self, packer: Callable[..., bytes], op: _Op, seq: int, prefix: Network, next_hops: dict[str, Any]
    ) -> bytes:
        """The request of one operation, packed by `packer` (the IPv4 or the IPv6 encoder); `next_hops`
        is the encoder's next-hop keyword, left out of deletes (they name only our key and protocol)."""
        if op is _Op.DELETE:
            return packer(
                nl.RTM_DELROUTE,
                _DELETE_FLAGS,
                seq,
                prefix=prefix,
                table=self.table,
                protocol=self.protocol,
                metric=self._metric(prefix),
                rtype=nl.RTN_UNSPEC,
                scope=nl.RT_SCOPE_NOWHERE,
            )
        flags = _CREATE_FLAGS if op is _Op.CREATE else _REPLACE_FLAGS
        return packer(
            nl.RTM_NEWROUTE,
            flags,
            seq,
            prefix=prefix,
            table=self.table,
            protocol=self.protocol,
            metric=self._metric(prefix),
            **next_hops,
        )

    def _metric(self, prefix: Network) -> int:
        """Our metric as the kernel stores it: an IPv6 route written with metric 0 gets 1024 (so our key
        is named exactly, also in deletes, where 0 would match any metric)."""
        return 1024 if self.metric == 0 and prefix.version == 6 else self.metric

    def _ifindex(self, name: str) -> int | None:
        """The ifindex of device `name` in the installer's namespace, None if there is none (or the
        kernel could not say)."""
        try:
            return nl.link_index(self._sock, name, self._next_seq())
        except (OSError, nl.NetlinkError) as exc:
            log.warning("cannot look up device %s: %s", name, exc)
            return None

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


def _canonical(prefix: Network, gateways: tuple[NextHop, ...]) -> tuple[tuple[NextHop, ...], str | None]:
    """The gateways of an install, deduplicated and sorted, or the reason they are refused."""
    if not gateways:
        return (), "no next hop"
    if Hop in map(type, gateways):
        return _canonical_hops(prefix, gateways)
    return _canonical_plain(prefix, cast(tuple[Gateway, ...], gateways))


def _canonical_plain(
    prefix: Network, gateways: tuple[Gateway, ...]
) -> tuple[tuple[NextHop, ...], str | None]:
    try:
        hops = tuple(sorted(set(gateways)))
    except TypeError:  # IPv4 and IPv6 addresses do not compare
        return (), "next hops of both address families"
    if hops[0].version != prefix.version:
        return (), f"IPv{hops[0].version} next hop for an IPv{prefix.version} route"
    if prefix.version == 6:
        hops = tuple(sorted(hops, key=_scope_order))
        for gateway in hops:
            if _inet6.is_link_local(cast(IPv6Address, gateway)) and not _scope(gateway):
                return (), f"link-local next hop {gateway} without its device (as in {gateway}%eth0)"
    return hops, None


def _canonical_hops(prefix: Network, gateways: tuple[NextHop, ...]) -> tuple[tuple[NextHop, ...], str | None]:
    """`_canonical` for IPv4 next hops some of which are `Hop`s: `Hop(G)` becomes plain `G`; sorted by
    (address, device)."""
    if prefix.version != 4:
        return (), f"next hop with a device (Hop) for an IPv{prefix.version} route: IPv4 only"
    hops: set[NextHop] = set()
    for hop in gateways:
        if isinstance(hop, Hop):
            if not isinstance(hop.gateway, IPv4Address):
                return (), f"next hop {hop.gateway!r} is not an IPv4 address"
            if not hop.device and not hop.onlink:
                hops.add(hop.gateway)
                continue
            if not hop.device:
                return (), f"onlink next hop {hop.gateway} without its device"
            if not hop.onlink:
                return (
                    (),
                    f"next hop {hop.gateway} dev {hop.device} without onlink (only onlink hops name one)",
                )
        elif hop.version != 4:
            return (), f"IPv{hop.version} next hop for an IPv4 route"
        hops.add(hop)
    return tuple(sorted(hops, key=nl.hop_order)), None


def _device_of(hops: tuple[NextHop, ...]) -> str | None:
    """The device a route's onlink next hops name (the first one), None if none does."""
    for hop in hops:
        if isinstance(hop, Hop) and hop.device:
            return hop.device
    return None


def _addresses(hops: tuple[NextHop, ...]) -> tuple[IPv4Address, ...]:
    """The next hops' addresses alone (a `Hop`'s gateway), deduplicated and sorted."""
    return tuple(sorted({cast(IPv4Address, h.gateway if isinstance(h, Hop) else h) for h in hops}))


def _named_hops(hops: tuple[NextHop, ...], names: dict[int, str]) -> tuple[NextHop, ...]:
    """Onlink next hops' devices named (their ifindex if the device went away), deduplicated, sorted."""
    named: set[NextHop] = set()
    for hop in hops:
        if isinstance(hop, Hop) and hop.device and hop.device.isdigit():
            hop = Hop(hop.gateway, names.get(int(hop.device), hop.device), onlink=True)
        named.add(hop)
    return tuple(sorted(named, key=nl.hop_order))


def _scope(address: Gateway) -> str | None:
    return address.scope_id if isinstance(address, IPv6Address) else None


def _scope_order(address: Gateway) -> tuple[int, str]:
    return int(address), _scope(address) or ""


def _named(gateways: tuple[Gateway, ...], names: dict[int, str]) -> tuple[Gateway, ...]:
    """Link-local gateways scoped by ifindex (as parsed without device names) scoped by name instead."""
    named: list[Gateway] = []
    for gateway in gateways:
        scope = _scope(gateway)
        if scope and scope.isdigit() and int(scope) in names:
            gateway = IPv6Address(f"{IPv6Address(int(gateway))}%{names[int(scope)]}")
        named.append(gateway)
    return tuple(sorted(named, key=_scope_order))


def _families(prefixes: Iterator[Network]) -> tuple[int, ...]:
    versions = {prefix.version for prefix in prefixes}
    return tuple(family for family, version in _FAMILIES if version in versions)


_FAMILIES = ((socket.AF_INET, 4), (socket.AF_INET6, 6))
