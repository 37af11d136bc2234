"""Felix's `tunl0` on a kernel without IP-in-IP: a TUN device and this userspace encapsulator.

A Calico host with an IP-in-IP pool has the kernel's `tunl0` (an ipip device, remote any): bgpd installs a
learned route as `via G dev tunl0 onlink`, and the kernel wraps every packet that takes such a route in an
outer IPv4 header (protocol 4, IP-in-IP) addressed to G, the route's gateway; what arrives with protocol 4
is unwrapped and comes out of `tunl0`. The lab's kernel has no ipip device, so the lab creates a TUN device
named `tunl0` (same /32 address, MTU and state as Felix gives the real one) and runs this program inside
the host's namespace, by pid, one per host:

    ip netns exec NS python -m bgpd.lab.ipip [--device tunl0]

* out: it reads the inner IPv4 packets the kernel routed into `tunl0` from the TUN file descriptor, asks the
  kernel which route the inner destination takes (RTM_GETROUTE, as `ip route get`), and sends the packet
  through a raw IPPROTO_IPIP socket to that route's gateway: the kernel writes the outer header (protocol
  4, source = the host's underlay address chosen by the route to the gateway), as the ipip device does. A
  route through `tunl0` without a gateway sends to the inner destination itself (the ipip device does the
  same); a destination whose route leaves by another device (the route changed meanwhile) is dropped.
* in: the raw socket receives every protocol-4 packet addressed to the host; the outer header is stripped
  and the inner packet written to the TUN descriptor, so the kernel receives it on `tunl0`.
* The answer of the kernel is cached per inner destination, and the whole cache is dropped when the kernel
  reports any IPv4 route, IPv4 address or link change (a netlink subscription read before every batch of
  packets; an overflow of it, ENOBUFS, counts as a change): a mode change (a reload rewriting routes in
  place) is followed at once. An ECMP route through `tunl0` gets one next hop per destination (the
  kernel's choice for a lookup by destination only).
* Netlink goes through pyroute2 (`IPRoute.route("get")` for the lookups, an `IPRSocket` bound to the three
  multicast groups for the notifications): outside what bgpd exists for, a well-kept library beats code of
  our own. Only `bgpd.kernel` hand-rolls netlink, for speed (pyroute2's full parse is too slow for bursts
  of routes); here a lookup per new destination and a few notifications per change make its cost moot.

The device's counters are the kernel's: `tx` = packets routed into `tunl0` (encapsulated), `rx` = packets
unwrapped, as on the real device. This program plays Felix's part in the lab; it is not part of bgpd.
Ready (its sockets open) when the TUN device has a carrier: it attaches to the device last.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from pyroute2 import IPRoute, IPRSocket
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE, RTMGRP_LINK, rt_type

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_IPIP = 4
IP_HEADER = 20
MAX_PACKET = 65535
CACHE_LIMIT = 4096  # destinations; past it the cache starts over
EVENT_GROUPS = cast(int, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE)
UNICAST = cast(int, rt_type["unicast"])

# A message as pyroute2 parses it (rtmsg): header fields by key (`type`), attributes through get() by
# their short name (`oif`, `gateway`). Typed here, where pyroute2's untyped values enter this module.
Message = Mapping[str, object]


class Routes:
    """The outer destination of an inner packet: the gateway of the kernel route its destination takes
    through the tunnel device, cached per destination until the kernel reports a change.

    Two pyroute2 sockets: `query` (an IPRoute subscribed to nothing, so only answers arrive on it) asks
    the kernel as `ip route get` does; `events` (an IPRSocket: pyroute2's select()-compatible socket, out
    of asyncio's control) is bound to the link, IPv4 address and IPv4 route groups and read without
    blocking. Both belong to the namespace of the thread that opens them, and are used by that thread only
    (pyroute2 keeps an IPRoute's socket per thread)."""

    def __init__(self, ifindex: int) -> None:
        self.ifindex = ifindex
        self.query = IPRoute(groups=0)
        self.events = IPRSocket(groups=EVENT_GROUPS)
        self.events.bind(groups=EVENT_GROUPS)
        self.events.socket.setblocking(False)
        self.cache: dict[bytes, str | None] = {}
        self.lookups = 0
        self.invalidations = 0

    def fileno(self) -> int:
        """The notifications' descriptor, for select()."""
        return cast(int, self.events.fileno())

    def close(self) -> None:
        self.query.close()
        self.events.close()

    def outer(self, destination: bytes) -> str | None:
        """Where to send a packet for `destination` (4 bytes), or None (its route does not use the
        device: drop it)."""
        if destination in self.cache:
            return self.cache[destination]
        if len(self.cache) >= CACHE_LIMIT:
            self.cache.clear()
        answer = self.cache[destination] = self._lookup(destination)
        return answer

    def _lookup(self, destination: bytes) -> str | None:
        self.lookups += 1
        address = socket.inet_ntoa(destination)
        try:
            answer = cast("list[Message]", self.query.route("get", dst=address))
        except NetlinkError:  # no route, unreachable, prohibited: the kernel answers with an error
            return None
        if not answer:
            return None
        route = answer[0]
        if route["type"] != UNICAST or route.get("oif") != self.ifindex:
            return None
        gateway = route.get("gateway")
        return gateway if isinstance(gateway, str) else address

    def invalidate_on_events(self) -> None:
        """Drain the kernel's change notifications; any of them drops the cache (so does an overflow)."""
        changed = False
        while True:
            try:
                self.events.get()  # one datagram (one or more notifications); which ones does not matter
                changed = True
            except BlockingIOError:
                break
            except OSError as exc:  # ENOBUFS: notifications were lost, so anything may have changed
                if exc.errno != errno.ENOBUFS:
                    raise
                changed = True
        if changed and self.cache:
            self.cache.clear()
            self.invalidations += 1


def open_tun(device: str) -> int:
    """Attach to the existing TUN device `device` (the lab created it, persistent); non-blocking."""
    socket.if_nametoindex(device)  # OSError if the lab did not create it: never create one here
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", device.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def unwrap(packet: bytes) -> bytes | None:
    """The inner IPv4 packet of an IP-in-IP packet as a raw socket receives it (outer header included), or
    None if it is not one."""
    if len(packet) < IP_HEADER or packet[0] >> 4 != 4 or packet[9] != IPPROTO_IPIP:
        return None
    inner = packet[(packet[0] & 0x0F) * 4 :]
    if len(inner) < IP_HEADER or inner[0] >> 4 != 4:
        return None
    return inner


@dataclass
class Counters:
    encapsulated: int = 0
    decapsulated: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1

    def __str__(self) -> str:
        drops = " ".join(f"dropped_{k}={v}" for k, v in sorted(self.dropped.items()))
        return f"encapsulated={self.encapsulated} decapsulated={self.decapsulated} {drops}".rstrip()


def run(device: str) -> int:
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
    raw.setblocking(False)
    routes = Routes(socket.if_nametoindex(device))
    tun = open_tun(device)  # last: the carrier comes up now, which tells the lab we are ready
    counters = Counters()
    log(f"ready device={device} ifindex={routes.ifindex} pid={os.getpid()}")

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watched: list[Routes | int | socket.socket] = [routes, tun, raw]
    try:
        while True:
            ready, _, _ = select.select(watched, [], [])
            routes.invalidate_on_events()  # before any packet: a route change is seen by the next packet
            if tun in ready:
                _encapsulate(tun, raw, routes, counters)
            if raw in ready:
                _decapsulate(tun, raw, counters)
    except OSError as exc:
        log(f"stopped on error: {exc}")
        return 1
    finally:
        log(f"exit {counters} route_lookups={routes.lookups} cache_invalidations={routes.invalidations}")
        routes.close()
        raw.close()
        with contextlib.suppress(OSError):
            os.close(tun)


def _encapsulate(tun: int, raw: socket.socket, routes: Routes, counters: Counters) -> None:
    while True:
        try:
            packet = os.read(tun, MAX_PACKET)
        except BlockingIOError:
            return
        if len(packet) < IP_HEADER or packet[0] >> 4 != 4:
            counters.drop("not_ipv4")  # e.g. an IPv6 packet: tunl0 carries IPv4 only
            continue
        outer = routes.outer(packet[16:20])
        if outer is None:
            counters.drop("no_tunnel_route")
            continue
        try:
            raw.sendto(packet, (outer, 0))
        except OSError as exc:  # unreachable underlay, a full buffer, a packet over the underlay MTU
            counters.drop(errno.errorcode.get(exc.errno or 0, "send").lower())
            continue
        counters.encapsulated += 1


def _decapsulate(tun: int, raw: socket.socket, counters: Counters) -> None:
    while True:
        try:
            packet = raw.recv(MAX_PACKET)
        except BlockingIOError:
            return
        inner = unwrap(packet)
        if inner is None:
            counters.drop("not_ipip")
            continue
        try:
            os.write(tun, inner)
        except OSError:
            counters.drop("tun_write")
            continue
        counters.decapsulated += 1


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    print(f"{stamp} ipip: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bgpd.lab.ipip",
        description="the lab's IP-in-IP encapsulator behind a TUN device standing in for tunl0",
    )
    parser.add_argument("--device", default="tunl0", help="the TUN device (created beforehand)")
    args = parser.parse_args(argv)
    try:
        return run(args.device)
    except OSError as exc:
        log(f"cannot start on {args.device}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
